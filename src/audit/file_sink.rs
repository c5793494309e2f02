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
    let reuse = matches!(&*guard, Some((p, _)) if *p == path);
    if !reuse {
        let parent = path.parent().unwrap_or(Path::new("."));
        let created_dir = !parent.exists();
        std::fs::create_dir_all(parent)?;
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
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
                std::fs::create_dir_all(&dir)?;
                let meta = std::fs::metadata(&dir)?;
                if meta.permissions().readonly() {
                    return Err(AuditError::Io(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "audit directory is read-only",
                    )));
                }
                Ok(())
            })
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
        })
    }
}
