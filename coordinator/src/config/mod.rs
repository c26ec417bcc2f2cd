//! Coordinator configuration from an environment map, validated before any
//! port is bound.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::limits::{Cidr, LimitSettings, Rate};
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
    /// Certificate authorities (PEM) a `rediss://` Redis is checked against,
    /// instead of the system's.
    pub redis_ca: Option<Vec<u8>>,
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
    /// How long a participant whose socket closed without a leave keeps its
    /// place and media for a `resume`; zero: it leaves at once.
    pub resume_grace: std::time::Duration,
    /// How long a room's membership changes are coalesced (`room::presence`).
    pub presence_window: std::time::Duration,
    /// Most media nodes one node pipes a producer to (`media::pipes`).
    pub pipe_fanout: usize,
    /// A second, internal address serving only `/metrics`, without a key
    /// (for a Prometheus inside the cluster); `None`: `/metrics` only on
    /// `listen`, behind the admin key.
    pub metrics_listen: Option<SocketAddr>,
    /// Request, message, session and queue limits.
    pub limits: LimitSettings,
    /// Sent on every call to a media node (`THRONG_NODE_TOKEN`, the nodes' own).
    pub node_token: Option<throng_ops::Secret>,
    /// TLS to the media nodes (`THRONG_NODE_TLS_*`): their CA, this
    /// coordinator's client certificate, the name they must carry. `None`:
    /// plain gRPC.
    pub node_tls: Option<throng_ops::grpc_tls::ClientTls>,
    /// TURN relays handed to participants (`THRONG_TURN_*`); `None`: none.
    pub turn: Option<crate::turn::Turn>,
    /// Id of `token_secret` (tokens it signs carry it as `kid`).
    pub token_kid: Option<String>,
    /// Earlier secrets still accepted, by id.
    pub token_keys: Vec<(String, String)>,
    /// Audience tokens must name (`aud`).
    pub token_audience: Option<String>,
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

pub mod vars;

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

/// [`number`] at most `max`.
fn within(
    env: &HashMap<String, String>,
    var: &'static str,
    default: u32,
    (min, max): (u32, u32),
) -> Result<u32, ConfigError> {
    let n = number(env, var, default, min)?;
    if n > max {
        return Err(ConfigError {
            var,
            reason: format!("{n}: {min} to {max}"),
        });
    }
    Ok(n)
}

/// An id (a coordinator's, a token key's): 1 to 64 of `[A-Za-z0-9._-]`.
fn identifier(var: &'static str, id: &str) -> Result<String, ConfigError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(id.to_string())
    } else {
        Err(ConfigError {
            var,
            reason: format!("{id:?}: 1 to 64 of [A-Za-z0-9._-]"),
        })
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
        let redis_ca =
            throng_ops::redis_ca(env, redis_url.as_deref()).map_err(|reason| ConfigError {
                var: throng_ops::REDIS_CA_FILE,
                reason,
            })?;
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
            Some(id) => identifier(vars::COORDINATOR_ID, id)?,
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
        let resume_grace =
            std::time::Duration::from_secs(u64::from(number(env, vars::RESUME_GRACE_SECS, 30, 0)?));
        let presence_window = within(env, vars::PRESENCE_WINDOW_MS, 200, (10, 5000))?;
        let presence_window = std::time::Duration::from_millis(u64::from(presence_window));
        let pipe_fanout = within(env, vars::PIPE_FANOUT, 8, (1, 64))?;
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
        let defaults = LimitSettings::default();
        let trusted_proxies = match get(env, vars::TRUSTED_PROXIES) {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<Cidr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| ConfigError {
                    var: vars::TRUSTED_PROXIES,
                    reason,
                })?,
        };
        let limits = LimitSettings {
            per_ip: Rate {
                per_sec: number(env, vars::RATE_IP_PER_SEC, defaults.per_ip.per_sec, 0)?,
                burst: number(env, vars::RATE_IP_BURST, defaults.per_ip.burst, 1)?,
            },
            per_session: Rate {
                per_sec: number(
                    env,
                    vars::RATE_SESSION_PER_SEC,
                    defaults.per_session.per_sec,
                    0,
                )?,
                burst: number(env, vars::RATE_SESSION_BURST, defaults.per_session.burst, 1)?,
            },
            sessions_per_identity: number(
                env,
                vars::SESSIONS_PER_IDENTITY,
                defaults.sessions_per_identity,
                0,
            )?,
            queue_max: number(env, vars::QUEUE_MAX, defaults.queue_max, 1)?,
            trusted_proxies,
        };
        let node_token = match get(env, vars::NODE_TOKEN) {
            None => None,
            Some(v) => Some(
                throng_ops::Secret::parse(v, throng_ops::NODE_TOKEN_MIN).map_err(|reason| {
                    ConfigError {
                        var: vars::NODE_TOKEN,
                        reason,
                    }
                })?,
            ),
        };
        let node_tls = throng_ops::grpc_tls::client_tls(env).map_err(|e| ConfigError {
            var: e.var,
            reason: e.reason,
        })?;
        let turn = crate::turn::Turn::from_env(env)
            .map_err(|(var, reason)| ConfigError { var, reason })?;
        let token_kid = get(env, vars::TOKEN_KID)
            .map(|k| identifier(vars::TOKEN_KID, k))
            .transpose()?;
        let mut token_keys = Vec::new();
        for entry in get(env, vars::TOKEN_KEYS)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((kid, secret)) = entry.split_once(':') else {
                return Err(ConfigError {
                    var: vars::TOKEN_KEYS,
                    reason: "kid:secret pairs, comma-separated".into(),
                });
            };
            let kid = identifier(vars::TOKEN_KEYS, kid.trim())?;
            if secret.trim().len() < 32 {
                return Err(ConfigError {
                    var: vars::TOKEN_KEYS,
                    reason: format!("the secret of {kid:?} must be at least 32 characters"),
                });
            }
            if token_kid.as_deref() == Some(kid.as_str())
                || token_keys.iter().any(|(k, _)| *k == kid)
            {
                return Err(ConfigError {
                    var: vars::TOKEN_KEYS,
                    reason: format!("key id {kid:?} is given twice"),
                });
            }
            token_keys.push((kid, secret.trim().to_string()));
        }
        let token_audience = get(env, vars::TOKEN_AUDIENCE).map(str::to_string);
        Ok(Self {
            token_kid,
            token_keys,
            token_audience,
            node_token,
            node_tls,
            turn,
            limits,
            drain_grace,
            resume_grace,
            presence_window,
            pipe_fanout: pipe_fanout as usize,
            metrics_listen,
            web_root,
            open_join,
            listen,
            advertise,
            redis_url,
            redis_ca,
            media_nodes,
            token_secret: secret(env, vars::TOKEN_SECRET)?,
            api_key: secret(env, vars::API_KEY)?,
            admin_key: secret(env, vars::ADMIN_KEY)?,
            placement: PlacementSettings {
                worker_capacity: number(env, vars::WORKER_CAPACITY, 1500, 1)?,
                cpu_ceiling: f64::from(within(env, vars::WORKER_CPU_CEILING, 85, (1, 100))?)
                    / 100.0,
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
        let client_cert = if self.node_tls.as_ref().is_some_and(|t| t.identity.is_some()) {
            "(set: this coordinator's certificate)"
        } else {
            "(none)"
        };
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
            (
                throng_ops::REDIS_CA_FILE,
                if self.redis_ca.is_some() {
                    "(set)".into()
                } else {
                    "(none: the system's roots)".into()
                },
            ),
            (vars::MEDIA_NODES, self.media_nodes.join(",")),
            (vars::TOKEN_SECRET, "(set)".into()),
            (vars::API_KEY, "(set)".into()),
            (vars::ADMIN_KEY, "(set)".into()),
            (
                vars::WORKER_CAPACITY,
                self.placement.worker_capacity.to_string(),
            ),
            (
                vars::WORKER_CPU_CEILING,
                format!("{:.0}", self.placement.cpu_ceiling * 100.0),
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
                vars::RESUME_GRACE_SECS,
                self.resume_grace.as_secs().to_string(),
            ),
            (
                vars::PRESENCE_WINDOW_MS,
                self.presence_window.as_millis().to_string(),
            ),
            (vars::PIPE_FANOUT, self.pipe_fanout.to_string()),
            (
                vars::METRICS_LISTEN,
                self.metrics_listen.map_or_else(
                    || "(none: /metrics behind the admin key)".into(),
                    |a| a.to_string(),
                ),
            ),
            (
                vars::TOKEN_KID,
                self.token_kid.clone().unwrap_or_else(|| "(none)".into()),
            ),
            (
                vars::TOKEN_KEYS,
                if self.token_keys.is_empty() {
                    "(none)".into()
                } else {
                    // Ids only: the secrets stay hidden.
                    self.token_keys
                        .iter()
                        .map(|(k, _)| format!("{k}:***"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            (
                vars::TOKEN_AUDIENCE,
                self.token_audience
                    .clone()
                    .unwrap_or_else(|| "(none: aud not checked)".into()),
            ),
            (
                vars::NODE_TOKEN,
                if self.node_token.is_some() {
                    "(set)".into()
                } else {
                    "(none)".into()
                },
            ),
            (
                throng_ops::grpc_tls::NODE_TLS_CA_FILE,
                if self.node_tls.is_some() {
                    "(set: TLS to the nodes)".into()
                } else {
                    "(none: plain gRPC)".into()
                },
            ),
            (throng_ops::grpc_tls::NODE_TLS_CERT_FILE, client_cert.into()),
            (throng_ops::grpc_tls::NODE_TLS_KEY_FILE, client_cert.into()),
            (
                crate::turn::TURN_URLS,
                self.turn
                    .as_ref()
                    .map(|t| t.urls().join(","))
                    .unwrap_or_else(|| "(none: no TURN relays)".into()),
            ),
            (
                crate::turn::TURN_SECRET,
                if self.turn.is_some() {
                    "(set)".into()
                } else {
                    "(none)".into()
                },
            ),
            (
                crate::turn::TURN_TTL_SECS,
                self.turn
                    .as_ref()
                    .map_or(crate::turn::DEFAULT_TTL, |t| t.ttl())
                    .as_secs()
                    .to_string(),
            ),
            (
                throng_ops::grpc_tls::NODE_TLS_SERVER_NAME,
                self.node_tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                    .unwrap_or_else(|| "(each node's host)".into()),
            ),
            (vars::QUEUE_MAX, self.limits.queue_max.to_string()),
            (
                vars::RATE_IP_PER_SEC,
                self.limits.per_ip.per_sec.to_string(),
            ),
            (vars::RATE_IP_BURST, self.limits.per_ip.burst.to_string()),
            (
                vars::RATE_SESSION_PER_SEC,
                self.limits.per_session.per_sec.to_string(),
            ),
            (
                vars::RATE_SESSION_BURST,
                self.limits.per_session.burst.to_string(),
            ),
            (
                vars::SESSIONS_PER_IDENTITY,
                self.limits.sessions_per_identity.to_string(),
            ),
            (
                vars::TRUSTED_PROXIES,
                if self.limits.trusted_proxies.is_empty() {
                    "(none: the peer address is the client)".into()
                } else {
                    self.limits
                        .trusted_proxies
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
        ])
    }
}

impl CoordinatorConfig {
    /// The join-token key: the current secret (with its id), the earlier
    /// ones still accepted, the audience.
    pub fn token_key(&self) -> crate::auth::TokenKey {
        crate::auth::TokenKey::configured(
            &self.token_secret,
            self.token_kid.as_deref(),
            &self.token_keys,
            self.token_audience.as_deref(),
        )
    }
}

/// A Redis URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    throng_ops::redact_url(url)
}

#[cfg(test)]
mod tests;
