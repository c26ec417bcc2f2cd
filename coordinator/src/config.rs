//! Coordinator configuration from an environment map, validated before any
//! port is bound.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::placement::PlacementSettings;

/// Everything a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// HTTP + WebSocket listen address.
    pub listen: SocketAddr,
    /// host:port other coordinators reach this one at (defaults to the bound address).
    pub advertise: Option<String>,
    /// Shared Redis; `None` runs the single-machine in-memory registry.
    pub redis_url: Option<String>,
    /// Media nodes to poll when there is no Redis (host:port of their gRPC).
    pub media_nodes: Vec<String>,
    /// Secret join tokens are signed with (HS256).
    pub token_secret: String,
    /// Key for `/api/token`.
    pub api_key: String,
    /// Key for `/admin/*`.
    pub admin_key: String,
    /// Placement settings.
    pub placement: PlacementSettings,
    /// Joins placed at once per live media node, across the cluster.
    pub join_concurrency: u32,
    /// How long a join may wait in the queue.
    pub queue_timeout: std::time::Duration,
    /// This coordinator's id in the registry.
    pub coordinator_id: String,
    /// A coordinator silent this long is dead and its placements are reaped.
    pub coordinator_ttl: std::time::Duration,
    /// The built web client (`client-web/dist`), served at `/`. `None`: not
    /// built, `/` shows the cluster status page instead.
    pub web_root: Option<std::path::PathBuf>,
    /// Anyone may ask `/api/join-token` for a token to any room (development and
    /// open events); otherwise tokens come from the organiser's backend.
    pub open_join: bool,
    /// How long a stopping coordinator waits for its participants to leave
    /// (they re-join elsewhere) before it closes their sessions.
    pub drain_grace: std::time::Duration,
    /// A second, internal address serving only `/metrics`, without a key
    /// (for a Prometheus inside the cluster); `None`: `/metrics` only on
    /// `listen`, behind the admin key.
    pub metrics_listen: Option<SocketAddr>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// Variable.
    pub var: &'static str,
    /// Why.
    pub reason: String,
}

/// Variable names.
pub mod vars {
    /// Listen address.
    pub const LISTEN: &str = "THRONG_LISTEN";
    /// Address other coordinators reach this one at.
    pub const ADVERTISE: &str = "THRONG_ADVERTISE";
    /// Redis URL.
    pub const REDIS_URL: &str = "THRONG_REDIS_URL";
    /// Comma-separated media node gRPC addresses (no-Redis mode).
    pub const MEDIA_NODES: &str = "THRONG_MEDIA_NODES";
    /// Token secret.
    pub const TOKEN_SECRET: &str = "THRONG_TOKEN_SECRET";
    /// API key.
    pub const API_KEY: &str = "THRONG_API_KEY";
    /// Admin key.
    pub const ADMIN_KEY: &str = "THRONG_ADMIN_KEY";
    /// Worker consumer capacity.
    pub const WORKER_CAPACITY: &str = "THRONG_WORKER_CAPACITY";
    /// Tiles per page.
    pub const TILES_PER_PAGE: &str = "THRONG_TILES_PER_PAGE";
    /// Room cap.
    pub const ROOM_CAP: &str = "THRONG_ROOM_CAP";
    /// Joins placed at once per live media node, across the cluster.
    pub const JOIN_CONCURRENCY: &str = "THRONG_JOIN_CONCURRENCY";
    /// Coordinator id (defaults to a random one per start).
    pub const COORDINATOR_ID: &str = "THRONG_COORDINATOR_ID";
    /// Heartbeat TTL in milliseconds.
    pub const COORDINATOR_TTL_MS: &str = "THRONG_COORDINATOR_TTL_MS";
    /// Queue timeout in seconds.
    pub const QUEUE_TIMEOUT_SECS: &str = "THRONG_QUEUE_TIMEOUT_SECS";
    /// Directory of the built web client.
    pub const WEB_ROOT: &str = "THRONG_WEB_ROOT";
    /// `true` lets anyone mint a join token through `/api/join-token`.
    pub const OPEN_JOIN: &str = "THRONG_OPEN_JOIN";
    /// Drain grace in seconds.
    pub const DRAIN_GRACE_SECS: &str = "THRONG_DRAIN_GRACE_SECS";
    /// Internal metrics address.
    pub const METRICS_LISTEN: &str = "THRONG_METRICS_LISTEN";

    /// Variables that may be given as `<VAR>_FILE` (a mounted secret).
    pub const FROM_FILES: &[&str] = &[TOKEN_SECRET, API_KEY, ADMIN_KEY, REDIS_URL];

    /// Every variable with what it does and its default, for `--help` and the
    /// docs (a test checks the README lists each one).
    pub const ALL: &[(&str, &str)] = &[
        (
            LISTEN,
            "HTTP + WebSocket listen address (default 127.0.0.1:8080)",
        ),
        (
            ADVERTISE,
            "host:port other coordinators proxy to (default: the bound address)",
        ),
        (
            REDIS_URL,
            "shared Redis, redis:// or redis+unix:// (unset: in-memory registry, one coordinator)",
        ),
        (
            MEDIA_NODES,
            "media nodes' gRPC host:port, comma-separated (required without Redis)",
        ),
        (
            TOKEN_SECRET,
            "secret join tokens are signed with, >= 32 characters (required)",
        ),
        (
            API_KEY,
            "key for POST /api/token, >= 32 characters (required)",
        ),
        (ADMIN_KEY, "key for /admin/*, >= 32 characters (required)"),
        (WORKER_CAPACITY, "consumers one worker takes (default 1500)"),
        (
            TILES_PER_PAGE,
            "video tiles a browser shows per page (default 12)",
        ),
        (ROOM_CAP, "participants per room (default 1000)"),
        (
            JOIN_CONCURRENCY,
            "joins placed at once per live media node, cluster-wide (default 16)",
        ),
        (
            QUEUE_TIMEOUT_SECS,
            "longest a join waits in the queue (default 120)",
        ),
        (
            COORDINATOR_ID,
            "this coordinator's id in the registry (default: random per start)",
        ),
        (
            COORDINATOR_TTL_MS,
            "a coordinator silent this long is reaped (default 10000)",
        ),
        (
            WEB_ROOT,
            "directory of the built web client (default client-web/dist when present)",
        ),
        (
            OPEN_JOIN,
            "true: anyone may get a join token at /api/join-token (default false)",
        ),
        (
            DRAIN_GRACE_SECS,
            "on SIGTERM, how long participants get to move before sessions close (default 10)",
        ),
        (
            METRICS_LISTEN,
            "internal address serving /metrics without a key (default unset: /metrics on THRONG_LISTEN with the admin key)",
        ),
    ];
}

/// Where the web client is when `THRONG_WEB_ROOT` is not set: next to the
/// working directory (a checkout), else nowhere.
pub const DEFAULT_WEB_ROOT: &str = "client-web/dist";

fn get<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn number(
    env: &HashMap<String, String>,
    var: &'static str,
    default: u32,
    min: u32,
) -> Result<u32, ConfigError> {
    match get(env, var) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError {
                var,
                reason: format!("{v:?} is not a number >= {min}"),
            }),
        },
    }
}

fn secret(env: &HashMap<String, String>, var: &'static str) -> Result<String, ConfigError> {
    match get(env, var) {
        Some(v) if v.len() >= 32 => Ok(v.to_string()),
        Some(_) => Err(ConfigError {
            var,
            reason: "must be at least 32 characters".into(),
        }),
        None => Err(ConfigError {
            var,
            reason: "required".into(),
        }),
    }
}

impl CoordinatorConfig {
    /// Reads and validates the configuration.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let listen = match get(env, vars::LISTEN) {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|e| ConfigError {
                var: vars::LISTEN,
                reason: format!("{v:?}: {e}"),
            })?,
        };
        let redis_url = get(env, vars::REDIS_URL).map(str::to_string);
        if let Some(url) = &redis_url {
            throng_ops::check_redis_url(url).map_err(|reason| ConfigError {
                var: vars::REDIS_URL,
                reason,
            })?;
        }
        let media_nodes: Vec<String> = get(env, vars::MEDIA_NODES)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for n in &media_nodes {
            if n.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(ConfigError {
                    var: vars::MEDIA_NODES,
                    reason: format!("{n:?} is not host:port"),
                });
            }
        }
        if redis_url.is_none() && media_nodes.is_empty() {
            return Err(ConfigError {
                var: vars::MEDIA_NODES,
                reason: format!(
                    "required without {} (the in-memory registry polls these nodes)",
                    vars::REDIS_URL
                ),
            });
        }
        let advertise = get(env, vars::ADVERTISE).map(str::to_string);
        if let Some(a) = &advertise {
            if a.rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then_some(p))
                .and_then(|p| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(ConfigError {
                    var: vars::ADVERTISE,
                    reason: format!("{a:?} is not host:port"),
                });
            }
        }
        let coordinator_id = match get(env, vars::COORDINATOR_ID) {
            Some(id)
                if id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                id.to_string()
            }
            Some(id) => {
                return Err(ConfigError {
                    var: vars::COORDINATOR_ID,
                    reason: format!("{id:?}: 1 to 64 of [A-Za-z0-9._-]"),
                })
            }
            None => format!("coordinator-{}", uuid::Uuid::new_v4().simple()),
        };
        let web_root = match get(env, vars::WEB_ROOT) {
            Some(dir) => {
                let dir = std::path::PathBuf::from(dir);
                if !dir.join("index.html").is_file() {
                    return Err(ConfigError {
                        var: vars::WEB_ROOT,
                        reason: format!("{} has no index.html", dir.display()),
                    });
                }
                Some(dir)
            }
            None => Some(std::path::PathBuf::from(DEFAULT_WEB_ROOT))
                .filter(|d| d.join("index.html").is_file()),
        };
        let open_join = match get(env, vars::OPEN_JOIN) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => {
                return Err(ConfigError {
                    var: vars::OPEN_JOIN,
                    reason: format!("{v:?}: true or false"),
                })
            }
        };
        let drain_grace =
            std::time::Duration::from_secs(u64::from(number(env, vars::DRAIN_GRACE_SECS, 10, 0)?));
        let metrics_listen = match get(env, vars::METRICS_LISTEN) {
            None => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|e| ConfigError {
                var: vars::METRICS_LISTEN,
                reason: format!("{v:?}: {e}"),
            })?),
        };
        if metrics_listen == Some(listen) && listen.port() != 0 {
            return Err(ConfigError {
                var: vars::METRICS_LISTEN,
                reason: format!("must differ from {} ({listen})", vars::LISTEN),
            });
        }
        Ok(Self {
            drain_grace,
            metrics_listen,
            web_root,
            open_join,
            listen,
            advertise,
            redis_url,
            media_nodes,
            token_secret: secret(env, vars::TOKEN_SECRET)?,
            api_key: secret(env, vars::API_KEY)?,
            admin_key: secret(env, vars::ADMIN_KEY)?,
            placement: PlacementSettings {
                worker_capacity: number(env, vars::WORKER_CAPACITY, 1500, 1)?,
                tiles_per_page: number(env, vars::TILES_PER_PAGE, 12, 1)?,
                room_cap: number(env, vars::ROOM_CAP, 1000, 1)?,
            },
            join_concurrency: number(env, vars::JOIN_CONCURRENCY, 16, 1)?,
            queue_timeout: std::time::Duration::from_secs(u64::from(number(
                env,
                vars::QUEUE_TIMEOUT_SECS,
                120,
                1,
            )?)),
            coordinator_id,
            coordinator_ttl: std::time::Duration::from_millis(u64::from(number(
                env,
                vars::COORDINATOR_TTL_MS,
                10_000,
                400,
            )?)),
        })
    }
}

impl CoordinatorConfig {
    /// The effective settings, secrets left out, one `VAR=value` a line
    /// (what `--check-config` prints).
    pub fn describe(&self) -> String {
        let redis = match &self.redis_url {
            Some(url) => redact(url),
            None => "(none: in-memory registry)".into(),
        };
        let web = match &self.web_root {
            Some(d) => d.display().to_string(),
            None => "(none: / shows the cluster status)".into(),
        };
        throng_ops::settings_text(&[
            (vars::LISTEN, self.listen.to_string()),
            (
                vars::ADVERTISE,
                self.advertise
                    .clone()
                    .unwrap_or_else(|| "(the bound address)".into()),
            ),
            (vars::REDIS_URL, redis),
            (vars::MEDIA_NODES, self.media_nodes.join(",")),
            (vars::TOKEN_SECRET, "(set)".into()),
            (vars::API_KEY, "(set)".into()),
            (vars::ADMIN_KEY, "(set)".into()),
            (
                vars::WORKER_CAPACITY,
                self.placement.worker_capacity.to_string(),
            ),
            (
                vars::TILES_PER_PAGE,
                self.placement.tiles_per_page.to_string(),
            ),
            (vars::ROOM_CAP, self.placement.room_cap.to_string()),
            (vars::JOIN_CONCURRENCY, self.join_concurrency.to_string()),
            (
                vars::QUEUE_TIMEOUT_SECS,
                self.queue_timeout.as_secs().to_string(),
            ),
            (vars::COORDINATOR_ID, self.coordinator_id.clone()),
            (
                vars::COORDINATOR_TTL_MS,
                self.coordinator_ttl.as_millis().to_string(),
            ),
            (vars::WEB_ROOT, web),
            (vars::OPEN_JOIN, self.open_join.to_string()),
            (
                vars::DRAIN_GRACE_SECS,
                self.drain_grace.as_secs().to_string(),
            ),
            (
                vars::METRICS_LISTEN,
                self.metrics_listen.map_or_else(
                    || "(none: /metrics behind the admin key)".into(),
                    |a| a.to_string(),
                ),
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
            (vars::REDIS_URL, "rediss://redis.example:6380"),
            (vars::REDIS_URL, "http://x"),
            (vars::REDIS_URL, "redis://host:port"),
            (vars::TOKEN_SECRET, "short"),
            (vars::LISTEN, "nowhere"),
            (vars::DRAIN_GRACE_SECS, "soon"),
            (vars::ADVERTISE, ":80"),
            (vars::OPEN_JOIN, "maybe"),
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
}
