//! Where an access point's URLs point: a bucket, an S3 access point, or an S3 Object Lambda
//! access point, parsed from the spec's `bucket` field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Bucket(String),
    AccessPointArn(Arn),
    ObjectLambdaArn(Arn),
}

/// An access point ARN, `arn:{partition}:{s3|s3-object-lambda}:{region}:{account}:accesspoint/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
    /// The ARN as written, which is what the SDK takes as the bucket.
    pub full: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

impl Target {
    /// What aws-sdk-s3's `.bucket()` takes: the bucket name or the full ARN.
    pub fn sdk_bucket(&self) -> &str {
        match self {
            Target::Bucket(b) => b,
            Target::AccessPointArn(a) | Target::ObjectLambdaArn(a) => &a.full,
        }
    }

    /// The region an ARN pins; a plain bucket's region is the configured one.
    pub fn region(&self) -> Option<&str> {
        match self {
            Target::Bucket(_) => None,
            Target::AccessPointArn(a) | Target::ObjectLambdaArn(a) => Some(&a.region),
        }
    }

    pub fn is_object_lambda(&self) -> bool {
        matches!(self, Target::ObjectLambdaArn(_))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdk_bucket())
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        if s.starts_with("arn:") {
            parse_arn(s)
        } else {
            check_bucket_name(s).map_err(|m| TargetError(m.to_string()))?;
            Ok(Target::Bucket(s.to_string()))
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.sdk_bucket())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

fn parse_arn(s: &str) -> Result<Target, TargetError> {
    let err = |m: &str| Err(TargetError(m.to_string()));
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return err("an ARN must look like arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME");
    };
    if !PARTITIONS.contains(&partition) {
        return err("ARN partition must be aws, aws-cn or aws-us-gov");
    }
    let object_lambda = match service {
        "s3" => false,
        "s3-object-lambda" => true,
        _ => return err("ARN service must be s3 or s3-object-lambda"),
    };
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        // Multi-Region access points (empty region) sign with SigV4A, which presignd does not do.
        return err("ARN region must be a region name such as us-east-1");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return err("ARN account must be 12 digits");
    }
    let Some(name) = resource.strip_prefix("accesspoint/") else {
        return err("ARN resource must be accesspoint/NAME");
    };
    // S3 access point names: 3-50 chars; Object Lambda access point names: 3-45.
    let max = if object_lambda { 45 } else { 50 };
    if !(3..=max).contains(&name.len()) || !is_dns_label(name) {
        return Err(TargetError(format!(
            "access point name must be 3-{max} characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
        )));
    }
    let arn = Arn {
        partition: partition.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
        full: s.to_string(),
    };
    Ok(if object_lambda {
        Target::ObjectLambdaArn(arn)
    } else {
        Target::AccessPointArn(arn)
    })
}

/// `[a-z0-9-]`, starting and ending with a letter or digit.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// S3's general purpose bucket naming rules.
fn check_bucket_name(s: &str) -> Result<(), &'static str> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err("bucket name must be 3-63 characters");
    }
    if !bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-') {
        return Err("bucket name may contain only lowercase letters, digits, '.' and '-'");
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("bucket name must start and end with a letter or digit");
    }
    if s.contains("..") {
        return Err("bucket name must not contain '..'");
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return Err("bucket name must not be formatted like an IP address");
    }
    if s.starts_with("xn--") || s.starts_with("sthree-") {
        return Err("bucket name must not start with xn-- or sthree- (reserved by S3)");
    }
    if s.ends_with("-s3alias") || s.ends_with("--ol-s3") {
        return Err(
            "bucket name must not end with -s3alias or --ol-s3 (reserved for access point aliases)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bucket_names() {
        for b in [
            "acme-user-content",
            "abc",
            "a.b.c",
            "1bucket9",
            &"a".repeat(63),
        ] {
            let t: Target = b.parse().expect(b);
            assert_eq!(t, Target::Bucket(b.to_string()));
            assert_eq!(t.sdk_bucket(), b);
            assert_eq!(t.region(), None);
            assert!(!t.is_object_lambda());
        }
    }

    #[test]
    fn invalid_bucket_names() {
        for b in [
            "ab",
            &"a".repeat(64),
            "Upper",
            "under_score",
            "-start",
            "end-",
            ".dot",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "sthree-abc",
            "thing-s3alias",
            "thing--ol-s3",
            "with space",
            "",
            "arn:",
        ] {
            assert!(b.parse::<Target>().is_err(), "{b:?} accepted");
        }
    }

    #[test]
    fn access_point_arns() {
        let s = "arn:aws:s3:eu-west-1:123456789012:accesspoint/my-ap";
        let t: Target = s.parse().expect("valid");
        let Target::AccessPointArn(arn) = &t else {
            panic!("not an access point: {t:?}")
        };
        assert_eq!(arn.partition, "aws");
        assert_eq!(arn.account, "123456789012");
        assert_eq!(arn.name, "my-ap");
        assert_eq!(t.sdk_bucket(), s);
        assert_eq!(t.region(), Some("eu-west-1"));
        assert!(!t.is_object_lambda());

        let s = "arn:aws-cn:s3-object-lambda:cn-north-1:123456789012:accesspoint/olap1";
        let t: Target = s.parse().expect("valid");
        assert!(t.is_object_lambda());
        assert_eq!(t.sdk_bucket(), s);
        assert_eq!(t.region(), Some("cn-north-1"));
    }

    #[test]
    fn invalid_arns() {
        for s in [
            "arn:aws:s3:::my-bucket",
            "arn:aws:s3::123456789012:accesspoint/mrap",
            "arn:aws:s3:us-east-1:12345:accesspoint/ap1",
            "arn:aws:s3:us-east-1:123456789012:accesspoint/",
            "arn:aws:s3:us-east-1:123456789012:accesspoint:ap1",
            "arn:aws:s3:us-east-1:123456789012:bucket/ap1",
            "arn:aws:iam:us-east-1:123456789012:accesspoint/ap1",
            "arn:gcp:s3:us-east-1:123456789012:accesspoint/ap1",
            "arn:aws:s3:us-east-1:123456789012:accesspoint/Bad_Name",
            "arn:aws:s3:us-east-1:123456789012:accesspoint/ap1/extra",
            "arn:aws:s3:US-EAST-1:123456789012:accesspoint/ap1",
        ] {
            assert!(s.parse::<Target>().is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn target_serializes_as_its_string() {
        let t: Target = "arn:aws:s3:us-east-1:123456789012:accesspoint/ap1"
            .parse()
            .expect("valid");
        let json = serde_json::to_string(&t).expect("serialize");
        assert_eq!(
            json,
            r#""arn:aws:s3:us-east-1:123456789012:accesspoint/ap1""#
        );
        assert_eq!(serde_json::from_str::<Target>(&json).expect("back"), t);
    }
}
