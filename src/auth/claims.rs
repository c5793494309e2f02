//! Mapping verified claims to groups and MFA.

use serde_json::{Map, Value};

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
