//! The seller's catalogue: listing every product (hidden ones too), editing one, deleting
//! (or hiding) one. What a field means on its own is parsed here, the same way for creating
//! and editing; what depends on the product's current row (price in its currency, tiers and
//! limits together) the store checks in the transaction that writes. The JSON API and the
//! console both come here; each change is audited by the store.

use kami_core::money::MAX_MINOR;
use std::collections::BTreeMap;

use kami_core::{Currency, FieldSpec, InputFields, Money, OwnPrices, PriceTiers, Pricing, Slug};
use kami_store::{
    Actor, AdminProduct, Delivery, Direction, NewProduct, ProductPatch, ProductRemoval,
};
use serde::Deserialize;

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// Longest title and category, in characters; longest description, in bytes.
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_CATEGORY_CHARS: usize = 60;
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Catalogue positions stay within this (either sign).
pub const MAX_SORT_ORDER: i64 = 1_000_000_000;

/// A wholesale tier: from `min_quantity` pieces on, `price` per piece (minor units).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierInput {
    pub min_quantity: i64,
    pub price: i64,
}

/// `PATCH /api/v1/admin/products/{slug}`: any of these; absent (or null) keeps the value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChanges {
    pub title: Option<String>,
    pub price: Option<i64>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub visible: Option<bool>,
    pub tiers: Option<Vec<TierInput>>,
    pub min_quantity: Option<i64>,
    pub max_quantity: Option<i64>,
    pub sort_order: Option<i64>,
    pub input_fields: Option<Vec<FieldSpec>>,
    /// Replaces the own prices in other currencies: `{"USD": 999}` (minor units); `{}`: none.
    pub prices: Option<BTreeMap<String, i64>>,
}

pub fn parse_title(title: &str) -> ServiceResult<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ServiceError::invalid(
            "invalid_title",
            format!("title must be 1 to {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(title.to_owned())
}

pub fn parse_description(description: String) -> ServiceResult<String> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ServiceError::invalid(
            "invalid_description",
            "description is longer than 64 KiB",
        ));
    }
    Ok(description)
}

pub fn parse_category(category: &str) -> ServiceResult<String> {
    let category = category.trim();
    if category.chars().count() > MAX_CATEGORY_CHARS {
        return Err(ServiceError::invalid(
            "invalid_category",
            format!("category must be at most {MAX_CATEGORY_CHARS} characters"),
        ));
    }
    Ok(category.to_owned())
}

pub fn parse_tiers(tiers: &[TierInput]) -> ServiceResult<PriceTiers> {
    PriceTiers::new(tiers.iter().map(|t| (t.min_quantity, t.price)).collect())
        .map_err(|e| ServiceError::invalid("invalid_tiers", e.to_string()))
}

/// A price in minor units: whether it fits the product's currency the store says.
fn parse_price(price: i64) -> ServiceResult<i64> {
    if !(0..=MAX_MINOR).contains(&price) {
        return Err(ServiceError::invalid(
            "invalid_price",
            format!("price must be between 0 and {MAX_MINOR} minor units"),
        ));
    }
    Ok(price)
}

/// A place in a list (products, categories): at most `MAX_SORT_ORDER` either way.
pub(crate) fn parse_sort_order(n: i64) -> ServiceResult<i64> {
    if n.abs() > MAX_SORT_ORDER {
        return Err(ServiceError::invalid(
            "invalid_sort_order",
            format!("sort_order must be between -{MAX_SORT_ORDER} and {MAX_SORT_ORDER}"),
        ));
    }
    Ok(n)
}

pub fn parse_input_fields(specs: Vec<FieldSpec>) -> ServiceResult<InputFields> {
    InputFields::new(specs)
        .map_err(|e| ServiceError::invalid("invalid_input_fields", e.to_string()))
}

/// Every field of `c` parsed; the first bad one is the error (nothing is changed).
pub fn parse_changes(c: ProductChanges) -> ServiceResult<ProductPatch> {
    Ok(ProductPatch {
        title: c.title.as_deref().map(parse_title).transpose()?,
        price: c.price.map(parse_price).transpose()?,
        description: c.description.map(parse_description).transpose()?,
        category: c.category.as_deref().map(parse_category).transpose()?,
        visible: c.visible,
        tiers: c.tiers.as_deref().map(parse_tiers).transpose()?,
        min_quantity: c.min_quantity,
        max_quantity: c.max_quantity,
        sort_order: c.sort_order.map(parse_sort_order).transpose()?,
        input_fields: c.input_fields.map(parse_input_fields).transpose()?,
        prices: c.prices.as_ref().map(parse_prices).transpose()?,
    })
}

/// `{"USD": 999, "JPY": 1500}`: a product's own unit prices in other currencies, minor
/// units. Whether one is in the product's own currency the store says (it knows it).
pub fn parse_prices(prices: &BTreeMap<String, i64>) -> ServiceResult<Vec<Money>> {
    prices
        .iter()
        .map(|(code, minor)| {
            let c = Currency::parse(code.trim())
                .map_err(|e| ServiceError::invalid("invalid_prices", e.to_string()))?;
            if *minor <= 0 || *minor > MAX_MINOR {
                return Err(ServiceError::invalid(
                    "invalid_prices",
                    format!("the {c} price must be between 1 and {MAX_MINOR} minor units"),
                ));
            }
            Money::new(*minor, c)
                .map_err(|e| ServiceError::invalid("invalid_prices", e.to_string()))
        })
        .collect()
}

pub async fn list(state: &AppState) -> ServiceResult<Vec<AdminProduct>> {
    Ok(state.store.admin_products().await?)
}

/// Apply a seller's changes; the buyer's catalogue shows them at once and the next order is
/// charged the new price (pending orders keep theirs).
#[tracing::instrument(level = "debug", skip_all, fields(product = %slug))]
pub async fn update(
    state: &AppState,
    slug: &str,
    changes: ProductChanges,
    actor: &Actor,
) -> ServiceResult<AdminProduct> {
    let patch = parse_changes(changes)?;
    let p = state
        .store
        .update_product(slug, patch, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    Ok(p)
}

/// Delete a product without orders (and its unsold keys, and its picture unless another
/// product shows it), or hide one that has orders.
#[tracing::instrument(level = "debug", skip_all, fields(product = %slug))]
pub async fn remove(state: &AppState, slug: &str, actor: &Actor) -> ServiceResult<ProductRemoval> {
    let images = state
        .store
        .admin_product(slug)
        .await
        .map(|p| [p.product.image, p.product.image_thumb])
        .unwrap_or_default();
    let removal = state
        .store
        .remove_product(slug, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    if removal == ProductRemoval::Deleted {
        super::product_images::collect(state, images).await;
    }
    Ok(removal)
}

/// Far above any real stock, far below integer overflow in stock arithmetic.
pub const MAX_MANUAL_STOCK: i64 = 1_000_000_000;

/// `POST /api/v1/admin/products` (and the console's new-product form): a new product.
#[derive(Debug, Clone, Deserialize)]
pub struct NewProductInput {
    pub slug: String,
    pub title: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: String,
    /// `auto` (card keys) or `manual` (the seller fulfils each order).
    pub delivery: String,
    #[serde(default)]
    pub description: String,
    /// Manual products only: how many may be sold (absent = unlimited).
    pub stock: Option<i64>,
    /// Catalogue group shown on the storefront ("" = none; a new name creates the group).
    #[serde(default)]
    pub category: String,
    /// Position within its group, lower first.
    #[serde(default)]
    pub sort_order: i64,
    #[serde(default = "one")]
    pub min_quantity: i64,
    #[serde(default = "hundred")]
    pub max_quantity: i64,
    /// Wholesale tiers: `[{"min_quantity": 5, "price": 900}, ...]` (unit price, minor units).
    #[serde(default)]
    pub tiers: Vec<TierInput>,
    /// What the buyer is asked when ordering (manual products).
    #[serde(default)]
    pub input_fields: Vec<FieldSpec>,
    /// Listed in the catalogue and orderable (default true).
    #[serde(default = "yes")]
    pub visible: bool,
    /// Its own unit prices in other currencies, `{"USD": 999}` (minor units), charged by
    /// channels that cannot take `currency` before the `[fx]` rate table is asked.
    #[serde(default)]
    pub prices: BTreeMap<String, i64>,
}

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}
fn hundred() -> i64 {
    100
}

/// `/admin/products/new` is the console's form, so no product may be called that.
pub const RESERVED_SLUG: &str = "new";

/// Every field of a new product parsed; the first bad one is the error.
pub fn parse_new(b: NewProductInput) -> ServiceResult<(NewProduct, InputFields, bool)> {
    let slug =
        Slug::parse(&b.slug).map_err(|e| ServiceError::invalid("invalid_slug", e.to_string()))?;
    if slug.as_str() == RESERVED_SLUG {
        return Err(ServiceError::invalid(
            "invalid_slug",
            "\"new\" is the console's new-product page; choose another slug",
        ));
    }
    let title = parse_title(&b.title)?;
    let description = parse_description(b.description)?;
    let currency = Currency::parse(&b.currency)
        .map_err(|e| ServiceError::invalid("invalid_currency", e.to_string()))?;
    let price = Money::new(parse_price(b.price)?, currency)
        .map_err(|e| ServiceError::invalid("invalid_price", e.to_string()))?;
    let delivery = Delivery::parse(&b.delivery).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_delivery",
            "delivery must be \"auto\" or \"manual\"",
        )
    })?;
    let manual_stock =
        match (delivery, b.stock) {
            (Delivery::Auto, Some(_)) => return Err(ServiceError::invalid(
                "invalid_stock",
                "auto-delivery stock is the imported card keys; stock applies to manual products",
            )),
            (_, Some(n)) if !(0..=MAX_MANUAL_STOCK).contains(&n) => {
                return Err(ServiceError::invalid(
                    "invalid_stock",
                    format!("stock must be between 0 and {MAX_MANUAL_STOCK}"),
                ))
            }
            (_, s) => s,
        };
    let category = parse_category(&b.category)?;
    let tiers = parse_tiers(&b.tiers)?;
    let pricing = Pricing::new(price, tiers.clone(), b.min_quantity, b.max_quantity)
        .map_err(|e| ServiceError::invalid("invalid_pricing", e.to_string()))?;
    let input_fields = parse_input_fields(b.input_fields)?;
    let prices = parse_prices(&b.prices)?;
    OwnPrices::new(prices.clone(), currency)
        .map_err(|e| ServiceError::invalid("invalid_prices", e.to_string()))?;
    Ok((
        NewProduct {
            slug,
            title,
            description,
            price,
            delivery,
            manual_stock,
            category,
            sort_order: parse_sort_order(b.sort_order)?,
            tiers,
            min_quantity: i64::from(pricing.min_quantity()),
            max_quantity: i64::from(pricing.max_quantity()),
            prices,
        },
        input_fields,
        b.visible,
    ))
}

/// Create a product (`409 product_exists` when the slug is taken), audited; the catalogue
/// shows it at once.
#[tracing::instrument(level = "debug", skip_all, fields(product = %input.slug))]
pub async fn create(
    state: &AppState,
    input: NewProductInput,
    actor: &Actor,
) -> ServiceResult<AdminProduct> {
    let (p, fields, visible) = parse_new(input)?;
    let created = state
        .store
        .create_product_audited(p, fields, visible, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    Ok(created)
}

/// `up` or `down` (the console's buttons, the API's `direction`).
pub fn parse_direction(s: &str) -> ServiceResult<Direction> {
    match s {
        "up" => Ok(Direction::Up),
        "down" => Ok(Direction::Down),
        _ => Err(ServiceError::invalid(
            "invalid_direction",
            "direction must be \"up\" or \"down\"",
        )),
    }
}

/// Move a product one place up or down within its group (`409 cannot_move` when it already
/// is first or last). The storefront shows the new order at once.
pub async fn move_product(
    state: &AppState,
    slug: &str,
    dir: Direction,
    actor: &Actor,
) -> ServiceResult<AdminProduct> {
    let moved = state
        .store
        .move_product(slug, dir, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    if !moved {
        return Err(ServiceError::Conflict {
            code: "cannot_move",
            message: "the product is already at that end of its category".into(),
        });
    }
    Ok(state.store.admin_product(slug).await?)
}
