//! `authorize`: the checks every issuing path makes, in the order a request meets them — the
//! caller's network, the key, the rules — and nothing else. Pure: the HTTP layer turns a
//! [`Refusal`] into its answer and its audit record.

use std::net::IpAddr;

use super::Operation;
use super::compiled::CompiledAccessPoint;
use super::evaluate::{Decision, DenyReason, Keys, Ruling, rule_on};
use super::key::{KeyError, validate_key};
use crate::Principal;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The access point has `network.allowed_cidrs` and the caller's address is outside
    /// them, or unknown.
    #[error("the caller's network address is not allowed for this access point")]
    Network,
    /// The key could leave the prefix, or is not a key S3 would store as such.
    #[error("invalid key: {0}")]
    Key(KeyError),
    /// The rules deny; `key` is the full key they were asked about, `rule` the index of the
    /// rule that decided (none for an implicit deny).
    #[error("the rules deny ({})", .reason.as_str())]
    Rules {
        key: String,
        reason: DenyReason,
        rule: Option<usize>,
    },
}

/// What the rules allowed: the full key (prefix + key) and the index of the rule that granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub key: String,
    pub rule: Option<usize>,
}

/// May `principal`, calling from `client_ip`, do `op` on `keys` of `ap`?
pub fn authorize(
    ap: &CompiledAccessPoint,
    principal: &Principal,
    client_ip: Option<IpAddr>,
    op: Operation,
    keys: Keys<'_>,
) -> Result<Authorized, Refusal> {
    if !in_network(ap, client_ip) {
        return Err(Refusal::Network);
    }
    let (Keys::Exact(key) | Keys::Prefix(key)) = keys;
    let full_key = validate_key(&ap.spec.prefix, key).map_err(Refusal::Key)?;
    let Ruling { decision, rule } = rule_on(ap, principal, op, keys);
    match decision {
        Decision::Allow => Ok(Authorized {
            key: full_key,
            rule,
        }),
        Decision::Deny(reason) => Err(Refusal::Rules {
            key: full_key,
            reason,
            rule,
        }),
    }
}

/// Is a caller at `client_ip` inside the access point's `network.allowed_cidrs` (any address
/// is, when it has none; an unknown one is not, when it has some)?
pub fn in_network(ap: &CompiledAccessPoint, client_ip: Option<IpAddr>) -> bool {
    let cidrs = &ap.spec.network.allowed_cidrs;
    cidrs.is_empty() || client_ip.is_some_and(|ip| cidrs.iter().any(|n| n.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(cidrs: &[&str]) -> CompiledAccessPoint {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "a", "bucket": "bucket-a", "prefix": "p/",
            "network": {"allowed_cidrs": cidrs},
            "rules": [
                {"effect": "allow", "groups": ["users"], "operations": ["get", "put"], "keys": ["${jwt:sub}/*"]},
                {"effect": "deny", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/locked/*"]}
            ]
        }))
        .expect("spec");
        CompiledAccessPoint::compile(spec).expect("valid")
    }

    fn alice() -> Principal {
        Principal::for_tests("https://idp/", "alice", &["users"])
    }

    #[test]
    fn network_then_key_then_rules() {
        let inside: Option<IpAddr> = Some("10.1.2.3".parse().expect("ip"));
        let outside: Option<IpAddr> = Some("192.0.2.1".parse().expect("ip"));
        let internal = ap(&["10.0.0.0/8"]);
        let get = |ip, key| authorize(&internal, &alice(), ip, Operation::Get, Keys::Exact(key));
        let allowed = |key: &str, rule| {
            Ok(Authorized {
                key: key.into(),
                rule: Some(rule),
            })
        };
        assert_eq!(get(inside, "alice/a.png"), allowed("p/alice/a.png", 0));
        // The network comes first: even an invalid key is refused for the network.
        assert_eq!(get(outside, "../x"), Err(Refusal::Network));
        assert_eq!(get(None, "alice/a.png"), Err(Refusal::Network));
        assert_eq!(get(inside, "../x"), Err(Refusal::Key(KeyError::DotSegment)));
        assert_eq!(
            get(inside, "bob/a.png"),
            Err(Refusal::Rules {
                key: "p/bob/a.png".into(),
                reason: DenyReason::ImplicitDeny,
                rule: None,
            })
        );
        let open = ap(&[]);
        assert_eq!(
            authorize(
                &open,
                &alice(),
                None,
                Operation::Put,
                Keys::Prefix("alice/locked/")
            ),
            Err(Refusal::Rules {
                key: "p/alice/locked/".into(),
                reason: DenyReason::ExplicitDeny,
                rule: Some(1),
            })
        );
        assert_eq!(
            authorize(
                &open,
                &alice(),
                None,
                Operation::Put,
                Keys::Prefix("alice/pics/")
            ),
            allowed("p/alice/pics/", 0)
        );
    }
}
