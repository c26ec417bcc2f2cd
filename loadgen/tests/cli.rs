//! loadgen's command line: unknown flags and bad values are errors (exit 2,
//! naming them) before anything connects; `--help` describes every scenario;
//! the token secret may come from the environment.

use std::process::{Command, Output};

fn loadgen(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("THRONG_TOKEN_SECRET")
        .env_remove("THRONG_ADMIN_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run loadgen")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Port 9 on loopback: nothing listens there; a run that got past its
/// arguments would fail to connect (exit 1), not exit 2.
const URL: &str = "ws://127.0.0.1:9/ws";

#[test]
fn an_unknown_flag_is_an_error_naming_it() {
    // `--join` (not `--joins`) used to run the default 1000 joins.
    let o = loadgen(
        &["surge", "--url", URL, "--join", "50"],
        &[("THRONG_TOKEN_SECRET", "s")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'--join'"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--joins"), "suggests the right one");
}

#[test]
fn a_bad_value_is_an_error_naming_the_flag() {
    for (args, flag) in [
        (vec!["surge", "--url", URL, "--joins", "many"], "--joins"),
        (vec!["surge", "--url", URL, "--joins", "0"], "--joins"),
        (
            vec!["surge", "--url", URL, "--joins", "5", "--rooms", "9"],
            "--rooms",
        ),
        (
            vec!["surge", "--url", URL, "--joins", "5", "--media", "6"],
            "--media",
        ),
        (vec!["room", "--url", URL, "--relay", "everyone"], "--relay"),
        (
            vec!["room", "--url", URL, "--participants", "5000"],
            "--participants",
        ),
        (
            vec![
                "capacity",
                "--url",
                URL,
                "--node-pid",
                "1",
                "--steps",
                "200,100",
            ],
            "--steps",
        ),
        (
            vec![
                "node-kill",
                "--url",
                URL,
                "--admin-key",
                "k",
                "--nodes",
                "n1",
            ],
            "--nodes",
        ),
        (vec!["direct", "--port", "0"], "--port"),
    ] {
        let o = loadgen(&args, &[("THRONG_TOKEN_SECRET", "s")]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn the_token_secret_is_required_and_may_come_from_the_environment() {
    let o = loadgen(&["surge", "--url", URL, "--joins", "1"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token-secret"), "{}", stderr(&o));
    // From the environment: the arguments are accepted, and the run itself
    // fails (nothing listens), exit 1.
    let o = loadgen(
        &[
            "surge",
            "--url",
            URL,
            "--joins",
            "1",
            "--media",
            "0",
            "--timeout-secs",
            "5",
        ],
        &[("THRONG_TOKEN_SECRET", "from-the-environment")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // `--help` names the variable and never shows its value.
    let o = loadgen(&["surge", "--help"], &[("THRONG_TOKEN_SECRET", "sekrit")]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("THRONG_TOKEN_SECRET"), "{help}");
    assert!(!help.contains("sekrit"), "{help}");
}

#[test]
fn help_describes_every_scenario() {
    let o = loadgen(&["--help"], &[]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for scenario in [
        "surge",
        "capacity",
        "direct",
        "room",
        "rooms",
        "churn",
        "pipe",
        "node-kill",
        "leave-surge",
        "otlp-sink",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{scenario} ")))
            .unwrap_or_else(|| panic!("{scenario} missing from --help:\n{help}"));
        assert!(
            line.split_whitespace().count() > 4,
            "{scenario} is not described: {line}"
        );
        let o = loadgen(&[scenario, "--help"], &[]);
        assert!(o.status.success(), "{scenario} --help");
    }
}
