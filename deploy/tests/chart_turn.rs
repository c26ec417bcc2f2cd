//! The Helm chart's TURN relays, rendered with a real helm: coordinators get
//! the URIs and the secret's file for each mode (none, external, bundled);
//! the bundled coturn runs on the host network with the secret from the
//! chart's Secret, TLS from the operator's certificate Secret, and refuses
//! to relay to private, loopback and link-local ranges unless allowed; bad
//! TURN values are refused naming them. (The rendered environments also go
//! through `--check-config` and the Kubernetes schemas in `chart.rs`.)

use std::collections::BTreeMap;

use throng_deploy_tests::*;

fn rendered(sets: &[&str]) -> Vec<serde_yaml::Value> {
    rendered_with(&[], sets)
}

fn rendered_with(files: &[std::path::PathBuf], sets: &[&str]) -> Vec<serde_yaml::Value> {
    objects(&helm_template(files, sets).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}")))
}

fn coordinator_env(objs: &[serde_yaml::Value]) -> BTreeMap<String, String> {
    let c = find(objs, "Deployment", "-coordinator").expect("coordinator Deployment");
    let fields = BTreeMap::from([
        ("status.podIP", "10.244.1.7"),
        ("status.hostIP", "192.0.2.10"),
        ("metadata.name", "t-throng-coordinator-x7k2p"),
    ]);
    container_env(container(c), &fields)
}

fn args(objs: &[serde_yaml::Value]) -> Vec<String> {
    let d = find(objs, "DaemonSet", "-turn").expect("turn DaemonSet");
    container(d)["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn coordinators_hand_out_the_relays_of_each_mode() {
    // none: no TURN variable, no coturn.
    let objs = rendered(&[]);
    assert!(coordinator_env(&objs)
        .keys()
        .all(|k| !k.starts_with("THRONG_TURN")));
    assert!(find(&objs, "DaemonSet", "-turn").is_none());
    // The chart's Secret has a turn secret to hand to coturn either way.
    let secret = objs
        .iter()
        .find(|o| {
            o["kind"].as_str() == Some("Secret") && secret_data(o).contains_key("token-secret")
        })
        .unwrap();
    assert!(secret_data(secret)["turn-secret"].len() >= 32);

    // external: the listed URIs, the secret's file, the TTL.
    let objs = rendered_with(&[chart().join("ci/turn-external-values.yaml")], &[]);
    let env = coordinator_env(&objs);
    assert_eq!(
        env["THRONG_TURN_URLS"],
        "turn:turn.example.net:3478?transport=udp,turn:turn.example.net:3478?transport=tcp,\
         turns:turn.example.net:443?transport=tcp"
    );
    assert_eq!(
        env["THRONG_TURN_SECRET_FILE"],
        "/run/secrets/throng/turn-secret"
    );
    assert_eq!(env["THRONG_TURN_TTL_SECS"], "900");
    assert!(find(&objs, "DaemonSet", "-turn").is_none());

    // bundled: UDP and TCP on the port, TLS only with a certificate.
    let objs = rendered(&["turn.mode=bundled", "turn.bundled.host=turn.example.com"]);
    assert_eq!(
        coordinator_env(&objs)["THRONG_TURN_URLS"],
        "turn:turn.example.com:3478?transport=udp,turn:turn.example.com:3478?transport=tcp"
    );
    let objs = rendered(&[
        "turn.mode=bundled",
        "turn.bundled.host=turn.example.com",
        "turn.bundled.tlsSecret=turn-tls",
        "turn.bundled.tlsPort=443",
    ]);
    assert!(coordinator_env(&objs)["THRONG_TURN_URLS"]
        .ends_with(",turns:turn.example.com:443?transport=tcp"));
}

#[test]
fn the_bundled_coturn_uses_the_charts_secret_and_relays_only_to_public_addresses() {
    let objs = rendered(&[
        "turn.mode=bundled",
        "turn.bundled.host=turn.example.com",
        "turn.bundled.tlsSecret=turn-tls",
        "turn.bundled.tlsPort=443",
        "turn.bundled.allowedPeerRanges={10.20.0.0-10.20.255.255}",
    ]);
    let d = find(&objs, "DaemonSet", "-turn").unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    let c = container(d);
    let a = args(&objs);
    let has = |s: &str| a.iter().any(|x| x == s);
    // REST-API credentials with the secret the coordinators sign with.
    assert!(
        has("--use-auth-secret") && has("--static-auth-secret=$(TURN_SECRET)"),
        "{a:?}"
    );
    let secret_ref = &c["env"][0]["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["key"].as_str(), Some("turn-secret"));
    assert!(secret_ref["name"].as_str().unwrap().ends_with("-secrets"));
    // Nothing inside the cluster is a relay target, but what is allowed.
    for private in [
        "--denied-peer-ip=10.0.0.0-10.255.255.255",
        "--denied-peer-ip=127.0.0.0-127.255.255.255",
        "--denied-peer-ip=169.254.0.0-169.254.255.255",
        "--denied-peer-ip=172.16.0.0-172.31.255.255",
        "--denied-peer-ip=192.168.0.0-192.168.255.255",
        "--allowed-peer-ip=10.20.0.0-10.20.255.255",
        "--no-multicast-peers",
    ] {
        assert!(has(private), "{private} in {a:?}");
    }
    // TLS on 443 from the certificate Secret; binding 443 needs the capability.
    assert!(has("--tls-listening-port=443") && has("--cert=/etc/throng-turn/tls.crt"));
    assert_eq!(
        c["securityContext"]["capabilities"]["add"][0].as_str(),
        Some("NET_BIND_SERVICE")
    );
    let tls = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .unwrap();
    assert_eq!(tls["secret"]["secretName"].as_str(), Some("turn-tls"));
    // Without TLS: no TLS listener, no capability on the default ports.
    let objs = rendered(&["turn.mode=bundled", "turn.bundled.host=turn.example.com"]);
    let a = args(&objs);
    assert!(a.iter().any(|x| x == "--no-tls"), "{a:?}");
    let c = container(find(&objs, "DaemonSet", "-turn").unwrap());
    assert!(c["securityContext"]["capabilities"]["add"].is_null());
}

#[test]
fn bad_turn_values_are_refused_naming_them() {
    for (sets, named) in [
        (vec!["turn.mode=external"], "turn.urls"),
        (vec!["turn.mode=bundled"], "turn.bundled.host"),
        (vec!["turn.mode=relay"], "mode"),
        (vec!["turn.ttlSeconds=5"], "ttlSeconds"),
        (vec!["turn.mode=external", "turn.urls={stun:x}"], "urls"),
        (
            vec![
                "turn.mode=bundled",
                "turn.bundled.host=t.example.com",
                "turn.bundled.relayPortMin=50000",
                "turn.bundled.relayPortMax=49000",
            ],
            "relayPortMin",
        ),
        (vec!["secrets.turnSecret=short"], "turnSecret"),
    ] {
        let e = helm_template(&[], &sets).expect_err(&format!("{sets:?} must be refused"));
        assert!(e.contains(named), "{sets:?}: {e}");
    }
}
