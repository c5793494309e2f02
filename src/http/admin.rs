//! The admin API, for callers in `auth.admin_group` (anyone else gets 404):
//!
//! - `GET /v1/admin/access-points`, `GET|PUT|DELETE /v1/admin/access-points/{name}`: access
//!   points in SQL, with `ETag` = `"<version>-<incarnation>"` (never repeated for a name, even
//!   across delete and re-create) and `If-Match` / `If-None-Match` for optimistic concurrency
//!   (412 on a stale write);
//! - `POST|GET /v1/admin/revocations`: refuse a subject's tokens issued before a time, or one
//!   token by `jti`; or revoke download grants (`grants_of_subject`, `grants_of_key`).
//!
//! Every change is audited before it is made (a failed audit append means no change, 503
//! `audit_unavailable`), then written with a single conditional statement, then applied to
//! this instance's memory at once; other instances follow through `crate::sync`.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::audited;
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use crate::Principal;
use crate::audit::{AuditRecord, Verdict};
use crate::auth::revocations::{RevocationRequest, RevocationView, unix_now};
use crate::catalog;
use crate::policy::{AccessPointSpec, FieldError, Target, mfa_sensitive_change};
use crate::state::AppState;
use crate::store::{StoredAccessPoint, etag};

#[derive(Debug, Serialize)]
pub struct AdminAccessPoint {
    pub name: String,
    pub version: i64,
    /// What `GET` of this access point would send as `ETag` (for `If-Match`).
    pub etag: String,
    /// False when the stored document no longer validates (it is then not served).
    pub served: bool,
    pub spec: AccessPointSpec,
}

#[derive(Debug, Serialize)]
pub struct AdminAccessPointList {
    pub access_points: Vec<AdminAccessPoint>,
}

pub async fn list_access_points(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<AdminAccessPointList>, ApiError> {
    let catalog = state.catalog();
    let access_points = state
        .store()
        .list_access_points()
        .await?
        .into_iter()
        .map(|stored| AdminAccessPoint {
            name: stored.spec.name.clone(),
            version: stored.version,
            etag: stored.etag(),
            served: catalog.get(&stored.spec.name).is_some(),
            spec: stored.spec,
        })
        .collect();
    Ok(Json(AdminAccessPointList { access_points }))
}

pub async fn get_access_point(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let stored = state
        .store()
        .get_access_point(&name)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(with_etag(StatusCode::OK, &stored.etag(), &stored.spec))
}

pub async fn put_access_point(
    State(state): State<AppState>,
    Admin(admin): Admin,
    client: ClientInfo,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    // Preconditions first (RFC 9110 §13.2.1: before the content is processed).
    let conditions = Conditions::from_headers(&headers)?;
    let before = state.store().get_access_point(&name).await?;
    conditions.check(before.as_ref().map(StoredAccessPoint::etag).as_deref())?;
    let spec = spec_from_body(&name, body)?;
    check(&state, &spec)?;
    if let Some(before) = &before
        && before.spec == spec
    {
        // Nothing changes: no write, no new version, nothing to audit.
        return Ok(with_etag(StatusCode::OK, &before.etag(), &before.spec));
    }

    let mut record = admin_record(&state, &client, &admin, "admin.put_access_point", &spec);
    // Without a second factor, the change must not weaken MFA-protected rules, here or on
    // another access point over the same keys.
    let stored = if admin.mfa {
        Vec::new()
    } else {
        state.store().list_access_points().await?
    };
    let others: Vec<&AccessPointSpec> = stored.iter().map(|o| &o.spec).collect();
    if let Some(why) = mfa_sensitive_change(before.as_ref().map(|b| &b.spec), Some(&spec), &others)
        && !admin.mfa
    {
        record.reason = format!("mfa_required: the change {why}");
        audit(&state, record).await?;
        return Err(ApiError::MfaRequired);
    }
    record.decision = Verdict::Allow;
    record.reason = match &before {
        None => format!("access_point created (v1): {}", summary(&spec)),
        Some(b) => format!(
            "access_point updated (v{} -> v{}): {}",
            b.version,
            b.version + 1,
            changes(&b.spec, &spec)
        ),
    };
    audit(&state, record.clone()).await?;

    let written = match &before {
        None => state.store().insert_access_point(&spec).await?,
        Some(b) => state
            .store()
            .replace_access_point(&spec, b.version, &b.incarnation)
            .await?
            .map(|v| (v, b.incarnation.clone())),
    };
    let Some((version, incarnation)) = written else {
        // Someone else changed it between our read and our write: the audited change did
        // not happen; say so in the trail too.
        record.id = AuditRecord::new_id();
        record.decision = Verdict::Deny;
        record.reason = "aborted: the access point changed concurrently".into();
        audit(&state, record).await?;
        return Err(conditions.lost_race());
    };
    apply_locally(&state).await;
    let status = if before.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, &etag(version, &incarnation), &spec))
}

pub async fn delete_access_point(
    State(state): State<AppState>,
    Admin(admin): Admin,
    client: ClientInfo,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let conditions = Conditions::from_headers(&headers)?;
    let before = state.store().get_access_point(&name).await?;
    conditions.check(before.as_ref().map(StoredAccessPoint::etag).as_deref())?;
    let Some(before) = before else {
        return Err(ApiError::NotFound);
    };
    let mut record = admin_record(
        &state,
        &client,
        &admin,
        "admin.delete_access_point",
        &before.spec,
    );
    if let Some(why) = mfa_sensitive_change(Some(&before.spec), None, &[])
        && !admin.mfa
    {
        record.reason = format!("mfa_required: the change {why}");
        audit(&state, record).await?;
        return Err(ApiError::MfaRequired);
    }
    record.decision = Verdict::Allow;
    record.reason = format!(
        "access_point deleted (was v{}), its download grants revoked: {}",
        before.version,
        summary(&before.spec)
    );
    audit(&state, record.clone()).await?;
    if !state
        .store()
        .delete_access_point_at(&name, before.version, &before.incarnation)
        .await?
    {
        record.id = AuditRecord::new_id();
        record.decision = Verdict::Deny;
        record.reason = "aborted: the access point changed concurrently".into();
        audit(&state, record).await?;
        return Err(conditions.lost_race());
    }
    // A later access point of the same name must not revive the links of this one.
    state
        .store()
        .revoke_grants_of_access_point(&name, unix_now())
        .await?;
    apply_locally(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub struct RevocationList {
    pub revocations: Vec<RevocationView>,
}

pub async fn list_revocations(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<RevocationList>, ApiError> {
    let rows = state.store().active_revocations(unix_now()).await?;
    Ok(Json(RevocationList {
        revocations: rows.iter().map(RevocationView::from).collect(),
    }))
}

/// A revocation of download grants rather than tokens: every live grant of a subject, or of
/// one key of an access point.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsRevocation {
    #[serde(default)]
    grants_of_subject: Option<String>,
    #[serde(default)]
    grants_of_key: Option<GrantsOfKey>,
    /// With `grants_of_subject`: only grants created with tokens of this issuer.
    #[serde(default)]
    iss: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsOfKey {
    /// The full object key, as grant responses and audit records show it.
    key: String,
    /// Only grants made through this access point; absent: through any.
    #[serde(default)]
    access_point: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GrantsRevoked {
    pub revoked_grants: u64,
}

/// A body naming `grants_of_subject` or `grants_of_key` (not null) revokes grants.
fn revokes_grants(body: &Value) -> bool {
    ["grants_of_subject", "grants_of_key"]
        .iter()
        .any(|f| body.get(f).is_some_and(|v| !v.is_null()))
}

pub async fn create_revocation(
    State(state): State<AppState>,
    Admin(admin): Admin,
    client: ClientInfo,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(mut body) = body?;
    // A field sent as null is an absent one, whichever kind of revocation the body is.
    if let Some(object) = body.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    if revokes_grants(&body) {
        return revoke_grants(&state, &admin, &client, parse_fields(body)?)
            .await
            .map(|revoked| Json(revoked).into_response());
    }
    let request: RevocationRequest = parse_fields(body)?;
    let issuers: Vec<&str> = state
        .config()
        .auth
        .issuers
        .iter()
        .map(|i| i.issuer.as_str())
        .collect();
    let row = request
        .into_row(state.revocations(), &issuers, &admin.sub, unix_now())
        .map_err(ApiError::InvalidAccessPoint)?;
    let view = RevocationView::from(&row);

    let mut record = audited::record(
        &state,
        &client,
        Some(&admin),
        "admin.revoke",
        SystemTime::now(),
    );
    record.decision = Verdict::Allow;
    record.reason = format!(
        "revoked {} (issuer {}){}; entry kept until {}",
        match (&view.sub, &view.jti) {
            (Some(sub), _) => format!("subject {sub:?}"),
            (_, Some(jti)) => format!("token jti {jti:?}"),
            _ => String::new(),
        },
        view.iss.as_deref().unwrap_or("any"),
        view.not_before
            .map(|t| format!(", tokens issued before {}", rfc3339(t)))
            .unwrap_or_default(),
        rfc3339(view.expires_at),
    );
    audit(&state, record).await?;
    let stored = state.store().upsert_revocation(&row).await?;
    // Refuse here at once; the other instances reload on the database's notification.
    if let Err(error) = crate::catalog::sync::reload_revocations(&state).await {
        tracing::warn!(%error, "revocation stored but not reloaded; the periodic reload will");
    }
    Ok((StatusCode::CREATED, Json(RevocationView::from(&stored))).into_response())
}

/// Revokes grants: audited first (the reason names what is revoked), then applied.
async fn revoke_grants(
    state: &AppState,
    admin: &Principal,
    client: &ClientInfo,
    request: GrantsRevocation,
) -> Result<GrantsRevoked, ApiError> {
    let field = |field: &str, message: &str| {
        ApiError::InvalidAccessPoint(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    };
    if let Some(iss) = &request.iss
        && !state.config().auth.issuers.iter().any(|i| &i.issuer == iss)
    {
        return Err(field("iss", "is not a configured issuer"));
    }
    let what = match (&request.grants_of_subject, &request.grants_of_key) {
        (Some(sub), None) if !sub.is_empty() => format!(
            "the download grants of subject {:?} (issuer {})",
            audited::bounded(sub),
            request.iss.as_deref().unwrap_or("any")
        ),
        (Some(_), None) => return Err(field("grants_of_subject", "must not be empty")),
        (None, Some(_)) if request.iss.is_some() => {
            return Err(field("iss", "applies to grants_of_subject only"));
        }
        (None, Some(k)) if !k.key.is_empty() => format!(
            "the download grants of object {:?} (access point {})",
            audited::bounded(&k.key),
            k.access_point
                .as_deref()
                .map_or("any".into(), |a| format!("{:?}", audited::bounded(a)))
        ),
        (None, Some(_)) => {
            return Err(field("grants_of_key.key", "must not be empty"));
        }
        _ => {
            return Err(field(
                "grants_of_key",
                "give either grants_of_subject or grants_of_key, not both",
            ));
        }
    };
    let mut record = audited::record(
        state,
        client,
        Some(admin),
        "admin.revoke_grants",
        SystemTime::now(),
    );
    record.decision = Verdict::Allow;
    record.reason = format!("revoked {what}");
    audit(state, record).await?;
    let now = unix_now();
    let store = state.store();
    let revoked_grants = match (&request.grants_of_subject, &request.grants_of_key) {
        (Some(sub), _) => {
            store
                .revoke_grants_of_subject(request.iss.as_deref(), sub, now)
                .await?
        }
        (_, Some(k)) => {
            store
                .revoke_grants_of_object(&k.key, k.access_point.as_deref(), now)
                .await?
        }
        (None, None) => 0,
    };
    Ok(GrantsRevoked { revoked_grants })
}

// ---- helpers ---------------------------------------------------------------------------

/// The body is the access point document; `name` may be left out (the path names it) but
/// must match the path when given.
fn spec_from_body(name: &str, mut body: Value) -> Result<AccessPointSpec, ApiError> {
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::InvalidRequest(
            "the body must be an access point (a JSON object)".into(),
        ));
    };
    match object.get("name") {
        None => {
            object.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(_) => {
            return Err(ApiError::InvalidAccessPoint(vec![FieldError {
                field: "name".into(),
                message: format!("must be the name in the path ({name})"),
            }]));
        }
    }
    parse_fields(body)
}

/// Deserializes `body`, naming the field a type or shape error is about.
fn parse_fields<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ApiError::InvalidRequest(format!("invalid document: {message}"))
        } else {
            ApiError::InvalidAccessPoint(vec![FieldError {
                field: path,
                message,
            }])
        }
    })
}

/// Everything `serve` checks before serving an access point, plus the log bucket guard:
/// all problems at once, each naming its field.
fn check(state: &AppState, spec: &AccessPointSpec) -> Result<(), ApiError> {
    let mut errors = match catalog::check_spec(spec, state.config()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    };
    if let Ok(target) = spec.bucket.parse::<Target>() {
        for problem in
            crate::audit::check_log_destination(state.config(), [(spec.name.as_str(), &target)])
        {
            errors.push(FieldError {
                field: "bucket".into(),
                message: problem.message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidAccessPoint(errors))
    }
}

/// `If-Match` / `If-None-Match` (RFC 9110 §13.1), on `ETag: "<version>-<incarnation>"`.
struct Conditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

enum Tags {
    Any,
    /// Strong tags, quotes included.
    Strong(Vec<String>),
}

impl Tags {
    fn parse(value: &HeaderValue) -> Result<Tags, ApiError> {
        let text = value
            .to_str()
            .map_err(|_| ApiError::InvalidRequest("If-Match/If-None-Match is not ASCII".into()))?
            .trim();
        if text == "*" {
            return Ok(Tags::Any);
        }
        // Weak tags (W/"…") never match: these comparisons are strong.
        Ok(Tags::Strong(
            text.split(',')
                .map(str::trim)
                .filter(|t| t.len() >= 2 && t.starts_with('"') && t.ends_with('"'))
                .map(str::to_string)
                .collect(),
        ))
    }

    fn matches(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            (Tags::Strong(tags), Some(c)) => tags.iter().any(|t| t == c),
        }
    }
}

impl Conditions {
    fn from_headers(headers: &HeaderMap) -> Result<Conditions, ApiError> {
        let tags = |name| headers.get(name).map(Tags::parse).transpose();
        Ok(Conditions {
            if_match: tags(header::IF_MATCH)?,
            if_none_match: tags(header::IF_NONE_MATCH)?,
        })
    }

    /// `current`: the stored access point's ETag, `None` when it does not exist.
    fn check(&self, current: Option<&str>) -> Result<(), ApiError> {
        let failed = self.if_match.as_ref().is_some_and(|t| !t.matches(current))
            || self
                .if_none_match
                .as_ref()
                .is_some_and(|t| t.matches(current));
        if failed {
            Err(ApiError::PreconditionFailed {
                current: current.map_or_else(|| "none (it does not exist)".into(), str::to_string),
            })
        } else {
            Ok(())
        }
    }

    /// The answer when the row changed between read and conditional write.
    fn lost_race(&self) -> ApiError {
        if self.if_match.is_some() || self.if_none_match.is_some() {
            ApiError::PreconditionFailed {
                current: "newer".into(),
            }
        } else {
            ApiError::Conflict
        }
    }
}

fn with_etag(status: StatusCode, etag: &str, spec: &AccessPointSpec) -> Response {
    let mut resp = (status, Json(spec)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn admin_record(
    state: &AppState,
    client: &ClientInfo,
    admin: &Principal,
    operation: &str,
    spec: &AccessPointSpec,
) -> AuditRecord {
    let mut record = audited::record(state, client, Some(admin), operation, SystemTime::now());
    record.access_point = Some(spec.name.clone());
    record.bucket = Some(spec.bucket.clone());
    record.sse = Some(spec.encryption.mode().to_string());
    record
}

/// Makes an admin decision's record durable before the change is made (or refused).
async fn audit(state: &AppState, record: AuditRecord) -> Result<(), ApiError> {
    audited::commit_one(state, Ok(()), record).await
}

/// Serves the change from this instance at once.
async fn apply_locally(state: &AppState) {
    if let Err(error) = crate::catalog::sync::reload_catalog(state).await {
        tracing::warn!(%error, "access point stored but not reloaded; the periodic reload will");
    }
}

fn summary(spec: &AccessPointSpec) -> String {
    format!(
        "bucket={} prefix={:?} encryption={} rules={}",
        spec.bucket,
        spec.prefix,
        spec.encryption.mode(),
        spec.rules.len()
    )
}

/// `field: before -> after` for every top-level field that differs, values as compact JSON
/// (each side cut at 512 bytes).
fn changes(before: &AccessPointSpec, after: &AccessPointSpec) -> String {
    let (Ok(Value::Object(b)), Ok(Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return "changed".into();
    };
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Value>| {
        let mut s = v.map_or_else(|| "(unset)".into(), Value::to_string);
        if s.len() > 512 {
            let mut cut = 512;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    };
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(b.get(k)), show(a.get(k))))
        .collect::<Vec<_>>()
        .join("; ")
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rules: serde_json::Value) -> AccessPointSpec {
        serde_json::from_value(serde_json::json!({"name": "a", "bucket": "bkt", "rules": rules}))
            .expect("spec")
    }

    #[test]
    fn conditions_follow_rfc_9110() {
        let h = |name, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(name, HeaderValue::from_str(v).expect("header"));
            Conditions::from_headers(&m).expect("parses")
        };
        let v3 = Some("\"3-ab\"");
        assert!(h(header::IF_MATCH, "\"3-ab\"").check(v3).is_ok());
        assert!(h(header::IF_MATCH, "\"2-ab\", \"3-ab\"").check(v3).is_ok());
        assert!(h(header::IF_MATCH, "\"2-ab\"").check(v3).is_err());
        assert!(h(header::IF_MATCH, "W/\"3-ab\"").check(v3).is_err());
        assert!(h(header::IF_MATCH, "*").check(None).is_err());
        assert!(h(header::IF_MATCH, "*").check(Some("\"1-cd\"")).is_ok());
        assert!(h(header::IF_NONE_MATCH, "*").check(None).is_ok());
        assert!(
            h(header::IF_NONE_MATCH, "*")
                .check(Some("\"1-cd\""))
                .is_err()
        );
        assert!(
            Conditions::from_headers(&HeaderMap::new())
                .expect("none")
                .check(Some("\"9-ef\""))
                .is_ok()
        );
        // The same version of another incarnation (deleted and created again) is another tag.
        assert!(
            h(header::IF_MATCH, "\"1-aaaa\"")
                .check(Some("\"1-bbbb\""))
                .is_err()
        );
        assert!(
            h(header::IF_MATCH, "\"1\"")
                .check(Some("\"1-bbbb\""))
                .is_err()
        );
    }

    #[test]
    fn changes_name_each_field() {
        let before =
            spec(serde_json::json!([{"effect": "allow", "groups": ["u"], "operations": ["get"]}]));
        let mut after = before.clone();
        after.max_expires_in = 7200;
        after.prefix = "p/".into();
        assert_eq!(
            changes(&before, &after),
            "max_expires_in: 3600 -> 7200; prefix: \"\" -> \"p/\""
        );
    }
}
