//! CloudFront delivery: signed URLs (canned or custom policy) and signed cookies for access
//! points with `delivery.cloudfront`, signed with the keys in `[[cloudfront.keys]]`.
//!
//! `policy` holds the pure signing inputs, `key` the keys; this module puts them together.

pub mod key;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;

pub use key::{CloudFrontKey, KeyError, check_key_pair_id};
pub use policy::Conditions;

/// A signed URL, and what the audit record keeps of it.
pub struct SignedUrl {
    pub url: String,
    /// The policy statement that was signed (canned: the one CloudFront rebuilds).
    pub policy: String,
    /// The CloudFront-base64 signature (for the audit digest; never logged or stored).
    pub signature: String,
}

/// The three (with the hash algorithm, four) cookies of a custom policy.
pub struct SignedCookies {
    pub policy: String,
    /// `CloudFront-Policy`: the policy, CloudFront base64.
    pub encoded_policy: String,
    /// `CloudFront-Signature`.
    pub signature: String,
    /// `CloudFront-Key-Pair-Id`.
    pub key_pair_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudFrontError {
    #[error("no CloudFront key {0:?} is configured ([[cloudfront.keys]])")]
    UnknownKey(String),
    #[error("CloudFront signing failed")]
    Sign,
}

/// The configured keys by key pair id.
#[derive(Clone, Default)]
pub struct CloudFrontKeys {
    keys: Arc<HashMap<String, CloudFrontKey>>,
}

impl CloudFrontKeys {
    pub fn new(keys: impl IntoIterator<Item = CloudFrontKey>) -> CloudFrontKeys {
        CloudFrontKeys {
            keys: Arc::new(
                keys.into_iter()
                    .map(|k| (k.key_pair_id().to_owned(), k))
                    .collect(),
            ),
        }
    }

    fn key(&self, key_pair_id: &str) -> Result<&CloudFrontKey, CloudFrontError> {
        self.keys
            .get(key_pair_id)
            .ok_or_else(|| CloudFrontError::UnknownKey(key_pair_id.to_owned()))
    }

    /// Signs `url` (already encoded, see [`policy::encode_path`]): a canned policy when the
    /// conditions are only an expiry, else a custom one.
    pub fn sign_url(
        &self,
        key_pair_id: &str,
        url: &str,
        conditions: &Conditions,
    ) -> Result<SignedUrl, CloudFrontError> {
        let key = self.key(key_pair_id)?;
        let policy = policy::policy_json(url, conditions);
        let signature = sign(key, &policy)?;
        let query = policy::signed_query(conditions, &policy, key.key_pair_id(), &signature);
        Ok(SignedUrl {
            url: policy::signed_url(url, &query),
            policy,
            signature,
        })
    }

    /// Signs a custom policy for `resource` (which may end in a `*` wildcard) as cookies.
    pub fn sign_cookies(
        &self,
        key_pair_id: &str,
        resource: &str,
        conditions: &Conditions,
    ) -> Result<SignedCookies, CloudFrontError> {
        let key = self.key(key_pair_id)?;
        let policy = policy::policy_json(resource, conditions);
        let signature = sign(key, &policy)?;
        Ok(SignedCookies {
            encoded_policy: policy::cloudfront_base64(policy.as_bytes()),
            policy,
            signature,
            key_pair_id: key.key_pair_id().to_owned(),
        })
    }
}

fn sign(key: &CloudFrontKey, policy: &str) -> Result<String, CloudFrontError> {
    let raw = key
        .sign(policy.as_bytes())
        .map_err(|_| CloudFrontError::Sign)?;
    Ok(policy::cloudfront_base64(&raw))
}
