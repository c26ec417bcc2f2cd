//! The Helm chart with a real helm (v4, from PyPI): lint, render with the
//! default values and the value sets in `helm/throng/ci/`, validate every
//! object against two Kubernetes versions' schemas (strict: unknown fields
//! are errors), refuse bad values, check what the objects promise (grace
//! periods, ports per worker, hooks and probes on real endpoints), and feed
//! each rendered container's environment to its binary's `--check-config`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;
use throng_deploy_tests::*;

const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.35.0"];

/// The value sets: (name, values files).
fn value_sets() -> Vec<(&'static str, Vec<PathBuf>)> {
    let ci = chart().join("ci");
    vec![
        ("default", vec![]),
        (
            "external-redis",
            vec![ci.join("external-redis-values.yaml")],
        ),
        ("hostport", vec![ci.join("hostport-values.yaml")]),
        (
            "ingress-tls-hpa",
            vec![ci.join("ingress-tls-hpa-values.yaml")],
        ),
        ("monitoring", vec![ci.join("monitoring-values.yaml")]),
        (
            "external-sentinel-tls",
            vec![ci.join("external-sentinel-tls-values.yaml")],
        ),
        ("grpc-mtls", vec![ci.join("grpc-mtls-values.yaml")]),
        ("turn-bundled", vec![ci.join("turn-bundled-values.yaml")]),
        ("turn-external", vec![ci.join("turn-external-values.yaml")]),
    ]
}

fn render(files: &[PathBuf]) -> String {
    helm_template(files, &[]).unwrap_or_else(|e| panic!("helm template {files:?}: {e}"))
}

#[test]
fn lint_is_clean_in_strict_mode() {
    for (name, files) in value_sets() {
        let mut cmd = Command::new(tool("helm"));
        cmd.args(["lint", "--strict"]).arg(chart());
        for f in &files {
            cmd.arg("-f").arg(f);
        }
        let (ok, stdout, stderr) = output(&mut cmd);
        assert!(ok, "helm lint --strict ({name}):\n{stdout}\n{stderr}");
    }
}

#[test]
fn every_rendered_object_validates_strictly_on_two_kubernetes_versions() {
    let tmp = TempDir::new("chart");
    let dir = &tmp.0;
    for (name, files) in value_sets() {
        let rendered = render(&files);
        let kinds: Vec<String> = objects(&rendered)
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or("?").to_string())
            .collect();
        assert!(kinds.len() >= 5, "{name}: only {kinds:?}");
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        for version in KUBERNETES_VERSIONS {
            let (ok, stdout, stderr) = output(
                Command::new(kubernetes_validate())
                    .args(["--strict", "--quiet", "-k", version])
                    .arg(&file),
            );
            assert!(
                ok && !stdout.contains("ERROR"),
                "{name} on Kubernetes {version}:\n{stdout}\n{stderr}"
            );
        }
    }
    // The validator itself refuses an unknown field (this check can fail).
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        render(&[]).replacen(
            "revisionHistoryLimit: 5",
            "revisionHistoryLimit: 5\n  bogusField: 1",
            1,
        ),
    )
    .unwrap();
    let (ok, stdout, _) = output(
        Command::new(kubernetes_validate())
            .args(["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0]])
            .arg(&bad),
    );
    assert!(!ok && stdout.contains("bogusField"), "{stdout}");
}

#[test]
fn the_schema_and_the_templates_refuse_bad_values_naming_them() {
    let cases: &[(&str, &str)] = &[
        ("mediaNode.workers=0", "/mediaNode/workers"),
        ("mediaNode.workers=300", "/mediaNode/workers"),
        ("mediaNode.network=bridge", "/mediaNode/network"),
        ("mediaNode.rtcBasePort=80", "/mediaNode/rtcBasePort"),
        ("mediaNode.bogus=1", "bogus"),
        ("coordinator.replicas=0", "/coordinator/replicas"),
        ("secrets.adminKey=short", "/secrets/adminKey"),
        ("secrets.nodeToken=short", "/secrets/nodeToken"),
        (
            "coordinator.limits.perIp.burst=0",
            "/coordinator/limits/perIp/burst",
        ),
        (
            "coordinator.limits.trustedProxies[0]=the-ingress",
            "/coordinator/limits/trustedProxies/0",
        ),
        ("redis.mode=cluster", "/redis/mode"),
        (
            "redis.external.url=https://redis.example:6380",
            "/redis/external/url",
        ),
        ("logging.format=xml", "/logging/format"),
        (
            "metrics.serviceMonitor.interval=often",
            "/metrics/serviceMonitor/interval",
        ),
        (
            "tracing.otlpEndpoint=collector:4317",
            "/tracing/otlpEndpoint",
        ),
        (
            "metrics.coordinatorPort=8080",
            "metrics.coordinatorPort must differ",
        ),
        // What the schema cannot express, the templates refuse.
        ("mediaNode.rtcBasePort=65535", "needs ports beyond 65535"),
        ("mediaNode.grpcPort=40001", "falls in the RTC ports"),
        ("redis.mode=external", "redis.mode=external needs"),
        ("coordinator.ingress.tls.enabled=true", "tls.secretName"),
    ];
    for (set, named) in cases {
        match helm_template(&[], &[set]) {
            Ok(_) => panic!("--set {set} was accepted"),
            Err(e) => assert!(e.contains(named), "--set {set}: {e}"),
        }
    }
}

/// Seconds in an env var of a container.
fn env_secs(env: &BTreeMap<String, String>, var: &str) -> i64 {
    env[var]
        .parse()
        .unwrap_or_else(|_| panic!("{var}={}", env[var]))
}

fn test_fields() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("status.podIP", "10.244.1.7"),
        ("status.hostIP", "192.0.2.10"),
        ("metadata.name", "t-throng-media-node-x7k2p"),
    ])
}

#[test]
fn rendered_objects_keep_their_promises() {
    for (name, files) in value_sets() {
        let objs = objects(&render(&files));
        let node = find(&objs, "DaemonSet", "-media-node").expect("media-node DaemonSet");
        let pod = &node["spec"]["template"]["spec"];
        let c = container(node);
        let env = container_env(c, &test_fields());

        // A Redis CA Secret is mounted where THRONG_REDIS_CA_FILE points,
        // in both workloads; without one, no such variable.
        for (kind, suffix) in [("DaemonSet", "-media-node"), ("Deployment", "-coordinator")] {
            let w = find(&objs, kind, suffix).unwrap();
            let wc = container(w);
            let ca = container_env(wc, &test_fields())
                .get("THRONG_REDIS_CA_FILE")
                .cloned();
            if name == "external-sentinel-tls" {
                let ca =
                    ca.unwrap_or_else(|| panic!("{name}: {suffix} without THRONG_REDIS_CA_FILE"));
                assert_eq!(ca, "/run/secrets/throng-redis-ca/ca.crt", "{name}");
                let mounted = wc["volumeMounts"].as_sequence().unwrap().iter().any(|m| {
                    m["name"].as_str() == Some("redis-ca")
                        && m["mountPath"].as_str() == Some("/run/secrets/throng-redis-ca")
                });
                let volume = w["spec"]["template"]["spec"]["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v["secret"]["secretName"].as_str() == Some("managed-redis-ca"));
                assert!(mounted && volume, "{name}: {suffix} mounts the CA Secret");
            } else {
                assert!(ca.is_none(), "{name}: {suffix}");
            }
            // gRPC TLS: the node's and the coordinator's variables point into
            // the mounted certificate Secret; without one, none of them.
            let env = container_env(wc, &test_fields());
            let tls: Vec<(&String, &String)> = env
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("THRONG_GRPC_TLS_") || k.starts_with("THRONG_NODE_TLS_")
                })
                .collect();
            if name == "grpc-mtls" {
                let expected: &[(&str, &str)] = if kind == "DaemonSet" {
                    &[
                        ("THRONG_GRPC_TLS_CERT_FILE", "tls.crt"),
                        ("THRONG_GRPC_TLS_CLIENT_CA_FILE", "ca.crt"),
                        ("THRONG_GRPC_TLS_KEY_FILE", "tls.key"),
                    ]
                } else {
                    &[
                        ("THRONG_NODE_TLS_CA_FILE", "ca.crt"),
                        ("THRONG_NODE_TLS_CERT_FILE", "tls.crt"),
                        ("THRONG_NODE_TLS_KEY_FILE", "tls.key"),
                    ]
                };
                for (var, file) in expected {
                    assert_eq!(
                        env.get(*var).map(String::as_str),
                        Some(format!("/run/secrets/throng-grpc-tls/{file}").as_str()),
                        "{name}: {suffix} {var}"
                    );
                }
                if kind == "Deployment" {
                    assert_eq!(
                        env.get("THRONG_NODE_TLS_SERVER_NAME").map(String::as_str),
                        Some("media-node.throng.internal")
                    );
                }
                let mounted = wc["volumeMounts"].as_sequence().unwrap().iter().any(|m| {
                    m["name"].as_str() == Some("grpc-tls")
                        && m["mountPath"].as_str() == Some("/run/secrets/throng-grpc-tls")
                });
                let volume = w["spec"]["template"]["spec"]["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v["secret"]["secretName"].as_str() == Some("throng-grpc-tls"));
                assert!(
                    mounted && volume,
                    "{name}: {suffix} mounts the gRPC TLS Secret"
                );
            } else {
                assert!(tls.is_empty(), "{name}: {suffix}: {tls:?}");
            }
        }
        // Grace: the orchestrator waits at least the drain grace.
        let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        assert!(
            grace >= env_secs(&env, "THRONG_DRAIN_GRACE_SECS"),
            "{name}: media-node grace {grace}"
        );
        // One port per worker, UDP and TCP, from the base port on.
        let workers: u16 = env["THRONG_WORKERS"].parse().unwrap();
        let base: u16 = env["THRONG_RTC_BASE_PORT"].parse().unwrap();
        let ports = c["ports"].as_sequence().unwrap();
        for proto in ["UDP", "TCP"] {
            let mut rtc: Vec<u16> = ports
                .iter()
                .filter(|p| {
                    p["protocol"].as_str() == Some(proto)
                        && p["name"].as_str().is_some_and(|n| n.starts_with("rtc-"))
                })
                .map(|p| p["containerPort"].as_u64().unwrap() as u16)
                .collect();
            rtc.sort();
            let expected: Vec<u16> = (base..base + workers).collect();
            assert_eq!(rtc, expected, "{name}: {proto} RTC ports");
        }
        // CPU requested = workers (one worker is one core).
        assert_eq!(
            c["resources"]["requests"]["cpu"].as_str(),
            Some(workers.to_string().as_str()),
            "{name}: CPU request"
        );
        let host_network = pod["hostNetwork"].as_bool().unwrap_or(false);
        let host_ports = ports.iter().filter(|p| p["hostPort"].is_number()).count();
        if host_network {
            assert_eq!(host_ports, 0, "{name}");
            assert!(
                env["THRONG_GRPC_ADVERTISE"].starts_with("192.0.2.10:"),
                "{name}"
            );
        } else {
            assert_eq!(host_ports, 2 * workers as usize, "{name}: hostPorts");
            assert!(
                env["THRONG_GRPC_ADVERTISE"].starts_with("10.244.1.7:"),
                "{name}"
            );
        }
        // The preStop hook is the binary's drain command, the probes its
        // health endpoints (both checked against the running binary in
        // media-node/tests).
        assert_eq!(
            c["lifecycle"]["preStop"]["exec"]["command"],
            serde_yaml::from_str::<Value>("[/usr/local/bin/media-node, drain]").unwrap(),
            "{name}"
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        let http_port: u16 = env["THRONG_HTTP_LISTEN"]
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let http = ports
            .iter()
            .find(|p| p["name"].as_str() == Some("http"))
            .unwrap();
        assert_eq!(
            http["containerPort"].as_u64(),
            Some(http_port as u64),
            "{name}"
        );
        // One machine at a time, never two nodes on one machine's ports.
        let rolling = &node["spec"]["updateStrategy"]["rollingUpdate"];
        assert_eq!(rolling["maxUnavailable"].as_i64(), Some(1), "{name}");
        assert_eq!(rolling["maxSurge"].as_i64(), Some(0), "{name}");
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert!(
            find(&objs, "PodDisruptionBudget", "-media-node").is_some(),
            "{name}"
        );

        let coord = find(&objs, "Deployment", "-coordinator").expect("coordinator Deployment");
        let cpod = &coord["spec"]["template"]["spec"];
        let cc = container(coord);
        let cenv = container_env(cc, &test_fields());
        let cgrace = cpod["terminationGracePeriodSeconds"].as_i64().unwrap();
        // Drain grace + the 5 s claim release + the 5 s preStop pause.
        assert!(
            cgrace >= env_secs(&cenv, "THRONG_DRAIN_GRACE_SECS") + 10,
            "{name}: coordinator grace {cgrace}"
        );
        assert_eq!(
            cc["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            cc["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            cc["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert!(cpod["topologySpreadConstraints"].is_sequence(), "{name}");
        assert!(
            find(&objs, "PodDisruptionBudget", "-coordinator").is_some(),
            "{name}"
        );
        let hpa = find(&objs, "HorizontalPodAutoscaler", "-coordinator");
        assert_eq!(
            hpa.is_some(),
            coord["spec"]["replicas"].is_null(),
            "{name}: HPA xor replicas"
        );
    }
    // The ingress of the public-event set: TLS and WebSocket timeouts.
    let objs = objects(&render(&value_sets()[3].1));
    let ingress = find(&objs, "Ingress", "").expect("ingress");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"].as_str(),
        Some("live-example-org-tls")
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]
            .as_str(),
        Some("3600")
    );
    assert!(
        find(&objs, "StatefulSet", "-redis").unwrap()["spec"]["volumeClaimTemplates"].is_sequence()
    );
    assert!(find(&objs, "NetworkPolicy", "-media-node").is_some());
}

/// Writes what the chart mounts as files (its Secrets, or stand-ins for the
/// operator's existing ones) under `dir`, and maps every path the containers
/// would read to the host: `*_FILE` into `dir`, the image's web root to the
/// built client.
fn host_env(
    env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    dir: &std::path::Path,
) -> BTreeMap<String, String> {
    // An operator's certificate Secret (gRPC TLS): real PEM, since
    // --check-config parses it and matches the key to the certificate.
    let grpc_tls = env
        .values()
        .any(|v| v.contains("throng-grpc-tls"))
        .then(|| {
            let ca = throng_test_support::tls::Ca::new(&dir.join("pki"), "ca");
            let issued = ca.issue("media-node", &["DNS:media-node.throng.internal"]);
            let pem = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
            (pem(&ca.pem()), pem(&issued.cert), pem(&issued.key))
        });
    let mut out = BTreeMap::new();
    for (k, v) in env {
        if k.ends_with("_FILE") {
            let key = v.rsplit('/').next().unwrap();
            let value = secrets.get(key).cloned().unwrap_or_else(|| match key {
                "tls.crt" => grpc_tls.as_ref().unwrap().1.clone(),
                "tls.key" => grpc_tls.as_ref().unwrap().2.clone(),
                "ca.crt" if v.contains("grpc-tls") => grpc_tls.as_ref().unwrap().0.clone(),
                // An operator's existing Secrets (external-redis values).
                "url" => "redis://:pw@redis.managed.example:6379/0".into(),
                "url-sentinel" => {
                    "rediss+sentinel://:pw@sentinel-0.managed.example:26379,sentinel-1.managed.example:26379/throng".into()
                }
                // The operator's CA bundle (only its form is checked by --check-config).
                "ca.crt" => {
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into()
                }
                _ => format!("{key}-from-an-existing-secret-0123456789"),
            });
            let path = dir.join(key);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            out.insert(k.clone(), path.display().to_string());
        } else if k == "THRONG_WEB_ROOT" {
            out.insert(
                k.clone(),
                root().join("client-web/dist").display().to_string(),
            );
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[test]
fn each_rendered_container_environment_passes_its_binarys_check_config() {
    let tmp = TempDir::new("chart-env");
    let dir = &tmp.0;
    for (name, files) in value_sets() {
        let objs = objects(&render(&files));
        let mut secrets = BTreeMap::new();
        for s in objs.iter().filter(|o| o["kind"].as_str() == Some("Secret")) {
            secrets.extend(secret_data(s));
        }
        for (kind, suffix, bin) in [
            ("Deployment", "-coordinator", "coordinator"),
            ("DaemonSet", "-media-node", "media-node"),
        ] {
            let workload = find(&objs, kind, suffix).unwrap();
            let env = container_env(container(workload), &test_fields());
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap();
            let env = host_env(&env, &secrets, dir);
            let (ok, stdout, stderr) = output(
                Command::new(binary(bin))
                    .arg("--check-config")
                    .env_clear()
                    .envs(&env),
            );
            assert!(
                ok,
                "{name}: {bin} --check-config refused the chart's env:\n{stderr}\n{env:#?}"
            );
            if bin == "media-node" {
                assert!(stdout.contains("THRONG_ANNOUNCED_ADDRESS="), "{stdout}");
            }
            // And the same env with one setting broken is refused, naming it.
            let mut broken = env.clone();
            let var = if bin == "coordinator" {
                "THRONG_QUEUE_TIMEOUT_SECS"
            } else {
                "THRONG_WORKERS"
            };
            broken.insert(var.into(), "0".into());
            let out = Command::new(binary(bin))
                .arg("--check-config")
                .env_clear()
                .envs(&broken)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{name}: {bin}");
            assert!(String::from_utf8_lossy(&out.stderr).contains(var));
        }
    }
}

/// Leaf keys of the values file (`a.b.c`); `resources` blocks count as one.
fn leaf_keys(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v.as_mapping() {
        Some(m) if !m.is_empty() && !prefix.ends_with("resources") => {
            for (k, v) in m {
                let k = k.as_str().unwrap();
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn the_chart_readme_documents_every_value() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let mut keys = Vec::new();
    leaf_keys("", &values, &mut keys);
    assert!(keys.len() > 60, "{keys:?}");
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(missing.is_empty(), "README value table lacks {missing:?}");
}

/// The port of a `host:port` variable.
fn port_of(env: &BTreeMap<String, String>, var: &str) -> u64 {
    env[var].rsplit(':').next().unwrap().parse().unwrap()
}

/// The container port named `name`.
fn named_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

#[test]
fn monitors_scrape_the_ports_the_binaries_serve_metrics_on() {
    let files = vec![chart().join("ci").join("monitoring-values.yaml")];
    let objs = objects(&render(&files));
    let coord = find(&objs, "Deployment", "-coordinator").unwrap();
    let cc = container(coord);
    let cenv = container_env(cc, &test_fields());
    // ServiceMonitor -> Service port -> container port -> THRONG_METRICS_LISTEN.
    let sm = find(&objs, "ServiceMonitor", "-coordinator").expect("coordinator ServiceMonitor");
    assert_eq!(
        sm["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack")
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    assert_eq!(endpoint["interval"].as_str(), Some("15s"));
    let svc = find(&objs, "Service", "-coordinator").unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the monitor selects the Service"
        );
    }
    let port = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .expect("the monitor's port is the Service's");
    assert_eq!(port["targetPort"].as_str(), Some("metrics"));
    assert_eq!(
        named_port(cc, "metrics"),
        port_of(&cenv, "THRONG_METRICS_LISTEN")
    );
    assert_ne!(
        port_of(&cenv, "THRONG_METRICS_LISTEN"),
        port_of(&cenv, "THRONG_LISTEN")
    );

    // Media nodes: a headless Service over the DaemonSet's HTTP port.
    let node = find(&objs, "DaemonSet", "-media-node").unwrap();
    let nc = container(node);
    let nenv = container_env(nc, &test_fields());
    let nsm = find(&objs, "ServiceMonitor", "-media-node").expect("media-node ServiceMonitor");
    let nsvc = find(&objs, "Service", "-media-node-metrics").expect("headless Service");
    assert_eq!(nsvc["spec"]["clusterIP"].as_str(), Some("None"));
    for (k, v) in nsm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&nsvc["metadata"]["labels"][k], v);
    }
    for (k, v) in nsvc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(
            &node["spec"]["template"]["metadata"]["labels"][k], v,
            "the Service selects the nodes"
        );
    }
    let np = &nsvc["spec"]["ports"][0];
    assert_eq!(np["name"], nsm["spec"]["endpoints"][0]["port"]);
    assert_eq!(
        np["targetPort"].as_u64(),
        Some(port_of(&nenv, "THRONG_HTTP_LISTEN"))
    );

    // Traces: both get the collector's address.
    for env in [&cenv, &nenv] {
        assert_eq!(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str),
            Some("http://otel-collector.observability:4317")
        );
    }

    // The dashboard ConfigMap carries the repository's dashboard, as JSON.
    let cm = find(&objs, "ConfigMap", "-dashboard").expect("dashboard ConfigMap");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    let shipped: serde_json::Value =
        serde_json::from_str(cm["data"]["throng.json"].as_str().unwrap()).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("dashboards/throng.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
    assert!(file["panels"].as_array().unwrap().len() >= 12);

    // Off by default: no monitor, no dashboard, no OTLP endpoint.
    let plain = objects(&render(&[]));
    assert!(find(&plain, "ServiceMonitor", "").is_none());
    assert!(find(&plain, "ConfigMap", "-dashboard").is_none());
    let penv = container_env(
        container(find(&plain, "Deployment", "-coordinator").unwrap()),
        &test_fields(),
    );
    assert!(!penv.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
}
