//! Generators of access points, principals and keys for the property tests of the policy
//! (`tests/policy_props.rs`) and of `explain` against the real request path
//! (`tests/explain.rs`), which must try the same cases.

use presignd::Principal;
use presignd::policy::{AccessPointSpec, Effect, Operation, OperationPattern, Rule};
use proptest::prelude::*;
use proptest::sample::select;

pub fn spec_with_prefix(prefix: &str) -> AccessPointSpec {
    AccessPointSpec {
        name: "ap".into(),
        bucket: "bucket".into(),
        prefix: prefix.into(),
        default_expires_in: 300,
        max_expires_in: 3600,
        encryption: Default::default(),
        upload: Default::default(),
        cors_origins: vec![],
        network: Default::default(),
        limits: Default::default(),
        delivery: Default::default(),
        grants: None,
        rules: vec![Rule {
            effect: Effect::Allow,
            groups: vec!["*".into()],
            issuers: vec![],
            operations: vec![OperationPattern::Any],
            keys: vec!["*".into()],
            require_mfa: false,
        }],
    }
}

pub const GROUPS: &[&str] = &["g1", "g2", "g3", "*"];
pub const PATTERNS: &[&str] = &[
    "*",
    "a/*",
    "${jwt:sub}/*",
    "a/b",
    "?/b",
    "${jwt:sub}",
    "b*",
    "*/b",
    "${jwt:sub}?",
];
pub const SUBS: &[&str] = &["alice", "bob", "a", "*", "?", "al", "a/b"];
pub const KEYS: &[&str] = &[
    "alice/x", "bob/x", "a/b", "a/x", "*/b", "b", "bx", "alice", "?/b", "a", "alicex", "al/b",
];
pub const OP_PATTERNS: &[OperationPattern] = &[
    OperationPattern::Any,
    OperationPattern::Op(Operation::Get),
    OperationPattern::Op(Operation::Put),
    OperationPattern::Op(Operation::Delete),
];

pub fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        prop::sample::subsequence(GROUPS, 1..=2),
        prop::sample::subsequence(OP_PATTERNS, 1..=2),
        prop::sample::subsequence(PATTERNS, 1..=2),
        any::<bool>(),
    )
        .prop_map(|(allow, groups, ops, keys, require_mfa)| Rule {
            effect: if allow { Effect::Allow } else { Effect::Deny },
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issuers: vec![],
            operations: ops,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            require_mfa,
        })
}

pub const OLAP: &str = "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/olap";

/// 1-5 rules, fixed up to pass validation (allow+delete needs MFA; Object Lambda: get only).
pub fn access_point_strategy() -> impl Strategy<Value = AccessPointSpec> {
    (
        prop::collection::vec(rule_strategy(), 1..=5),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mut rules, object_lambda)| {
            for r in rules.iter_mut().filter(|r| r.effect == Effect::Allow) {
                if object_lambda {
                    r.operations.retain(|o| {
                        matches!(
                            o,
                            OperationPattern::Any | OperationPattern::Op(Operation::Get)
                        )
                    });
                    if r.operations.is_empty() {
                        r.operations.push(OperationPattern::Op(Operation::Get));
                    }
                }
                if r.operations
                    .contains(&OperationPattern::Op(Operation::Delete))
                {
                    r.require_mfa = true;
                }
            }
            let mut spec = spec_with_prefix("p/");
            spec.bucket = if object_lambda {
                OLAP.into()
            } else {
                "bucket".into()
            };
            spec.rules = rules;
            spec
        })
}

pub fn principal_strategy() -> impl Strategy<Value = Principal> {
    (
        select(SUBS),
        prop::sample::subsequence(&["g1", "g2", "g3"][..], 0..=3),
        any::<bool>(),
    )
        .prop_map(|(sub, groups, mfa)| Principal {
            sub: sub.into(),
            iss: "https://idp.example.com/".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            mfa,
            issued_at: None,
            expires_at: 0,
            jti: None,
        })
}
