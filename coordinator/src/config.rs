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
            if !url.starts_with("redis://")
                && !url.starts_with("rediss://")
                && !url.starts_with("redis+unix://")
            {
                return Err(ConfigError {
                    var: vars::REDIS_URL,
                    reason: "a redis:// URL".into(),
                });
            }
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
        Ok(Self {
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
