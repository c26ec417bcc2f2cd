//! docker-compose.yml really running: the images `scripts/images.sh` built
//! from the repository's Dockerfile, a private Docker engine in the test's
//! network namespace, `docker compose up --wait`, the proxy's TLS with a
//! certificate made here, two headless Chromium participants on the host
//! through the proxy's published port (one on each media node), `docker
//! compose stop` of the node carrying one of them (it re-joins on the other),
//! before that a third browser restricted to TURN relays (`?relay=1`) getting
//! media both ways through the stack's coturn,
//! and `docker compose down` leaving nothing behind.
//!
//! The name starts with `chromium_` so that nextest runs it alone (it takes
//! both cores and the media nodes' fixed ports 40000-40001 and 40100-40101).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use throng_deploy_tests::*;

const PROJECT: &str = "throng-test";
const SECRET: &str = "compose-test-token-secret-compose-test-0123";
const API_KEY: &str = "compose-test-api-key-compose-test-api-0123";
const ADMIN_KEY: &str = "compose-test-admin-key-compose-test-ad-0123";

/// An address on the namespace's loopback interface that is not loopback
/// (removed on drop).
struct PublicIp(&'static str);

impl PublicIp {
    fn add(ip: &'static str) -> Self {
        let _ = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status();
        Self(ip)
    }
}

impl Drop for PublicIp {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Stack<'a> {
    engine: &'a Engine,
    env: BTreeMap<String, String>,
}

impl Stack<'_> {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool("docker-compose"));
        cmd.args(["-p", PROJECT, "--project-directory"])
            .arg(root())
            .arg("-f")
            .arg(root().join("docker-compose.yml"))
            .args(args)
            .env("DOCKER_HOST", self.engine.host())
            .envs(&self.env);
        cmd
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        output(&mut self.compose(args))
    }
}

/// A self-signed certificate for `localhost` in `dir` (cert.pem, key.pem).
fn certificate(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (ok, _, stderr) = output(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
    );
    assert!(ok, "openssl: {stderr}");
    // The proxy runs as www-data: the key must be readable by it.
    for f in ["key.pem", "cert.pem"] {
        std::fs::set_permissions(
            dir.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_compose_stack_serves_two_people_across_both_nodes_and_survives_a_node_stop() {
    let mut engine = Engine::start();
    engine.owns_project(PROJECT);

    let tls_dir = TempDir::new("compose-tls");
    let tls = tls_dir.0.clone();
    certificate(&tls);
    let http_port = free_port();
    let https_port = free_port();
    // PUBLIC_IP: an address of the test's namespace that is not loopback, so
    // that the TURN relay in its container can send media to it (to the
    // media nodes' published ports) as on a real host.
    let public_ip = PublicIp::add("10.203.0.1");
    let turn_port = free_port();
    let turn_tls_port = free_port();
    let env: BTreeMap<String, String> = [
        ("PUBLIC_IP", public_ip.0.to_string()),
        ("TURN_PORT", turn_port.to_string()),
        ("TURN_TLS_PORT", turn_tls_port.to_string()),
        ("TURN_VERBOSE", "1".into()),
        (
            "THRONG_TURN_SECRET",
            "compose-test-turn-secret-0123456789abcdef".into(),
        ),
        ("HTTP_PORT", http_port.to_string()),
        ("HTTPS_PORT", https_port.to_string()),
        ("TLS_DIR", tls.display().to_string()),
        ("THRONG_TOKEN_SECRET", SECRET.into()),
        ("THRONG_API_KEY", API_KEY.into()),
        ("THRONG_ADMIN_KEY", ADMIN_KEY.into()),
        (
            "THRONG_NODE_TOKEN",
            "compose-test-node-token-0123456789abcdef".into(),
        ),
        // One participant fills a worker; node 1 has one worker, node 2 two:
        // the first participant lands on node 1, the second on node 2, and
        // when node 1 stops, node 2 has the room for the one who moves.
        ("THRONG_TILES_PER_PAGE", "12".into()),
        ("THRONG_WORKER_CAPACITY", "26".into()),
        ("WORKERS_1", "1".into()),
        ("WORKERS_2", "2".into()),
        ("NODE_DRAIN_GRACE_SECS", "2".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let stack = Stack {
        engine: &engine,
        env,
    };

    let (ok, _, stderr) = stack.run(&["config", "-q"]);
    assert!(ok, "compose config: {stderr}");
    let started = Instant::now();
    let (ok, stdout, stderr) = stack.run(&["up", "--no-build", "--wait", "--wait-timeout", "180"]);
    let healthy_after = started.elapsed();
    if !ok {
        let (_, logs, _) = stack.run(&["logs", "--no-color", "--tail", "60"]);
        panic!("compose up: {stdout}\n{stderr}\n{logs}\n{}", engine.log());
    }
    eprintln!(
        "compose: start to healthy {:.1} s",
        healthy_after.as_secs_f64()
    );
    for image in ["coordinator", "media-node", "proxy", "redis", "turn"] {
        let (_, size, _) = engine.docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Size}}",
            &format!("throng/{image}:0.1.0"),
        ]);
        eprintln!(
            "image throng/{image}: {} MB",
            size.trim().parse::<u64>().unwrap_or(0) / 1_000_000
        );
    }

    // Through the proxy: HTTP, and HTTPS with the operator's certificate.
    let base = format!("http://127.0.0.1:{http_port}");
    let (ok, body, stderr) = output(Command::new("curl").args(["-fsS", &format!("{base}/readyz")]));
    assert!(ok, "readyz through the proxy: {stderr}");
    assert!(body.starts_with("ready"), "{body}");
    let (ok, _, stderr) = output(
        Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "--cacert"])
            .arg(tls.join("cert.pem"))
            .args([
                "--resolve",
                &format!("localhost:{https_port}:127.0.0.1"),
                &format!("https://localhost:{https_port}/"),
            ]),
    );
    assert!(
        ok,
        "HTTPS through the proxy with the given certificate: {stderr}"
    );

    // Two people in the browser, as in the web client's tests.
    let key = coordinator::auth::TokenKey::new(SECRET);
    let room = "compose-room";
    let tokens: Vec<String> = ["ada", "grace", "linus"]
        .iter()
        .map(|id| key.mint(room, id, true, 3600))
        .collect();
    let settings = serde_json::json!({
        "url": base,
        "adminKey": ADMIN_KEY,
        "room": room,
        "tokens": tokens,
        "screenshots": std::env::temp_dir(),
    });
    let mut child = tokio::process::Command::new("node")
        .arg("tests/compose.mjs")
        .current_dir(root().join("client-web"))
        .env("THRONG_E2E", settings.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let scenario = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(node) = line.strip_prefix("stop-node ") {
                let node = node.trim();
                assert!(
                    node == "media-node-1" || node == "media-node-2",
                    "unknown node {node}"
                );
                let t = Instant::now();
                let (ok, _, stderr) = stack.run(&["stop", node]);
                assert!(ok, "compose stop {node}: {stderr}");
                eprintln!(
                    "compose: stop {node} took {:.1} s",
                    t.elapsed().as_secs_f64()
                );
                stdin
                    .write_all(format!("stopped {node}\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(240), scenario)
        .await
        .expect("the compose scenario did not finish in 4 minutes");
    if !status.success() {
        let (_, logs, _) = stack.run(&["logs", "--no-color", "--tail", "300"]);
        panic!("compose scenario failed ({status}); service logs:\n{logs}");
    }

    // A stopped node's container exited cleanly after its drain.
    let (_, ps, _) = stack.run(&[
        "ps",
        "-a",
        "--format",
        "{{.Service}} {{.State}} {{.ExitCode}}",
    ]);
    assert!(ps.contains("media-node-1 exited 0"), "{ps}");

    // down: nothing of the project is left.
    let (ok, _, stderr) = stack.run(&["down", "--timeout", "30"]);
    assert!(ok, "compose down: {stderr}");
    let label = format!("label=com.docker.compose.project={PROJECT}");
    for what in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        let mut args = what.to_vec();
        args.extend(["--filter", &label]);
        let (ok, left, _) = engine.docker(&args);
        assert!(ok && left.trim().is_empty(), "{what:?} left: {left}");
    }
}
