//! TURN relays for participants whose network blocks the media nodes' ports
//! (UDP blocked, or only TCP/TLS to 443): the TURN servers configured
//! (`THRONG_TURN_URLS`) and time-limited credentials for them, minted per
//! participant in coturn's REST-API scheme (`use-auth-secret` with
//! `static-auth-secret`, draft-uberti-behave-turn-rest): the username is
//! `<expiry unix time>:<participant>`, the password base64(HMAC-SHA1(secret,
//! username)). coturn checks a credential when an allocation is made, not
//! afterwards, so a short lifetime (`THRONG_TURN_TTL_SECS`) covers a whole
//! call; each `createTransport` and `restartIce` answer carries fresh ones.
//!
//! Owns nothing but the settings; calls hmac/sha1 only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// The TURN servers' addresses.
pub const TURN_URLS: &str = "THRONG_TURN_URLS";
/// coturn's `static-auth-secret`.
pub const TURN_SECRET: &str = "THRONG_TURN_SECRET";
/// How long minted credentials are valid.
pub const TURN_TTL_SECS: &str = "THRONG_TURN_TTL_SECS";
/// The shortest secret accepted.
pub const TURN_SECRET_MIN: usize = 32;
/// Default credential lifetime: long enough for a browser to gather and
/// allocate after its transport was made, short enough that a leaked one
/// is soon useless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `turn:` / `turns:` URIs sharing the credentials.
    pub urls: Vec<String>,
    /// `<expiry>:<participant>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub credential: String,
}

/// TURN settings: where the servers are and the shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Turn {
    urls: Vec<String>,
    secret: throng_ops::Secret,
    ttl: Duration,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"(hidden)")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Checks one TURN URI (RFC 7065): `turn:` or `turns:`, a host, an optional
/// port, an optional `?transport=udp|tcp` (`turns:` is TLS over TCP).
pub fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| format!("{url:?}: turn:HOST[:PORT][?transport=udp|tcp] or turns:…"))?;
    if scheme != "turn" && scheme != "turns" {
        return Err(format!("{url:?}: the scheme is turn: or turns:"));
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        match q {
            "transport=udp" if scheme == "turn" => {}
            "transport=tcp" => {}
            _ => {
                return Err(format!(
                    "{url:?}: the only option is transport=udp or transport=tcp (turns: is TCP)"
                ))
            }
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: an IPv6 host ends with ]"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(format!("{url:?}: a host name or address"));
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url:?}: port {p:?} is not 1-65535"))?;
    }
    Ok(())
}

impl Turn {
    /// Settings from the environment: `None` without `THRONG_TURN_URLS`;
    /// URLs without a secret (or the reverse) are refused, naming the
    /// variable.
    pub fn from_env(
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Option<Self>, (&'static str, String)> {
        let get = |var: &str| env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty());
        let urls: Vec<String> = get(TURN_URLS)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        for url in &urls {
            check_url(url).map_err(|e| (TURN_URLS, e))?;
        }
        let secret = get(TURN_SECRET)
            .map(|s| throng_ops::Secret::parse(s, TURN_SECRET_MIN))
            .transpose()
            .map_err(|e| (TURN_SECRET, e))?;
        let ttl = match get(TURN_TTL_SECS) {
            None => DEFAULT_TTL,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (60..=86_400).contains(&s) => Duration::from_secs(s),
                _ => return Err((TURN_TTL_SECS, format!("{v:?}: seconds, 60 to 86400"))),
            },
        };
        match (urls.is_empty(), secret) {
            (true, None) => Ok(None),
            (false, Some(secret)) => Ok(Some(Self { urls, secret, ttl })),
            (false, None) => Err((
                TURN_SECRET,
                format!("required with {TURN_URLS}: the TURN servers' static-auth-secret"),
            )),
            (true, Some(_)) => Err((
                TURN_URLS,
                format!("required with {TURN_SECRET}: the TURN servers to hand out"),
            )),
        }
    }

    /// The servers' URIs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Credential lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Fresh credentials for `participant`, valid for the TTL from `now`.
    pub fn ice_servers_at(&self, participant: &str, now: SystemTime) -> Vec<IceServer> {
        let expiry = now
            .checked_add(self.ttl)
            .unwrap_or(now)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The participant id names the allocation in coturn's log; a ':'
        // would end the timestamp part early, so it is replaced.
        let username = format!("{expiry}:{}", participant.replace(':', "_"));
        let credential = credential(self.secret.expose(), &username);
        vec![IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }]
    }

    /// Fresh credentials for `participant`, valid for the TTL from now.
    pub fn ice_servers(&self, participant: &str) -> Vec<IceServer> {
        self.ice_servers_at(participant, SystemTime::now())
    }
}

/// coturn's REST-API password of `username`.
pub fn credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SECRET: &str = "turn-secret-turn-secret-turn-secret-0";

    #[test]
    fn credentials_follow_the_rest_api_scheme() {
        // HMAC-SHA1 keyed with the secret over the username, base64: the
        // value Python's hmac gives for this input.
        assert_eq!(
            credential("north", "1433895918:alice"),
            "RqMvcGPYTJMGThVLSi4amT4zFtI="
        );
        let turn = Turn::from_env(&env(&[
            (
                TURN_URLS,
                "turn:127.0.0.1:3478?transport=udp, turns:turn.example:443",
            ),
            (TURN_SECRET, SECRET),
        ]))
        .unwrap()
        .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = turn.ice_servers_at("ann:x", now);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].username, "1000600:ann_x");
        assert_eq!(s[0].credential, credential(SECRET, "1000600:ann_x"));
        assert_eq!(
            s[0].urls,
            vec![
                "turn:127.0.0.1:3478?transport=udp",
                "turns:turn.example:443"
            ]
        );
        assert!(!format!("{turn:?}").contains(SECRET));
    }

    #[test]
    fn settings_are_all_or_nothing_and_urls_are_checked() {
        assert_eq!(Turn::from_env(&env(&[])), Ok(None));
        assert_eq!(
            Turn::from_env(&env(&[(TURN_URLS, "turn:h:3478")]))
                .unwrap_err()
                .0,
            TURN_SECRET
        );
        assert_eq!(
            Turn::from_env(&env(&[(TURN_SECRET, SECRET)]))
                .unwrap_err()
                .0,
            TURN_URLS
        );
        assert_eq!(
            Turn::from_env(&env(&[(TURN_URLS, "turn:h"), (TURN_SECRET, "short")]))
                .unwrap_err()
                .0,
            TURN_SECRET
        );
        for bad in [
            "stun:h:3478",
            "turn:",
            "turn:h:0",
            "turn:h:99999",
            "turns:h:443?transport=udp",
            "turn:h:3478?transport=sctp",
            "turn:h/x:1",
            "turn:[::1:3478",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        for good in [
            "turn:h",
            "turn:10.0.0.1:3478?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
            "turn:[2001:db8::1]:3478",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        assert_eq!(
            Turn::from_env(&env(&[
                (TURN_URLS, "turn:h"),
                (TURN_SECRET, SECRET),
                (TURN_TTL_SECS, "5")
            ]))
            .unwrap_err()
            .0,
            TURN_TTL_SECS
        );
    }
}
