//! Audit: every decision becomes a record, and a URL is returned only after its record is
//! durable. Sinks sit behind one seam so the SQL outbox and the S3 log bucket can join the
//! `file://` sink.

mod file_sink;
mod record;

use std::future::Future;
use std::pin::Pin;

pub use file_sink::FileSink;
pub use record::{AuditRecord, Decision, signature_sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit sink I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit record serialization failed: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("audit sink task failed: {0}")]
    Task(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where audit records go. `append` returns only when the records are durable.
pub trait AuditSink: Send + Sync + 'static {
    fn append<'a>(&'a self, records: &'a [AuditRecord]) -> BoxFuture<'a, Result<(), AuditError>>;
    /// Whether the sink can currently accept records (for `/readyz`).
    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>>;
}
