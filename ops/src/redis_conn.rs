//! How both binaries reach Redis: one server (`redis://`, `rediss://`,
//! `redis+unix://`), or the primary a set of Redis Sentinels names
//! (`redis+sentinel://`, `rediss+sentinel://` for TLS to the primary),
//! following it when the Sentinels fail it over.
//!
//! Sentinel URL: `redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB][?OPTIONS]`.
//! The Sentinels are asked which server is the primary of `MASTER` (and that
//! server is asked whether it is one); the user, password and DB are the
//! primary's. The Sentinels are reached with their own credentials, if any
//! (`sentinel_username=`, `sentinel_password=` options), over TLS when the
//! primary is (`rediss+sentinel://`) unless `sentinel_tls=false` (checked
//! against the same CA). Reserved characters in passwords are
//! percent-encoded (`%40` for `@`). A [`RedisConn`] keeps a
//! connection to the primary it found and drops it when a command fails in a
//! way a failover causes (connection refused or dropped, no answer in time,
//! `READONLY` from a demoted primary): the next command asks the Sentinels
//! again. The command that failed is not repeated (the callers' Lua scripts
//! are not idempotent); callers already treat a failed command as Redis away
//! for a moment.
//!
//! Owns the connections; calls only the `redis` crate and tokio.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, by its URL.
    Single(String),
    /// The primary that Sentinels name.
    Sentinel(SentinelTarget),
}

/// A `redis+sentinel://` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The Sentinels, `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored primary's name.
    pub master: String,
    /// The primary's user, if any.
    pub username: Option<String>,
    /// The primary's password, if any.
    pub password: Option<String>,
    /// The primary's database.
    pub db: i64,
    /// TLS to the primary (`rediss+sentinel://`).
    pub tls: bool,
    /// The Sentinels' user, if any (`sentinel_username=`).
    pub sentinel_username: Option<String>,
    /// The Sentinels' password, if any (`sentinel_password=`).
    pub sentinel_password: Option<String>,
    /// TLS to the Sentinels: as to the primary unless `sentinel_tls=` says.
    pub sentinel_tls: bool,
}

/// `%XX` sequences decoded (a URL's userinfo or option value).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at {:?}", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}

const SENTINEL: &str = "redis+sentinel://";
const SENTINEL_TLS: &str = "rediss+sentinel://";

impl RedisTarget {
    /// Parses a Redis URL (see the module header).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = if let Some(r) = url.strip_prefix(SENTINEL) {
            (r, false)
        } else if let Some(r) = url.strip_prefix(SENTINEL_TLS) {
            (r, true)
        } else {
            return Ok(Self::Single(url.to_string()));
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (
                    Some(percent_decode(user)?).filter(|u| !u.is_empty()),
                    Some(percent_decode(pw)?),
                ),
                None => (None, Some(percent_decode(u)?)),
            },
        };
        let (rest, options) = match rest.split_once('?') {
            Some((r, o)) => (r, o),
            None => (rest, ""),
        };
        let (mut sentinel_username, mut sentinel_password, mut sentinel_tls) = (None, None, tls);
        for option in options.split('&').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let value = percent_decode(value)?;
            match key {
                "sentinel_username" => sentinel_username = Some(value).filter(|v| !v.is_empty()),
                "sentinel_password" => sentinel_password = Some(value).filter(|v| !v.is_empty()),
                "sentinel_tls" => {
                    sentinel_tls = match value.as_str() {
                        "true" | "yes" | "1" => true,
                        "false" | "no" | "0" => false,
                        _ => return Err(format!("sentinel_tls={value:?}: true or false")),
                    }
                }
                other => {
                    return Err(format!(
                    "unknown option {other:?} (sentinel_username, sentinel_password, sentinel_tls)"
                ))
                }
            }
        }
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("a Sentinel URL ends with /MASTER, the monitored primary's name")?;
        let mut sentinels = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| format!("sentinel {h:?}: host:port"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("sentinel {h:?}: a port number"))?;
            if host.is_empty() {
                return Err(format!("sentinel {h:?}: a host"));
            }
            sentinels.push((host.trim_matches(['[', ']']).to_string(), port));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default().to_string();
        if master.is_empty() {
            return Err("a Sentinel URL ends with /MASTER, the monitored primary's name".into());
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| format!("database {d:?}: a number"))?,
        };
        if parts.next().is_some() {
            return Err("a Sentinel URL ends with /MASTER or /MASTER/DB".into());
        }
        Ok(Self::Sentinel(SentinelTarget {
            sentinels,
            master,
            username,
            password,
            db,
            tls,
            sentinel_username,
            sentinel_password,
            sentinel_tls,
        }))
    }

    /// Whether the primary is reached over TLS.
    pub fn tls(&self) -> bool {
        match self {
            Self::Single(url) => url.starts_with("rediss://"),
            Self::Sentinel(s) => s.tls,
        }
    }
}

/// Whether `url` is a Sentinel URL.
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with(SENTINEL) || url.starts_with(SENTINEL_TLS)
}

/// A connection to Redis (one server, or the Sentinels' primary) that
/// reconnects by itself; clones share it.
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Direct(ConnectionManager),
    Sentinel(Arc<Following>),
}

/// The primary the Sentinels name, followed.
struct Following {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<ConnectionManager>>,
    config: ConnectionManagerConfig,
    db: i64,
}

/// How long asking the Sentinels may take.
const RESOLVE_LIMIT: Duration = Duration::from_secs(3);

impl RedisConn {
    /// Connects to `url` (see the module header) with `config` for each
    /// server connection; `ca` (PEM) checks a TLS server. Fails if no server
    /// (or no Sentinel and its primary) answers now.
    pub async fn connect(
        url: &str,
        ca: Option<&[u8]>,
        config: ConnectionManagerConfig,
    ) -> Result<Self, RedisError> {
        match RedisTarget::parse(url).map_err(|e| invalid(&e))? {
            RedisTarget::Single(url) => {
                let client = crate::redis_client(&url, ca)?;
                Ok(Self(Inner::Direct(
                    ConnectionManager::new_with_config(client, config).await?,
                )))
            }
            RedisTarget::Sentinel(t) => {
                let addrs = t.sentinels.iter().map(|(h, p)| {
                    if t.sentinel_tls {
                        ConnectionAddr::TcpTls {
                            host: h.clone(),
                            port: *p,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        ConnectionAddr::Tcp(h.clone(), *p)
                    }
                });
                let mut b = SentinelClientBuilder::new(
                    addrs,
                    t.master.clone(),
                    SentinelServerType::Master,
                )?
                .set_client_to_redis_db(t.db);
                if let Some(u) = &t.sentinel_username {
                    b = b.set_client_to_sentinel_username(u);
                }
                if let Some(p) = &t.sentinel_password {
                    b = b.set_client_to_sentinel_password(p);
                }
                if t.sentinel_tls {
                    b = b
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_certificates(redis::TlsCertificates {
                            client_tls: None,
                            root_cert: ca.map(<[u8]>::to_vec),
                        });
                }
                if let Some(u) = &t.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &t.password {
                    b = b.set_client_to_redis_password(p);
                }
                if t.tls {
                    b = b
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_redis_certificates(redis::TlsCertificates {
                            client_tls: None,
                            root_cert: ca.map(<[u8]>::to_vec),
                        });
                }
                let following = Arc::new(Following {
                    sentinel: tokio::sync::Mutex::new(b.build()?),
                    current: Mutex::new(None),
                    config,
                    db: t.db,
                });
                following.primary().await?;
                Ok(Self(Inner::Sentinel(following)))
            }
        }
    }
}

fn invalid(reason: &str) -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "bad Redis URL",
        reason.to_string(),
    ))
}

impl Following {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to the primary, asking the Sentinels for it if there
    /// is none (one task asks; the others wait for its answer).
    async fn primary(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(c) = self.lock().clone() {
            return Ok(c);
        }
        let mut sentinel = self.sentinel.lock().await;
        if let Some(c) = self.lock().clone() {
            return Ok(c);
        }
        let client = tokio::time::timeout(RESOLVE_LIMIT, sentinel.async_get_client())
            .await
            .map_err(|_| {
                RedisError::from((ErrorKind::Io, "no Sentinel named the primary in time"))
            })??;
        let c = ConnectionManager::new_with_config(client, self.config.clone()).await?;
        *self.lock() = Some(c.clone());
        Ok(c)
    }

    /// Forgets the primary when `result` says it may no longer be one.
    fn check<T>(&self, result: &Result<T, RedisError>) {
        if let Err(e) = result {
            if failover_sign(e) {
                self.lock().take();
            }
        }
    }
}

/// An error a failover causes: the primary gone or unreachable, or demoted.
fn failover_sign(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Direct(c) => c.req_packed_command(cmd),
            Inner::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let mut c = f.primary().await?;
                    let r = c.req_packed_command(cmd).await;
                    f.check(&r);
                    r
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Direct(c) => c.req_packed_commands(cmd, offset, count),
            Inner::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let mut c = f.primary().await?;
                    let r = c.req_packed_commands(cmd, offset, count).await;
                    f.check(&r);
                    r
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Direct(c) => c.get_db(),
            Inner::Sentinel(f) => f.db,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        assert_eq!(
            RedisTarget::parse("redis://h:6379/").unwrap(),
            RedisTarget::Single("redis://h:6379/".into())
        );
        let RedisTarget::Sentinel(t) =
            RedisTarget::parse("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2").unwrap()
        else {
            panic!("a sentinel target")
        };
        assert_eq!(
            t.sentinels,
            vec![("s1".to_string(), 26379), ("s2".to_string(), 26380)]
        );
        assert_eq!(t.master, "mymaster");
        assert_eq!(t.password.as_deref(), Some("pw"));
        assert_eq!(t.username, None);
        assert_eq!(t.db, 2);
        assert!(!t.tls);
        let RedisTarget::Sentinel(t) =
            RedisTarget::parse("rediss+sentinel://app:pw@s1:26379/m").unwrap()
        else {
            panic!("a sentinel target")
        };
        assert!(t.tls);
        assert!(t.sentinel_tls, "TLS to the Sentinels follows the scheme");
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.sentinel_password, None);
        let RedisTarget::Sentinel(t) = RedisTarget::parse(
            "rediss+sentinel://:p%40ss@s1:26379/m/1?sentinel_password=s%26pw&sentinel_username=watch&sentinel_tls=false",
        )
        .unwrap() else {
            panic!("a sentinel target")
        };
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.sentinel_password.as_deref(), Some("s&pw"));
        assert_eq!(t.sentinel_username.as_deref(), Some("watch"));
        assert!(t.tls && !t.sentinel_tls);
        assert_eq!((t.master.as_str(), t.db), ("m", 1));
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1/m",
            "redis+sentinel://s1:x/m",
            "redis+sentinel://:1/m",
            "redis+sentinel://s1:1/m/x",
            "redis+sentinel://s1:1/m/1/2",
            "redis+sentinel://s1:1/m?sentinel_tls=maybe",
            "redis+sentinel://s1:1/m?password=x",
            "redis+sentinel://s1:1/m?sentinel_password=%zz",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
