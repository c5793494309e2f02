//! Per-request constraints of an access point: expiry, upload limits, content types,
//! checksums and metadata. Pure checks; the caller maps `ConstraintError::code()` to HTTP.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::AccessPointSpec;

/// SigV4 presigned URLs live at most 7 days.
pub const MAX_EXPIRES_IN: u32 = 604_800;
/// S3's largest single PUT: 5 GiB.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest object (a multipart upload): 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// S3's limit on user-defined metadata: names plus values, in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("expires_in must be between 1 and {max} seconds")]
    ExpiresOutOfRange { max: u32 },
    #[error("content_length is required: this access point limits upload size")]
    ContentLengthRequired,
    #[error("content_length exceeds this access point's limit of {max} bytes")]
    ContentLengthTooLarge { max: u64 },
    #[error("content_type is required: this access point restricts content types")]
    ContentTypeRequired,
    #[error("content_type is not allowed by this access point")]
    ContentTypeNotAllowed,
    #[error("checksum_sha256 is required by this access point")]
    ChecksumRequired,
    #[error("checksum_sha256 must be the standard base64 encoding of a 32-byte SHA-256 digest")]
    InvalidChecksum,
    #[error("metadata {name:?} is required by this access point")]
    MetadataRequired { name: String },
    #[error("invalid metadata: {reason}")]
    InvalidMetadata { reason: String },
    #[error("content_type must be a media type such as image/png (type/subtype[; parameters])")]
    InvalidContentType,
    #[error(
        "response_content_disposition must be inline or attachment[; filename=...] in printable ASCII, at most 1024 bytes"
    )]
    InvalidDisposition,
}

impl ConstraintError {
    /// The stable problem+json `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ConstraintError::ExpiresOutOfRange { .. } => "expires_in_out_of_range",
            ConstraintError::ContentLengthTooLarge { .. } => "payload_too_large",
            ConstraintError::ContentTypeNotAllowed => "content_type_not_allowed",
            ConstraintError::ChecksumRequired => "checksum_required",
            ConstraintError::MetadataRequired { .. } => "metadata_required",
            ConstraintError::ContentLengthRequired
            | ConstraintError::ContentTypeRequired
            | ConstraintError::InvalidChecksum
            | ConstraintError::InvalidMetadata { .. }
            | ConstraintError::InvalidContentType
            | ConstraintError::InvalidDisposition => "invalid_request",
        }
    }
}

/// The URL lifetime: the access point's default, or the requested value within 1..=max.
pub fn resolve_expires(
    ap: &AccessPointSpec,
    requested: Option<u64>,
) -> Result<u32, ConstraintError> {
    // A validated spec has max <= 7 days already; the `min` keeps SigV4's limit regardless.
    let max = ap.max_expires_in.min(MAX_EXPIRES_IN);
    match requested {
        None => Ok(ap.default_expires_in.min(max)),
        Some(secs) => match u32::try_from(secs) {
            Ok(secs) if (1..=max).contains(&secs) => Ok(secs),
            _ => Err(ConstraintError::ExpiresOutOfRange { max }),
        },
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    pub content_type: Option<&'a str>,
    pub content_length: Option<u64>,
    pub checksum_sha256: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
}

/// Checks a PUT against the access point's upload constraints. Everything checked here is
/// signed into the URL, so S3 enforces it on the actual upload.
pub fn check_upload(ap: &AccessPointSpec, req: &UploadRequest) -> Result<(), ConstraintError> {
    let upload = &ap.upload;

    match (upload.max_content_length, req.content_length) {
        // An unsigned length would let the client send anything.
        (Some(_), None) => return Err(ConstraintError::ContentLengthRequired),
        (Some(max), Some(len)) if len > max => {
            return Err(ConstraintError::ContentLengthTooLarge { max });
        }
        // A limit above 5 GiB is for multipart uploads; one PUT never exceeds 5 GiB.
        (_, Some(len)) if len > MAX_SINGLE_PUT_BYTES => {
            return Err(ConstraintError::ContentLengthTooLarge {
                max: MAX_SINGLE_PUT_BYTES,
            });
        }
        _ => {}
    }

    if req
        .content_type
        .is_some_and(|ct| parse_content_type(ct).is_none())
    {
        return Err(ConstraintError::InvalidContentType);
    }
    if !upload.content_types.is_empty() {
        let ct = req
            .content_type
            .ok_or(ConstraintError::ContentTypeRequired)?;
        if !content_type_allowed(&upload.content_types, ct) {
            return Err(ConstraintError::ContentTypeNotAllowed);
        }
    }

    match req.checksum_sha256 {
        Some(c) if !is_sha256_base64(c) => return Err(ConstraintError::InvalidChecksum),
        None if upload.require_checksum => return Err(ConstraintError::ChecksumRequired),
        _ => {}
    }

    check_metadata(req.metadata)?;
    for name in &upload.required_metadata {
        if req.metadata.get(name).is_none_or(|v| v.is_empty()) {
            return Err(ConstraintError::MetadataRequired { name: name.clone() });
        }
    }
    Ok(())
}

/// Metadata becomes signed `x-amz-meta-NAME: VALUE` headers, so it must be header-safe.
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), ConstraintError> {
    let invalid = |reason: String| Err(ConstraintError::InvalidMetadata { reason });
    let mut total = 0usize;
    for (name, value) in metadata {
        // No `_`: proxies such as nginx drop such headers, which breaks the signature.
        if !is_metadata_name(name) {
            return invalid(format!(
                "name {name:?} must be non-empty lowercase a-z, 0-9 or '-' (without x-amz-meta-)"
            ));
        }
        // Printable US-ASCII only: no CR/LF (header injection), no other controls.
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return invalid(format!("value of {name:?} must be printable US-ASCII"));
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return invalid(format!(
            "names and values total {total} bytes; S3 allows at most {MAX_METADATA_BYTES}"
        ));
    }
    Ok(())
}

/// Media types a browser runs as active content (script, markup, stylesheets-with-script)
/// when served from the bucket's origin: HTML, any XML (`*/xml`, `*/*+xml`: SVG, XHTML, XSLT,
/// feeds), script types, and the types a browser sniffs (WHATWG MIME Sniffing §7.1: S3 sends
/// no `nosniff`, so `unknown/unknown` or `application/unknown` bytes may render as HTML), and
/// `multipart/x-mixed-replace`, whose parts render as documents. `essence` is
/// `type/subtype`, any case.
pub fn is_active_content(essence: &str) -> bool {
    let essence = essence.to_ascii_lowercase();
    let sub = essence.split_once('/').map_or("", |(_, sub)| sub);
    essence == "text/html"
        || essence == "unknown/unknown"
        || essence == "application/unknown"
        || essence == "multipart/x-mixed-replace"
        || essence == "text/xsl"
        || sub == "xml"
        || sub.ends_with("+xml")
        || sub.contains("javascript")
        || sub.contains("ecmascript")
        || sub.contains("jscript")
}

/// Overrides of a GET's response headers: the content type stays within the access point's
/// upload types (when it has any) and is never active content; the disposition is `inline`
/// or `attachment` with optional parameters.
pub fn check_response_overrides(
    ap: &AccessPointSpec,
    content_type: Option<&str>,
    disposition: Option<&str>,
) -> Result<(), ConstraintError> {
    if let Some(ct) = content_type {
        let (ty, sub) = parse_content_type(ct).ok_or(ConstraintError::InvalidContentType)?;
        if is_active_content(&format!("{ty}/{sub}")) {
            return Err(ConstraintError::ContentTypeNotAllowed);
        }
        let patterns = &ap.upload.content_types;
        if !patterns.is_empty() && !content_type_allowed(patterns, ct) {
            return Err(ConstraintError::ContentTypeNotAllowed);
        }
    }
    if let Some(d) = disposition {
        let kind = d.split(';').next().unwrap_or_default().trim();
        let ok = d.len() <= 1024
            && d.bytes().all(|b| (0x20..=0x7e).contains(&b))
            && (kind.eq_ignore_ascii_case("inline") || kind.eq_ignore_ascii_case("attachment"));
        if !ok {
            return Err(ConstraintError::InvalidDisposition);
        }
    }
    Ok(())
}

/// `[a-z0-9-]`: header-safe through any proxy.
pub(crate) fn is_metadata_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Does `content_type` (parameters ignored, case-insensitive) match one of `patterns`
/// (`type/subtype`, `type/*`, `*/*`)? An unparsable content type matches nothing. A wildcard
/// never matches active content ([`is_active_content`]): `image/*` means pictures, not an
/// `image/svg+xml` that runs script on the bucket's origin. An access point that wants such a
/// type lists it exactly.
pub fn content_type_allowed(patterns: &[String], content_type: &str) -> bool {
    let Some((ty, sub)) = parse_content_type(content_type) else {
        return false;
    };
    let active = is_active_content(&format!("{ty}/{sub}"));
    patterns.iter().any(|p| match p.split_once('/') {
        Some(("*", "*")) => !active,
        Some((pt, "*")) => !active && pt.eq_ignore_ascii_case(ty),
        Some((pt, ps)) => pt.eq_ignore_ascii_case(ty) && ps.eq_ignore_ascii_case(sub),
        None => false,
    })
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A concrete media type `type/subtype[; params]`: returns (type, subtype). Wildcards are
/// for patterns, not for what an upload declares.
fn parse_content_type(ct: &str) -> Option<(&str, &str)> {
    // Header-safe: visible ASCII and spaces only (no CR/LF/controls, no non-ASCII).
    if !ct.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return None;
    }
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let (ty, sub) = essence.split_once('/')?;
    if !is_token(ty) || !is_token(sub) || ty.contains('*') || sub.contains('*') {
        return None;
    }
    Some((ty, sub))
}

fn is_sha256_base64(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|bytes| bytes.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Effect, Operation, OperationPattern, Rule, UploadConstraints};

    fn spec(upload: UploadConstraints) -> AccessPointSpec {
        AccessPointSpec {
            name: "ap".into(),
            bucket: "bucket".into(),
            prefix: String::new(),
            default_expires_in: 300,
            max_expires_in: 3600,
            encryption: Default::default(),
            upload,
            cors_origins: vec![],
            network: Default::default(),
            limits: Default::default(),
            delivery: Default::default(),
            grants: None,
            rules: vec![Rule {
                effect: Effect::Allow,
                groups: vec!["*".into()],
                issuers: vec![],
                operations: vec![OperationPattern::Op(Operation::Put)],
                keys: vec!["*".into()],
                require_mfa: false,
            }],
        }
    }

    const SHA: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn put<'a>(meta: &'a BTreeMap<String, String>) -> UploadRequest<'a> {
        UploadRequest {
            content_type: Some("image/png"),
            content_length: Some(100),
            checksum_sha256: Some(SHA),
            metadata: meta,
        }
    }

    #[test]
    fn expires_defaults_and_bounds() {
        let ap = spec(UploadConstraints::default());
        assert_eq!(resolve_expires(&ap, None), Ok(300));
        assert_eq!(resolve_expires(&ap, Some(1)), Ok(1));
        assert_eq!(resolve_expires(&ap, Some(3600)), Ok(3600));
        for bad in [0, 3601, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                resolve_expires(&ap, Some(bad)),
                Err(ConstraintError::ExpiresOutOfRange { max: 3600 }),
                "{bad}"
            );
        }
        assert_eq!(
            ConstraintError::ExpiresOutOfRange { max: 3600 }.code(),
            "expires_in_out_of_range"
        );
    }

    #[test]
    fn content_length_limits() {
        let meta = BTreeMap::new();
        let ap = spec(UploadConstraints {
            max_content_length: Some(1000),
            ..Default::default()
        });
        assert_eq!(check_upload(&ap, &put(&meta)), Ok(()));
        let missing = UploadRequest {
            content_length: None,
            ..put(&meta)
        };
        assert_eq!(
            check_upload(&ap, &missing),
            Err(ConstraintError::ContentLengthRequired)
        );
        assert_eq!(
            ConstraintError::ContentLengthRequired.code(),
            "invalid_request"
        );
        let big = UploadRequest {
            content_length: Some(1001),
            ..put(&meta)
        };
        let err = check_upload(&ap, &big).expect_err("too large");
        assert_eq!(err, ConstraintError::ContentLengthTooLarge { max: 1000 });
        assert_eq!(err.code(), "payload_too_large");

        // No limit configured: length optional, but never past S3's 5 GiB single PUT.
        let open = spec(UploadConstraints::default());
        let unsized_put = UploadRequest {
            content_length: None,
            ..put(&meta)
        };
        assert_eq!(check_upload(&open, &unsized_put), Ok(()));
        let huge = UploadRequest {
            content_length: Some(MAX_SINGLE_PUT_BYTES + 1),
            ..put(&meta)
        };
        assert_eq!(
            check_upload(&open, &huge),
            Err(ConstraintError::ContentLengthTooLarge {
                max: MAX_SINGLE_PUT_BYTES
            })
        );
        // A limit above 5 GiB (for multipart uploads) does not lift the single-PUT cap.
        let large = spec(UploadConstraints {
            max_content_length: Some(MAX_SINGLE_PUT_BYTES * 4),
            ..UploadConstraints::default()
        });
        assert_eq!(
            check_upload(&large, &huge),
            Err(ConstraintError::ContentLengthTooLarge {
                max: MAX_SINGLE_PUT_BYTES
            })
        );
    }

    #[test]
    fn content_type_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(content_type_allowed(&p(&["image/*"]), "image/png"));
        assert!(content_type_allowed(&p(&["image/*"]), "IMAGE/PNG"));
        assert!(content_type_allowed(
            &p(&["image/*"]),
            "image/png; charset=x"
        ));
        assert!(content_type_allowed(&p(&["Image/PNG"]), "image/png"));
        assert!(content_type_allowed(&p(&["*/*"]), "application/pdf"));
        assert!(content_type_allowed(
            &p(&["text/plain", "application/pdf"]),
            "application/pdf"
        ));
        assert!(!content_type_allowed(&p(&["image/*"]), "text/html"));
        assert!(!content_type_allowed(&p(&["image/png"]), "image/pngx"));
        assert!(!content_type_allowed(&p(&["image/*"]), "imagex/png"));
        assert!(!content_type_allowed(&p(&["image/*"]), "image/*"));
        assert!(!content_type_allowed(&p(&["*/*"]), "nonsense"));
        assert!(!content_type_allowed(&p(&[]), "image/png"));
    }

    #[test]
    fn content_type_required_allowed_and_well_formed() {
        let meta = BTreeMap::new();
        let ap = spec(UploadConstraints {
            content_types: vec!["image/*".into()],
            ..Default::default()
        });
        assert_eq!(check_upload(&ap, &put(&meta)), Ok(()));
        let none = UploadRequest {
            content_type: None,
            ..put(&meta)
        };
        assert_eq!(
            check_upload(&ap, &none),
            Err(ConstraintError::ContentTypeRequired)
        );
        let html = UploadRequest {
            content_type: Some("text/html"),
            ..put(&meta)
        };
        let err = check_upload(&ap, &html).expect_err("not allowed");
        assert_eq!(err, ConstraintError::ContentTypeNotAllowed);
        assert_eq!(err.code(), "content_type_not_allowed");

        let open = spec(UploadConstraints::default());
        for bad in [
            "image/png\r\nx-amz-acl: public-read",
            "image",
            "image/",
            "/png",
            "image/p ng",
            "image/png\u{7f}",
            "imäge/png",
            "*/*",
        ] {
            let req = UploadRequest {
                content_type: Some(bad),
                ..put(&meta)
            };
            assert_eq!(
                check_upload(&open, &req),
                Err(ConstraintError::InvalidContentType),
                "{bad:?}"
            );
        }
        assert_eq!(
            ConstraintError::InvalidContentType.code(),
            "invalid_request"
        );
    }

    #[test]
    fn checksum_required_and_well_formed() {
        let meta = BTreeMap::new();
        let ap = spec(UploadConstraints {
            require_checksum: true,
            ..Default::default()
        });
        assert_eq!(check_upload(&ap, &put(&meta)), Ok(()));
        let none = UploadRequest {
            checksum_sha256: None,
            ..put(&meta)
        };
        let err = check_upload(&ap, &none).expect_err("required");
        assert_eq!(err, ConstraintError::ChecksumRequired);
        assert_eq!(err.code(), "checksum_required");
        // 31 bytes, hex, url-safe alphabet, unpadded: all refused.
        for bad in [
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        ] {
            let req = UploadRequest {
                checksum_sha256: Some(bad),
                ..put(&meta)
            };
            assert_eq!(
                check_upload(&ap, &req),
                Err(ConstraintError::InvalidChecksum),
                "{bad}"
            );
        }
    }

    #[test]
    fn required_metadata() {
        let ap = spec(UploadConstraints {
            required_metadata: vec!["cse-alg".into()],
            ..Default::default()
        });
        let none = BTreeMap::new();
        let err = check_upload(&ap, &put(&none)).expect_err("required");
        assert_eq!(
            err,
            ConstraintError::MetadataRequired {
                name: "cse-alg".into()
            }
        );
        assert_eq!(err.code(), "metadata_required");
        let empty = BTreeMap::from([("cse-alg".to_string(), String::new())]);
        assert!(check_upload(&ap, &put(&empty)).is_err());
        let ok = BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]);
        assert_eq!(check_upload(&ap, &put(&ok)), Ok(()));
    }

    #[test]
    fn metadata_must_be_header_safe_and_small() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(check_metadata(&one("user-id-2", "Alice (42)")), Ok(()));
        assert_eq!(check_metadata(&BTreeMap::new()), Ok(()));
        for (k, v) in [
            ("", "v"),
            ("Upper", "v"),
            ("x-amz-meta:k", "v"),
            ("sp ace", "v"),
            ("user_id", "v"),
            ("k", "a\r\nx-amz-acl: public-read"),
            ("k", "tab\there"),
            ("k", "naïve"),
        ] {
            let err = check_metadata(&one(k, v)).expect_err(k);
            assert!(
                matches!(err, ConstraintError::InvalidMetadata { .. }),
                "{k:?}={v:?}"
            );
            assert_eq!(err.code(), "invalid_request");
        }
        assert_eq!(check_metadata(&one("k", &"v".repeat(2047))), Ok(()));
        assert!(check_metadata(&one("k", &"v".repeat(2048))).is_err());
    }
}

#[cfg(test)]
mod response_override_tests {
    use super::*;

    fn ap(types: &[&str]) -> AccessPointSpec {
        let mut spec: AccessPointSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "bucket": "bucket-a", "prefix": "p/",
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["get"]}]
        }))
        .expect("spec");
        spec.upload.content_types = types.iter().map(|t| t.to_string()).collect();
        spec
    }

    #[test]
    fn active_content_is_never_served() {
        for ct in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "image/svg+xml",
            "application/javascript",
            "text/ecmascript",
            // Sniffed as HTML by browsers (the second review).
            "application/unknown",
            "unknown/unknown",
            "multipart/x-mixed-replace; boundary=x",
        ] {
            assert_eq!(
                check_response_overrides(&ap(&[]), Some(ct), None),
                Err(ConstraintError::ContentTypeNotAllowed),
                "{ct}"
            );
        }
        assert_eq!(
            check_response_overrides(&ap(&[]), Some("application/pdf"), None),
            Ok(())
        );
    }

    /// Finding 8 of the hardening review: with `content_types: ["image/*"]` a PUT of
    /// `image/svg+xml` used to be signed. Wildcards no longer match active content; an exact
    /// entry still does.
    #[test]
    fn wildcards_never_match_active_content() {
        let patterns = |p: &[&str]| p.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        for (allowed, ct) in [
            (&["image/*"][..], "image/svg+xml"),
            (&["image/*"][..], "IMAGE/SVG+XML; charset=utf-8"),
            (&["*/*"][..], "text/html"),
            (&["text/*"][..], "text/html"),
            (&["text/*"][..], "text/xml"),
            (&["text/*"][..], "text/javascript"),
            (&["application/*"][..], "application/xhtml+xml"),
            (&["application/*"][..], "application/xml"),
            (&["application/*"][..], "application/rss+xml"),
            (&["application/*"][..], "application/javascript"),
            (&["application/*"][..], "application/unknown"),
            (&["*/*"][..], "unknown/unknown"),
            (&["multipart/*"][..], "multipart/x-mixed-replace"),
        ] {
            assert!(
                !content_type_allowed(&patterns(allowed), ct),
                "{allowed:?} {ct}"
            );
        }
        for (allowed, ct) in [
            (&["image/*"][..], "image/png"),
            (&["*/*"][..], "application/pdf"),
            (&["image/*", "image/svg+xml"][..], "image/svg+xml"),
            (&["text/html"][..], "text/html; charset=utf-8"),
        ] {
            assert!(
                content_type_allowed(&patterns(allowed), ct),
                "{allowed:?} {ct}"
            );
        }
    }

    #[test]
    fn overrides_stay_within_the_upload_types() {
        let images = ap(&["image/*"]);
        assert_eq!(
            check_response_overrides(&images, Some("image/png"), None),
            Ok(())
        );
        assert_eq!(
            check_response_overrides(&images, Some("application/pdf"), None),
            Err(ConstraintError::ContentTypeNotAllowed)
        );
        assert_eq!(
            check_response_overrides(&images, Some("image/png\r\nx: y"), None),
            Err(ConstraintError::InvalidContentType)
        );
    }

    #[test]
    fn dispositions() {
        for ok in [
            "inline",
            "attachment",
            "attachment; filename=\"a.png\"",
            "INLINE;filename=x",
        ] {
            assert_eq!(
                check_response_overrides(&ap(&[]), None, Some(ok)),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "",
            "form-data",
            "attachment; filename=\"\u{e9}.png\"",
            "inline\r\nx: y",
        ] {
            assert_eq!(
                check_response_overrides(&ap(&[]), None, Some(bad)),
                Err(ConstraintError::InvalidDisposition),
                "{bad:?}"
            );
        }
    }
}
