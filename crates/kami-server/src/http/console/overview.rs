//! `/admin`: today's numbers (UTC day) and the orders that wait for the seller.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{guard, render};
use crate::http::web::request::Ctx;
use crate::services::overview;
use crate::state::AppState;

pub async fn page(State(state): State<Arc<AppState>>, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let o = match overview::today(&state).await {
        Ok(o) => o,
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let revenue: Vec<_> = o
        .revenue
        .iter()
        .map(|(currency, minor)| context! { currency => currency, minor => minor })
        .collect();
    render(
        &state,
        &ctx,
        Some(&admin),
        StatusCode::OK,
        "console/overview.html",
        "dashboard",
        context! {
            today => context! {
                orders => o.orders,
                paid => o.paid,
                revenue => revenue,
            },
            exceptions => o.exceptions,
            awaiting_fulfilment => o.awaiting_fulfilment,
        },
    )
}
