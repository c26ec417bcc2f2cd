//! The web client (client-web) in real headless Chromium against a real
//! coordinator, media node and redis-server: each test runs one scenario script
//! from `client-web/tests/` (playwright-core driving /usr/bin/chromium with a
//! fake camera and microphone) and fails with the script's account of what it
//! saw. Needs node, client-web/node_modules and client-web/dist (built by
//! `make test` through scripts/install-deps.sh).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use coordinator::auth::TokenKey;
use coordinator::config::vars as cvars;
use serde_json::json;

fn client_web() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../client-web")
        .canonicalize()
        .expect("client-web/ exists")
}

/// A cluster serving the built web client: Redis, `nodes` media nodes with
/// `workers` workers each, one coordinator.
async fn web_cluster(redis: &RedisServer, nodes: usize, workers: usize) -> (Cluster, String) {
    let dist = client_web().join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "client-web/dist is not built: run `make test` (or `npm ci && npm run build` in client-web/)"
    );
    let mut addrs = Vec::new();
    let mut node_stops = Vec::new();
    for i in 0..nodes {
        let (addr, stop) = start_node(&format!("node-{}", i + 1), workers, Some(redis)).await;
        addrs.push(addr.to_string());
        node_stops.push(Some(stop));
    }
    let (http, coord_stop) = start_coordinator_with(
        &addrs,
        100_000,
        Some(redis),
        &[(cvars::WEB_ROOT, dist.display().to_string())],
    )
    .await;
    let c = Cluster {
        url: format!("ws://{http}/ws"),
        http,
        node_stops,
        coord_stop: Some(coord_stop),
    };
    c.wait_for_nodes(nodes).await;
    let base = format!("http://{http}");
    (c, base)
}

/// Runs `client-web/tests/<script>` with the cluster's URL, keys and tokens;
/// panics with its output unless it exits 0. A line `stop-node <id>` on the
/// script's stdout stops (drains) that media node, as SIGTERM would; the
/// script reads `stopped <id>` back on stdin.
async fn run_scenario(
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

/// What some scenarios need beyond the others.
#[derive(Default)]
struct Extra {
    /// Merged into the script's settings.
    settings: serde_json::Map<String, serde_json::Value>,
    /// The load generator's arguments: a `start-load` line starts it, a
    /// `stop-load` line stops it (its participants leave).
    load: Vec<String>,
    /// A hook gate an `open-gate` line opens.
    gate: Option<throng_hooks::GateHandle>,
    /// A process a `kill-coordinator` line SIGKILLs (answered `killed`).
    kill: Option<u32>,
}

fn loadgen_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coordinator")).with_file_name("loadgen");
    assert!(
        bin.exists(),
        "{} not built (cargo build --workspace)",
        bin.display()
    );
    bin
}

async fn run_scenario_with(
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
    let mut load: Option<tokio::process::Child> = None;
    let mut child = tokio::process::Command::new("node")
        .arg(format!("tests/{script}"))
        .current_dir(client_web())
        .env("THRONG_E2E", settings.to_string())
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
                load = Some(child);
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
                if let Some(mut child) = load.take() {
                    if let Some(pid) = child.id() {
                        let _ = throng_ops::terminate_group(pid as i32);
                    }
                    let _ = child.wait().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_three_people_join_through_the_lobby_and_see_and_hear_each_other() {
    let redis = RedisServer::start();
    let (mut c, base) = web_cluster(&redis, 1, 1).await;
    run_scenario(
        "three-browsers.mjs",
        &base,
        "three",
        &["ada", "grace", "linus"],
        Duration::from_secs(150),
        &mut c,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_through_thirteen_people_and_only_the_visible_page_is_consumed() {
    let redis = RedisServer::start();
    let (mut c, base) = web_cluster(&redis, 1, 1).await;
    let ids: Vec<String> = std::iter::once("organiser".to_string())
        .chain((1..=12).map(|i| format!("bot-{i:02}")))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    run_scenario(
        "paging.mjs",
        &base,
        "paging",
        &ids,
        Duration::from_secs(180),
        &mut c,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_controls_wait_for_connected_toggles_leak_nothing_and_recordings_download() {
    let redis = RedisServer::start();
    let (mut c, base) = web_cluster(&redis, 1, 1).await;
    run_scenario(
        "controls.mjs",
        &base,
        "controls",
        &["no-ice", "phone", "desk"],
        Duration::from_secs(180),
        &mut c,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_waits_and_retries_by_itself_when_the_join_queue_is_full() {
    use coordinator::room::HOOK_JOIN_AT_LOCK;
    use throng_test_support::{Coordinator, Node};
    let dist = client_web().join("dist");
    let node = Node::start(Node::env("node-1", 1, None)).await;
    let mut env = Coordinator::env(&[node.grpc.to_string()], 100_000, None);
    env.insert(cvars::WEB_ROOT.into(), dist.display().to_string());
    // One join placed at a time, one in line at most.
    env.insert(cvars::JOIN_CONCURRENCY.into(), "1".into());
    env.insert(cvars::QUEUE_MAX.into(), "1".into());
    let hooks = coordinator::Hooks::enabled();
    let coord = Coordinator::start_with(env, hooks.clone()).await;
    coord.wait_for_nodes(1).await;
    // Someone's join holds the only slot (at the room's lock), someone else
    // fills the line: the browser finds it full.
    let gate = hooks.pause_at(HOOK_JOIN_AT_LOCK);
    let url = coord.ws_url();
    let holders = tokio::spawn(async move {
        let mut first = Client::connect_url(&url).await;
        let mut second = Client::connect_url(&url).await;
        let (a, b) = tokio::join!(
            first.join("busy", "holder", false),
            second.join("busy", "waiter", false)
        );
        (first, second, a, b)
    });
    assert!(gate.reached(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Cluster {
        url: coord.ws_url(),
        http: coord.http,
        node_stops: Vec::new(),
        coord_stop: None,
    };
    run_scenario_with(
        "busy.mjs",
        &format!("http://{}", coord.http),
        "busy",
        &["ada"],
        Duration::from_secs(120),
        &mut c,
        Extra {
            gate: Some(gate),
            ..Extra::default()
        },
    )
    .await;
    let (_first, _second, a, b) = holders.await.unwrap();
    assert_eq!(
        (a["type"].as_str(), b["type"].as_str()),
        (Some("joined"), Some("joined"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_rejoins_transparently_when_its_media_node_goes_away() {
    let redis = RedisServer::start();
    let (mut c, base) = web_cluster(&redis, 2, 1).await;
    run_scenario(
        "reconnect.mjs",
        &base,
        "reconnect",
        &["ada", "grace"],
        Duration::from_secs(150),
        &mut c,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_six_people_with_mic_and_camera_on_all_see_and_hear_each_other_in_repeated_rounds()
{
    let redis = RedisServer::start();
    let (mut c, base) = web_cluster(&redis, 1, 1).await;
    run_scenario(
        "six-people.mjs",
        &base,
        "six",
        &["ada", "grace", "linus", "barbara", "dennis", "frances"],
        Duration::from_secs(300),
        &mut c,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_admin_view_shows_every_worker_move_during_a_loadgen_surge() {
    let redis = RedisServer::start();
    let mut addrs = Vec::new();
    let mut node_stops = Vec::new();
    for i in 0..2 {
        let (addr, stop) = start_node(&format!("node-{}", i + 1), 2, Some(&redis)).await;
        addrs.push(addr.to_string());
        node_stops.push(Some(stop));
    }
    // Four participants (26 units each) per worker, 13 people in three rooms
    // (ten joins and a sender per room):
    // each room fills a worker, the largest spills to the fourth.
    // The load generator is killed at the end: its participants vanish
    // without a close, and are kept for a resume this long.
    let (http, coord_stop) = start_coordinator_with(
        &addrs,
        104,
        Some(&redis),
        &[(cvars::RESUME_GRACE_SECS, "2".into())],
    )
    .await;
    let mut c = Cluster {
        url: format!("ws://{http}/ws"),
        http,
        node_stops,
        coord_stop: Some(coord_stop),
    };
    c.wait_for_nodes(2).await;
    let load: Vec<String> = [
        "surge",
        "--url",
        &c.url,
        "--token-secret",
        SECRET,
        "--joins",
        "10",
        "--rooms",
        "3",
        "--media",
        "0",
        "--hold-secs",
        "600",
        "--timeout-secs",
        "120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut settings = serde_json::Map::new();
    settings.insert("workers".into(), json!(4));
    run_scenario_with(
        "admin-view.mjs",
        &format!("http://{http}"),
        "unused",
        &[],
        Duration::from_secs(240),
        &mut c,
        Extra {
            settings,
            load,
            ..Extra::default()
        },
    )
    .await;
}

/// A load balancer in front of two coordinators, as an operator's would
/// be: each connection goes to `first` while it accepts connections, else to
/// `second`. Runs until the test ends.
async fn load_balancer(first: std::net::SocketAddr, second: std::net::SocketAddr) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let up = match tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(first),
                )
                .await
                {
                    Ok(Ok(s)) => Ok(s),
                    _ => tokio::net::TcpStream::connect(second).await,
                };
                if let Ok(mut up) = up {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A coordinator SIGKILLed under two browsers whose sessions it relayed to
/// the room's owner: their sockets drop, they resume through the load
/// balancer at the other coordinator with the same transports, producers
/// and consumers, and their video never stops decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_keeps_its_media_when_its_coordinator_is_killed() {
    coordinator_killed_under_two_browsers(false).await;
}

/// The same when the killed coordinator hosted the room itself: the other
/// coordinator takes the room over and rebuilds it from the media node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_keeps_its_media_when_the_rooms_own_coordinator_is_killed() {
    coordinator_killed_under_two_browsers(true).await;
}

/// Two coordinators on one Redis behind a load balancer that prefers the
/// second (a process, SIGKILLed by the scenario's `kill-coordinator`); the
/// room is first joined through the first (`owner_killed` false: it hosts
/// the room, the second relays) or through the second (it hosts the room).
async fn coordinator_killed_under_two_browsers(owner_killed: bool) {
    let redis = RedisServer::start();
    let (mut c, survivor_base) = web_cluster(&redis, 1, 1).await;
    let dist = client_web().join("dist");
    // The second coordinator, a process of its own (to be SIGKILLed).
    let nodes = admin(&c, "/admin/nodes").await;
    let grpc = nodes["nodes"][0]["grpcAddress"]
        .as_str()
        .expect("the node's gRPC address")
        .to_string();
    let mut env = throng_test_support::Coordinator::env(&[grpc], 100_000, Some(&redis.url()));
    env.insert(cvars::WEB_ROOT.into(), dist.display().to_string());
    let (mut doomed, doomed_addr) = coordinator_process(env).await;
    throng_test_support::wait_for_nodes(doomed_addr, 1).await;
    // The room's host is whichever coordinator someone joined first.
    let anchor_url = if owner_killed {
        format!("ws://{doomed_addr}/ws")
    } else {
        c.url.clone()
    };
    let mut anchor = Client::connect_url(&anchor_url).await;
    assert_eq!(
        anchor.join("survive", "anchor", false).await["type"],
        "joined"
    );
    let lb = load_balancer(doomed_addr, c.http).await;
    let mut settings = serde_json::Map::new();
    let before = if owner_killed {
        format!("http://{doomed_addr}")
    } else {
        survivor_base.clone()
    };
    settings.insert("ownerBefore".into(), json!(before));
    settings.insert("ownerAfter".into(), json!(survivor_base));
    // A taken-over room is rebuilt from the node: the anchor, who never made
    // a transport, has nothing there (and its socket died anyway).
    let hosted_after = if owner_killed {
        "ada,grace"
    } else {
        "ada,anchor,grace"
    };
    settings.insert("hostedAfter".into(), json!(hosted_after));
    run_scenario_with(
        "coordinator-crash.mjs",
        &lb,
        "survive",
        &["ada", "grace"],
        Duration::from_secs(150),
        &mut c,
        Extra {
            settings,
            kill: doomed.id(),
            ..Extra::default()
        },
    )
    .await;
    let status = doomed.wait().await.unwrap();
    assert!(
        !status.success(),
        "the second coordinator was killed: {status}"
    );
    if owner_killed {
        // The anchor's socket died with its coordinator.
        return;
    }
    // The anchor saw the two arrive once each and leave once each, at the end.
    let mut seen = std::mem::take(&mut anchor.backlog);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut anchor.ws),
    )
    .await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            seen.push(serde_json::from_str(&t).unwrap());
        }
    }
    let count = |t: &str| seen.iter().filter(|m| m["type"] == t).count();
    assert_eq!((count("peerJoined"), count("peerLeft")), (2, 2), "{seen:?}");
}

/// The client's pure layout rules (paging, pins, grid shape, simulcast layer
/// per tile width), with node's own test runner.
#[test]
fn client_layout_rules() {
    let out = std::process::Command::new("node")
        .args(["--test", "tests/unit/"])
        .current_dir(client_web())
        .output()
        .expect("failed to start node (is Node.js installed?)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# fail 0"), "{text}");
}
