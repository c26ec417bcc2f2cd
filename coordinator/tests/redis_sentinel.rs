//! Redis behind Sentinel: a primary, a replica and a Sentinel (real
//! redis-server processes on 127.0.0.1), a media node and a coordinator given
//! `redis+sentinel://`. The primary is SIGKILLed mid-call; the Sentinel
//! promotes the replica; the node's reports and the coordinator's
//! reservations follow it, the call goes on, and a join made during the
//! failover is admitted once it is done. And Sentinels reached over TLS with
//! their own password (`sentinel_password=`), the primary over TLS with its
//! own: refused without the right ones; a node and a coordinator work
//! through them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use throng_test_support::{Coordinator, Node, Redis, Sentinel};

const MASTER: &str = "throng-test";

async fn replicas_known(sentinel: &Sentinel) -> bool {
    let mut conn = sentinel.conn().await;
    let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    replicas
        .iter()
        .any(|r| r.get("master-link-status").is_some_and(|s| s == "ok"))
}

async fn primary_port(sentinel: &Sentinel) -> Option<u16> {
    let mut conn = sentinel.conn().await;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()?;
    addr.map(|a| a.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_call_and_no_reservation() {
    let mut primary = Redis::start();
    let replica = Redis::replica_of(&primary);
    let sentinel = Sentinel::start(MASTER, &primary);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replicas_known(&sentinel).await {
        assert!(
            Instant::now() < deadline,
            "the Sentinel never saw the replica in sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first listed Sentinel is not there: the client asks the next one.
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/{MASTER}",
        throng_test_support::free_tcp_port(),
        sentinel.port
    );
    let mut node = Node::start(Node::env("node-1", 1, Some(&url))).await;
    let coordinator =
        Coordinator::start(Coordinator::env(&[node.grpc.to_string()], 1500, Some(&url))).await;
    let c = Cluster::at(coordinator.http);
    c.wait_for_nodes(1).await;

    let mut a = Client::connect(&c).await;
    assert_eq!(a.join("sentinel", "a", true).await["type"], "joined");
    publish_audio(&mut a, 4242).await;
    assert_eq!(reserved_units(&c).await, 26);
    // Let the replica catch up with the reservation.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The primary dies.
    primary.kill();
    let killed = Instant::now();
    // Someone joins during the failover: told their place in line, then in.
    let mut b = Client::connect(&c).await;
    let token = coordinator::auth::TokenKey::new(SECRET).mint("sentinel", "b", true, 600);
    b.send_raw(
        json!({"type": "join", "reqId": "j", "room": "sentinel", "displayName": "b", "token": token})
            .to_string(),
    )
    .await;
    let joined = tokio::time::timeout(Duration::from_secs(20), b.wait(|m| m["reqId"] == "j"))
        .await
        .expect("the join during the failover is answered");
    assert_eq!(joined["type"], "joined", "{joined}");
    let admitted = killed.elapsed();
    assert_eq!(
        primary_port(&sentinel).await,
        Some(replica.port),
        "the Sentinel promoted the replica"
    );
    assert!(
        joined["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["peerId"] == "a")),
        "a is still in the room: {joined}"
    );
    // a's call goes on: it is told of b and its requests work.
    a.peer_joined("b").await;
    let t = a
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    // The new primary holds both reservations and the node's report.
    assert_eq!(reserved_units(&c).await, 2 * 26);
    let mut conn = replica.conn().await;
    let report: Option<String> = redis::cmd("GET")
        .arg(throng_proto::report::node_key("node-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(report.is_some(), "the node reports to the new primary");
    eprintln!(
        "figure: primary SIGKILLed, Sentinel failover (down-after 1 s), the join made meanwhile admitted {admitted:?} after the kill"
    );
    drop(node.take_stop());
    drop(coordinator);
}

/// A redis-server (`--sentinel` with `sentinel`) listening only on a TLS
/// port with a password; killed on drop.
struct TlsServer(std::process::Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_server(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    ca: &std::path::Path,
    cert: &throng_test_support::tls::Issued,
    extra: &str,
    sentinel: bool,
) -> TlsServer {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\nappendonly no\n\
             tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n{extra}",
            dir.display(),
            cert.cert.display(),
            cert.key.display(),
            ca.display(),
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("redis-server");
    cmd.arg(&conf);
    if sentinel {
        cmd.arg("--sentinel");
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    throng_test_support::wait_listening(port, name);
    TlsServer(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_reached_over_tls_with_their_own_password() {
    const PRIMARY_PW: &str = "primary-password-4711";
    const SENTINEL_PW: &str = "sentinel-p@ss&word";
    let tmp = throng_test_support::TempDir::new("sentinel-tls");
    let dir = tmp.path();
    let ca = throng_test_support::tls::Ca::new(dir, "ca");
    let cert = ca.issue("redis", &["IP:127.0.0.1"]);
    let (primary_port, sentinel_port) = (
        throng_test_support::free_tcp_port(),
        throng_test_support::free_tcp_port(),
    );
    let _primary = tls_server(
        dir,
        "primary",
        primary_port,
        &ca.pem(),
        &cert,
        &format!("requirepass {PRIMARY_PW}\n"),
        false,
    );
    let _sentinel = tls_server(
        dir,
        "sentinel",
        sentinel_port,
        &ca.pem(),
        &cert,
        &format!(
            "tls-replication yes\nrequirepass {SENTINEL_PW}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n\
             sentinel auth-pass {MASTER} {PRIMARY_PW}\n"
        ),
        true,
    );
    let pem = std::fs::read(ca.pem()).unwrap();
    let url = |options: &str| {
        format!("rediss+sentinel://:{PRIMARY_PW}@127.0.0.1:{sentinel_port}/{MASTER}{options}")
    };
    let good = url("?sentinel_password=sentinel-p%40ss%26word");
    let connect = |u: String| {
        let pem = pem.clone();
        async move {
            throng_ops::RedisConn::connect(
                &u,
                Some(&pem),
                redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(0),
            )
            .await
        }
    };
    // Refused: no Sentinel password, a wrong one, plain TCP to a TLS Sentinel.
    for (what, u) in [
        ("no Sentinel password", url("")),
        ("a wrong Sentinel password", url("?sentinel_password=nope")),
        (
            "plain TCP to the Sentinel",
            url("?sentinel_password=sentinel-p%40ss%26word&sentinel_tls=false"),
        ),
    ] {
        assert!(connect(u).await.is_err(), "{what} must be refused");
    }
    let mut conn = connect(good.clone()).await.expect("the right credentials");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    // A media node reports and a coordinator places through it.
    let mut nenv = Node::env("node-1", 1, Some(&good));
    nenv.insert(
        throng_ops::REDIS_CA_FILE.into(),
        ca.pem().display().to_string(),
    );
    let node = Node::start(nenv).await;
    let mut cenv = Coordinator::env(&[node.grpc.to_string()], 1500, Some(&good));
    cenv.insert(
        throng_ops::REDIS_CA_FILE.into(),
        ca.pem().display().to_string(),
    );
    let c = Coordinator::start(cenv).await;
    c.wait_for_nodes(1).await;
    let mut ann = Client::connect_url(&c.ws_url()).await;
    let j = ann.join("guarded", "ann", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    // Both wrote to the primary the Sentinel named: the node's report, the
    // coordinator's reservation.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("throng:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("throng:node:")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.contains("reserved")), "{keys:?}");
}
