//! `/admin/channels`: every payment channel with its live health (routing state per method in
//! its own partial, `console/channel_routing.html`; success rate and create-call p95 of the
//! last days), the configuration file's read-only; adding a
//! channel of a kind (`/admin/channels/new?kind=...`), editing one, turning it on or off,
//! deleting it (archived instead while payments point at it), and the test button. Forms
//! become the same service calls as the JSON API (`services::channel_admin`).
//!
//! Key material is pasted into a text area (or read into it from a file by the console's
//! script; without the script the text area alone works). It is never put back into a page:
//! the edit form says which keys are stored and leaves their areas blank ("leave blank to
//! keep"); a refused form asks for them again.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use kami_core::Method;
use kami_pay::ChannelKind;
use kami_store::ChannelRemoval;
use minijinja::{context, Value};
use serde_json::{Map, Value as Json};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::channel_admin::{self, form_keys, ChannelView, TestOutcome, HEALTH_DAYS};
use crate::services::channel_measures;
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;
type Fields = Vec<(String, String)>;

/// A refusal the seller can fix (shown on the page), or a failure.
fn refusal(e: ServiceError) -> Result<String, ServiceError> {
    match e {
        ServiceError::Invalid { message, .. } | ServiceError::Conflict { message, .. } => {
            Ok(message)
        }
        other => Err(other),
    }
}

pub(super) fn percent(rate: Option<f64>) -> Option<String> {
    rate.map(|r| format!("{:.1}", r * 100.0))
}

/// Per method: health, window, success rate, shadow agreement (the routing partial).
fn lanes_ctx(c: &ChannelView) -> Vec<Value> {
    c.lanes
        .iter()
        .map(|l| {
            let shadow = c
                .shadow
                .iter()
                .find(|(m, _)| *m == l.method)
                .map(|(_, t)| context! { agreed => t.agreed, decisions => t.decisions });
            context! {
                method => l.method.as_str(),
                state => l.state.as_str(),
                rest_until => l.rest_until.map(rfc3339),
                last_code => l.last_code.as_deref(),
                calls => l.calls,
                failures => l.failures,
                success => percent(l.success_rate),
                volume => l.volume,
                shadow => shadow,
            }
        })
        .collect()
}

/// `min–max, daily limit (paid today)` in minor units, `–` for none.
fn limits_text(c: &ChannelView) -> String {
    let n = |v: Option<i64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
    format!(
        "{}–{}, {} ({})",
        n(c.limits.min_amount()),
        n(c.limits.max_amount()),
        n(c.limits.daily_limit()),
        c.paid_today
    )
}

fn row_ctx(c: &ChannelView) -> Value {
    let methods: Vec<&str> = c.methods.iter().map(|m| m.as_str()).collect();
    context! {
        lanes => lanes_ctx(c),
        limits => limits_text(c),
        id => c.id.as_str(),
        kind => c.kind.as_str(),
        source => c.origin.as_str(),
        read_only => c.read_only(),
        stored => c.origin == crate::channels::Origin::Stored,
        state => c.state(),
        problem => c.problem.as_deref(),
        methods => methods.join(", "),
        priority => c.priority,
        weight => c.weight,
        enabled => c.enabled,
        archived => c.archived,
        resting_until => c.health.resting_until.map(rfc3339),
        failures => c.health.failures,
        created => c.stats.created,
        paid => c.stats.paid,
        calls => c.stats.calls,
        success => percent(c.stats.success_rate()),
        p95 => c.stats.p95_ms,
    }
}

async fn list_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    tested: Option<(&str, &TestOutcome)>,
    error: Option<String>,
) -> Response {
    let list = match channel_admin::list(state).await {
        Ok(l) => l,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let rows: Vec<Value> = list.iter().map(row_ctx).collect();
    let (measures, measure_failures) = match channel_measures::measures(state).await {
        Ok(all) => super::channel_measures::context(&list, &all),
        Err(e) => return super::failed(state, ctx, Some(admin), e.into()),
    };
    let kinds: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
    let test =
        tested.map(|(id, t)| context! { id => id, ok => t.ok, message => t.message.as_str() });
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/channels.html",
        "channels",
        context! {
            channels => rows,
            kinds => kinds,
            test => test,
            error => error,
            days => HEALTH_DAYS,
            routing_mode => state.channels.policy().mode.as_str(),
            shadow => state.channels.policy().mode == kami_pay::routing::RoutingMode::Shadow,
            measures => measures,
            measure_failures => measure_failures,
        },
    )
}

pub async fn list(State(state): St, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => list_page(&state, &ctx, &admin, StatusCode::OK, None, None).await,
        Err(resp) => resp,
    }
}

/// The form's values as text, by key (`methods` as the checked names).
struct FormValues {
    text: Vec<(String, String)>,
    methods: Vec<String>,
}

impl FormValues {
    fn from_fields(fields: &[(String, String)]) -> FormValues {
        FormValues {
            text: fields
                .iter()
                .filter(|(k, _)| k != "methods" && k != "csrf")
                .cloned()
                .collect(),
            methods: fields
                .iter()
                .filter(|(k, _)| k == "methods")
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    fn from_view(c: &ChannelView) -> FormValues {
        let mut text = vec![
            ("priority".to_owned(), c.priority.to_string()),
            ("weight".to_owned(), c.weight.to_string()),
            (
                "min_amount".to_owned(),
                c.limits
                    .min_amount()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            (
                "max_amount".to_owned(),
                c.limits
                    .max_amount()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            (
                "daily_limit".to_owned(),
                c.limits
                    .daily_limit()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            (
                "enabled".to_owned(),
                if c.enabled { "on" } else { "" }.to_owned(),
            ),
        ];
        for (k, v) in &c.settings {
            let shown = match v {
                Json::String(s) => s.clone(),
                Json::Bool(true) => "on".to_owned(),
                Json::Bool(false) | Json::Null => String::new(),
                other => other.to_string(),
            };
            text.push((k.clone(), shown));
        }
        FormValues {
            text,
            methods: c.methods.iter().map(|m| m.as_str().to_owned()).collect(),
        }
    }
}

/// The add or edit form of a channel of `kind`. `current`: the stored channel being edited.
#[allow(clippy::too_many_arguments)]
fn form_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    kind: ChannelKind,
    current: Option<&ChannelView>,
    values: &FormValues,
    error: Option<String>,
) -> Response {
    let keys: Vec<Value> = form_keys(kind)
        .iter()
        .map(|k| {
            context! {
                name => k.name,
                secret => k.secret,
                boolean => k.boolean,
                stored => current.is_some_and(|c| c.keys_set.iter().any(|s| s == k.name)),
                value => if k.secret { "" } else { field(&values.text, k.name) },
            }
        })
        .collect();
    let methods: Vec<Value> = Method::ALL
        .iter()
        .map(|m| context! { name => m.as_str(), checked => values.methods.iter().any(|v| v == m.as_str()) })
        .collect();
    let form = context! {
        id => field(&values.text, "id"),
        priority => field(&values.text, "priority"),
        weight => field(&values.text, "weight"),
        min_amount => field(&values.text, "min_amount"),
        max_amount => field(&values.text, "max_amount"),
        daily_limit => field(&values.text, "daily_limit"),
        enabled => !field(&values.text, "enabled").is_empty(),
    };
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/channel_edit.html",
        "channels",
        context! {
            kind => kind.as_str(),
            creating => current.is_none(),
            id => current.map(|c| c.id.as_str()),
            keys => keys,
            methods => methods,
            form => form,
            error => error,
        },
    )
}

/// `?kind=alipay` (else the first kind).
fn kind_of_query(query: Option<&str>) -> Option<ChannelKind> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    ChannelKind::parse(field(&pairs, "kind"))
}

pub async fn new_form(State(state): St, RawQuery(query): RawQuery, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Some(kind) = kind_of_query(query.as_deref()) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let mut text: Fields = vec![
        ("priority".into(), "0".into()),
        ("weight".into(), "1".into()),
        ("enabled".into(), "on".into()),
    ];
    for k in form_keys(kind).iter().filter(|k| k.default_on) {
        text.push((k.name.to_owned(), "on".into()));
    }
    let defaults = FormValues {
        text,
        methods: Vec::new(),
    };
    form_page(
        &state,
        &ctx,
        &admin,
        StatusCode::OK,
        kind,
        None,
        &defaults,
        None,
    )
}

/// The form as the API's body: every key of the kind; blank text removes an optional key
/// when editing; blank key material keeps what is stored, unless "remove" is ticked.
fn form_body(kind: ChannelKind, fields: &[(String, String)], creating: bool) -> Map<String, Json> {
    let mut body = Map::new();
    if creating {
        body.insert(
            "id".into(),
            Json::String(field(fields, "id").trim().to_owned()),
        );
        body.insert("kind".into(), Json::String(kind.as_str().to_owned()));
    }
    let methods: Vec<Json> = fields
        .iter()
        .filter(|(k, _)| k == "methods")
        .map(|(_, v)| Json::String(v.clone()))
        .collect();
    body.insert("methods".into(), Json::Array(methods));
    for key in ["priority", "weight"] {
        let v = field(fields, key).trim();
        if !v.is_empty() {
            body.insert(key.into(), Json::String(v.to_owned()));
        }
    }
    // Blank limits are none (removed when editing).
    for key in ["min_amount", "max_amount", "daily_limit"] {
        let v = field(fields, key).trim();
        if !v.is_empty() {
            body.insert(key.into(), Json::String(v.to_owned()));
        } else if !creating {
            body.insert(key.into(), Json::Null);
        }
    }
    body.insert(
        "enabled".into(),
        Json::Bool(!field(fields, "enabled").is_empty()),
    );
    for k in form_keys(kind) {
        let raw = field(fields, k.name);
        let value = if k.secret {
            if !field(fields, &format!("clear_{}", k.name)).is_empty() {
                Some(Json::Null)
            } else if raw.trim().is_empty() {
                None
            } else {
                // Key material as pasted (line breaks matter); `\r\n` from a browser is fine.
                Some(Json::String(raw.to_owned()))
            }
        } else if k.boolean {
            Some(Json::Bool(!raw.is_empty()))
        } else {
            let v = raw.trim();
            if v.is_empty() {
                (!creating).then_some(Json::Null)
            } else if k.number {
                Some(
                    v.parse::<i64>()
                        .map_or_else(|_| Json::String(v.to_owned()), Json::from),
                )
            } else {
                Some(Json::String(v.to_owned()))
            }
        };
        if let Some(v) = value {
            body.insert(k.name.to_owned(), v);
        }
    }
    body
}

pub async fn create(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Some(kind) = ChannelKind::parse(field(&fields, "kind")) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let input = form_body(kind, &fields, true);
    let result = channel_admin::create(&state, input, &guard::actor(&admin, &ctx)).await;
    after_form(&state, &ctx, &admin, kind, None, &fields, result)
}

/// After the form is sent: back to the list, or the form again with the refusal and the
/// values as typed.
fn after_form<T>(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    kind: ChannelKind,
    current: Option<&ChannelView>,
    fields: &[(String, String)],
    result: Result<T, ServiceError>,
) -> Response {
    match result.map_err(refusal) {
        Ok(_) => see_other("/admin/channels"),
        Err(Ok(msg)) => form_page(
            state,
            ctx,
            admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            current,
            &FormValues::from_fields(fields),
            Some(msg),
        ),
        Err(Err(e)) => super::failed(state, ctx, Some(admin), e),
    }
}

/// The channel `id` as the seller sees it, or the page to answer with.
async fn channel_or_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    id: &str,
) -> Result<ChannelView, Response> {
    channel_admin::get(state, id)
        .await
        .map_err(|e| super::failed(state, ctx, Some(admin), e))
}

/// The edit form of a stored channel; a read-only channel's page shows it without a form.
pub async fn edit(State(state): St, Path(id): Path<String>, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let c = match channel_or_page(&state, &ctx, &admin, &id).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match ChannelKind::parse(&c.kind) {
        Some(kind) if !c.read_only() => form_page(
            &state,
            &ctx,
            &admin,
            StatusCode::OK,
            kind,
            Some(&c),
            &FormValues::from_view(&c),
            None,
        ),
        _ => render(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::OK,
            "console/channel_view.html",
            "channels",
            context! { c => row_ctx(&c), keys_set => c.keys_set.join(", ") },
        ),
    }
}

pub async fn save(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let c = match channel_or_page(&state, &ctx, &admin, &id).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(kind) = ChannelKind::parse(&c.kind) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let input = form_body(kind, &fields, false);
    let result = channel_admin::update(&state, &id, input, &guard::actor(&admin, &ctx)).await;
    after_form(&state, &ctx, &admin, kind, Some(&c), &fields, result)
}

/// After a list action: back to the list, or the list with the refusal.
async fn after_action(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    result: Result<(), ServiceError>,
) -> Response {
    match result.map_err(refusal) {
        Ok(()) => see_other("/admin/channels"),
        Err(Ok(msg)) => list_page(state, ctx, admin, StatusCode::CONFLICT, None, Some(msg)).await,
        Err(Err(e)) => super::failed(state, ctx, Some(admin), e),
    }
}

/// Turn a stored channel on or off (`enabled` = `1` or `0`).
pub async fn toggle(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut input = Map::new();
    input.insert(
        "enabled".into(),
        Json::Bool(field(&fields, "enabled") == "1"),
    );
    let result = channel_admin::update(&state, &id, input, &guard::actor(&admin, &ctx))
        .await
        .map(|_| ());
    after_action(&state, &ctx, &admin, result).await
}

pub async fn delete(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let result = channel_admin::remove(&state, &id, &guard::actor(&admin, &ctx))
        .await
        .map(|r: ChannelRemoval| tracing::debug!(?r, "channel removed from the console"));
    after_action(&state, &ctx, &admin, result).await
}

/// The test button: the list with the result above it.
pub async fn test(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _): (Admin, Fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match channel_admin::test(&state, &id).await {
        Ok(t) => list_page(&state, &ctx, &admin, StatusCode::OK, Some((&id, &t)), None).await,
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
