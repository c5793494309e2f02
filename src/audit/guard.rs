//! Startup guards on the log bucket (`check-config` and `serve`), next to the configuration's
//! own checks:
//!
//! - The log bucket must not be a bucket that an access point serves. Its URLs would let
//!   clients read or overwrite the audit trail, and S3 server access logging of a served bucket
//!   into itself is a logging loop (S3's own warning). For access point and Object Lambda
//!   ARNs the underlying bucket is not known without an `s3control:GetAccessPoint` call, so
//!   the ARN's access point name is compared instead; keeping the log bucket out of every
//!   access point's reach is then the bucket policy's job (docs/audit.md).
//! - The log bucket must be in the served buckets' region (`s3.region`, and the region of
//!   every ARN target) unless `audit.allow_cross_region` says otherwise: records would
//!   otherwise leave the region the data lives in.

use crate::config::{Config, ConfigError, ConfigProblem};
use crate::policy::{AccessPointSpec, Target};

use super::SinkLocation;

/// The `[audit]` keys on their own and against `[s3]` (`audit.instance` is checked with
/// the rest of the configuration).
pub fn check_audit_config(config: &Config) -> Vec<ConfigProblem> {
    let a = &config.audit;
    let mut p = Vec::new();
    if let Err(m) = SinkLocation::parse(&a.sink) {
        p.push(ConfigProblem::new("audit.sink", m));
    }
    if let Some(region) = &a.region {
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            p.push(ConfigProblem::new(
                "audit.region",
                "must be a region name such as us-east-1",
            ));
        } else if *region != config.s3.region
            && !a.allow_cross_region
            && a.sink.starts_with("s3://")
        {
            p.push(ConfigProblem::new(
                "audit.region",
                format!(
                    "the log bucket's region {region} differs from s3.region {}, where the served buckets are; records would leave that region. Use a log bucket in {}, or set audit.allow_cross_region = true",
                    config.s3.region, config.s3.region
                ),
            ));
        }
    }
    let mut range = |key: &str, v: u64, min: u64, max: u64| {
        if !(min..=max).contains(&v) {
            p.push(ConfigProblem::new(
                format!("audit.{key}"),
                format!("must be between {min} and {max}"),
            ));
        }
    };
    range("batch_max_records", a.batch_max_records as u64, 1, 100_000);
    range("flush_interval_ms", a.flush_interval_ms, 10, 3_600_000);
    range(
        "commit_max_records",
        a.commit_max_records as u64,
        1,
        100_000,
    );
    range("commit_max_wait_ms", a.commit_max_wait_ms, 0, 1_000);
    range("shutdown_flush_ms", a.shutdown_flush_ms, 0, 600_000);
    p
}

/// Problems with `audit.sink` given the access points that will be served.
pub fn check_log_destination<'a>(
    config: &Config,
    access_points: impl IntoIterator<Item = (&'a str, &'a Target)>,
) -> Vec<ConfigProblem> {
    let Ok(SinkLocation::S3 { bucket: log, .. }) = SinkLocation::parse(&config.audit.sink) else {
        return Vec::new();
    };
    let log_region = config.audit.region.as_deref().unwrap_or(&config.s3.region);
    let mut problems = Vec::new();
    for (name, target) in access_points {
        match target {
            Target::Bucket(b) if *b == log => problems.push(ConfigProblem::new(
                "audit.sink",
                format!(
                    "the log bucket {log} is served by access point {name} (bucket = {b}): its URLs would expose the audit trail and S3 access logging would loop; use a bucket that no access point serves"
                ),
            )),
            Target::AccessPointArn(arn) | Target::ObjectLambdaArn(arn) => {
                if arn.name == log {
                    problems.push(ConfigProblem::new(
                        "audit.sink",
                        format!(
                            "the log bucket {log} has the name of the S3 access point that access point {name} serves ({}); presignd cannot see an access point's bucket, so it refuses the likely logging loop",
                            arn.full
                        ),
                    ));
                }
                if arn.region != log_region && !config.audit.allow_cross_region {
                    problems.push(ConfigProblem::new(
                        "audit.region",
                        format!(
                            "the log bucket is in {log_region} but access point {name} serves {} in {}; set audit.allow_cross_region = true to ship records to another region",
                            arn.full, arn.region
                        ),
                    ));
                }
            }
            Target::Bucket(_) => {}
        }
    }
    problems
}

/// [`check_log_destination`] for access point specs (an apply file), as a configuration
/// error naming `audit.sink` / `audit.region`. Specs whose `bucket` does not parse are left to
/// the access point validation.
pub fn refuse_log_loops(config: &Config, specs: &[AccessPointSpec]) -> Result<(), ConfigError> {
    let targets: Vec<(&str, Target)> = specs
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.bucket.parse::<Target>().ok()?)))
        .collect();
    let problems = check_log_destination(config, targets.iter().map(|(n, t)| (*n, t)));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sink: &str) -> Config {
        let mut c: Config = figment::Figment::new().extract().expect("defaults");
        c.audit.sink = sink.into();
        c
    }

    fn target(s: &str) -> Target {
        s.parse().expect("target")
    }

    #[test]
    fn a_served_bucket_is_no_log_bucket() {
        let c = config("s3://acme-logs/presignd/");
        let served = target("acme-logs");
        let other = target("acme-media");
        let p = check_log_destination(&c, [("media", &other), ("oops", &served)]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "audit.sink");
        assert!(
            p[0].message.contains("acme-logs") && p[0].message.contains("oops"),
            "names both: {}",
            p[0].message
        );
        assert!(check_log_destination(&config("file:///tmp/a"), [("oops", &served)]).is_empty());
    }

    #[test]
    fn audit_keys_are_validated_and_named() {
        let mut c = config("s3://acme-logs/");
        assert!(check_audit_config(&c).is_empty(), "defaults are valid");
        c.audit.region = Some("eu-west-1".into());
        let p = check_audit_config(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "audit.region");
        assert!(
            p[0].message.contains("eu-west-1") && p[0].message.contains("us-east-1"),
            "names both regions: {}",
            p[0].message
        );
        c.audit.allow_cross_region = true;
        assert!(check_audit_config(&c).is_empty());
        c.audit.sink = "s3://x".into();
        c.audit.batch_max_records = 0;
        c.audit.commit_max_wait_ms = 5_000;
        let keys: Vec<String> = check_audit_config(&c).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "audit.sink",
                "audit.batch_max_records",
                "audit.commit_max_wait_ms"
            ]
        );
    }

    #[test]
    fn arn_targets_compare_names_and_regions() {
        let mut c = config("s3://uploads");
        let ap = target("arn:aws:s3:eu-west-1:123456789012:accesspoint/uploads");
        let p = check_log_destination(&c, [("eu", &ap)]);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["audit.sink", "audit.region"], "{p:?}");
        c.audit.allow_cross_region = true;
        c.audit.sink = "s3://acme-logs".into();
        assert!(check_log_destination(&c, [("eu", &ap)]).is_empty());
    }
}
