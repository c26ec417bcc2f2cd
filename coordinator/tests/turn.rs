//! TURN relays, with a real coturn (Debian's `turnserver`) on 127.0.0.1:
//! the coordinator hands each participant time-limited credentials with its
//! transports (coturn's REST-API scheme), coturn allocates relays with them
//! and refuses them once expired or forged; and real Chromium forced to use
//! nothing but relays (`iceTransportPolicy: 'relay'`, as behind a firewall
//! that blocks the media nodes' ports) joins through the lobby and sends and
//! receives audio and video through coturn over UDP, then TCP, then TLS.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::scenario::*;
use common::*;
use coordinator::auth::TokenKey;
use coordinator::config::vars as cvars;
use coordinator::turn::{credential, TURN_SECRET, TURN_TTL_SECS, TURN_URLS};
use serde_json::json;
use throng_test_support::turn::Coturn;

const TURN_SECRET_VALUE: &str = "turn-shared-secret-for-the-test-0123456789";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transports_come_with_credentials_coturn_accepts_and_refuses_once_expired_or_forged() {
    let coturn = Coturn::start(TURN_SECRET_VALUE, None);
    let (node, _node_stop) = start_node("node-1", 1, None).await;
    let urls = format!("{},{}", coturn.udp_url(), coturn.tcp_url());
    let (http, _stop) = start_coordinator_with(
        &[node.to_string()],
        1500,
        None,
        &[
            (TURN_URLS, urls.clone()),
            (TURN_SECRET, TURN_SECRET_VALUE.into()),
            (TURN_TTL_SECS, "120".into()),
        ],
    )
    .await;
    let c = Cluster::at(http);
    c.wait_for_nodes(1).await;
    let mut ann = Client::connect(&c).await;
    let joined = ann.join("relayed", "ann", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let peer = joined["peerId"].as_str().unwrap().to_string();

    let t = ann
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    let servers = &t["data"]["iceServers"];
    assert_eq!(servers.as_array().map(Vec::len), Some(1), "{t}");
    let s = &servers[0];
    assert_eq!(
        s["urls"],
        json!([coturn.udp_url(), coturn.tcp_url()]),
        "{s}"
    );
    let username = s["username"].as_str().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(who, peer);
    let now = now_secs();
    assert!(
        (now + 115..=now + 121).contains(&expiry),
        "expires in the TTL: {expiry} vs now {now}"
    );
    let password = s["credential"].as_str().unwrap();
    assert_eq!(password, credential(TURN_SECRET_VALUE, username));
    // coturn allocates a relay with them.
    assert!(
        coturn.allocates(username, password),
        "coturn refused fresh credentials:\n{}",
        coturn.log()
    );

    // An ICE restart comes with fresh ones.
    let transport_id = t["data"]["id"].as_str().unwrap();
    let r = ann
        .request(json!({"type": "restartIce", "transportId": transport_id}))
        .await;
    assert_eq!(r["type"], "response", "{r}");
    let again = &r["data"]["iceServers"][0];
    let later: u64 = again["username"]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .0
        .parse()
        .unwrap();
    assert!(later >= expiry, "{again}");
    assert!(r["data"]["iceParameters"].is_object());

    // Expired (minted as the coordinator would have, TTL ago and more), or
    // signed with another secret: refused by coturn.
    let turn = coordinator::turn::Turn::from_env(
        &[
            (TURN_URLS.to_string(), urls),
            (TURN_SECRET.to_string(), TURN_SECRET_VALUE.to_string()),
            (TURN_TTL_SECS.to_string(), "120".to_string()),
        ]
        .into_iter()
        .collect(),
    )
    .unwrap()
    .unwrap();
    let old = &turn.ice_servers_at(&peer, SystemTime::now() - Duration::from_secs(180))[0];
    assert!(
        !coturn.allocates(&old.username, &old.credential),
        "expired credentials must be refused"
    );
    let forged = credential("not-the-secret-not-the-secret-000000", username);
    assert!(
        !coturn.allocates(username, &forged),
        "a credential of another secret must be refused"
    );
    let log = coturn.log();
    for refused in [old.username.as_str(), username] {
        assert!(
            log.contains(&format!("Cannot find credentials of user <{refused}>")),
            "coturn says whom it refused ({refused}):\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_relays_transports_carry_no_ice_servers() {
    let c = cluster(1, 1500).await;
    let mut ann = Client::connect(&c).await;
    assert_eq!(ann.join("direct", "ann", true).await["type"], "joined");
    let t = ann
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    assert!(t["data"].get("iceServers").is_none(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_forced_to_relay_gets_media_through_coturn_over_udp_tcp_and_tls() {
    let tmp = throng_test_support::TempDir::new("turn-tls");
    let ca = throng_test_support::tls::Ca::new(tmp.path(), "ca");
    let cert = ca.issue("turn", &["DNS:localhost", "IP:127.0.0.1"]);
    let coturn = Coturn::start(TURN_SECRET_VALUE, Some(&cert));
    let redis = RedisServer::start();
    // One coordinator per kind of relay, sharing Redis and the media node.
    let turn_env = |url: String| {
        vec![
            (TURN_URLS, url),
            (TURN_SECRET, TURN_SECRET_VALUE.to_string()),
        ]
    };
    let (mut cluster, udp_base) = web_cluster_with(&redis, 1, 1, &turn_env(coturn.udp_url())).await;
    let dist = client_web().join("dist").display().to_string();
    let mut more = Vec::new();
    for url in [coturn.tcp_url(), coturn.tls_url("localhost")] {
        let mut env = turn_env(url);
        env.push((cvars::WEB_ROOT, dist.clone()));
        let (http, stop) = start_coordinator_with(&[], 100_000, Some(&redis), &env).await;
        throng_test_support::wait_for_nodes(http, 1).await;
        more.push((format!("http://{http}"), stop));
    }
    let key = TokenKey::new(SECRET);
    let round = |name: &str, url: &str, path: &str| {
        let room = format!("turn-{name}");
        json!({
            "name": name,
            "url": url,
            "path": path,
            "tokens": [key.mint(&room, "ada", true, 3600), key.mint(&room, "grace", true, 3600)],
        })
    };
    // The same browsers, first on the direct path (TURN offered, not
    // needed on loopback), then forced through each kind of relay.
    let mut direct = round("direct", &udp_base, "direct");
    direct["forceRelay"] = json!(false);
    let rounds = json!([
        direct,
        round("udp", &udp_base, "relay-udp"),
        round("tcp", &more[0].0, "relay-tcp"),
        round("tls", &more[1].0, "relay-tls"),
    ]);
    let mut extra = Extra::default();
    extra.settings.insert("rounds".into(), rounds);
    // Figures: coturn's CPU over a steady 3 s of each relayed call;
    // THRONG_TURN_BENCH_REPEAT=N repeats the rounds (BENCHMARKS.md).
    extra.settings.insert("turnCpu".into(), json!(true));
    extra.settings.insert("steadyMs".into(), json!(3000));
    let repeat: u64 = std::env::var("THRONG_TURN_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    extra.settings.insert("repeat".into(), json!(repeat));
    let coturn = std::sync::Arc::new(coturn);
    let cpu = coturn.clone();
    extra.reply = Some(Box::new(move |line| {
        (line == "turn-cpu").then(|| format!("turn-cpu {}", cpu.cpu_ms()))
    }));
    // Chromium checks the TLS relay's certificate against the user's NSS
    // database: a HOME of the test's own whose database trusts its CA.
    let home = tmp.path().join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-t",
            "C,,",
            "-n",
            "throng-test-ca",
            "-i",
            ca.pem().to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new("certutil")
            .args(&args)
            .output()
            .expect("certutil (Debian's libnss3-tools)");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    extra.env.push(("HOME".into(), home.display().to_string()));
    run_scenario_with(
        "turn-relay.mjs",
        &udp_base,
        "turn-udp",
        &[],
        Duration::from_secs(240 * repeat),
        &mut cluster,
        extra,
    )
    .await;
    // coturn made the relays: allocations and channel data for each round.
    let log = coturn.log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    assert!(
        allocations >= 6,
        "coturn allocated {allocations} relays for 3 rounds of 2 browsers:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_behind_a_firewall_that_allows_only_tcp_to_the_turn_port_gets_media() {
    use throng_test_support::netns::Netns;
    use throng_test_support::{Coordinator, Node};
    // The browsers live in a namespace of their own whose firewall lets out
    // nothing but TCP to the coordinator's port and the TURN port. The media
    // node announces an address the namespace could reach (no route is
    // missing): only the firewall stops direct media, UDP and TCP alike.
    let ns = Netns::new("fw");
    let coturn = Coturn::start_on(&ns.outside, TURN_SECRET_VALUE, None);
    let mut nenv = Node::env("node-1", 1, None);
    nenv.insert("THRONG_RTC_LISTEN_IP".into(), ns.outside.clone());
    nenv.insert("THRONG_ANNOUNCED_ADDRESS".into(), ns.outside.clone());
    let node = Node::start(nenv).await;
    let http_port = throng_test_support::free_tcp_port();
    let mut cenv = Coordinator::env(&[node.grpc.to_string()], 100_000, None);
    cenv.insert(cvars::LISTEN.into(), format!("{}:{http_port}", ns.outside));
    cenv.insert(
        cvars::WEB_ROOT.into(),
        client_web().join("dist").display().to_string(),
    );
    // Both kinds of relay are offered: UDP is what the firewall drops.
    cenv.insert(
        TURN_URLS.into(),
        format!("{},{}", coturn.udp_url(), coturn.tcp_url()),
    );
    cenv.insert(TURN_SECRET.into(), TURN_SECRET_VALUE.into());
    let coordinator = Coordinator::start(cenv).await;
    coordinator.wait_for_nodes(1).await;
    ns.allow_only_tcp_to(&[http_port, coturn.port]);
    let dropped_before = ns.dropped();

    let base = format!("http://{}:{http_port}", ns.outside);
    let key = TokenKey::new(SECRET);
    let room = "firewalled";
    let rounds = json!([{
        "name": "firewalled",
        "url": base,
        "path": "relay-tcp",
        "forceRelay": false,
        "tokens": [key.mint(room, "ada", true, 3600), key.mint(room, "grace", true, 3600)],
    }]);
    let mut extra = Extra::default();
    extra.settings.insert("rounds".into(), rounds);
    extra.settings.insert("insecureOrigin".into(), json!(base));
    extra.wrap = vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone()];
    let mut cluster = Cluster::at(coordinator.http);
    run_scenario_with(
        "turn-relay.mjs",
        &base,
        room,
        &[],
        Duration::from_secs(180),
        &mut cluster,
        extra,
    )
    .await;
    let dropped = ns.dropped() - dropped_before;
    assert!(
        dropped > 0,
        "the firewall dropped nothing: the browsers never tried the direct path"
    );
    eprintln!("figure: the firewall dropped {dropped} packets on the direct and UDP paths; media went over TURN/TCP");
    // The rules go with the namespace (and are removed first).
    ns.open();
    assert!(ns
        .output(&["iptables", "-S", "OUTPUT"])
        .contains("-P OUTPUT ACCEPT"));
}
