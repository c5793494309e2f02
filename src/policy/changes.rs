//! What a change to an access point does to its second-factor protection (S3 MFA Delete:
//! only an MFA-authenticated owner may enable delete or lift the demand). Pure: the admin API
//! refuses such a change without an MFA-bearing token, `presignd apply` reports it.

use super::access_point::{AccessPointSpec, Effect, OnMismatch, Operation, OperationPattern, Rule};

/// Why replacing `before` by `after` (`None`: the access point does not exist before, or is
/// deleted) needs a second factor, if it does; `others` are the other access points. Any
/// change that weakens or moves an MFA-protected rule does: deleting the access point (a
/// re-create could then drop the rule), removing or rewriting the rule, adding an allow rule
/// beside it (which could grant without MFA what it guards), or moving the rules to another
/// bucket or prefix, or removing a deny rule or changing the network of such an access point.
/// So does adding a rule that grants `delete`, and creating, moving or widening an access
/// point whose keys overlap those of another with MFA-protected rules (a sibling would reach
/// the same objects without the second factor).
pub fn mfa_sensitive_change(
    before: Option<&AccessPointSpec>,
    after: Option<&AccessPointSpec>,
    others: &[&AccessPointSpec],
) -> Option<String> {
    let old: &[Rule] = before.map_or(&[], |b| &b.rules);
    let protected = old.iter().any(|r| r.require_mfa);
    let Some(after) = after else {
        return protected.then(|| "deletes an access point with require_mfa rules".into());
    };
    let new_allows = || {
        after
            .rules
            .iter()
            .filter(|r| r.effect == Effect::Allow && !old.contains(r))
    };
    if new_allows().any(grants_delete) {
        return Some("grants delete".into());
    }
    if old
        .iter()
        .any(|r| r.require_mfa && !after.rules.contains(r))
    {
        return Some("removes or changes a rule with require_mfa".into());
    }
    // A deny rule of a protected access point carves access out of what it grants; dropping
    // or rewriting one (or widening its network) weakens it.
    let lifts_a_deny = old
        .iter()
        .any(|r| r.effect == Effect::Deny && !after.rules.contains(r));
    let network_changed = before.is_some_and(|b| b.network != after.network);
    if protected && (lifts_a_deny || network_changed) {
        return Some(
            "removes or changes a deny rule or the network of an access point with require_mfa rules"
                .into(),
        );
    }
    // Grants hand out links that work without the caller's token, MFA or not.
    if protected && before.is_some_and(|b| b.grants != after.grants) {
        return Some(
            "changes the download grants of an access point with require_mfa rules".into(),
        );
    }
    // Replacing or removing objects is a kind of delete: turning create-only off, or letting
    // verification delete or move rejected objects.
    let removes_more = before.is_some_and(|b| {
        (!b.upload.overwrite && after.upload.overwrite)
            || (b.upload.on_mismatch == OnMismatch::Keep
                && after.upload.on_mismatch != OnMismatch::Keep)
    });
    if protected && removes_more {
        return Some(
            "lets uploads replace, or verification remove, objects of an access point with require_mfa rules"
                .into(),
        );
    }
    // Where GETs are served from counts too: a CloudFront domain and path are another way in.
    let moved = before.is_none_or(|b| {
        b.bucket != after.bucket || b.prefix != after.prefix || b.delivery != after.delivery
    });
    if protected && moved {
        return Some("moves rules with require_mfa to another bucket or prefix".into());
    }
    // A new allow rule for an operation an MFA-demanding allow rule grants could grant it
    // without the second factor (a deny-unless-MFA rule still wins over it).
    let widens = new_allows().any(|n| {
        old.iter()
            .any(|r| r.require_mfa && r.effect == Effect::Allow && share_an_operation(r, n))
    });
    if widens {
        return Some("adds an allow rule beside a rule with require_mfa".into());
    }
    if moved || lifts_a_deny || network_changed || new_allows().next().is_some() {
        let sibling = others.iter().find(|o| {
            o.name != after.name && o.rules.iter().any(|r| r.require_mfa) && overlaps(o, after)
        });
        if let Some(o) = sibling {
            return Some(format!(
                "reaches keys of access point {:?}, which has require_mfa rules",
                o.name
            ));
        }
    }
    None
}

/// Whether two access points can reach the same object: the same bucket (or ARN) and
/// prefixes one of which starts with the other; or, through CloudFront, the same domain and
/// paths one of which starts with the other (the distribution's key group trusts every
/// access point's signatures alike).
fn overlaps(a: &AccessPointSpec, b: &AccessPointSpec) -> bool {
    let nested = |x: &str, y: &str| x.starts_with(y) || y.starts_with(x);
    let by_bucket = a.bucket == b.bucket && nested(&a.prefix, &b.prefix);
    let by_cloudfront = match (&a.delivery.cloudfront, &b.delivery.cloudfront) {
        (Some(x), Some(y)) => {
            x.domain.eq_ignore_ascii_case(&y.domain)
                && nested(&x.path_prefix_for(&a.prefix), &y.path_prefix_for(&b.prefix))
        }
        _ => false,
    };
    by_bucket || by_cloudfront
}

fn share_an_operation(a: &Rule, b: &Rule) -> bool {
    a.operations.iter().any(|x| {
        b.operations
            .iter()
            .any(|y| *x == OperationPattern::Any || *y == OperationPattern::Any || x == y)
    })
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

    /// The review's bypass: another bucket, but the protected access point's CloudFront path.
    #[test]
    fn cloudfront_paths_overlap_and_delivery_changes_are_moves() {
        let cf = |domain: &str, path: &str| json!({"cloudfront": {"domain": domain, "path_prefix": path, "key_pair_id": "K1"}});
        let with =
            |bucket: &str, prefix: &str, delivery: serde_json::Value, rules: serde_json::Value| {
                let mut s = spec(bucket, prefix, rules);
                s.delivery = serde_json::from_value(delivery).expect("delivery");
                s
            };
        let mfa_get = json!([{"effect": "allow", "groups": ["hr"], "operations": ["get"], "require_mfa": true}]);
        let open_get = json!([{"effect": "allow", "groups": ["*"], "operations": ["get"]}]);
        let hr = with("hr-bucket", "hr/", cf("d1.cloudfront.net", "/hr/"), mfa_get);
        let mut pubr = with(
            "other",
            "x/",
            cf("d1.cloudfront.net", "/hr/"),
            open_get.clone(),
        );
        pubr.name = "pub".into();
        assert!(mfa_sensitive_change(None, Some(&pubr), &[&hr]).is_some());
        let elsewhere = with("other", "x/", cf("d2.cloudfront.net", "/hr/"), open_get);
        assert!(mfa_sensitive_change(None, Some(&elsewhere), &[&hr]).is_none());
        let moved = with(
            "hr-bucket",
            "hr/",
            cf("d2.cloudfront.net", "/hr/"),
            hr.rules
                .iter()
                .map(|r| serde_json::to_value(r).expect("rule"))
                .collect(),
        );
        assert!(mfa_sensitive_change(Some(&hr), Some(&moved), &[]).is_some());
    }

    fn spec(bucket: &str, prefix: &str, rules: serde_json::Value) -> AccessPointSpec {
        serde_json::from_value(
            json!({"name": "a", "bucket": bucket, "prefix": prefix, "rules": rules}),
        )
        .expect("spec")
    }

    #[test]
    fn letting_objects_be_replaced_or_removed_needs_mfa_where_rules_demand_it() {
        let del = json!({"effect": "allow", "groups": ["m"], "operations": ["delete"], "require_mfa": true});
        let put = json!({"effect": "allow", "groups": ["u"], "operations": ["put"]});
        let mut before = spec("b", "p/", json!([del.clone(), put.clone()]));
        before.upload.overwrite = false;
        let mut after = before.clone();
        after.upload.overwrite = true;
        assert!(mfa_sensitive_change(Some(&before), Some(&after), &[]).is_some());
        let mut after = before.clone();
        after.upload.on_mismatch = OnMismatch::Delete;
        assert!(mfa_sensitive_change(Some(&before), Some(&after), &[]).is_some());
        // Tightening is free, and so is any of it without require_mfa rules.
        assert_eq!(mfa_sensitive_change(Some(&after), Some(&before), &[]), None);
        let plain = spec("b", "p/", json!([put]));
        let mut loosened = plain.clone();
        loosened.upload.on_mismatch = OnMismatch::Quarantine;
        assert_eq!(
            mfa_sensitive_change(Some(&plain), Some(&loosened), &[]),
            None
        );
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
        let check = |b: Option<&AccessPointSpec>, a: Option<&AccessPointSpec>| {
            mfa_sensitive_change(b, a, &[])
        };
        assert_eq!(check(None, Some(&plain)), None);
        assert_eq!(
            check(None, Some(&with_delete)).as_deref(),
            Some("grants delete")
        );
        assert_eq!(
            check(Some(&plain), Some(&with_delete)).as_deref(),
            Some("grants delete")
        );
        assert_eq!(check(Some(&with_delete), Some(&with_delete)), None);
        assert_eq!(
            check(Some(&with_delete), Some(&plain)).as_deref(),
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
            mfa_sensitive_change(Some(&protected), None, &[]).as_deref(),
            Some("deletes an access point with require_mfa rules")
        );
        assert_eq!(mfa_sensitive_change(Some(&plain), None, &[]), None);
        for moved in [
            spec("b", "", json!([read, del])),
            spec("other-bucket", "avatars/", json!([read, del])),
        ] {
            assert_eq!(
                mfa_sensitive_change(Some(&protected), Some(&moved), &[]).as_deref(),
                Some("moves rules with require_mfa to another bucket or prefix")
            );
        }
        // Moving an access point without MFA rules is an ordinary change.
        assert_eq!(
            mfa_sensitive_change(Some(&plain), Some(&spec("b", "", json!([read]))), &[]),
            None
        );
        // Other fields of a protected access point are ordinary changes too.
        let mut longer = protected.clone();
        longer.max_expires_in = 7200;
        assert_eq!(
            mfa_sensitive_change(Some(&protected), Some(&longer), &[]),
            None
        );
    }

    /// The second review: an allow rule added beside an MFA rule, or a sibling access point
    /// on the same keys, granted without MFA what the rule guards.
    #[test]
    fn granting_beside_or_around_mfa_protected_rules_needs_mfa() {
        let mfa_get = json!({"effect": "allow", "groups": ["hr"], "operations": ["get"], "require_mfa": true});
        let get = json!({"effect": "allow", "groups": ["hr"], "operations": ["get"]});
        let deny = json!({"effect": "deny", "groups": ["x"], "operations": ["put"]});
        let hr = spec("b", "hr/", json!([mfa_get]));
        let widened = spec("b", "hr/", json!([mfa_get, get]));
        assert_eq!(
            mfa_sensitive_change(Some(&hr), Some(&widened), &[]).as_deref(),
            Some("adds an allow rule beside a rule with require_mfa")
        );
        // One for another operation does not.
        let put = json!({"effect": "allow", "groups": ["hr"], "operations": ["put"]});
        let uploads = spec("b", "hr/", json!([mfa_get, put]));
        assert_eq!(mfa_sensitive_change(Some(&hr), Some(&uploads), &[]), None);
        // A deny rule weakens nothing; dropping it again does (the third review).
        let narrowed = spec("b", "hr/", json!([mfa_get, deny]));
        assert_eq!(mfa_sensitive_change(Some(&hr), Some(&narrowed), &[]), None);
        assert_eq!(
            mfa_sensitive_change(Some(&narrowed), Some(&hr), &[]).as_deref(),
            Some(
                "removes or changes a deny rule or the network of an access point with require_mfa rules"
            )
        );
        let mut opened = narrowed.clone();
        opened.network.allowed_cidrs = vec!["0.0.0.0/0".parse().expect("cidr")];
        assert!(mfa_sensitive_change(Some(&narrowed), Some(&opened), &[]).is_some());

        let mut sibling = spec("b", "hr/reports/", json!([get]));
        sibling.name = "hr2".into();
        let reaches = Some(r#"reaches keys of access point "a", which has require_mfa rules"#);
        assert_eq!(
            mfa_sensitive_change(None, Some(&sibling), &[&hr]).as_deref(),
            reaches
        );
        // Moved onto the protected keys, or granted more while on them.
        let mut elsewhere = sibling.clone();
        elsewhere.prefix = "public/".into();
        assert_eq!(mfa_sensitive_change(None, Some(&elsewhere), &[&hr]), None);
        assert_eq!(
            mfa_sensitive_change(Some(&elsewhere), Some(&sibling), &[&hr]).as_deref(),
            reaches
        );
        let mut more = sibling.clone();
        more.rules.push(
            serde_json::from_value(
                json!({"effect": "allow", "groups": ["all"], "operations": ["get"]}),
            )
            .expect("rule"),
        );
        assert_eq!(
            mfa_sensitive_change(Some(&sibling), Some(&more), &[&hr]).as_deref(),
            reaches
        );
        // An unprotected sibling, another bucket, or a change that grants nothing new is fine.
        let mut longer = sibling.clone();
        longer.max_expires_in = 7200;
        assert_eq!(
            mfa_sensitive_change(Some(&sibling), Some(&longer), &[&hr]),
            None
        );
        let mut other_bucket = sibling.clone();
        other_bucket.bucket = "c".into();
        assert_eq!(
            mfa_sensitive_change(None, Some(&other_bucket), &[&hr]),
            None
        );
        let unprotected = spec("b", "hr/", json!([get]));
        assert_eq!(
            mfa_sensitive_change(None, Some(&sibling), &[&unprotected]),
            None
        );
    }
}
