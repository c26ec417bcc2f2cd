//! Join path, before any work: the admission limits. Owns the per-IP request
//! budget of `/ws` upgrades and `/api/*` (`http` calls [`IpLimiter::check`]),
//! the message budget of one session (`signaling::session` holds a
//! [`Budget`]), the count of sessions per identity (`signaling::handler`
//! holds an [`IdentitySlot`] while a session joins or is joined) and the key a
//! coordinator relaying a session to the room's owner proves itself with (a
//! relayed session was counted where it arrived). The longest join queue is
//! `join::queue`'s. Calls nothing: no Redis, no node; every refusal here
//! costs a hash-map lookup.
//!
//! Locks: the IP table's and the identity table's std mutexes, each taken
//! alone, never across an `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header a relaying coordinator sends to the room's owner.
pub const RELAY_HEADER: &str = "x-throng-relay";

/// A rate: `per_sec` sustained, `burst` at once. `per_sec == 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_sec: u32,
    /// Requests at once (the bucket's size).
    pub burst: u32,
}

impl Rate {
    /// Whether this rate limits anything.
    pub fn enabled(&self) -> bool {
        self.per_sec > 0
    }
}

/// The limits' settings (see `config::vars` for the variables and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// `/ws` upgrades and `/api/*` requests per client IP.
    pub per_ip: Rate,
    /// Messages one session may send.
    pub per_session: Rate,
    /// Sessions one identity may have joined or joining on this coordinator
    /// (0: no cap).
    pub sessions_per_identity: u32,
    /// Longest join queue on this coordinator.
    pub queue_max: u32,
    /// Proxies whose `X-Forwarded-For` is believed (a load balancer in front).
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_ip: Rate {
                per_sec: 200,
                burst: 2000,
            },
            per_session: Rate {
                per_sec: 50,
                burst: 500,
            },
            sessions_per_identity: 10,
            queue_max: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// An address block (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(a)) << 96,
                self.bits,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8) -> bool {
    bits == 0 || (a ^ b) >> (128 - u32::from(bits)) == 0
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/bits"))?;
        let net = canonical(net);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length is 0 to {max}")),
            },
        };
        Ok(Self { net, bits })
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate.per_sec);
        self.tokens = (self.tokens + gained).min(f64::from(rate.burst));
        self.at = now;
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / f64::from(rate.per_sec),
            ))
        }
    }

    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate.burst)
    }
}

/// One session's message budget (owned by the session: no lock).
#[derive(Debug)]
pub struct Budget {
    rate: Rate,
    bucket: Bucket,
}

impl Budget {
    /// A full budget.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            bucket: Bucket::full(rate, Instant::now()),
        }
    }

    /// Spends one message, or says when the next one may come.
    pub fn spend(&mut self) -> Result<(), Duration> {
        if !self.rate.enabled() {
            return Ok(());
        }
        self.bucket.take(self.rate, Instant::now())
    }
}

/// Idle buckets are swept once the table has grown to this many (then to
/// twice what a sweep leaves): amortised O(1) per request, bounded memory.
const SWEEP_FROM: usize = 4096;

struct IpTable {
    buckets: HashMap<IpAddr, Bucket>,
    sweep_at: usize,
}

/// Requests per client IP, for `/ws` upgrades and `/api/*`.
pub struct IpLimiter {
    rate: Rate,
    trusted: Vec<Cidr>,
    table: Mutex<IpTable>,
}

impl IpLimiter {
    /// A limiter for `rate`, believing `X-Forwarded-For` from `trusted`.
    pub fn new(rate: Rate, trusted: Vec<Cidr>) -> Self {
        Self {
            rate,
            trusted,
            table: Mutex::new(IpTable {
                buckets: HashMap::new(),
                sweep_at: SWEEP_FROM,
            }),
        }
    }

    /// The client behind a request from `peer`: `peer` itself, unless it is a
    /// trusted proxy; then the last `X-Forwarded-For` hop that is not one.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut ip = canonical(peer.ip());
        if !self.is_trusted(ip) {
            return ip;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(h) => {
                    ip = canonical(h);
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                // Garbage in the header: the last trustworthy hop is the client.
                Err(_) => break,
            }
        }
        ip
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// Counts one request of `ip`; `Err` says when the next one may come.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if !self.rate.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.buckets.len() >= t.sweep_at {
            let rate = self.rate;
            t.buckets.retain(|_, b| !b.is_full(rate, now));
            t.sweep_at = (t.buckets.len() * 2).max(SWEEP_FROM);
        }
        t.buckets
            .entry(ip)
            .or_insert_with(|| Bucket::full(self.rate, now))
            .take(self.rate, now)
    }

    /// Client IPs with a bucket (for tests and the sweep's bound).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

/// Sessions per identity on this coordinator.
#[derive(Clone)]
pub struct Identities {
    cap: u32,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One session of an identity; dropping it gives the place back.
pub struct IdentitySlot {
    identities: Identities,
    identity: String,
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut c = self
            .identities
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.identity);
            }
        }
    }
}

impl Identities {
    /// At most `cap` sessions per identity (0: any number).
    pub fn new(cap: u32) -> Self {
        Self {
            cap,
            counts: Arc::default(),
        }
    }

    /// A place for one more session of `identity`, or `None` at the cap.
    pub fn enter(&self, identity: &str) -> Option<IdentitySlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.cap > 0 && c.get(identity).is_some_and(|n| *n >= self.cap) {
            return None;
        }
        *c.entry(identity.to_string()).or_insert(0) += 1;
        Some(IdentitySlot {
            identities: self.clone(),
            identity: identity.to_string(),
        })
    }

    /// Identities with at least one session.
    pub fn len(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no identity has a session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap (0: none).
    pub fn cap(&self) -> u32 {
        self.cap
    }
}

/// The key relaying coordinators send in [`RELAY_HEADER`]: derived from the
/// token secret every coordinator of a cluster shares, never the secret itself.
pub fn relay_key(token_secret: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token_secret).expect("HMAC takes keys of any length");
    mac.update(b"throng coordinator relay v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            per_sec: 10,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            b.take(rate, t0).unwrap();
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        b.take(rate, t0 + Duration::from_millis(100)).unwrap();
        assert!(b.take(rate, t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            b.take(rate, later).unwrap();
        }
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn each_ip_has_its_own_budget_and_idle_ones_are_swept() {
        let l = IpLimiter::new(
            Rate {
                per_sec: 1,
                burst: 2,
            },
            vec![],
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        l.check(a).unwrap();
        l.check(a).unwrap();
        assert!(l.check(a).is_err());
        l.check(b).unwrap();
        let off = IpLimiter::new(
            Rate {
                per_sec: 0,
                burst: 0,
            },
            vec![],
        );
        for _ in 0..10 {
            off.check(a).unwrap();
        }
        // Sweep: one-off clients do not accumulate. At a million a second a
        // drained bucket is full again within a microsecond, so every sweep
        // finds the earlier ones idle.
        let l = IpLimiter::new(
            Rate {
                per_sec: 1_000_000,
                burst: 1,
            },
            vec![],
        );
        for i in 0..(3 * SWEEP_FROM as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(ip);
        }
        assert!(l.tracked() <= 2 * SWEEP_FROM, "{} tracked", l.tracked());
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let l = IpLimiter::new(LimitSettings::default().per_ip, trusted);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.2.3".parse().unwrap(),
        );
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        assert_eq!(
            l.client_ip(proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the last hop a trusted proxy saw; earlier hops are the client's to forge"
        );
        let stranger: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        assert_eq!(
            l.client_ip(stranger, &h),
            stranger.ip(),
            "a header from an untrusted peer is ignored"
        );
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        let mut g = HeaderMap::new();
        g.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(l.client_ip(v6, &g), v6.ip());
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:4000".parse().unwrap();
        assert_eq!(
            l.client_ip(mapped, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains("172.31.255.255".parse().unwrap()));
        assert!(!c.contains("172.32.0.0".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nowhere", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_identity_gets_at_most_its_cap_of_sessions_and_leaving_frees_one() {
        let ids = Identities::new(2);
        let a = ids.enter("alice").unwrap();
        let _b = ids.enter("alice").unwrap();
        assert!(ids.enter("alice").is_none());
        let _bob = ids.enter("bob").unwrap();
        drop(a);
        let _c = ids.enter("alice").unwrap();
        assert_eq!(ids.len(), 2);
        let none = Identities::new(0);
        let held: Vec<_> = (0..50).map(|_| none.enter("x").unwrap()).collect();
        drop(held);
        assert!(none.is_empty());
    }

    #[test]
    fn the_relay_key_is_stable_and_not_the_secret() {
        let k = relay_key(b"a-secret-of-at-least-32-characters!!");
        assert_eq!(k, relay_key(b"a-secret-of-at-least-32-characters!!"));
        assert_ne!(k, relay_key(b"another-secret-of-32-characters!!!!"));
        assert_eq!(k.len(), 64);
        assert!(!k.contains("secret"));
    }
}
