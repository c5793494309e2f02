//! Why a presign request would be allowed or refused: every check of the request path in its
//! order (transport, principal, access point, network, key, rules, request), each rule of the
//! access point traced condition by condition, and the rate limits the request would be
//! charged to. Pure: the caller verifies a token (or simulates its claims) and finds the
//! access point; nothing here signs, charges a limit or writes a record.
//!
//! The decision comes from the functions the presign endpoint itself calls
//! (`policy::authorize`, `policy::check_request`), so an explanation cannot disagree with the
//! answer a real request gets (`tests/explain.rs` checks that it does not).
//!
//! - `matrix`: the `presignd explain --matrix` file of expected decisions.

pub mod matrix;

use std::net::IpAddr;

use serde::Serialize;

use crate::Principal;
use crate::auth::AuthError;
use crate::config::{IssuerConfig, LimitsConfig};
use crate::policy::{
    self, CompiledAccessPoint, Keys, PresignRequest, Refusal, RequestRefusal, RuleTrace,
};

/// What to explain: who asks (a verified or simulated principal, or why the token failed),
/// which access point (`None`: no such name), the request, and how it arrives.
pub struct Question<'a> {
    pub principal: Result<&'a Principal, &'a AuthError>,
    pub access_point: Option<&'a CompiledAccessPoint>,
    pub request: &'a PresignRequest,
    pub client_ip: Option<IpAddr>,
    pub tls: bool,
    /// `server.require_https`.
    pub require_https: bool,
    /// `[limits]`, for the limits the request would be charged to.
    pub limits: &'a LimitsConfig,
    /// Whether issued URLs are `https://` (no `s3.endpoint`, or an `https://` one), and
    /// whether plain-http URLs are allowed anyway (`s3.allow_insecure_endpoint`).
    pub url_https: bool,
    pub insecure_allowed: bool,
}

/// Whether the signer issues `https://` URLs under `config`: always for AWS (no
/// `s3.endpoint`), else as the endpoint says.
pub fn url_https(config: &crate::config::Config) -> bool {
    config
        .s3
        .endpoint
        .as_deref()
        .is_none_or(|e| e.starts_with("https://"))
}

/// A simulated principal (no token): from the named issuer, or the first configured one; an
/// issuer that is not configured, or an empty subject, is refused as its token would be.
/// `groups` are taken as the rules see them (after the issuer's `groups_strip_prefix` and
/// `group_aliases`).
pub fn simulate(
    issuers: &[IssuerConfig],
    sub: &str,
    groups: &[String],
    issuer: Option<&str>,
    mfa: bool,
) -> Result<Principal, AuthError> {
    let iss = match issuer {
        Some(iss) => iss.to_string(),
        None => issuers
            .first()
            .map(|i| i.issuer.clone())
            .unwrap_or_default(),
    };
    if !issuers.iter().any(|i| i.issuer == iss) {
        return Err(AuthError::UnknownIssuer);
    }
    if sub.is_empty() {
        return Err(AuthError::Invalid(
            "the sub claim must be a non-empty string",
        ));
    }
    // The same refusals the verifier makes, so an explanation matches the real request.
    crate::auth::claims::check_identity(sub, groups)?;
    Ok(Principal {
        sub: sub.to_string(),
        iss,
        groups: groups.iter().filter(|g| !g.is_empty()).cloned().collect(),
        mfa,
        issued_at: None,
        expires_at: 0,
        jti: None,
    })
}

/// Where a refused request stops: the same refusal the request path answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `require_https` and the request is not over TLS.
    Transport,
    /// The token was refused.
    Principal(AuthError),
    /// No access point by that name, or none the principal may see (404 either way).
    AccessPoint,
    /// Network, key or rules.
    Refused(Refusal),
    /// The request itself (fields, lifetime, upload constraints, SSE-C's TLS rule).
    Request(RequestRefusal),
    /// The URL would be plain http: not allowed by configuration, or SSE-C (whose key must
    /// only ever travel over TLS).
    InsecureUrl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not reached: an earlier check refused the request.
    Skipped,
}

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// A rate limit the request would be charged to (it is not charged).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitView {
    pub scope: &'static str,
    pub per_minute: f64,
    pub burst: u32,
}

/// The answer: the checks in order, the rules (when the request reached them), the rule that
/// decided, the full key (once validated) and the URL lifetime (when allowed).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub rules: Vec<RuleTrace>,
    pub decided_by: Option<usize>,
    pub key: Option<String>,
    pub expires_in: Option<u32>,
    pub limits: Vec<LimitView>,
    pub outcome: Result<(), Stop>,
}

const CHECKS: [&str; 8] = [
    "transport",
    "principal",
    "access_point",
    "network",
    "key",
    "rules",
    "request",
    "url",
];

/// Explains `q`: the request path's checks, stopping where it would stop.
pub fn explain(q: &Question<'_>) -> Explanation {
    let mut steps: Vec<Step> = Vec::with_capacity(CHECKS.len());
    let mut e = Explanation {
        steps: Vec::new(),
        rules: Vec::new(),
        decided_by: None,
        key: None,
        expires_in: None,
        limits: Vec::new(),
        outcome: Ok(()),
    };
    let outcome = walk(q, &mut steps, &mut e);
    for check in CHECKS.iter().skip(steps.len()) {
        steps.push(Step {
            check,
            outcome: Outcome::Skipped,
            detail: "not reached".into(),
        });
    }
    e.steps = steps;
    e.outcome = outcome;
    e
}

fn pass(steps: &mut Vec<Step>, check: &'static str, detail: impl Into<String>) {
    steps.push(Step {
        check,
        outcome: Outcome::Pass,
        detail: detail.into(),
    });
}

fn fail(steps: &mut Vec<Step>, check: &'static str, detail: impl Into<String>, stop: Stop) -> Stop {
    steps.push(Step {
        check,
        outcome: Outcome::Fail,
        detail: detail.into(),
    });
    stop
}

fn walk(q: &Question<'_>, steps: &mut Vec<Step>, e: &mut Explanation) -> Result<(), Stop> {
    if q.require_https && !q.tls {
        return Err(fail(
            steps,
            "transport",
            "server.require_https is on and the request is not over TLS",
            Stop::Transport,
        ));
    }
    pass(
        steps,
        "transport",
        if q.tls {
            "over TLS"
        } else {
            "plain HTTP allowed (require_https is off)"
        },
    );

    let principal = match q.principal {
        Ok(p) => p,
        Err(err) => {
            return Err(fail(
                steps,
                "principal",
                err.to_string(),
                Stop::Principal(err.clone()),
            ));
        }
    };
    pass(
        steps,
        "principal",
        format!(
            "sub {:?} from {} in groups {:?}{}",
            principal.sub,
            principal.iss,
            principal.groups,
            if principal.mfa {
                ", with MFA"
            } else {
                ", without MFA"
            }
        ),
    );

    let Some(ap) = q.access_point.filter(|ap| policy::can_see(ap, principal)) else {
        let detail = match q.access_point {
            None => "no access point by this name".to_string(),
            Some(_) => "no allow rule of this access point is for the principal's groups and issuer: it does not exist for them".to_string(),
        };
        return Err(fail(steps, "access_point", detail, Stop::AccessPoint));
    };
    pass(
        steps,
        "access_point",
        format!(
            "{} on {} (prefix {:?})",
            ap.name(),
            ap.spec.bucket,
            ap.spec.prefix
        ),
    );

    let op = q.request.operation.authorized_as();
    let keys = q.request.keys();
    // The decision is authorize's; the steps and the trace say how it came about.
    let decided = policy::authorize(ap, principal, q.client_ip, op, keys);
    let cidrs = &ap.spec.network.allowed_cidrs;
    let network = match (cidrs.is_empty(), q.client_ip) {
        (true, _) => "no network.allowed_cidrs: any address".to_string(),
        (false, Some(ip)) => format!("{ip} against {}", join(cidrs)),
        (false, None) => format!("unknown client address against {}", join(cidrs)),
    };
    if let Err(Refusal::Network) = decided {
        return Err(fail(
            steps,
            "network",
            network,
            Stop::Refused(Refusal::Network),
        ));
    }
    pass(steps, "network", network);

    if let Err(Refusal::Key(err)) = &decided {
        let stop = Stop::Refused(Refusal::Key(err.clone()));
        return Err(fail(steps, "key", err.to_string(), stop));
    }
    let full_key = match &decided {
        Ok(a) => a.key.clone(),
        Err(Refusal::Rules { key, .. }) => key.clone(),
        Err(_) => String::new(),
    };
    pass(steps, "key", format!("full key {full_key:?}"));
    e.key = Some(full_key);
    e.rules = policy::trace_rules(ap, principal, op, keys);

    let what = match keys {
        Keys::Exact(_) => "",
        Keys::Prefix(_) => " (every key under the prefix)",
    };
    match decided {
        Ok(a) => {
            e.decided_by = a.rule;
            let rule = a.rule.map_or(String::new(), |i| format!("rule {i} allows"));
            pass(
                steps,
                "rules",
                format!("{rule} {op}{what}").trim().to_string(),
            );
        }
        Err(Refusal::Rules { key, reason, rule }) => {
            e.decided_by = rule;
            let detail = match (reason, rule) {
                (policy::DenyReason::ExplicitDeny, Some(i)) => {
                    format!("rule {i} denies {op}{what}")
                }
                (policy::DenyReason::MfaRequired, Some(i)) => {
                    format!("mfa_required: rule {i} decides, and the principal has no MFA")
                }
                _ => format!("implicit_deny: no allow rule grants {op}{what}"),
            };
            let stop = Stop::Refused(Refusal::Rules { key, reason, rule });
            return Err(fail(steps, "rules", detail, stop));
        }
        Err(other) => return Err(Stop::Refused(other)),
    }

    match policy::check_request(ap, q.request, q.tls) {
        Ok(expires_in) => {
            e.expires_in = Some(expires_in);
            pass(steps, "request", format!("URL lifetime {expires_in} s"));
        }
        Err(refusal) => {
            let detail = refusal.to_string();
            return Err(fail(steps, "request", detail, Stop::Request(refusal)));
        }
    }

    // What the signer refuses after signing (nothing is signed here).
    let sse_c = matches!(ap.spec.encryption, policy::Encryption::SseC);
    if !q.url_https && (sse_c || !q.insecure_allowed) {
        let detail = if sse_c {
            "the S3 endpoint is plain http, and SSE-C keys travel only over TLS"
        } else {
            "the S3 endpoint is plain http and s3.allow_insecure_endpoint is off"
        };
        return Err(fail(steps, "url", detail, Stop::InsecureUrl));
    }
    pass(
        steps,
        "url",
        if q.url_https {
            "an https:// URL"
        } else {
            "a plain http:// URL (s3.allow_insecure_endpoint)"
        },
    );
    e.limits = crate::limits::buckets(q.limits, "", principal, ap, op)
        .into_iter()
        .map(|b| LimitView {
            scope: b.scope.as_str(),
            per_minute: 60_000_000.0 / b.quota.interval_us().max(1) as f64,
            burst: b.quota.burst(),
        })
        .collect();
    Ok(())
}

fn join(cidrs: &[ipnet::IpNet]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
