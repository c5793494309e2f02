//! `file://` sink: NDJSON files in the log bucket's layout
//! (`dt=YYYY-MM-DD/hour=HH/{instance}.ndjson`), fsynced before `append` returns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::{AuditError, AuditRecord, AuditSink, BoxFuture};

pub struct FileSink {
    dir: PathBuf,
    instance: String,
    open: Arc<Mutex<Option<(PathBuf, File)>>>,
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>, instance: impl Into<String>) -> Result<Self, AuditError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            instance: instance.into(),
            open: Arc::new(Mutex::new(None)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a record written at `t` belongs to.
    pub fn path_for(&self, t: OffsetDateTime) -> PathBuf {
        let t = t.to_offset(time::UtcOffset::UTC);
        self.dir
            .join(format!(
                "dt={:04}-{:02}-{:02}",
                t.year(),
                u8::from(t.month()),
                t.day()
            ))
            .join(format!("hour={:02}", t.hour()))
            .join(format!("{}.ndjson", self.instance))
    }
}

fn write_durably(
    open: &Mutex<Option<(PathBuf, File)>>,
    path: PathBuf,
    bytes: &[u8],
) -> Result<(), AuditError> {
    let mut guard = open
        .lock()
        .map_err(|_| AuditError::Task("audit file lock poisoned".into()))?;
    let result = write_locked(&mut guard, path, bytes);
    if result.is_err() {
        // The file may end in a partial line: reopen next time, which starts a fresh line.
        *guard = None;
    }
    result
}

fn write_locked(
    guard: &mut Option<(PathBuf, File)>,
    path: PathBuf,
    bytes: &[u8],
) -> Result<(), AuditError> {
    let reuse = matches!(&*guard, Some((p, _)) if *p == path);
    if !reuse {
        let parent = path.parent().unwrap_or(Path::new("."));
        let created_dir = !parent.exists();
        std::fs::create_dir_all(parent)?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        if existed && !ends_with_newline(&mut file)? {
            // A write that failed half-way left a partial line: terminate it so the next
            // record is a line of its own (readers skip the broken one).
            file.write_all(b"\n")?;
        }
        // A new directory entry is durable only once its parent directory is synced.
        if !existed {
            File::open(parent)?.sync_all()?;
        }
        if created_dir && let Some(grand) = parent.parent() {
            File::open(grand)?.sync_all()?;
            if let Some(great) = grand.parent() {
                File::open(great)?.sync_all()?;
            }
        }
        *guard = Some((path, file));
    }
    let Some((_, file)) = guard.as_mut() else {
        return Err(AuditError::Task("audit file not open".into()));
    };
    file.write_all(bytes)?;
    file.sync_data()?;
    Ok(())
}

fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};

    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

impl AuditSink for FileSink {
    fn append<'a>(&'a self, records: &'a [AuditRecord]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            let Some(first) = records.first() else {
                return Ok(());
            };
            let mut bytes = Vec::with_capacity(records.len() * 512);
            for r in records {
                serde_json::to_writer(&mut bytes, r)?;
                bytes.push(b'\n');
            }
            let path = self.path_for(first.time);
            let open = Arc::clone(&self.open);
            tokio::task::spawn_blocking(move || write_durably(&open, path, &bytes))
                .await
                .map_err(|e| AuditError::Task(e.to_string()))?
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(async move {
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || -> Result<(), AuditError> {
                // Prove the directory takes a durable write, not just that its mode bits allow it.
                std::fs::create_dir_all(&dir)?;
                let probe = dir.join(".presignd-probe");
                let mut f = File::create(&probe)?;
                f.write_all(b"ok")?;
                f.sync_data()?;
                drop(f);
                std::fs::remove_file(&probe)?;
                Ok(())
            })
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: OffsetDateTime::now_utc(),
            request_id: "r".into(),
            decision: super::super::Decision::Allow,
            reason: "allowed".into(),
            operation: "get".into(),
            access_point: None,
            bucket: None,
            key: None,
            expires_at: None,
            subject: None,
            issuer: None,
            groups: vec![],
            source_ip: None,
            user_agent: None,
            origin: None,
            tls: false,
            sse: None,
            signature_sha256: None,
            instance: "t".into(),
        }
    }

    #[tokio::test]
    async fn a_partial_line_left_by_a_crash_does_not_swallow_the_next_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(dir.path(), "t").expect("sink");
        let first = record("one");
        sink.append(std::slice::from_ref(&first))
            .await
            .expect("append");
        let path = sink.path_for(first.time);
        // Simulate a crash mid-write by another process generation.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"id":"torn"#).expect("write");
        drop(f);
        let fresh = FileSink::new(dir.path(), "t").expect("sink");
        let mut second = record("two");
        second.time = first.time;
        fresh.append(&[second]).await.expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let ids: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["one", "two"]);
        fresh.check().await.expect("writable directory is ready");
    }
}
