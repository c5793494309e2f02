//! Access points, rules, key validation: pure, no I/O.
//!
//! - `access_point`: the spec as users write it (JSON/YAML/TOML), `validate` its checks;
//! - `target`: the bucket or access point ARN an access point signs for;
//! - `key` and `glob`: object keys and the patterns rules match them with;
//! - `compiled`: validated access points ready to evaluate, and the catalog of them;
//! - `evaluate`: the IAM-style decision (and its per-rule trace); `authorize`: network, key and
//!   rules, as every issuing path checks them; `request`: per-request limits (expiry,
//!   uploads); `presign`: a presign request and every check after the rules;
//! - `delivery`: where GETs are served from (S3, or CloudFront signed URLs and cookies);
//! - `changes`: which access point changes need a second factor.

mod access_point;
mod authorize;
mod changes;
mod compiled;
mod delivery;
mod errors;
mod evaluate;
mod glob;
mod key;
mod limits;
mod presign;
mod quota;
mod request;
mod target;
mod validate;

pub use access_point::{
    AccessPointSpec, Effect, Encryption, GrantLimits, NetworkRestriction, OnMismatch, Operation,
    OperationPattern, Rule, UnknownOperation, UploadConstraints,
};
pub use authorize::{Authorized, Refusal, authorize, in_network};
pub use changes::mfa_sensitive_change;
pub use compiled::CompiledAccessPoint;
pub use delivery::{CloudFrontDelivery, Delivery};
pub use errors::{FieldError, SpecErrors};
pub use evaluate::{
    Decision, DenyReason, Keys, MfaCheck, RuleTrace, Ruling, allowed_operations, can_see, evaluate,
    evaluate_prefix, rule_on, trace_rules,
};
pub use glob::{GlobError, KeyPattern};
pub use key::{KeyError, MAX_KEY_BYTES, validate_key};
pub use limits::{AccessPointLimits, MAX_LIMIT_RATE};
pub use presign::{PresignOperation, PresignRequest, RequestRefusal, check_request};
pub use quota::{QuotaWindow, UploadQuota, Usage, parse_bytes};
pub use request::{
    ConstraintError, MAX_EXPIRES_IN, MAX_METADATA_BYTES, MAX_OBJECT_SIZE, MAX_SINGLE_PUT_BYTES,
    UploadRequest, check_metadata, check_response_overrides, check_upload, content_type_allowed,
    resolve_expires,
};
pub use target::{Arn, Target, TargetError};
pub use validate::{MAX_PREFIX_BYTES, check_origin};
