//! `Authorization: Bearer <token>` extraction (RFC 6750).

use axum::http::{HeaderMap, header::AUTHORIZATION};

use crate::auth::{AuthError, MAX_TOKEN_BYTES};

/// The compact JWS from the single `Authorization` header. Only the token's shape is checked
/// here; [`crate::auth::Verifier::verify`] does the rest.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    // Two headers could be read differently by a proxy and by us: refuse rather than pick one.
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim_matches(' ');
    check_compact_jws(token)?;
    Ok(token)
}

/// Size and shape of a compact JWS: three non-empty base64url segments, nothing else.
pub(crate) fn check_compact_jws(token: &str) -> Result<(), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    // One pass with a byte table: this runs on every request, over ~0.5–2 KiB of token.
    let (mut dots, mut segment_start) = (0, 0);
    for (i, &b) in token.as_bytes().iter().enumerate() {
        match JWS_BYTE[usize::from(b)] {
            BASE64URL => {}
            DOT if i > segment_start => {
                dots += 1;
                segment_start = i + 1;
            }
            _ => return Err(AuthError::Malformed),
        }
    }
    if dots != 2 || segment_start == token.len() {
        return Err(AuthError::Malformed);
    }
    Ok(())
}

const OTHER: u8 = 0;
const BASE64URL: u8 = 1;
const DOT: u8 = 2;

/// What each byte is in a compact JWS.
static JWS_BYTE: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            table[b] = BASE64URL;
        }
        b += 1;
    }
    table[b'.' as usize] = DOT;
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_jws_shape() {
        assert_eq!(check_compact_jws("a.b.c"), Ok(()));
        assert_eq!(check_compact_jws("a.b."), Err(AuthError::Malformed)); // alg:none shape
        assert_eq!(check_compact_jws("a.b"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws("a.b.c.d.e"), Err(AuthError::Malformed)); // JWE
        assert_eq!(check_compact_jws("a.b+.c"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws("a.b=.c"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws(".b.c"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws("a..c"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws(""), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws("a.b.c\u{e9}"), Err(AuthError::Malformed));
        assert_eq!(check_compact_jws("aB-_9.xY.z0"), Ok(()));
        assert_eq!(
            check_compact_jws(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::TooLarge)
        );
    }
}
