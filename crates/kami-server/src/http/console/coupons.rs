//! `/admin/coupons`: the coupon list with a create form, an edit page per coupon, and
//! delete (disabled instead once orders used it). Forms speak the seller's units (an amount
//! like `5.00`, a percent like `12.5`, times in UTC); they become the same service calls as
//! the JSON API, so parsing, checks and audit rows are shared.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use kami_core::{CouponCode, Currency, Money};
use kami_store::Coupon;
use minijinja::{context, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use super::guard::{self, Admin};
use super::{field, form_fields, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::coupons::{self, CouponChanges, NewCouponInput};
use crate::services::ServiceError;
use crate::state::AppState;

type St = State<Arc<AppState>>;
type Fields = Vec<(String, String)>;

fn actor(admin: &Admin, ctx: &Ctx) -> kami_store::Actor {
    kami_store::Actor::new(
        format!("user:{}", admin.session.user_name),
        ctx.ip.map(|ip| ip.to_string()),
    )
}

/// `2026-05-01T08:00` (UTC) as a `datetime-local` input shows it.
fn local_input(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]"))
                .ok()
        })
        .unwrap_or_default()
}

/// The form's values for a coupon (the edit form starts from them).
fn form_values(c: &Coupon) -> Vec<(String, String)> {
    let s = &c.settings;
    let money = |minor: i64| match s.currency.and_then(|cur| Money::new(minor, cur).ok()) {
        Some(m) => m.to_major_string(),
        None => minor.to_string(),
    };
    let value = match s.kind {
        kami_store::CouponKind::Fixed => money(s.value),
        // Basis points as a percent with two decimals: 1250 → 12.50.
        kami_store::CouponKind::Percent => Money::new(s.value, Currency::Cny)
            .map(Money::to_major_string)
            .unwrap_or_default(),
    };
    let slugs: Vec<&str> = s.products.iter().map(|p| p.as_str()).collect();
    [
        ("code", c.code.to_string()),
        ("kind", s.kind.as_str().to_owned()),
        ("value", value),
        ("currency", s.currency.map_or("", Currency::code).to_owned()),
        ("products", slugs.join(", ")),
        (
            "valid_from",
            s.valid_from.map(local_input).unwrap_or_default(),
        ),
        ("valid_to", s.valid_to.map(local_input).unwrap_or_default()),
        (
            "max_uses",
            s.max_uses.map(|n| n.to_string()).unwrap_or_default(),
        ),
        (
            "once_per_email",
            if s.once_per_email { "on" } else { "" }.to_owned(),
        ),
        ("min_amount", s.min_amount.map(money).unwrap_or_default()),
        ("enabled", if s.enabled { "on" } else { "" }.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Every field the form shows, from `fields` (blank when absent: templates are strict).
fn values_ctx(fields: &[(String, String)]) -> Value {
    const NAMES: [&str; 11] = [
        "code",
        "kind",
        "value",
        "currency",
        "products",
        "valid_from",
        "valid_to",
        "max_uses",
        "once_per_email",
        "min_amount",
        "enabled",
    ];
    Value::from_iter(NAMES.map(|n| (n, field(fields, n).to_owned())))
}

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_coupon_settings", message)
}

/// A form's number field: blank is `None`.
fn opt_int(fields: &[(String, String)], name: &str) -> Result<Option<i64>, ServiceError> {
    let v = field(fields, name).trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| bad(format!("{name}: expected a whole number")))
}

/// An amount typed in major units (`5`, `5.00`) in `currency`, as minor units.
fn opt_amount(
    fields: &[(String, String)],
    name: &str,
    currency: Option<Currency>,
) -> Result<Option<i64>, ServiceError> {
    let v = field(fields, name).trim();
    if v.is_empty() {
        return Ok(None);
    }
    let cur = currency.ok_or_else(|| bad(format!("{name} needs a currency")))?;
    Money::from_major_str(v, cur)
        .map(|m| Some(m.minor()))
        .map_err(|e| bad(format!("{name}: {e}")))
}

/// A `datetime-local` value, read as UTC, as RFC 3339.
fn opt_time(fields: &[(String, String)], name: &str) -> Result<Option<String>, ServiceError> {
    let v = field(fields, name).trim();
    if v.is_empty() {
        return Ok(None);
    }
    let with_zone = if v.len() == 16 {
        format!("{v}:00Z")
    } else {
        format!("{v}Z")
    };
    OffsetDateTime::parse(&with_zone, &Rfc3339)
        .map(|_| Some(with_zone))
        .map_err(|_| bad(format!("{name}: expected a date and time")))
}

/// The form as the API's create body.
fn parse_form(fields: &[(String, String)]) -> Result<NewCouponInput, ServiceError> {
    let kind = field(fields, "kind").to_owned();
    let currency_code = field(fields, "currency").trim();
    let currency = if currency_code.is_empty() {
        None
    } else {
        Some(Currency::parse(currency_code).map_err(|e| bad(format!("currency: {e}")))?)
    };
    let value_text = field(fields, "value").trim();
    let value = if kind == "percent" {
        // A percent with up to two decimals is a number of basis points.
        Money::from_major_str(value_text, Currency::Cny)
            .map(Money::minor)
            .map_err(|_| bad("value: expected a percent such as 10 or 12.5"))?
    } else {
        opt_amount(fields, "value", currency)?.ok_or_else(|| bad("value: required"))?
    };
    Ok(NewCouponInput {
        code: field(fields, "code").to_owned(),
        kind,
        value,
        currency: currency.map(|c| c.code().to_owned()),
        products: field(fields, "products")
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        valid_from: opt_time(fields, "valid_from")?,
        valid_to: opt_time(fields, "valid_to")?,
        max_uses: opt_int(fields, "max_uses")?,
        once_per_email: !field(fields, "once_per_email").is_empty(),
        min_amount: opt_amount(fields, "min_amount", currency)?,
        enabled: !field(fields, "enabled").is_empty(),
    })
}

async fn post_guard(state: &AppState, ctx: &Ctx, body: &[u8]) -> Result<(Admin, Fields), Response> {
    let fields = form_fields(body);
    let admin = guard::require(state, ctx).await?;
    guard::check_post(state, ctx, Some(&admin), &admin.csrf, &fields)?;
    Ok((admin, fields))
}

async fn list_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    error: Option<String>,
    values: &[(String, String)],
) -> Response {
    let list = match coupons::list(state).await {
        Ok(l) => l,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|c| {
            let v = form_values(c);
            context! {
                code => c.code.as_str(),
                kind => c.settings.kind.as_str(),
                value => field(&v, "value"),
                currency => field(&v, "currency"),
                products => field(&v, "products"),
                valid_from => field(&v, "valid_from"),
                valid_to => field(&v, "valid_to"),
                max_uses => c.settings.max_uses,
                used => c.used,
                once_per_email => c.settings.once_per_email,
                enabled => c.settings.enabled,
            }
        })
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/coupons.html",
        "coupons",
        context! { coupons => rows, error => error, form => values_ctx(values), editing => false },
    )
}

async fn edit_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    error: Option<String>,
    code: &CouponCode,
    values: Option<&[(String, String)]>,
) -> Response {
    let c = match coupons::get(state, code).await {
        Ok(c) => c,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let current = form_values(&c);
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/coupon_edit.html",
        "coupons",
        context! {
            code => c.code.as_str(),
            used => c.used,
            error => error,
            form => values_ctx(values.unwrap_or(&current)),
        },
    )
}

pub async fn page(State(state): St, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => {
            let defaults = vec![
                ("kind".to_owned(), "percent".to_owned()),
                ("enabled".to_owned(), "on".to_owned()),
            ];
            list_page(&state, &ctx, &admin, StatusCode::OK, None, &defaults).await
        }
        Err(resp) => resp,
    }
}

/// A refusal the seller can fix: shown on the form, which keeps what was typed.
fn refusal(e: ServiceError) -> Result<String, ServiceError> {
    match e {
        ServiceError::Invalid { message, .. } => Ok(message),
        ServiceError::Store(
            se @ (kami_store::StoreError::CouponExists
            | kami_store::StoreError::InvalidCouponSettings(_)),
        ) => Ok(se.to_string()),
        other => Err(other),
    }
}

pub async fn create(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let result = match parse_form(&fields).and_then(coupons::parse_new) {
        Ok((code, settings)) => coupons::create(&state, &code, settings, &actor(&admin, &ctx))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match result.map_err(refusal) {
        Ok(()) => see_other("/admin/coupons"),
        Err(Ok(msg)) => {
            list_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(msg),
                &fields,
            )
            .await
        }
        Err(Err(e)) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

fn code_or_404(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    code: &str,
) -> Result<CouponCode, Response> {
    CouponCode::parse(code)
        .map_err(|_| super::message(state, ctx, Some(admin), StatusCode::NOT_FOUND, "not_found"))
}

pub async fn edit(State(state): St, Path(code): Path<String>, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let code = match code_or_404(&state, &ctx, &admin, &code) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    edit_page(&state, &ctx, &admin, StatusCode::OK, None, &code, None).await
}

pub async fn update(State(state): St, Path(code): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let code = match code_or_404(&state, &ctx, &admin, &code) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    // The edit form sends every setting: a full replacement (the code stays).
    let changes = parse_form(&fields).map(|f| CouponChanges {
        kind: Some(f.kind),
        value: Some(f.value),
        currency: Some(f.currency),
        products: Some(f.products),
        valid_from: Some(f.valid_from),
        valid_to: Some(f.valid_to),
        max_uses: Some(f.max_uses),
        once_per_email: Some(f.once_per_email),
        min_amount: Some(f.min_amount),
        enabled: Some(f.enabled),
    });
    let result = match changes.and_then(coupons::parse_changes) {
        Ok(patch) => coupons::update(&state, &code, patch, &actor(&admin, &ctx))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match result.map_err(refusal) {
        Ok(()) => see_other("/admin/coupons"),
        Err(Ok(msg)) => {
            edit_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(msg),
                &code,
                Some(&fields),
            )
            .await
        }
        Err(Err(e)) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

pub async fn delete(State(state): St, Path(code): Path<String>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let code = match code_or_404(&state, &ctx, &admin, &code) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match coupons::remove(&state, &code, &actor(&admin, &ctx)).await {
        Ok(_) => see_other("/admin/coupons"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
