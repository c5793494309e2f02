//! Signing credentials: static keys from the config, or the standard AWS provider chain,
//! cached here so the signer can see their expiry (a URL must not outlive them).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::SignError;
use crate::config::S3Config;

/// Refresh this long before expiry so no URL is signed with credentials about to lapse.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct CachedCredentials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: SharedCredentialsProvider,
    /// Read lock-free on every request.
    current: ArcSwapOption<Credentials>,
    /// Held only while refreshing, so one caller refreshes and the others wait for it.
    refresh: Mutex<()>,
}

fn fresh(c: &Credentials) -> bool {
    c.expiry()
        .is_none_or(|e| e > SystemTime::now() + REFRESH_MARGIN)
}

impl CachedCredentials {
    /// Wraps any provider (tests use one whose credentials expire).
    pub fn new(source: SharedCredentialsProvider) -> CachedCredentials {
        CachedCredentials {
            inner: Arc::new(Inner {
                source,
                current: ArcSwapOption::empty(),
                refresh: Mutex::new(()),
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
        if let Some(c) = self.inner.current.load_full().filter(|c| fresh(c)) {
            return Ok((*c).clone());
        }
        let _refreshing = self.inner.refresh.lock().await;
        if let Some(c) = self.inner.current.load_full().filter(|c| fresh(c)) {
            return Ok((*c).clone());
        }
        let fetched =
            tokio::time::timeout(FETCH_TIMEOUT, self.inner.source.provide_credentials()).await;
        match fetched {
            Ok(Ok(c)) => {
                self.inner.current.store(Some(Arc::new(c.clone())));
                Ok(c)
            }
            // A failed refresh keeps serving credentials that are still valid.
            failed => match self.inner.current.load_full() {
                Some(old) if old.expiry().is_none_or(|e| e > SystemTime::now()) => {
                    tracing::warn!(
                        "signing credentials refresh failed; using the current ones until they expire"
                    );
                    Ok((*old).clone())
                }
                _ => Err(SignError::Credentials(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                })),
            },
        }
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
