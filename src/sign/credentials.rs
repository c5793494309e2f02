//! Signing credentials: static keys from the config, or the standard AWS provider chain,
//! cached here so the signer can see their expiry (a URL must not outlive them).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::SignError;
use crate::config::S3Config;

/// Refresh this long before expiry so no URL is signed with credentials about to lapse.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct CachedCredentials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    /// Wraps any provider (tests use one whose credentials expire).
    pub fn new(source: SharedCredentialsProvider) -> CachedCredentials {
        CachedCredentials {
            inner: Arc::new(Inner {
                source,
                cached: Mutex::new(None),
            }),
        }
    }

    pub async fn from_config(cfg: &S3Config) -> CachedCredentials {
        let source = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(ak), Some(sk)) => SharedCredentialsProvider::new(Credentials::new(
                ak.clone(),
                sk.expose_secret().to_string(),
                None,
                None,
                "presignd-config",
            )),
            _ => {
                let chain =
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .region(aws_sdk_s3::config::Region::new(cfg.region.clone()))
                        .build()
                        .await;
                SharedCredentialsProvider::new(chain)
            }
        };
        CachedCredentials::new(source)
    }

    pub async fn current(&self) -> Result<Credentials, SignError> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_MARGIN);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self
            .inner
            .source
            .provide_credentials()
            .await
            .map_err(|e| SignError::Credentials(e.to_string()))?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

impl ProvideCredentials for CachedCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.current().await.map_err(|e| {
                aws_credential_types::provider::error::CredentialsError::provider_error(e)
            })
        })
    }
}
