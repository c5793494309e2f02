//! CloudFront signing keys: an RSA-2048 or ECDSA P-256 private key (PEM: PKCS#8, PKCS#1 or
//! SEC1) and the id of its public key in the distribution's trusted key group.
//!
//! Signatures are SHA-256 (`Hash-Algorithm=SHA256`, which CloudFront verifies for both key
//! types) through aws-lc-rs: its RSA is constant-time with blinding, unlike the `rsa` crate
//! (RUSTSEC-2023-0071, Marvin), and it offers no SHA-1 signing, which is legacy anyway.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

/// What can be wrong with a configured key, said so that `check-config` can print it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {0}")]
    Pem(String),
    #[error("CloudFront accepts RSA-2048 or ECDSA P-256 keys; this is {0}")]
    Unsupported(String),
    #[error("key_pair_id must be 1 to 64 ASCII letters and digits (the public key's id)")]
    KeyPairId,
}

enum Private {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// A loaded key; the private half never leaves this type (no `Debug` of it, no accessor).
pub struct CloudFrontKey {
    key_pair_id: String,
    private: Private,
}

impl std::fmt::Debug for CloudFrontKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontKey")
            .field("key_pair_id", &self.key_pair_id)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// CloudFront public key ids are upper-case letters and digits (`K2JCJMDEHXQW5F`; legacy key
/// pairs `APKA…`); they go into URLs and cookies unencoded.
pub fn check_key_pair_id(id: &str) -> Result<(), KeyError> {
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(KeyError::KeyPairId)
    }
}

impl CloudFrontKey {
    pub fn load(key_pair_id: &str, path: &Path) -> Result<CloudFrontKey, KeyError> {
        check_key_pair_id(key_pair_id)?;
        let pem = std::fs::read(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        CloudFrontKey::from_pem(key_pair_id, &pem)
    }

    pub fn from_pem(key_pair_id: &str, pem: &[u8]) -> Result<CloudFrontKey, KeyError> {
        check_key_pair_id(key_pair_id)?;
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        let private = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                Private::Rsa(rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()))?)
            }
            PrivateKeyDer::Sec1(k) => Private::Ecdsa(ecdsa(k.secret_sec1_der())?),
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(bytes) {
                    Ok(rsa_key) => Private::Rsa(rsa(Ok(rsa_key))?),
                    Err(_) => Private::Ecdsa(ecdsa(bytes)?),
                }
            }
            _ => return Err(KeyError::Unsupported("an unknown key format".into())),
        };
        Ok(CloudFrontKey {
            key_pair_id: key_pair_id.to_owned(),
            private,
        })
    }

    pub fn key_pair_id(&self) -> &str {
        &self.key_pair_id
    }

    /// `RSA-2048` or `ECDSA P-256`.
    pub fn kind(&self) -> &'static str {
        match self.private {
            Private::Rsa(_) => "RSA-2048",
            Private::Ecdsa(_) => "ECDSA P-256",
        }
    }

    /// A SHA-256 signature of `message`: PKCS#1 v1.5 for RSA (deterministic), ASN.1 DER for
    /// ECDSA (randomized).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)?;
                Ok(sig)
            }
            Private::Ecdsa(k) => Ok(k.sign(&rng, message)?.as_ref().to_vec()),
        }
    }
}

fn rsa(key: Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>) -> Result<RsaKeyPair, KeyError> {
    let key = key.map_err(|e| KeyError::Pem(format!("RSA key rejected: {e}")))?;
    match key.public_modulus_len() * 8 {
        2048 => Ok(key),
        bits => Err(KeyError::Unsupported(format!("RSA-{bits}"))),
    }
}

fn ecdsa(der: &[u8]) -> Result<EcdsaKeyPair, KeyError> {
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der).map_err(|_| {
        KeyError::Unsupported("neither an RSA key nor an ECDSA key on curve P-256".into())
    })
}
