//! The shipper: one background task per instance that moves outbox rows to the log sink.
//!
//! Each round first takes up unfinished batches (its own, left by a failed PUT or a crash, or
//! another instance's whose claim is older than `CLAIM_LEASE`), then claims the oldest
//! unclaimed rows, up to the one that reaches `batch_max_records` records (a row holds a group
//! commit's run of records). A claim names the batch and its claimer in one statement: on
//! PostgreSQL by stamping the rows (locked `FOR UPDATE SKIP LOCKED`, so instances never claim
//! the same row), on SQLite as one row naming a range of `seq`. The batch is split by hour
//! partition into gzip NDJSON objects under `{instance}-{first_id}-{last_id}` keys, and its
//! rows are deleted only after every object was stored. Rounds repeat while new batches come
//! back full, then the task sleeps for `flush_interval` (or until someone asks for a flush).
//! While the sink fails, it backs off exponentially with jitter, up to `MAX_BACKOFF`; the
//! outbox grows meanwhile and drains when the sink is back.
//!
//! A batch never changes once claimed, and its keys depend only on its rows and its first
//! claimer: shipping it again — after a failed PUT, a PUT whose answer was lost, a crash
//! before the delete, or a takeover — rewrites the same objects. Every record lands in exactly
//! one object.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::log_sink::{encode_ndjson_gz, object_key};
use super::{AuditError, LogSink};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::outbox::{self, BatchClaim, Pending, WriteTurns};

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After this long, a batch claimed by another instance counts as abandoned (that instance
/// died and did not come back under its name) and is shipped by whoever finds it.
const CLAIM_LEASE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ShipperSettings {
    pub instance: String,
    /// Key prefix in the log sink: empty or ending with `/`.
    pub prefix: String,
    pub batch_max_records: usize,
    pub flush_interval: Duration,
}

type FlushReply = oneshot::Sender<Result<u64, String>>;

/// Talks to the running shipper.
#[derive(Clone)]
pub struct ShipperHandle {
    flush: mpsc::Sender<FlushReply>,
    /// Unix milliseconds of the last stored batch; 0 = none yet.
    last_shipped: Arc<AtomicI64>,
}

impl ShipperHandle {
    /// Starts the shipper task; it ships at once (a backlog left by a crash goes first).
    pub(crate) fn start(
        store: Store,
        sink: LogSink,
        settings: ShipperSettings,
        turns: WriteTurns,
        metrics: Arc<Metrics>,
    ) -> (ShipperHandle, JoinHandle<()>) {
        let (flush, requests) = mpsc::channel(64);
        let last_shipped = Arc::new(AtomicI64::new(0));
        let shipper = Shipper {
            store,
            sink,
            settings,
            turns,
            metrics,
            last_shipped: Arc::clone(&last_shipped),
        };
        let task = tokio::spawn(shipper.run(requests));
        (
            ShipperHandle {
                flush,
                last_shipped,
            },
            task,
        )
    }

    /// Ships everything in the outbox now. Returns how many records were shipped, or the
    /// error that stopped this round.
    pub async fn flush_once(&self) -> Result<u64, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.flush
            .send(reply)
            .await
            .map_err(|_| AuditError::Stopped)?;
        answer
            .await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Shipping)
    }

    /// Ships everything in the outbox, retrying failed rounds, for at most `within`.
    pub async fn flush(&self, within: Duration) -> Result<(), AuditError> {
        let attempts = async {
            let mut failures = 0;
            loop {
                match self.flush_once().await {
                    Ok(_) => return Ok(()),
                    Err(AuditError::Stopped) => return Err(AuditError::Stopped),
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "audit flush: round failed; retrying");
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
        };
        tokio::time::timeout(within, attempts)
            .await
            .map_err(|_| AuditError::FlushTimeout(within))?
    }

    pub fn last_shipped_at(&self) -> Option<OffsetDateTime> {
        match self.last_shipped.load(Ordering::Relaxed) {
            0 => None,
            ms => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok(),
        }
    }
}

struct Shipper {
    store: Store,
    sink: LogSink,
    settings: ShipperSettings,
    /// Taken for each statement that writes the outbox, so the writer never waits in SQLite.
    turns: WriteTurns,
    metrics: Arc<Metrics>,
    last_shipped: Arc<AtomicI64>,
}

/// `MIN_BACKOFF · 2^(failures-1)`, capped at `MAX_BACKOFF`, times a random factor in
/// [0.5, 1) so that instances which failed together do not retry together.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = MIN_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(MAX_BACKOFF).mul_f64(rand::random_range(0.5..1.0))
}

impl Shipper {
    async fn run(self, mut requests: mpsc::Receiver<FlushReply>) {
        tracing::info!(sink = %self.sink.describe(), "audit shipper started");
        let mut failures: u32 = 0;
        let mut waiting: Vec<FlushReply> = Vec::new();
        loop {
            // Everyone who asked before this round starts is answered by it.
            while let Ok(w) = requests.try_recv() {
                waiting.push(w);
            }
            let result = self.drain().await;
            self.refresh_pending().await;
            let answer = match result {
                Ok(n) => {
                    failures = 0;
                    Ok(n)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.audit_ship_failures_total.inc();
                    tracing::warn!(error = %e, failures, "audit shipping failed; the outbox keeps the records");
                    Err(e.to_string())
                }
            };
            for w in waiting.drain(..) {
                let _ = w.send(answer.clone());
            }
            let pause = if failures == 0 {
                self.settings.flush_interval
            } else {
                backoff(failures)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                request = requests.recv() => match request {
                    Some(w) => waiting.push(w),
                    None => return,
                },
            }
        }
    }

    /// Ships unfinished batches, then new ones until one comes back short (the outbox held
    /// no more unclaimed rows at that point).
    async fn drain(&self) -> Result<u64, AuditError> {
        let mut shipped = 0;
        let (store, turns, instance) = (&self.store, &self.turns, &self.settings.instance);
        // Unfinished batches first. Only a failed round (which ends the drain) or another
        // instance leaves one, so they are looked for once per round, not before every batch.
        let mut resuming = true;
        loop {
            let mut claim = None;
            if resuming {
                claim = outbox::resume(store, turns, instance, CLAIM_LEASE).await?;
                resuming = claim.is_some();
            }
            if claim.is_none() {
                claim =
                    outbox::claim(store, turns, instance, self.settings.batch_max_records).await?;
            }
            let Some(claim) = claim else {
                return Ok(shipped);
            };
            let (n, fresh) = (claim.records(), claim.fresh);
            self.ship(claim).await?;
            shipped += n;
            if fresh && n < u64::try_from(self.settings.batch_max_records).unwrap_or(u64::MAX) {
                return Ok(shipped);
            }
        }
    }

    /// Stores a claimed batch's objects, then deletes its rows. On failure the rows stay
    /// claimed, and the next round ships the same batch again. A batch whose objects were
    /// stored before a crash interrupted its deletes is only finished.
    async fn ship(&self, mut claim: BatchClaim) -> Result<(), AuditError> {
        if !claim.shipped {
            let (prefix, claimed_by) = (self.settings.prefix.clone(), claim.claimed_by.clone());
            let rows = std::mem::take(&mut claim.rows);
            let objects = tokio::task::spawn_blocking(move || objects(&rows, &prefix, &claimed_by))
                .await
                .map_err(|e| AuditError::Task(e.to_string()))??;
            for (key, body) in objects {
                self.sink.put(&key, body).await?;
            }
        }
        // Counted as the rows go: a batch whose delete failed part-way, or that another
        // instance took over, is not counted twice.
        let deleted = outbox::complete(&self.store, &self.turns, &claim).await?;
        self.metrics.audit_shipped_total.inc_by(deleted);
        let now = OffsetDateTime::now_utc();
        let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        self.last_shipped.store(ms, Ordering::Relaxed);
        self.metrics
            .audit_last_ship_timestamp_seconds
            .set(ms as f64 / 1000.0);
        tracing::debug!(batch = %claim.batch, "audit batch shipped");
        Ok(())
    }

    async fn refresh_pending(&self) {
        match outbox::count(&self.store).await {
            Ok(n) => self
                .metrics
                .audit_outbox_pending
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => tracing::debug!(error = %e, "cannot count the audit outbox"),
        }
    }
}

/// Splits a batch (in `seq` order) by hour partition: one `(key, gzip NDJSON)` per hour, in
/// the order the hours first appear. A row's records share its hour; the key names the hour's
/// first and last record.
pub(crate) fn objects(
    rows: &[Pending],
    prefix: &str,
    instance: &str,
) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
    let mut groups: Vec<(i64, Vec<&Pending>)> = Vec::new();
    for row in rows {
        let hour = row.unix.div_euclid(3600);
        match groups.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, g)) => g.push(row),
            None => groups.push((hour, vec![row])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(hour, group)| Some((hour, group.first()?.id.clone(), group)))
        .map(|(hour, first, group)| {
            let last = group.last().map_or(first.as_str(), |r| r.last_id.as_str());
            let t = OffsetDateTime::from_unix_timestamp(hour * 3600)
                .map_err(|e| AuditError::Task(format!("record time: {e}")))?;
            let key = object_key(prefix, t, instance, &first, last);
            let body = encode_ndjson_gz(group.iter().map(|r| r.lines.as_str()))?;
            Ok((key, body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row holding the records `ids`.
    fn row(seq: i64, ids: &[&str], unix: i64) -> Pending {
        Pending {
            seq,
            id: ids[0].into(),
            last_id: ids[ids.len() - 1].into(),
            unix,
            records: ids.len() as i64,
            lines: ids
                .iter()
                .map(|id| format!("{{\"id\":\"{id}\"}}\n"))
                .collect(),
        }
    }

    fn gunzip(body: &[u8]) -> String {
        use std::io::Read as _;
        let mut text = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .expect("gzip");
        text
    }

    #[test]
    fn a_batch_becomes_one_object_per_hour() {
        // 2025-03-07 04:59:59, 05:00:00, 04:59:58 (a late commit), 05:10.
        let rows = [
            row(1, &["a", "a2"], 1_741_323_599),
            row(2, &["b"], 1_741_323_600),
            row(3, &["c1", "c"], 1_741_323_598),
            row(4, &["d", "d2", "d3"], 1_741_324_200),
        ];
        let objects = objects(&rows, "audit/", "web-1").expect("objects");
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "audit/dt=2025-03-07/hour=04/web-1-a-c.ndjson.gz",
                "audit/dt=2025-03-07/hour=05/web-1-b-d3.ndjson.gz"
            ]
        );
        assert_eq!(
            gunzip(&objects[0].1),
            "{\"id\":\"a\"}\n{\"id\":\"a2\"}\n{\"id\":\"c1\"}\n{\"id\":\"c\"}\n",
            "the hour's rows in seq order, each record on its line"
        );
        let again = super::objects(&rows, "audit/", "web-1").expect("objects");
        assert_eq!(
            objects, again,
            "the same batch always makes the same objects"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for failures in 1..40 {
            let d = backoff(failures);
            let full = MIN_BACKOFF
                .saturating_mul(1u32 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(d >= full / 2 && d < full, "{failures}: {d:?} vs {full:?}");
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
