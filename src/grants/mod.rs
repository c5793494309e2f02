//! Download grants: revocable links good for a number of downloads of one object
//! (`GET /g/{token}`). Pure: the token, its stored digest, and why a grant no longer serves.
//! The table and its atomic use counter are `store::grants`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::store::StoredGrant;

/// 256 random bits, URL-safe base64 without padding (43 characters).
pub const TOKEN_CHARS: usize = 43;

/// A fresh token (the capability handed to the creator, never stored) and its SHA-256 (what
/// the table keeps).
pub fn new_token() -> Result<(String, String), aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = token_sha256(&token);
    Ok((token, digest))
}

/// The stored form of a token. Only well-formed tokens are looked up (see [`is_token`]).
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `s` could be a token: 43 URL-safe base64 characters. Anything else is refused
/// before the database is asked.
pub fn is_token(s: &str) -> bool {
    s.len() == TOKEN_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a grant serves no more, in the order a redeemer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    Revoked,
    Expired,
    UsedUp,
}

impl Gone {
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Revoked => "revoked",
            Gone::Expired => "expired",
            Gone::UsedUp => "used up",
        }
    }
}

/// `None` while the grant is live at `now` with uses left.
pub fn gone(g: &StoredGrant, now: i64) -> Option<Gone> {
    if g.revoked_at.is_some() {
        Some(Gone::Revoked)
    } else if g.expires_at <= now {
        Some(Gone::Expired)
    } else if g.uses >= g.max_uses {
        Some(Gone::UsedUp)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(uses: u32, expires_at: i64, revoked_at: Option<i64>) -> StoredGrant {
        StoredGrant {
            grant_id: "g".into(),
            access_point: "ap".into(),
            bucket: "b".into(),
            request_key: "k".into(),
            object_key: "k".into(),
            issuer: "i".into(),
            subject: "s".into(),
            groups: vec![],
            mfa: false,
            response_content_disposition: None,
            max_uses: 2,
            uses,
            created_at: 0,
            expires_at,
            revoked_at,
        }
    }

    #[test]
    fn tokens_are_random_well_formed_and_stored_only_as_digests() {
        let (a, a_digest) = new_token().expect("token");
        let (b, _) = new_token().expect("token");
        assert_ne!(a, b);
        assert!(is_token(&a) && is_token(&b), "{a} {b}");
        assert_eq!(a_digest, token_sha256(&a));
        assert_eq!(a_digest.len(), 64);
        assert!(!a_digest.contains(&a));
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &a[..42]),
            &format!("{}/", &a[..42]),
        ] {
            assert!(!is_token(bad), "{bad}");
        }
    }

    #[test]
    fn a_grant_is_gone_when_revoked_expired_or_used_up() {
        assert_eq!(gone(&grant(0, 100, None), 50), None);
        assert_eq!(gone(&grant(1, 100, None), 50), None);
        assert_eq!(gone(&grant(2, 100, None), 50), Some(Gone::UsedUp));
        assert_eq!(gone(&grant(0, 100, None), 100), Some(Gone::Expired));
        assert_eq!(gone(&grant(2, 100, Some(10)), 200), Some(Gone::Revoked));
    }
}
