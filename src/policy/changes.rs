//! What a change to an access point does to its second-factor protection (S3 MFA Delete:
//! only an MFA-authenticated owner may enable delete or lift the demand). Pure: the admin API
//! refuses such a change without an MFA-bearing token, `presignd apply` reports it.

use super::access_point::{AccessPointSpec, Effect, Operation, OperationPattern, Rule};

/// Why replacing `before` by `after` (`None`: the access point does not exist before, or is
/// deleted) needs a second factor, if it does. Any change that weakens or moves an
/// MFA-protected rule does: deleting the access point (a re-create could then drop the rule),
/// removing or rewriting the rule, or moving the rules to another bucket or prefix. So does
/// adding a rule that grants `delete`.
pub fn mfa_sensitive_change(
    before: Option<&AccessPointSpec>,
    after: Option<&AccessPointSpec>,
) -> Option<&'static str> {
    let old: &[Rule] = before.map_or(&[], |b| &b.rules);
    let protected = old.iter().any(|r| r.require_mfa);
    let Some(after) = after else {
        return protected.then_some("deletes an access point with require_mfa rules");
    };
    if after
        .rules
        .iter()
        .any(|r| grants_delete(r) && !old.contains(r))
    {
        return Some("grants delete");
    }
    if old
        .iter()
        .any(|r| r.require_mfa && !after.rules.contains(r))
    {
        return Some("removes or changes a rule with require_mfa");
    }
    if protected
        && let Some(before) = before
        && (before.bucket != after.bucket || before.prefix != after.prefix)
    {
        return Some("moves rules with require_mfa to another bucket or prefix");
    }
    None
}

fn grants_delete(r: &Rule) -> bool {
    r.effect == Effect::Allow
        && r.operations.iter().any(|op| {
            matches!(
                op,
                OperationPattern::Any | OperationPattern::Op(Operation::Delete)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(bucket: &str, prefix: &str, rules: serde_json::Value) -> AccessPointSpec {
        serde_json::from_value(
            json!({"name": "a", "bucket": bucket, "prefix": prefix, "rules": rules}),
        )
        .expect("spec")
    }

    #[test]
    fn enabling_delete_or_dropping_mfa_needs_mfa() {
        let read = json!({"effect": "allow", "groups": ["u"], "operations": ["get"]});
        let del = json!({"effect": "allow", "groups": ["m"], "operations": ["delete"], "require_mfa": true});
        let deny_unless_mfa =
            json!({"effect": "deny", "groups": ["m"], "operations": ["put"], "require_mfa": true});
        let plain = spec("b", "", json!([read]));
        let with_delete = spec("b", "", json!([read, del]));
        let guarded = spec("b", "", json!([read, deny_unless_mfa]));
        let check =
            |b: Option<&AccessPointSpec>, a: Option<&AccessPointSpec>| mfa_sensitive_change(b, a);
        assert_eq!(check(None, Some(&plain)), None);
        assert_eq!(check(None, Some(&with_delete)), Some("grants delete"));
        assert_eq!(
            check(Some(&plain), Some(&with_delete)),
            Some("grants delete")
        );
        assert_eq!(check(Some(&with_delete), Some(&with_delete)), None);
        assert_eq!(
            check(Some(&with_delete), Some(&plain)),
            Some("removes or changes a rule with require_mfa")
        );
        assert!(check(Some(&guarded), Some(&plain)).is_some());
        // Reordering rules is not a change of substance.
        let reordered = spec("b", "", json!([del, read]));
        assert_eq!(check(Some(&with_delete), Some(&reordered)), None);
    }

    /// Finding 3 of the hardening review: deleting the access point (then re-creating it
    /// without the rule) and moving it to another prefix or bucket sidestepped the guard.
    #[test]
    fn deleting_or_moving_mfa_protected_rules_needs_mfa() {
        let read = json!({"effect": "allow", "groups": ["u"], "operations": ["get"]});
        let del = json!({"effect": "allow", "groups": ["m"], "operations": ["delete"], "require_mfa": true});
        let protected = spec("b", "avatars/", json!([read, del]));
        let plain = spec("b", "avatars/", json!([read]));
        assert_eq!(
            mfa_sensitive_change(Some(&protected), None),
            Some("deletes an access point with require_mfa rules")
        );
        assert_eq!(mfa_sensitive_change(Some(&plain), None), None);
        for moved in [
            spec("b", "", json!([read, del])),
            spec("other-bucket", "avatars/", json!([read, del])),
        ] {
            assert_eq!(
                mfa_sensitive_change(Some(&protected), Some(&moved)),
                Some("moves rules with require_mfa to another bucket or prefix")
            );
        }
        // Moving an access point without MFA rules is an ordinary change.
        assert_eq!(
            mfa_sensitive_change(Some(&plain), Some(&spec("b", "", json!([read])))),
            None
        );
        // Other fields of a protected access point are ordinary changes too.
        let mut longer = protected.clone();
        longer.max_expires_in = 7200;
        assert_eq!(mfa_sensitive_change(Some(&protected), Some(&longer)), None);
    }
}
