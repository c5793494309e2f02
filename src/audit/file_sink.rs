//! `file://` log sink: the log bucket's layout in a directory, for the embedded default. An
//! object is written to a temporary file, fsynced, renamed into place and its directory
//! fsynced, so a reader (or a crash) sees either the whole object or none of it, and a retried
//! batch replaces its earlier copy.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use super::AuditError;

pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an object key maps to; keys never leave the directory.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, AuditError> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(AuditError::Sink(format!("unusable object key {key:?}")));
        }
        Ok(self.dir.join(rel))
    }

    /// Stores `body` under `key` atomically and durably.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), AuditError> {
        let path = self.path_for(key)?;
        let root = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&root, &path, &body))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }

    /// Whether the directory takes a durable write.
    pub async fn check(&self) -> Result<(), AuditError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), AuditError> {
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
    }
}

fn write_atomically(root: &Path, path: &Path, body: &[u8]) -> Result<(), AuditError> {
    let parent = path
        .parent()
        .ok_or_else(|| AuditError::Sink("object key has no directory".into()))?;
    create_dirs_durably(root, parent)?;
    let name = path
        .file_name()
        .ok_or_else(|| AuditError::Sink("object key has no file name".into()))?
        .to_string_lossy();
    // Hidden, and unique per attempt: readers skip dot files, and two writers never share one.
    let tmp = parent.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| -> Result<(), AuditError> {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(parent)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `create_dir_all`, then fsync each directory that gained an entry, so the new directories
/// survive a crash together with the file inside them.
fn create_dirs_durably(root: &Path, dir: &Path) -> Result<(), AuditError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if d != root => d = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_are_written_whole_and_replaced_on_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(dir.path().join("audit")).expect("sink");
        let key = "p/dt=2025-01-01/hour=00/i-a-b.ndjson.gz";
        sink.put(key, b"first".to_vec()).await.expect("put");
        sink.put(key, b"second".to_vec()).await.expect("retry");
        let path = sink.path_for(key).expect("path");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
        sink.check().await.expect("writable directory is ready");
    }

    #[test]
    fn keys_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(dir.path()).expect("sink");
        for bad in ["", "../x", "/etc/passwd", "a/../../x", "./x"] {
            assert!(sink.path_for(bad).is_err(), "{bad}");
        }
        assert!(sink.path_for("dt=x/hour=y/z.gz").is_ok());
    }
}
