//! Admin API: reconciliation against the channels' bills — run one (channel, day), list the
//! batches, read one with its items, mark an item handled.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::seller::actor;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{AdminAuth, AppJson, ClientIp};
use crate::services::reconciliation;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    channel: Option<String>,
    date: Option<String>,
}

/// `POST /api/v1/admin/reconciliations` `{"channel", "date"?}` (date `YYYY-MM-DD`, Beijing
/// time, default yesterday) → the report: the batch (`status` `succeeded` or `failed` with
/// `error`) and its `items`. Unknown channel 404, bad or future date 422, a run of the same
/// day under way 409; none of them changes anything.
pub async fn run(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<RunBody>,
) -> ApiResult<impl IntoResponse> {
    let channel = b
        .channel
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable("invalid_request", "`channel` is required"))?;
    let day = match b.date.as_deref() {
        Some(d) => reconciliation::parse_day(d)?,
        None => reconciliation::default_day(state.now_ms()),
    };
    let who = reconciliation::actor_name(&actor(&admin, ip));
    let report = reconciliation::run(&state, channel.trim(), day, &who).await?;
    Ok(Json(report.to_json()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    channel: Option<String>,
    date: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/admin/reconciliations?channel=&date=&limit=` → `{"reconciliations": [...]}`,
/// newest bill day first (100 by default, at most 500).
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let batches = reconciliation::list(
        &state,
        q.channel.as_deref(),
        q.date.as_deref(),
        q.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(json!({
        "reconciliations": batches.iter().map(reconciliation::batch_json).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/admin/reconciliations/{id}` → the batch with its `items`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = id_or_404(&id)?;
    Ok(Json(reconciliation::get(&state, id).await?.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandleBody {
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/admin/reconciliations/{id}/items/{item}/handle` `{"note"}` → the item,
/// handled (audited as `reconciliation.handle`).
pub async fn handle(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    Path((id, item)): Path<(String, String)>,
    AppJson(b): AppJson<HandleBody>,
) -> ApiResult<impl IntoResponse> {
    let (id, item) = (id_or_404(&id)?, id_or_404(&item)?);
    let done = reconciliation::handle_item(&state, id, item, &b.note, &actor(&admin, ip)).await?;
    Ok(Json(reconciliation::item_json(&done)))
}

fn id_or_404(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("reconciliation_not_found", "no such reconciliation"))
}
