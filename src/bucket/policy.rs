//! The S3 policy that backs an access point's promises on the bucket itself: no request over
//! plain HTTP (`aws:SecureTransport = false`), and for SSE-S3/SSE-KMS no PutObject without the
//! matching encryption header.

use serde_json::{Value, json};

use crate::policy::{CompiledAccessPoint, Encryption, Target};

/// A bucket policy (for a bucket target) or an access point policy (for an ARN target).
pub fn bucket_policy(ap: &CompiledAccessPoint) -> Value {
    let (all, objects) = resources(&ap.target, &ap.spec.prefix);
    let mut statements = vec![json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": all,
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })];
    match &ap.spec.encryption {
        Encryption::SseS3 => statements.push(json!({
            "Sid": "DenyPutWithoutSseS3",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": { "StringNotEquals": { "s3:x-amz-server-side-encryption": "AES256" } }
        })),
        Encryption::SseKms { kms_key_id } => {
            statements.push(json!({
                "Sid": "DenyPutWithoutSseKms",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": { "StringNotEquals": { "s3:x-amz-server-side-encryption": "aws:kms" } }
            }));
            statements.push(json!({
                "Sid": "DenyPutWithOtherKmsKey",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {
                    "StringNotEqualsIfExists": {
                        "s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_id
                    }
                }
            }));
        }
        Encryption::None | Encryption::SseC => {}
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// (every resource the policy covers, the objects under the prefix).
fn resources(target: &Target, prefix: &str) -> (Vec<String>, String) {
    match target {
        Target::Bucket(bucket) => {
            let bucket_arn = format!("arn:aws:s3:::{bucket}");
            let objects = format!("{bucket_arn}/{prefix}*");
            (vec![bucket_arn, objects.clone()], objects)
        }
        Target::AccessPointArn(arn) | Target::ObjectLambdaArn(arn) => {
            let objects = format!("{}/object/{prefix}*", arn.full);
            (vec![arn.full.clone(), objects.clone()], objects)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(v: Value) -> CompiledAccessPoint {
        let spec = serde_json::from_value(v).expect("spec");
        CompiledAccessPoint::compile(spec).expect("valid")
    }

    #[test]
    fn denies_plain_http_on_the_bucket_and_its_objects() {
        let p = bucket_policy(&ap(json!({
            "name": "a", "bucket": "media-bucket", "prefix": "up/",
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["get"]}]
        })));
        let s = &p["Statement"];
        assert_eq!(s.as_array().map(Vec::len), Some(1));
        assert_eq!(s[0]["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(
            s[0]["Resource"],
            json!([
                "arn:aws:s3:::media-bucket",
                "arn:aws:s3:::media-bucket/up/*"
            ])
        );
    }

    #[test]
    fn sse_modes_deny_unencrypted_puts() {
        let kms = bucket_policy(&ap(json!({
            "name": "a", "bucket": "media-bucket", "prefix": "up/",
            "encryption": {"mode": "sse-kms", "kms_key_id": "alias/uploads"},
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["put"]}]
        })));
        let s = kms["Statement"].as_array().expect("statements");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption"],
            "aws:kms"
        );
        assert_eq!(
            s[2]["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            "alias/uploads"
        );
        let s3 = bucket_policy(&ap(json!({
            "name": "a", "bucket": "media-bucket", "prefix": "up/", "encryption": {"mode": "sse-s3"},
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["put"]}]
        })));
        assert_eq!(
            s3["Statement"][1]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption"],
            "AES256"
        );
    }

    #[test]
    fn access_point_targets_get_an_access_point_policy() {
        let p = bucket_policy(&ap(json!({
            "name": "a", "bucket": "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads", "prefix": "up/",
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["get"]}]
        })));
        assert_eq!(
            p["Statement"][0]["Resource"][1],
            "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads/object/up/*"
        );
    }
}
