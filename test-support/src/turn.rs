//! A real TURN server for a test: Debian's coturn (`turnserver`) on
//! 127.0.0.1, with coturn's REST-API credentials (`use-auth-secret`), UDP
//! and TCP on one port and, given a certificate, TLS on another; relays on
//! loopback (loopback peers allowed: the media node is on 127.0.0.1). Its
//! log is kept to read back; killed on drop.

use std::process::{Child, Command, Stdio};

use crate::tls::Issued;
use crate::{free_port_block, free_tcp_port, TempDir};

/// A running coturn.
pub struct Coturn {
    child: Child,
    /// UDP and TCP listening port (`turn:127.0.0.1:PORT`).
    pub port: u16,
    /// TLS listening port (`turns:127.0.0.1:PORT`), when started with a certificate.
    pub tls_port: Option<u16>,
    /// First and last relay port.
    pub relay_ports: (u16, u16),
    /// The address it listens and relays on.
    pub ip: String,
    dir: TempDir,
}

impl Coturn {
    /// Starts coturn with `secret` as its static-auth-secret, TLS with `cert`
    /// when given, and waits until it listens.
    pub fn start(secret: &str, cert: Option<&Issued>) -> Self {
        Self::start_on("127.0.0.1", secret, cert)
    }

    /// [`Coturn::start`] listening and relaying on `ip` (an address of the
    /// test's own, such as the outside end of a [`crate::netns::Netns`]).
    pub fn start_on(ip: &str, secret: &str, cert: Option<&Issued>) -> Self {
        let dir = TempDir::new("coturn");
        let port = free_tcp_port();
        let tls_port = cert.map(|_| free_tcp_port());
        let relay = free_port_block(40);
        let mut cmd = Command::new("turnserver");
        cmd.args([
            "-n",
            "--no-cli",
            "--fingerprint",
            "--simple-log",
            "--verbose",
        ])
        .arg(format!("--listening-ip={ip}"))
        .arg(format!("--relay-ip={ip}"))
        .arg(format!("--listening-port={port}"))
        .args(["--use-auth-secret", "--realm=throng"])
        .arg(format!("--static-auth-secret={secret}"))
        // The media node is on loopback too (coturn refuses loopback
        // peers unless told).
        .arg("--allow-loopback-peers")
        .arg(format!("--min-port={relay}"))
        .arg(format!("--max-port={}", relay + 39))
        .arg(format!(
            "--log-file={}",
            dir.path().join("turn.log").display()
        ))
        .arg(format!(
            "--pidfile={}",
            dir.path().join("turn.pid").display()
        ))
        .arg(format!("--db={}", dir.path().join("turndb").display()))
        .arg("--no-dtls");
        match (cert, tls_port) {
            (Some(cert), Some(tls)) => {
                cmd.arg(format!("--tls-listening-port={tls}"))
                    .arg(format!("--cert={}", cert.cert.display()))
                    .arg(format!("--pkey={}", cert.key.display()))
                    .args(["--no-tlsv1", "--no-tlsv1_1"]);
            }
            _ => {
                cmd.arg("--no-tls");
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian's coturn package; scripts/install-deps.sh installs it)");
        let wait = |port: u16, what: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::net::TcpStream::connect((ip, port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what} did not listen on {ip}:{port}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        wait(port, "coturn");
        if let Some(tls) = tls_port {
            wait(tls, "coturn (TLS)");
        }
        Self {
            child,
            port,
            tls_port,
            relay_ports: (relay, relay + 39),
            ip: ip.to_string(),
            dir,
        }
    }

    /// `turn:` over UDP.
    pub fn udp_url(&self) -> String {
        format!("turn:{}:{}?transport=udp", self.ip, self.port)
    }

    /// `turn:` over TCP.
    pub fn tcp_url(&self) -> String {
        format!("turn:{}:{}?transport=tcp", self.ip, self.port)
    }

    /// `turns:` (TLS over TCP) for the name `host` the certificate carries.
    pub fn tls_url(&self, host: &str) -> String {
        format!(
            "turns:{host}:{}?transport=tcp",
            self.tls_port.expect("started with a certificate")
        )
    }

    /// CPU time coturn used so far (user + system), milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        let hz: u64 = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100);
        ticks * 1000 / hz
    }

    /// What coturn logged so far (coturn appends the date to the file name
    /// unless told otherwise: every file it wrote, in order).
    pub fn log(&self) -> String {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("turn") && n.ends_with(".log"))
        });
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Asks for a relay with `username` and `credential`, as a client
    /// would (coturn's own `turnutils_uclient`, a few packets between two
    /// allocations): whether coturn allocated it.
    pub fn allocates(&self, username: &str, credential: &str) -> bool {
        let out = Command::new("turnutils_uclient")
            .args(["-y", "-n", "2", "-m", "1", "-l", "100"])
            .args(["-u", username, "-w", credential])
            .args(["-p", &self.port.to_string()])
            .arg(&self.ip)
            .output()
            .expect("turnutils_uclient (Debian's coturn package)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        !text.contains("Cannot complete Allocation") && text.contains("Total lost packets")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
