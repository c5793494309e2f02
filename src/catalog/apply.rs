//! Loading access points from SQL into the in-memory catalog, and applying declarative files.

use std::path::Path;

use serde::Deserialize;

use super::Catalog;
use crate::config::Config;
use crate::policy::{
    AccessPointSpec, CompiledAccessPoint, Effect, FieldError, SpecErrors, mfa_sensitive_change,
};
use crate::store::{Store, StoreError, Upsert};

/// The file shape of `presignd apply -f` (YAML or TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPointsFile {
    #[serde(default)]
    pub access_points: Vec<AccessPointSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid access points:\n{}", .0.iter().map(|(n, e)| format!("  {n}: {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<(String, SpecErrors)>),
    #[error("duplicate access point name {0}")]
    Duplicate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    /// `name: why` for every change the admin API would accept only from an MFA-bearing
    /// token (`policy::mfa_sensitive_change`): an apply has no token, so it says so instead.
    pub mfa_sensitive: Vec<String>,
}

/// Validates a spec against this configuration: its target can be signed for with the S3
/// settings, and, with several issuers, every allow rule that hands out per-user folders
/// (`${jwt:sub}`) names the issuers whose subjects own them (a subject is unique only within
/// its issuer: a partner IdP's `alice` must not get our alice's folder).
pub fn check_spec(
    spec: &AccessPointSpec,
    config: &Config,
) -> Result<CompiledAccessPoint, SpecErrors> {
    let ap = CompiledAccessPoint::compile(spec.clone())?;
    crate::sign::check_target(&config.s3, &ap.target).map_err(|message| {
        SpecErrors(vec![FieldError {
            field: "bucket".into(),
            message,
        }])
    })?;
    if let Some(cf) = &spec.delivery.cloudfront
        && !config.cloudfront.has_key(&cf.key_pair_id)
    {
        return Err(SpecErrors(vec![FieldError {
            field: "delivery.cloudfront.key_pair_id".into(),
            message: format!(
                "no key {:?} in [[cloudfront.keys]] of the server configuration",
                cf.key_pair_id
            ),
        }]));
    }
    if config.auth.issuers.len() > 1 {
        let unscoped: Vec<FieldError> = spec
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.effect == Effect::Allow
                    && r.issuers.is_empty()
                    && r.keys.iter().any(|k| k.contains("${jwt:sub}"))
            })
            .map(|(i, _)| FieldError {
                field: format!("rules[{i}].issuers"),
                message: "this allow rule gives each subject a folder (${jwt:sub}) and several issuers are configured: name the issuers whose subjects own the folders (a subject is unique only within its issuer)".into(),
            })
            .collect();
        if !unscoped.is_empty() {
            return Err(SpecErrors(unscoped));
        }
    }
    Ok(ap)
}

/// Reads and validates a YAML (`.yaml`, `.yml`, `.json`) or TOML (`.toml`) file.
pub fn read_file(path: &Path, config: &Config) -> Result<Vec<AccessPointSpec>, ApplyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ApplyError::Read {
        path: shown.clone(),
        source,
    })?;
    let file: AccessPointsFile = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| ApplyError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| ApplyError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?
    };
    let mut invalid = Vec::new();
    for (i, spec) in file.access_points.iter().enumerate() {
        if file.access_points[..i].iter().any(|o| o.name == spec.name) {
            return Err(ApplyError::Duplicate(spec.name.clone()));
        }
        if let Err(e) = check_spec(spec, config) {
            invalid.push((spec.name.clone(), e));
        }
    }
    if !invalid.is_empty() {
        return Err(ApplyError::Invalid(invalid));
    }
    Ok(file.access_points)
}

/// Upserts every spec; with `prune`, deletes stored access points that are not in `specs`.
pub async fn apply(
    store: &Store,
    specs: &[AccessPointSpec],
    prune: bool,
) -> Result<ApplySummary, ApplyError> {
    let mut summary = ApplySummary::default();
    let before = store.list_access_points().await?;
    let stored = |name: &str| before.iter().find(|b| b.spec.name == name).map(|b| &b.spec);
    // The other access points a change could reach around: those stored and those applied.
    let mut others: Vec<&AccessPointSpec> = before.iter().map(|b| &b.spec).collect();
    others.extend(specs);
    for spec in specs {
        let name = spec.name.clone();
        let upsert = store.upsert_access_point(spec).await?;
        if upsert != Upsert::Unchanged
            && let Some(why) = mfa_sensitive_change(stored(&name), Some(spec), &others)
        {
            summary.mfa_sensitive.push(format!("{name}: {why}"));
        }
        match upsert {
            Upsert::Created => summary.created.push(name),
            Upsert::Updated => summary.updated.push(name),
            Upsert::Unchanged => summary.unchanged.push(name),
        }
    }
    if prune {
        for old in &before {
            if !specs.iter().any(|s| s.name == old.spec.name) {
                store.delete_access_point(&old.spec.name).await?;
                if let Some(why) = mfa_sensitive_change(Some(&old.spec), None, &[]) {
                    summary
                        .mfa_sensitive
                        .push(format!("{}: {why}", old.spec.name));
                }
                summary.deleted.push(old.spec.name.clone());
            }
        }
    }
    Ok(summary)
}

/// Builds the catalog from SQL. A stored access point that no longer validates is left out and
/// logged: serving the others beats refusing to start.
pub async fn load(store: &Store, config: &Config) -> Result<Catalog, StoreError> {
    let mut compiled = Vec::new();
    for stored in store.list_access_points().await? {
        let name = stored.spec.name.clone();
        match check_spec(&stored.spec, config) {
            Ok(ap) => compiled.push(ap),
            Err(e) => {
                tracing::error!(access_point = %name, error = %e, "stored access point is invalid; not served")
            }
        }
    }
    Ok(Catalog::new(compiled))
}
