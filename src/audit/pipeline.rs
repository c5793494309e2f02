//! `Audit`: the outbox writer and the shipper behind one [`AuditSink`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::outbox::{Outbox, OutboxSettings};
use super::shipper::{ShipperHandle, ShipperSettings};
use super::{AuditError, AuditRecord, AuditSink, AuditStatus, BoxFuture, LogSink, SinkLocation};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::outbox::{self, WriteTurns};
use crate::store::{Store, StoredIssuance};

pub struct Audit {
    outbox: Outbox,
    shipper: ShipperHandle,
}

impl Audit {
    /// Starts the writer and the shipper (both returned as tasks to stop at shutdown). `s3`
    /// is the signer's client, whose endpoint and credentials an `s3://` sink reuses.
    pub fn start(
        config: &Config,
        store: Store,
        s3: &aws_sdk_s3::Client,
        metrics: Arc<Metrics>,
        instance: &str,
    ) -> Result<(Arc<Audit>, Vec<JoinHandle<()>>), AuditError> {
        let a = &config.audit;
        let location = SinkLocation::parse(&a.sink).map_err(AuditError::Sink)?;
        let region = a.region.as_deref().unwrap_or(&config.s3.region);
        let sink = LogSink::new(&location, s3, region)?;
        let prefix = match &location {
            SinkLocation::S3 { prefix, .. } => prefix.clone(),
            SinkLocation::File { .. } => String::new(),
        };
        let turns = WriteTurns::default();
        let checkpoints = tokio::spawn(crate::store::checkpoint::run(store.clone(), turns.clone()));
        let (outbox, writer) = Outbox::start(
            store.clone(),
            OutboxSettings {
                commit_max_records: a.commit_max_records,
                commit_max_wait: Duration::from_millis(a.commit_max_wait_ms),
            },
            turns.clone(),
            Some(metrics.audit_commit_seconds.clone()),
        );
        let (shipper, shipping) = ShipperHandle::start(
            store,
            sink,
            ShipperSettings {
                instance: instance.to_string(),
                prefix,
                batch_max_records: a.batch_max_records,
                flush_interval: Duration::from_millis(a.flush_interval_ms),
            },
            turns,
            metrics,
        );
        Ok((
            Arc::new(Audit { outbox, shipper }),
            vec![writer, shipping, checkpoints],
        ))
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn shipper(&self) -> &ShipperHandle {
        &self.shipper
    }
}

impl AuditSink for Audit {
    fn append_with<'a>(
        &'a self,
        records: &'a [AuditRecord],
        issuances: Vec<StoredIssuance>,
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.outbox.append(records, issuances))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(self.outbox.check())
    }

    fn flush(&self, within: Duration) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(self.shipper.flush(within))
    }

    fn status(&self) -> BoxFuture<'_, AuditStatus> {
        Box::pin(async move {
            AuditStatus {
                pending: outbox::count(self.outbox.store()).await.ok(),
                last_shipped_at: self.shipper.last_shipped_at(),
            }
        })
    }
}
