//! Where shipped batches go: the S3 log bucket (`s3://bucket/prefix/`) or a directory with the
//! same layout (`file:///dir`). Each batch is one gzip NDJSON object under
//! `{prefix}dt=YYYY-MM-DD/hour=HH/{instance}-{first_id}-{last_id}.ndjson.gz`: Hive-style
//! partitions for Athena, and a key that depends only on the batch, so a retried batch
//! overwrites its earlier copy instead of duplicating it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::config::Region;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{AuditError, FileSink};

/// `audit.sink`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkLocation {
    /// `s3://bucket/prefix/`: `prefix` is empty or ends with `/`.
    S3 { bucket: String, prefix: String },
    /// `file:///absolute/dir` or `file://relative/dir`.
    File { dir: PathBuf },
}

impl SinkLocation {
    pub fn parse(sink: &str) -> Result<SinkLocation, String> {
        if let Some(dir) = sink.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(
                    "file:// needs a directory, e.g. file:///var/lib/presignd/audit".into(),
                );
            }
            return Ok(SinkLocation::File {
                dir: PathBuf::from(dir),
            });
        }
        let Some(rest) = sink.strip_prefix("s3://") else {
            return Err(
                "must be s3://bucket/prefix/ (the log bucket) or file:///dir (same layout on disk)"
                    .into(),
            );
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket)?;
        if prefix.starts_with('/') || prefix.contains("//") {
            return Err(format!(
                "the key prefix {prefix:?} must not contain empty segments"
            ));
        }
        if prefix.chars().any(char::is_control) || prefix.len() > 512 {
            return Err("the key prefix must be printable and at most 512 bytes".into());
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Ok(SinkLocation::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The log bucket, for an S3 sink.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            SinkLocation::S3 { bucket, .. } => Some(bucket),
            SinkLocation::File { .. } => None,
        }
    }
}

/// S3 general purpose bucket naming rules.
fn check_bucket_name(b: &str) -> Result<(), String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ip_like = b.split('.').count() == 4 && b.split('.').all(|p| p.parse::<u8>().is_ok());
    if !(3..=63).contains(&b.len())
        || !ok_chars
        || !ends_ok(b.chars().next())
        || !ends_ok(b.chars().last())
        || b.contains("..")
        || ip_like
    {
        return Err(format!("{b:?} is not a valid S3 bucket name"));
    }
    Ok(())
}

/// The object key of a batch (`prefix` is empty or ends with `/`).
pub fn object_key(
    prefix: &str,
    hour: OffsetDateTime,
    instance: &str,
    first_id: &str,
    last_id: &str,
) -> String {
    let t = hour.to_offset(time::UtcOffset::UTC);
    format!(
        "{prefix}dt={:04}-{:02}-{:02}/hour={:02}/{instance}-{first_id}-{last_id}.ndjson.gz",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

/// Gzip NDJSON: one record per line. `chunks` are NDJSON text, each made of whole lines (every
/// line ending with `\n`), concatenated as they come.
pub fn encode_ndjson_gz<'a>(
    chunks: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u8>, AuditError> {
    // The fastest level: NDJSON still shrinks several times, at a third of the CPU of the
    // default level (measured: the default level was the shipper's largest cost).
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for chunk in chunks {
        gz.write_all(chunk.as_bytes())?;
    }
    Ok(gz.finish()?)
}

pub enum LogSink {
    S3(S3LogSink),
    File(FileSink),
}

pub struct S3LogSink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl LogSink {
    /// The sink for `location`. An S3 sink reuses `s3` (the signer's client: its endpoint,
    /// path style and credentials) with the log bucket's region.
    pub fn new(
        location: &SinkLocation,
        s3: &aws_sdk_s3::Client,
        region: &str,
    ) -> Result<LogSink, AuditError> {
        Ok(match location {
            SinkLocation::S3 { bucket, .. } => {
                let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build();
                let conf = s3
                    .config()
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .timeout_config(timeouts)
                    .build();
                LogSink::S3(S3LogSink {
                    client: aws_sdk_s3::Client::from_conf(conf),
                    bucket: bucket.clone(),
                })
            }
            SinkLocation::File { dir } => LogSink::File(FileSink::new(dir)?),
        })
    }

    /// Writes one object; returns only when it is stored (S3: PUT acknowledged; file: renamed
    /// into place and fsynced).
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), AuditError> {
        match self {
            LogSink::S3(s3) => s3.put(key, body).await,
            LogSink::File(f) => f.put(key, body).await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            LogSink::S3(s3) => format!("s3://{}", s3.bucket),
            LogSink::File(f) => format!("file://{}", f.dir().display()),
        }
    }
}

impl S3LogSink {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), AuditError> {
        // Declared, so S3 verifies the bytes it stores against what was encoded.
        let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/gzip")
            .checksum_sha256(checksum)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                AuditError::Sink(format!(
                    "PUT s3://{}/{key}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn sink_urls_parse_and_normalize() {
        assert_eq!(
            SinkLocation::parse("s3://acme-logs/presignd"),
            Ok(SinkLocation::S3 {
                bucket: "acme-logs".into(),
                prefix: "presignd/".into()
            })
        );
        assert_eq!(
            SinkLocation::parse("s3://acme-logs"),
            Ok(SinkLocation::S3 {
                bucket: "acme-logs".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            SinkLocation::parse("s3://acme-logs/a/b/"),
            Ok(SinkLocation::S3 {
                bucket: "acme-logs".into(),
                prefix: "a/b/".into()
            })
        );
        assert_eq!(
            SinkLocation::parse("file:///var/audit"),
            Ok(SinkLocation::File {
                dir: "/var/audit".into()
            })
        );
        for bad in [
            "s3://x",
            "s3://Acme",
            "s3://acme..logs",
            "s3://192.168.1.1",
            "s3://acme-logs//x",
            "file://",
            "https://acme-logs",
            "",
        ] {
            assert!(SinkLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_hive_partitions_named_by_the_batch() {
        let t = time::macros::datetime!(2025-03-07 04:59:59.9 +02:00);
        assert_eq!(
            object_key("logs/", t, "web-1", "a", "b"),
            "logs/dt=2025-03-07/hour=02/web-1-a-b.ndjson.gz"
        );
        let t = time::macros::datetime!(2025-01-01 00:30 -01:00);
        assert_eq!(
            object_key("", t, "i", "a", "a"),
            "dt=2025-01-01/hour=01/i-a-a.ndjson.gz"
        );
    }

    #[test]
    fn batches_are_gzip_ndjson() {
        let body = encode_ndjson_gz(["{\"id\":\"1\"}\n", "{\"id\":\"2\"}\n"]).expect("encode");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text, "{\"id\":\"1\"}\n{\"id\":\"2\"}\n");
    }
}
