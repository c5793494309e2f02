//! The access point spec: the admin API's JSON and `presignd apply -f`'s YAML/TOML shape.
//!
//! Every struct denies unknown fields so that a typo (`require_mfa` spelled `requires_mfa`)
//! is an error instead of a silently weaker policy.

use std::fmt;
use std::str::FromStr;

use super::quota::UploadQuota;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::delivery::Delivery;
use super::limits::AccessPointLimits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPointSpec {
    pub name: String,
    /// A bucket name, an S3 access point ARN or an S3 Object Lambda access point ARN.
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_expires_in")]
    pub default_expires_in: u32,
    #[serde(default = "max_expires_in")]
    pub max_expires_in: u32,
    #[serde(default)]
    pub encryption: Encryption,
    #[serde(default)]
    pub upload: UploadConstraints,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub network: NetworkRestriction,
    /// This access point's own rate limits, overriding `[limits]` (see `policy::limits`).
    #[serde(default, skip_serializing_if = "AccessPointLimits::is_empty")]
    pub limits: AccessPointLimits,
    /// Where GETs are served from: S3 (absent) or a CloudFront distribution.
    #[serde(default, skip_serializing_if = "Delivery::is_s3")]
    pub delivery: Delivery,
    /// Download grants (revocable N-use links) through this access point, and their bounds;
    /// absent: none may be created (a link outliving `max_expires_in` is an explicit choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<GrantLimits>,
    pub rules: Vec<Rule>,
}

/// What a download grant through an access point may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantLimits {
    /// The most uses a grant may have (1 to 1000000).
    #[serde(default = "one")]
    pub max_uses: u32,
    /// The longest a grant may live, in seconds (1 to 31536000, a year).
    #[serde(default = "one_day")]
    pub max_expires_in: u64,
}

fn one() -> u32 {
    1
}

fn one_day() -> u64 {
    86_400
}

fn default_expires_in() -> u32 {
    300
}

fn max_expires_in() -> u32 {
    3600
}

/// Server-side encryption applied to every PUT URL the access point issues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "mode",
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "RawEncryption"
)]
pub enum Encryption {
    #[default]
    None,
    SseS3,
    SseKms {
        kms_key_id: String,
    },
    SseC,
}

impl Encryption {
    /// `none`, `sse-s3`, `sse-kms` or `sse-c`.
    pub fn mode(&self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::SseS3 => "sse-s3",
            Encryption::SseKms { .. } => "sse-kms",
            Encryption::SseC => "sse-c",
        }
    }
}

/// The wire shape of `encryption`, checked strictly: serde's internally tagged unit variants
/// would silently ignore a stray `kms_key_id` on `mode: none`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    mode: String,
    kms_key_id: Option<String>,
}

impl TryFrom<RawEncryption> for Encryption {
    type Error = String;

    fn try_from(raw: RawEncryption) -> Result<Self, String> {
        match (raw.mode.as_str(), raw.kms_key_id) {
            ("none", None) => Ok(Encryption::None),
            ("sse-s3", None) => Ok(Encryption::SseS3),
            ("sse-c", None) => Ok(Encryption::SseC),
            ("sse-kms", Some(kms_key_id)) => Ok(Encryption::SseKms { kms_key_id }),
            ("sse-kms", None) => Err("mode sse-kms requires kms_key_id".into()),
            ("none" | "sse-s3" | "sse-c", Some(_)) => Err(format!(
                "kms_key_id applies to mode sse-kms only, not {}",
                raw.mode
            )),
            (other, _) => Err(format!(
                "unknown encryption mode {other:?}: expected none, sse-s3, sse-kms or sse-c"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConstraints {
    /// When set, every PUT must declare (and sign) its length, at most this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_content_length: Option<u64>,
    /// Allowed media types: `image/png`, `image/*`, `*/*`. Empty: any.
    pub content_types: Vec<String>,
    /// Every PUT must carry a signed `x-amz-checksum-sha256`.
    pub require_checksum: bool,
    /// Metadata names (without `x-amz-meta-`) every PUT must carry, e.g. client-side
    /// encryption markers.
    pub required_metadata: Vec<String>,
    /// `false`: create-only. `If-None-Match: *` is signed into every PUT URL and sent with
    /// every multipart completion, so S3 refuses to replace an existing object.
    #[serde(skip_serializing_if = "is_true")]
    pub overwrite: bool,
    /// What verification does with an uploaded object that is not what was issued.
    #[serde(skip_serializing_if = "OnMismatch::is_keep")]
    pub on_mismatch: OnMismatch,
    /// `on_mismatch: quarantine` only: the full key prefix, in the same bucket and outside the
    /// access point's prefix, that rejected objects are moved under (their key appended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_prefix: Option<String>,
    /// How much each subject may upload here (PUT, POST and multipart issuances reserve
    /// their largest size; verification turns that into the object's size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<UploadQuota>,
}

/// `upload.on_mismatch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMismatch {
    /// Leave the object; the verification says `rejected`.
    #[default]
    Keep,
    Delete,
    /// Copy under `upload.quarantine_prefix`, then delete.
    Quarantine,
}

impl OnMismatch {
    fn is_keep(&self) -> bool {
        *self == OnMismatch::Keep
    }
}

impl Default for UploadConstraints {
    fn default() -> Self {
        UploadConstraints {
            max_content_length: None,
            content_types: Vec::new(),
            require_checksum: false,
            required_metadata: Vec::new(),
            overwrite: true,
            on_mismatch: OnMismatch::Keep,
            quarantine_prefix: None,
            quota: None,
        }
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkRestriction {
    /// Caller addresses allowed to use the access point. Empty: any.
    pub allowed_cidrs: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub effect: Effect,
    /// Group names; `"*"` means any authenticated principal.
    pub groups: Vec<String>,
    /// Token issuers the rule applies to; empty: any configured issuer. With several issuers,
    /// pin them: the same `sub` or group name from two identity providers is not the same
    /// person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    pub operations: Vec<OperationPattern>,
    /// Glob patterns relative to the access point's prefix.
    #[serde(default = "any_key")]
    pub keys: Vec<String>,
    /// On an allow rule: grants only to MFA-bearing tokens. On a deny rule: denies only
    /// tokens without MFA ("deny unless MFA").
    #[serde(default)]
    pub require_mfa: bool,
}

fn any_key() -> Vec<String> {
    vec!["*".to_string()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Get,
    Put,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 3] = [Operation::Get, Operation::Put, Operation::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::Delete => "delete",
        }
    }

    pub fn http_method(self) -> &'static str {
        match self {
            Operation::Get => "GET",
            Operation::Put => "PUT",
            Operation::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation {0:?}: expected get, put, delete (or * in a rule)")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Operation, UnknownOperation> {
        match s {
            "get" => Ok(Operation::Get),
            "put" => Ok(Operation::Put),
            "delete" => Ok(Operation::Delete),
            other => Err(UnknownOperation(other.to_string())),
        }
    }
}

/// An entry of a rule's `operations`: `"*"` or one operation, written as the plain string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationPattern {
    Any,
    Op(Operation),
}

impl OperationPattern {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationPattern::Any => "*",
            OperationPattern::Op(op) => op.as_str(),
        }
    }

    pub fn matches(self, op: Operation) -> bool {
        match self {
            OperationPattern::Any => true,
            OperationPattern::Op(o) => o == op,
        }
    }
}

impl fmt::Display for OperationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationPattern {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<OperationPattern, UnknownOperation> {
        if s == "*" {
            Ok(OperationPattern::Any)
        } else {
            s.parse().map(OperationPattern::Op)
        }
    }
}

impl Serialize for OperationPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OperationPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A spec for unit tests: the documented defaults around a name, target, prefix and rules.
#[cfg(test)]
impl AccessPointSpec {
    pub(crate) fn for_tests(name: &str, bucket: &str, prefix: &str, rules: Vec<Rule>) -> Self {
        AccessPointSpec {
            name: name.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            default_expires_in: 300,
            max_expires_in: 3600,
            encryption: Default::default(),
            upload: Default::default(),
            cors_origins: vec![],
            network: Default::default(),
            limits: Default::default(),
            delivery: Default::default(),
            grants: None,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example access point of docs/configuration.md (`avatars`), verbatim.
    pub(crate) const EXAMPLE_YAML: &str = r#"
access_points:
  - name: avatars
    bucket: acme-user-content            # or an access point / Object Lambda access point ARN
    prefix: avatars/
    default_expires_in: 300
    max_expires_in: 3600
    encryption: { mode: sse-s3 }         # none | sse-s3 | sse-kms (+ kms_key_id) | sse-c
    upload: { max_content_length: 5242880, content_types: ["image/*"] }
    cors_origins: ["https://app.example.com"]
    network: { allowed_cidrs: [] }       # empty: any network
    rules:
      - { effect: allow, groups: ["users"], operations: ["put", "get"], keys: ["${jwt:sub}/*"] }
      - { effect: allow, groups: ["moderators"], operations: ["get"], keys: ["*"] }
      - { effect: allow, groups: ["moderators"], operations: ["delete"], keys: ["*"], require_mfa: true }
      - { effect: deny, groups: ["suspended"], operations: ["*"] }
"#;

    #[derive(Deserialize)]
    struct File {
        access_points: Vec<AccessPointSpec>,
    }

    fn design_example() -> AccessPointSpec {
        let mut file: File = serde_yaml_ng::from_str(EXAMPLE_YAML).expect("yaml parses");
        assert_eq!(file.access_points.len(), 1);
        file.access_points.remove(0)
    }

    #[test]
    fn design_example_yaml_parses_with_defaults() {
        let ap = design_example();
        assert_eq!(ap.name, "avatars");
        assert_eq!(ap.bucket, "acme-user-content");
        assert_eq!(ap.prefix, "avatars/");
        assert_eq!(ap.encryption, Encryption::SseS3);
        assert_eq!(ap.upload.max_content_length, Some(5_242_880));
        assert_eq!(ap.upload.content_types, vec!["image/*"]);
        assert!(!ap.upload.require_checksum);
        assert!(ap.network.allowed_cidrs.is_empty());
        assert_eq!(ap.rules.len(), 4);
        assert_eq!(
            ap.rules[0].operations,
            vec![
                OperationPattern::Op(Operation::Put),
                OperationPattern::Op(Operation::Get)
            ]
        );
        assert!(ap.rules[2].require_mfa);
        assert_eq!(ap.rules[3].effect, Effect::Deny);
        assert_eq!(ap.rules[3].operations, vec![OperationPattern::Any]);
        // keys default to "*"
        assert_eq!(ap.rules[3].keys, vec!["*"]);
        assert_eq!(ap.validate(), Ok(()));
    }

    #[test]
    fn toml_apply_file_parses() {
        let file: File = toml::from_str(
            r#"
[[access_points]]
name = "reports"
bucket = "arn:aws:s3:us-east-1:123456789012:accesspoint/reports"
encryption = { mode = "sse-kms", kms_key_id = "alias/reports" }

[[access_points.rules]]
effect = "allow"
groups = ["finance"]
operations = ["get"]
"#,
        )
        .expect("toml parses");
        let ap = &file.access_points[0];
        assert_eq!(
            ap.encryption,
            Encryption::SseKms {
                kms_key_id: "alias/reports".into()
            }
        );
        assert_eq!(ap.rules[0].keys, vec!["*"]);
        assert_eq!(ap.validate(), Ok(()));
    }

    #[test]
    fn json_round_trip_is_lossless() {
        let mut ap = design_example();
        ap.encryption = Encryption::SseKms {
            kms_key_id: "arn:aws:kms:us-east-1:123456789012:key/abc".into(),
        };
        ap.upload.required_metadata = vec!["cse-alg".into()];
        ap.network.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
        let json = serde_json::to_string(&ap).expect("serialize");
        let back: AccessPointSpec = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, ap);
        let yaml = serde_yaml_ng::to_string(&ap).expect("serialize yaml");
        let back: AccessPointSpec = serde_yaml_ng::from_str(&yaml).expect("deserialize yaml");
        assert_eq!(back, ap);
    }

    #[test]
    fn json_shape_uses_plain_strings_and_kebab_case() {
        let v = serde_json::to_value(design_example()).expect("serialize");
        assert_eq!(v["encryption"], serde_json::json!({"mode": "sse-s3"}));
        assert_eq!(
            v["rules"][0]["operations"],
            serde_json::json!(["put", "get"])
        );
        assert_eq!(v["rules"][3]["operations"], serde_json::json!(["*"]));
        assert_eq!(v["rules"][3]["effect"], "deny");
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let ap: AccessPointSpec = serde_json::from_str(
            r#"{"name":"a1","bucket":"bkt","rules":[{"effect":"allow","groups":["*"],"operations":["get"]}]}"#,
        )
        .expect("parses");
        assert_eq!(ap.prefix, "");
        assert_eq!(ap.default_expires_in, 300);
        assert_eq!(ap.max_expires_in, 3600);
        assert_eq!(ap.encryption, Encryption::None);
        assert_eq!(ap.upload, UploadConstraints::default());
        assert_eq!(ap.rules[0].keys, vec!["*"]);
        assert!(!ap.rules[0].require_mfa);
    }

    #[test]
    fn encryption_modes_parse() {
        let cases = [
            (r#"{"mode":"none"}"#, Encryption::None),
            (r#"{"mode":"sse-s3"}"#, Encryption::SseS3),
            (r#"{"mode":"sse-c"}"#, Encryption::SseC),
            (
                r#"{"mode":"sse-kms","kms_key_id":"k1"}"#,
                Encryption::SseKms {
                    kms_key_id: "k1".into(),
                },
            ),
        ];
        for (json, want) in cases {
            let got: Encryption = serde_json::from_str(json).expect(json);
            assert_eq!(got, want, "{json}");
        }
        for bad in [
            r#"{"mode":"aes"}"#,
            r#"{"mode":"sse-kms"}"#,
            r#"{"mode":"sse-kms","kms_key_id":"k","extra":1}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<Encryption>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        let base = r#"{"name":"a1","bucket":"bkt","rules":[{"effect":"allow","groups":["*"],"operations":["get"]}]"#;
        for extra in [
            r#","bogus":1}"#,
            r#","upload":{"max_size":1}}"#,
            r#","network":{"cidrs":[]}}"#,
        ] {
            let json = format!("{base}{extra}");
            assert!(
                serde_json::from_str::<AccessPointSpec>(&json).is_err(),
                "{json}"
            );
        }
        let rule = r#"{"effect":"allow","groups":["*"],"operations":["get"],"requires_mfa":true}"#;
        assert!(serde_json::from_str::<Rule>(rule).is_err());
    }

    #[test]
    fn operations_parse_display_and_reject_unknown() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!(Operation::Delete.http_method(), "DELETE");
        assert_eq!(Operation::Get.http_method(), "GET");
        assert_eq!(Operation::Put.http_method(), "PUT");
        assert!("GET".parse::<Operation>().is_err());
        assert!(serde_json::from_str::<OperationPattern>(r#""list""#).is_err());
        assert!(serde_json::from_str::<Operation>(r#""*""#).is_err());
        assert_eq!(
            serde_json::from_str::<OperationPattern>(r#""*""#).expect("star"),
            OperationPattern::Any
        );
    }
}
