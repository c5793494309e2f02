//! Mapping verified claims to groups and MFA.

use serde_json::{Map, Value};

use super::AuthError;

/// A claim by its whole name first (`cognito:groups`, `https://example.com/groups`), else by
/// a dotted path through nested objects (`realm_access.roles`).
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Whether a claim value is free of control characters (NUL included). `sub`, `groups` and
/// `jti` end up in audit records, metrics-free logs and database rows (PostgreSQL `text`
/// cannot hold NUL); no identity provider issues them, so a token carrying one is refused.
pub(crate) fn printable(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// The identity a request acts as, refused when it carries a control character (see
/// [`printable`]): the verifier and `explain` make the same refusal.
pub(crate) fn check_identity(sub: &str, groups: &[String]) -> Result<(), AuthError> {
    if !printable(sub) {
        return Err(AuthError::Invalid(
            "the sub claim must not contain control characters",
        ));
    }
    if !groups.iter().all(|g| printable(g)) {
        return Err(AuthError::Invalid(
            "the groups claim must not contain control characters",
        ));
    }
    Ok(())
}

/// Groups from an array of strings or a single string; anything else means no groups.
pub(crate) fn groups(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    match lookup(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(group)) => vec![group.clone()],
        _ => Vec::new(),
    }
}

/// The groups as the rules see them: `groups_strip_prefix` removed from each (a group that is
/// only the prefix is dropped), then each alias added after the group it names.
pub(crate) fn mapped_groups(
    groups: Vec<String>,
    strip_prefix: Option<&str>,
    aliases: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let group = match strip_prefix {
            Some(prefix) => group
                .strip_prefix(prefix)
                .map_or(group.clone(), str::to_owned),
            None => group,
        };
        if group.is_empty() {
            continue;
        }
        let alias = aliases.get(&group).cloned();
        out.push(group);
        out.extend(alias);
    }
    out
}

/// Whether the audience claim at `path` is one of `accepted`, or an array holding one.
pub(crate) fn audience_accepted(
    claims: &Map<String, Value>,
    path: &str,
    accepted: &[String],
) -> bool {
    match lookup(claims, path) {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| accepted.iter().any(|a| a == aud)),
        _ => false,
    }
}

/// RFC 8176: the `amr` array lists `"mfa"` when more than one factor was used.
pub(crate) fn mfa(claims: &Map<String, Value>, path: &str) -> bool {
    matches!(lookup(claims, path), Some(Value::Array(items)) if items.iter().any(|v| v == "mfa"))
}

/// A NumericDate claim as whole seconds (JWT allows fractions).
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn printable_refuses_every_control_character_and_nothing_else() {
        for ok in [
            "alice",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "Zoë 名前",
            "a b\u{a0}c",
        ] {
            assert!(printable(ok), "{ok:?}");
        }
        for bad in [
            "a\0b",
            "a\nb",
            "a\rb",
            "a\tb",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
        ] {
            assert!(!printable(bad), "{bad:?}");
        }
    }

    #[test]
    fn groups_by_name_or_path() {
        let c = map(json!({
            "groups": ["a", "b", 3],
            "cognito:groups": "solo",
            "https://example.com/groups": ["ns"],
            "realm_access": {"roles": ["r1"]},
            "weird": {"x": 1},
            "a.b": ["literal"],
            "a": {"b": ["nested"]},
        }));
        assert_eq!(groups(&c, "groups"), ["a", "b"]);
        assert_eq!(groups(&c, "cognito:groups"), ["solo"]);
        assert_eq!(groups(&c, "https://example.com/groups"), ["ns"]);
        assert_eq!(groups(&c, "realm_access.roles"), ["r1"]);
        assert_eq!(groups(&c, "a.b"), ["literal"]);
        assert!(groups(&c, "weird").is_empty());
        assert!(groups(&c, "weird.x").is_empty());
        assert!(groups(&c, "missing.path").is_empty());
        assert!(groups(&c, "realm_access.roles.deeper").is_empty());
    }

    #[test]
    fn groups_are_stripped_and_aliased() {
        let aliases = std::collections::BTreeMap::from([(
            "6a8f1c2e-0000-4000-8000-000000000001".to_string(),
            "premium".to_string(),
        )]);
        let groups = |g: &[&str], strip: Option<&str>| {
            mapped_groups(g.iter().map(|s| s.to_string()).collect(), strip, &aliases)
        };
        assert_eq!(
            groups(&["/premium", "/org/staff", "/", "plain"], Some("/")),
            ["premium", "org/staff", "plain"]
        );
        assert_eq!(
            groups(&["6a8f1c2e-0000-4000-8000-000000000001", "other"], None),
            ["6a8f1c2e-0000-4000-8000-000000000001", "premium", "other"]
        );
        assert_eq!(groups(&["/x"], None), ["/x"]);
    }

    #[test]
    fn audiences_from_any_claim() {
        let ok = ["app".to_string()];
        let c = map(json!({"aud": ["x", "app"], "client_id": "app", "azp": "other"}));
        assert!(audience_accepted(&c, "aud", &ok));
        assert!(audience_accepted(&c, "client_id", &ok));
        assert!(!audience_accepted(&c, "azp", &ok));
        assert!(!audience_accepted(&c, "missing", &ok));
        assert!(!audience_accepted(&map(json!({"aud": 5})), "aud", &ok));
    }

    #[test]
    fn mfa_from_amr() {
        assert!(mfa(&map(json!({"amr": ["pwd", "mfa"]})), "amr"));
        assert!(!mfa(&map(json!({"amr": ["pwd"]})), "amr"));
        assert!(!mfa(&map(json!({"amr": "mfa"})), "amr"));
        assert!(!mfa(&map(json!({})), "amr"));
    }

    #[test]
    fn numeric_dates() {
        let c = map(json!({"a": 5, "b": 5.7, "c": "5"}));
        assert_eq!(numeric_date(&c, "a"), Some(5));
        assert_eq!(numeric_date(&c, "b"), Some(5));
        assert_eq!(numeric_date(&c, "c"), None);
    }
}
