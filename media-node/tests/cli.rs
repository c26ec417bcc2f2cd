//! The `media-node` binary as an operator or orchestrator meets it: `--help`,
//! `--version`, `--check-config`, exit 2 with the setting named for bad
//! configuration and for addresses in use, secrets from files, JSON logs,
//! `--probe`, and readiness that follows Redis.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use media_node::config::vars;

const BIN: &str = env!("CARGO_BIN_EXE_media-node");

/// Runs the binary to completion with exactly `env` (plus `args`).
fn run(args: &[&str], env: &HashMap<String, String>) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("run media-node")
}

fn valid_env() -> HashMap<String, String> {
    node_env("cli-node", 2, None)
}

#[test]
fn help_lists_every_setting_and_version_prints_the_version() {
    let out = run(&["--help"], &HashMap::new());
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (var, _) in vars::ALL {
        assert!(help.contains(var), "--help does not list {var}");
    }
    for word in [
        "RUST_LOG",
        "THRONG_LOG_FORMAT",
        "drain",
        "--check-config",
        "--probe",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    let out = run(&["--version"], &HashMap::new());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("media-node {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--frobnicate"], &HashMap::new());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_accepts_a_good_environment_and_names_the_bad_setting() {
    let out = run(&["--check-config"], &valid_env());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for (var, _) in vars::ALL {
        assert!(text.contains(&format!("{var}=")), "{var} not described");
    }

    let cases: &[(&str, &str, &str)] = &[
        (vars::WORKERS, "0", vars::WORKERS),
        (
            throng_ops::REDIS_CA_FILE,
            "/nonexistent/ca.pem",
            throng_ops::REDIS_CA_FILE,
        ),
        (vars::REDIS_URL, "redis://host:port", vars::REDIS_URL),
        (vars::GRPC_ADVERTISE, "nohost", vars::GRPC_ADVERTISE),
        (
            "THRONG_REDIS_URL_FILE",
            "/nonexistent/redis-url",
            "THRONG_REDIS_URL_FILE",
        ),
        ("THRONG_LOG_FORMAT", "xml", "THRONG_LOG_FORMAT"),
    ];
    for (var, value, named) in cases {
        let mut env = valid_env();
        env.insert(var.to_string(), value.to_string());
        for args in [&["--check-config"][..], &[][..]] {
            let out = run(args, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{var}={value} {args:?}: {stderr}"
            );
            assert!(stderr.contains(named), "{var}={value}: {stderr}");
        }
    }
}

#[test]
fn the_redis_url_may_come_from_a_file_and_its_password_is_not_printed() {
    let dir = std::env::temp_dir().join(format!("throng-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("redis-url");
    std::fs::write(
        &file,
        "redis://default:hunter2hunter2@redis.internal:6379/0\n",
    )
    .unwrap();
    let mut env = valid_env();
    env.insert("THRONG_REDIS_URL_FILE".into(), file.display().to_string());
    let out = run(&["--check-config"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("THRONG_REDIS_URL=redis://default:***@redis.internal:6379/0"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));

    env.insert(vars::REDIS_URL.into(), "redis://other:6379".into());
    let out = run(&["--check-config"], &env);
    assert_eq!(out.status.code(), Some(2), "both the value and the file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the binary and returns how it exited and what it said.
async fn exit_of(env: HashMap<String, String>) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(BIN)
            .env_clear()
            .envs(&env)
            .output(),
    )
    .await
    .expect("media-node should exit")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_exits_2_naming_its_setting() {
    // gRPC and HTTP: a TCP listener already holds the port.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    for var in [vars::GRPC_LISTEN, vars::HTTP_LISTEN] {
        let mut env = valid_env();
        env.insert(var.into(), taken.clone());
        let (code, stderr) = exit_of(env).await;
        assert_eq!(code, Some(2), "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    // A worker's RTC port: a UDP socket holds it.
    let env = valid_env();
    let base: u16 = env[vars::RTC_BASE_PORT].parse().unwrap();
    let udp = std::net::UdpSocket::bind(("127.0.0.1", base + 1)).unwrap();
    let (code, stderr) = exit_of(env).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(vars::RTC_BASE_PORT), "{stderr}");
    drop((held, udp));
}

type LogLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Starts the node through `command` with `env` and JSON logs at `info`;
/// returns it, its ready line (stdout) and its log lines (stderr).
async fn start_json(
    mut command: tokio::process::Command,
    env: &mut HashMap<String, String>,
) -> (tokio::process::Child, String, LogLines) {
    use tokio::io::AsyncBufReadExt;
    env.insert("THRONG_LOG_FORMAT".into(), "json".into());
    env.insert("RUST_LOG".into(), "info".into());
    let mut child = command
        .env_clear()
        .envs(env.iter())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .expect("ready line")
        .unwrap()
        .expect("ready line");
    (child, ready, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_probe_and_readiness_that_follows_redis() {
    let redis = Redis::start();
    let mut env = node_env("json-node", 1, Some(&redis));
    let (mut child, ready, mut err) = start_json(tokio::process::Command::new(BIN), &mut env).await;
    let http: std::net::SocketAddr = ready
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .expect(&ready);
    // Every log line is one JSON object with a level and a message.
    let mut seen_ready = false;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(500), err.next_line()).await
    {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        seen_ready |= v["message"] == "media node ready";
    }
    assert!(seen_ready, "the ready event was not logged as JSON");
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });

    // --probe: what the image's HEALTHCHECK runs, against the live node.
    let mut probe_env = env.clone();
    probe_env.insert(vars::HTTP_LISTEN.into(), http.to_string());
    let probe = |path: &'static str, env: HashMap<String, String>| async move {
        tokio::process::Command::new(BIN)
            .args(["--probe", path])
            .env_clear()
            .envs(&env)
            .output()
            .await
            .unwrap()
            .status
            .code()
    };
    assert_eq!(probe("/healthz", probe_env.clone()).await, Some(0));
    assert_eq!(probe("/readyz", probe_env.clone()).await, Some(0));
    assert_eq!(probe("/nothing", probe_env.clone()).await, Some(1));

    // Redis gone: the reports cannot be written, the node is not ready (no
    // coordinator can see it) but alive.
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = throng_ops::http_get(http, "/readyz", Duration::from_secs(2))
            .await
            .unwrap();
        if code == 503 {
            assert!(body.contains("Redis"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe("/readyz", probe_env.clone()).await, Some(1));
    assert_eq!(probe("/healthz", probe_env).await, Some(0));
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopping_while_redis_is_away_exits_promptly() {
    // Its last Redis writes (draining report, removal) are bounded: a stop
    // used to wait about 19 s for a Redis that was gone.
    let redis = Redis::start();
    let mut env = node_env("stop-without-redis", 1, Some(&redis));
    env.insert("THRONG_DRAIN_GRACE_SECS".into(), "1".into());
    let mut node = NodeProcess::spawn(env).await;
    drop(redis);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    node.signal("TERM");
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), node.child.wait())
        .await
        .expect("the node did not stop within 15 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "stopping took {:?}",
        started.elapsed()
    );
}

/// Starts the node under a shell that lowers its open-file limits first
/// (soft 256, hard `hard`); returns its log lines (JSON) up to "ready" and
/// its open-files limit line from /proc.
async fn start_with_nofile(hard: u32) -> (Vec<serde_json::Value>, String) {
    let mut env = node_env("nofile-node", 1, None);
    let mut shell = tokio::process::Command::new("/bin/sh");
    shell.args([
        "-c",
        &format!("ulimit -S -n 256 && ulimit -H -n {hard} && exec \"$0\""),
        BIN,
    ]);
    let (mut child, _ready, mut err) = start_json(shell, &mut env).await;
    let pid = child.id().unwrap();
    let mut logs = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(500), err.next_line()).await
    {
        logs.push(serde_json::from_str(&line).unwrap());
    }
    // The workers are threads of the node's process (mediasoup's Rust crate
    // runs them in-process): they share its limit.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    child.kill().await.unwrap();
    (logs, line)
}

fn logged<'a>(logs: &'a [serde_json::Value], message: &str) -> Option<&'a serde_json::Value> {
    logs.iter().find(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(message))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_to_the_hard_one_and_a_low_one_is_logged() {
    let (logs, worker) = start_with_nofile(4000).await;
    let raised = logged(&logs, "open files limit raised").expect("raise logged");
    assert_eq!(raised["before"], 256, "{raised}");
    assert_eq!(raised["now"], 4000, "{raised}");
    assert!(
        worker.split_whitespace().filter(|w| *w == "4000").count() == 2,
        "soft = hard = 4000, for the node and its worker threads: {worker}"
    );
    assert!(logged(&logs, "open files limit is lower").is_none());
    // A hard limit below what a 1500-consumer worker may need: said so.
    let (logs, _) = start_with_nofile(2000).await;
    let low = logged(&logs, "open files limit is lower").expect("warning logged");
    assert_eq!(low["level"], "WARN", "{low}");
    assert_eq!(low["limit"], 2000, "{low}");
}
