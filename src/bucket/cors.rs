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
