//! The seller's coupons: list, create, edit, delete (disabled instead once orders used one).
//! Each field is parsed here on its own, the same way for the JSON API and the console;
//! whether the settings fit together (a fixed coupon's currency, the window) and every use
//! count are the store's, in the transaction that writes, which also writes the audit row.

use kami_core::{CouponCode, Currency, Millis, Slug};
use kami_store::{Actor, Coupon, CouponKind, CouponPatch, CouponRemoval, CouponSettings};
use serde::{Deserialize, Deserializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// At most this many products in one coupon's scope.
pub const MAX_PRODUCTS: usize = 200;

/// `Some(None)` for an explicit `null`, `None` when the key is absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/admin/coupons`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCouponInput {
    pub code: String,
    pub kind: String,
    /// Minor units (fixed) or basis points (percent).
    pub value: i64,
    pub currency: Option<String>,
    #[serde(default)]
    pub products: Vec<String>,
    /// RFC 3339.
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub max_uses: Option<i64>,
    #[serde(default)]
    pub once_per_email: bool,
    pub min_amount: Option<i64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/v1/admin/coupons/{code}`: absent keeps a setting, `null` clears an optional one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponChanges {
    pub kind: Option<String>,
    pub value: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub currency: Option<Option<String>>,
    pub products: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub valid_from: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub valid_to: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_uses: Option<Option<i64>>,
    pub once_per_email: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub min_amount: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid("invalid_coupon_settings", format!("{field}: {problem}"))
}

pub fn parse_code(code: &str) -> ServiceResult<CouponCode> {
    CouponCode::parse(code).map_err(|e| invalid("code", e))
}

fn parse_kind(kind: &str) -> ServiceResult<CouponKind> {
    CouponKind::parse(kind).ok_or_else(|| invalid("kind", "must be \"fixed\" or \"percent\""))
}

fn parse_currency(c: &str) -> ServiceResult<Currency> {
    Currency::parse(c).map_err(|e| invalid("currency", e))
}

fn parse_products(slugs: &[String]) -> ServiceResult<Vec<Slug>> {
    if slugs.len() > MAX_PRODUCTS {
        return Err(invalid("products", format!("at most {MAX_PRODUCTS}")));
    }
    let mut out: Vec<Slug> = Vec::with_capacity(slugs.len());
    for s in slugs {
        let slug = Slug::parse(s.trim()).map_err(|e| invalid("products", e))?;
        if !out.contains(&slug) {
            out.push(slug);
        }
    }
    Ok(out)
}

/// An RFC 3339 time (`2026-05-01T00:00:00+08:00`) as milliseconds.
pub fn parse_time(field: &str, s: &str) -> ServiceResult<Millis> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
        invalid(
            field,
            "expected an RFC 3339 time, e.g. 2026-05-01T00:00:00+08:00",
        )
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid(field, "out of range"))
}

fn parse_count(field: &str, n: i64) -> ServiceResult<i64> {
    if n < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    Ok(n)
}

pub fn parse_new(c: NewCouponInput) -> ServiceResult<(CouponCode, CouponSettings)> {
    let code = parse_code(&c.code)?;
    let settings = CouponSettings {
        kind: parse_kind(&c.kind)?,
        value: c.value,
        currency: c.currency.as_deref().map(parse_currency).transpose()?,
        products: parse_products(&c.products)?,
        valid_from: c
            .valid_from
            .as_deref()
            .map(|s| parse_time("valid_from", s))
            .transpose()?,
        valid_to: c
            .valid_to
            .as_deref()
            .map(|s| parse_time("valid_to", s))
            .transpose()?,
        max_uses: c.max_uses.map(|n| parse_count("max_uses", n)).transpose()?,
        once_per_email: c.once_per_email,
        min_amount: c
            .min_amount
            .map(|n| parse_count("min_amount", n))
            .transpose()?,
        enabled: c.enabled,
    };
    settings
        .rules()
        .map_err(|e| ServiceError::invalid("invalid_coupon_settings", e))?;
    Ok((code, settings))
}

pub fn parse_changes(c: CouponChanges) -> ServiceResult<CouponPatch> {
    let time = |field: &'static str, v: Option<Option<String>>| -> ServiceResult<_> {
        v.map(|o| o.as_deref().map(|s| parse_time(field, s)).transpose())
            .transpose()
    };
    Ok(CouponPatch {
        kind: c.kind.as_deref().map(parse_kind).transpose()?,
        value: c.value,
        currency: c
            .currency
            .map(|o| o.as_deref().map(parse_currency).transpose())
            .transpose()?,
        products: c.products.as_deref().map(parse_products).transpose()?,
        valid_from: time("valid_from", c.valid_from)?,
        valid_to: time("valid_to", c.valid_to)?,
        max_uses: c
            .max_uses
            .map(|o| o.map(|n| parse_count("max_uses", n)).transpose())
            .transpose()?,
        once_per_email: c.once_per_email,
        min_amount: c
            .min_amount
            .map(|o| o.map(|n| parse_count("min_amount", n)).transpose())
            .transpose()?,
        enabled: c.enabled,
    })
}

pub async fn list(state: &AppState) -> ServiceResult<Vec<Coupon>> {
    Ok(state.store.coupons().await?)
}

pub async fn get(state: &AppState, code: &CouponCode) -> ServiceResult<Coupon> {
    Ok(state.store.coupon(code).await?)
}

#[tracing::instrument(level = "debug", skip_all, fields(coupon = %code))]
pub async fn create(
    state: &AppState,
    code: &CouponCode,
    settings: CouponSettings,
    actor: &Actor,
) -> ServiceResult<Coupon> {
    Ok(state
        .store
        .create_coupon(code, settings, actor, state.now_ms())
        .await?)
}

#[tracing::instrument(level = "debug", skip_all, fields(coupon = %code))]
pub async fn update(
    state: &AppState,
    code: &CouponCode,
    patch: CouponPatch,
    actor: &Actor,
) -> ServiceResult<Coupon> {
    Ok(state
        .store
        .update_coupon(code, patch, actor, state.now_ms())
        .await?)
}

#[tracing::instrument(level = "debug", skip_all, fields(coupon = %code))]
pub async fn remove(
    state: &AppState,
    code: &CouponCode,
    actor: &Actor,
) -> ServiceResult<CouponRemoval> {
    Ok(state
        .store
        .remove_coupon(code, actor, state.now_ms())
        .await?)
}
