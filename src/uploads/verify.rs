//! Verified completion, the pure part: what an issuance allowed ([`Issued`]) against what S3
//! holds ([`Observed`]), as a list of [`Mismatch`]es (empty: verified). The S3 calls are in
//! `sign::objects`, the route in `http::verify`, the rows in `store::issuances`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::Encryption;

/// What an upload issuance allowed, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Sizes allowed, in bytes (equal for a declared length); `None`: S3's own limit.
    pub min_length: u64,
    pub max_length: Option<u64>,
    pub content_type: Option<String>,
    /// Base64 SHA-256, when one was signed.
    pub checksum_sha256: Option<String>,
    pub encryption: Encryption,
    /// `x-amz-meta-*` signed into the upload (names without the prefix).
    pub metadata: BTreeMap<String, String>,
}

/// An object as S3 reports it (HeadObject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub size: u64,
    pub content_type: Option<String>,
    /// Base64 SHA-256 of the whole object, when S3 reported or presignd computed it.
    pub checksum_sha256: Option<String>,
    /// `x-amz-server-side-encryption`: `AES256`, `aws:kms`, …
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub etag: Option<String>,
}

/// What verification saw under the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Missing,
    Found(Found),
    /// SSE-C: S3 describes the object only to a caller holding the customer's key, which
    /// presignd never sees. Its existence is all that can be checked.
    CustomerEncrypted,
}

/// One way the object differs from what was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// `object`, `content_length`, `content_type`, `checksum_sha256`, `sse` or
    /// `metadata.<name>`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl Mismatch {
    fn new(
        field: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Mismatch {
            field: field.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

/// Every way `observed` differs from `issued`, in a fixed order (empty: verified).
pub fn compare(issued: &Issued, observed: &Observed) -> Vec<Mismatch> {
    let found = match observed {
        Observed::Missing => return vec![Mismatch::new("object", "present", "missing")],
        Observed::CustomerEncrypted => {
            return match issued.encryption {
                Encryption::SseC => Vec::new(),
                _ => vec![Mismatch::new("sse", issued.encryption.mode(), "sse-c")],
            };
        }
        Observed::Found(found) => found,
    };
    let mut out = Vec::new();
    let within =
        found.size >= issued.min_length && issued.max_length.is_none_or(|max| found.size <= max);
    if !within {
        let expected = match issued.max_length {
            Some(max) if max == issued.min_length => max.to_string(),
            Some(max) => format!("{}..={max}", issued.min_length),
            None => format!("at least {}", issued.min_length),
        };
        out.push(Mismatch::new(
            "content_length",
            expected,
            found.size.to_string(),
        ));
    }
    if let Some(want) = &issued.content_type {
        let got = found.content_type.as_deref().unwrap_or("");
        if !media_type(want).eq_ignore_ascii_case(media_type(got)) {
            out.push(Mismatch::new("content_type", want.as_str(), got));
        }
    }
    if let Some(want) = &issued.checksum_sha256 {
        let got = found.checksum_sha256.as_deref().unwrap_or("");
        if want != got {
            out.push(Mismatch::new("checksum_sha256", want.as_str(), got));
        }
    }
    if let Some(m) = sse_mismatch(&issued.encryption, found) {
        out.push(m);
    }
    for (name, want) in &issued.metadata {
        let got = found.metadata.get(name).map_or("", String::as_str);
        if want != got {
            out.push(Mismatch::new(
                format!("metadata.{name}"),
                want.as_str(),
                got,
            ));
        }
    }
    out
}

/// The type and subtype, without parameters (`text/plain; charset=utf-8` → `text/plain`):
/// stores differ in whether they keep parameters as sent.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// `none` accepts whatever the bucket's default encryption did (S3 encrypts every new object
/// with SSE-S3 by default); the others must show their mode, and SSE-KMS its key.
fn sse_mismatch(encryption: &Encryption, found: &Found) -> Option<Mismatch> {
    let got = found.sse.as_deref().unwrap_or("");
    let shown = if got.is_empty() { "none" } else { got };
    match encryption {
        Encryption::None => None,
        Encryption::SseS3 => (got != "AES256").then(|| Mismatch::new("sse", "AES256", shown)),
        Encryption::SseKms { kms_key_id } => {
            let key = found.sse_kms_key_id.as_deref().unwrap_or("");
            // S3 reports the key's ARN whatever form the request named it in; an alias
            // (`alias/…`) is not in that ARN, so only the mode can be checked for it.
            let same_key = kms_key_id.starts_with("alias/")
                || kms_key_id.contains(":alias/")
                || key == kms_key_id
                || key.ends_with(&format!("/{kms_key_id}"));
            (got != "aws:kms" || !same_key).then(|| {
                Mismatch::new(
                    "sse",
                    format!("aws:kms {kms_key_id}"),
                    format!("{shown} {key}").trim_end().to_string(),
                )
            })
        }
        // A described object was not stored with a customer key.
        Encryption::SseC => Some(Mismatch::new("sse", "sse-c", shown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn issued() -> Issued {
        Issued {
            min_length: 10,
            max_length: Some(10),
            content_type: Some("image/png".into()),
            checksum_sha256: Some("q1w2".into()),
            encryption: Encryption::None,
            metadata: BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]),
        }
    }

    fn found() -> Found {
        Found {
            size: 10,
            content_type: Some("image/png".into()),
            checksum_sha256: Some("q1w2".into()),
            sse: None,
            sse_kms_key_id: None,
            metadata: BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]),
            etag: Some("\"e\"".into()),
        }
    }

    fn fields(m: &[Mismatch]) -> Vec<&str> {
        m.iter().map(|m| m.field.as_str()).collect()
    }

    #[test]
    fn what_was_issued_verifies() {
        assert_eq!(compare(&issued(), &Observed::Found(found())), vec![]);
    }

    #[test]
    fn each_difference_is_named_once_in_order() {
        let mut f = found();
        f.size = 11;
        f.content_type = Some("text/html".into());
        f.checksum_sha256 = None;
        f.metadata.clear();
        let got = compare(&issued(), &Observed::Found(f));
        assert_eq!(
            fields(&got),
            [
                "content_length",
                "content_type",
                "checksum_sha256",
                "metadata.cse-alg"
            ]
        );
        assert_eq!(got[0], Mismatch::new("content_length", "10", "11"));
        assert_eq!(got[2].actual, "");
    }

    #[test]
    fn missing_and_customer_encrypted_objects() {
        assert_eq!(fields(&compare(&issued(), &Observed::Missing)), ["object"]);
        assert_eq!(
            fields(&compare(&issued(), &Observed::CustomerEncrypted)),
            ["sse"]
        );
        let mut sse_c = issued();
        sse_c.encryption = Encryption::SseC;
        assert!(compare(&sse_c, &Observed::CustomerEncrypted).is_empty());
        assert_eq!(fields(&compare(&sse_c, &Observed::Found(found()))), ["sse"]);
    }

    #[test]
    fn media_type_parameters_and_case_do_not_count() {
        let mut f = found();
        f.content_type = Some("Image/PNG; charset=binary".into());
        assert!(compare(&issued(), &Observed::Found(f)).is_empty());
    }

    #[test]
    fn encryption_modes() {
        let kms = Encryption::SseKms {
            kms_key_id: "k-1".into(),
        };
        let mut i = issued();
        i.encryption = kms;
        let mut f = found();
        f.sse = Some("aws:kms".into());
        f.sse_kms_key_id = Some("arn:aws:kms:eu-west-1:1:key/k-1".into());
        assert!(compare(&i, &Observed::Found(f.clone())).is_empty());
        f.sse_kms_key_id = Some("arn:aws:kms:eu-west-1:1:key/k-2".into());
        assert_eq!(fields(&compare(&i, &Observed::Found(f.clone()))), ["sse"]);
        // An alias cannot be matched to the reported key: the mode is what counts.
        i.encryption = Encryption::SseKms {
            kms_key_id: "alias/uploads".into(),
        };
        assert!(compare(&i, &Observed::Found(f.clone())).is_empty());
        f.sse = Some("AES256".into());
        assert_eq!(fields(&compare(&i, &Observed::Found(f.clone()))), ["sse"]);
        f.sse = Some("aws:kms".into());
        i.encryption = Encryption::SseS3;
        assert_eq!(
            compare(&i, &Observed::Found(f.clone()))[0].actual,
            "aws:kms"
        );
        f.sse = Some("AES256".into());
        assert!(compare(&i, &Observed::Found(f.clone())).is_empty());
        // No mode asked: whatever the bucket default did is fine.
        i.encryption = Encryption::None;
        assert!(compare(&i, &Observed::Found(f)).is_empty());
    }

    proptest! {
        /// A size is a mismatch exactly when it is outside the issued range, and the range is
        /// named in the mismatch.
        #[test]
        fn sizes_outside_the_range_and_only_those_mismatch(
            min in 0u64..1000, span in proptest::option::of(0u64..1000), size in 0u64..3000,
        ) {
            let mut i = issued();
            i.min_length = min;
            i.max_length = span.map(|s| min + s);
            let mut f = found();
            f.size = size;
            let outside = size < min || i.max_length.is_some_and(|max| size > max);
            let got = compare(&i, &Observed::Found(f));
            let named = got.iter().find(|m| m.field == "content_length");
            prop_assert_eq!(named.is_some(), outside);
            if let Some(m) = named {
                prop_assert_eq!(&m.actual, &size.to_string());
                prop_assert!(m.expected.contains(&min.to_string()));
            }
        }

        /// Verification is a function of what was issued and what is there: the object as
        /// issued always verifies, whatever the metadata.
        #[test]
        fn the_object_as_issued_always_verifies(
            size in 0u64..1_000_000,
            content_type in proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
            metadata in proptest::collection::btree_map("[a-z0-9-]{1,10}", "[ -~]{0,20}", 0..4),
        ) {
            let i = Issued {
                min_length: size,
                max_length: Some(size),
                content_type: content_type.clone(),
                checksum_sha256: None,
                encryption: Encryption::None,
                metadata: metadata.clone(),
            };
            let f = Found { size, content_type, checksum_sha256: None, sse: None, sse_kms_key_id: None, metadata, etag: None };
            prop_assert!(compare(&i, &Observed::Found(f)).is_empty());
        }
    }
}
