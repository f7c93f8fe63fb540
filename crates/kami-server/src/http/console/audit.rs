//! `/admin/audit`: who changed what and when, filtered and paged, with the values before and
//! after each change; `/admin/audit.csv` exports what the filter selects.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::{context, Value};
use serde::Deserialize;

use super::{guard, render};
use crate::http::api::csv_attachment;
use crate::http::web::request::Ctx;
use crate::services::audit_log;
use crate::state::AppState;
use crate::time::rfc3339;

/// The filter form's fields (unknown ones, like `lang`, are ignored).
#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<i64>,
}

impl Filter {
    fn query(&self) -> audit_log::Query {
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.trim().is_empty());
        audit_log::Query {
            actor: some(&self.actor),
            target: some(&self.target),
            from: some(&self.from),
            to: some(&self.to),
            before: self.before,
        }
    }

    /// This filter as a query string (for the next page and the export link).
    fn encoded(&self) -> String {
        serde_urlencoded::to_string([
            ("actor", self.actor.as_str()),
            ("target", self.target.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ])
        .unwrap_or_default()
    }
}

fn pretty(v: &Option<serde_json::Value>) -> String {
    v.as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or_default()
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Query(f): Query<Filter>,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let (rows, error) = match audit_log::page(&state, &f.query()).await {
        Ok(rows) => (rows, None),
        Err(crate::services::ServiceError::Invalid { message, .. }) => (Vec::new(), Some(message)),
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let next = (rows.len() == audit_log::PAGE as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("?{}&before={}", f.encoded(), r.id))
        })
        .flatten();
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                id => r.id,
                at => rfc3339(r.at),
                actor => r.entry.actor.as_str(),
                action => r.entry.action.as_str(),
                target => r.entry.target.as_str(),
                ip => r.entry.ip.as_deref().unwrap_or(""),
                before => pretty(&r.entry.before),
                after => pretty(&r.entry.after),
            }
        })
        .collect();
    render(
        &state,
        &ctx,
        Some(&admin),
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "console/audit.html",
        "audit",
        context! {
            entries => entries,
            filter => context! { actor => f.actor, target => f.target, from => f.from, to => f.to },
            error => error,
            next => next,
            export => format!("/admin/audit.csv?{}", f.encoded()),
        },
    )
}

pub async fn export(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Query(f): Query<Filter>,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    match audit_log::export_csv(&state, &f.query(), &guard::actor(&admin, &ctx)).await {
        Ok(csv) => csv_attachment("audit-log.csv", csv).into_response(),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
