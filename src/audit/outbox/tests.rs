//! The outbox end to end on real SQLite and PostgreSQL: the group-commit writer, the
//! shipper's claims and completions, crash resumption, the migrations of the table.

use super::*;
use crate::store::outbox::{
    BatchClaim, PG_STATEMENT_BYTES, SQLITE_ONE_WRITE_ROWS, claim, complete, count, pg_chunks,
    resume,
};

pub(crate) fn record(id: &str) -> AuditRecord {
    AuditRecord::for_tests(id)
}

/// A group-commit writer that collects for at most 2 ms.
fn start_writer(
    store: &Store,
    commit_max_records: usize,
    turns: &WriteTurns,
) -> (Outbox, JoinHandle<()>) {
    let settings = OutboxSettings {
        commit_max_records,
        commit_max_wait: Duration::from_millis(2),
    };
    Outbox::start(store.clone(), settings, turns.clone(), None)
}

/// A new batch, which the test expects to find rows.
async fn claimed(store: &Store, turns: &WriteTurns, instance: &str, limit: usize) -> BatchClaim {
    claim(store, turns, instance, limit)
        .await
        .expect("claim")
        .expect("rows")
}

/// The ids of a claim's records, in order, read from its NDJSON lines.
fn ids(claim: &BatchClaim) -> Vec<String> {
    claim
        .rows
        .iter()
        .flat_map(|r| r.lines.lines())
        .map(|l| {
            let r: AuditRecord = serde_json::from_str(l).expect("a record per line");
            r.id
        })
        .collect()
}

/// One append per id, each awaited: one commit and one row per record.
async fn append_singly(outbox: &Outbox, ids: impl IntoIterator<Item = String>) {
    for id in ids {
        outbox.append(&[record(&id)], vec![]).await.expect("append");
    }
}

async fn batch_rows(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_outbox_batches")
        .fetch_one(pool)
        .await
        .expect("batches")
}

fn encoded(id: &str, unix: i64, bytes: usize) -> Encoded {
    let mut record = record(id);
    record.time = time::OffsetDateTime::from_unix_timestamp(unix).expect("time");
    Encoded {
        line: format!("{}\n", "x".repeat(bytes.saturating_sub(1))),
        ..encode(&record).expect("encode")
    }
}

#[test]
fn records_pack_into_rows_by_hour_and_size() {
    let hour = 1_741_320_000;
    let rows = pack(&[
        encoded("a", hour, 100),
        encoded("b", hour + 1, 100),
        encoded("c", hour + 3600, 100),
        encoded("d", hour + 3601, ROW_BYTES),
        encoded("e", hour + 3602, 2 * ROW_BYTES),
        encoded("f", hour + 3599, 10),
    ]);
    let shape: Vec<(&str, &str, i64, usize)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.last_id.as_str(), r.records, r.lines.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("a", "b", 2, 200),
            ("c", "c", 1, 100),
            ("d", "d", 1, ROW_BYTES),
            ("e", "e", 1, 2 * ROW_BYTES),
            ("f", "f", 1, 10)
        ],
        "a row per hour run, none over ROW_BYTES unless one record is"
    );
    assert_eq!(
        rows[0].time, "2025-03-07T04:00:00Z",
        "the first record's time"
    );
}

proptest::proptest! {
    #[test]
    fn packing_keeps_every_record_in_order(
        records in proptest::collection::vec((-7_200i64..7_200, 1usize..6_000), 0..60)
    ) {
        let records: Vec<Encoded> = records
            .iter()
            .enumerate()
            .map(|(i, &(t, bytes))| encoded(&format!("r{i}"), t, bytes))
            .collect();
        let rows = pack(&records);
        let all: String = records.iter().map(|r| r.line.as_str()).collect();
        let packed: String = rows.iter().map(|r| r.lines.as_str()).collect();
        proptest::prop_assert_eq!(packed, all);
        let mut next = 0;
        for row in &rows {
            let n = usize::try_from(row.records).expect("count");
            let run = &records[next..next + n];
            proptest::prop_assert_eq!(&row.id, &run[0].id);
            proptest::prop_assert_eq!(&row.last_id, &run[n - 1].id);
            let hour = |r: &Encoded| r.unix.div_euclid(3600);
            proptest::prop_assert!(run.iter().all(|r| hour(r) == hour(&run[0])));
            proptest::prop_assert!(n == 1 || row.lines.len() <= ROW_BYTES);
            next += n;
        }
        proptest::prop_assert_eq!(next, records.len());
    }
}

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("o.db").display());
    let store = Store::connect(&url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

#[test]
fn large_postgres_groups_become_several_small_statements() {
    let row = |n: usize| NewRow {
        id: "i".into(),
        time: "t".into(),
        last_id: "l".into(),
        records: 1,
        lines: "x".repeat(n),
    };
    let small: Vec<NewRow> = (0..100).map(|_| row(1000)).collect();
    let refs: Vec<&NewRow> = small.iter().collect();
    let chunks = pg_chunks(&refs);
    assert_eq!(
        chunks.iter().map(Vec::len).sum::<usize>(),
        100,
        "every row, once"
    );
    assert!(chunks.len() >= 7, "{} chunks", chunks.len());
    for c in &chunks {
        let bytes: usize = c.iter().map(|r| r.lines.len() + 51).sum();
        assert!(bytes <= PG_STATEMENT_BYTES, "{bytes}");
    }
    let huge = [row(100_000)];
    let refs: Vec<&NewRow> = huge.iter().collect();
    assert_eq!(pg_chunks(&refs).len(), 1, "an oversized row goes alone");
}

#[tokio::test]
async fn the_sqlite_outbox_is_fsynced_on_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Store::Sqlite(pool) = sqlite(&dir).await else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("pragma");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&pool)
        .await
        .expect("pragma");
    assert_eq!(
        (mode.as_str(), sync),
        ("wal", 2),
        "WAL with synchronous=FULL"
    );
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_keep_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let (outbox, writer) = start_writer(&store, 64, &WriteTurns::default());
    let outbox = Arc::new(outbox);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let outbox = Arc::clone(&outbox);
        tasks.push(tokio::spawn(async move {
            outbox
                .append(&[record(&format!("id-{i:03}"))], vec![])
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    assert!(
        outbox.commits() < 300,
        "requests share transactions: {} commits",
        outbox.commits()
    );
    // A batch of 300 records (more than one SQLite statement's worth) in one append.
    let many: Vec<AuditRecord> = (0..300).map(|i| record(&format!("b-{i:03}"))).collect();
    outbox.append(&many, vec![]).await.expect("append batch");
    assert_eq!(count(&store).await.expect("count"), 600);

    let claim = claimed(&store, &WriteTurns::default(), "t", 1000).await;
    assert_eq!(claim.records(), 600);
    assert!(claim.rows.len() < 60, "{} rows", claim.rows.len());
    let first = &claim.rows[0];
    assert_eq!(
        first.unix, 1_741_320_306,
        "hour partition from the time column"
    );
    let line = first.lines.lines().next().expect("a line");
    let parsed: AuditRecord = serde_json::from_str(line).expect("record is JSON");
    assert_eq!(parsed.time, record("x").time, "the line is the record");
    let ids = ids(&claim);
    assert_eq!(ids.len(), 600);
    assert_eq!(
        ids[300..303],
        ["b-000", "b-001", "b-002"],
        "seq keeps append order"
    );
    let deleted = complete(&store, &WriteTurns::default(), &claim)
        .await
        .expect("delete");
    assert_eq!(deleted, 600, "records deleted, not rows");
    assert_eq!(count(&store).await.expect("count"), 0);
    writer.abort();
}

#[tokio::test]
async fn an_unfinished_batch_is_resumed_with_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
    let first: Vec<AuditRecord> = (0..3).map(|i| record(&format!("a{i}"))).collect();
    outbox.append(&first, vec![]).await.expect("append");
    let hour = Duration::from_secs(3600);
    let a = claimed(&store, &WriteTurns::default(), "web-a", 10).await;
    assert!(a.fresh);
    // Rows arriving later never join a claimed batch.
    outbox
        .append(&[record("late")], vec![])
        .await
        .expect("append");
    let again = resume(&store, &WriteTurns::default(), "web-a", hour)
        .await
        .expect("resume")
        .expect("own batch");
    assert_eq!(
        (ids(&again), &again.batch, again.fresh),
        (ids(&a), &a.batch, false)
    );
    assert!(
        resume(&store, &WriteTurns::default(), "web-b", hour)
            .await
            .expect("resume")
            .is_none(),
        "another instance's batch is left alone while its claim is fresh"
    );
    let b = claimed(&store, &WriteTurns::default(), "web-b", 10).await;
    assert_eq!(ids(&b), ["late"], "a new batch takes only unclaimed rows");
    complete(&store, &WriteTurns::default(), &b)
        .await
        .expect("delete");
    let taken = resume(&store, &WriteTurns::default(), "web-b", Duration::ZERO)
        .await
        .expect("resume")
        .expect("an expired claim is taken over");
    assert_eq!(
        taken.claimed_by, "web-a",
        "keys keep the first claimer's name"
    );
    assert_eq!(ids(&taken), ids(&a));
    complete(&store, &WriteTurns::default(), &a)
        .await
        .expect("delete");
    assert_eq!(count(&store).await.expect("count"), 0);
    writer.abort();
}

#[tokio::test]
async fn sqlite_batches_complete_in_one_write_or_in_chunks_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let turns = WriteTurns::default();
    let (outbox, writer) = start_writer(&store, 512, &turns);
    // One append, one commit, one row each: batches of 5 rows (one write) and of
    // 2 · SQLITE_ONE_WRITE_ROWS rows (marked, then deleted chunk by chunk).
    let big = usize::try_from(2 * SQLITE_ONE_WRITE_ROWS).expect("rows");
    append_singly(&outbox, (0..5 + big).map(|i| format!("r{i:04}"))).await;
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    for (limit, first) in [(5, "r0000"), (big, "r0005")] {
        let claim = claimed(&store, &turns, "web-a", limit).await;
        assert_eq!((claim.rows.len(), ids(&claim)[0].as_str()), (limit, first));
        let before = count(&store).await.expect("count");
        let deleted = complete(&store, &turns, &claim).await.expect("complete");
        assert_eq!(
            deleted, limit as u64,
            "every record of the batch is counted once"
        );
        assert_eq!(count(&store).await.expect("count"), before - limit as u64);
        assert_eq!(
            batch_rows(pool).await,
            0,
            "the batch row goes with its rows"
        );
    }
    assert_eq!(count(&store).await.expect("count"), 0);
    writer.abort();
}

#[tokio::test]
async fn a_sqlite_batch_interrupted_while_deleting_is_finished_not_shipped_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let turns = WriteTurns::default();
    let (outbox, writer) = start_writer(&store, 512, &turns);
    // One append, one commit, one row each.
    append_singly(&outbox, (0..20).map(|i| format!("r{i:03}"))).await;
    let a = claimed(&store, &turns, "web-a", 15).await;
    assert_eq!((a.rows.len(), a.records()), (15, 15));
    // The crash: objects stored and marked, only the first delete chunk done.
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    sqlx::query("UPDATE audit_outbox_batches SET shipped = 1")
        .execute(pool)
        .await
        .expect("mark");
    sqlx::query("DELETE FROM audit_outbox WHERE id < 'r006'")
        .execute(pool)
        .await
        .expect("partial delete");
    let again = resume(&store, &turns, "web-a", Duration::from_secs(3600))
        .await
        .expect("resume")
        .expect("the batch");
    assert!(again.shipped, "resumed as shipped: never put again");
    assert_eq!(
        (again.batch.as_str(), again.rows.len()),
        (a.batch.as_str(), 9)
    );
    let finished = complete(&store, &turns, &again).await.expect("finish");
    assert_eq!(finished, 9, "only what was left is counted");
    assert_eq!(count(&store).await.expect("count"), 5, "only its rows went");
    assert_eq!(batch_rows(pool).await, 0);
    let b = claimed(&store, &turns, "web-a", 512).await;
    let ids = ids(&b);
    assert_eq!(
        (ids.len(), ids[0].as_str()),
        (5, "r015"),
        "the next batch starts after it"
    );
    complete(&store, &turns, &b).await.expect("delete");
    assert_eq!(count(&store).await.expect("count"), 0);
    writer.abort();
}

#[tokio::test]
async fn records_written_before_migration_0006_keep_their_rows_batches_and_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("o.db").display());
    let store = Store::connect(&url, 4).await.expect("connect");
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let mut before = sqlx::migrate!("./migrations/sqlite");
    let upto = before
        .migrations
        .iter()
        .position(|m| m.version == 6)
        .expect("migration 0006");
    before.migrations = std::borrow::Cow::Owned(before.migrations[..upto].to_vec());
    before.run(pool).await.expect("migrate to 0005");
    // One record per row, then: seq 1-2 claimed by web-a, 3 pending, 4 deleted (shipped).
    for i in 1..=4 {
        let line = serde_json::to_string(&record(&format!("old{i}"))).expect("json");
        sqlx::query("INSERT INTO audit_outbox (id, time, record) VALUES (?, ?, ?)")
            .bind(format!("old{i}"))
            .bind("2025-03-07T04:05:06.123456789Z")
            .bind(line)
            .execute(pool)
            .await
            .expect("old row");
    }
    sqlx::query("DELETE FROM audit_outbox WHERE seq = 4")
        .execute(pool)
        .await
        .expect("delete");
    sqlx::query(
        "INSERT INTO audit_outbox_batches (batch, claimed_by, claimed_at, first_seq, last_seq) \
         VALUES ('old-batch', 'web-a', 0, 1, 2)",
    )
    .execute(pool)
    .await
    .expect("batch");

    store.migrate().await.expect("migrate");
    assert_eq!(count(&store).await.expect("count"), 3);
    let turns = WriteTurns::default();
    let (outbox, writer) = start_writer(&store, 512, &turns);
    outbox
        .append(&[record("new")], vec![])
        .await
        .expect("append");
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_outbox WHERE id = 'new'")
        .fetch_one(pool)
        .await
        .expect("seq");
    assert_eq!(seq, 5, "the sequence carries on past the deleted row");
    let old = resume(&store, &turns, "web-a", Duration::from_secs(3600))
        .await
        .expect("resume")
        .expect("the old batch");
    assert_eq!(
        (old.batch.as_str(), ids(&old)),
        ("old-batch", vec!["old1".to_string(), "old2".into()])
    );
    let line = old.rows[0].lines.strip_suffix('\n').expect("a whole line");
    let parsed: AuditRecord = serde_json::from_str(line).expect("the line is the record");
    assert_eq!(parsed, record("old1"));
    let next = claimed(&store, &turns, "web-a", 100).await;
    assert_eq!(ids(&next), ["old3", "new"]);
    writer.abort();
}

#[tokio::test]
async fn a_claim_closes_with_the_row_that_reaches_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let turns = WriteTurns::default();
    let (outbox, writer) = start_writer(&store, 512, &turns);
    for run in 0..4 {
        let records: Vec<AuditRecord> = (0..3).map(|i| record(&format!("r{run}{i}"))).collect();
        outbox.append(&records, vec![]).await.expect("append");
    }
    let a = claimed(&store, &turns, "web-a", 4).await;
    assert_eq!(
        (a.rows.len(), a.records()),
        (2, 6),
        "3 + 3: the second row reaches 4"
    );
    let b = claimed(&store, &turns, "web-a", 3).await;
    assert_eq!((b.rows.len(), b.records()), (1, 3));
    let c = claimed(&store, &turns, "web-a", 100).await;
    assert_eq!(
        (c.records(), ids(&c)[2].as_str()),
        (3, "r32"),
        "short of the limit: the outbox ran out"
    );
    writer.abort();
}

#[tokio::test]
async fn a_failed_commit_fails_every_waiter_and_the_writer_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
    outbox
        .append(&[record("dup")], vec![])
        .await
        .expect("first");
    // A row starting with a duplicate id violates audit_outbox_id_key: the whole group
    // fails, nothing is kept.
    let err = outbox
        .append(&[record("dup"), record("fresh")], vec![])
        .await
        .expect_err("constraint");
    assert!(matches!(err, AuditError::Database(_)), "{err}");
    assert_eq!(count(&store).await.expect("count"), 1);
    outbox
        .append(&[record("later")], vec![])
        .await
        .expect("recovers");
    assert_eq!(count(&store).await.expect("count"), 2);
    writer.abort();
}

fn issuance(id: &str) -> StoredIssuance {
    StoredIssuance {
        issuance_id: id.to_string(),
        kind: crate::store::IssuanceKind::Put,
        access_point: "uploads".into(),
        bucket: "b".into(),
        object_key: format!("alice/{id}"),
        key_is_prefix: false,
        issuer: "https://idp.test/".into(),
        subject: "alice".into(),
        groups: vec!["users".into()],
        min_length: 0,
        max_length: Some(6),
        content_type: None,
        checksum_sha256: None,
        encryption: crate::policy::Encryption::None,
        metadata: Default::default(),
        created_at: 1_800_000_000,
        expires_at: 1_800_000_900,
        keep_until: 1_800_090_000,
        state: crate::store::IssuanceState::Issued,
        outcome: None,
        upload_id: None,
    }
}

#[tokio::test]
async fn issuances_commit_with_their_records_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
    outbox
        .append(&[record("r1")], vec![issuance("r1")])
        .await
        .expect("append");
    let stored = store.issuance("r1").await.expect("read").expect("stored");
    assert_eq!(stored, issuance("r1"));
    // The same issuance id again violates the table's key: the group's transaction fails,
    // and its record is not kept either (one transaction, not two writes).
    let err = outbox
        .append(&[record("r2")], vec![issuance("r1")])
        .await
        .expect_err("duplicate issuance");
    assert!(matches!(err, AuditError::Database(_)), "{err}");
    assert_eq!(
        count(&store).await.expect("count"),
        1,
        "r2 was not committed"
    );
    // Many in one group: every one lands.
    let many: Vec<StoredIssuance> = (0..600).map(|i| issuance(&format!("m{i}"))).collect();
    let records: Vec<AuditRecord> = (0..600).map(|i| record(&format!("m{i}"))).collect();
    outbox.append(&records, many).await.expect("append many");
    for i in [0, 499, 500, 599] {
        assert!(
            store
                .issuance(&format!("m{i}"))
                .await
                .expect("read")
                .is_some(),
            "m{i}"
        );
    }
    writer.abort();
}

#[tokio::test]
async fn refused_data_fails_only_its_own_request_not_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir).await;
    let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
    outbox
        .append(&[record("first")], vec![issuance("taken")])
        .await
        .expect("append");
    let commits = outbox.commits();
    // Both appends are queued before the writer runs (one thread: it runs when this task
    // waits), so they share a group; the second one's issuance id is taken.
    let outbox = Arc::new(outbox);
    let (good, bad) = tokio::join!(
        {
            let outbox = Arc::clone(&outbox);
            async move {
                outbox
                    .append(&[record("good")], vec![issuance("fresh")])
                    .await
            }
        },
        {
            let outbox = Arc::clone(&outbox);
            async move {
                outbox
                    .append(&[record("bad")], vec![issuance("taken")])
                    .await
            }
        },
    );
    good.expect("the other request of the group is committed");
    assert!(matches!(bad, Err(AuditError::Database(_))), "{bad:?}");
    assert!(store.issuance("fresh").await.expect("read").is_some());
    assert_eq!(
        count(&store).await.expect("count"),
        2,
        "first and good; not bad"
    );
    assert!(outbox.commits() > commits);
    writer.abort();
}
