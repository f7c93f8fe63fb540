//! Alerts for the seller (`/api/v1/admin/alerts`), admin token: thin handlers over
//! `services::alert_admin`, which the console calls as well. A target's secret (webhook
//! secret, bot token) goes in as text and never comes back: a target says `secret_set`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_store::{AlertCondition, DeliveryRecord};
use serde_json::{json, Map, Value};

use super::seller::actor;
use crate::http::error::ApiResult;
use crate::http::extract::{json_object, AdminAuth, AppBytes, ClientIp};
use crate::services::alert_admin::{self, TargetView};
use crate::state::AppState;
use crate::time::rfc3339;

pub(crate) fn target_json(t: &TargetView) -> Value {
    json!({
        "id": t.id,
        "source": if t.read_only { "config" } else { "stored" },
        "read_only": t.read_only,
        "kind": t.kind,
        "events": t.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "enabled": t.enabled,
        "url": t.url,
        "chat_id": t.chat_id,
        "api_base": t.api_base,
        "to": t.to,
        "secret_set": t.secret_set,
        "problem": t.problem,
    })
}

fn condition_json(c: &AlertCondition) -> Value {
    json!({
        "event": c.event.as_str(),
        "subject": c.subject,
        "firing": c.firing,
        "first_seen": rfc3339(c.first_seen),
        "last_seen": rfc3339(c.last_seen),
        "details": c.details,
    })
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "target": d.alert.target,
        "event": d.alert.name(),
        "subject": d.alert.subject,
        "state": alert_admin::delivery_state(d),
        "attempts": d.attempts,
        "created_at": rfc3339(d.created_at),
        "done_at": d.done_at.map(rfc3339),
        "next_attempt_at": d.done_at.is_none().then(|| rfc3339(d.next_attempt_at)),
        "last_error": d.last_error,
    })
}

/// The body as a JSON object: malformed JSON is `400 invalid_json`, anything else `422`.
/// Never echoed: it may hold a secret.
fn body(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    json_object(
        headers,
        bytes,
        "invalid_alert_target",
        "the body must be a JSON object of the target's keys",
    )
}

/// `GET /api/v1/admin/alerts/targets`: the configuration's (read-only), then the stored ones.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let targets: Vec<Value> = alert_admin::list(&state)
        .await?
        .iter()
        .map(target_json)
        .collect();
    Ok(Json(json!({ "targets": targets })))
}

/// `GET /api/v1/admin/alerts/targets/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(target_json(&alert_admin::get(&state, &id).await?)))
}

/// `POST /api/v1/admin/alerts/targets` → `201`; `409 alert_target_exists`,
/// `422 invalid_alert_target` naming the key.
pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let input = alert_admin::input_from_json(body(&headers, &bytes)?)?;
    let t = alert_admin::create(&state, input, &actor(&admin, ip)).await?;
    Ok((StatusCode::CREATED, Json(target_json(&t))))
}

/// `PATCH /api/v1/admin/alerts/targets/{id}`: the keys given change, the rest (the secret too)
/// stays; `409 alert_target_read_only` for the configuration's.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let input = alert_admin::input_from_json(body(&headers, &bytes)?)?;
    let t = alert_admin::update(&state, &id, input, &actor(&admin, ip)).await?;
    Ok(Json(target_json(&t)))
}

/// `DELETE /api/v1/admin/alerts/targets/{id}` → `{"deleted": true}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    alert_admin::remove(&state, &id, &actor(&admin, ip)).await?;
    Ok(Json(json!({ "deleted": true })))
}

/// `POST /api/v1/admin/alerts/targets/{id}/test` → `{"ok", "message"}`.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let t = alert_admin::test(&state, &id).await?;
    Ok(Json(json!({ "ok": t.ok, "message": t.message })))
}

/// `GET /api/v1/admin/alerts/conditions`: the conditions firing now, newest first.
pub async fn conditions(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = alert_admin::conditions(&state)
        .await?
        .iter()
        .map(condition_json)
        .collect();
    Ok(Json(json!({ "conditions": list })))
}

/// `GET /api/v1/admin/alerts/deliveries`: the newest deliveries, with state and last error.
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = alert_admin::deliveries(&state)
        .await?
        .iter()
        .map(delivery_json)
        .collect();
    Ok(Json(json!({ "deliveries": list })))
}
