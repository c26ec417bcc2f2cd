//! Media node configuration: read from an environment map, validated as a whole
//! before any port is bound or any worker is started.
//!
//! About 665 lines, a third of them tests: every variable is read, checked
//! and described here, next to the others it must agree with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything a media node needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Stable identity of this node in the cluster registry. Default: hostname.
    pub node_id: String,
    /// Number of mediasoup workers, one per core by default.
    pub workers: usize,
    /// Address the WebRTC servers listen on (all workers share it).
    pub rtc_listen_ip: IpAddr,
    /// Address or hostname announced to browsers in ICE candidates (NAT, Kubernetes).
    /// `None` announces `rtc_listen_ip`.
    pub announced_address: Option<String>,
    /// Worker `i` listens on UDP and TCP port `rtc_base_port + i`.
    pub rtc_base_port: u16,
    /// IP or hostname other media nodes send piped media to (resolved to an
    /// IP at start). `None`: the announced address, right when nodes and
    /// browsers reach a node on the same address.
    pub pipe_address: Option<String>,
    /// HTTP endpoint for health and Prometheus metrics.
    pub http_listen: SocketAddr,
    /// How long a draining node keeps serving its rooms after SIGTERM.
    pub drain_grace: Duration,
    /// Where the gRPC service listens.
    pub grpc_listen: SocketAddr,
    /// host:port coordinators dial; defaults to `grpc_listen`.
    pub grpc_advertise: String,
    /// Redis for the load report; `None` runs without one (GetNodeInfo only).
    pub redis_url: Option<String>,
    /// Certificate authorities (PEM) a `rediss://` Redis is checked against.
    pub redis_ca: Option<Vec<u8>>,
    /// How often the load report is written.
    pub report_interval: Duration,
    /// TTL of the load report: a node silent this long is gone.
    pub report_ttl: Duration,
    /// How often the workers' stats are read into the media metrics.
    pub stats_interval: Duration,
    /// Keyframe requests towards a producer are held back this long after
    /// one went out (mediasoup's `keyFrameRequestDelay`; 0 = not throttled).
    pub key_frame_request_delay_ms: u32,
    /// The token coordinators must send on every gRPC call. Required when
    /// the gRPC address is not loopback; `None` (loopback only): any local
    /// caller is served.
    pub node_token: Option<throng_ops::Secret>,
    /// TLS on the gRPC port (`THRONG_GRPC_TLS_*`); with a client CA, callers
    /// must present a certificate it signed (mutual TLS). `None`: plain.
    pub grpc_tls: Option<throng_ops::grpc_tls::ServerTls>,
}

/// A configuration that cannot be used; names the variable and the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable is set but cannot be parsed.
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        /// Environment variable name.
        var: &'static str,
        /// The value found.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The worker ports do not fit below 65536.
    #[error(
        "THRONG_RTC_BASE_PORT={base} with {workers} workers needs ports up to {last}, beyond 65535"
    )]
    PortRangeOverflow {
        /// First port.
        base: u16,
        /// Worker count.
        workers: usize,
        /// Last port that would be needed.
        last: usize,
    },
    /// The HTTP port falls inside the workers' RTC port range.
    #[error("THRONG_HTTP_LISTEN port {port} collides with the RTC ports {first}..={last}")]
    PortCollision {
        /// The HTTP port.
        port: u16,
        /// First RTC port.
        first: u16,
        /// Last RTC port.
        last: u16,
    },
}

/// Environment variable names, in one place for docs and tests.
pub mod vars {
    /// Node id.
    pub const NODE_ID: &str = "THRONG_NODE_ID";
    /// Worker count.
    pub const WORKERS: &str = "THRONG_WORKERS";
    /// RTC listen IP.
    pub const RTC_LISTEN_IP: &str = "THRONG_RTC_LISTEN_IP";
    /// Announced address.
    pub const ANNOUNCED_ADDRESS: &str = "THRONG_ANNOUNCED_ADDRESS";
    /// First RTC port.
    pub const RTC_BASE_PORT: &str = "THRONG_RTC_BASE_PORT";
    /// Address other media nodes pipe media to.
    pub const PIPE_ADDRESS: &str = "THRONG_PIPE_ADDRESS";
    /// HTTP listen address.
    pub const HTTP_LISTEN: &str = "THRONG_HTTP_LISTEN";
    /// Drain grace period in seconds.
    pub const DRAIN_GRACE_SECS: &str = "THRONG_DRAIN_GRACE_SECS";
    /// gRPC listen address.
    pub const GRPC_LISTEN: &str = "THRONG_GRPC_LISTEN";
    /// gRPC address advertised to coordinators.
    pub const GRPC_ADVERTISE: &str = "THRONG_GRPC_ADVERTISE";
    /// Redis URL.
    pub const REDIS_URL: &str = "THRONG_REDIS_URL";
    /// Report interval in milliseconds.
    pub const REPORT_INTERVAL_MS: &str = "THRONG_REPORT_INTERVAL_MS";
    /// Report TTL in milliseconds.
    pub const REPORT_TTL_MS: &str = "THRONG_REPORT_TTL_MS";
    /// Stats sweep interval in milliseconds.
    pub const STATS_INTERVAL_MS: &str = "THRONG_STATS_INTERVAL_MS";
    /// Keyframe request throttle per producer in milliseconds.
    pub const KEY_FRAME_REQUEST_DELAY_MS: &str = "THRONG_KEY_FRAME_REQUEST_DELAY_MS";

    /// Shared gRPC token.
    pub const NODE_TOKEN: &str = throng_ops::NODE_TOKEN;

    /// Variables that may be given as `<VAR>_FILE` (a mounted secret).
    pub const FROM_FILES: &[&str] = &[REDIS_URL, NODE_TOKEN];

    /// Every variable with what it does and its default, for `--help` and the
    /// docs (a test checks the README lists each one).
    pub const ALL: &[(&str, &str)] = &[
        (
            NODE_ID,
            "this node's id in the registry (default: the hostname)",
        ),
        (
            WORKERS,
            "mediasoup workers, one per core (default: the number of CPUs)",
        ),
        (
            RTC_LISTEN_IP,
            "address the WebRTC ports listen on (default 0.0.0.0)",
        ),
        (
            ANNOUNCED_ADDRESS,
            "IP or hostname browsers are told to send media to (required with 0.0.0.0)",
        ),
        (
            RTC_BASE_PORT,
            "worker i uses UDP and TCP port BASE+i (default 40000)",
        ),
        (
            HTTP_LISTEN,
            "/healthz, /readyz, /status (default 127.0.0.1:9100)",
        ),
        (
            DRAIN_GRACE_SECS,
            "on SIGTERM, how long rooms may stay before the node stops (default 300)",
        ),
        (
            GRPC_LISTEN,
            "gRPC API for coordinators (default 127.0.0.1:50051)",
        ),
        (
            GRPC_ADVERTISE,
            "host:port coordinators dial (default: the gRPC listen address)",
        ),
        (
            REDIS_URL,
            "Redis the load report is written to, redis://, rediss:// (TLS), or redis+sentinel://h1:26379,h2:26379/MASTER to follow a Sentinel failover (rediss+sentinel:// for TLS; ?sentinel_password=PW for the Sentinels' own); a password in it is sent as AUTH (unset: none, coordinators poll)",
        ),
        (
            throng_ops::REDIS_CA_FILE,
            "PEM certificate authorities a rediss:// (or rediss+sentinel://) Redis is checked against (default: the system's)",
        ),
        (
            REPORT_INTERVAL_MS,
            "how often the load report is written (default 1000)",
        ),
        (
            STATS_INTERVAL_MS,
            "how often every stream's stats are read into /metrics (default 10000, at least 100)",
        ),
        (
            REPORT_TTL_MS,
            "a report older than this means the node is gone (default 3000)",
        ),
        (
            KEY_FRAME_REQUEST_DELAY_MS,
            "at most one keyframe request per this many ms reaches a sender, however many viewers ask (default 1000, 0 = every request, at most 10000)",
        ),
        (
            NODE_TOKEN,
            "token coordinators must send on every gRPC call, 32+ characters (required unless THRONG_GRPC_LISTEN is loopback or THRONG_GRPC_TLS_CLIENT_CA_FILE is set)",
        ),
        (
            throng_ops::grpc_tls::GRPC_TLS_CERT_FILE,
            "PEM certificate chain the gRPC port serves TLS with (unset: plain gRPC)",
        ),
        (
            throng_ops::grpc_tls::GRPC_TLS_KEY_FILE,
            "PEM private key of that certificate",
        ),
        (
            throng_ops::grpc_tls::GRPC_TLS_CLIENT_CA_FILE,
            "PEM CAs whose client certificates are accepted: coordinators must present one (mutual TLS)",
        ),
    ];
}

fn parse<T: std::str::FromStr>(
    env: &HashMap<String, String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            var,
            value: v.to_string(),
            reason: e.to_string(),
        }),
    }
}

impl NodeConfig {
    /// Reads and validates the configuration from an environment map
    /// (`std::env::vars().collect()` in `main`, a literal map in tests).
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let default_id = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "media-node".to_string());
        let node_id: String = parse(env, vars::NODE_ID, default_id)?;
        if node_id.is_empty()
            || node_id.len() > 64
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Invalid {
                var: vars::NODE_ID,
                value: node_id,
                reason: "1 to 64 characters of [A-Za-z0-9._-]".into(),
            });
        }

        let workers: usize = parse(env, vars::WORKERS, num_cpus::get())?;
        if workers == 0 || workers > 256 {
            return Err(ConfigError::Invalid {
                var: vars::WORKERS,
                value: workers.to_string(),
                reason: "between 1 and 256".into(),
            });
        }

        let rtc_listen_ip: IpAddr = parse(env, vars::RTC_LISTEN_IP, IpAddr::from([0, 0, 0, 0]))?;
        let announced_address = env
            .get(vars::ANNOUNCED_ADDRESS)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if rtc_listen_ip.is_unspecified() && announced_address.is_none() {
            return Err(ConfigError::Invalid {
                var: vars::ANNOUNCED_ADDRESS,
                value: String::new(),
                reason: format!(
                    "required when {} is unspecified ({rtc_listen_ip}): browsers need a reachable address",
                    vars::RTC_LISTEN_IP
                ),
            });
        }

        let pipe_address = env
            .get(vars::PIPE_ADDRESS)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(a) = &pipe_address {
            if a.parse::<IpAddr>()
                .map(|ip| ip.is_unspecified())
                .unwrap_or(false)
                || !a
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                return Err(ConfigError::Invalid {
                    var: vars::PIPE_ADDRESS,
                    value: a.clone(),
                    reason: "an IP address (not unspecified) or a hostname".into(),
                });
            }
        }

        let rtc_base_port: u16 = parse(env, vars::RTC_BASE_PORT, 40000)?;
        if rtc_base_port < 1024 {
            return Err(ConfigError::Invalid {
                var: vars::RTC_BASE_PORT,
                value: rtc_base_port.to_string(),
                reason: "must be 1024 or above".into(),
            });
        }
        let last = rtc_base_port as usize + workers - 1;
        if last > u16::MAX as usize {
            return Err(ConfigError::PortRangeOverflow {
                base: rtc_base_port,
                workers,
                last,
            });
        }

        let http_listen: SocketAddr = parse(
            env,
            vars::HTTP_LISTEN,
            SocketAddr::from(([127, 0, 0, 1], 9100)),
        )?;
        let port = http_listen.port();
        if port != 0 && (rtc_base_port..=last as u16).contains(&port) {
            return Err(ConfigError::PortCollision {
                port,
                first: rtc_base_port,
                last: last as u16,
            });
        }

        let drain_grace_secs: u64 = parse(env, vars::DRAIN_GRACE_SECS, 300)?;

        let grpc_listen: SocketAddr = parse(
            env,
            vars::GRPC_LISTEN,
            SocketAddr::from(([127, 0, 0, 1], 50051)),
        )?;
        let grpc_port = grpc_listen.port();
        if grpc_port != 0 && (rtc_base_port..=last as u16).contains(&grpc_port) {
            return Err(ConfigError::PortCollision {
                port: grpc_port,
                first: rtc_base_port,
                last: last as u16,
            });
        }
        let grpc_advertise = match env
            .get(vars::GRPC_ADVERTISE)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            Some(v) => {
                let ok = v.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
                });
                if !ok {
                    return Err(ConfigError::Invalid {
                        var: vars::GRPC_ADVERTISE,
                        value: v.into(),
                        reason: "host:port".into(),
                    });
                }
                v.to_string()
            }
            None => grpc_listen.to_string(),
        };
        let redis_url = env
            .get(vars::REDIS_URL)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(url) = &redis_url {
            if let Err(reason) = throng_ops::check_redis_url(url) {
                return Err(ConfigError::Invalid {
                    var: vars::REDIS_URL,
                    value: redact(url),
                    reason,
                });
            }
        }
        let redis_ca = throng_ops::redis_ca(env, redis_url.as_deref()).map_err(|reason| {
            ConfigError::Invalid {
                var: throng_ops::REDIS_CA_FILE,
                value: env
                    .get(throng_ops::REDIS_CA_FILE)
                    .cloned()
                    .unwrap_or_default(),
                reason,
            }
        })?;
        let report_interval_ms: u64 = parse(env, vars::REPORT_INTERVAL_MS, 1000)?;
        let report_ttl_ms: u64 = parse(env, vars::REPORT_TTL_MS, 3000)?;
        if report_interval_ms == 0 || report_ttl_ms <= report_interval_ms {
            return Err(ConfigError::Invalid {
                var: vars::REPORT_TTL_MS,
                value: report_ttl_ms.to_string(),
                reason: format!(
                    "must exceed {} ({report_interval_ms}), itself above 0",
                    vars::REPORT_INTERVAL_MS
                ),
            });
        }
        let stats_interval_ms: u64 = parse(env, vars::STATS_INTERVAL_MS, 10_000)?;
        if stats_interval_ms < 100 {
            return Err(ConfigError::Invalid {
                var: vars::STATS_INTERVAL_MS,
                value: stats_interval_ms.to_string(),
                reason: "at least 100".into(),
            });
        }
        let key_frame_request_delay_ms: u32 = parse(env, vars::KEY_FRAME_REQUEST_DELAY_MS, 1000)?;
        if key_frame_request_delay_ms > 10_000 {
            return Err(ConfigError::Invalid {
                var: vars::KEY_FRAME_REQUEST_DELAY_MS,
                value: key_frame_request_delay_ms.to_string(),
                reason: "at most 10000 (a viewer would wait that long for a picture)".into(),
            });
        }

        let grpc_tls = throng_ops::grpc_tls::server_tls(env).map_err(|e| ConfigError::Invalid {
            var: e.var,
            value: env.get(e.var).cloned().unwrap_or_default(),
            reason: e.reason,
        })?;
        let mutual_tls = grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let node_token = match env
            .get(vars::NODE_TOKEN)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            Some(v) => Some(
                throng_ops::Secret::parse(v, throng_ops::NODE_TOKEN_MIN).map_err(|reason| {
                    ConfigError::Invalid {
                        var: vars::NODE_TOKEN,
                        value: "(hidden)".into(),
                        reason,
                    }
                })?,
            ),
            None if !grpc_listen.ip().is_loopback() && !mutual_tls => {
                return Err(ConfigError::Invalid {
                    var: vars::NODE_TOKEN,
                    value: String::new(),
                    reason: format!(
                        "required when {} ({grpc_listen}) is not a loopback address \
                         (unless {} makes callers present a certificate): \
                         without it anyone who reaches the port could drive the node",
                        vars::GRPC_LISTEN,
                        throng_ops::grpc_tls::GRPC_TLS_CLIENT_CA_FILE,
                    ),
                })
            }
            None => None,
        };

        Ok(Self {
            node_token,
            grpc_tls,
            stats_interval: Duration::from_millis(stats_interval_ms),
            key_frame_request_delay_ms,
            node_id,
            workers,
            rtc_listen_ip,
            announced_address,
            rtc_base_port,
            pipe_address,
            http_listen,
            drain_grace: Duration::from_secs(drain_grace_secs),
            grpc_listen,
            grpc_advertise,
            redis_url,
            redis_ca,
            report_interval: Duration::from_millis(report_interval_ms),
            report_ttl: Duration::from_millis(report_ttl_ms),
        })
    }

    /// UDP and TCP port of worker `index`.
    pub fn rtc_port(&self, index: usize) -> u16 {
        self.rtc_base_port + index as u16
    }

    /// The effective settings, the Redis password left out, one `VAR=value`
    /// a line (what `--check-config` prints).
    pub fn describe(&self) -> String {
        throng_ops::settings_text(&[
            (vars::NODE_ID, self.node_id.clone()),
            (vars::WORKERS, self.workers.to_string()),
            (vars::RTC_LISTEN_IP, self.rtc_listen_ip.to_string()),
            (
                vars::ANNOUNCED_ADDRESS,
                self.announced_address
                    .clone()
                    .unwrap_or_else(|| self.rtc_listen_ip.to_string()),
            ),
            (
                vars::RTC_BASE_PORT,
                format!(
                    "{} (ports {}..={} UDP+TCP)",
                    self.rtc_base_port,
                    self.rtc_base_port,
                    self.rtc_port(self.workers - 1)
                ),
            ),
            (
                vars::PIPE_ADDRESS,
                self.pipe_address
                    .clone()
                    .unwrap_or_else(|| "(the announced address)".into()),
            ),
            (vars::HTTP_LISTEN, self.http_listen.to_string()),
            (
                vars::DRAIN_GRACE_SECS,
                self.drain_grace.as_secs().to_string(),
            ),
            (vars::GRPC_LISTEN, self.grpc_listen.to_string()),
            (vars::GRPC_ADVERTISE, self.grpc_advertise.clone()),
            (
                vars::REDIS_URL,
                self.redis_url
                    .as_deref()
                    .map(redact)
                    .unwrap_or_else(|| "(none)".into()),
            ),
            (
                throng_ops::REDIS_CA_FILE,
                if self.redis_ca.is_some() {
                    "(set)".into()
                } else {
                    "(none: the system's roots)".into()
                },
            ),
            (
                vars::REPORT_INTERVAL_MS,
                self.report_interval.as_millis().to_string(),
            ),
            (vars::REPORT_TTL_MS, self.report_ttl.as_millis().to_string()),
            (
                vars::STATS_INTERVAL_MS,
                self.stats_interval.as_millis().to_string(),
            ),
            (
                vars::KEY_FRAME_REQUEST_DELAY_MS,
                self.key_frame_request_delay_ms.to_string(),
            ),
            (
                vars::NODE_TOKEN,
                if self.node_token.is_some() {
                    "(set)".into()
                } else {
                    "(none: loopback callers only)".into()
                },
            ),
            (
                throng_ops::grpc_tls::GRPC_TLS_CERT_FILE,
                if self.grpc_tls.is_some() {
                    "(set: TLS)".into()
                } else {
                    "(none: plain gRPC)".into()
                },
            ),
            (
                throng_ops::grpc_tls::GRPC_TLS_KEY_FILE,
                if self.grpc_tls.is_some() {
                    "(set)".into()
                } else {
                    "(none)".into()
                },
            ),
            (
                throng_ops::grpc_tls::GRPC_TLS_CLIENT_CA_FILE,
                if self
                    .grpc_tls
                    .as_ref()
                    .is_some_and(|t| t.client_ca.is_some())
                {
                    "(set: callers' certificates checked)".into()
                } else {
                    "(none: no client certificates asked)".into()
                },
            ),
        ])
    }
}

/// A Redis URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    throng_ops::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_an_announced_address_when_listening_on_all_interfaces() {
        let err = NodeConfig::from_env(&env(&[])).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: vars::ANNOUNCED_ADDRESS,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_node_listening_beyond_loopback_needs_a_token() {
        let mut e = env(&[
            (vars::RTC_LISTEN_IP, "127.0.0.1"),
            (vars::GRPC_LISTEN, "0.0.0.0:50051"),
        ]);
        match NodeConfig::from_env(&e) {
            Err(ConfigError::Invalid { var, reason, .. }) => {
                assert_eq!(var, vars::NODE_TOKEN);
                assert!(reason.contains("loopback"), "{reason}");
            }
            other => panic!("expected a missing token, got {other:?}"),
        }
        e.insert(vars::NODE_TOKEN.into(), "t".repeat(32));
        let c = NodeConfig::from_env(&e).unwrap();
        assert!(c.node_token.is_some());
        assert!(!c.describe().contains(&"t".repeat(32)));
        assert!(!format!("{c:?}").contains(&"t".repeat(32)));
        // Loopback without one: served to local callers.
        let c = NodeConfig::from_env(&env(&[(vars::RTC_LISTEN_IP, "127.0.0.1")])).unwrap();
        assert_eq!(c.node_token, None);
    }

    #[test]
    fn a_full_configuration_parses() {
        let c = NodeConfig::from_env(&env(&[
            (vars::NODE_ID, "node-a"),
            (vars::WORKERS, "3"),
            (vars::RTC_LISTEN_IP, "127.0.0.1"),
            (vars::RTC_BASE_PORT, "41000"),
            (vars::HTTP_LISTEN, "127.0.0.1:0"),
            (vars::DRAIN_GRACE_SECS, "7"),
        ]))
        .unwrap();
        assert_eq!(c.node_id, "node-a");
        assert_eq!(c.workers, 3);
        assert_eq!(c.rtc_port(2), 41002);
        assert_eq!(c.announced_address, None);
        assert_eq!(c.drain_grace, Duration::from_secs(7));
        assert_eq!(c.key_frame_request_delay_ms, 1000, "throttled by default");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (vars::WORKERS, "zero"),
            (vars::WORKERS, "0"),
            (vars::RTC_LISTEN_IP, "localhost:80"),
            (vars::RTC_BASE_PORT, "80"),
            (vars::RTC_BASE_PORT, "70000"),
            (vars::NODE_ID, "has space"),
            (vars::DRAIN_GRACE_SECS, "-1"),
            (vars::GRPC_LISTEN, "nowhere"),
            (vars::GRPC_ADVERTISE, "no-port"),
            (vars::REDIS_URL, "http://localhost"),
            (vars::REDIS_URL, "redis://host:port"),
            (vars::REPORT_TTL_MS, "500"),
            (vars::PIPE_ADDRESS, "0.0.0.0"),
            (vars::PIPE_ADDRESS, "not a host"),
            (vars::NODE_TOKEN, "short"),
            (vars::KEY_FRAME_REQUEST_DELAY_MS, "20000"),
            (vars::KEY_FRAME_REQUEST_DELAY_MS, "-5"),
        ];
        for (var, value) in cases {
            let mut e = env(&[(vars::RTC_LISTEN_IP, "127.0.0.1")]);
            e.insert(var.to_string(), value.to_string());
            match NodeConfig::from_env(&e) {
                Err(ConfigError::Invalid { var: v, .. }) => assert_eq!(v, var, "{value}"),
                other => panic!("{var}={value}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn port_range_must_fit_and_not_collide() {
        let e = env(&[
            (vars::RTC_LISTEN_IP, "127.0.0.1"),
            (vars::RTC_BASE_PORT, "65535"),
            (vars::WORKERS, "2"),
        ]);
        assert!(matches!(
            NodeConfig::from_env(&e),
            Err(ConfigError::PortRangeOverflow { last: 65536, .. })
        ));
        let e = env(&[
            (vars::RTC_LISTEN_IP, "127.0.0.1"),
            (vars::RTC_BASE_PORT, "40000"),
            (vars::WORKERS, "4"),
            (vars::HTTP_LISTEN, "127.0.0.1:40003"),
        ]);
        assert!(matches!(
            NodeConfig::from_env(&e),
            Err(ConfigError::PortCollision { port: 40003, .. })
        ));
    }
}
