//! Admin API: disabling, enabling and removing console users (issue 10 part 9). Listing and
//! adding are in `admin_audit.rs`; all of it calls `services::admin_users`, as the console's
//! users page does.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::admin_audit::user_json;
use super::seller::actor;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{AdminAuth, AppJson, ClientIp};
use crate::services::admin_users::{self, Requester};
use crate::state::AppState;

/// An admin token is no console user: the "yourself" confirmation never applies to it.
const TOKEN: Requester<'static> = Requester {
    user: None,
    confirmed_self: false,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    enabled: bool,
}

/// `PATCH /api/v1/admin/users/{name}` `{"enabled": false|true}`: disabling ends the user's
/// sessions at once and refuses sign-in; the last enabled user cannot be disabled
/// (`409 last_admin`). → the user, with `sessions_ended`.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<UserChanges>,
) -> ApiResult<impl IntoResponse> {
    let ended =
        admin_users::set_enabled(&state, &name, b.enabled, TOKEN, &actor(&admin, ip)).await?;
    let user = admin_users::list(&state)
        .await?
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such admin user"))?;
    let mut body = user_json(&user);
    body["sessions_ended"] = json!(ended);
    Ok(Json(body))
}

/// `DELETE /api/v1/admin/users/{name}` → `{"removed": true, "sessions_ended": N}`; the last
/// enabled user cannot be removed (`409 last_admin`). The user's audit rows stay.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let ended = admin_users::remove(&state, &name, TOKEN, &actor(&admin, ip)).await?;
    Ok(Json(json!({ "removed": true, "sessions_ended": ended })))
}
