//! Payment channels for the seller (DESIGN 4.3 `/api/v1/admin/channels`), admin token: thin
//! handlers over `services::channel_admin`, which the console calls as well. Key material
//! goes in as text and never comes back: a channel lists the names of the keys that are set.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_store::ChannelRemoval;
use serde_json::{json, Map, Value};

use super::seller::actor;
use crate::http::error::ApiResult;
use crate::http::extract::{json_object, AdminAuth, AppBytes, ClientIp};
use crate::services::channel_admin::{self, ChannelView, HEALTH_DAYS};
use crate::services::channel_measures;
use crate::state::AppState;
use crate::time::rfc3339;

pub(crate) fn channel_json(c: &ChannelView) -> Value {
    let s = &c.stats;
    json!({
        "id": c.id,
        "kind": c.kind,
        "source": c.origin.as_str(),
        "read_only": c.read_only(),
        "state": c.state(),
        "problem": c.problem,
        "methods": c.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "priority": c.priority,
        "weight": c.weight,
        "enabled": c.enabled,
        "archived": c.archived,
        "settings": c.settings,
        "keys_set": c.keys_set,
        "health": {
            "resting_until": c.health.resting_until.map(rfc3339),
            "recent_failures": c.health.failures,
            "days": HEALTH_DAYS,
            "created": s.created,
            "paid": s.paid,
            "calls": s.calls,
            "success_rate": s.success_rate(),
            "p95_ms": s.p95_ms,
        },
        "min_amount": c.limits.min_amount(),
        "max_amount": c.limits.max_amount(),
        "daily_limit": c.limits.daily_limit(),
        "paid_today": c.paid_today,
        "routing": routing_json(c),
        "revision": c.revision,
        "created_at": c.created_at.map(rfc3339),
        "updated_at": c.updated_at.map(rfc3339),
    })
}

/// Per method: health state (with when it changed, its rest, the window's calls and
/// failures, the last gateway code), success rate and score; in shadow mode, the agreement.
fn routing_json(c: &ChannelView) -> Value {
    let methods: Vec<Value> = c
        .lanes
        .iter()
        .map(|l| {
            let shadow = c
                .shadow
                .iter()
                .find(|(m, _)| *m == l.method)
                .map(|(_, t)| json!({ "decisions": t.decisions, "agreed": t.agreed }));
            json!({
                "method": l.method.as_str(),
                "state": l.state.as_str(),
                "since": rfc3339(l.since),
                "rest_until": l.rest_until.map(rfc3339),
                "calls": l.calls,
                "failures": l.failures,
                "last_code": l.last_code,
                "success_rate": l.success_rate,
                "volume": l.volume,
                "score": l.score,
                "shadow": shadow,
            })
        })
        .collect();
    json!({ "methods": methods })
}

/// The body as a JSON object: malformed JSON is `400 invalid_json`, anything but an object
/// `422 invalid_channel`. Never echoed: it may hold key material.
fn body(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    json_object(
        headers,
        bytes,
        "invalid_channel",
        "the body must be a JSON object of the channel's keys",
    )
}

/// `GET /api/v1/admin/channels`: the configuration file's channels (read-only), then the
/// stored ones, each with its health.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = channel_admin::list(&state)
        .await?
        .iter()
        .map(channel_json)
        .collect();
    let policy = state.channels.policy();
    Ok(Json(json!({
        "channels": list,
        "routing": { "mode": policy.mode.as_str(), "exploration": policy.exploration },
    })))
}

/// `GET /api/v1/admin/channels/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(channel_json(&channel_admin::get(&state, &id).await?)))
}

/// `GET /api/v1/admin/channels/{id}/stats`: the channel's measures per method over the last
/// 24 hours and 7 days (create calls by outcome, p95 create latency, orders created and paid,
/// conversion, notify lag, payments found without a notification, failed notifications).
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let c = channel_admin::get(&state, &id).await?;
    let measures = channel_measures::channel(&state, &c.id, &c.methods).await?;
    Ok(Json(json!(measures)))
}

/// `POST /api/v1/admin/channels` → `201` with the channel; `409 channel_exists`,
/// `422 invalid_channel` naming the key.
pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let input = body(&headers, &bytes)?;
    let c = channel_admin::create(&state, input, &actor(&admin, ip)).await?;
    Ok((StatusCode::CREATED, Json(channel_json(&c))))
}

/// `PATCH /api/v1/admin/channels/{id}`; `409 channel_read_only` for the configuration
/// file's channels.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let input = body(&headers, &bytes)?;
    let c = channel_admin::update(&state, &id, input, &actor(&admin, ip)).await?;
    Ok(Json(channel_json(&c)))
}

/// `DELETE /api/v1/admin/channels/{id}`: `{"deleted": true, "archived": false}`, or for a
/// channel payments point at `{"deleted": false, "archived": true}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let removal = channel_admin::remove(&state, &id, &actor(&admin, ip)).await?;
    let deleted = removal == ChannelRemoval::Deleted;
    Ok(Json(json!({ "deleted": deleted, "archived": !deleted })))
}

/// `POST /api/v1/admin/channels/{id}/test` → `{"ok", "message"}`.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let t = channel_admin::test(&state, &id).await?;
    Ok(Json(json!({ "ok": t.ok, "message": t.message })))
}
