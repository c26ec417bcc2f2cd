//! The `coordinator` binary as an operator or orchestrator meets it: `--help`,
//! `--version`, `--check-config`, exit 2 with the setting named for bad
//! configuration and for a listen address in use, secrets from files, and
//! `/readyz` that says whether this coordinator can place anyone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coordinator::config::vars;
use throng_test_support::{free_tcp_port, Coordinator, Node, Redis};

const BIN: &str = env!("CARGO_BIN_EXE_coordinator");

fn run(args: &[&str], env: &HashMap<String, String>) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("run coordinator")
}

/// A valid single-machine environment (no Redis: the node list is polled).
fn valid_env() -> HashMap<String, String> {
    let port = free_tcp_port();
    Coordinator::env(&[format!("127.0.0.1:{port}")], 100, None)
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
        "_FILE",
        "--check-config",
        "token",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    let out = run(&["--version"], &HashMap::new());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("coordinator {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        run(&["serve", "now"], &HashMap::new()).status.code(),
        Some(2)
    );
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
    assert!(
        !text.contains(throng_test_support::SECRET),
        "a secret was printed"
    );

    let mut cases: Vec<(HashMap<String, String>, &str)> = Vec::new();
    for (var, value) in [
        (throng_ops::REDIS_CA_FILE, "/nonexistent/ca.pem"),
        (vars::REDIS_URL, "http://redis.example"),
        (vars::LISTEN, "everywhere"),
        (vars::TOKEN_SECRET, "too-short"),
        (vars::DRAIN_GRACE_SECS, "a while"),
        ("THRONG_ADMIN_KEY_FILE", "/nonexistent/admin-key"),
        ("THRONG_LOG_FORMAT", "xml"),
    ] {
        let mut env = valid_env();
        env.insert(var.into(), value.into());
        cases.push((env, var));
    }
    let mut missing = valid_env();
    missing.remove(vars::API_KEY);
    cases.push((missing, vars::API_KEY));
    for (env, named) in cases {
        for args in [&["--check-config"][..], &[][..]] {
            let out = run(args, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{named} {args:?}: {stderr}");
            assert!(stderr.contains(named), "{named}: {stderr}");
        }
    }
}

#[test]
fn secrets_may_come_from_files_and_the_token_command_reads_them_too() {
    let dir = std::env::temp_dir().join(format!("throng-coord-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = valid_env();
    for (var, file) in [
        (vars::TOKEN_SECRET, "token-secret"),
        (vars::API_KEY, "api-key"),
        (vars::ADMIN_KEY, "admin-key"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, format!("{}\n", env[var])).unwrap();
        env.remove(var);
        env.insert(format!("{var}_FILE"), path.display().to_string());
    }
    let out = run(&["--check-config"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["token", "--room", "r", "--identity", "i"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let key = coordinator::auth::TokenKey::new(throng_test_support::SECRET);
    assert!(
        key.verify(token.trim()).is_ok(),
        "token not signed with the file's secret"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_listen_address_in_use_exits_2_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = valid_env();
    env.insert(vars::LISTEN.into(), held.local_addr().unwrap().to_string());
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(BIN)
            .env_clear()
            .envs(&env)
            .output(),
    )
    .await
    .expect("coordinator should exit")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(vars::LISTEN), "{stderr}");
}

async fn readyz(c: &Coordinator) -> (u16, String) {
    throng_ops::http_get(c.http, "/readyz", Duration::from_secs(2))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_media_nodes_and_redis() {
    let redis = Redis::start();
    let coordinator = Coordinator::start(Coordinator::env(&[], 100, Some(&redis.url()))).await;
    let (code, body) = readyz(&coordinator).await;
    assert_eq!(code, 503, "ready without a media node: {body}");
    let (health, _) = throng_ops::http_get(coordinator.http, "/healthz", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(health, 200);

    let node = Node::start(Node::env("ready-node", 1, Some(&redis.url()))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&coordinator).await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready with a live node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The only node drains: nobody can be placed here any more.
    let mut node = node;
    let stop = node.take_stop();
    drop(stop);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = readyz(&coordinator).await;
        if code == 503 {
            assert!(body.contains("media node"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with no usable node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Redis gone: not ready, and says why.
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = readyz(&coordinator).await;
        if code == 503 && body.contains("registry") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still ready without Redis: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    coordinator.stop().await.ok();
}

#[tokio::test]
async fn the_open_files_limit_is_raised_and_a_low_one_is_logged_against_the_queue() {
    // Under a shell that lowers the limits (soft 256, hard 2000). The listen
    // address is taken, so the coordinator exits 2 right after the raise.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let start = |queue_max: &str| {
        let mut env = valid_env();
        env.insert(vars::LISTEN.into(), held.local_addr().unwrap().to_string());
        env.insert(vars::QUEUE_MAX.into(), queue_max.into());
        env.insert("RUST_LOG".into(), "info".into());
        std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "ulimit -S -n 256 && ulimit -H -n 2000 && exec \"$0\"",
                BIN,
            ])
            .env_clear()
            .envs(&env)
            .output()
            .expect("run coordinator")
    };
    // The default queue (10 000 waiting) needs more than 2000: warned.
    let out = start("10000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("open files limit raised") && stderr.contains("now=2000"),
        "{stderr}"
    );
    assert!(stderr.contains("before=256"), "{stderr}");
    assert!(
        stderr.contains("lower than the configuration needs") && stderr.contains("need=11024"),
        "{stderr}"
    );
    // A queue of 500 fits in 2000: raised, no warning.
    let out = start("500");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open files limit raised"), "{stderr}");
    assert!(!stderr.contains("lower than the configuration"), "{stderr}");
}
