//! Property tests for the pure policy layer: keys never leave their prefix, rule evaluation
//! agrees with a naive reference model, and the glob matcher agrees with a naive recursive
//! one.

use std::collections::BTreeSet;

use presignd::Principal;
use presignd::policy::{
    AccessPointSpec, CompiledAccessPoint, Decision, DenyReason, Effect, KeyPattern, Keys, MfaCheck,
    Operation, OperationPattern, Rule, RuleTrace, Ruling, allowed_operations, can_see, evaluate,
    evaluate_prefix, rule_on, trace_rules, validate_key,
};
use proptest::prelude::*;

#[path = "common/policy_gen.rs"]
mod policy_gen;
use policy_gen::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------
// (a) key validation never escapes the prefix
// ---------------------------------------------------------------------------------------

/// Pieces that exercise every rule: separators, dot segments, encodings, controls, bidi,
/// look-alikes, multi-byte characters.
const KEY_ATOMS: &[&str] = &[
    "a", "b", "photos", "x.png", "/", "/", "/", ".", ".", "..", "...", "%2e", "%2E", "%2f", "%5C",
    "%25", "%252e", "%", "\\", "\0", "\u{7f}", "\u{85}", "\n", "\u{202e}", "\u{200b}", "\u{feff}",
    "\u{ff0e}", "\u{2215}", "é", "履歴", "🦀", " ", "~", "?", "*",
];

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(select(KEY_ATOMS), 0..12).prop_map(|v| v.concat()),
        1 => any::<String>(),
        // Long keys, around the 1024-byte limit.
        1 => (select(&["a", "é", "/a"][..]), 300usize..1100).prop_map(|(s, n)| s.repeat(n / s.len())),
    ]
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::collection::vec(
            select(&["users", "a", "é", "x.y", ".", "..", "", "%2e"][..]),
            1..4
        )
        .prop_flat_map(|segs| (Just(segs), any::<bool>()))
        .prop_map(|(segs, slash)| {
            let mut p = segs.join("/");
            if slash {
                p.push('/');
            }
            p
        }),
        (select(&["p", "p/"][..]), 0usize..1000).prop_map(|(s, n)| format!("{}{s}", "q".repeat(n))),
    ]
}

/// Decodes `%XX` once, as a lenient downstream tool would.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// No `.`/`..` segment, no empty segment except a single trailing one.
fn segments_are_clean(full: &str) -> bool {
    let segs: Vec<&str> = full.split(['/', '\\']).collect();
    let last = segs.len() - 1;
    segs.iter()
        .enumerate()
        .all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == last))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_keys_stay_under_the_prefix(prefix in prefix_strategy(), key in key_strategy()) {
        // Only prefixes an access point could actually have.
        if spec_with_prefix(&prefix).validate().is_err() {
            return Ok(());
        }
        if let Ok(full) = validate_key(&prefix, &key) {
            prop_assert_eq!(&full, &format!("{prefix}{key}"));
            prop_assert!(full.starts_with(&prefix));
            prop_assert!(full.len() <= 1024, "{} bytes", full.len());
            prop_assert!(!full.starts_with('/'));
            prop_assert!(!full.chars().any(char::is_control), "{:?}", full);
            prop_assert!(segments_are_clean(&full), "{:?}", full);
            // Still clean after a downstream tool percent-decodes it once or twice.
            let once = percent_decode(&full);
            prop_assert!(segments_are_clean(&once), "{:?} decodes to {:?}", full, once);
            let twice = percent_decode(&once);
            prop_assert!(segments_are_clean(&twice), "{:?} decodes to {:?}", full, twice);
        }
    }

    /// The converse, so the property above cannot pass by rejecting everything.
    #[test]
    fn plain_keys_are_accepted(
        segs in prop::collection::vec("[a-z0-9é履._ -]{1,8}", 1..6),
        trailing in any::<bool>(),
    ) {
        prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
        let mut key = segs.join("/");
        if trailing {
            key.push('/');
        }
        prop_assert_eq!(validate_key("users/", &key), Ok(format!("users/{key}")));
    }
}

// ---------------------------------------------------------------------------------------
// (b) rule evaluation agrees with a reference model
// ---------------------------------------------------------------------------------------

/// The naive recursive matcher: `*` any sequence, `?` one character, the rest literal.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Tok {
    Lit(char),
    Star,
    One,
}

fn naive_match(p: &[Tok], k: &[char]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((Tok::Star, rest)) => (0..=k.len()).any(|i| naive_match(rest, &k[i..])),
        Some((Tok::One, rest)) => !k.is_empty() && naive_match(rest, &k[1..]),
        Some((Tok::Lit(c), rest)) => k.first() == Some(c) && naive_match(rest, &k[1..]),
    }
}

/// Expands `${jwt:sub}` to literal characters; `None` when it is used with a subject it
/// cannot hold (empty, or with a `/`).
fn expand(pattern: &str, sub: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut used_sub = false;
    for (i, part) in pattern.split("${jwt:sub}").enumerate() {
        if i > 0 {
            used_sub = true;
            out.extend(sub.chars().map(Tok::Lit));
        }
        out.extend(part.chars().map(|c| match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        }));
    }
    if used_sub && (sub.is_empty() || sub.contains('/')) {
        None
    } else {
        Some(out)
    }
}

fn ref_glob(pattern: &str, key: &str, sub: &str) -> bool {
    let k: Vec<char> = key.chars().collect();
    expand(pattern, sub).is_some_and(|p| naive_match(&p, &k))
}

struct Model<'a> {
    spec: &'a AccessPointSpec,
    object_lambda: bool,
    p: &'a Principal,
}

impl Model<'_> {
    fn in_groups(&self, r: &Rule) -> bool {
        r.groups
            .iter()
            .any(|g| g == "*" || self.p.groups.contains(g))
    }

    fn has_op(r: &Rule, op: Operation) -> bool {
        r.operations.contains(&OperationPattern::Any)
            || r.operations.contains(&OperationPattern::Op(op))
    }

    fn has_key(&self, r: &Rule, key: &str) -> bool {
        r.keys.iter().any(|k| ref_glob(k, key, &self.p.sub))
    }

    /// A deny pattern applies where it matches, and wherever it uses `${jwt:sub}` for a
    /// subject that cannot stand in it.
    fn deny_has_key(&self, r: &Rule, key: &str) -> bool {
        let unusable = self.p.sub.is_empty() || self.p.sub.contains('/');
        r.keys
            .iter()
            .any(|k| ref_glob(k, key, &self.p.sub) || (unusable && k.contains("${jwt:sub}")))
    }

    fn denies(&self, op: Operation, key: &str) -> Vec<&Rule> {
        self.spec
            .rules
            .iter()
            .filter(|r| r.effect == Effect::Deny)
            .filter(|r| self.in_groups(r) && Self::has_op(r, op) && self.deny_has_key(r, key))
            .collect()
    }

    /// Would an allow rule grant `op` on `key` if the principal's MFA were `mfa`?
    fn allow_grants(&self, op: Operation, key: &str, mfa: bool) -> bool {
        self.spec.rules.iter().any(|r| {
            r.effect == Effect::Allow
                && self.in_groups(r)
                && Self::has_op(r, op)
                && self.has_key(r, key)
                && (mfa || !r.require_mfa)
                && (op != Operation::Delete || r.require_mfa)
                && (op == Operation::Get || !self.object_lambda)
        })
    }

    fn evaluate(&self, op: Operation, key: &str) -> Decision {
        let mfa = self.p.mfa;
        // "deny unless MFA" rules apply only to principals without MFA.
        let applicable: Vec<&Rule> = self
            .denies(op, key)
            .into_iter()
            .filter(|r| !(r.require_mfa && mfa))
            .collect();
        if !applicable.is_empty() {
            let only_mfa_conditional = applicable.iter().all(|r| r.require_mfa);
            if only_mfa_conditional && self.allow_grants(op, key, true) {
                return Decision::Deny(DenyReason::MfaRequired);
            }
            return Decision::Deny(DenyReason::ExplicitDeny);
        }
        if self.allow_grants(op, key, mfa) {
            return Decision::Allow;
        }
        if !mfa && self.allow_grants(op, key, true) {
            return Decision::Deny(DenyReason::MfaRequired);
        }
        Decision::Deny(DenyReason::ImplicitDeny)
    }

    fn allowed_operations(&self) -> Vec<Operation> {
        let mfa = self.p.mfa;
        Operation::ALL
            .into_iter()
            .filter(|&op| {
                self.spec.rules.iter().any(|r| {
                    r.effect == Effect::Allow
                        && self.in_groups(r)
                        && Self::has_op(r, op)
                        && (mfa || !r.require_mfa)
                        && (op != Operation::Delete || r.require_mfa)
                        && (op == Operation::Get || !self.object_lambda)
                })
            })
            .filter(|&op| {
                !self.spec.rules.iter().any(|r| {
                    r.effect == Effect::Deny
                        && self.in_groups(r)
                        && Self::has_op(r, op)
                        && r.keys.iter().any(|k| k == "*")
                        && !(r.require_mfa && mfa)
                })
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluation_matches_the_reference_model(
        spec in access_point_strategy(),
        p in principal_strategy(),
        op in select(&Operation::ALL[..]),
        key in select(KEYS),
    ) {
        let model = Model { spec: &spec, object_lambda: spec.bucket == OLAP, p: &p };
        let ap = CompiledAccessPoint::compile(spec.clone());
        prop_assert!(ap.is_ok(), "{:?}", ap);
        let Ok(ap) = ap else { unreachable!() };
        prop_assert_eq!(evaluate(&ap, &p, op, key), model.evaluate(op, key));
    }

    #[test]
    fn discovery_matches_the_reference_model(spec in access_point_strategy(), p in principal_strategy()) {
        let model = Model { spec: &spec, object_lambda: spec.bucket == OLAP, p: &p };
        let Ok(ap) = CompiledAccessPoint::compile(spec.clone()) else {
            return Err(TestCaseError::fail("generated spec does not compile"));
        };
        let ops = allowed_operations(&ap, &p);
        prop_assert_eq!(&ops, &model.allowed_operations());
        // allowed_operations over-approximates: anything allowed on some key is listed, and
        // an access point that allows anything is visible.
        let listed: BTreeSet<Operation> = ops.into_iter().collect();
        for op in Operation::ALL {
            for key in KEYS {
                if evaluate(&ap, &p, op, key) == Decision::Allow {
                    prop_assert!(listed.contains(&op), "{} allowed on {} but not listed", op, key);
                    prop_assert!(can_see(&ap, &p));
                }
            }
        }
    }
}

const PREFIXES: &[&str] = &[
    "", "a", "al", "alice", "alice/", "a/", "b", "bob/", "*/", "?/", "alice/x",
];
const COMPLETIONS: &[&str] = &[
    "", "x", "/", "b", "/b", "x/b", "ice/x", "lice/x", "2/x", "*", "?",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A `starts-with` POST policy is sound: whenever `evaluate_prefix` allows a prefix, the
    /// exact-key evaluation allows every completion tried (so the browser cannot write
    /// outside what the rules allow), and a completion denied explicitly is never under an
    /// allowed prefix.
    #[test]
    fn an_allowed_prefix_allows_every_completion(
        spec in access_point_strategy(),
        p in principal_strategy(),
        op in select(&Operation::ALL[..]),
        prefix in select(PREFIXES),
    ) {
        let Ok(ap) = CompiledAccessPoint::compile(spec.clone()) else {
            return Err(TestCaseError::fail("generated spec does not compile"));
        };
        if evaluate_prefix(&ap, &p, op, prefix) == Decision::Allow {
            for rest in COMPLETIONS {
                let key = format!("{prefix}{rest}");
                prop_assert_eq!(evaluate(&ap, &p, op, &key), Decision::Allow, "{} under {}", key, prefix);
            }
        }
    }
}

/// What a rule trace must say for `ruling` to follow from it: the deciding rule is the first
/// that applies (a deny before any allow), and a rule applies only when all its conditions
/// hold.
fn trace_explains(ruling: Ruling, trace: &[RuleTrace], mfa: bool) -> Result<(), TestCaseError> {
    for t in trace {
        if t.applies {
            prop_assert!(t.issuer && t.groups && t.operation && t.keys, "{:?}", t);
            match t.effect {
                Effect::Allow => {
                    prop_assert!(t.mfa != MfaCheck::Missing, "{:?}", t);
                    // Only the subject note may stand on a granting rule (another of its
                    // patterns matched).
                    prop_assert!(t.note.is_none_or(|n| n.contains("jwt:sub")), "{:?}", t);
                }
                Effect::Deny => prop_assert!(t.mfa != MfaCheck::Present, "{:?}", t),
            }
        }
    }
    let first = |effect: Effect| {
        trace
            .iter()
            .find(|t| t.applies && t.effect == effect)
            .map(|t| t.index)
    };
    let (deny, allow) = (first(Effect::Deny), first(Effect::Allow));
    match ruling.decision {
        Decision::Allow => {
            prop_assert_eq!(deny, None);
            prop_assert_eq!(ruling.rule, allow);
            prop_assert!(allow.is_some());
        }
        Decision::Deny(DenyReason::ExplicitDeny) => {
            prop_assert_eq!(ruling.rule, deny);
            prop_assert!(deny.is_some());
        }
        Decision::Deny(DenyReason::ImplicitDeny) => {
            prop_assert_eq!((deny, allow, ruling.rule), (None, None, None));
        }
        Decision::Deny(DenyReason::MfaRequired) => {
            // Refused by a deny-unless-MFA rule, or granted by nothing without MFA; either
            // way a rule is named.
            prop_assert!(!mfa);
            prop_assert!(ruling.rule.is_some());
            if deny.is_some() {
                prop_assert_eq!(ruling.rule, deny);
            } else {
                prop_assert_eq!(allow, None);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `explain`'s per-rule trace agrees with the decision and names the rule that gave it,
    /// for one key and for a POST's key prefix.
    #[test]
    fn the_rule_trace_explains_the_decision(
        spec in access_point_strategy(),
        p in principal_strategy(),
        op in select(&Operation::ALL[..]),
        key in select(KEYS),
        prefix in select(PREFIXES),
    ) {
        let Ok(ap) = CompiledAccessPoint::compile(spec.clone()) else {
            return Err(TestCaseError::fail("generated spec does not compile"));
        };
        for keys in [Keys::Exact(key), Keys::Prefix(prefix)] {
            let ruling = rule_on(&ap, &p, op, keys);
            let trace = trace_rules(&ap, &p, op, keys);
            prop_assert_eq!(trace.len(), spec.rules.len());
            trace_explains(ruling, &trace, p.mfa)?;
        }
        prop_assert_eq!(rule_on(&ap, &p, op, Keys::Exact(key)).decision, evaluate(&ap, &p, op, key));
    }
}

// ---------------------------------------------------------------------------------------
// (c) the glob matcher agrees with the naive recursive one
// ---------------------------------------------------------------------------------------

fn glob_pattern_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(&["a", "b", "é", "/", "*", "*", "?", "${jwt:sub}"][..]),
        1..10,
    )
    .prop_map(|v| v.concat())
    .prop_filter("patterns are relative", |p| !p.starts_with('/'))
}

fn glob_text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(select(&["a", "b", "é", "/", "*", "?"][..]), 0..12)
        .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn glob_matches_like_the_naive_matcher(
        pattern in glob_pattern_strategy(),
        key in glob_text_strategy(),
        sub in prop_oneof![Just(String::new()), glob_text_strategy()],
    ) {
        let parsed = KeyPattern::parse(&pattern);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", pattern, parsed);
        let Ok(parsed) = parsed else { unreachable!() };
        prop_assert_eq!(parsed.matches(&key, &sub), ref_glob(&pattern, &key, &sub), "pattern {:?} key {:?} sub {:?}", pattern, key, sub);
    }

    /// Keys built to match (the pattern with each wildcard filled in) really match.
    #[test]
    fn glob_matches_its_own_instances(
        pattern in glob_pattern_strategy(),
        fills in prop::collection::vec(glob_text_strategy(), 10),
        sub in "[a-z*?]{1,4}",
    ) {
        let mut key = String::new();
        let mut fill = fills.iter();
        for (i, part) in pattern.split("${jwt:sub}").enumerate() {
            if i > 0 {
                key.push_str(&sub); // literal, wildcards and all
            }
            for c in part.chars() {
                match c {
                    '*' => key.push_str(fill.next().map(String::as_str).unwrap_or_default()),
                    '?' => key.push('x'),
                    c => key.push(c),
                }
            }
        }
        let Ok(parsed) = KeyPattern::parse(&pattern) else {
            return Err(TestCaseError::fail("pattern does not parse"));
        };
        prop_assert!(parsed.matches(&key, &sub), "pattern {:?} key {:?} sub {:?}", pattern, key, sub);
    }
}
