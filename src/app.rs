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

use crate::audit::{Audit, AuditError};
use crate::auth::revocations::Revocations;
use crate::auth::{AuthSetupError, Verifier};
use crate::catalog::{self, ApplyError};
use crate::config::Config;
use crate::limits::Limiter;
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
    /// `metrics.listen`: a second listener serving only `/metrics`.
    metrics_listener: Option<TcpListener>,
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
            let specs = catalog::read_file(file, &config)?;
            crate::audit::refuse_log_loops(&config, &specs)
                .map_err(|e| StartupError::Config(e.to_string()))?;
            let summary = catalog::apply(&store, &specs, false).await?;
            tracing::info!(
                created = summary.created.len(),
                updated = summary.updated.len(),
                "applied access points from {}",
                file.display()
            );
            for change in &summary.mfa_sensitive {
                tracing::warn!(%change, "the access point file changed MFA protection (the admin API would have required an MFA token)");
            }
        }
        let catalog = catalog::load(&store, &config).await?;
        let log_loops = crate::audit::check_log_destination(
            &config,
            catalog.iter().map(|ap| (ap.name(), &ap.target)),
        );
        if !log_loops.is_empty() {
            let e = crate::config::ConfigError::Invalid(log_loops);
            return Err(StartupError::Config(e.to_string()));
        }
        tracing::info!(
            access_points = catalog.len(),
            backend = store.backend(),
            "access points loaded"
        );

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StartupError::Config(format!("http client: {e}")))?;
        let metrics = Arc::new(
            crate::metrics::Metrics::new()
                .map_err(|e| StartupError::Config(format!("metrics: {e}")))?,
        );
        let verifier_options = crate::auth::VerifierOptions {
            jwks_observer: Some(metrics.jwks_observer()),
            token_cache_entries: config.auth.token_cache_entries,
            token_cache_observer: Some(metrics.token_cache_observer()),
        };
        let verifier = Verifier::with_options(&config.auth.issuers, http, verifier_options).await?;
        let signer = Signer::new(&config.s3).await;
        let instance = instance_name(&config);
        let openapi_json = openapi_json()?;
        let reload = Duration::from_millis(config.access_points.reload_interval_ms);
        let (audit, audit_tasks) = Audit::start(
            &config,
            store.clone(),
            signer.s3_client(),
            Arc::clone(&metrics),
            &instance,
        )?;
        let limiter = Limiter::new(&config.limits, &config.redis, Arc::clone(&metrics))
            .await
            .map_err(StartupError::Config)?;
        let leeway = config
            .auth
            .issuers
            .iter()
            .map(|i| i.leeway_seconds)
            .max()
            .unwrap_or(0);
        let revocations = Arc::new(Revocations::new(
            config.auth.max_token_lifetime_seconds,
            leeway,
        ));
        revocations.reload(&store).await?;

        let cloudfront = config
            .cloudfront
            .load_keys()
            .map_err(|e| StartupError::Config(format!("cloudfront.keys: {e}")))?;
        let state = AppState::new(Parts {
            config,
            verifier: verifier.clone(),
            catalog,
            signer,
            cloudfront,
            audit,
            store,
            instance,
            openapi_json,
            metrics,
            limiter: limiter.clone(),
            revocations,
        });
        let mut background = vec![
            verifier.spawn_background_refresh(),
            // Access points and revocations: change notifications + the periodic reload.
            tokio::spawn(crate::catalog::sync::run(state.clone(), reload)),
            // Aborts multipart uploads abandoned for `uploads.abandon_after_seconds`.
            tokio::spawn(crate::uploads::run_sweeper(state.clone())),
            // Verifies expired, unverified uploads on quota access points.
            tokio::spawn(verify_expired_every(state.clone())),
            // Delivers queued webhooks (`[[webhooks]]`).
            tokio::spawn(crate::webhooks::deliver::run_dispatcher(state.clone())),
        ];
        let cors_check = state.config().s3.cors_check_interval_seconds;
        if cors_check > 0 {
            background.push(tokio::spawn(crate::bucket::check::run(
                state.clone(),
                Duration::from_secs(cors_check),
            )));
        }
        background.extend(limiter.spawn_background());
        background.extend(audit_tasks);
        background.push(tokio::spawn(write_refusal_summaries_every(
            state.clone(),
            Duration::from_secs(state.config().limits.refusal_summary_interval_seconds),
        )));
        Ok((state, background))
    }

    pub async fn build(config: Config) -> Result<App, StartupError> {
        let addr = config.server.listen;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = Arc::new(
                    crate::serve::tls::ReloadableCert::load(cert, key)
                        .map_err(|e| StartupError::Config(format!("server.tls_cert: {e}")))?,
                );
                let acceptor = crate::serve::tls::acceptor(Arc::clone(&cert))
                    .map_err(|e| StartupError::Config(format!("server.tls_cert: {e}")))?;
                Some((acceptor, cert))
            }
            _ => None,
        };
        let (state, mut background) = App::assemble(config).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let metrics_listener = match state.config().metrics.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            ),
            None => None,
        };
        let reload_every = state.config().server.tls_reload_interval_seconds;
        let tls = tls.map(|(acceptor, cert)| {
            if reload_every > 0 {
                background.push(crate::serve::tls::reload_on_change(
                    Arc::clone(&cert),
                    Duration::from_secs(reload_every),
                ));
            }
            #[cfg(unix)]
            background.push(crate::serve::tls::reload_on_sighup(cert));
            #[cfg(not(unix))]
            let _ = cert;
            acceptor
        });
        Ok(App {
            listener,
            metrics_listener,
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

    /// Where `/metrics` is served when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
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
        let limits = crate::serve::ConnectionLimits::from_config(
            &self.state.config().server,
            self.state.metrics_arc(),
        );
        let router = crate::http::router(self.state.clone());
        // The metrics listener (if any) stops with the main one.
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let metrics_server = self.metrics_listener.map(|listener| {
            let mut stopped = stopped.clone();
            let router = crate::http::metrics_router(self.state.clone());
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tokio::spawn(crate::serve::serve(
                listener,
                router,
                self.tls.clone(),
                stop,
                grace,
                limits.clone(),
            ))
        });
        let stop = async move {
            stop.await;
            let _ = stopping.send(true);
            tracing::info!("shutting down: draining in-flight requests");
        };
        let result =
            crate::serve::serve(self.listener, router, self.tls, stop, grace, limits).await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        // No request is in flight any more: count the last refusals past their limits, then
        // ship what the outbox holds (bounded; whatever remains ships at the next start).
        if let Err(error) = crate::http::write_refusal_summaries(&self.state).await {
            tracing::warn!(%error, "refusal summaries not written at shutdown");
        }
        let flush = Duration::from_millis(self.state.config().audit.shutdown_flush_ms);
        match self.state.audit().flush(flush).await {
            Ok(()) => tracing::info!("audit outbox flushed"),
            Err(e) => tracing::warn!(error = %e, "audit outbox not fully shipped at shutdown"),
        }
        for task in &self.background {
            task.abort();
        }
        self.state.store().close().await;
        result
    }
}

/// [`crate::http::verify_expired`] every `uploads.sweep_interval_ms`.
async fn verify_expired_every(state: AppState) {
    let interval = Duration::from_millis(state.config().uploads.sweep_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        match crate::http::verify_expired(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                uploads = n,
                "verified expired uploads on quota access points"
            ),
            Err(error) => {
                tracing::warn!(%error, "expired uploads not verified; retried next round")
            }
        }
    }
}

/// Writes the refusal summaries (`crate::limits::RefusalLimiter`) every `interval`.
async fn write_refusal_summaries_every(state: AppState, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match crate::http::write_refusal_summaries(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(callers = n, "refusals past their limits summarized"),
            Err(error) => {
                tracing::warn!(%error, "refusal summaries not written; retried next round")
            }
        }
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
        // No pid: the name must survive a restart so a batch retried after a crash keeps its
        // object key.
        host
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
