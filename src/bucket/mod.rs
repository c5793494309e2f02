//! Bucket-side configuration derived from an access point: the bucket policy that denies plain
//! HTTP (and unencrypted PUTs), and the bucket CORS rules a browser's direct PUT/GET needs.
//! Pure: `presignd bucket-policy` prints, `presignd bucket-cors --apply` applies.

mod cors;
mod policy;

pub use cors::{BucketCorsRule, CorsGap, CorsRule, cors_gaps, cors_rule, merge_cors_rules};
pub use policy::bucket_policy;
