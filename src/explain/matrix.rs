//! The `presignd explain --matrix FILE` format: a YAML list of requests and the decision each
//! should get, checked in one run ("policy unit tests" for an access point file).
//!
//! ```yaml
//! - sub: alice
//!   groups: [users]
//!   operation: get
//!   access_point: avatars
//!   key: alice/a.png
//!   expect: allow            # allow, deny, or the problem code: forbidden, not_found, …
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::policy::{PresignOperation, PresignRequest};

/// One expected decision. `issuer` defaults to the first configured issuer; request fields
/// beyond `operation` and `key` are optional, as in a presign request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: Option<String>,
    pub sub: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub mfa: bool,
    pub access_point: String,
    pub operation: PresignOperation,
    pub key: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_length: Option<u64>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub key_starts_with: Option<bool>,
    /// The caller's address, for `network.allowed_cidrs` (default: unknown).
    #[serde(default)]
    pub client_ip: Option<std::net::IpAddr>,
    /// Whether the request arrives over TLS (default: true).
    #[serde(default = "yes")]
    pub tls: bool,
    pub expect: String,
}

fn yes() -> bool {
    true
}

impl Case {
    /// The presign request this case makes.
    pub fn request(&self) -> PresignRequest {
        let mut req = PresignRequest::new(self.operation, self.key.clone());
        req.content_type = self.content_type.clone();
        req.content_length = self.content_length;
        req.expires_in = self.expires_in;
        req.key_starts_with = self.key_starts_with;
        req
    }

    /// How the case names itself in a report.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("#{index} {name}"),
            None => format!(
                "#{index} {} {:?} {} {}/{}",
                self.sub,
                self.groups,
                self.operation.as_str(),
                self.access_point,
                self.key
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: case #{index}: expect must be allow, deny or a problem code, not {expect:?}")]
    Expect {
        path: String,
        index: usize,
        expect: String,
    },
}

/// Reads a matrix file (YAML or JSON).
pub fn read(path: &Path) -> Result<Vec<Case>, MatrixError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
        path: shown.clone(),
        source,
    })?;
    let cases: Vec<Case> = serde_yaml_ng::from_str(&text).map_err(|e| MatrixError::Parse {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    for (index, case) in cases.iter().enumerate() {
        let plain = case
            .expect
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_');
        if case.expect.is_empty() || !plain {
            return Err(MatrixError::Expect {
                path: shown,
                index,
                expect: case.expect.clone(),
            });
        }
    }
    Ok(cases)
}

/// Whether a decision — `None` for allowed, else the problem code — is what `expect` says.
pub fn meets(expect: &str, code: Option<&str>) -> bool {
    match (expect, code) {
        ("allow", None) => true,
        ("deny", Some(_)) => true,
        (expected, Some(code)) => expected == code,
        _ => false,
    }
}

/// The decision as a matrix would write it.
pub fn written(code: Option<&str>) -> &str {
    code.unwrap_or("allow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_match_decisions() {
        assert!(meets("allow", None));
        assert!(!meets("allow", Some("forbidden")));
        assert!(meets("deny", Some("not_found")));
        assert!(!meets("deny", None));
        assert!(meets("forbidden", Some("forbidden")));
        assert!(!meets("forbidden", Some("mfa_required")));
        assert!(!meets("forbidden", None));
    }

    #[test]
    fn cases_parse_with_defaults_and_bad_expectations_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.yaml");
        std::fs::write(
            &file,
            "- {sub: alice, groups: [users], operation: get, access_point: avatars, key: alice/a.png, expect: allow}\n",
        )
        .expect("write");
        let cases = read(&file).expect("parses");
        assert_eq!(cases.len(), 1);
        assert!(cases[0].tls && !cases[0].mfa && cases[0].issuer.is_none());
        assert_eq!(cases[0].request().key, "alice/a.png");
        std::fs::write(
            &file,
            "- {sub: a, operation: get, access_point: x, key: k, expect: Allowed!}\n",
        )
        .expect("write");
        assert!(matches!(read(&file), Err(MatrixError::Expect { .. })));
        std::fs::write(
            &file,
            "- {sub: a, operation: fly, access_point: x, key: k, expect: allow}\n",
        )
        .expect("write");
        assert!(matches!(read(&file), Err(MatrixError::Parse { .. })));
    }
}
