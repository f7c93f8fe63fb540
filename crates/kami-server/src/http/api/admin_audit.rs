//! Admin API: the audit log (filtered pages, CSV export) and the admin users (list, add).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_store::{AdminUserSummary, AuditRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::seller::actor;
use crate::http::error::ApiResult;
use crate::http::extract::{AdminAuth, AppJson, ClientIp};
use crate::services::{admin_users, audit_log};
use crate::state::AppState;
use crate::time::rfc3339;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
}

impl From<AuditQuery> for audit_log::Query {
    fn from(q: AuditQuery) -> Self {
        audit_log::Query {
            actor: q.actor,
            target: q.target,
            from: q.from,
            to: q.to,
            before: q.before,
        }
    }
}

pub(crate) fn record_json(r: &AuditRecord) -> Value {
    json!({
        "id": r.id,
        "at": rfc3339(r.at),
        "actor": r.entry.actor,
        "action": r.entry.action,
        "target": r.entry.target,
        "ip": r.entry.ip,
        "before": r.entry.before,
        "after": r.entry.after,
    })
}

/// `GET /api/v1/admin/audit?actor=&target=&from=YYYY-MM-DD&to=YYYY-MM-DD&before=ID` →
/// `{"entries": [...], "next_before": ID|null}`, newest first, 100 a page.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let rows = audit_log::page(&state, &q.into()).await?;
    let next = (rows.len() == audit_log::PAGE as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "entries": rows.iter().map(record_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// `GET /api/v1/admin/audit.csv?…` (the same filters): the rows as a CSV attachment.
pub async fn export(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let csv = audit_log::export_csv(&state, &q.into(), &actor(&admin, ip)).await?;
    Ok(csv_attachment("audit-log.csv", csv))
}

pub(crate) fn csv_attachment(name: &str, csv: String) -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
}

pub(crate) fn user_json(u: &AdminUserSummary) -> Value {
    json!({
        "name": u.name,
        "created_at": rfc3339(u.created_at),
        "totp_enabled": u.totp_enabled,
        "locked_until": (u.locked_until > 0).then(|| rfc3339(u.locked_until)),
        "live_sessions": u.live_sessions,
        "enabled": u.enabled,
    })
}

/// `GET /api/v1/admin/users` → `{"users": [...]}` (no secret in it).
pub async fn users(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let users = admin_users::list(&state).await?;
    Ok(Json(json!({
        "users": users.iter().map(user_json).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
}

/// `POST /api/v1/admin/users` `{"name"}` → `201 {"name", "password"}`: the generated
/// password, shown this once.
pub async fn add_user(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<NewUser>,
) -> ApiResult<impl IntoResponse> {
    let password = admin_users::add(&state, &b.name, &actor(&admin, ip)).await?;
    let name = admin_users::parse_name(&b.name)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "password": password })),
    ))
}
