//! `upload.quota`: how much one subject may upload through an access point, in bytes and in
//! objects, over a rolling window or in total. Pure: parsing and the arithmetic of a
//! reservation; the atomic reservation itself is `store::issuances`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `upload.quota`. At least one limit is set (checked with the access point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuota {
    /// Bytes per subject: an integer, or a string with a unit (`"10GiB"`, `"500MB"`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "byte_size"
    )]
    pub bytes_per_subject: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_per_subject: Option<u64>,
    /// `"total"`, or a rolling window: `"30d"`, `"24h"`.
    #[serde(default)]
    pub window: QuotaWindow,
}

/// Over what time uploads count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuotaWindow {
    /// Every upload ever issued through the access point.
    #[default]
    Total,
    /// Uploads issued in the last this many seconds.
    Rolling(u64),
}

impl QuotaWindow {
    /// The earliest issuance time (Unix seconds) that counts at `now`.
    pub fn start(self, now: i64) -> i64 {
        match self {
            QuotaWindow::Total => i64::MIN,
            QuotaWindow::Rolling(secs) => {
                now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX))
            }
        }
    }

    /// Until when an issuance created at `created_at` still counts.
    pub fn counts_until(self, created_at: i64) -> i64 {
        match self {
            QuotaWindow::Total => i64::MAX,
            QuotaWindow::Rolling(secs) => {
                created_at.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
            }
        }
    }
}

impl std::fmt::Display for QuotaWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            QuotaWindow::Total => f.write_str("total"),
            QuotaWindow::Rolling(s) if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            QuotaWindow::Rolling(s) if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            QuotaWindow::Rolling(s) => write!(f, "{s}s"),
        }
    }
}

/// The longest rolling window: ten years.
const MAX_WINDOW_SECONDS: u64 = 10 * 366 * 86_400;

impl std::str::FromStr for QuotaWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "total" {
            return Ok(QuotaWindow::Total);
        }
        let bad = || {
            format!(
                "window {s:?}: expected \"total\" or a number of days, hours or seconds (\"30d\", \"24h\", \"3600s\")"
            )
        };
        let split = s.len().checked_sub(1).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "d" => n.checked_mul(86_400),
            "h" => n.checked_mul(3_600),
            "s" => Some(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        if secs == 0 || secs > MAX_WINDOW_SECONDS {
            return Err(format!(
                "window {s:?}: must be more than 0 and at most 3660d"
            ));
        }
        Ok(QuotaWindow::Rolling(secs))
    }
}

impl Serialize for QuotaWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuotaWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte count: an integer, or a string with an SI or IEC unit.
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// `"10GiB"`, `"500MB"`, `"1024"`, `"1.5GiB"` is refused (whole numbers only).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size (e.g. 10GiB, 500MB, 1048576)"))?;
    let k: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    n.checked_mul(k)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// One subject's use of a quota at some moment: bytes reserved by live issuances plus bytes
/// of verified objects still there, and the objects those are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub used_bytes: u64,
    pub reserved_bytes: u64,
    pub objects: u64,
}

impl UploadQuota {
    /// Whether reserving `bytes` more (one object) stays within the limits.
    pub fn admits(&self, usage: Usage, bytes: u64) -> bool {
        let total = usage
            .used_bytes
            .saturating_add(usage.reserved_bytes)
            .saturating_add(bytes);
        self.bytes_per_subject.is_none_or(|max| total <= max)
            && self
                .objects_per_subject
                .is_none_or(|max| usage.objects.saturating_add(1) <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_windows_parse() {
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("1.5GiB").is_err());
        assert!(parse_bytes("10 gigs").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        assert_eq!("30d".parse(), Ok(QuotaWindow::Rolling(30 * 86_400)));
        assert_eq!("total".parse(), Ok(QuotaWindow::Total));
        for bad in ["", "0d", "30", "d", "-1d", "30w", "9999d"] {
            assert!(bad.parse::<QuotaWindow>().is_err(), "{bad:?}");
        }
        let q: UploadQuota =
            serde_json::from_str(r#"{"bytes_per_subject": "1KiB", "window": "24h"}"#)
                .expect("quota");
        assert_eq!(q.bytes_per_subject, Some(1024));
        assert_eq!(
            serde_json::to_value(q).expect("json"),
            serde_json::json!({"bytes_per_subject": 1024, "window": "1d"})
        );
    }

    proptest! {
        /// A reservation is admitted exactly when both limits still hold after it.
        #[test]
        fn admits_within_both_limits(
            used in 0u64..1000, reserved in 0u64..1000, objects in 0u64..20,
            bytes in 0u64..1000, max_bytes in proptest::option::of(0u64..3000),
            max_objects in proptest::option::of(0u64..20),
        ) {
            let q = UploadQuota { bytes_per_subject: max_bytes, objects_per_subject: max_objects, window: QuotaWindow::Total };
            let usage = Usage { used_bytes: used, reserved_bytes: reserved, objects };
            let fits = max_bytes.is_none_or(|m| used + reserved + bytes <= m)
                && max_objects.is_none_or(|m| objects < m);
            prop_assert_eq!(q.admits(usage, bytes), fits);
        }

        #[test]
        fn windows_print_as_they_parse(days in 1u64..3000, hours in 1u64..1000) {
            for w in [QuotaWindow::Rolling(days * 86_400), QuotaWindow::Rolling(hours * 3_600)] {
                prop_assert_eq!(w.to_string().parse::<QuotaWindow>(), Ok(w));
            }
        }
    }
}
