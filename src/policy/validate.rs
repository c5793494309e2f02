//! `AccessPointSpec::validate`: every problem at once, each naming its field.

use super::errors::{FieldError, SpecErrors};
use super::glob::KeyPattern;
use super::key::check_path;
use super::request::{MAX_EXPIRES_IN, MAX_OBJECT_SIZE, is_metadata_name, is_token};
use super::target::{Target, is_dns_label};
use super::{AccessPointSpec, Effect, Encryption, OnMismatch, Operation, OperationPattern};

/// Prefixes leave room under S3's 1024-byte key limit for the key itself.
pub const MAX_PREFIX_BYTES: usize = 1000;

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl AccessPointSpec {
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let mut e = Errors::default();
        if !(1..=63).contains(&self.name.len()) || !is_dns_label(&self.name) {
            e.add(
                "name",
                "must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
            );
        }
        let target = match self.bucket.parse::<Target>() {
            Ok(t) => Some(t),
            Err(err) => {
                e.add("bucket", err.to_string());
                None
            }
        };
        if !self.prefix.is_empty() {
            if self.prefix.len() > MAX_PREFIX_BYTES {
                e.add(
                    "prefix",
                    format!("must be at most {MAX_PREFIX_BYTES} bytes"),
                );
            } else if let Err(err) = check_path(&self.prefix) {
                // The same rules as keys; the messages say "key", here it is the prefix.
                e.add("prefix", err.to_string().replacen("key", "prefix", 1));
            } else if !self.prefix.ends_with('/') {
                // `avatars` would let the key `-admin/x` reach `avatars-admin/x`: a prefix is
                // a folder, so it ends with `/`.
                e.add("prefix", "must end with / (it names a folder)");
            }
        }
        self.validate_expiry(&mut e);
        if let Encryption::SseKms { kms_key_id } = &self.encryption
            && (kms_key_id.is_empty()
                // It becomes a signed header value: printable ASCII, no spaces.
                || !kms_key_id.bytes().all(|b| b.is_ascii_graphic()))
        {
            e.add(
                "encryption.kms_key_id",
                "must be a non-empty KMS key id, alias or ARN without whitespace",
            );
        }
        self.validate_upload(&mut e);
        for (i, origin) in self.cors_origins.iter().enumerate() {
            if let Err(msg) = check_origin(origin) {
                e.add(format!("cors_origins[{i}]"), msg);
            }
        }
        self.validate_rules(
            target.as_ref().is_some_and(Target::is_object_lambda),
            &mut e,
        );
        e.0.extend(
            self.limits
                .validate(matches!(self.encryption, Encryption::SseKms { .. })),
        );
        if let Some(g) = &self.grants {
            if !(1..=1_000_000).contains(&g.max_uses) {
                e.add("grants.max_uses", "must be between 1 and 1000000");
            }
            if !(1..=31_536_000).contains(&g.max_expires_in) {
                e.add(
                    "grants.max_expires_in",
                    "must be between 1 and 31536000 (a year)",
                );
            }
            if matches!(self.encryption, Encryption::SseC) {
                // A browser following the redirect cannot add the customer key's headers.
                e.add(
                    "grants",
                    "a download link cannot carry an SSE-C customer key",
                );
            }
        }
        if let Some(cf) = &self.delivery.cloudfront {
            for (field, message) in cf.problems() {
                e.add(format!("delivery.cloudfront.{field}"), message);
            }
            if matches!(self.encryption, Encryption::SseC) {
                // A GET of an SSE-C object needs the customer key in headers, which a
                // CloudFront URL cannot carry to the origin.
                e.add(
                    "delivery.cloudfront",
                    "CloudFront cannot serve SSE-C objects: use sse-s3 or sse-kms, or S3 delivery",
                );
            }
        }
        if e.0.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(e.0))
        }
    }

    fn validate_expiry(&self, e: &mut Errors) {
        if self.max_expires_in > MAX_EXPIRES_IN {
            e.add(
                "max_expires_in",
                format!("must be at most {MAX_EXPIRES_IN} (7 days, SigV4's limit)"),
            );
        }
        if self.max_expires_in < 1 {
            e.add("max_expires_in", "must be at least 1");
        }
        if self.default_expires_in < 1 {
            e.add("default_expires_in", "must be at least 1");
        } else if self.default_expires_in > self.max_expires_in {
            e.add(
                "default_expires_in",
                format!("must not exceed max_expires_in ({})", self.max_expires_in),
            );
        }
    }

    fn validate_upload(&self, e: &mut Errors) {
        let upload = &self.upload;
        match upload.max_content_length {
            Some(0) => e.add("upload.max_content_length", "must be at least 1"),
            // Multipart uploads reach 5 TiB; single PUTs stay capped at 5 GiB regardless.
            Some(n) if n > MAX_OBJECT_SIZE => e.add(
                "upload.max_content_length",
                format!("must be at most {MAX_OBJECT_SIZE} (5 TiB, S3's largest object)"),
            ),
            _ => {}
        }
        for (i, ct) in upload.content_types.iter().enumerate() {
            let ok = match ct.split_once('/') {
                Some(("*", sub)) => sub == "*",
                Some((ty, "*")) => is_token(ty) && !ty.contains('*'),
                Some((ty, sub)) => {
                    is_token(ty) && is_token(sub) && !ty.contains('*') && !sub.contains('*')
                }
                None => false,
            };
            if !ok {
                e.add(
                    format!("upload.content_types[{i}]"),
                    "must be type/subtype, type/* or */* (no parameters)",
                );
            }
        }
        for (i, name) in upload.required_metadata.iter().enumerate() {
            if !is_metadata_name(name) {
                e.add(
                    format!("upload.required_metadata[{i}]"),
                    "must be a non-empty lowercase a-z, 0-9, '-' name, without x-amz-meta-",
                );
            }
        }
        if upload.on_mismatch != OnMismatch::Keep && !upload.overwrite {
            // A caller who cannot replace an object must not be able to remove one by
            // verifying an upload they never made to its key.
            e.add(
                "upload.on_mismatch",
                "delete and quarantine need overwrite: true (on a create-only access point use keep)",
            );
        }
        if let Some(q) = &upload.quota {
            if q.bytes_per_subject.is_none() && q.objects_per_subject.is_none() {
                e.add(
                    "upload.quota",
                    "set bytes_per_subject, objects_per_subject or both",
                );
            }
            if q.bytes_per_subject == Some(0) || q.objects_per_subject == Some(0) {
                e.add(
                    "upload.quota",
                    "a limit of 0 would refuse every upload; remove put from the rules instead",
                );
            }
        }
        match (upload.on_mismatch, upload.quarantine_prefix.as_deref()) {
            (OnMismatch::Quarantine, None) => e.add(
                "upload.quarantine_prefix",
                "on_mismatch: quarantine needs the prefix to move rejected objects under",
            ),
            (OnMismatch::Quarantine, Some(q)) => {
                if q.len() > MAX_PREFIX_BYTES || check_path(q).is_err() || !q.ends_with('/') {
                    e.add(
                        "upload.quarantine_prefix",
                        "must be a valid key prefix ending with /",
                    );
                } else if q.starts_with(&self.prefix) || self.prefix.starts_with(q) {
                    // Under the access point's prefix its own callers could read (or
                    // overwrite) what was rejected.
                    e.add(
                        "upload.quarantine_prefix",
                        "must lie outside the access point's prefix",
                    );
                }
            }
            (_, Some(_)) => e.add(
                "upload.quarantine_prefix",
                "applies to on_mismatch: quarantine only",
            ),
            (_, None) => {}
        }
    }

    fn validate_rules(&self, object_lambda: bool, e: &mut Errors) {
        if self.rules.is_empty() {
            e.add("rules", "must contain at least one rule");
        }
        for (r, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{r}].{field}");
            if rule.groups.is_empty() {
                e.add(
                    at("groups"),
                    "must not be empty (use \"*\" for any authenticated user)",
                );
            }
            for (i, g) in rule.groups.iter().enumerate() {
                if g.is_empty() || g.chars().any(char::is_control) {
                    e.add(
                        at(&format!("groups[{i}]")),
                        "must be a non-empty group name",
                    );
                }
            }
            for (i, iss) in rule.issuers.iter().enumerate() {
                if iss.is_empty() || iss.chars().any(char::is_control) {
                    e.add(at(&format!("issuers[{i}]")), "must be a non-empty issuer");
                }
            }
            if rule.operations.is_empty() {
                e.add(at("operations"), "must not be empty");
            }
            if rule.keys.is_empty() {
                e.add(at("keys"), "must not be empty (omit it for \"*\")");
            }
            for (i, k) in rule.keys.iter().enumerate() {
                if let Err(err) = KeyPattern::parse(k) {
                    e.add(at(&format!("keys[{i}]")), err.to_string());
                }
            }
            if rule.effect == Effect::Deny {
                continue;
            }
            for (i, op) in rule.operations.iter().enumerate() {
                let OperationPattern::Op(op) = op else {
                    continue;
                };
                if *op == Operation::Delete && !rule.require_mfa {
                    e.add(
                        at(&format!("operations[{i}]")),
                        "delete requires require_mfa: true (MFA Delete)",
                    );
                }
                if object_lambda && *op != Operation::Get {
                    e.add(
                        at(&format!("operations[{i}]")),
                        format!("{op} is not possible on an Object Lambda access point (it serves get only)"),
                    );
                }
            }
        }
    }
}

/// A browser origin: `http(s)://host[:port]`, nothing else.
/// A browser origin: `scheme://host[:port]`, lowercase, no path, never `*`.
pub fn check_origin(origin: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "must be an origin such as https://app.example.com (scheme, host, optional port; no path, no '*')";
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(SHAPE)?;
    // An IPv6 literal host contains ':' itself.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(SHAPE)?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SHAPE);
        }
        match after {
            "" => ("[v6]", None),
            _ => ("[v6]", Some(after.strip_prefix(':').ok_or(SHAPE)?)),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    // Browsers send origins lowercase; anything else (path, query, '@', '*') never matches.
    let host_ok = host == "[v6]"
        || (!host.is_empty()
            && host.split('.').all(|label| !label.is_empty())
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(SHAPE);
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(SHAPE);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Rule, UploadConstraints};

    fn rule(effect: Effect, ops: &[OperationPattern], keys: &[&str], require_mfa: bool) -> Rule {
        Rule {
            effect,
            groups: vec!["users".into()],
            issuers: vec![],
            operations: ops.to_vec(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            require_mfa,
        }
    }

    const GET: OperationPattern = OperationPattern::Op(Operation::Get);
    const PUT: OperationPattern = OperationPattern::Op(Operation::Put);
    const DELETE: OperationPattern = OperationPattern::Op(Operation::Delete);

    fn valid() -> AccessPointSpec {
        AccessPointSpec {
            name: "avatars".into(),
            bucket: "acme-user-content".into(),
            prefix: "avatars/".into(),
            default_expires_in: 300,
            max_expires_in: 3600,
            encryption: Encryption::None,
            upload: UploadConstraints::default(),
            cors_origins: vec!["https://app.example.com".into()],
            network: Default::default(),
            limits: Default::default(),
            delivery: Default::default(),
            grants: None,
            rules: vec![rule(Effect::Allow, &[GET, PUT], &["${jwt:sub}/*"], false)],
        }
    }

    fn fields(spec: &AccessPointSpec) -> Vec<String> {
        match spec.validate() {
            Ok(()) => vec![],
            Err(SpecErrors(errs)) => errs.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn valid_spec_passes() {
        assert_eq!(valid().validate(), Ok(()));
        let mut s = valid();
        s.prefix = String::new();
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn name_rules() {
        for bad in ["", "Avatars", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            let mut s = valid();
            s.name = bad.into();
            assert_eq!(fields(&s), ["name"], "{bad:?}");
        }
        for good in ["a", "a-1", "0", &"a".repeat(63)] {
            let mut s = valid();
            s.name = good.into();
            assert_eq!(fields(&s), Vec::<String>::new(), "{good:?}");
        }
    }

    #[test]
    fn bucket_rules() {
        for bad in [
            "Bad_Bucket",
            "arn:aws:s3:us-east-1:1:accesspoint/x",
            "1.2.3.4",
        ] {
            let mut s = valid();
            s.bucket = bad.into();
            assert_eq!(fields(&s), ["bucket"], "{bad:?}");
        }
        let mut s = valid();
        s.bucket = "arn:aws-us-gov:s3:us-gov-west-1:123456789012:accesspoint/ap-one".into();
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn prefix_rules() {
        for bad in [
            "/avatars/",
            "a//b/",
            "../",
            "a/./",
            "a\\b/",
            "a%2fb/",
            "a\u{202e}/",
        ] {
            let mut s = valid();
            s.prefix = bad.into();
            assert_eq!(fields(&s), ["prefix"], "{bad:?}");
        }
        let mut s = valid();
        s.prefix = "avatars".into();
        assert_eq!(fields(&s), ["prefix"], "a prefix names a folder");
        s.prefix = format!("{}/", "p".repeat(1000));
        assert_eq!(fields(&s), ["prefix"]);
        s.prefix = format!("{}/", "p".repeat(999));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn expiry_rules() {
        let case = |default: u32, max: u32| {
            let mut s = valid();
            s.default_expires_in = default;
            s.max_expires_in = max;
            fields(&s)
        };
        assert_eq!(case(1, 604_800), Vec::<String>::new());
        assert_eq!(case(0, 3600), ["default_expires_in"]);
        assert_eq!(case(3601, 3600), ["default_expires_in"]);
        assert_eq!(case(300, 604_801), ["max_expires_in"]);
    }

    #[test]
    fn kms_key_id_rules() {
        for bad in ["", "key id", "key\n"] {
            let mut s = valid();
            s.encryption = Encryption::SseKms {
                kms_key_id: bad.into(),
            };
            assert_eq!(fields(&s), ["encryption.kms_key_id"], "{bad:?}");
        }
        let mut s = valid();
        s.encryption = Encryption::SseKms {
            kms_key_id: "alias/presignd".into(),
        };
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn upload_rules() {
        let mut s = valid();
        s.upload = UploadConstraints {
            max_content_length: Some(0),
            content_types: vec![
                "image/*".into(),
                "image".into(),
                "*/png".into(),
                "text/plain; charset=utf-8".into(),
                "*/*".into(),
            ],
            require_checksum: true,
            required_metadata: vec!["cse-alg".into(), "X-Amz-Meta-Key".into(), "".into()],
            overwrite: true,
            on_mismatch: OnMismatch::Quarantine,
            quarantine_prefix: None,
            quota: Some(crate::policy::UploadQuota {
                bytes_per_subject: None,
                objects_per_subject: None,
                window: crate::policy::QuotaWindow::Total,
            }),
        };
        assert_eq!(
            fields(&s),
            [
                "upload.max_content_length",
                "upload.content_types[1]",
                "upload.content_types[2]",
                "upload.content_types[3]",
                "upload.required_metadata[1]",
                "upload.required_metadata[2]",
                "upload.quota",
                "upload.quarantine_prefix",
            ]
        );
        for (mode, prefix, ok) in [
            (OnMismatch::Quarantine, "quarantine/", true),
            (OnMismatch::Quarantine, "avatars/q/", false),
            (OnMismatch::Quarantine, "", false),
            (OnMismatch::Quarantine, "quarantine", false),
            (OnMismatch::Delete, "quarantine/", false),
        ] {
            s.upload = UploadConstraints {
                on_mismatch: mode,
                quarantine_prefix: Some(prefix.into()),
                ..Default::default()
            };
            let want: &[&str] = if ok {
                &[]
            } else {
                &["upload.quarantine_prefix"]
            };
            assert_eq!(fields(&s), want, "{mode:?} {prefix:?}");
        }
        s.upload = UploadConstraints {
            on_mismatch: OnMismatch::Delete,
            overwrite: false,
            ..Default::default()
        };
        assert_eq!(fields(&s), ["upload.on_mismatch"]);
        s.upload = UploadConstraints {
            max_content_length: Some(MAX_OBJECT_SIZE + 1),
            ..Default::default()
        };
        assert_eq!(fields(&s), ["upload.max_content_length"]);
        s.upload.max_content_length = Some(MAX_OBJECT_SIZE);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn cors_origin_rules() {
        let good = [
            "https://app.example.com",
            "http://localhost:3000",
            "https://[::1]:8443",
            "https://10.0.0.1",
        ];
        let bad = [
            "*",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://app.example.com#f",
            "https://user@app.example.com",
            "https://App.Example.com",
            "ftp://app.example.com",
            "app.example.com",
            "https://",
            "https://a:0",
            "https://a:99999",
            "https://a:",
            "null",
        ];
        let mut s = valid();
        s.cors_origins = good
            .iter()
            .chain(bad.iter())
            .map(|o| o.to_string())
            .collect();
        let want: Vec<String> = (good.len()..good.len() + bad.len())
            .map(|i| format!("cors_origins[{i}]"))
            .collect();
        assert_eq!(fields(&s), want);
    }

    #[test]
    fn rule_rules() {
        let mut s = valid();
        s.rules = vec![];
        assert_eq!(fields(&s), ["rules"]);

        let mut s = valid();
        s.rules = vec![
            rule(Effect::Allow, &[GET], &["ok/*"], false),
            Rule {
                groups: vec![],
                issuers: vec![],
                ..rule(Effect::Allow, &[], &[], false)
            },
            rule(
                Effect::Deny,
                &[GET],
                &["a/*", "/abs", "${aws:username}/*"],
                false,
            ),
            Rule {
                groups: vec!["users".into(), "".into()],
                issuers: vec![],
                ..rule(Effect::Allow, &[GET], &["*"], false)
            },
        ];
        assert_eq!(
            fields(&s),
            [
                "rules[1].groups",
                "rules[1].operations",
                "rules[1].keys",
                "rules[2].keys[1]",
                "rules[2].keys[2]",
                "rules[3].groups[1]",
            ]
        );
    }

    #[test]
    fn allow_delete_needs_require_mfa() {
        let mut s = valid();
        s.rules = vec![rule(Effect::Allow, &[GET, DELETE], &["*"], false)];
        let err = s.validate().expect_err("invalid");
        assert_eq!(
            err.0,
            [FieldError {
                field: "rules[0].operations[1]".into(),
                message: "delete requires require_mfa: true (MFA Delete)".into()
            }]
        );
        s.rules[0].require_mfa = true;
        assert_eq!(s.validate(), Ok(()));
        // A deny rule may name delete freely, and "*" is not an explicit delete.
        s.rules = vec![
            rule(Effect::Deny, &[DELETE], &["*"], false),
            rule(Effect::Allow, &[OperationPattern::Any], &["*"], false),
        ];
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn object_lambda_allows_only_get() {
        let mut s = valid();
        s.bucket = "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/olap".into();
        assert_eq!(fields(&s), ["rules[0].operations[1]"]);
        s.rules = vec![
            rule(Effect::Allow, &[GET, OperationPattern::Any], &["*"], false),
            rule(Effect::Deny, &[PUT], &["*"], false),
        ];
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn all_problems_are_reported_together_and_display_joins_them() {
        let mut s = valid();
        s.name = "Bad".into();
        s.bucket = "B".into();
        s.default_expires_in = 0;
        s.rules[0].keys = vec!["/x".into()];
        let err = s.validate().expect_err("invalid");
        let got: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            got,
            ["name", "bucket", "default_expires_in", "rules[0].keys[0]"]
        );
        let text = err.to_string();
        assert!(text.starts_with("name: must be 1-63 characters"), "{text}");
        assert!(
            text.contains("; bucket: bucket name must be 3-63 characters"),
            "{text}"
        );
        let json = serde_json::to_value(&err).expect("serialize");
        assert_eq!(json[3]["field"], "rules[0].keys[0]");
    }
}
