//! `[s3]`: the region and endpoint URLs are signed for, and the credentials.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{ConfigProblem, redacted_opt};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub region: String,
    /// For S3-compatible stores; absent = AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    /// Dev/test only: permit an `http://` endpoint (issued URLs are then plain HTTP).
    pub allow_insecure_endpoint: bool,
    /// Static credentials, for S3-compatible stores. Absent = the standard AWS provider chain.
    pub access_key_id: Option<String>,
    #[serde(serialize_with = "redacted_opt")]
    pub secret_access_key: Option<SecretString>,
    /// How often each served bucket's CORS is read back and compared with what its access
    /// points' browser origins need (warnings on `/readyz`); 0 turns the check off.
    pub cors_check_interval_seconds: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            allow_insecure_endpoint: false,
            access_key_id: None,
            secret_access_key: None,
            cors_check_interval_seconds: 300,
        }
    }
}

impl S3Config {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let s3 = self;
        if s3.region.is_empty()
            || !s3
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            p.push(ConfigProblem::new(
                "s3.region",
                "must be a region name such as us-east-1",
            ));
        }
        if let Some(ep) = &s3.endpoint {
            match ep.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => {}
                Some(("http", rest)) if !rest.is_empty() => {
                    if !s3.allow_insecure_endpoint {
                        p.push(ConfigProblem::new(
                            "s3.endpoint",
                            "is plain http: issued URLs would travel in clear text; use https, or set s3.allow_insecure_endpoint = true for dev/test only",
                        ));
                    }
                }
                _ => p.push(ConfigProblem::new("s3.endpoint", "must be an https:// URL")),
            }
        } else if s3.allow_insecure_endpoint {
            p.push(ConfigProblem::new(
                "s3.allow_insecure_endpoint",
                "only makes sense with an http:// s3.endpoint",
            ));
        }
        match (&s3.access_key_id, &s3.secret_access_key) {
            (Some(_), None) => p.push(ConfigProblem::new(
                "s3.secret_access_key",
                "is required when s3.access_key_id is set",
            )),
            (None, Some(_)) => p.push(ConfigProblem::new(
                "s3.access_key_id",
                "is required when s3.secret_access_key is set",
            )),
            _ => {}
        }
        p
    }
}
