//! Native TLS: the certificate chain and key from `server.tls_cert` / `server.tls_key`, served
//! through a resolver whose key can be swapped at runtime, so a renewed certificate is picked
//! up on SIGHUP or when the files change (cert-manager, certbot) without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("the key does not match the certificate or is unsupported: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks a PEM certificate chain and private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, &e))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Key(e.to_string()))
}

/// The current certificate; `reload` swaps it atomically.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

/// A digest of both files' bytes: what the watcher compares. Contents, not mtimes, because a
/// Kubernetes secret update swaps a symlink and coarse mtimes can miss a quick second write.
fn files_digest(cert: &Path, key: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for path in [cert, key] {
        let bytes = std::fs::read(path).ok()?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Some(h.finalize().into())
}

impl ReloadableCert {
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadableCert, TlsError> {
        let current = load_certified_key(cert, key)?;
        Ok(ReloadableCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(current),
        })
    }

    /// The certificate currently presented.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Re-reads the files; on any error the current certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.cert, &self.key)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A TLS acceptor (TLS 1.2+, ALPN h2 and http/1.1) over a reloadable certificate.
pub fn acceptor(cert: Arc<ReloadableCert>) -> Result<TlsAcceptor, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Re-reads the files every `interval` and reloads when their contents changed, until the task
/// is aborted. A change that does not load (say the new certificate was written but not yet
/// its key) keeps the current certificate and is logged once; the next change is tried again.
pub fn reload_on_change(
    cert: Arc<ReloadableCert>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let digest = |c: &ReloadableCert| files_digest(&c.cert, &c.key);
        let mut seen = {
            let c = Arc::clone(&cert);
            tokio::task::spawn_blocking(move || digest(&c))
                .await
                .ok()
                .flatten()
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let c = Arc::clone(&cert);
            let Ok((now, result)) = tokio::task::spawn_blocking(move || {
                let now = digest(&c);
                // Unreadable files (mid-rotation) are not a change yet.
                let result = (now.is_some() && now != seen).then(|| c.reload());
                (now, result)
            })
            .await
            else {
                continue;
            };
            match result {
                None => {}
                Some(Ok(())) => {
                    seen = now;
                    tracing::info!("TLS certificate files changed; certificate reloaded");
                }
                Some(Err(e)) => {
                    seen = now;
                    tracing::error!(error = %e, "TLS certificate files changed but do not load; keeping the current certificate");
                }
            }
        }
    })
}

/// Reloads the certificate on every SIGHUP until the task is aborted.
#[cfg(unix)]
pub fn reload_on_sighup(cert: Arc<ReloadableCert>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP; TLS certificate reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; keeping the current one")
                }
            }
        }
    })
}
