//! Join tokens: HS256 JWTs signed with the cluster's shared secret, carrying
//! the room, the identity, an expiry and whether the holder may publish.
//!
//! Only HS256 is accepted; the algorithm in the header is checked, the
//! signature is compared in constant time (HMAC verify), and the expiry is
//! enforced with no leeway beyond `LEEWAY_SECS`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated between the minting and the checking machine.
const LEEWAY_SECS: u64 = 30;

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
    /// The signature does not match the shared secret.
    #[error("bad token signature")]
    Signature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
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
}

fn now_secs() -> u64 {
    throng_proto::now_ms() / 1000
}

impl TokenKey {
    /// A key from the shared secret (at least 32 bytes are expected; the
    /// configuration checks that).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// A token valid for `ttl_secs` from now.
    pub fn mint(&self, room: &str, identity: &str, publish: bool, ttl_secs: u64) -> String {
        self.sign(&Claims {
            room: room.into(),
            sub: identity.into(),
            exp: now_secs() + ttl_secs,
            publish,
        })
    }

    /// Checks signature, algorithm and expiry; returns the claims.
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
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp + LEEWAY_SECS < now_secs() {
            return Err(TokenError::Expired);
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
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&forged), Err(TokenError::Signature));

        let expired = key.sign(&Claims {
            room: "r".into(),
            sub: "a".into(),
            exp: now_secs() - 3600,
            publish: true,
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
}
