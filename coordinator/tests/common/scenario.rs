//! Real-browser scenarios: a cluster serving the built web client and the
//! runner of `client-web/tests/<script>` (playwright-core driving Debian's
//! Chromium), with the harness lines a script may send (stop a node, start
//! and stop the load generator, open a hook gate, SIGKILL a coordinator).
//! Used by `web_client.rs` and `turn.rs`.

use std::path::PathBuf;
use std::time::Duration;

use coordinator::auth::TokenKey;
use coordinator::config::vars as cvars;
use serde_json::json;

use super::*;

pub fn client_web() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../client-web")
        .canonicalize()
        .expect("client-web/ exists")
}

/// A cluster serving the built web client: Redis, `nodes` media nodes with
/// `workers` workers each, one coordinator.
pub async fn web_cluster(redis: &RedisServer, nodes: usize, workers: usize) -> (Cluster, String) {
    web_cluster_with(redis, nodes, workers, &[]).await
}

/// [`web_cluster`] with more coordinator settings (`THRONG_*`, value).
pub async fn web_cluster_with(
    redis: &RedisServer,
    nodes: usize,
    workers: usize,
    extra: &[(&str, String)],
) -> (Cluster, String) {
    let dist = client_web().join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "client-web/dist is not built: run `make test` (or `npm ci && npm run build` in client-web/)"
    );
    let mut settings = vec![(cvars::WEB_ROOT, dist.display().to_string())];
    settings.extend(extra.iter().cloned());
    let c = cluster_of_with(nodes, workers, 100_000, Some(redis), &settings).await;
    let http = c.http;
    let base = format!("http://{http}");
    (c, base)
}

/// Runs `client-web/tests/<script>` with the cluster's URL, keys and tokens;
/// panics with its output unless it exits 0. A line `stop-node <id>` on the
/// script's stdout stops (drains) that media node, as SIGTERM would; the
/// script reads `stopped <id>` back on stdin.
pub async fn run_scenario(
    script: &str,
    base: &str,
    room: &str,
    identities: &[&str],
    limit: Duration,
    cluster: &mut Cluster,
) {
    run_scenario_with(
        script,
        base,
        room,
        identities,
        limit,
        cluster,
        Extra::default(),
    )
    .await
}

/// A harness rule of a scenario's own: the answer to a line, if it knows it.
pub type Reply = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What some scenarios need beyond the others.
#[derive(Default)]
pub struct Extra {
    /// Merged into the script's settings.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The load generator's arguments: a `start-load` line starts it, a
    /// `stop-load` line stops it (its participants leave).
    pub load: Vec<String>,
    /// A hook gate an `open-gate` line opens.
    pub gate: Option<throng_hooks::GateHandle>,
    /// A process a `kill-coordinator` line SIGKILLs (answered `killed`).
    pub kill: Option<u32>,
    /// More environment for the script (and the browsers it starts).
    pub env: Vec<(String, String)>,
    /// A command the script runs under (e.g. `ip netns exec NAME`: its
    /// browsers then live in that network namespace).
    pub wrap: Vec<String>,
    /// Answers lines no other harness rule knows (`Some(reply)`).
    pub reply: Option<Reply>,
}

/// The load generator's process group: terminated when dropped too (a
/// scenario that fails before `stop-load` left its ffmpeg sources running
/// after the test, eating a core of later runs).
struct LoadGroup(tokio::process::Child);

impl Drop for LoadGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = throng_ops::terminate_group(pid as i32);
        }
    }
}

/// `loadgen surge` arguments for a scenario's `start-load`: `shape` (joins,
/// rooms, event ...) through the coordinator at `url`, signalling-only
/// participants who stay until stopped.
pub fn surge_load(url: &str, shape: &[&str]) -> Vec<String> {
    let common = [
        "surge",
        "--url",
        url,
        "--token-secret",
        SECRET,
        "--media",
        "0",
        "--hold-secs",
        "600",
        "--timeout-secs",
        "120",
    ];
    common.iter().chain(shape).map(|s| s.to_string()).collect()
}

pub fn loadgen_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coordinator")).with_file_name("loadgen");
    assert!(
        bin.exists(),
        "{} not built (cargo build --workspace)",
        bin.display()
    );
    bin
}

pub async fn run_scenario_with(
    script: &str,
    base: &str,
    room: &str,
    identities: &[&str],
    limit: Duration,
    cluster: &mut Cluster,
    extra: Extra,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let key = TokenKey::new(SECRET);
    let tokens: Vec<String> = identities
        .iter()
        .map(|id| key.mint(room, id, true, 3600))
        .collect();
    // The test run writes its screenshots under target/ so that a test run
    // leaves the checkout clean; `THRONG_UPDATE_SCREENSHOTS=1` writes them
    // into docs/screenshots/ (the README's pictures) instead.
    let screenshots = if std::env::var_os("THRONG_UPDATE_SCREENSHOTS").is_some() {
        client_web().join("../docs/screenshots")
    } else {
        client_web().join("../target/screenshots")
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut settings = json!({
        "url": base,
        "adminKey": ADMIN_KEY,
        "room": room,
        "tokens": tokens,
        "screenshots": screenshots.canonicalize().unwrap(),
    });
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.settings.clone());
    let mut load: Option<LoadGroup> = None;
    let mut command = match extra.wrap.split_first() {
        Some((first, rest)) => {
            let mut c = tokio::process::Command::new(first);
            c.args(rest).arg("node");
            c
        }
        None => tokio::process::Command::new("node"),
    };
    let mut child = command
        .arg(format!("tests/{script}"))
        .current_dir(client_web())
        .env("THRONG_E2E", settings.to_string())
        .envs(extra.env.iter().cloned())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("failed to start node (is Node.js installed?)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The script's account, passed on as it comes (a scenario that hangs
    // still shows how far it got) and kept for the failure message.
    let mut stderr_lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        while let Ok(Some(line)) = stderr_lines.next_line().await {
            eprintln!("{line}");
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let run = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(answer) = extra.reply.as_ref().and_then(|f| f(&line)) {
                stdin
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .unwrap();
                continue;
            }
            if line == "start-load" {
                let child = tokio::process::Command::new(loadgen_binary())
                    .args(&extra.load)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    // Its own process group: stopping it stops the ffmpeg
                    // sources it started too (a SIGKILL of loadgen alone
                    // left them running).
                    .process_group(0)
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start loadgen");
                load = Some(LoadGroup(child));
                stdin.write_all(b"load-started\n").await.unwrap();
                continue;
            }
            if line == "kill-coordinator" {
                if let Some(pid) = extra.kill {
                    // SIGKILL: no drain, no goodbye on any socket.
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                stdin.write_all(b"killed\n").await.unwrap();
                continue;
            }
            if line == "open-gate" {
                if let Some(gate) = &extra.gate {
                    gate.open();
                }
                stdin.write_all(b"gate-opened\n").await.unwrap();
                continue;
            }
            if line == "stop-load" {
                if let Some(mut group) = load.take() {
                    if let Some(pid) = group.0.id() {
                        let _ = throng_ops::terminate_group(pid as i32);
                    }
                    let _ = group.0.wait().await;
                }
                stdin.write_all(b"load-stopped\n").await.unwrap();
                continue;
            }
            if let Some(id) = line.strip_prefix("stop-node ") {
                let index: usize = id
                    .trim()
                    .strip_prefix("node-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("stop-node node-<n>");
                if let Some(stop) = cluster.node_stops[index - 1].take() {
                    let _ = stop.send(());
                }
                stdin
                    .write_all(format!("stopped {id}\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
        child.wait().await
    };
    let status = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
        .expect("scenario process");
    let stderr = stderr_task.await.unwrap_or_default();
    assert!(status.success(), "{script} failed ({status}):\n{stderr}");
}
