//! The configuration's own tests: defaults, refusals naming the variable,
//! what `--check-config` shows and hides.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let secret = "s".repeat(32);
    let mut e: HashMap<String, String> = [
        (vars::TOKEN_SECRET, secret.as_str()),
        (vars::API_KEY, secret.as_str()),
        (vars::ADMIN_KEY, secret.as_str()),
        (vars::REDIS_URL, "redis://127.0.0.1:6379"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in pairs {
        e.insert(k.to_string(), v.to_string());
    }
    e
}

#[test]
fn drain_grace_is_configurable() {
    let c = CoordinatorConfig::from_env(&env(&[(vars::DRAIN_GRACE_SECS, "45")])).unwrap();
    assert_eq!(c.drain_grace, std::time::Duration::from_secs(45));
    let c = CoordinatorConfig::from_env(&env(&[])).unwrap();
    assert_eq!(c.drain_grace, std::time::Duration::from_secs(10));
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        (vars::REDIS_URL, "http://x"),
        (throng_ops::REDIS_CA_FILE, "/nonexistent/ca.pem"),
        (vars::REDIS_URL, "redis://host:port"),
        (vars::TOKEN_SECRET, "short"),
        (vars::LISTEN, "nowhere"),
        (vars::DRAIN_GRACE_SECS, "soon"),
        (vars::ADVERTISE, ":80"),
        (vars::OPEN_JOIN, "maybe"),
        (vars::TRUSTED_PROXIES, "10.0.0.0/40"),
        (vars::QUEUE_MAX, "0"),
        (vars::RATE_IP_BURST, "-1"),
        (vars::NODE_TOKEN, "too-short"),
        (vars::TOKEN_KEYS, "no-colon"),
        (vars::TOKEN_KEYS, "old:short"),
        (vars::TOKEN_KID, "bad kid"),
        (vars::PIPE_FANOUT, "0"),
        (vars::PIPE_FANOUT, "65"),
        (vars::PRESENCE_WINDOW_MS, "9000"),
        (vars::WORKER_CPU_CEILING, "101"),
    ] {
        let err = CoordinatorConfig::from_env(&env(&[(var, value)])).unwrap_err();
        assert_eq!(err.var, var, "{var}={value}: {err}");
    }
    let mut e = env(&[]);
    e.remove(vars::ADMIN_KEY);
    assert_eq!(
        CoordinatorConfig::from_env(&e).unwrap_err().var,
        vars::ADMIN_KEY
    );
}

#[test]
fn a_rotated_token_key_accepts_the_old_tokens_and_hides_the_secrets() {
    let old = "o".repeat(40);
    let c = CoordinatorConfig::from_env(&env(&[
        (vars::TOKEN_KID, "k2"),
        (vars::TOKEN_KEYS, &format!("k1:{old}")),
        (vars::TOKEN_AUDIENCE, "events"),
    ]))
    .unwrap();
    let issued = crate::auth::TokenKey::new(old.as_bytes())
        .with_kid("k1")
        .with_audience("events")
        .mint("r", "ann", true, 60);
    assert_eq!(c.token_key().verify(&issued).unwrap().sub, "ann");
    let text = c.describe();
    assert!(text.contains("THRONG_TOKEN_KEYS=k1:***"), "{text}");
    assert!(!text.contains(&old), "{text}");
    let twice = CoordinatorConfig::from_env(&env(&[
        (vars::TOKEN_KID, "k1"),
        (vars::TOKEN_KEYS, &format!("k1:{old}")),
    ]));
    assert_eq!(twice.unwrap_err().var, vars::TOKEN_KEYS);
}

#[test]
fn described_settings_hide_secrets_and_passwords() {
    let c = CoordinatorConfig::from_env(&env(&[(
        vars::REDIS_URL,
        "redis://default:hunter2hunter2@redis:6379/0",
    )]))
    .unwrap();
    let text = c.describe();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains(&"s".repeat(32)), "{text}");
    assert!(
        text.contains("THRONG_REDIS_URL=redis://default:***@redis:6379/0"),
        "{text}"
    );
    for (var, _) in vars::ALL {
        assert!(text.contains(&format!("{var}=")), "{var} not described");
    }
}
