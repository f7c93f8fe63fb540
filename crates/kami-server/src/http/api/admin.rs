//! Admin API (bearer admin token).

use std::mem;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use http_body_util::BodyExt;
use kami_core::cards::{KeyStream, KeyStreamError, ParsedKeys};
use kami_core::{OrderNo, Slug};
use serde::Deserialize;
use serde_json::json;

use super::buyer::order_json;
use super::seller::{actor, product_json};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{
    body_error, parse_json, require_json, AdminAuth, AppBytes, AppJson, ClientIp,
};
use crate::services::fulfilment;
use crate::services::order_search::{self, SearchForm};
use crate::services::products::{self, NewProductInput};
use crate::services::refunds::{self, RefundInput};
use crate::state::AppState;

/// `POST /api/v1/admin/products`: a new product (`services::products::NewProductInput`),
/// audited → `201` with the product as `GET /api/v1/admin/products` lists it.
pub async fn create_product(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<NewProductInput>,
) -> ApiResult<impl IntoResponse> {
    let p = products::create(&state, b, &actor(&admin, ip)).await?;
    Ok((StatusCode::CREATED, Json(product_json(&p))))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// `loop=true`: the keys are reusable and never run out.
    #[serde(default, rename = "loop")]
    is_loop: bool,
}

/// Keys per `Store::import_cards` call of a streamed import.
const IMPORT_BATCH: usize = 1000;

/// `POST /api/v1/admin/products/{slug}/cards`: the body (one key per line, any size) is read
/// as a stream and imported a batch at a time, so memory holds one batch, not the file. The
/// admin token is checked before any of the body is read.
pub async fn import_cards(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    Query(q): Query<ImportQuery>,
    admin: AdminAuth,
    ip: ClientIp,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let t = import_stream(&state, &slug, q.is_loop, &actor(&admin, ip), body).await?;
    Ok(Json(json!({
        "imported": t.imported,
        "duplicates": t.duplicates,
        "rejected": t.rejected,
        "batch": t.batch,
    })))
}

/// Import the keys of `body` (one per line, streamed, any size) into a new batch of the
/// product `slug`; the batch is audited whether the import completed or stopped part-way.
/// The console's import calls this too.
pub(crate) async fn import_stream(
    state: &AppState,
    slug: &str,
    is_loop: bool,
    actor: &kami_store::Actor,
    body: Body,
) -> ApiResult<ImportTotals> {
    let slug = Slug::parse(slug)
        .map_err(|_| ApiError::not_found("product_not_found", "no such product"))?;
    // No such product, or not an auto-delivery one: said before the body is read.
    let batch = state
        .store
        .begin_card_batch(slug.as_str(), is_loop, actor, state.now_ms())
        .await?;
    let import = |keys: Vec<String>| state.store.import_into_batch(&batch, keys, state.now_ms());
    let mut totals = ImportTotals {
        batch: batch.id,
        ..ImportTotals::default()
    };
    let result = async {
        let mut body = body;
        let mut keys = KeyStream::new(IMPORT_BATCH);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| body_error(StatusCode::BAD_REQUEST, &e))?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            for mut batch in keys.push(&chunk).map_err(stream_error)? {
                let r = import(mem::take(&mut batch.keys)).await?;
                totals.add(&r, &batch);
            }
        }
        let mut last = keys.finish().map_err(stream_error)?;
        let r = import(mem::take(&mut last.keys)).await?;
        totals.add(&r, &last);
        Ok::<(), ApiError>(())
    }
    .await;
    state.catalog.invalidate();
    // Audited whether the import completed or stopped part-way.
    let finished = state
        .store
        .finish_card_batch(&batch, totals.rejected, state.now_ms())
        .await;
    result.map_err(|e| partial(e, totals.imported))?;
    finished?;
    Ok(totals)
}

/// A streamed import's running totals.
#[derive(Debug, Default)]
pub(crate) struct ImportTotals {
    pub imported: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub batch: i64,
}

impl ImportTotals {
    fn add(&mut self, stored: &kami_store::ImportResult, batch: &ParsedKeys) {
        self.imported += stored.imported;
        self.duplicates += stored.duplicates + batch.duplicates_in_file;
        self.rejected += batch.rejected;
    }
}

fn stream_error(e: KeyStreamError) -> ApiError {
    match e {
        KeyStreamError::LineTooLong { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "line_too_long",
            e.to_string(),
        ),
        KeyStreamError::NotUtf8 { .. } => ApiError::bad_request(
            "invalid_encoding",
            format!("card keys must be UTF-8 text, one per line: {e}"),
        ),
    }
}

/// An import that stopped part-way: the message says what was imported before it.
fn partial(mut e: ApiError, imported: u64) -> ApiError {
    if imported > 0 {
        e.message = format!(
            "{}; {imported} keys were imported before it (importing the file again skips them)",
            e.message
        );
    }
    e
}

/// `GET /api/v1/admin/orders?q=&status=&channel=&method=&product=&from=&to=&before=&limit=`:
/// newest first, `q` an order number, email or gateway trade number (exact), dates
/// `YYYY-MM-DD` in UTC (`to` inclusive), at most 200 a page → `{"orders", "next_before"}`.
pub async fn list_orders(
    State(state): State<Arc<AppState>>,
    Query(form): Query<SearchForm>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let page = order_search::search(&state, &form).await?;
    let list: Vec<_> = page.orders.iter().map(|o| order_json(o, true)).collect();
    Ok(Json(
        json!({ "orders": list, "next_before": page.next_before }),
    ))
}

pub async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let no = OrderNo::parse(&order_no)
        .map_err(|_| ApiError::not_found("order_not_found", "no such order"))?;
    let order = state
        .store
        .order(&no)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", "no such order"))?;
    let events: Vec<_> = state
        .store
        .payment_events(&no)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "channel": e.channel_id,
                "received_at": crate::time::rfc3339(e.received_at),
                "verified": e.verified,
                "outcome": e.outcome,
                "detail": e.detail,
            })
        })
        .collect();
    let refunds: Vec<_> = state
        .store
        .refunds(&no)
        .await?
        .iter()
        .map(refund_json)
        .collect();
    // Each attempt: what it charged, in which currency, and how that followed from the order.
    let payments: Vec<_> = state
        .store
        .order_payments(&no)
        .await?
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "channel": p.channel_id,
                "trade_no": p.trade_no,
                "amount": p.amount.minor(),
                "currency": p.amount.currency().code(),
                "status": p.status,
                "charge_basis": p.charge_basis,
                "coin_amount": p.coin_amount,
            })
        })
        .collect();
    let mut body = order_json(&order, true);
    body["payments"] = json!(payments);
    body["payment_events"] = json!(events);
    body["refunds"] = json!(refunds);
    Ok(Json(body))
}

fn refund_json(r: &kami_store::Refund) -> serde_json::Value {
    json!({
        "refund_no": r.refund_no,
        "amount": r.amount.minor(),
        "currency": r.amount.currency().code(),
        "status": r.status,
        "error": r.error,
        "created_at": crate::time::rfc3339(r.created_at),
        "settled_at": r.settled_at.map(crate::time::rfc3339),
    })
}

/// `POST /api/v1/admin/orders/{order_no}/refund`: full or partial refund through the order's
/// channel. Recorded as pending before the channel is called, so a retry (by the admin with
/// the same `refund_no`, or by the refund worker) never refunds twice.
pub async fn refund(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: axum::http::HeaderMap,
    AppBytes(body): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let no = OrderNo::parse(&order_no)
        .map_err(|_| ApiError::not_found("order_not_found", "no such order"))?;
    // An empty body refunds everything still refundable.
    let input: RefundInput = if body.is_empty() {
        RefundInput::default()
    } else {
        require_json(&headers)?;
        parse_json(&body)?
    };
    let done = refunds::refund(&state, &no, input, &actor(&admin, ip)).await?;
    let (call, order_status) = (done.call, done.order_status);
    let status = match call.refund.status.as_str() {
        "succeeded" => StatusCode::OK,
        "pending" => StatusCode::ACCEPTED,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut body = refund_json(&call.refund);
    body["order_status"] = json!(order_status.as_str());
    Ok((status, Json(body)))
}

#[derive(Deserialize)]
pub struct FulfilBody {
    content: String,
}

pub(super) fn order_no_or_404(order_no: &str) -> ApiResult<OrderNo> {
    OrderNo::parse(order_no).map_err(|_| ApiError::not_found("order_not_found", "no such order"))
}

/// `POST /api/v1/admin/orders/{order_no}/fulfil` `{"content": TEXT}`: an
/// `awaiting_fulfilment` (manual) order becomes `fulfilled`; the buyer sees the content.
pub async fn fulfil(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<FulfilBody>,
) -> ApiResult<impl IntoResponse> {
    let no = order_no_or_404(&order_no)?;
    let order = fulfilment::fulfil(&state, &no, &b.content, &actor(&admin, ip)).await?;
    Ok(Json(order_json(&order, true)))
}

/// `POST /api/v1/admin/orders/{order_no}/deliver`: an `exception` order delivered from stock.
pub async fn deliver(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let no = order_no_or_404(&order_no)?;
    let order = fulfilment::deliver_exception(&state, &no, &actor(&admin, ip)).await?;
    Ok(Json(order_json(&order, true)))
}
