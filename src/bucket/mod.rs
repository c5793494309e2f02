//! Bucket-side configuration derived from an access point: the bucket policy that denies plain
//! HTTP (and unencrypted PUTs), and the bucket CORS rules a browser's direct PUT/GET needs.
//!
//! - `policy`, `cors`: the derivations, pure (`presignd bucket-policy` prints);
//! - `apply`: `presignd bucket-cors --apply` writes the CORS rule with aws-sdk-s3;
//! - `check`: the background task that reads each served bucket's CORS back and reports gaps on
//!   `/readyz`.

pub mod apply;
pub mod check;
mod cors;
mod policy;

pub use cors::{BucketCorsRule, CorsGap, CorsRule, cors_gaps, cors_rule, merge_cors_rules};
pub use policy::bucket_policy;
