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
        let mut c = Config::default();
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
