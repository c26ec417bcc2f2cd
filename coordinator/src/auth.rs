//! Join tokens: HS256 JWTs signed with the cluster's shared secret, carrying
//! the room, the identity, an expiry and whether the holder may publish, and
//! optionally a not-before time (`nbf`) and an audience (`aud`).
//!
//! Only HS256 is accepted; the algorithm in the header is checked, the
//! signature is compared in constant time (HMAC verify), and the expiry and
//! `nbf` are enforced with no leeway beyond `LEEWAY_SECS`.
//!
//! Keys have ids (`kid` in the header) so that a secret can rotate without
//! invalidating the tokens people already hold: coordinators sign with the
//! current key (`THRONG_TOKEN_SECRET`, id `THRONG_TOKEN_KID`) and also accept
//! the keys listed in `THRONG_TOKEN_KEYS`; a token naming an unknown `kid` is
//! refused, a token without one is tried against every key (tokens minted
//! before ids were used). With an audience configured, a token must name it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated between the minting and the checking machine.
const LEEWAY_SECS: u64 = 30;

/// `aud`: one audience or several (both are valid JWT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(all) => all.iter().any(|a| a == aud),
        }
    }
}

/// What a join token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Room the token is for.
    pub room: String,
    /// Identity of the participant (unique in the room).
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Whether the participant may send audio and video.
    #[serde(default = "yes")]
    pub publish: bool,
    /// Event role (`host`, `speaker`, `audience`); absent: a meeting
    /// participant. An audience member never publishes, whatever `publish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::protocol::Role>,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Who the token is for (checked when the coordinator has an audience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Set in resume tokens only (the coordinator mints them, see
    /// [`TokenKey::mint_resume`]): the session's resume nonce. A join refuses
    /// a token that has it, a resume requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsm: Option<String>,
}

fn yes() -> bool {
    true
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or bad JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than HS256.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The header names a key id this coordinator does not have.
    #[error("unknown token key id")]
    UnknownKey,
    /// The signature does not match the shared secret.
    #[error("bad token signature")]
    Signature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is still ahead.
    #[error("token not valid yet")]
    NotYetValid,
    /// The token is for another audience, or names none while one is required.
    #[error("token for another audience")]
    Audience,
}

/// One secret with its id.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    secret: Vec<u8>,
}

impl Key {
    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }
}

/// Signs tokens with the current key and verifies them against every known key.
#[derive(Clone)]
pub struct TokenKey {
    /// Signs; verifies first.
    current: Key,
    /// Verify only (earlier secrets, kept while their tokens are out there).
    accepted: Vec<Key>,
    /// Required `aud`, and the one minted tokens carry.
    audience: Option<String>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

fn now_secs() -> u64 {
    throng_proto::now_ms() / 1000
}

impl TokenKey {
    /// A key from the shared secret, without an id (at least 32 bytes are
    /// expected; the configuration checks that).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            current: Key {
                kid: None,
                secret: secret.into(),
            },
            accepted: Vec::new(),
            audience: None,
        }
    }

    /// The key a coordinator is configured with: the current `secret` (with
    /// its id `kid`), the earlier secrets still `accepted` (id, secret), and
    /// the required `audience`.
    pub fn configured(
        secret: &str,
        kid: Option<&str>,
        accepted: &[(String, String)],
        audience: Option<&str>,
    ) -> Self {
        let mut key = Self::new(secret.as_bytes());
        if let Some(kid) = kid {
            key = key.with_kid(kid);
        }
        for (kid, secret) in accepted {
            key = key.accepting(kid.clone(), secret.as_bytes());
        }
        if let Some(aud) = audience {
            key = key.with_audience(aud);
        }
        key
    }

    /// The current key has id `kid`: tokens it signs name it.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.current.kid = Some(kid.into());
        self
    }

    /// Also accepts tokens signed with `secret` under id `kid`.
    pub fn accepting(mut self, kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        self.accepted.push(Key {
            kid: Some(kid.into()),
            secret: secret.into(),
        });
        self
    }

    /// Tokens must name `audience` (and minted ones do).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A signed token for `claims`, with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
            kid: self.current.kid.clone(),
        };
        let header =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes"));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.current.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// A token valid for `ttl_secs` from now (for this coordinator's audience, if any).
    pub fn mint(&self, room: &str, identity: &str, publish: bool, ttl_secs: u64) -> String {
        self.sign(&self.claims(room, identity, publish, ttl_secs))
    }

    /// A join token with an event role.
    pub fn mint_role(
        &self,
        room: &str,
        identity: &str,
        role: crate::protocol::Role,
        ttl_secs: u64,
    ) -> String {
        self.sign(&Claims {
            role: Some(role),
            ..self.claims(room, identity, role.on_stage(), ttl_secs)
        })
    }

    /// What [`TokenKey::mint`] and [`TokenKey::mint_resume`] sign.
    fn claims(&self, room: &str, identity: &str, publish: bool, ttl_secs: u64) -> Claims {
        Claims {
            room: room.into(),
            sub: identity.into(),
            exp: now_secs() + ttl_secs,
            publish,
            role: None,
            nbf: None,
            aud: self.audience.clone().map(Audience::One),
            rsm: None,
        }
    }

    /// A resume token: takes up the session of `identity` in `room` whose
    /// resume nonce is `nonce`, for `ttl_secs` (signed like join tokens, so
    /// that every coordinator of the cluster can check it); `publish` is what
    /// the join granted.
    pub fn mint_resume(
        &self,
        room: &str,
        identity: &str,
        publish: bool,
        nonce: &str,
        ttl_secs: u64,
    ) -> String {
        self.sign(&Claims {
            rsm: Some(nonce.into()),
            ..self.claims(room, identity, publish, ttl_secs)
        })
    }

    /// The keys a token with header id `kid` may be signed with.
    fn candidates(&self, kid: Option<&str>) -> Vec<&Key> {
        let all = std::iter::once(&self.current).chain(&self.accepted);
        match kid {
            Some(kid) => all.filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => all.collect(),
        }
    }

    /// Checks algorithm, key, signature, expiry, `nbf` and audience; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let keys = self.candidates(header.kid.as_deref());
        if keys.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let signed = keys.iter().any(|key| {
            let mut mac = key.mac();
            mac.update(h.as_bytes());
            mac.update(b".");
            mac.update(p.as_bytes());
            mac.verify_slice(&sig).is_ok()
        });
        if !signed {
            return Err(TokenError::Signature);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let now = now_secs();
        if claims.exp + LEEWAY_SECS < now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        if let Some(required) = &self.audience {
            if !claims.aud.as_ref().is_some_and(|a| a.contains(required)) {
                return Err(TokenError::Audience);
            }
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_carries_its_claims() {
        let key = TokenKey::new("s3cret-s3cret-s3cret-s3cret-s3cret!!");
        let token = key.mint("lobby", "alice", false, 60);
        let claims = key.verify(&token).unwrap();
        assert_eq!(
            (claims.room.as_str(), claims.sub.as_str(), claims.publish),
            ("lobby", "alice", false)
        );
    }

    #[test]
    fn tampered_foreign_expired_and_malformed_tokens_are_refused() {
        let key = TokenKey::new("s3cret-s3cret-s3cret-s3cret-s3cret!!");
        let other = TokenKey::new("another-secret-another-secret-12345");
        let token = key.mint("lobby", "alice", true, 60);
        assert_eq!(other.verify(&token), Err(TokenError::Signature));

        // Change the room in the payload, keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = Claims {
            room: "vip".into(),
            sub: "alice".into(),
            exp: now_secs() + 60,
            publish: true,
            role: None,
            nbf: None,
            aud: None,
            rsm: None,
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&forged), Err(TokenError::Signature));

        let expired = key.sign(&Claims {
            room: "r".into(),
            sub: "a".into(),
            exp: now_secs() - 3600,
            publish: true,
            role: None,
            nbf: None,
            aud: None,
            rsm: None,
        });
        assert_eq!(key.verify(&expired), Err(TokenError::Expired));

        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(key.verify(&none_alg), Err(TokenError::Algorithm));
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(key.verify(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    fn claims(nbf: Option<u64>, aud: Option<Audience>) -> Claims {
        Claims {
            room: "r".into(),
            sub: "a".into(),
            exp: now_secs() + 60,
            publish: true,
            role: None,
            nbf,
            aud,
            rsm: None,
        }
    }

    #[test]
    fn keys_rotate_by_id_without_refusing_tokens_already_out() {
        let old = TokenKey::new("old-secret-old-secret-old-secret-1234").with_kid("2026-11");
        let issued = old.mint("r", "ann", true, 60);
        let legacy =
            TokenKey::new("old-secret-old-secret-old-secret-1234").mint("r", "bo", true, 60);
        // Rotated: a new current key, the old one still accepted.
        let rotated = TokenKey::new("new-secret-new-secret-new-secret-5678")
            .with_kid("2026-12")
            .accepting("2026-11", "old-secret-old-secret-old-secret-1234");
        assert_eq!(rotated.verify(&issued).unwrap().sub, "ann");
        assert_eq!(
            rotated.verify(&legacy).unwrap().sub,
            "bo",
            "a token without kid"
        );
        let fresh = rotated.mint("r", "cy", true, 60);
        assert_eq!(rotated.verify(&fresh).unwrap().sub, "cy");
        // The old coordinator (before the rotation) does not know the new id.
        assert_eq!(old.verify(&fresh), Err(TokenError::UnknownKey));
        // Once the old key is dropped, its tokens are refused by id.
        let after = TokenKey::new("new-secret-new-secret-new-secret-5678").with_kid("2026-12");
        assert_eq!(after.verify(&issued), Err(TokenError::UnknownKey));
        assert_eq!(after.verify(&legacy), Err(TokenError::Signature));
        // A kid naming a known key does not let another key's signature pass.
        let forged = TokenKey::new("attacker-secret-attacker-secret-0000").with_kid("2026-12");
        assert_eq!(
            after.verify(&forged.mint("r", "x", true, 60)),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn not_before_and_audience_are_enforced() {
        let key = TokenKey::new("s3cret-s3cret-s3cret-s3cret-s3cret!!");
        let later = key.sign(&claims(Some(now_secs() + 3600), None));
        assert_eq!(key.verify(&later), Err(TokenError::NotYetValid));
        let within_leeway = key.sign(&claims(Some(now_secs() + 10), None));
        assert!(key.verify(&within_leeway).is_ok());
        let scoped = key.clone().with_audience("events.example");
        assert_eq!(
            scoped.verify(&key.sign(&claims(None, None))),
            Err(TokenError::Audience)
        );
        let other = key.sign(&claims(None, Some(Audience::One("elsewhere".into()))));
        assert_eq!(scoped.verify(&other), Err(TokenError::Audience));
        let many = key.sign(&claims(
            None,
            Some(Audience::Many(vec!["a".into(), "events.example".into()])),
        ));
        assert!(scoped.verify(&many).is_ok());
        // Minted by a scoped key: carries the audience, as a plain string.
        let minted = scoped.mint("r", "a", true, 60);
        assert_eq!(
            scoped.verify(&minted).unwrap().aud,
            Some(Audience::One("events.example".into()))
        );
        // A coordinator without an audience ignores one in the token.
        assert!(key.verify(&minted).is_ok());
    }
}
