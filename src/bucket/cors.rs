//! The bucket CORS rule a browser needs to PUT/GET directly with presignd's URLs (and POST its
//! forms): the access point's origins, the methods its rules can grant, and exactly the headers
//! presignd signs.

use serde::Serialize;

use crate::policy::{CompiledAccessPoint, Effect, Encryption, Operation, OperationPattern, Target};

/// Serialized in S3's own JSON shape, so the printed rule can go straight into
/// `aws s3api put-bucket-cors --cors-configuration '{"CORSRules": [...]}'`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CorsRule {
    /// `presignd-{access point}`: how `--apply` finds its own rule again.
    #[serde(rename = "ID")]
    pub id: String,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: i32,
}

/// `None` when the access point names no browser origins (no browser may use it).
pub fn cors_rule(ap: &CompiledAccessPoint) -> Option<CorsRule> {
    if ap.spec.cors_origins.is_empty() {
        return None;
    }
    let mut ops: Vec<Operation> = Vec::new();
    for rule in ap.spec.rules.iter().filter(|r| r.effect == Effect::Allow) {
        for pattern in &rule.operations {
            match pattern {
                OperationPattern::Any => ops.extend([Operation::Get, Operation::Put]),
                OperationPattern::Op(op) => ops.push(*op),
            }
        }
    }
    if ap.target.is_object_lambda() {
        ops.retain(|op| *op == Operation::Get);
    }
    let mut methods: Vec<String> = Vec::new();
    for op in [Operation::Get, Operation::Put, Operation::Delete] {
        if ops.contains(&op) {
            methods.push(op.http_method().to_string());
            if op == Operation::Get {
                methods.push("HEAD".into());
            }
            // A presigned POST (form upload) is authorized as put; presignd signs POST
            // policies for bucket targets only. Without POST here a `fetch(FormData)` upload
            // is stored but the page cannot read S3's answer.
            if op == Operation::Put && matches!(ap.target, Target::Bucket(_)) {
                methods.push("POST".into());
            }
        }
    }
    let mut headers: Vec<String> = Vec::new();
    if ops.contains(&Operation::Put) {
        headers.extend(["content-type", "x-amz-checksum-sha256", "x-amz-meta-*"].map(String::from));
    }
    match &ap.spec.encryption {
        Encryption::None => {}
        Encryption::SseS3 => headers.push("x-amz-server-side-encryption".into()),
        Encryption::SseKms { .. } => headers.extend(
            [
                "x-amz-server-side-encryption",
                "x-amz-server-side-encryption-aws-kms-key-id",
            ]
            .map(String::from),
        ),
        Encryption::SseC => headers.extend(
            [
                "x-amz-server-side-encryption-customer-algorithm",
                "x-amz-server-side-encryption-customer-key",
                "x-amz-server-side-encryption-customer-key-md5",
            ]
            .map(String::from),
        ),
    }
    Some(CorsRule {
        id: format!("presignd-{}", ap.spec.name),
        allowed_origins: ap.spec.cors_origins.clone(),
        allowed_methods: methods,
        allowed_headers: headers,
        expose_headers: vec!["ETag".into()],
        max_age_seconds: 3000,
    })
}

/// Replaces presignd's rule for this access point (by id) and keeps every other rule.
pub fn merge_cors_rules<T: Clone>(
    existing: &[T],
    id_of: impl Fn(&T) -> Option<&str>,
    ours: T,
    our_id: &str,
) -> Vec<T> {
    let mut merged: Vec<T> = existing
        .iter()
        .filter(|r| id_of(r) != Some(our_id))
        .cloned()
        .collect();
    merged.push(ours);
    merged
}

/// One rule of a bucket's CORS configuration as S3 returns it (only what matching needs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCorsRule {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
}

/// A browser request the bucket's CORS would refuse: `origin` may not send `method`, or not
/// with `missing_headers` (the signed headers no matching rule allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsGap {
    pub origin: String,
    pub method: String,
    pub missing_headers: Vec<String>,
}

impl std::fmt::Display for CorsGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing_headers.is_empty() {
            write!(f, "{} may not {}", self.origin, self.method)
        } else {
            write!(
                f,
                "{} may not {} with headers {}",
                self.origin,
                self.method,
                self.missing_headers.join(", ")
            )
        }
    }
}

/// Where the bucket's CORS rules fall short of `needed` (what `cors_rule` derives), judged the
/// way S3 answers a preflight: some rule must match the origin, the method and every header.
/// A needed `x-amz-meta-*` is covered only by a pattern that matches every metadata header.
pub fn cors_gaps(needed: &CorsRule, bucket: &[BucketCorsRule]) -> Vec<CorsGap> {
    let mut gaps = Vec::new();
    for origin in &needed.allowed_origins {
        for method in &needed.allowed_methods {
            let candidates: Vec<&BucketCorsRule> = bucket
                .iter()
                .filter(|r| r.allowed_origins.iter().any(|p| wildcard(p, origin, false)))
                .filter(|r| {
                    r.allowed_methods
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(method))
                })
                .collect();
            // Only a PUT sends the signed upload headers; a form POST carries its fields in the
            // body, and GET, HEAD and DELETE send none of them.
            let headers: &[String] = if method == "PUT" {
                &needed.allowed_headers
            } else {
                &[]
            };
            let missing_in = |r: &BucketCorsRule| -> Vec<String> {
                headers
                    .iter()
                    .filter(|h| !r.allowed_headers.iter().any(|p| wildcard(p, h, true)))
                    .cloned()
                    .collect()
            };
            if candidates.iter().any(|r| missing_in(r).is_empty()) {
                continue;
            }
            gaps.push(CorsGap {
                origin: origin.clone(),
                method: method.clone(),
                missing_headers: candidates
                    .first()
                    .map(|r| missing_in(r))
                    .unwrap_or_default(),
            });
        }
    }
    gaps
}

/// S3's CORS patterns: `*` matches any run of characters; headers compare case-insensitively.
fn wildcard(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    let mut parts = p.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = v.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ap(v: serde_json::Value) -> CompiledAccessPoint {
        CompiledAccessPoint::compile(serde_json::from_value(v).expect("spec")).expect("valid")
    }

    #[test]
    fn methods_and_signed_headers_follow_the_access_point() {
        let rule = cors_rule(&ap(json!({
            "name": "avatars", "bucket": "media-bucket", "prefix": "a/",
            "encryption": {"mode": "sse-s3"},
            "cors_origins": ["https://app.example.com"],
            "rules": [
                {"effect": "allow", "groups": ["u"], "operations": ["put", "get"]},
                {"effect": "allow", "groups": ["m"], "operations": ["delete"], "require_mfa": true},
                {"effect": "deny", "groups": ["s"], "operations": ["*"]}
            ]
        })))
        .expect("rule");
        assert_eq!(rule.id, "presignd-avatars");
        assert_eq!(rule.allowed_origins, ["https://app.example.com"]);
        assert_eq!(
            rule.allowed_methods,
            ["GET", "HEAD", "PUT", "POST", "DELETE"]
        );
        assert_eq!(
            rule.allowed_headers,
            [
                "content-type",
                "x-amz-checksum-sha256",
                "x-amz-meta-*",
                "x-amz-server-side-encryption"
            ]
        );
        assert_eq!(rule.expose_headers, ["ETag"]);
    }

    #[test]
    fn no_origins_no_rule_and_get_only_needs_no_upload_headers() {
        let none = ap(json!({
            "name": "a", "bucket": "media-bucket", "prefix": "a/",
            "rules": [{"effect": "allow", "groups": ["u"], "operations": ["get"]}]
        }));
        assert_eq!(cors_rule(&none), None);
        let get_only = ap(json!({
            "name": "a", "bucket": "media-bucket", "prefix": "a/", "cors_origins": ["https://x.example"],
            "encryption": {"mode": "sse-c"},
            "rules": [{"effect": "allow", "groups": ["u"], "operations": ["get"]}]
        }));
        let rule = cors_rule(&get_only).expect("rule");
        assert_eq!(rule.allowed_methods, ["GET", "HEAD"]);
        assert!(rule.allowed_headers.iter().all(|h| h.contains("customer")));
    }

    fn bucket_rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> BucketCorsRule {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        BucketCorsRule {
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
        }
    }

    fn avatars_rule() -> CorsRule {
        cors_rule(&ap(json!({
            "name": "avatars", "bucket": "media-bucket", "prefix": "a/",
            "cors_origins": ["https://app.example.com", "https://admin.example.com"],
            "rules": [{"effect": "allow", "groups": ["u"], "operations": ["get", "put"]}]
        })))
        .expect("rule")
    }

    #[test]
    fn the_derived_rule_covers_itself_and_nothing_covers_nothing() {
        let needed = avatars_rule();
        let own = bucket_rule(
            &needed
                .allowed_origins
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &needed
                .allowed_methods
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &needed
                .allowed_headers
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(cors_gaps(&needed, std::slice::from_ref(&own)), vec![]);
        // No CORS configuration: every origin × method is a gap.
        assert_eq!(
            cors_gaps(&needed, &[]).len(),
            2 * needed.allowed_methods.len()
        );
    }

    #[test]
    fn wildcards_origins_methods_and_headers_are_matched_like_s3() {
        let needed = avatars_rule();
        let broad = bucket_rule(
            &["https://*.example.com"],
            &["GET", "HEAD", "PUT", "POST"],
            &["*"],
        );
        assert_eq!(cors_gaps(&needed, &[broad]), vec![]);

        // Only one origin, and a metadata header pattern narrower than `x-amz-meta-*`.
        let narrow = bucket_rule(
            &["https://app.example.com"],
            &["GET", "PUT", "POST"],
            &["Content-Type", "x-amz-checksum-sha256", "x-amz-meta-owner"],
        );
        let gaps = cors_gaps(&needed, &[narrow]);
        let shown: Vec<String> = gaps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "https://app.example.com may not HEAD",
                "https://app.example.com may not PUT with headers x-amz-meta-*",
                "https://admin.example.com may not GET",
                "https://admin.example.com may not HEAD",
                "https://admin.example.com may not PUT",
                "https://admin.example.com may not POST",
            ]
        );
    }

    #[test]
    fn a_later_rule_can_cover_what_an_earlier_one_does_not() {
        let needed = avatars_rule();
        let rules = [
            bucket_rule(&["*"], &["GET", "HEAD"], &[]),
            bucket_rule(&["*"], &["PUT", "POST"], &["content-type", "x-amz-*"]),
        ];
        assert_eq!(cors_gaps(&needed, &rules), vec![]);
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard("*", "anything", false));
        assert!(wildcard(
            "https://*.example.com",
            "https://a.example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "https://example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "https://a.example.com.evil",
            false
        ));
        assert!(wildcard("X-Amz-Meta-*", "x-amz-meta-*", true));
        assert!(!wildcard("x-amz-meta-owner", "x-amz-meta-*", true));
        assert!(!wildcard(
            "https://App.example.com",
            "https://app.example.com",
            false
        ));
        assert!(wildcard("a*b*c", "abc", false));
        assert!(!wildcard("a*b*c", "acb", false));
    }

    #[test]
    fn post_only_for_buckets_that_take_puts() {
        let on = |bucket: &str, ops: serde_json::Value| {
            cors_rule(&ap(json!({
                "name": "a", "bucket": bucket, "prefix": "a/", "cors_origins": ["https://x.example"],
                "rules": [{"effect": "allow", "groups": ["u"], "operations": ops}]
            })))
            .expect("rule")
            .allowed_methods
        };
        assert_eq!(
            on("media-bucket", json!(["*"])),
            ["GET", "HEAD", "PUT", "POST"]
        );
        assert_eq!(on("media-bucket", json!(["get"])), ["GET", "HEAD"]);
        // An S3 access point ARN takes presigned PUTs, not POST policies.
        assert_eq!(
            on(
                "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads",
                json!(["put"])
            ),
            ["PUT"]
        );
    }

    #[test]
    fn merging_keeps_unrelated_rules_and_replaces_ours() {
        let existing = vec![("other", 1), ("presignd-a", 2)];
        let merged = merge_cors_rules(&existing, |r| Some(r.0), ("presignd-a", 3), "presignd-a");
        assert_eq!(merged, vec![("other", 1), ("presignd-a", 3)]);
    }
}
