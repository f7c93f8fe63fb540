//! The shop's settings for the seller (DESIGN 4.3 "settings ... under the same prefix"),
//! admin token: thin handlers over `services::settings`, which the console calls as well.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::seller::actor;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{require_json, AdminAuth, AppBytes, ClientIp};
use crate::i18n::Locale;
use crate::services::settings;
use crate::state::AppState;
use crate::time::rfc3339;

/// Every setting: `{"settings": {"shop.name": {"value", "source", "config_value",
/// "updated_at"?, "updated_by"?}, ...}, "mail_enabled": bool}`; secrets as "set" / "not set".
fn settings_json(state: &AppState) -> Value {
    let mut out = Map::new();
    for s in settings::view(state) {
        let mut v = json!({
            "group": s.group,
            "kind": s.kind,
            "value": s.value,
            "source": s.source,
            "config_value": s.config_value,
        });
        if let (Some(at), Some(by)) = (s.updated_at, s.updated_by) {
            v["updated_at"] = json!(rfc3339(at));
            v["updated_by"] = json!(by);
        }
        if !s.choices.is_empty() {
            v["choices"] = json!(s.choices);
        }
        out.insert(s.key.to_owned(), v);
    }
    json!({ "settings": out, "mail_enabled": state.mail_enabled() })
}

/// The body as a JSON object: malformed JSON is `400 invalid_json`, anything else than an
/// object `422 invalid_field`.
fn object(headers: &HeaderMap, body: &[u8]) -> ApiResult<Map<String, Value>> {
    require_json(headers)?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::unprocessable(
            "invalid_field",
            "request body: expected a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("request body: {e}"),
        )),
    }
}

/// `GET /api/v1/admin/settings`.
pub async fn get(State(state): State<Arc<AppState>>, _admin: AdminAuth) -> impl IntoResponse {
    Json(settings_json(&state))
}

/// `PATCH /api/v1/admin/settings`: `{"key": value, ...}`; `null` returns a key to the
/// configuration's value. All or nothing: one refused value → `422 invalid_settings`, nothing
/// saved. Answers as `GET`, with the change in effect.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let body = object(&headers, &bytes)?;
    let changes = settings::parse_changes(&body)?;
    settings::update(&state, changes, &actor(&admin, ip)).await?;
    Ok(Json(settings_json(&state)))
}

/// `POST /api/v1/admin/settings/test-mail` `{"to": EMAIL}` → `{"ok", "message"}` (the SMTP
/// server's error when not ok); `409 mail_off` without SMTP.
pub async fn test_mail(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let body = object(&headers, &bytes)?;
    let to = match body.get("to") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "request body: `to` (an email address) is required",
            ))
        }
    };
    let locale = Locale::parse(&state.config.shop.default_locale).unwrap_or(Locale::ZhCn);
    let sent = settings::test_mail(&state, &to, locale).await?;
    Ok(Json(json!({ "ok": sent.ok, "message": sent.message })))
}
