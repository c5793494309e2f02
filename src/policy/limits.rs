//! An access point's own rate limits (`limits` in the spec), overriding `[limits]` for it.

use serde::{Deserialize, Serialize};

use super::errors::FieldError;

/// Largest rate an access point may set (per second or per minute).
pub const MAX_LIMIT_RATE: u32 = 1_000_000;

/// Every field is optional; a rate of 0 switches that limit off for this access point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessPointLimits {
    /// URLs one subject may obtain from this access point per minute (on top of the global
    /// `[limits] per_subject_per_minute`, which spans all access points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_subject_per_minute: Option<u32>,
    /// Burst for `per_subject_per_minute`; absent: `[limits] per_subject_burst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_subject_burst: Option<u32>,
    /// URLs this access point issues per second, all callers together; overrides
    /// `[limits] per_access_point_per_second`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    /// Burst for `per_second`; absent: one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// For `sse-kms` access points: GET and PUT URLs per second (each costs S3 a KMS call);
    /// overrides `[limits] sse_kms_per_second`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_kms_per_second: Option<u32>,
    /// Burst for `sse_kms_per_second`; absent: one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_kms_burst: Option<u32>,
}

impl AccessPointLimits {
    pub fn is_empty(&self) -> bool {
        *self == AccessPointLimits::default()
    }

    /// Field errors, named `limits.…`.
    pub(super) fn validate(&self, sse_kms: bool) -> Vec<FieldError> {
        let mut e = Vec::new();
        let mut add = |field: &str, message: String| {
            e.push(FieldError {
                field: format!("limits.{field}"),
                message,
            })
        };
        for (field, rate) in [
            ("per_subject_per_minute", self.per_subject_per_minute),
            ("per_second", self.per_second),
            ("sse_kms_per_second", self.sse_kms_per_second),
        ] {
            if rate.is_some_and(|r| r > MAX_LIMIT_RATE) {
                add(
                    field,
                    format!("must be at most {MAX_LIMIT_RATE} (0 switches the limit off)"),
                );
            }
        }
        for (field, burst) in [
            ("per_subject_burst", self.per_subject_burst),
            ("burst", self.burst),
            ("sse_kms_burst", self.sse_kms_burst),
        ] {
            if burst == Some(0) {
                add(field, "must be at least 1".into());
            }
        }
        if !sse_kms && (self.sse_kms_per_second.is_some() || self.sse_kms_burst.is_some()) {
            add(
                "sse_kms_per_second",
                "applies to access points with encryption mode sse-kms only".into(),
            );
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(limits: AccessPointLimits, sse_kms: bool) -> Vec<String> {
        limits
            .validate(sse_kms)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn limits_are_validated_and_named() {
        assert!(AccessPointLimits::default().is_empty());
        assert_eq!(
            fields(AccessPointLimits::default(), false),
            Vec::<String>::new()
        );
        let bad = AccessPointLimits {
            per_second: Some(MAX_LIMIT_RATE + 1),
            burst: Some(0),
            sse_kms_per_second: Some(5),
            ..AccessPointLimits::default()
        };
        assert_eq!(
            fields(bad.clone(), false),
            [
                "limits.per_second",
                "limits.burst",
                "limits.sse_kms_per_second"
            ]
        );
        assert_eq!(fields(bad, true), ["limits.per_second", "limits.burst"]);
        let off = AccessPointLimits {
            per_second: Some(0),
            ..AccessPointLimits::default()
        };
        assert_eq!(
            fields(off, false),
            Vec::<String>::new(),
            "0 switches a limit off"
        );
    }

    #[test]
    fn empty_limits_are_left_out_of_the_document() {
        let spec: crate::policy::AccessPointSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "bucket": "bkt",
            "rules": [{"effect": "allow", "groups": ["g"], "operations": ["get"]}]
        }))
        .expect("spec");
        let doc = serde_json::to_value(&spec).expect("serialize");
        assert!(doc.get("limits").is_none(), "{doc}");
        assert!(
            serde_json::from_value::<AccessPointLimits>(serde_json::json!({"per_sec": 1})).is_err(),
            "typos are refused"
        );
    }
}
