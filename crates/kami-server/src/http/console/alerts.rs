//! `/admin/alerts`: where alerts go (the configuration's `[[alerts]]` read-only, stored targets
//! added, edited, deleted and tested here), the conditions firing now, and the latest
//! deliveries with their state and errors. Forms become the same service calls as the JSON
//! API (`services::alert_admin`). A target's secret is never put back into a page: the edit
//! form says whether one is stored and leaves the field blank ("leave blank to keep").

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use kami_store::AlertEvent;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::alert_admin::{self, TargetInput, TargetView, TestOutcome};
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;
type Fields = Vec<(String, String)>;

/// What the form shows: a target being edited (or a refused form, secrets left out).
#[derive(Default)]
struct Form {
    editing: Option<String>,
    name: String,
    kind: String,
    url: String,
    chat_id: String,
    api_base: String,
    to: String,
    events: Vec<String>,
    enabled: bool,
    secret_set: bool,
}

impl Form {
    fn new() -> Form {
        Form {
            kind: "webhook".into(),
            events: AlertEvent::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            enabled: true,
            ..Form::default()
        }
    }

    fn of(v: &TargetView) -> Form {
        Form {
            editing: Some(v.id.clone()),
            name: v.id.clone(),
            kind: v.kind.clone(),
            url: v.url.clone().unwrap_or_default(),
            chat_id: v.chat_id.clone().unwrap_or_default(),
            api_base: v.api_base.clone().unwrap_or_default(),
            to: v.to.join(", "),
            events: v.events.iter().map(|e| e.as_str().to_owned()).collect(),
            enabled: v.enabled,
            secret_set: v.secret_set,
        }
    }

    fn posted(fields: &Fields, editing: Option<String>, secret_set: bool) -> Form {
        Form {
            editing,
            name: field(fields, "name").to_owned(),
            kind: field(fields, "kind").to_owned(),
            url: field(fields, "url").to_owned(),
            chat_id: field(fields, "chat_id").to_owned(),
            api_base: field(fields, "api_base").to_owned(),
            to: field(fields, "to").to_owned(),
            events: checked_events(fields),
            enabled: field(fields, "enabled") == "on",
            secret_set,
        }
    }

    fn ctx(&self) -> Value {
        let events: Vec<Value> = AlertEvent::ALL
            .iter()
            .map(|e| context! { name => e.as_str(), checked => self.events.iter().any(|x| x == e.as_str()) })
            .collect();
        context! {
            editing => self.editing.as_deref(),
            name => self.name.as_str(),
            kind => self.kind.as_str(),
            url => self.url.as_str(),
            chat_id => self.chat_id.as_str(),
            api_base => self.api_base.as_str(),
            to => self.to.as_str(),
            events => events,
            enabled => self.enabled,
            secret_set => self.secret_set,
        }
    }
}

fn checked_events(fields: &Fields) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == "events")
        .map(|(_, v)| v.clone())
        .collect()
}

/// Empty text is "not given" (kept on an edit).
fn text(fields: &Fields, name: &str) -> Option<String> {
    Some(field(fields, name).trim().to_owned()).filter(|s| !s.is_empty())
}

fn input(fields: &Fields) -> TargetInput {
    let kind = field(fields, "kind");
    let secret = text(fields, "secret");
    TargetInput {
        name: text(fields, "name"),
        kind: text(fields, "kind"),
        // The form has one secret field: the webhook secret or the bot token.
        secret: (kind != "telegram").then(|| secret.clone()).flatten(),
        bot_token: (kind == "telegram").then_some(secret).flatten(),
        url: Some(field(fields, "url").to_owned()),
        chat_id: Some(field(fields, "chat_id").to_owned()),
        api_base: Some(field(fields, "api_base").to_owned()),
        to: Some(
            field(fields, "to")
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        events: Some(checked_events(fields)),
        enabled: Some(field(fields, "enabled") == "on"),
    }
}

fn target_ctx(t: &TargetView) -> Value {
    let destination = match t.kind.as_str() {
        "webhook" => t.url.clone().unwrap_or_default(),
        "telegram" => t.chat_id.clone().unwrap_or_default(),
        _ => t.to.join(", "),
    };
    let events: Vec<&str> = t.events.iter().map(|e| e.as_str()).collect();
    context! {
        id => t.id.as_str(),
        kind => t.kind.as_str(),
        read_only => t.read_only,
        destination => destination,
        events => events.join(", "),
        all_events => t.events.len() == AlertEvent::ALL.len(),
        enabled => t.enabled,
        secret_set => t.secret_set,
        problem => t.problem.as_deref(),
    }
}

struct Flash<'a> {
    status: StatusCode,
    tested: Option<(&'a str, &'a TestOutcome)>,
    error: Option<String>,
}

const OK: Flash<'static> = Flash {
    status: StatusCode::OK,
    tested: None,
    error: None,
};

async fn page_with(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    flash: Flash<'_>,
    form: Form,
) -> Response {
    let loaded = async {
        Ok::<_, ServiceError>((
            alert_admin::list(state).await?,
            alert_admin::conditions(state).await?,
            alert_admin::deliveries(state).await?,
        ))
    }
    .await;
    let (targets, conditions, deliveries) = match loaded {
        Ok(v) => v,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let targets: Vec<Value> = targets.iter().map(target_ctx).collect();
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|c| {
            context! {
                event => c.event.as_str(),
                subject => c.subject.as_str(),
                since => rfc3339(c.first_seen),
                last_seen => rfc3339(c.last_seen),
                details => c.details.to_string(),
            }
        })
        .collect();
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            context! {
                id => d.id,
                target => d.alert.target.as_str(),
                event => d.alert.name(),
                subject => d.alert.subject.as_str(),
                state => alert_admin::delivery_state(d),
                attempts => d.attempts,
                at => rfc3339(d.created_at),
                error => d.last_error.as_deref(),
            }
        })
        .collect();
    let test = flash
        .tested
        .map(|(id, t)| context! { id => id, ok => t.ok, message => t.message.as_str() });
    render(
        state,
        ctx,
        Some(admin),
        flash.status,
        "console/alerts.html",
        "alerts",
        context! {
            targets => targets,
            conditions => conditions,
            deliveries => deliveries,
            form => form.ctx(),
            kinds => ["webhook", "telegram", "email"],
            test => test,
            error => flash.error,
        },
    )
}

/// `GET /admin/alerts` (`?edit=<name>` fills the form with a stored target).
pub async fn page(State(state): St, RawQuery(query): RawQuery, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let q: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let form = match q.iter().find(|(k, _)| k == "edit") {
        Some((_, id)) => match alert_admin::get(&state, id).await {
            Ok(v) if !v.read_only => Form::of(&v),
            Ok(_) | Err(ServiceError::NotFound { .. }) => {
                return super::message(
                    &state,
                    &ctx,
                    Some(&admin),
                    StatusCode::NOT_FOUND,
                    "not_found",
                )
            }
            Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
        },
        None => Form::new(),
    };
    page_with(&state, &ctx, &admin, OK, form).await
}

/// A refusal the seller can fix, shown with the form as it was sent (secret left out).
async fn refused(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    e: ServiceError,
    form: Form,
) -> Response {
    let (status, message) = match e {
        ServiceError::Invalid { message, .. } => (StatusCode::UNPROCESSABLE_ENTITY, message),
        ServiceError::Conflict { message, .. } => (StatusCode::CONFLICT, message),
        ServiceError::NotFound { message, .. } => (StatusCode::NOT_FOUND, message),
        other => return super::failed(state, ctx, Some(admin), other),
    };
    let flash = Flash {
        status,
        tested: None,
        error: Some(message),
    };
    page_with(state, ctx, admin, flash, form).await
}

/// `POST /admin/alerts/targets`: a new stored target.
pub async fn create(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match alert_admin::create(&state, input(&fields), &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other("/admin/alerts"),
        Err(e) => {
            let form = Form::posted(&fields, None, false);
            refused(&state, &ctx, &admin, e, form).await
        }
    }
}

/// `POST /admin/alerts/targets/{id}`: change a stored target (a blank secret keeps it).
pub async fn save(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut changes = input(&fields);
    changes.name = None;
    match alert_admin::update(&state, &id, changes, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other("/admin/alerts"),
        Err(e) => {
            let secret_set = alert_admin::get(&state, &id)
                .await
                .is_ok_and(|v| v.secret_set);
            let mut form = Form::posted(&fields, Some(id.clone()), secret_set);
            form.name = id;
            refused(&state, &ctx, &admin, e, form).await
        }
    }
}

/// `POST /admin/alerts/targets/{id}/delete`.
pub async fn delete(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match alert_admin::remove(&state, &id, &guard::actor(&admin, &ctx)).await {
        Ok(()) => see_other("/admin/alerts"),
        Err(e) => refused(&state, &ctx, &admin, e, Form::new()).await,
    }
}

/// `POST /admin/alerts/targets/{id}/test`: send a test alert now and show the outcome.
pub async fn test(State(state): St, Path(id): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match alert_admin::test(&state, &id).await {
        Ok(outcome) => {
            let flash = Flash {
                status: StatusCode::OK,
                tested: Some((id.as_str(), &outcome)),
                error: None,
            };
            page_with(&state, &ctx, &admin, flash, Form::new()).await
        }
        Err(e) => refused(&state, &ctx, &admin, e, Form::new()).await,
    }
}
