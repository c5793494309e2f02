//! Presigned POST: a SigV4-signed POST policy for browser form uploads, whose conditions S3
//! itself enforces (the key, a size range, the content type, encryption, metadata).
//!
//! The Rust SDK has no POST-policy builder (awslabs/aws-sdk-rust#863), so the policy document
//! is built here and signed with aws-sigv4's primitives: the string to sign is the base64
//! policy, the key the usual SigV4 signing key for `s3` (AWS, "Browser-based uploads using
//! POST (AWS Signature Version 4)"). [`build`] is pure; [`Signer::presign_post`] adds the
//! credentials and the bucket's URL.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{RECORD_ID_PARAM, SignError, Signer};
use crate::policy::{Encryption, Target};

/// The form field carrying the SigV4 signature.
pub const SIGNATURE_FIELD: &str = "x-amz-signature";
/// S3 replaces this in a POST's `key` field with the uploaded file's name.
pub const FILENAME_VARIABLE: &str = "${filename}";

/// How the policy pins the object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKey<'a> {
    /// Exactly this full key.
    Exact(&'a str),
    /// Any key starting with this full-key prefix (the browser completes it).
    StartsWith(&'a str),
}

/// A POST upload to sign, already authorized and validated.
#[derive(Debug, Clone)]
pub struct PostRequest<'a> {
    pub target: &'a Target,
    pub key: PostKey<'a>,
    pub expires_in: Duration,
    pub now: SystemTime,
    pub encryption: &'a Encryption,
    pub content_type: Option<&'a str>,
    pub content_length_range: RangeInclusive<u64>,
    pub metadata: &'a BTreeMap<String, String>,
    /// The audit record's id, pinned as the form field `x-presignd-id`.
    pub record_id: &'a str,
}

#[derive(Clone)]
pub struct PresignedPost {
    /// Where the form is posted: the bucket's endpoint.
    pub url: String,
    /// Every form field to send before the file (`file` must come last).
    pub fields: BTreeMap<String, String>,
    pub expires_at: OffsetDateTime,
    /// The `x-amz-signature` value (for the audit digest; never logged or stored).
    pub signature: String,
    /// True when the policy was shortened to the signing credentials' lifetime.
    pub clamped: bool,
}

/// The fields and signature are bearer credentials: never in a debug print.
impl std::fmt::Debug for PresignedPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedPost")
            .field("expires_at", &self.expires_at)
            .field("clamped", &self.clamped)
            .finish_non_exhaustive()
    }
}

/// The pure input of a POST policy.
#[derive(Debug, Clone)]
pub struct PolicySpec<'a> {
    pub bucket: &'a str,
    pub key: PostKey<'a>,
    /// When the policy stops being accepted (whole seconds).
    pub expiration: OffsetDateTime,
    pub content_length_range: RangeInclusive<u64>,
    /// Form fields that must be sent with exactly these values (content type, encryption,
    /// metadata, the record id).
    pub exact: Vec<(String, String)>,
}

/// Who signs: the credentials' parts and the SigV4 scope.
pub struct SigningIdentity<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    /// The signing time (`x-amz-date`, and the scope's date).
    pub now: SystemTime,
}

/// A signed policy: the form fields (including `policy` and `x-amz-signature`) and the
/// policy document they encode.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedPolicy {
    pub fields: BTreeMap<String, String>,
    pub document: Value,
    pub signature: String,
}

/// The form fields pinned by exact-match conditions for an upload request: `Content-Type`,
/// the SSE fields, `x-amz-meta-*` and `x-presignd-id`. SSE-C cannot go in a form (the browser
/// would have to post the customer key as a field); callers refuse it before this point.
pub fn exact_fields(
    content_type: Option<&str>,
    encryption: &Encryption,
    metadata: &BTreeMap<String, String>,
    record_id: &str,
) -> Result<Vec<(String, String)>, SignError> {
    let mut fields = Vec::new();
    if let Some(ct) = content_type {
        fields.push(("Content-Type".to_string(), ct.to_string()));
    }
    match encryption {
        Encryption::None => {}
        Encryption::SseS3 => {
            fields.push(("x-amz-server-side-encryption".into(), "AES256".into()));
        }
        Encryption::SseKms { kms_key_id } => {
            fields.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
            fields.push((
                "x-amz-server-side-encryption-aws-kms-key-id".into(),
                kms_key_id.clone(),
            ));
        }
        Encryption::SseC => {
            return Err(SignError::Presign(
                "SSE-C cannot be used with a presigned POST".into(),
            ));
        }
    }
    for (name, value) in metadata {
        fields.push((format!("x-amz-meta-{name}"), value.clone()));
    }
    fields.push((RECORD_ID_PARAM.to_string(), record_id.to_string()));
    Ok(fields)
}

/// Builds and signs the POST policy. Every field returned, except `policy` and
/// `x-amz-signature` themselves, is pinned by a condition, so S3 refuses a form that changes
/// or adds one (only `file` and `x-ignore-*` fields may be added).
pub fn build(spec: &PolicySpec<'_>, who: &SigningIdentity<'_>) -> Result<SignedPolicy, SignError> {
    let now = OffsetDateTime::from(who.now);
    let amz_date = now
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| SignError::Presign(e.to_string()))?;
    let date = amz_date.get(..8).unwrap_or_default();
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        who.access_key_id, who.region
    );
    let expiration = spec
        .expiration
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].000Z"
        ))
        .map_err(|e| SignError::Presign(e.to_string()))?;

    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut conditions: Vec<Value> = vec![json!({ "bucket": spec.bucket })];
    match spec.key {
        PostKey::Exact(key) => {
            conditions.push(json!(["eq", "$key", key]));
            fields.insert("key".into(), key.into());
        }
        PostKey::StartsWith(prefix) => {
            conditions.push(json!(["starts-with", "$key", prefix]));
            // A plain HTML form stores the file under its own name; a script may replace
            // the field with any key that starts with the prefix.
            fields.insert("key".into(), format!("{prefix}{FILENAME_VARIABLE}"));
        }
    }
    conditions.push(json!([
        "content-length-range",
        spec.content_length_range.start(),
        spec.content_length_range.end()
    ]));
    let mut exact = spec.exact.clone();
    exact.push(("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()));
    exact.push(("x-amz-credential".into(), credential));
    exact.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = who.session_token {
        exact.push(("x-amz-security-token".into(), token.into()));
    }
    for (name, value) in exact {
        conditions.push(json!({ name.as_str(): value }));
        fields.insert(name, value);
    }
    let document = json!({ "expiration": expiration, "conditions": conditions });
    let policy = B64.encode(document.to_string());
    let signing_key =
        aws_sigv4::sign::v4::generate_signing_key(who.secret_access_key, who.now, who.region, "s3");
    let signature = aws_sigv4::sign::v4::calculate_signature(signing_key, policy.as_bytes());
    fields.insert("policy".into(), policy);
    fields.insert(SIGNATURE_FIELD.into(), signature.clone());
    Ok(SignedPolicy {
        fields,
        document,
        signature,
    })
}

impl Signer {
    /// Signs a POST policy with the URL signer's credentials, for the bucket's endpoint.
    pub async fn presign_post(&self, req: &PostRequest<'_>) -> Result<PresignedPost, SignError> {
        let Target::Bucket(bucket) = req.target else {
            return Err(SignError::Presign(
                "presigned POST is signed for bucket targets only".into(),
            ));
        };
        let creds = self.credentials.current().await?;
        let (expires_in, clamped) = super::clamp(creds.expiry(), req.now, req.expires_in)?;
        let url = self.bucket_url(bucket, req.now).await?;
        if !url.starts_with("https://") && !self.allow_insecure {
            return Err(SignError::InsecureUrl);
        }
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| SignError::Presign("no region configured".into()))?;
        let expires_at = OffsetDateTime::from(req.now) + expires_in;
        let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
        let spec = PolicySpec {
            bucket,
            key: req.key,
            expiration: expires_at,
            content_length_range: req.content_length_range.clone(),
            exact: exact_fields(
                req.content_type,
                req.encryption,
                req.metadata,
                req.record_id,
            )?,
        };
        let signed = build(
            &spec,
            &SigningIdentity {
                access_key_id: creds.access_key_id(),
                secret_access_key: creds.secret_access_key(),
                session_token: creds.session_token(),
                region: &region,
                now: req.now,
            },
        )?;
        Ok(PresignedPost {
            url,
            fields: signed.fields,
            expires_at,
            signature: signed.signature,
            clamped,
        })
    }

    /// The bucket's URL as the SDK resolves it (virtual-hosted or path-style, custom
    /// endpoints, names that need path-style), read off a presigned PUT of a one-character
    /// key: the URL without that key and the query. (The SDK exposes no endpoint resolution
    /// for a bucket alone, and bucket-level operations are not presignable.)
    async fn bucket_url(&self, bucket: &str, now: SystemTime) -> Result<String, SignError> {
        let pc = PresigningConfig::builder()
            .start_time(now)
            .expires_in(Duration::from_secs(1))
            .build()
            .map_err(|e| SignError::Presign(e.to_string()))?;
        let put = self
            .client
            .put_object()
            .bucket(bucket)
            .key("k")
            .presigned(pc)
            .await
            .map_err(|e| {
                SignError::Presign(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
            })?;
        let uri = put.uri();
        let base = uri
            .split_once('?')
            .map_or(uri, |(u, _)| u)
            .strip_suffix("/k")
            .ok_or_else(|| SignError::Presign("unexpected object URL shape".into()))?;
        // `https://bucket.host` needs its root path; `http://endpoint/bucket` is complete.
        let has_path = base
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        Ok(if has_path {
            base.to_string()
        } else {
            format!("{base}/")
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::config::S3Config;
    use crate::sign::CachedCredentials;

    /// HMAC-SHA256 written out from RFC 2104, independent of the signing code's HMAC.
    fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    /// What S3 computes: the SigV4 signing key chain over the scope in `x-amz-credential`,
    /// applied to the `policy` field as sent.
    fn expected_signature(secret: &str, fields: &BTreeMap<String, String>) -> String {
        let credential = &fields["x-amz-credential"];
        let scope: Vec<&str> = credential.split('/').collect();
        assert_eq!(scope.len(), 5, "{credential}");
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), scope[1].as_bytes());
        let k_region = hmac(&k_date, scope[2].as_bytes());
        let k_service = hmac(&k_region, scope[3].as_bytes());
        let k_signing = hmac(&k_service, scope[4].as_bytes());
        hex::encode(hmac(&k_signing, fields["policy"].as_bytes()))
    }

    fn at(unix: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("positive"))
    }

    fn identity(now: SystemTime, token: Option<&'static str>) -> SigningIdentity<'static> {
        SigningIdentity {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: token,
            region: "eu-west-1",
            now,
        }
    }

    #[test]
    fn policy_pins_every_field_and_verifies() {
        // 2026-01-01T12:00:00Z
        let now = at(1_767_268_800);
        let metadata = BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]);
        let kms = Encryption::SseKms {
            kms_key_id: "alias/uploads".into(),
        };
        let spec = PolicySpec {
            bucket: "media",
            key: PostKey::Exact("avatars/alice/a.png"),
            expiration: OffsetDateTime::from(now) + Duration::from_secs(600),
            content_length_range: 1..=5_242_880,
            exact: exact_fields(Some("image/png"), &kms, &metadata, "rec-1").expect("fields"),
        };
        let signed = build(&spec, &identity(now, Some("FwoGZXIvYXdzEXAMPLE"))).expect("build");
        let f = &signed.fields;
        assert_eq!(f["key"], "avatars/alice/a.png");
        assert_eq!(f["Content-Type"], "image/png");
        assert_eq!(f["x-amz-server-side-encryption"], "aws:kms");
        assert_eq!(
            f["x-amz-server-side-encryption-aws-kms-key-id"],
            "alias/uploads"
        );
        assert_eq!(f["x-amz-meta-cse-alg"], "AES-GCM");
        assert_eq!(f["x-presignd-id"], "rec-1");
        assert_eq!(f["x-amz-algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(
            f["x-amz-credential"],
            "AKIDEXAMPLE/20260101/eu-west-1/s3/aws4_request"
        );
        assert_eq!(f["x-amz-date"], "20260101T120000Z");
        assert_eq!(f["x-amz-security-token"], "FwoGZXIvYXdzEXAMPLE");

        let decoded: Value =
            serde_json::from_slice(&B64.decode(&f["policy"]).expect("base64")).expect("json");
        assert_eq!(decoded, signed.document);
        assert_eq!(decoded["expiration"], "2026-01-01T12:10:00.000Z");
        let conditions = decoded["conditions"].as_array().expect("conditions");
        assert!(conditions.contains(&json!({"bucket": "media"})));
        assert!(conditions.contains(&json!(["eq", "$key", "avatars/alice/a.png"])));
        assert!(conditions.contains(&json!(["content-length-range", 1, 5_242_880])));
        assert!(conditions.contains(&json!({"Content-Type": "image/png"})));
        assert_eq!(
            f[SIGNATURE_FIELD],
            expected_signature(identity(now, None).secret_access_key, f)
        );
        assert_eq!(f[SIGNATURE_FIELD], signed.signature);
    }

    #[test]
    fn starts_with_keys_and_sse_c() {
        let now = at(1_767_268_800);
        let spec = PolicySpec {
            bucket: "media",
            key: PostKey::StartsWith("avatars/alice/"),
            expiration: OffsetDateTime::from(now) + Duration::from_secs(60),
            content_length_range: 0..=10,
            exact: vec![],
        };
        let signed = build(&spec, &identity(now, None)).expect("build");
        assert_eq!(signed.fields["key"], "avatars/alice/${filename}");
        let conditions = signed.document["conditions"].as_array().expect("array");
        assert!(conditions.contains(&json!(["starts-with", "$key", "avatars/alice/"])));
        assert!(!signed.fields.contains_key("x-amz-security-token"));
        assert!(
            exact_fields(None, &Encryption::SseC, &BTreeMap::new(), "r").is_err(),
            "SSE-C is refused"
        );
    }

    #[test]
    fn lifetime_is_clamped_to_the_credentials() {
        let now = at(1_767_268_800);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            super::super::clamp(None, now, hour).expect("ok"),
            (hour, false)
        );
        assert_eq!(
            super::super::clamp(Some(now + Duration::from_secs(900)), now, hour).expect("ok"),
            (Duration::from_secs(900), true)
        );
        assert_eq!(
            super::super::clamp(Some(now + hour * 2), now, hour).expect("ok"),
            (hour, false)
        );
        assert!(matches!(
            super::super::clamp(Some(now), now, hour),
            Err(SignError::CredentialsExpiring)
        ));
    }

    // Field by field, so fields added to S3Config later keep their defaults here.
    #[allow(clippy::field_reassign_with_default)]
    fn config(endpoint: Option<&str>, path_style: bool) -> S3Config {
        let mut c = S3Config::default();
        c.region = "us-east-1".into();
        c.access_key_id = Some("AKIDEXAMPLE".into());
        c.secret_access_key = Some("secret".to_string().into());
        c.endpoint = endpoint.map(str::to_string);
        c.force_path_style = path_style;
        c.allow_insecure_endpoint = true;
        c
    }

    #[tokio::test]
    async fn posts_go_to_the_bucket_endpoint() {
        let none = BTreeMap::new();
        let cases = [
            (
                config(None, false),
                "https://media.s3.us-east-1.amazonaws.com/",
            ),
            (
                config(None, true),
                "https://s3.us-east-1.amazonaws.com/media",
            ),
            (
                config(Some("http://127.0.0.1:9000"), true),
                "http://127.0.0.1:9000/media",
            ),
            (
                config(Some("https://minio.example"), false),
                "https://media.minio.example/",
            ),
        ];
        let target: Target = "media".parse().expect("target");
        for (cfg, want) in cases {
            let req = PostRequest {
                target: &target,
                key: PostKey::Exact("a/b.png"),
                expires_in: Duration::from_secs(300),
                now: SystemTime::now(),
                encryption: &Encryption::SseS3,
                content_type: None,
                content_length_range: 0..=1,
                metadata: &none,
                record_id: "r",
            };
            let p = Signer::new(&cfg)
                .await
                .presign_post(&req)
                .await
                .expect("post");
            assert_eq!(p.url, want);
            assert_eq!(p.fields["x-amz-server-side-encryption"], "AES256");
            assert_eq!(p.fields[SIGNATURE_FIELD], p.signature);
            assert_eq!(p.signature, expected_signature("secret", &p.fields));
        }
        let arn: Target = "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads"
            .parse()
            .expect("arn");
        let req = PostRequest {
            target: &arn,
            key: PostKey::Exact("a"),
            expires_in: Duration::from_secs(300),
            now: SystemTime::now(),
            encryption: &Encryption::None,
            content_type: None,
            content_length_range: 0..=1,
            metadata: &none,
            record_id: "r",
        };
        assert!(
            Signer::new(&config(None, false))
                .await
                .presign_post(&req)
                .await
                .is_err()
        );
        let mut insecure = config(Some("http://127.0.0.1:9000"), true);
        insecure.allow_insecure_endpoint = false;
        let req = PostRequest {
            target: &target,
            ..req
        };
        assert!(matches!(
            Signer::new(&insecure).await.presign_post(&req).await,
            Err(SignError::InsecureUrl)
        ));
    }

    #[tokio::test]
    async fn session_credentials_are_clamped_and_carry_their_token() {
        let now = SystemTime::now();
        let creds = Credentials::new(
            "ASIAEXAMPLE",
            "SK",
            Some("session-token".into()),
            Some(now + Duration::from_secs(900)),
            "test",
        );
        let signer = Signer::with_credentials(
            &config(None, false),
            CachedCredentials::new(SharedCredentialsProvider::new(creds)),
        );
        let target: Target = "media".parse().expect("target");
        let none = BTreeMap::new();
        let p = signer
            .presign_post(&PostRequest {
                target: &target,
                key: PostKey::Exact("k"),
                expires_in: Duration::from_secs(3600),
                now,
                encryption: &Encryption::None,
                content_type: None,
                content_length_range: 0..=1,
                metadata: &none,
                record_id: "r",
            })
            .await
            .expect("post");
        assert!(p.clamped);
        assert!(p.expires_at - OffsetDateTime::from(now) <= time::Duration::seconds(900));
        assert_eq!(p.fields["x-amz-security-token"], "session-token");
        assert_eq!(p.signature, expected_signature("SK", &p.fields));
    }

    proptest! {
        /// For any request: the policy is valid base64 JSON; its conditions are exactly the
        /// bucket, the key, the range and one exact match per field sent (so S3 refuses any
        /// other field); and the signature is the independent HMAC chain's.
        #[test]
        fn conditions_are_exactly_the_fields(
            key in "[a-zA-Z0-9/ ._\"\\\\éü-]{1,40}",
            starts_with in any::<bool>(),
            content_type in proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
            metadata in proptest::collection::btree_map("[a-z0-9-]{1,10}", "[ -~]{0,20}", 0..4),
            min in 0u64..2,
            max in 1u64..=5_368_709_120,
            sse in 0usize..3,
            token in proptest::option::of("[A-Za-z0-9+/=]{1,40}"),
            secs in 1_600_000_000i64..2_000_000_000,
            lifetime in 1u64..604_800,
        ) {
            let encryption = match sse {
                0 => Encryption::None,
                1 => Encryption::SseS3,
                _ => Encryption::SseKms { kms_key_id: "arn:aws:kms:eu-west-1:1:key/x".into() },
            };
            let now = at(secs);
            let spec = PolicySpec {
                bucket: "media-bucket",
                key: if starts_with { PostKey::StartsWith(&key) } else { PostKey::Exact(&key) },
                expiration: OffsetDateTime::from(now) + Duration::from_secs(lifetime),
                content_length_range: min..=max,
                exact: exact_fields(content_type.as_deref(), &encryption, &metadata, "rec")
                    .expect("fields"),
            };
            let mut who = identity(now, None);
            who.session_token = token.as_deref();
            let signed = build(&spec, &who).expect("build");
            let bytes = B64.decode(&signed.fields["policy"]).expect("base64");
            let doc: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            prop_assert_eq!(&doc, &signed.document);

            let mut expected: BTreeSet<String> = BTreeSet::new();
            expected.insert(json!({"bucket": "media-bucket"}).to_string());
            expected.insert(if starts_with {
                json!(["starts-with", "$key", key]).to_string()
            } else {
                json!(["eq", "$key", key]).to_string()
            });
            expected.insert(json!(["content-length-range", min, max]).to_string());
            for (name, value) in &signed.fields {
                if !matches!(name.as_str(), "key" | "policy" | SIGNATURE_FIELD) {
                    expected.insert(json!({ name.as_str(): value }).to_string());
                }
            }
            let conditions = doc["conditions"].as_array().expect("conditions");
            let actual: BTreeSet<String> = conditions.iter().map(Value::to_string).collect();
            prop_assert_eq!(actual.len(), conditions.len(), "no duplicate conditions");
            prop_assert_eq!(actual, expected);
            if let Some(ct) = &content_type {
                prop_assert_eq!(&signed.fields["Content-Type"], ct);
            }
            for (name, value) in &metadata {
                prop_assert_eq!(&signed.fields[&format!("x-amz-meta-{name}")], value);
            }
            prop_assert_eq!(
                &signed.fields[SIGNATURE_FIELD],
                &expected_signature(who.secret_access_key, &signed.fields)
            );
            let expiration = doc["expiration"].as_str().expect("expiration");
            let parsed = OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
                .expect("ISO 8601 expiration");
            prop_assert_eq!(parsed, OffsetDateTime::from(now) + Duration::from_secs(lifetime));
        }
    }
}
