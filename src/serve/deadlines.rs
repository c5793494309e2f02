//! Per-connection deadlines against slow and idle clients, as Go's `net/http` draws them:
//!
//! - a connection that is waiting for its **first** request must deliver that request's
//!   headers within `header_read` of being accepted;
//! - between requests, a keep-alive connection may sit idle for `idle`; once the next
//!   request's first byte arrives, its headers must be complete within `header_read`;
//! - while a request is being handled nothing here applies (`server.request_timeout_ms`
//!   bounds the handler, body reads included).
//!
//! [`Deadlined`] wraps the connection's byte stream (the plaintext side of TLS) and fails a
//! read with `TimedOut` once the current deadline passes, which makes hyper close the
//! connection; [`Tracked`] wraps the service and tells the stream when a request is in
//! flight. HTTP/1 and HTTP/2 alike: an HTTP/2 connection with no stream open is idle.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `server.header_read_timeout_ms` and `server.idle_timeout_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Which deadline closed a connection (the `phase` label of
/// `presignd_http_connection_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the rest of a request's headers (or the first request's first byte).
    Header,
    /// Waiting for the next request on a keep-alive connection.
    Idle,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Idle => "idle",
        }
    }
}

/// What one connection's stream and service share.
#[derive(Debug)]
pub struct Connection {
    timeouts: Timeouts,
    in_flight: AtomicUsize,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    /// When the current wait began: the accept, or the end of the last request.
    since: Instant,
    /// Whether a request has been served on this connection yet.
    served: bool,
    /// When bytes of the next request first arrived during this wait.
    head_started: Option<Instant>,
}

impl Connection {
    pub fn new(timeouts: Timeouts) -> Arc<Connection> {
        Arc::new(Connection {
            timeouts,
            in_flight: AtomicUsize::new(0),
            waiting: Mutex::new(Waiting {
                since: Instant::now(),
                served: false,
                head_started: None,
            }),
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Plain values: a panic elsewhere cannot leave them inconsistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The deadline now in force and the phase it belongs to; `None` while a request is in
    /// flight.
    fn deadline(&self) -> Option<(Instant, Phase)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let w = *self.waiting();
        Some(match (w.served, w.head_started) {
            (false, _) => (w.since + self.timeouts.header_read, Phase::Header),
            (true, Some(started)) => (started + self.timeouts.header_read, Phase::Header),
            (true, None) => (w.since + self.timeouts.idle, Phase::Idle),
        })
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let mut w = self.waiting();
            if w.head_started.is_none() {
                w.head_started = Some(Instant::now());
            }
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.waiting() = Waiting {
                since: Instant::now(),
                served: true,
                head_started: None,
            };
        }
    }
}

/// Called with the phase when a deadline closes a connection (metrics, logs).
pub type OnTimeout = Arc<dyn Fn(Phase) + Send + Sync>;

/// A byte stream whose reads fail with `TimedOut` past the connection's current deadline.
pub struct Deadlined<S> {
    inner: S,
    conn: Arc<Connection>,
    sleep: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    on_timeout: OnTimeout,
}

impl<S> Deadlined<S> {
    pub fn new(inner: S, conn: Arc<Connection>, on_timeout: OnTimeout) -> Deadlined<S> {
        Deadlined {
            inner,
            conn,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            on_timeout,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.bytes_arrived();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // Nothing to read: the wait is bounded by the deadline now in force, if any.
        let Some((deadline, phase)) = this.conn.deadline() else {
            return Poll::Pending;
        };
        if this.armed_for != Some(deadline) {
            this.sleep.as_mut().reset(deadline);
            this.armed_for = Some(deadline);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                (this.on_timeout)(phase);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match phase {
                        Phase::Header => "request headers not received in time",
                        Phase::Idle => "keep-alive connection idle",
                    },
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in flight on its connection from the moment hyper hands it over until
/// its response is ready (dropped: finished, whatever the outcome).
pub struct InFlight(Arc<Connection>);

impl InFlight {
    pub fn start(conn: &Arc<Connection>) -> InFlight {
        conn.request_started();
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection_through_its_requests() {
        let conn = Connection::new(timeouts());
        let accepted = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((accepted + Duration::from_secs(5), Phase::Header)),
            "the first request's headers are due header_read after the accept"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        conn.bytes_arrived();
        assert_eq!(
            conn.deadline(),
            Some((accepted + Duration::from_secs(5), Phase::Header)),
            "still the accept's deadline for the first request"
        );
        let request = InFlight::start(&conn);
        assert_eq!(
            conn.deadline(),
            None,
            "nothing applies while a request runs"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(request);
        let idle_from = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((idle_from + Duration::from_secs(60), Phase::Idle))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        conn.bytes_arrived();
        assert_eq!(
            conn.deadline(),
            Some((Instant::now() + Duration::from_secs(5), Phase::Header)),
            "the next request's headers are due header_read after its first byte"
        );
        // Two HTTP/2 streams: idle only when both are done.
        let a = InFlight::start(&conn);
        let b = InFlight::start(&conn);
        drop(a);
        assert_eq!(conn.deadline(), None);
        drop(b);
        assert!(matches!(conn.deadline(), Some((_, Phase::Idle))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_fails_its_read_at_the_deadline() {
        use tokio::io::AsyncReadExt;
        let (client, server) = tokio::io::duplex(64);
        let conn = Connection::new(timeouts());
        let timed_out = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&timed_out);
        let mut stream = Deadlined::new(
            server,
            conn,
            Arc::new(move |phase| seen.lock().expect("lock").push(phase)),
        );
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(*timed_out.lock().expect("lock"), [Phase::Header]);
        drop(client);
    }
}
