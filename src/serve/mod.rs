//! The accept loop. With TLS configured, one port serves both: a connection whose first byte
//! is a TLS handshake is served over TLS, anything else as plain HTTP — so a plain request
//! gets a clear `https_required` problem (and health probes work) instead of a dropped
//! connection. Every request carries the peer address and whether it arrived over TLS.
//!
//! Native TLS (`tls`): the certificate is reloaded when its files change or on SIGHUP.
//!
//! Slow and idle clients cannot hold connections: at most `server.max_connections` are open
//! (further ones wait in the listen backlog), a TLS handshake must finish within
//! `server.tls_handshake_timeout_ms`, and `deadlines` bounds header reads and keep-alive idle.

mod deadlines;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use deadlines::{Connection, Deadlined, InFlight, OnTimeout};
pub use deadlines::{Phase, Timeouts};

use crate::metrics::Metrics;

/// Request extension: the connection is native TLS.
#[derive(Debug, Clone, Copy)]
pub struct NativeTls(pub bool);

const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What bounds each connection (`[server]`: `header_read_timeout_ms`, `idle_timeout_ms`,
/// `tls_handshake_timeout_ms`, `max_connections`).
#[derive(Clone)]
pub struct ConnectionLimits {
    pub timeouts: Timeouts,
    pub tls_handshake: Duration,
    pub max_connections: usize,
    pub metrics: Arc<Metrics>,
}

impl ConnectionLimits {
    pub fn from_config(server: &crate::config::ServerConfig, metrics: Arc<Metrics>) -> Self {
        ConnectionLimits {
            timeouts: Timeouts {
                header_read: Duration::from_millis(server.header_read_timeout_ms),
                idle: Duration::from_millis(server.idle_timeout_ms),
            },
            tls_handshake: Duration::from_millis(server.tls_handshake_timeout_ms),
            max_connections: server.max_connections,
            metrics,
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()> + Send,
    grace: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let metrics = Arc::clone(&limits.metrics);
    let on_timeout: OnTimeout = Arc::new(move |phase: Phase| {
        metrics
            .http_connection_timeouts_total
            .with_label_values(&[phase.as_str()])
            .inc();
    });
    tokio::pin!(stop);
    loop {
        // A free slot first: past max_connections, new connections wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (router, tls, builder) = (router.clone(), tls.clone(), builder.clone());
        let (limits, on_timeout) = (limits.clone(), Arc::clone(&on_timeout));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let open = OpenConnection::count(&limits.metrics);
            let conn = Connection::new(limits.timeouts);
            let tracked = Arc::clone(&conn);
            // The first byte and the whole handshake share one deadline from the accept.
            let handshake_by = tokio::time::Instant::now() + limits.tls_handshake;
            let is_tls = match &tls {
                Some(_) => match starts_with_tls_handshake(&tcp, handshake_by).await {
                    Some(is_tls) => is_tls,
                    None => {
                        on_timeout(Phase::Header);
                        return;
                    }
                },
                None => false,
            };
            let service = router
                .map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(NativeTls(is_tls));
                    req
                })
                .map_future(move |response| {
                    // In flight from now until the response is ready.
                    let in_flight = InFlight::start(&tracked);
                    async move {
                        let response = response.await;
                        drop(in_flight);
                        response
                    }
                });
            let service = TowerToHyperService::new(service);
            let served = match tls {
                Some(acceptor) if is_tls => {
                    match tokio::time::timeout_at(handshake_by, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let stream = Deadlined::new(stream, conn, on_timeout);
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            limits
                                .metrics
                                .http_connection_timeouts_total
                                .with_label_values(&["tls_handshake"])
                                .inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                _ => {
                    let stream = Deadlined::new(tcp, conn, on_timeout);
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period elapsed; abandoning remaining connections");
        }
    }
    Ok(())
}

/// Whether the connection opens with a TLS handshake record; `None` when it sent nothing
/// by `by` (it is then closed).
async fn starts_with_tls_handshake(tcp: &TcpStream, by: tokio::time::Instant) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(by, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE_RECORD),
        Ok(_) => Some(false),
        Err(_) => None,
    }
}

/// `presignd_http_connections_open`, up while this lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn count(metrics: &Arc<Metrics>) -> OpenConnection {
        metrics.http_connections_open.inc();
        OpenConnection(Arc::clone(metrics))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_connections_open.dec();
    }
}
