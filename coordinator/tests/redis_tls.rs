//! Redis over TLS with AUTH: a real redis-server listening only on a TLS
//! port with a password, its certificate signed by a CA this test makes with
//! `openssl`; a media node reports through it and a coordinator places
//! through it (`rediss://:password@…` and `THRONG_REDIS_CA_FILE`). A wrong
//! password, or no CA (the system's roots do not know this one), is refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use coordinator::registry::redis::RedisRegistry;
use coordinator::registry::Registry;
use throng_test_support::tls::{Ca, Issued};
use throng_test_support::{Coordinator, Node};

const PASSWORD: &str = "tls-test-password-4711";

/// redis-server on a TLS port only, with a password; killed on drop.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_redis(dir: &Path, ca: &Path, server: &Issued) -> TlsRedis {
    let port = throng_test_support::free_tcp_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--tls-cert-file")
        .arg(&server.cert)
        .arg("--tls-key-file")
        .arg(&server.key)
        .arg("--tls-ca-cert-file")
        .arg(ca)
        .args(["--tls-auth-clients", "no"])
        .args(["--requirepass", PASSWORD])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server (TLS) did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_a_coordinator_use_redis_over_tls_with_a_password() {
    // Removed on drop, also when the test fails.
    let tmp = throng_test_support::TempDir::new("redis-tls");
    let dir = tmp.path();
    let authority = Ca::new(dir, "ca");
    let server = authority.issue("server", &["IP:127.0.0.1"]);
    let ca = authority.pem();
    let redis = tls_redis(dir, &ca, &server);
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{}/", redis.port);
    let ca_var = (
        throng_ops::REDIS_CA_FILE.to_string(),
        ca.display().to_string(),
    );

    // What is refused: a wrong password, and a server the roots do not know.
    let pem = std::fs::read(&ca).unwrap();
    let wrong = format!("rediss://:wrong@127.0.0.1:{}/", redis.port);
    assert!(RedisRegistry::connect_with(&wrong, Some(&pem))
        .await
        .is_err());
    let unknown = RedisRegistry::connect_with(&url, None)
        .await
        .err()
        .expect("a certificate no root vouches for is refused")
        .to_string();
    assert!(unknown.to_lowercase().contains("certificate"), "{unknown}");
    // With the CA and the password it answers.
    let registry = RedisRegistry::connect_with(&url, Some(&pem)).await.unwrap();
    assert!(!registry.epoch().await.unwrap().is_empty());

    // A node reports and a coordinator places through it.
    let mut node_env = Node::env("node-tls", 1, Some(&url));
    node_env.insert(ca_var.0.clone(), ca_var.1.clone());
    let node = Node::start(node_env).await;
    let mut coord_env = Coordinator::env(&[node.grpc.to_string()], 1500, Some(&url));
    coord_env.insert(ca_var.0.clone(), ca_var.1.clone());
    let coord = Coordinator::start(coord_env).await;
    coord.wait_for_nodes(1).await;
    let c = Cluster::at(coord.http);
    let mut ann = Client::connect(&c).await;
    let j = ann.join("encrypted", "ann", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(reserved_units(&c).await, 26);
    let room = registry.room("encrypted").await.unwrap();
    assert_eq!(room.participant_ids, vec!["ann".to_string()]);
    drop(ann);
    drop(redis);
}
