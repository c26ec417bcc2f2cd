//! The operator's interface that both binaries share, so that `coordinator`
//! and `media-node` behave the same under an orchestrator:
//!
//! - the command line: `--help`, `--version`, `--check-config`, `--probe PATH`
//!   ([`command`]; the probe is what a container HEALTHCHECK runs, so that the
//!   images need no curl);
//! - the environment, with secrets read from files as Kubernetes mounts them:
//!   `THRONG_X_FILE=/path` stands for `THRONG_X=<file contents>` ([`environment`]);
//! - logs: `RUST_LOG` filters, `THRONG_LOG_FORMAT` (`text`, `json`) shapes them,
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` exports spans ([`init_logging`]);
//! - the Redis URL rule both binaries apply ([`check_redis_url`]), and how
//!   they connect to it, TLS and Sentinel included ([`RedisConn`],
//!   [`redis_client`], [`redis_ca`]);
//! - TLS on the gRPC link between coordinators and media nodes, read and
//!   checked the same way on both ends ([`grpc_tls`]);
//! - the open-file limit, raised to the hard limit at start ([`nofile`]).
//!
//! Exit codes: 0 done, 1 failed while serving, 2 bad configuration or command
//! line (including a listen address that cannot be bound).
//!
//! Owns nothing at run time but the Redis connections it makes
//! ([`redis_conn`]); calls only the standard library, tokio (the probe's one
//! HTTP request), `redis`, `rustls` and `tracing-subscriber`.

#![deny(unsafe_code)]

pub mod grpc_tls;
pub mod nofile;
pub mod redis_conn;
pub use redis_conn::RedisConn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Exit code for a configuration or command line that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

/// Log format variable: `text` (default) or `json` (one object per line).
pub const LOG_FORMAT: &str = "THRONG_LOG_FORMAT";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// No arguments: serve.
    Serve,
    /// `--check-config`: validate the environment, print it, exit 0 or 2.
    CheckConfig,
    /// `--help` / `-h`.
    Help,
    /// `--version` / `-V`.
    Version,
    /// `--probe PATH`: GET PATH on the binary's own HTTP address; exit 0 on
    /// 200, 1 otherwise.
    Probe(String),
    /// Anything else, for the binary's own subcommands (`coordinator token`).
    Other(Vec<String>),
}

/// Reads the command line (without the program name).
pub fn command(args: &[String]) -> Command {
    match args {
        [] => Command::Serve,
        [one] if one == "--check-config" => Command::CheckConfig,
        [one] if one == "--help" || one == "-h" || one == "help" => Command::Help,
        [one] if one == "--version" || one == "-V" => Command::Version,
        [flag, path] if flag == "--probe" && path.starts_with('/') => Command::Probe(path.clone()),
        _ => Command::Other(args.to_vec()),
    }
}

/// A setting that cannot be used: names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// The variable (`THRONG_TOKEN_SECRET_FILE`, `THRONG_LOG_FORMAT`...).
    pub var: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.reason)
    }
}

impl std::error::Error for EnvError {}

/// The environment with `<VAR>_FILE` resolved for each of `file_vars`: the
/// file's contents, without a trailing newline, become `<VAR>`. Setting both
/// `<VAR>` and `<VAR>_FILE`, or naming a file that cannot be read, is an error
/// (a secret silently taken from the wrong place is worse than no start).
pub fn environment(
    vars: impl IntoIterator<Item = (String, String)>,
    file_vars: &[&str],
) -> Result<HashMap<String, String>, EnvError> {
    let mut env: HashMap<String, String> = vars.into_iter().collect();
    for var in file_vars {
        let file_var = format!("{var}_FILE");
        let Some(path) = env.get(&file_var).map(|p| p.trim().to_string()) else {
            continue;
        };
        if path.is_empty() {
            continue;
        }
        if env.get(*var).is_some_and(|v| !v.trim().is_empty()) {
            return Err(EnvError {
                var: file_var,
                reason: format!("set together with {var}; set one of them"),
            });
        }
        let contents = std::fs::read_to_string(&path).map_err(|e| EnvError {
            var: file_var.clone(),
            reason: format!("cannot read {path}: {e}"),
        })?;
        let value = contents.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(EnvError {
                var: file_var,
                reason: format!("{path} is empty"),
            });
        }
        env.insert(var.to_string(), value);
    }
    Ok(env)
}

/// The log format `THRONG_LOG_FORMAT` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Reads `THRONG_LOG_FORMAT`.
pub fn log_format(env: &HashMap<String, String>) -> Result<LogFormat, EnvError> {
    match env.get(LOG_FORMAT).map(|v| v.trim()) {
        None | Some("") | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(v) => Err(EnvError {
            var: LOG_FORMAT.into(),
            reason: format!("{v:?}: text or json"),
        }),
    }
}

/// Installs the global subscriber: `RUST_LOG` (default `info`) filters,
/// `THRONG_LOG_FORMAT` shapes the lines on stderr, and spans go out over
/// OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `throng_telemetry`).
/// Keep the returned guard until exit: shutting it down flushes the spans.
pub fn init_logging(
    env: &HashMap<String, String>,
    service: &'static str,
) -> Result<throng_telemetry::trace::Tracing, EnvError> {
    use throng_telemetry::trace;
    let format = match log_format(env)? {
        LogFormat::Text => trace::LogFormat::Text,
        LogFormat::Json => trace::LogFormat::Json,
    };
    trace::init(env, service, format).map_err(|e| EnvError {
        var: match e {
            trace::TraceError::Filter(..) => "RUST_LOG".into(),
            trace::TraceError::Exporter(_) => "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        },
        reason: e.to_string(),
    })
}

/// The Redis URL rule: `redis://`, `rediss://` (TLS) or `redis+unix://`, and
/// parseable; or `redis+sentinel://` / `rediss+sentinel://` naming Sentinels
/// and the monitored primary (see [`redis_conn`]). A password in the URL is
/// sent as Redis AUTH (to the primary).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo;
    if redis_conn::is_sentinel_url(url) {
        return redis_conn::RedisTarget::parse(url).map(|_| ());
    }
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://"))
    {
        return Err(
            "a redis://, rediss://, redis+unix://, redis+sentinel:// or rediss+sentinel:// URL"
                .into(),
        );
    }
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("not a usable Redis URL: {e}"))
}

/// The variable both binaries read a PEM bundle from: the certificate
/// authorities a `rediss://` Redis's certificate is checked against, instead
/// of the system's.
pub const REDIS_CA_FILE: &str = "THRONG_REDIS_CA_FILE";

/// The CA bundle `THRONG_REDIS_CA_FILE` names, checked to go with `url`: a
/// readable PEM file with a certificate, and a `rediss://` URL.
pub fn redis_ca(
    env: &std::collections::HashMap<String, String>,
    url: Option<&str>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(path) = env.get(REDIS_CA_FILE).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if !url.is_some_and(|u| u.starts_with("rediss://") || u.starts_with("rediss+sentinel://")) {
        return Err(
            "a CA file is only used with a rediss:// or rediss+sentinel:// THRONG_REDIS_URL".into(),
        );
    }
    let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{path}: no PEM certificate in it"));
    }
    Ok(Some(pem))
}

/// A Redis client for `url`: over TLS for `rediss://`, checking the server
/// against `ca` (PEM) when given, else against the system's roots.
pub fn redis_client(url: &str, ca: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: ca.map(<[u8]>::to_vec),
            },
        )
    } else {
        redis::Client::open(url)
    }
}

/// A URL with the password of its userinfo replaced by `***`, for logs and
/// `--check-config`.
pub fn redact_url(url: &str) -> String {
    // A Sentinel's password given as an option.
    let url = match url.find("sentinel_password=") {
        Some(at) => {
            let start = at + "sentinel_password=".len();
            let end = url[start..].find('&').map_or(url.len(), |e| start + e);
            format!("{}***{}", &url[..start], &url[end..])
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

/// GETs `path` from the HTTP server at `addr` (an unspecified address such
/// as `0.0.0.0` is reached on loopback) and returns the status code and body.
/// Bounded by `limit`. Plain HTTP/1.0, enough for the binaries' own health
/// endpoints.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        )
    } else {
        addr
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(bad)?;
        Ok((code, body.to_string()))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// Runs `--probe`: 0 when `path` answers 200, 1 otherwise (with the reason on
/// stderr).
pub async fn probe(binary: &str, addr: SocketAddr, path: &str) -> std::process::ExitCode {
    match http_get(addr, path, Duration::from_secs(3)).await {
        Ok((200, _)) => std::process::ExitCode::SUCCESS,
        Ok((code, body)) => {
            eprintln!("{binary}: {path}: {code} {}", body.trim());
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{binary}: {path} on {addr}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sends SIGTERM to every process of group `pgid` (a tool started with its
/// own group, and the children it started: a load generator's ffmpeg).
#[allow(unsafe_code)]
pub fn terminate_group(pgid: i32) -> std::io::Result<()> {
    if pgid <= 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a process group id",
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // negative pid addresses exactly the process group `pgid`.
    if unsafe { libc::kill(-pgid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends SIGTERM to process `pid` (a stop hook starting a drain).
#[allow(unsafe_code)]
pub fn terminate(pid: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a single process id",
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `--help` text: the usage, then every variable of `vars` (name, what it
/// does), the logging variables and the ones that may come from files.
pub fn help_text(usage: &str, vars: &[(&str, &str)], from_files: &[&str]) -> String {
    let mut text = format!("{usage}\n\nenvironment:\n");
    for (var, what) in vars {
        text.push_str(&format!("  {var:<28} {what}\n"));
    }
    text.push_str(&format!(
        "  {:<28} log filter, tracing-subscriber syntax (default info)\n",
        "RUST_LOG"
    ));
    text.push_str(&format!(
        "  {LOG_FORMAT:<28} text (default) or json: one JSON object per log line\n"
    ));
    text.push_str(&format!(
        "\n{} may instead be read from files: <VAR>_FILE=/path (Kubernetes secrets).\n",
        from_files.join(", ")
    ));
    text
}

/// What a binary says about itself, for the commands every binary answers
/// the same way.
pub struct Binary<'a> {
    /// Its name (`coordinator`, `media-node`).
    pub name: &'a str,
    /// Its version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'a str,
    /// Its usage lines.
    pub usage: &'a str,
    /// Its variables (name, what it does).
    pub vars: &'a [(&'a str, &'a str)],
    /// Variables that may come from `<VAR>_FILE`.
    pub from_files: &'a [&'a str],
    /// Its own subcommand (`token`, `drain`), handled by the binary.
    pub subcommand: &'a str,
}

/// Answers `--help`, `--version` and unknown commands (exit code), or `None`
/// when the binary has work to do.
pub fn answer(command: &Command, binary: &Binary<'_>) -> Option<std::process::ExitCode> {
    match command {
        Command::Help => {
            print!(
                "{}",
                help_text(binary.usage, binary.vars, binary.from_files)
            );
            Some(std::process::ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("{}", version_line(binary.name, binary.version));
            Some(std::process::ExitCode::SUCCESS)
        }
        Command::Other(a) if a[0] != binary.subcommand => {
            eprintln!("unknown command {:?}\n{}", a.join(" "), binary.usage);
            Some(std::process::ExitCode::from(EXIT_CONFIG))
        }
        _ => None,
    }
}

/// `--check-config` text: one `VAR=value` a line.
pub fn settings_text(settings: &[(&str, String)]) -> String {
    settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// `--version` text: `<binary> <version>`.
pub fn version_line(binary: &str, version: &str) -> String {
    format!("{binary} {version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command(&args(&[])), Command::Serve);
        assert_eq!(command(&args(&["--check-config"])), Command::CheckConfig);
        assert_eq!(command(&args(&["-h"])), Command::Help);
        assert_eq!(command(&args(&["--version"])), Command::Version);
        assert_eq!(
            command(&args(&["--probe", "/readyz"])),
            Command::Probe("/readyz".into())
        );
        assert_eq!(
            command(&args(&["token", "--room", "r"])),
            Command::Other(args(&["token", "--room", "r"]))
        );
        assert_eq!(
            command(&args(&["--check-config", "x"])),
            Command::Other(args(&["--check-config", "x"]))
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("throng-ops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret-from-a-mounted-file\n").unwrap();
        let path = file.to_str().unwrap();

        let env = environment(
            vars(&[("THRONG_A_FILE", path), ("OTHER", "x")]),
            &["THRONG_A"],
        )
        .unwrap();
        assert_eq!(env["THRONG_A"], "s3cret-from-a-mounted-file");
        assert_eq!(env["OTHER"], "x");

        let both = environment(
            vars(&[("THRONG_A_FILE", path), ("THRONG_A", "inline")]),
            &["THRONG_A"],
        )
        .unwrap_err();
        assert_eq!(both.var, "THRONG_A_FILE");

        let missing =
            environment(vars(&[("THRONG_A_FILE", "/nonexistent/x")]), &["THRONG_A"]).unwrap_err();
        assert_eq!(missing.var, "THRONG_A_FILE");
        assert!(missing.reason.contains("/nonexistent/x"), "{missing}");

        std::fs::write(&file, "\n").unwrap();
        let empty = environment(vars(&[("THRONG_A_FILE", path)]), &["THRONG_A"]).unwrap_err();
        assert!(empty.reason.contains("empty"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_format_is_text_or_json() {
        let env = |v: &str| vars(&[(LOG_FORMAT, v)]).into_iter().collect();
        assert_eq!(log_format(&env("json")).unwrap(), LogFormat::Json);
        assert_eq!(log_format(&env("")).unwrap(), LogFormat::Text);
        assert_eq!(log_format(&env("yaml")).unwrap_err().var, LOG_FORMAT);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://pw@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("rediss+sentinel://:pw@s:1/m?sentinel_password=spw&sentinel_tls=false"),
            "rediss+sentinel://:***@s:1/m?sentinel_password=***&sentinel_tls=false"
        );
        assert_eq!(
            redact_url("redis+sentinel://s:1/m?sentinel_password=spw"),
            "redis+sentinel://s:1/m?sentinel_password=***"
        );
    }

    #[test]
    fn redis_urls() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://:pw@redis.example:6380/2").is_ok());
        assert!(check_redis_url("rediss://:pw@redis.example:6380").is_ok());
        let mut env = std::collections::HashMap::new();
        assert_eq!(redis_ca(&env, Some("redis://h:1")), Ok(None));
        env.insert(REDIS_CA_FILE.to_string(), "/nonexistent/ca.pem".to_string());
        assert!(redis_ca(&env, Some("redis://h:1"))
            .unwrap_err()
            .contains("rediss://"));
        assert!(redis_ca(&env, Some("rediss://h:1"))
            .unwrap_err()
            .contains("/nonexistent/ca.pem"));
        assert!(check_redis_url("http://x").is_err());
        assert!(check_redis_url("redis://host:notaport").is_err());
    }
}

/// The variable both binaries read the shared gRPC token from (also as
/// `THRONG_NODE_TOKEN_FILE`): coordinators send it on every call to a media
/// node, nodes refuse calls without it.
pub const NODE_TOKEN: &str = "THRONG_NODE_TOKEN";

/// Shortest accepted node token.
pub const NODE_TOKEN_MIN: usize = 32;

/// The gRPC metadata key the node token travels in.
pub const NODE_TOKEN_HEADER: &str = "authorization";

/// Whether two secrets are equal, every byte compared whatever differs (the
/// length leaks nothing useful).
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A secret from the environment: compared in constant time, never printed
/// (`Debug` shows `(set)`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(set)")
    }
}

impl Secret {
    /// A secret of at least `min` characters, or why not.
    pub fn parse(value: &str, min: usize) -> Result<Self, String> {
        let v = value.trim();
        if v.len() < min {
            return Err(format!("must be at least {min} characters"));
        }
        if !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("printable ASCII without spaces".into());
        }
        Ok(Self(v.to_string()))
    }

    /// The secret itself (to send it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret ([`same_secret`]).
    pub fn matches(&self, given: &str) -> bool {
        same_secret(given, &self.0)
    }

    /// The metadata value a caller sends: `Bearer <token>`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `authorization` value carries this secret as a bearer token.
    pub fn accepts_bearer(&self, header: Option<&str>) -> bool {
        header
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.matches(t.trim()))
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_secret_is_checked_in_full_and_never_printed() {
        let s = Secret::parse(&"k".repeat(32), NODE_TOKEN_MIN).unwrap();
        assert!(s.accepts_bearer(Some(&s.bearer())));
        assert!(!s.accepts_bearer(Some(&format!("Bearer {}", "k".repeat(31)))));
        assert!(!s.accepts_bearer(Some(&"k".repeat(32))), "no Bearer prefix");
        assert!(!s.accepts_bearer(None));
        assert!(!format!("{s:?}").contains("kkkk"));
        assert!(Secret::parse("short", NODE_TOKEN_MIN).is_err());
        assert!(Secret::parse(&format!("{} x", "k".repeat(32)), NODE_TOKEN_MIN).is_err());
    }
}
