//! `/admin/settings`: the shop's settings by section (shop, orders, mail, risk). Each field
//! shows the value in effect and where it comes from (the configuration file, or saved here,
//! by whom and when) with a reset to the file's value; a section's form saves only the fields
//! that changed, through the same service as `PATCH /api/v1/admin/settings`, all or nothing.
//! "Send test mail" goes through the SMTP settings in effect and shows the server's answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use minijinja::{context, Value};
use serde_json::Value as Json;

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::config::overlay::{self, GROUPS};
use crate::http::web::request::Ctx;
use crate::services::settings::{self, SettingView, TestMail};
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;

/// A value as a form field shows it: lists one per line, numbers as digits, none as blank.
fn as_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// What the page says about the outcome of the last action.
#[derive(Default)]
struct Outcome<'a> {
    error: Option<String>,
    saved: bool,
    test: Option<TestMail>,
    /// The fields as typed (kept on error), by key.
    typed: Option<&'a [(String, String)]>,
    test_to: String,
}

fn field_ctx(s: &SettingView, typed: Option<&[(String, String)]>) -> Value {
    let secret = s.kind == "secret";
    let text = match typed {
        Some(fields) if !secret && fields.iter().any(|(k, _)| k == s.key) => {
            field(fields, s.key).to_owned()
        }
        _ if secret => String::new(),
        _ => as_text(&s.value),
    };
    context! {
        key => s.key,
        kind => s.kind,
        text => text,
        // Secrets: "set" / "unset", here and in the file.
        state => secret_state(&s.value),
        config_state => secret_state(&s.config_value),
        choices => s.choices,
        source => s.source,
        config_text => as_text(&s.config_value),
        updated_by => s.updated_by.as_deref(),
        updated_at => s.updated_at.map(rfc3339),
    }
}

/// A secret's "set" / "not set" as a message key's last part.
fn secret_state(v: &Json) -> &'static str {
    if v.as_str() == Some("set") {
        "set"
    } else {
        "unset"
    }
}

fn settings_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    out: Outcome<'_>,
) -> Response {
    let all = settings::view(state);
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|g| {
            let fields: Vec<Value> = all
                .iter()
                .filter(|s| s.group == *g)
                .map(|s| field_ctx(s, out.typed))
                .collect();
            context! { name => *g, fields => fields }
        })
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/settings.html",
        "settings",
        context! {
            groups => groups,
            error => out.error,
            saved => out.saved,
            mail_enabled => state.mail_enabled(),
            test => out.test.map(|t| context! { ok => t.ok, message => t.message }),
            test_to => out.test_to,
        },
    )
}

pub async fn page(State(state): St, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let saved = ctx.query_without_lang.split('&').any(|kv| kv == "saved=1");
    let out = Outcome {
        saved,
        ..Outcome::default()
    };
    settings_page(&state, &ctx, &admin, StatusCode::OK, out)
}

/// A section's fields as changes: only the fields whose value differs from the one in
/// effect (an untouched field keeps coming from where it came from); a blank password keeps
/// the saved one.
fn changes_from_form(
    state: &AppState,
    fields: &[(String, String)],
) -> Result<kami_store::SettingsChanges, ServiceError> {
    let group = field(fields, "group");
    let current = settings::view(state);
    let mut body = serde_json::Map::new();
    for s in current.iter().filter(|s| s.group == group) {
        let Some(k) = overlay::key(s.key) else {
            continue;
        };
        if !fields.iter().any(|(name, _)| name == s.key) {
            continue;
        }
        // Browsers send a textarea's line breaks as CR LF.
        let text = field(fields, s.key).replace("\r\n", "\n");
        if s.kind == "secret" {
            if !text.is_empty() {
                body.insert(s.key.to_owned(), Json::String(text));
            }
            continue;
        }
        if text.trim().is_empty() && matches!(&s.value, Json::Null) {
            continue;
        }
        let typed = overlay::from_form(k, &text)
            .map_err(|m| ServiceError::invalid("invalid_settings", m))?;
        let unchanged = match overlay::parse(k, &typed) {
            Ok(kami_store::SettingValue::Json(v)) => v == s.value,
            _ => false,
        };
        if !unchanged {
            body.insert(s.key.to_owned(), typed);
        }
    }
    if body.is_empty() {
        return Ok(Vec::new());
    }
    settings::parse_changes(&body)
}

/// `POST /admin/settings`: save one section (`group`).
pub async fn save(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let result = match changes_from_form(&state, &fields) {
        Ok(changes) if changes.is_empty() => Ok(()),
        Ok(changes) => settings::update(&state, changes, &guard::actor(&admin, &ctx))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    after_save(&state, &ctx, &admin, Some(&fields), result)
}

/// After a save: the page again with "saved", or with the refusal (and the fields as typed).
fn after_save(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    typed: Option<&[(String, String)]>,
    result: Result<(), ServiceError>,
) -> Response {
    match result {
        Ok(()) => see_other("/admin/settings?saved=1"),
        Err(ServiceError::Invalid { message, .. }) => settings_page(
            state,
            ctx,
            admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            Outcome {
                error: Some(message),
                typed,
                ..Outcome::default()
            },
        ),
        Err(e) => super::failed(state, ctx, Some(admin), e),
    }
}

/// `POST /admin/settings/reset`: one key (`key`) back to the configuration's value.
pub async fn reset(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut body = serde_json::Map::new();
    body.insert(field(&fields, "key").to_owned(), Json::Null);
    let result = match settings::parse_changes(&body) {
        Ok(changes) => settings::update(&state, changes, &guard::actor(&admin, &ctx))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    after_save(&state, &ctx, &admin, None, result)
}

/// `POST /admin/settings/test-mail`: send a test mail to `to`; the page shows the answer.
pub async fn test_mail(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let to = field(&fields, "to").trim().to_owned();
    let (status, test) = match settings::test_mail(&state, &to, ctx.locale).await {
        // The SMTP server's refusal is an answer too: shown, in red.
        Ok(t) => (StatusCode::OK, t),
        Err(ServiceError::Invalid { message, .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            TestMail { ok: false, message },
        ),
        Err(ServiceError::Conflict { message, .. }) => {
            (StatusCode::CONFLICT, TestMail { ok: false, message })
        }
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let outcome = Outcome {
        test: Some(test),
        test_to: to,
        ..Outcome::default()
    };
    settings_page(&state, &ctx, &admin, status, outcome)
}
