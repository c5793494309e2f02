//! Building and running the service: `App::build(config)` wires every component and binds the
//! port; `run_until_stopped` serves until SIGINT/SIGTERM and then drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::audit::{AuditError, FileSink};
use crate::auth::{AuthSetupError, Verifier};
use crate::catalog::{self, ApplyError};
use crate::config::Config;
use crate::sign::Signer;
use crate::state::{AppState, Parts};
use crate::store::{Store, StoreError};

/// The contract, embedded so the served document is always the committed file.
pub const OPENAPI_YAML: &str = include_str!("../openapi/openapi.yaml");

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("access points: {0}")]
    AccessPoints(#[from] ApplyError),
    #[error("auth: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("audit sink: {0}")]
    Audit(#[from] AuditError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("openapi document: {0}")]
    OpenApi(String),
    #[error("{0}")]
    Config(String),
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    background: Vec<JoinHandle<()>>,
}

impl App {
    /// Everything but the port: usable by in-process tests through `router()`.
    pub async fn assemble(config: Config) -> Result<(AppState, Vec<JoinHandle<()>>), StartupError> {
        config
            .validate()
            .map_err(|e| StartupError::Config(e.to_string()))?;
        let store = Store::connect(
            config.database.url.expose_secret(),
            config.database.max_connections,
        )
        .await?;
        if config.database.migrate_on_start {
            store.migrate().await?;
        }
        if let Some(file) = &config.access_points.file {
            let specs = catalog::read_file(file, &config.s3)?;
            let summary = catalog::apply(&store, &specs, false).await?;
            tracing::info!(
                created = summary.created.len(),
                updated = summary.updated.len(),
                "applied access points from {}",
                file.display()
            );
        }
        let catalog = catalog::load(&store, &config.s3).await?;
        tracing::info!(
            access_points = catalog.len(),
            backend = store.backend(),
            "access points loaded"
        );

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StartupError::Config(format!("http client: {e}")))?;
        let verifier = Verifier::new(&config.auth.issuers, http).await?;
        let signer = Signer::new(&config.s3).await;
        let instance = instance_name(&config);
        let dir = config
            .audit_dir()
            .ok_or_else(|| StartupError::Config("audit.sink must be file://".into()))?;
        let audit = Arc::new(FileSink::new(dir, instance.clone())?);
        let openapi_json = openapi_json()?;
        let reload = Duration::from_millis(config.access_points.reload_interval_ms);
        let metrics = Arc::new(
            crate::metrics::Metrics::new()
                .map_err(|e| StartupError::Config(format!("metrics: {e}")))?,
        );

        let state = AppState::new(Parts {
            config,
            verifier: verifier.clone(),
            catalog,
            signer,
            audit,
            store,
            instance,
            openapi_json,
            metrics,
        });
        let background = vec![
            verifier.spawn_background_refresh(),
            tokio::spawn(catalog::reload_periodically(state.clone(), reload)),
        ];
        Ok((state, background))
    }

    pub async fn build(config: Config) -> Result<App, StartupError> {
        let addr = config.server.listen;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = Arc::new(
                    crate::tls::ReloadableCert::load(cert, key)
                        .map_err(|e| StartupError::Config(format!("server.tls_cert: {e}")))?,
                );
                let acceptor = crate::tls::acceptor(Arc::clone(&cert))
                    .map_err(|e| StartupError::Config(format!("server.tls_cert: {e}")))?;
                Some((acceptor, cert))
            }
            _ => None,
        };
        let (state, mut background) = App::assemble(config).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let tls = tls.map(|(acceptor, cert)| {
            #[cfg(unix)]
            background.push(crate::tls::reload_on_sighup(cert));
            #[cfg(not(unix))]
            let _ = cert;
            acceptor
        });
        Ok(App {
            listener,
            state,
            tls,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then stops accepting and drains in-flight requests (at
    /// most `server.shutdown_grace_ms`).
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_millis(self.state.config().server.shutdown_grace_ms);
        let router = crate::http::router(self.state.clone());
        let stop = async move {
            stop.await;
            tracing::info!("shutting down: draining in-flight requests");
        };
        let result = crate::serve::serve(self.listener, router, self.tls, stop, grace).await;
        for task in &self.background {
            task.abort();
        }
        self.state.store().close().await;
        result
    }
}

fn instance_name(config: &Config) -> String {
    config.audit.instance.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "presignd".into());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{host}-{}", std::process::id())
    })
}

pub fn openapi_json() -> Result<axum::body::Bytes, StartupError> {
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(OPENAPI_YAML).map_err(|e| StartupError::OpenApi(e.to_string()))?;
    serde_json::to_vec(&doc)
        .map(axum::body::Bytes::from)
        .map_err(|e| StartupError::OpenApi(e.to_string()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
