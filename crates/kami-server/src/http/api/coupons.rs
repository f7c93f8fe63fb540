//! Coupons for the seller (DESIGN 4.3 "Coupons ... under the same prefix"), admin token: thin
//! handlers over `services::coupons`, which the console calls as well.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_core::{CouponCode, Currency};
use kami_store::{Coupon, CouponRemoval};
use serde_json::{json, Value};

use super::seller::actor;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{parse_json_fields, AdminAuth, AppBytes, ClientIp};
use crate::services::coupons::{self, CouponChanges, NewCouponInput};
use crate::state::AppState;
use crate::time::rfc3339;

pub(crate) fn coupon_json(c: &Coupon) -> Value {
    let s = &c.settings;
    json!({
        "code": c.code.as_str(),
        "kind": s.kind.as_str(),
        "value": s.value,
        "currency": s.currency.map(Currency::code),
        "products": s.products,
        "valid_from": s.valid_from.map(rfc3339),
        "valid_to": s.valid_to.map(rfc3339),
        "max_uses": s.max_uses,
        "used": c.used,
        "once_per_email": s.once_per_email,
        "min_amount": s.min_amount,
        "enabled": s.enabled,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

fn code_or_404(code: &str) -> ApiResult<CouponCode> {
    CouponCode::parse(code).map_err(|_| ApiError::not_found("coupon_not_found", "no such coupon"))
}

/// `GET /api/v1/admin/coupons`: newest first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = coupons::list(&state)
        .await?
        .iter()
        .map(coupon_json)
        .collect();
    Ok(Json(json!({ "coupons": list })))
}

/// `POST /api/v1/admin/coupons` → `201` with the coupon; `409 coupon_exists`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let input: NewCouponInput = parse_json_fields(&headers, &bytes)?;
    let (code, settings) = coupons::parse_new(input)?;
    let c = coupons::create(&state, &code, settings, &actor(&admin, ip)).await?;
    Ok((StatusCode::CREATED, Json(coupon_json(&c))))
}

/// `PATCH /api/v1/admin/coupons/{code}`.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(bytes): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let code = code_or_404(&code)?;
    let changes: CouponChanges = parse_json_fields(&headers, &bytes)?;
    let patch = coupons::parse_changes(changes)?;
    let c = coupons::update(&state, &code, patch, &actor(&admin, ip)).await?;
    Ok(Json(coupon_json(&c)))
}

/// `DELETE /api/v1/admin/coupons/{code}`: `{"deleted": true, "disabled": false}`, or for a
/// coupon orders used `{"deleted": false, "disabled": true}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let code = code_or_404(&code)?;
    let removal = coupons::remove(&state, &code, &actor(&admin, ip)).await?;
    let deleted = removal == CouponRemoval::Deleted;
    Ok(Json(json!({ "deleted": deleted, "disabled": !deleted })))
}
