//! Validated access points with their patterns parsed once.

use super::errors::{FieldError, SpecErrors};
use super::glob::KeyPattern;
use super::target::Target;
use super::{AccessPointSpec, Effect, OperationPattern};

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledAccessPoint {
    pub spec: AccessPointSpec,
    pub target: Target,
    pub(crate) rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledRule {
    pub effect: Effect,
    /// The rule lists `"*"`: any authenticated principal.
    pub any_group: bool,
    pub groups: Vec<String>,
    pub issuers: Vec<String>,
    pub operations: Vec<OperationPattern>,
    pub keys: Vec<KeyPattern>,
    pub require_mfa: bool,
}

impl CompiledAccessPoint {
    /// Validates `spec` and parses its target and key patterns.
    pub fn compile(spec: AccessPointSpec) -> Result<CompiledAccessPoint, SpecErrors> {
        spec.validate()?;
        // Cannot fail after `validate`; mapped rather than unwrapped all the same.
        let target = spec
            .bucket
            .parse::<Target>()
            .map_err(|e| one_error("bucket", e))?;
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (r, rule) in spec.rules.iter().enumerate() {
            let mut keys = Vec::with_capacity(rule.keys.len());
            for (i, k) in rule.keys.iter().enumerate() {
                keys.push(
                    KeyPattern::parse(k)
                        .map_err(|e| one_error(&format!("rules[{r}].keys[{i}]"), e))?,
                );
            }
            rules.push(CompiledRule {
                effect: rule.effect,
                any_group: rule.groups.iter().any(|g| g == "*"),
                groups: rule.groups.clone(),
                issuers: rule.issuers.clone(),
                operations: rule.operations.clone(),
                keys,
                require_mfa: rule.require_mfa,
            });
        }
        Ok(CompiledAccessPoint {
            spec,
            target,
            rules,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }
}

fn one_error(field: &str, e: impl std::fmt::Display) -> SpecErrors {
    SpecErrors(vec![FieldError {
        field: field.to_string(),
        message: e.to_string(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Operation, Rule};

    fn spec(name: &str, bucket: &str) -> AccessPointSpec {
        let rule = Rule {
            effect: Effect::Allow,
            groups: vec!["*".into(), "users".into()],
            issuers: vec![],
            operations: vec![OperationPattern::Op(Operation::Get)],
            keys: vec!["${jwt:sub}/*".into()],
            require_mfa: false,
        };
        AccessPointSpec::for_tests(name, bucket, "p/", vec![rule])
    }

    #[test]
    fn compile_parses_target_and_patterns() {
        let ap = CompiledAccessPoint::compile(spec(
            "docs",
            "arn:aws:s3:us-east-1:123456789012:accesspoint/ap1",
        ))
        .expect("valid");
        assert_eq!(ap.name(), "docs");
        assert_eq!(ap.prefix(), "p/");
        assert!(matches!(ap.target, Target::AccessPointArn(_)));
        assert_eq!(ap.rules.len(), 1);
        assert!(ap.rules[0].any_group);
        assert!(ap.rules[0].keys[0].matches("alice/x", "alice"));
    }

    #[test]
    fn compile_refuses_invalid_specs_with_all_errors() {
        let mut s = spec("Bad", "B");
        s.rules[0].keys = vec!["${nope}".into()];
        let err = CompiledAccessPoint::compile(s).expect_err("invalid");
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "bucket", "rules[0].keys[0]"]);
    }
}
