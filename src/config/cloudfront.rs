//! `[cloudfront]`: the private keys CloudFront signed URLs and cookies are signed with. An
//! access point's `delivery.cloudfront.key_pair_id` picks one; several may be configured so a
//! key can be rotated (add the new key here and to the distribution's trusted key group,
//! switch the access points to it, then remove the old one).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::cloudfront::{CloudFrontKey, CloudFrontKeys, KeyError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudFrontConfig {
    pub keys: Vec<CloudFrontKeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontKeyConfig {
    /// The public key's id in CloudFront (`K2JCJMDEHXQW5F`).
    pub key_pair_id: String,
    /// RSA-2048 or ECDSA P-256 private key, PEM (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub private_key_file: PathBuf,
}

impl CloudFrontKeyConfig {
    pub fn load(&self) -> Result<CloudFrontKey, KeyError> {
        CloudFrontKey::load(&self.key_pair_id, &self.private_key_file)
    }
}

impl CloudFrontConfig {
    /// Reads and checks every key file (so `check-config` and startup refuse a bad PEM).
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            if self.keys[..i]
                .iter()
                .any(|k| k.key_pair_id == key.key_pair_id)
            {
                p.push(ConfigProblem::new(
                    format!("cloudfront.keys[{i}].key_pair_id"),
                    format!("{:?} is configured twice", key.key_pair_id),
                ));
            }
            if let Err(e) = key.load() {
                let field = match e {
                    KeyError::KeyPairId => "key_pair_id",
                    _ => "private_key_file",
                };
                p.push(ConfigProblem::new(
                    format!("cloudfront.keys[{i}].{field}"),
                    e.to_string(),
                ));
            }
        }
        p
    }

    pub fn has_key(&self, key_pair_id: &str) -> bool {
        self.keys.iter().any(|k| k.key_pair_id == key_pair_id)
    }

    /// The keys, loaded (startup; validation has read them once already).
    pub fn load_keys(&self) -> Result<CloudFrontKeys, KeyError> {
        let keys = self
            .keys
            .iter()
            .map(CloudFrontKeyConfig::load)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CloudFrontKeys::new(keys))
    }

    /// A warning per key file that can no longer be read or parsed (it was at startup; the
    /// loaded key keeps signing, but the next restart would fail): shown on `/readyz`, which
    /// anyone may call, so it names the key id only; the path and the error go to the log.
    /// Reads files: call it off the async workers.
    pub fn key_file_warnings(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| {
                let e = k.load().err()?;
                tracing::warn!(key_pair_id = %k.key_pair_id, error = %e, "cloudfront key file unusable");
                Some(format!(
                    "cloudfront key {}: its private_key_file can no longer be read or parsed (see the log); signing goes on with the key loaded at startup, but a restart would fail",
                    k.key_pair_id
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &std::path::Path, name: &str, pem: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write");
        path
    }

    fn config(keys: Vec<(&str, PathBuf)>) -> CloudFrontConfig {
        CloudFrontConfig {
            keys: keys
                .into_iter()
                .map(|(id, file)| CloudFrontKeyConfig {
                    key_pair_id: id.into(),
                    private_key_file: file,
                })
                .collect(),
        }
    }

    #[test]
    fn key_files_are_read_and_checked_at_startup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_pem();
        let good = key_file(dir.path(), "good.pem", &pem);
        let ok = config(vec![("K1", good.clone())]);
        assert!(ok.validate().is_empty());
        assert!(ok.key_file_warnings().is_empty());
        assert!(ok.has_key("K1") && !ok.has_key("K2"));

        let garbage = key_file(dir.path(), "garbage.pem", "not a key");
        let bad = config(vec![
            ("K1", good.clone()),
            ("K1", good),
            ("K2", garbage),
            ("K3", dir.path().join("missing.pem")),
            ("k-4", dir.path().join("missing.pem")),
        ]);
        let problems: Vec<String> = bad.validate().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].starts_with("cloudfront.keys[1].key_pair_id: \"K1\" is configured twice")
        );
        assert!(
            problems[1].starts_with("cloudfront.keys[2].private_key_file: not a PEM private key")
        );
        assert!(problems[2].starts_with("cloudfront.keys[3].private_key_file: cannot read"));
        assert!(problems[3].starts_with("cloudfront.keys[4].key_pair_id:"));
        assert_eq!(bad.key_file_warnings().len(), 3);
    }
}
