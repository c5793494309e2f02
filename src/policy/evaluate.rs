//! IAM-style rule evaluation: an applicable deny wins, then any allow, else implicit deny.

use serde::Serialize;

use super::Effect;
use super::Operation;
use super::compiled::{CompiledAccessPoint, CompiledRule};
use super::glob::KeyPattern;
use crate::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    ExplicitDeny,
    ImplicitDeny,
    MfaRequired,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::ExplicitDeny => "explicit_deny",
            DenyReason::ImplicitDeny => "implicit_deny",
            DenyReason::MfaRequired => "mfa_required",
        }
    }
}

impl CompiledRule {
    fn issuer_matches(&self, p: &Principal) -> bool {
        self.issuers.is_empty() || self.issuers.contains(&p.iss)
    }

    fn group_matches(&self, p: &Principal) -> bool {
        self.any_group || self.groups.iter().any(|g| p.in_group(g))
    }

    fn groups_match(&self, p: &Principal) -> bool {
        self.issuer_matches(p) && self.group_matches(p)
    }

    fn op_matches(&self, op: Operation) -> bool {
        self.operations.iter().any(|o| o.matches(op))
    }

    /// Why this rule cannot grant `op` even though it lists it, if it cannot.
    fn grant_barred(&self, ap: &CompiledAccessPoint, op: Operation) -> Option<&'static str> {
        if op == Operation::Delete && !self.require_mfa {
            // MFA Delete: only a rule that demands MFA grants delete, even via "*".
            Some("delete is granted only by a rule with require_mfa")
        } else if op != Operation::Get && ap.target.is_object_lambda() {
            // Object Lambda access points transform GETs; nothing else goes through them.
            Some("an Object Lambda access point grants get only")
        } else {
            None
        }
    }

    /// Could this allow rule grant `op` at all (ignoring keys and the caller's MFA)?
    fn can_grant(&self, ap: &CompiledAccessPoint, op: Operation) -> bool {
        self.effect == Effect::Allow && self.op_matches(op) && self.grant_barred(ap, op).is_none()
    }

    /// A deny applies to callers in its groups; "deny unless MFA" spares MFA-bearing ones.
    fn deny_applies(&self, p: &Principal, mfa: bool, op: Operation) -> bool {
        self.effect == Effect::Deny
            && self.groups_match(p)
            && self.op_matches(op)
            && !(self.require_mfa && mfa)
    }

    /// This deny rule refuses the request: it applies and one of its patterns may match (a
    /// pattern using `${jwt:sub}` always may, for a subject it cannot stand for).
    fn denies(&self, p: &Principal, mfa: bool, op: Operation, keys: &Keys<'_>) -> bool {
        self.deny_applies(p, mfa, op) && self.keys.iter().any(|k| keys.may_deny(k, &p.sub))
    }

    /// This allow rule grants the request.
    fn grants(
        &self,
        ap: &CompiledAccessPoint,
        p: &Principal,
        mfa: bool,
        op: Operation,
        keys: &Keys<'_>,
    ) -> bool {
        self.can_grant(ap, op)
            && self.groups_match(p)
            && (mfa || !self.require_mfa)
            && self.keys.iter().any(|k| keys.grants(k, &p.sub))
    }
}

/// The rules' answer and the rule that gave it: the first deny rule that refuses, or the
/// first allow rule that grants; none for an implicit deny. For `mfa_required`, the rule that
/// refuses without MFA, else the one that would grant with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ruling {
    pub decision: Decision,
    pub rule: Option<usize>,
}

/// What a request asks to reach, relative to the access point's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys<'a> {
    /// One key.
    Exact(&'a str),
    /// Every key that starts with this (a presigned POST's `starts-with` condition): an
    /// allow pattern must cover every completion, and a deny pattern refuses if it could
    /// match any.
    Prefix(&'a str),
}

impl Keys<'_> {
    fn grants(&self, k: &KeyPattern, sub: &str) -> bool {
        match *self {
            Keys::Exact(key) => k.matches(key, sub),
            Keys::Prefix(prefix) => k.matches_every_extension(prefix, sub),
        }
    }

    fn may_deny(&self, k: &KeyPattern, sub: &str) -> bool {
        // A subject that `${jwt:sub}` cannot stand for (empty, or holding `/`) matches no
        // allow pattern that uses it, and every deny pattern that does: deny wins.
        (k.uses_subject() && !super::glob::subject_usable(sub))
            || match *self {
                Keys::Exact(key) => k.matches(key, sub),
                Keys::Prefix(prefix) => k.matches_some_extension(prefix, sub),
            }
    }
}

/// Decides whether `p` may do `op` on `key` (relative to the prefix, already validated).
pub fn evaluate(ap: &CompiledAccessPoint, p: &Principal, op: Operation, key: &str) -> Decision {
    rule_on(ap, p, op, Keys::Exact(key)).decision
}

/// Decides whether `p` may do `op` on *every* key that starts with `prefix` (relative to the
/// access point's prefix, already validated): for an upload whose key the client completes,
/// such as a presigned POST's `starts-with` condition. Allowed only when one allow rule covers
/// every completion and no applicable deny rule could match any of them.
pub fn evaluate_prefix(
    ap: &CompiledAccessPoint,
    p: &Principal,
    op: Operation,
    prefix: &str,
) -> Decision {
    rule_on(ap, p, op, Keys::Prefix(prefix)).decision
}

/// The decision and the rule that gave it.
pub fn rule_on(ap: &CompiledAccessPoint, p: &Principal, op: Operation, keys: Keys<'_>) -> Ruling {
    let ruling = decide(ap, p, p.mfa, op, &keys);
    if ruling.decision == Decision::Allow || p.mfa {
        return ruling;
    }
    // Denied, but the same caller with MFA would be allowed: tell them what is missing.
    let with_mfa = decide(ap, p, true, op, &keys);
    if with_mfa.decision == Decision::Allow {
        Ruling {
            decision: Decision::Deny(DenyReason::MfaRequired),
            rule: ruling.rule.or(with_mfa.rule),
        }
    } else {
        ruling
    }
}

/// The plain IAM decision for `p` as if its MFA status were `mfa`: an applicable deny wins,
/// then any allow, else implicit deny.
fn decide(
    ap: &CompiledAccessPoint,
    p: &Principal,
    mfa: bool,
    op: Operation,
    keys: &Keys<'_>,
) -> Ruling {
    if let Some(i) = ap.rules.iter().position(|r| r.denies(p, mfa, op, keys)) {
        return Ruling {
            decision: Decision::Deny(DenyReason::ExplicitDeny),
            rule: Some(i),
        };
    }
    match ap.rules.iter().position(|r| r.grants(ap, p, mfa, op, keys)) {
        Some(i) => Ruling {
            decision: Decision::Allow,
            rule: Some(i),
        },
        None => Ruling {
            decision: Decision::Deny(DenyReason::ImplicitDeny),
            rule: None,
        },
    }
}

/// How one rule met a request, for `explain`: each condition, whether the rule takes part in
/// the decision (`applies`: a deny that refuses, an allow that grants), and why a rule that
/// lists the operation cannot grant it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    pub index: usize,
    pub effect: Effect,
    pub issuer: bool,
    pub groups: bool,
    pub operation: bool,
    pub keys: bool,
    pub mfa: MfaCheck,
    pub applies: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// A rule's MFA condition against the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaCheck {
    /// The rule has no `require_mfa`.
    NotRequired,
    /// It has, and the caller authenticated with MFA (an allow grants; a deny spares them).
    Present,
    /// It has, and the caller did not.
    Missing,
}

/// Every rule of `ap` against the request, in order: the same conditions [`rule_on`] decides
/// with.
pub fn trace_rules(
    ap: &CompiledAccessPoint,
    p: &Principal,
    op: Operation,
    keys: Keys<'_>,
) -> Vec<RuleTrace> {
    let sub = p.sub.as_str();
    ap.rules
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let (keys_match, applies, note) = match r.effect {
                Effect::Deny => (
                    r.keys.iter().any(|k| keys.may_deny(k, sub)),
                    r.denies(p, p.mfa, op, &keys),
                    None,
                ),
                Effect::Allow => (
                    r.keys.iter().any(|k| keys.grants(k, sub)),
                    r.grants(ap, p, p.mfa, op, &keys),
                    r.op_matches(op).then(|| r.grant_barred(ap, op)).flatten(),
                ),
            };
            let note = note.or_else(|| {
                (!super::glob::subject_usable(sub) && r.keys.iter().any(|k| k.uses_subject()))
                    .then_some("the subject cannot stand for ${jwt:sub} (empty, or holds '/')")
            });
            RuleTrace {
                index,
                effect: r.effect,
                issuer: r.issuer_matches(p),
                groups: r.group_matches(p),
                operation: r.op_matches(op),
                keys: keys_match,
                mfa: match (r.require_mfa, p.mfa) {
                    (false, _) => MfaCheck::NotRequired,
                    (true, true) => MfaCheck::Present,
                    (true, false) => MfaCheck::Missing,
                },
                applies,
                note,
            }
        })
        .collect()
}

/// Whether the access point exists for `p` at all: some allow rule names one of its groups.
/// Callers answer 404 otherwise.
pub fn can_see(ap: &CompiledAccessPoint, p: &Principal) -> bool {
    ap.rules
        .iter()
        .any(|r| r.effect == Effect::Allow && r.groups_match(p))
}

/// The operations `p` may do on some key, for discovery. An approximation from above, except
/// that a deny on every key (`"*"`) is subtracted.
pub fn allowed_operations(ap: &CompiledAccessPoint, p: &Principal) -> Vec<Operation> {
    Operation::ALL
        .into_iter()
        .filter(|&op| {
            ap.rules
                .iter()
                .any(|r| r.can_grant(ap, op) && r.groups_match(p) && (p.mfa || !r.require_mfa))
        })
        .filter(|&op| {
            !ap.rules
                .iter()
                .any(|r| r.deny_applies(p, p.mfa, op) && r.keys.iter().any(|k| k.as_str() == "*"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AccessPointSpec, OperationPattern, Rule};

    const GET: OperationPattern = OperationPattern::Op(Operation::Get);
    const PUT: OperationPattern = OperationPattern::Op(Operation::Put);
    const DELETE: OperationPattern = OperationPattern::Op(Operation::Delete);
    const ANY: OperationPattern = OperationPattern::Any;

    fn rule(
        effect: Effect,
        groups: &[&str],
        ops: &[OperationPattern],
        keys: &[&str],
        require_mfa: bool,
    ) -> Rule {
        Rule {
            effect,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issuers: vec![],
            operations: ops.to_vec(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            require_mfa,
        }
    }

    fn ap_on(bucket: &str, rules: Vec<Rule>) -> CompiledAccessPoint {
        CompiledAccessPoint::compile(AccessPointSpec::for_tests("ap", bucket, "users/", rules))
            .expect("valid spec")
    }

    fn build(rules: Vec<Rule>) -> CompiledAccessPoint {
        ap_on("bucket", rules)
    }

    /// The rules of the documented example access point (docs/configuration.md, `avatars`).
    fn design() -> CompiledAccessPoint {
        build(vec![
            rule(
                Effect::Allow,
                &["users"],
                &[PUT, GET],
                &["${jwt:sub}/*"],
                false,
            ),
            rule(Effect::Allow, &["moderators"], &[GET], &["*"], false),
            rule(Effect::Allow, &["moderators"], &[DELETE], &["*"], true),
            rule(Effect::Deny, &["suspended"], &[ANY], &["*"], false),
        ])
    }

    fn who(sub: &str, groups: &[&str], mfa: bool) -> Principal {
        Principal {
            mfa,
            ..Principal::for_tests("https://idp.example.com/", sub, groups)
        }
    }

    const ALLOW: Decision = Decision::Allow;
    const EXPLICIT: Decision = Decision::Deny(DenyReason::ExplicitDeny);
    const IMPLICIT: Decision = Decision::Deny(DenyReason::ImplicitDeny);
    const MFA: Decision = Decision::Deny(DenyReason::MfaRequired);

    #[test]
    fn a_prefix_is_allowed_only_when_every_completion_is() {
        let ap = build(vec![
            rule(Effect::Allow, &["users"], &[PUT], &["${jwt:sub}/*"], false),
            rule(
                Effect::Deny,
                &["users"],
                &[PUT],
                &["${jwt:sub}/locked/*"],
                false,
            ),
            rule(Effect::Allow, &["admins"], &[PUT], &["*.png"], false),
            rule(Effect::Allow, &["secure"], &[PUT], &["vault/*"], true),
        ]);
        let alice = who("alice", &["users"], false);
        let put = Operation::Put;
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice/photos/"), ALLOW);
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice/p"), ALLOW);
        // `alice2/` is not under `alice/`; `bob/` is another user's folder.
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice2/"), IMPLICIT);
        assert_eq!(evaluate_prefix(&ap, &alice, put, "bob/"), IMPLICIT);
        // A deny that could match some completion (alice/locked/x) refuses the prefix,
        // though the exact key alice/x is fine.
        assert_eq!(evaluate(&ap, &alice, put, "alice/x"), ALLOW);
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice/"), EXPLICIT);
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice/lo"), EXPLICIT);
        assert_eq!(evaluate_prefix(&ap, &alice, put, "alice"), EXPLICIT);
        // `*.png` grants each .png key, but not every completion of a prefix.
        let admin = who("root", &["admins"], false);
        assert_eq!(evaluate(&ap, &admin, put, "x/a.png"), ALLOW);
        assert_eq!(evaluate_prefix(&ap, &admin, put, "x/"), IMPLICIT);
        // MFA is reported as for exact keys.
        let secure = who("s", &["secure"], false);
        assert_eq!(evaluate_prefix(&ap, &secure, put, "vault/"), MFA);
        let secure = who("s", &["secure"], true);
        assert_eq!(evaluate_prefix(&ap, &secure, put, "vault/"), ALLOW);
    }

    #[test]
    fn subject_variable_confines_users_to_their_folder() {
        let ap = design();
        let alice = who("alice", &["users"], false);
        assert_eq!(
            evaluate(&ap, &alice, Operation::Put, "alice/avatar.png"),
            ALLOW
        );
        assert_eq!(evaluate(&ap, &alice, Operation::Get, "alice/a/b/c"), ALLOW);
        assert_eq!(evaluate(&ap, &alice, Operation::Get, "alice2/x"), IMPLICIT);
        assert_eq!(evaluate(&ap, &alice, Operation::Get, "bob/x"), IMPLICIT);
        assert_eq!(evaluate(&ap, &alice, Operation::Get, "alice"), IMPLICIT);
    }

    #[test]
    fn wildcard_subject_matches_only_itself() {
        let ap = design();
        let star = who("*", &["users"], false);
        assert_eq!(evaluate(&ap, &star, Operation::Get, "bob/x"), IMPLICIT);
        assert_eq!(evaluate(&ap, &star, Operation::Get, "*/x"), ALLOW);
        let q = who("?", &["users"], false);
        assert_eq!(evaluate(&ap, &q, Operation::Get, "b/x"), IMPLICIT);
    }

    #[test]
    fn explicit_deny_beats_allow() {
        let ap = design();
        let both = who("alice", &["users", "suspended"], true);
        assert_eq!(evaluate(&ap, &both, Operation::Get, "alice/x"), EXPLICIT);
        let moderator = who("m", &["moderators", "suspended"], true);
        assert_eq!(evaluate(&ap, &moderator, Operation::Delete, "x"), EXPLICIT);
    }

    #[test]
    fn deny_is_scoped_by_operation_and_key() {
        let ap = build(vec![
            rule(Effect::Allow, &["*"], &[ANY], &["*"], false),
            rule(Effect::Deny, &["*"], &[PUT], &["readonly/*"], false),
        ]);
        let p = who("u", &[], false);
        assert_eq!(evaluate(&ap, &p, Operation::Put, "readonly/x"), EXPLICIT);
        assert_eq!(evaluate(&ap, &p, Operation::Get, "readonly/x"), ALLOW);
        assert_eq!(evaluate(&ap, &p, Operation::Put, "other/x"), ALLOW);
    }

    #[test]
    fn no_matching_allow_is_an_implicit_deny() {
        let ap = design();
        assert_eq!(
            evaluate(&ap, &who("x", &["guests"], true), Operation::Get, "x/y"),
            IMPLICIT
        );
        assert_eq!(
            evaluate(&ap, &who("x", &[], false), Operation::Get, "x/y"),
            IMPLICIT
        );
        // users may not delete, not even their own objects
        assert_eq!(
            evaluate(&ap, &who("a", &["users"], true), Operation::Delete, "a/x"),
            IMPLICIT
        );
    }

    #[test]
    fn star_group_means_any_authenticated_principal() {
        let ap = build(vec![rule(
            Effect::Allow,
            &["*"],
            &[GET],
            &["public/*"],
            false,
        )]);
        assert_eq!(
            evaluate(&ap, &who("x", &[], false), Operation::Get, "public/a"),
            ALLOW
        );
        assert!(can_see(&ap, &who("x", &[], false)));
    }

    #[test]
    fn delete_without_mfa_is_mfa_required() {
        let ap = design();
        let m = who("m", &["moderators"], false);
        assert_eq!(evaluate(&ap, &m, Operation::Delete, "x"), MFA);
        assert_eq!(MFA, Decision::Deny(DenyReason::MfaRequired));
        assert_eq!(DenyReason::MfaRequired.as_str(), "mfa_required");
    }

    #[test]
    fn delete_with_mfa_and_a_require_mfa_rule_is_allowed() {
        let ap = design();
        assert_eq!(
            evaluate(
                &ap,
                &who("m", &["moderators"], true),
                Operation::Delete,
                "x"
            ),
            ALLOW
        );
    }

    #[test]
    fn delete_via_star_without_require_mfa_is_never_granted() {
        let ap = build(vec![rule(Effect::Allow, &["*"], &[ANY], &["*"], false)]);
        for mfa in [false, true] {
            let p = who("u", &["users"], mfa);
            assert_eq!(
                evaluate(&ap, &p, Operation::Delete, "x"),
                IMPLICIT,
                "mfa={mfa}"
            );
            assert_eq!(evaluate(&ap, &p, Operation::Put, "x"), ALLOW);
        }
        // With require_mfa the same "*" rule grants delete, but only with MFA.
        let ap = build(vec![rule(Effect::Allow, &["*"], &[ANY], &["*"], true)]);
        assert_eq!(
            evaluate(&ap, &who("u", &[], true), Operation::Delete, "x"),
            ALLOW
        );
        assert_eq!(
            evaluate(&ap, &who("u", &[], false), Operation::Delete, "x"),
            MFA
        );
    }

    #[test]
    fn require_mfa_allow_rule_needs_mfa_for_any_operation() {
        let ap = build(vec![rule(Effect::Allow, &["*"], &[ANY], &["*"], true)]);
        assert_eq!(
            evaluate(&ap, &who("u", &[], false), Operation::Get, "x"),
            MFA
        );
        assert_eq!(
            evaluate(&ap, &who("u", &[], true), Operation::Get, "x"),
            ALLOW
        );
    }

    #[test]
    fn deny_unless_mfa() {
        let ap = build(vec![
            rule(Effect::Allow, &["*"], &[GET, PUT], &["*"], false),
            rule(Effect::Deny, &["*"], &[PUT], &["*"], true),
        ]);
        assert_eq!(
            evaluate(&ap, &who("u", &[], true), Operation::Put, "x"),
            ALLOW
        );
        // Denied, and MFA is exactly what would lift it.
        assert_eq!(
            evaluate(&ap, &who("u", &[], false), Operation::Put, "x"),
            MFA
        );
        assert_eq!(
            evaluate(&ap, &who("u", &[], false), Operation::Get, "x"),
            ALLOW
        );

        // An unconditional deny stays an explicit deny, with or without MFA.
        let ap = build(vec![
            rule(Effect::Allow, &["*"], &[GET], &["*"], false),
            rule(Effect::Deny, &["*"], &[GET], &["*"], true),
            rule(Effect::Deny, &["banned"], &[GET], &["*"], false),
        ]);
        assert_eq!(
            evaluate(&ap, &who("u", &["banned"], false), Operation::Get, "x"),
            EXPLICIT
        );
        assert_eq!(
            evaluate(&ap, &who("u", &["banned"], true), Operation::Get, "x"),
            EXPLICIT
        );
    }

    #[test]
    fn object_lambda_grants_get_only() {
        let olap = "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/olap";
        let ap = ap_on(
            olap,
            vec![rule(Effect::Allow, &["*"], &[ANY], &["*"], true)],
        );
        let p = who("u", &[], true);
        assert_eq!(evaluate(&ap, &p, Operation::Get, "x"), ALLOW);
        assert_eq!(evaluate(&ap, &p, Operation::Put, "x"), IMPLICIT);
        assert_eq!(evaluate(&ap, &p, Operation::Delete, "x"), IMPLICIT);
        assert_eq!(allowed_operations(&ap, &p), [Operation::Get]);
    }

    #[test]
    fn can_see_needs_an_allow_rule_for_one_of_the_groups() {
        let ap = design();
        assert!(can_see(&ap, &who("a", &["users"], false)));
        assert!(can_see(&ap, &who("m", &["moderators"], false)));
        // Named only by a deny rule: not visible.
        assert!(!can_see(&ap, &who("s", &["suspended"], false)));
        assert!(!can_see(&ap, &who("g", &["guests"], false)));
    }

    #[test]
    fn allowed_operations_per_principal() {
        let ap = design();
        assert_eq!(
            allowed_operations(&ap, &who("a", &["users"], true)),
            [Operation::Get, Operation::Put]
        );
        assert_eq!(
            allowed_operations(&ap, &who("m", &["moderators"], false)),
            [Operation::Get]
        );
        assert_eq!(
            allowed_operations(&ap, &who("m", &["moderators"], true)),
            [Operation::Get, Operation::Delete]
        );
        assert!(allowed_operations(&ap, &who("s", &["users", "suspended"], true)).is_empty());
        assert!(allowed_operations(&ap, &who("g", &["guests"], true)).is_empty());
    }

    #[test]
    fn allowed_operations_subtracts_only_denies_on_every_key() {
        let ap = build(vec![
            rule(Effect::Allow, &["*"], &[GET, PUT], &["*"], false),
            rule(Effect::Deny, &["*"], &[PUT], &["*"], false),
            rule(Effect::Deny, &["*"], &[GET], &["secret/*"], false),
        ]);
        assert_eq!(
            allowed_operations(&ap, &who("u", &[], false)),
            [Operation::Get]
        );
        // "deny unless MFA" on every key blocks put only without MFA
        let ap = build(vec![
            rule(Effect::Allow, &["*"], &[GET, PUT], &["*"], false),
            rule(Effect::Deny, &["*"], &[PUT], &["*"], true),
        ]);
        assert_eq!(
            allowed_operations(&ap, &who("u", &[], false)),
            [Operation::Get]
        );
        assert_eq!(
            allowed_operations(&ap, &who("u", &[], true)),
            [Operation::Get, Operation::Put]
        );
    }

    #[test]
    fn deny_reason_codes() {
        assert_eq!(DenyReason::ExplicitDeny.as_str(), "explicit_deny");
        assert_eq!(DenyReason::ImplicitDeny.as_str(), "implicit_deny");
        assert_eq!(
            serde_json::to_value(DenyReason::ImplicitDeny).expect("json"),
            "implicit_deny"
        );
    }
}
