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
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if segment.is_empty() || !segment.bytes().all(base64url) {
            return Err(AuthError::Malformed);
        }
    }
    if segments != 3 {
        return Err(AuthError::Malformed);
    }
    Ok(())
}

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
        assert_eq!(
            check_compact_jws(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::TooLarge)
        );
    }
}
