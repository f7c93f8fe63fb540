//! `/admin/orders`: the seller's order search (a GET form, so a view is a link), a page of
//! results with a cursor, "needs action" shortcuts, and the CSV export of the same filter.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::{Method, OrderStatus};
use kami_store::Actor;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::render;
use crate::http::web::request::Ctx;
use crate::services::order_search::{self, mask_email, SearchForm};
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

/// The statuses the console lists, in the order a seller thinks of them.
pub const STATUSES: [OrderStatus; 9] = [
    OrderStatus::Pending,
    OrderStatus::Paid,
    OrderStatus::Delivered,
    OrderStatus::AwaitingFulfilment,
    OrderStatus::Fulfilled,
    OrderStatus::Exception,
    OrderStatus::Expired,
    OrderStatus::PartiallyRefunded,
    OrderStatus::Refunded,
];

/// The filter form as the query string carried it (a malformed one is an empty filter with
/// an error shown).
fn form_of(query: Option<&str>) -> Result<SearchForm, ServiceError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ServiceError::invalid("invalid_filter", "the filter could not be read"))
}

/// The query string of `form` with only the fields that are set (and `before` replaced).
fn query_string(form: &SearchForm, before: Option<&str>) -> String {
    let limit = form.limit.map(|l| l.to_string()).unwrap_or_default();
    let pairs = [
        ("q", form.q.as_str()),
        ("status", form.status.as_str()),
        ("channel", form.channel.as_str()),
        ("method", form.method.as_str()),
        ("product", form.product.as_str()),
        ("from", form.from.as_str()),
        ("to", form.to.as_str()),
        ("limit", limit.as_str()),
        ("before", before.unwrap_or("")),
    ];
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `user:NAME` from the console session, with the client's address.
pub fn actor(admin: &Admin, ctx: &Ctx) -> Actor {
    Actor::new(
        format!("user:{}", admin.session.user_name),
        ctx.ip.map(|ip| ip.to_string()),
    )
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let form = form_of(query.as_deref());
    let found = match &form {
        Ok(f) => order_search::search(&state, f).await,
        Err(e) => Err(ServiceError::invalid("invalid_filter", e.to_string())),
    };
    let form = form.unwrap_or_default();
    let (rows, next, error, status) = match found {
        Ok(page) => {
            let rows: Vec<Value> = page
                .orders
                .iter()
                .map(|o| {
                    context! {
                        no => o.order_no.as_str(),
                        created => rfc3339(o.created_at),
                        product => o.product_title.as_str(),
                        slug => o.product_slug.as_str(),
                        quantity => o.quantity,
                        amount => o.amount.minor(),
                        currency => o.amount.currency().code(),
                        status => o.status.as_str(),
                        channel => o.channel_id.as_str(),
                        email => mask_email(o.email.as_str()),
                    }
                })
                .collect();
            let next = page
                .next_before
                .map(|b| format!("/admin/orders?{}", query_string(&form, Some(&b))));
            (rows, next, None, StatusCode::OK)
        }
        Err(ServiceError::Invalid { message, .. }) => (
            Vec::new(),
            None,
            Some(message),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let statuses: Vec<&str> = STATUSES.iter().map(|s| s.as_str()).collect();
    let methods: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
    render(
        &state,
        &ctx,
        Some(&admin),
        status,
        "console/orders.html",
        "orders",
        context! {
            form => context! {
                q => form.q.as_str(),
                status => form.status.as_str(),
                channel => form.channel.as_str(),
                method => form.method.as_str(),
                product => form.product.as_str(),
                from => form.from.as_str(),
                to => form.to.as_str(),
            },
            statuses => statuses,
            methods => methods,
            orders => rows,
            next => next,
            error => error,
            csv => format!("/admin/orders.csv?{}", query_string(&form, None)),
        },
    )
}

/// `/admin/orders.csv?…`: the current filter's orders as a CSV attachment, streamed a page
/// at a time, audited as `orders.export`.
pub async fn csv(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    // A filter the search refuses is explained on the list page.
    let back = || super::see_other(&format!("/admin/orders?{}", query.as_deref().unwrap_or("")));
    let Ok(form) = form_of(query.as_deref()) else {
        return back();
    };
    match order_search::export_csv(&state, &form, &actor(&admin, &ctx)).await {
        Ok(stream) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"orders.csv\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(ServiceError::Invalid { .. }) => back(),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
