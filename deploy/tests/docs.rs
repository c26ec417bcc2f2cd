//! What the operator reads agrees with what runs: the README documents every
//! variable the binaries' `--help` lists, and docker-compose.yml (as Compose
//! itself resolves it) keeps its promises without an engine: secrets
//! required, health-ordered start, stop grace periods longer than the drains.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use throng_deploy_tests::*;

/// `THRONG_*` variables a binary's `--help` lists.
fn variables_of(bin: &str) -> Vec<String> {
    let (ok, help, stderr) = output(Command::new(binary(bin)).arg("--help").env_clear());
    assert!(ok, "{bin} --help: {stderr}");
    help.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            w.starts_with("THRONG_") && w.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_documents_every_variable_of_both_binaries() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for bin in ["coordinator", "media-node"] {
        let vars = variables_of(bin);
        assert!(vars.len() >= 12, "{bin}: {vars:?}");
        let missing: Vec<_> = vars
            .iter()
            .filter(|v| !readme.contains(&format!("`{v}`")))
            .collect();
        assert!(missing.is_empty(), "README lacks {bin}'s {missing:?}");
    }
}

fn compose_config(env: &BTreeMap<&str, &str>) -> (bool, String, String) {
    output(
        Command::new(tool("docker-compose"))
            .args(["--project-directory"])
            .arg(root())
            .arg("-f")
            .arg(root().join("docker-compose.yml"))
            .args(["config", "--format", "json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env),
    )
}

/// Seconds of a Compose duration as `config --format json` prints it (`1m30s`, `30s`).
fn seconds(d: &str) -> u64 {
    let mut total = 0;
    let mut n = String::new();
    for c in d.chars() {
        match c {
            '0'..='9' => n.push(c),
            'h' | 'm' | 's' => {
                let v: u64 = n.parse().unwrap();
                total += v * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                n.clear();
            }
            _ => panic!("duration {d}"),
        }
    }
    total
}

#[test]
fn the_compose_file_requires_secrets_orders_start_by_health_and_outwaits_the_drains() {
    let (ok, _, stderr) = compose_config(&BTreeMap::new());
    assert!(!ok, "compose accepted the file without secrets");
    // Compose names the first missing one it meets, in no fixed order.
    assert!(
        [
            "THRONG_TOKEN_SECRET",
            "THRONG_API_KEY",
            "THRONG_ADMIN_KEY",
            "THRONG_NODE_TOKEN",
            "THRONG_TURN_SECRET"
        ]
        .iter()
        .any(|v| stderr.contains(&format!("required variable {v} is missing"))),
        "{stderr}"
    );

    let secret = "s".repeat(40);
    let node_token = "n".repeat(40);
    let turn_secret = "t".repeat(40);
    let env = BTreeMap::from([
        ("THRONG_TOKEN_SECRET", secret.as_str()),
        ("THRONG_API_KEY", secret.as_str()),
        ("THRONG_ADMIN_KEY", secret.as_str()),
        ("THRONG_NODE_TOKEN", node_token.as_str()),
        ("THRONG_TURN_SECRET", turn_secret.as_str()),
    ]);
    let (ok, json, stderr) = compose_config(&env);
    assert!(ok, "compose config: {stderr}");
    let config: Value = serde_json::from_str(&json).unwrap();
    let services = config["services"].as_object().unwrap();
    let names: Vec<&String> = services.keys().collect();
    assert_eq!(
        names,
        [
            "coordinator-1",
            "coordinator-2",
            "media-node-1",
            "media-node-2",
            "proxy",
            "redis",
            "turn"
        ]
    );
    for (name, s) in services {
        assert!(
            s["restart"].as_str() == Some("unless-stopped"),
            "{name}: restart policy"
        );
        let env = &s["environment"];
        if name.starts_with("media-node") {
            let drain: u64 = env["THRONG_DRAIN_GRACE_SECS"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let grace = seconds(s["stop_grace_period"].as_str().unwrap());
            assert!(
                grace >= drain,
                "{name}: stop_grace_period {grace} < drain {drain}"
            );
            assert_eq!(
                env["THRONG_ANNOUNCED_ADDRESS"], "127.0.0.1",
                "{name}: PUBLIC_IP default"
            );
            assert_eq!(s["depends_on"]["redis"]["condition"], "service_healthy");
            let ports = s["ports"].as_array().unwrap();
            assert_eq!(ports.len(), 4, "{name}: 2 workers x UDP+TCP: {ports:?}");
        }
        if name.starts_with("coordinator") {
            let drain: u64 = env["THRONG_DRAIN_GRACE_SECS"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let grace = seconds(s["stop_grace_period"].as_str().unwrap());
            assert!(
                grace >= drain + 5,
                "{name}: stop_grace_period {grace} < drain {drain} + 5"
            );
            assert_eq!(s["depends_on"]["redis"]["condition"], "service_healthy");
        }
    }
    for c in ["coordinator-1", "coordinator-2"] {
        assert_eq!(
            services["proxy"]["depends_on"][c]["condition"], "service_healthy",
            "the proxy waits for {c}"
        );
    }
    // The nodes' gRPC is guarded: every node and coordinator has the token.
    for name in [
        "coordinator-1",
        "coordinator-2",
        "media-node-1",
        "media-node-2",
    ] {
        assert_eq!(
            services[name]["environment"]["THRONG_NODE_TOKEN"],
            node_token.as_str(),
            "{name}"
        );
    }
    // TURN: the relay signs with the coordinators' secret, which it gets as
    // its own variable (written to a private file, never argv); the
    // coordinators hand out UDP and TCP on PUBLIC_IP.
    let turn = &services["turn"];
    assert_eq!(turn["environment"]["TURN_SECRET"], turn_secret.as_str());
    for c in ["coordinator-1", "coordinator-2"] {
        let env = &services[c]["environment"];
        assert_eq!(env["THRONG_TURN_SECRET"], turn_secret.as_str());
        assert_eq!(
            env["THRONG_TURN_URLS"],
            "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp"
        );
    }
    // On the host's network (answers of the media nodes' published ports
    // come back from the address relayed to), its ports from the settings.
    assert_eq!(turn["network_mode"], "host");
    assert_eq!(turn["environment"]["TURN_PORT"], "3478");
    assert_eq!(turn["environment"]["TURN_TLS_PORT"], "5349");
    // The two nodes' worker ports do not overlap.
    let base = |n: &str| -> u64 {
        services[n]["environment"]["THRONG_RTC_BASE_PORT"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(base("media-node-2") >= base("media-node-1") + 2);
    // Nothing persistent by default: `down` leaves no volume.
    assert!(
        config["volumes"].as_object().is_none_or(|v| v.is_empty()),
        "{}",
        config["volumes"]
    );
}
