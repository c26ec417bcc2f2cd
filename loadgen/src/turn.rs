//! A TURN client over UDP (RFC 8656), just enough for a loadgen participant
//! to reach the media nodes only through a relay, as a browser behind a
//! firewall that blocks their ports does: Allocate with the long-term
//! credential mechanism (the coordinator's per-participant credentials from
//! `iceServers`), one ChannelBind per peer (it installs the permission
//! too), then ChannelData both ways. The participant's str0m endpoint gets
//! the relayed address as its only local candidate. Allocations, channels
//! and permissions are not refreshed: they live 10 minutes (permissions 5),
//! longer than a loadgen run.
//!
//! Owns the relay's state; calls tokio's UDP socket, hmac/sha1/md-5.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::Value;
use sha1::Sha1;
use tokio::net::UdpSocket;

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CHANNEL_BIND: u16 = 0x0009;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;
const DATA_INDICATION: u16 = 0x0017;

const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const CHANNEL_NUMBER: u16 = 0x000C;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// What went wrong with the relay.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// No `turn:` URI over UDP with an IP address in `iceServers`.
    #[error("no turn:IP:PORT?transport=udp server in iceServers")]
    NoServer,
    /// The server did not answer.
    #[error("TURN server {0} did not answer")]
    NoAnswer(SocketAddr),
    /// The server refused a request.
    #[error("TURN {what} refused: {code} {reason}")]
    Refused {
        /// The request.
        what: &'static str,
        /// STUN error code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// An answer without what it must carry.
    #[error("TURN {0}: malformed answer")]
    Malformed(&'static str),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A TURN server and this participant's credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// Where it listens (UDP).
    pub server: SocketAddr,
    /// `<expiry>:<participant>`.
    pub username: String,
    /// The REST-API password.
    pub credential: String,
}

impl TurnServer {
    /// The first `turn:IP:PORT?transport=udp` (or without a transport) of a
    /// transport's `iceServers`, with its credentials.
    pub fn from_ice_servers(ice_servers: &Value) -> Option<Self> {
        for s in ice_servers.as_array()? {
            let (Some(username), Some(credential)) =
                (s["username"].as_str(), s["credential"].as_str())
            else {
                continue;
            };
            for url in s["urls"].as_array().into_iter().flatten() {
                let Some(rest) = url.as_str().and_then(|u| u.strip_prefix("turn:")) else {
                    continue;
                };
                let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
                if !(query.is_empty() || query == "transport=udp") {
                    continue;
                }
                let server = hostport.parse::<SocketAddr>().ok().or_else(|| {
                    hostport
                        .parse::<IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 3478))
                });
                if let Some(server) = server {
                    return Some(Self {
                        server,
                        username: username.to_string(),
                        credential: credential.to_string(),
                    });
                }
            }
        }
        None
    }
}

/// An allocation with a channel per peer.
#[derive(Debug)]
pub struct Relay {
    /// The TURN server.
    pub server: SocketAddr,
    /// The relayed address: the participant's only local candidate.
    pub relayed: SocketAddr,
    channels: HashMap<SocketAddr, u16>,
    peers: HashMap<u16, SocketAddr>,
}

fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn xor_address(addr: SocketAddr) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            let x = u32::from(ip) ^ MAGIC;
            let mut v = vec![0, 1];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&x.to_be_bytes());
            v
        }
        IpAddr::V6(_) => Vec::new(),
    }
}

fn parse_xor_address(v: &[u8]) -> Option<SocketAddr> {
    if v.len() < 8 || v[1] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
    Some(SocketAddr::new(IpAddr::from(ip.to_be_bytes()), port))
}

/// A STUN message; with `key`, MESSAGE-INTEGRITY last.
fn message(kind: u16, tid: &[u8; 12], attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        body.extend(std::iter::repeat_n(0, pad(v.len())));
    }
    let len = body.len() + if key.is_some() { 24 } else { 0 };
    let mut m = Vec::with_capacity(20 + len);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(tid);
    m.extend_from_slice(&body);
    if let Some(key) = key {
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(&m);
        m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(&mac.finalize().into_bytes());
    }
    m
}

/// A STUN message's type, transaction id and attributes by type.
type Parsed = (u16, [u8; 12], HashMap<u16, Vec<u8>>);

/// Parses a STUN message (None: not one).
fn parse(m: &[u8]) -> Option<Parsed> {
    if m.len() < 20 || m[0] & 0xC0 != 0 || u32::from_be_bytes([m[4], m[5], m[6], m[7]]) != MAGIC {
        return None;
    }
    let kind = u16::from_be_bytes([m[0], m[1]]);
    let len = u16::from_be_bytes([m[2], m[3]]) as usize;
    let tid: [u8; 12] = m[8..20].try_into().ok()?;
    let mut attrs = HashMap::new();
    let mut i = 20;
    let end = (20 + len).min(m.len());
    while i + 4 <= end {
        let t = u16::from_be_bytes([m[i], m[i + 1]]);
        let l = u16::from_be_bytes([m[i + 2], m[i + 3]]) as usize;
        let v = m.get(i + 4..i + 4 + l)?;
        attrs.entry(t).or_insert_with(|| v.to_vec());
        i += 4 + l + pad(l);
    }
    Some((kind, tid, attrs))
}

fn transaction_id() -> [u8; 12] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u32);
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&t.to_be_bytes());
    id
}

/// Sends `request` until an answer with its transaction id comes (three
/// tries, one second each).
async fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    request: &[u8],
    tid: &[u8; 12],
) -> Result<(u16, HashMap<u16, Vec<u8>>), TurnError> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..3 {
        socket.send_to(request, server).await?;
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let Ok(r) = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await else {
                break;
            };
            let (n, from) = r?;
            if from != server {
                continue;
            }
            if let Some((kind, id, attrs)) = parse(&buf[..n]) {
                if id == *tid {
                    return Ok((kind, attrs));
                }
            }
        }
    }
    Err(TurnError::NoAnswer(server))
}

fn refused(what: &'static str, attrs: &HashMap<u16, Vec<u8>>) -> TurnError {
    let (code, reason) = attrs
        .get(&ERROR_CODE)
        .filter(|v| v.len() >= 4)
        .map(|v| {
            (
                u16::from(v[2] & 0x7) * 100 + u16::from(v[3]),
                String::from_utf8_lossy(&v[4..]).into_owned(),
            )
        })
        .unwrap_or((0, String::new()));
    TurnError::Refused { what, code, reason }
}

/// Allocates a relay on `turn` for `peers` (a channel to each) from `socket`.
pub async fn allocate(
    socket: &UdpSocket,
    turn: &TurnServer,
    peers: &[SocketAddr],
) -> Result<Relay, TurnError> {
    let transport = (REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
    // First without credentials: the server answers 401 with its realm and nonce.
    let tid = transaction_id();
    let (kind, attrs) = ask(
        socket,
        turn.server,
        &message(ALLOCATE, &tid, std::slice::from_ref(&transport), None),
        &tid,
    )
    .await?;
    if kind != ALLOCATE | ERROR {
        return Err(TurnError::Malformed("allocate challenge"));
    }
    let realm = attrs
        .get(&REALM)
        .cloned()
        .ok_or(TurnError::Malformed("realm"))?;
    let mut nonce = attrs
        .get(&NONCE)
        .cloned()
        .ok_or(TurnError::Malformed("nonce"))?;
    let key: Vec<u8> = Md5::digest(
        format!(
            "{}:{}:{}",
            turn.username,
            String::from_utf8_lossy(&realm),
            turn.credential
        )
        .as_bytes(),
    )
    .to_vec();
    let auth = |nonce: &[u8]| {
        vec![
            (USERNAME, turn.username.as_bytes().to_vec()),
            (REALM, realm.clone()),
            (NONCE, nonce.to_vec()),
        ]
    };
    let authed = |what: &'static str, kind: u16, mut attrs: Vec<(u16, Vec<u8>)>, nonce: Vec<u8>| {
        attrs.extend(auth(&nonce));
        let tid = transaction_id();
        (what, kind, message(kind, &tid, &attrs, Some(&key)), tid)
    };
    let (_, _, request, tid) = authed("allocate", ALLOCATE, vec![transport], nonce.clone());
    let (kind, attrs) = ask(socket, turn.server, &request, &tid).await?;
    if kind != ALLOCATE | SUCCESS {
        return Err(refused("allocate", &attrs));
    }
    let relayed = attrs
        .get(&XOR_RELAYED_ADDRESS)
        .and_then(|v| parse_xor_address(v))
        .ok_or(TurnError::Malformed("relayed address"))?;
    let mut relay = Relay {
        server: turn.server,
        relayed,
        channels: HashMap::new(),
        peers: HashMap::new(),
    };
    for (i, peer) in peers.iter().enumerate() {
        let channel = 0x4000 + i as u16;
        let mut number = channel.to_be_bytes().to_vec();
        number.extend_from_slice(&[0, 0]);
        for attempt in 0..2 {
            let (what, _, request, tid) = authed(
                "channel bind",
                CHANNEL_BIND,
                vec![
                    (CHANNEL_NUMBER, number.clone()),
                    (XOR_PEER_ADDRESS, xor_address(*peer)),
                ],
                nonce.clone(),
            );
            let (kind, attrs) = ask(socket, turn.server, &request, &tid).await?;
            if kind == CHANNEL_BIND | SUCCESS {
                break;
            }
            // A stale nonce (438) comes with a fresh one: once more with it.
            match attrs.get(&NONCE) {
                Some(n) if attempt == 0 => nonce = n.clone(),
                _ => return Err(refused(what, &attrs)),
            }
        }
        relay.channels.insert(*peer, channel);
        relay.peers.insert(channel, *peer);
    }
    Ok(relay)
}

impl Relay {
    /// `payload` for `peer`, framed as ChannelData (None: no channel to it).
    pub fn wrap(&self, peer: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        let channel = *self.channels.get(&peer)?;
        let mut m = Vec::with_capacity(4 + payload.len());
        m.extend_from_slice(&channel.to_be_bytes());
        m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        m.extend_from_slice(payload);
        Some(m)
    }

    /// What a datagram from the server carries: the peer and its payload
    /// (ChannelData, or a Data indication).
    pub fn unwrap<'a>(&self, m: &'a [u8]) -> Option<(SocketAddr, std::borrow::Cow<'a, [u8]>)> {
        if m.len() >= 4 && (0x40..0x80).contains(&m[0]) {
            let channel = u16::from_be_bytes([m[0], m[1]]);
            let len = u16::from_be_bytes([m[2], m[3]]) as usize;
            let peer = *self.peers.get(&channel)?;
            return Some((peer, std::borrow::Cow::Borrowed(m.get(4..4 + len)?)));
        }
        let (kind, _, attrs) = parse(m)?;
        if kind != DATA_INDICATION {
            return None;
        }
        let peer = parse_xor_address(attrs.get(&XOR_PEER_ADDRESS)?)?;
        Some((peer, std::borrow::Cow::Owned(attrs.get(&DATA)?.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_messages_round_trip() {
        let a: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        assert_eq!(parse_xor_address(&xor_address(a)), Some(a));
        let tid = transaction_id();
        let m = message(ALLOCATE, &tid, &[(USERNAME, b"abc".to_vec())], Some(b"k"));
        let (kind, id, attrs) = parse(&m).unwrap();
        assert_eq!((kind, id), (ALLOCATE, tid));
        assert_eq!(attrs[&USERNAME], b"abc");
        assert_eq!(attrs[&MESSAGE_INTEGRITY].len(), 20);
        assert_eq!(m.len() % 4, 0);
    }

    #[test]
    fn the_udp_turn_server_is_found_in_ice_servers() {
        let v = serde_json::json!([{
            "urls": ["turns:h.example:443?transport=tcp", "turn:127.0.0.1:3478?transport=tcp", "turn:127.0.0.1:3479?transport=udp"],
            "username": "1:ann", "credential": "pw"
        }]);
        let t = TurnServer::from_ice_servers(&v).unwrap();
        assert_eq!(t.server, "127.0.0.1:3479".parse().unwrap());
        assert_eq!(
            (t.username.as_str(), t.credential.as_str()),
            ("1:ann", "pw")
        );
        assert_eq!(TurnServer::from_ice_servers(&serde_json::json!([])), None);
    }
}
