//! What Throng's three test trees (coordinator, media-node, loadgen) share,
//! in one place: a real `redis-server` on a free port ([`Redis`]), free
//! ports for workers ([`free_port_block`]), media nodes and coordinators
//! started in the test process over real gRPC and HTTP on 127.0.0.1
//! ([`Node`], [`Coordinator`]), and waiting until a coordinator sees its
//! nodes; test certificates ([`tls`]); a real TURN server ([`turn`]);
//! a network namespace behind a firewall ([`netns`]). Everything a helper
//! starts stops when its handle drops.
#![forbid(unsafe_code)]

pub mod hot_worker;
pub mod metrics;
pub mod netns;
pub mod plain;
mod services;
pub mod tls;
pub mod turn;

pub use services::*;

use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Join token secret of test clusters.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0";
/// `/api/token` key of test clusters.
pub const API_KEY: &str = "test-api-key-test-api-key-test-api-key";
/// `/admin/*` key of test clusters.
pub const ADMIN_KEY: &str = "test-admin-key-test-admin-key-test-adm";

/// Installs a test log writer once (`RUST_LOG`, default `warn`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port with `n` consecutive ports free for both UDP and TCP (a media
/// node's workers listen on both). Taken below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768 and up by default): a port there can be
/// taken at any moment by some outgoing connection of a test running beside
/// this one (seen: a worker's TCP port taken between this check and the
/// worker's bind). Blocks start at random so that tests running at once
/// rarely pick the same one.
pub fn free_port_block(n: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let low = 10_000u32;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|first| *first > low + 1000)
        .unwrap_or(32_768);
    let span = high - low - u32::from(n);
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..500 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = (low + (x % u64::from(span)) as u32) as u16;
        let all_free = (base..base + n).all(|p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// A directory removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new empty directory under the system's temp dir, named after `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "throng-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of the test's own on 127.0.0.1 (no persistence, its own
/// directory), killed on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
    _dir: TempDir,
}

impl Redis {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_tcp_port();
        let dir = TempDir::new("redis");
        let child = Self::spawn(port, &dir);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Kills it (SIGKILL), waits `away`, and starts an empty one on the same
    /// port, as a restart without persistence does.
    pub fn restart(&mut self, away: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(away);
        self.child = Self::spawn(self.port, &self._dir);
    }

    /// A replica of `primary` (same settings), once it accepts connections.
    pub fn replica_of(primary: &Redis) -> Self {
        let port = free_tcp_port();
        let dir = TempDir::new("redis-replica");
        let child = Self::spawn_with(
            port,
            &dir,
            &["--replicaof", "127.0.0.1", &primary.port.to_string()],
        );
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// SIGKILLs it (it stays down).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(port: u16, dir: &TempDir) -> Child {
        Self::spawn_with(port, dir, &[])
    }

    fn spawn_with(port: u16, dir: &TempDir, extra: &[&str]) -> Child {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh installs it)");
        wait_listening(port, "redis-server");
        child
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A connection of the test's own.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 10 s) until `what` accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Redis Sentinel of the test's own (the same `redis-server` binary, in
/// sentinel mode) monitoring `primary` as `master`: quorum 1, the primary down
/// after 1 s without an answer. Killed on drop.
pub struct Sentinel {
    child: Child,
    /// Its port.
    pub port: u16,
    _dir: TempDir,
}

impl Sentinel {
    /// Starts one and waits until it accepts connections.
    pub fn start(master: &str, primary: &Redis) -> Self {
        let port = free_tcp_port();
        let dir = TempDir::new("sentinel");
        // Sentinel rewrites its configuration file: it lives in `dir`.
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {master} 1000\n\
                 sentinel failover-timeout {master} 5000\n\
                 sentinel parallel-syncs {master} 1\n",
                dir.0.display(),
                primary.port
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh installs it)");
        wait_listening(port, "redis sentinel");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// A connection of the test's own to the Sentinel.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the cases a fuzz or property check ran and prints them, with the
/// time taken, when dropped (the long runs' figures).
pub struct Cases(&'static str, std::sync::atomic::AtomicUsize, Instant);

impl Cases {
    /// A counter for the check `name`.
    pub fn new(name: &'static str) -> Self {
        Self(name, std::sync::atomic::AtomicUsize::new(0), Instant::now())
    }

    /// One more case.
    pub fn one(&self) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Cases {
    fn drop(&mut self) {
        eprintln!(
            "fuzz {}: {} cases in {:.1} s",
            self.0,
            self.1.load(std::sync::atomic::Ordering::Relaxed),
            self.2.elapsed().as_secs_f64()
        );
    }
}

/// Routers, transports, producers and consumers over every worker of a node.
pub fn node_totals(info: &throng_proto::media::NodeInfo) -> (u32, u32, u32, u32) {
    info.workers.iter().fold((0, 0, 0, 0), |(r, t, p, c), w| {
        (
            r + w.routers,
            t + w.transports,
            p + w.producers,
            c + w.consumers,
        )
    })
}

/// A TCP proxy on 127.0.0.1 the test can cut, standing for a network
/// partition between a service and what it talks to: while cut, open
/// connections are closed and new ones are accepted and closed at once (the
/// other side answers nothing; it never refuses, as a dead process would).
pub struct Proxy {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (cut, open) = (cut.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut open = open.lock().unwrap();
                    open.retain(|h: &tokio::task::AbortHandle| !h.is_finished());
                    open.push(conn.abort_handle());
                }
            })
        };
        Self {
            addr,
            cut,
            open,
            task,
        }
    }

    /// Cuts: open connections close, new ones are closed at once.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.open.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
