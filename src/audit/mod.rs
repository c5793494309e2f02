//! Audit: every decision becomes a record, and a URL is returned only after its record is
//! durable (docs/audit.md).
//!
//! Two stages. The **outbox** (`outbox`) is a table in the configured database: `append`
//! returns once the record is committed there, many concurrent requests sharing one
//! transaction (group commit). The **shipper** (`shipper`) moves committed records in batches
//! to the **log sink** (`log_sink`): the S3 log bucket, or a `file://` directory with the same
//! layout, as gzip NDJSON objects under deterministic keys, and deletes the rows only after the
//! object was written. `Audit` (`pipeline`) ties the two together behind [`AuditSink`], the
//! seam the HTTP layer sees.

mod file_sink;
mod guard;
mod log_sink;
mod outbox;
mod pipeline;
mod record;
mod shipper;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::StoredIssuance;

pub use file_sink::FileSink;
pub use guard::{check_log_destination, refuse_log_loops};
pub use log_sink::{LogSink, SinkLocation, object_key};
pub use outbox::{Outbox, OutboxSettings};
pub use pipeline::Audit;
pub use record::{AuditRecord, Verdict, policy_sha256, signature_sha256};
pub use shipper::{ShipperHandle, ShipperSettings};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit sink I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit record serialization failed: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("audit sink task failed: {0}")]
    Task(String),
    #[error("audit outbox: {0}")]
    Database(String),
    #[error("audit log sink: {0}")]
    Sink(String),
    #[error("audit shipping failed: {0}")]
    Shipping(String),
    #[error("the audit pipeline is not running")]
    Stopped,
    #[error("audit flush did not finish within {0:?}")]
    FlushTimeout(Duration),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Database(e.to_string())
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `/readyz` reports about the pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditStatus {
    /// Records committed but not yet in the log sink (`None`: could not be counted).
    pub pending: Option<u64>,
    /// When a batch last reached the log sink (`None`: not since this process started).
    pub last_shipped_at: Option<OffsetDateTime>,
}

/// Where the HTTP layer sends audit records. `append` returns only when the records are
/// durable; a URL is issued only after that.
pub trait AuditSink: Send + Sync + 'static {
    /// `records` and the upload issuances their decisions made, durable together: one
    /// transaction, so an upload URL never exists without both (and a group commit carries
    /// them, instead of a write of their own that the commit path would wait behind).
    fn append_with<'a>(
        &'a self,
        records: &'a [AuditRecord],
        issuances: Vec<StoredIssuance>,
    ) -> BoxFuture<'a, Result<(), AuditError>>;
    fn append<'a>(&'a self, records: &'a [AuditRecord]) -> BoxFuture<'a, Result<(), AuditError>> {
        self.append_with(records, Vec::new())
    }
    /// Whether the sink can currently accept records (for `/readyz`).
    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>>;
    /// Moves everything durable so far to its final destination, giving up after `within`.
    /// Single-stage sinks have nothing to do.
    fn flush(&self, within: Duration) -> BoxFuture<'_, Result<(), AuditError>> {
        let _ = within;
        Box::pin(async { Ok(()) })
    }
    /// Backlog and last shipment, for `/readyz`.
    fn status(&self) -> BoxFuture<'_, AuditStatus> {
        Box::pin(async { AuditStatus::default() })
    }
}
