//! `/admin/reconciliations`: reconciliation batches (one per channel and bill day) with their
//! status and counts, a "run now" form (channel, day), a batch's page with its items (order
//! links) and the "handled" button. Forms call the same service as the JSON API
//! (`services::reconciliation`).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use kami_store::{ReconciliationBatch, ReconciliationItem};
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::reconciliation::{self, Report};
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;

fn amount(minor: Option<i64>, currency: Option<&str>) -> Option<String> {
    let (minor, code) = (minor?, currency?);
    let c = kami_core::Currency::parse(code).ok()?;
    kami_core::Money::new(minor, c)
        .ok()
        .map(|m| format!("{} {code}", m.to_major_string()))
}

fn batch_ctx(b: &ReconciliationBatch) -> Value {
    let counts: Vec<Value> = b
        .counts
        .iter()
        .map(|(k, n)| context! { kind => k, n => n })
        .collect();
    context! {
        id => b.id,
        channel => b.channel_id,
        date => b.bill_day,
        status => b.status,
        source => b.source,
        actor => b.actor,
        runs => b.runs,
        mismatches => b.mismatches,
        counts => counts,
        error => b.error,
        totals => b.totals.map(|t| context! {
            payments => t.payments, paid => t.paid, refunds => t.refunds, refunded => t.refunded,
        }),
        started => rfc3339(b.started_at),
        finished => b.finished_at.map(rfc3339),
    }
}

fn item_ctx(i: &ReconciliationItem) -> Value {
    context! {
        id => i.id,
        kind => i.kind,
        trade_no => i.trade_no,
        refund_no => i.refund_no,
        gateway_trade_no => i.gateway_trade_no,
        order_no => i.order_no,
        kami => amount(i.kami_amount, i.kami_currency.as_deref()),
        bill => amount(i.bill_amount, i.bill_currency.as_deref()),
        detail => i.detail,
        handled => i.handled_at.map(rfc3339),
        handled_by => i.handled_by,
        note => i.handled_note,
    }
}

fn query_param(query: Option<&str>, key: &str) -> String {
    query
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

async fn list_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    channel: &str,
    error: Option<String>,
) -> Response {
    let batches = match reconciliation::list(state, Some(channel), None, 100).await {
        Ok(b) => b,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let channels: Vec<String> = state
        .channels
        .entries()
        .iter()
        .map(|e| e.id().as_str().to_owned())
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/reconciliations.html",
        "reconciliations",
        context! {
            batches => batches.iter().map(batch_ctx).collect::<Vec<_>>(),
            channels => channels,
            channel => channel,
            yesterday => reconciliation::format_day(reconciliation::default_day(state.now_ms())),
            error => error,
        },
    )
}

pub async fn list(State(state): St, ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => {
            let channel = query_param(q.as_deref(), "channel");
            list_page(&state, &ctx, &admin, StatusCode::OK, &channel, None).await
        }
        Err(resp) => resp,
    }
}

/// "Run now": the batch's page, or the list with the refusal (unknown channel, bad day).
pub async fn run(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let who = reconciliation::actor_name(&guard::actor(&admin, &ctx));
    let ran = match reconciliation::parse_day(field(&fields, "date")) {
        Ok(day) => reconciliation::run(&state, field(&fields, "channel"), day, &who).await,
        Err(e) => Err(e),
    };
    match ran {
        Ok(r) => see_other(&format!("/admin/reconciliations/{}", r.batch.id)),
        Err(
            ServiceError::Invalid { message, .. }
            | ServiceError::NotFound { message, .. }
            | ServiceError::Conflict { message, .. },
        ) => {
            list_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                "",
                Some(message),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

fn batch_id(id: &str) -> Option<i64> {
    id.parse::<i64>().ok().filter(|n| *n > 0)
}

pub async fn page(State(state): St, Path(id): Path<String>, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Some(id) = batch_id(&id) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    match reconciliation::get(&state, id).await {
        Ok(Report { batch, items }) => render(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::OK,
            "console/reconciliation.html",
            "reconciliations",
            context! {
                batch => batch_ctx(&batch),
                items => items.iter().map(item_ctx).collect::<Vec<_>>(),
            },
        ),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// The "handled" button (with its note): back to the batch's page.
pub async fn handle(
    State(state): St,
    Path((id, item)): Path<(String, String)>,
    ctx: Ctx,
    body: Bytes,
) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let (Some(id), Some(item)) = (batch_id(&id), batch_id(&item)) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let note = field(&fields, "note");
    match reconciliation::handle_item(&state, id, item, note, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other(&format!("/admin/reconciliations/{id}")),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
