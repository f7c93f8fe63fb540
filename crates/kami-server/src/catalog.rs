//! The catalogue as pages show it, cached for a moment: the storefront's hottest reads do
//! not each scan stock, and seller Markdown is rendered once per change, not per view.
//! Stock shown may lag by up to [`TTL`]; order creation is what counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kami_store::{Delivery, Product, Stock, Store, StoreError};
use serde::Serialize;

use crate::markup::markdown;
use crate::theme::format_money;

pub const TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct ProductView {
    pub slug: String,
    pub title: String,
    pub category: String,
    pub description_html: String,
    pub price: String,
    pub price_minor: i64,
    pub currency: String,
    /// Digits after the decimal point of the currency (2 for CNY, 0 for JPY).
    pub currency_exp: u32,
    /// `in_stock`, `low` or `sold_out`.
    pub stock_state: &'static str,
    /// Keys left, when counted (auto delivery) and low.
    pub stock_left: Option<i64>,
    pub unlimited: bool,
    pub manual: bool,
    pub min_quantity: u32,
    pub max_quantity: u32,
    /// Wholesale tiers: `{min, price}` with formatted unit prices.
    pub tiers: Vec<TierView>,
    /// `"5:1100,10:990"` for the page script's live total.
    pub tiers_data: String,
    /// Lowest unit price when tiers exist ("from ¥9.90").
    pub from_price: Option<String>,
    /// What the product asks the buyer (label, required, pattern), for the order form.
    pub input_fields: Vec<kami_core::FieldSpec>,
    /// The picture's media file name (served by kami at `/media/<name>`) and its
    /// thumbnail's, for the catalogue.
    pub image: Option<String>,
    pub thumb: Option<String>,
    /// The price and the product's own prices in other currencies: which methods can charge
    /// it (`Channels::methods_for`).
    #[serde(skip)]
    pub money: kami_core::Money,
    #[serde(skip)]
    pub own_prices: kami_core::OwnPrices,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierView {
    pub min: u32,
    pub price: String,
}

#[derive(Default)]
pub struct CatalogCache {
    cached: Mutex<Option<(Instant, Arc<Vec<ProductView>>)>>,
}

impl CatalogCache {
    pub async fn products(
        &self,
        store: &Store,
        low_threshold: u32,
    ) -> Result<Arc<Vec<ProductView>>, StoreError> {
        if let Some((at, list)) = &*self.lock() {
            if at.elapsed() < TTL {
                return Ok(list.clone());
            }
        }
        let list: Arc<Vec<ProductView>> = Arc::new(
            store
                .list_products()
                .await?
                .iter()
                .map(|p| view(p, low_threshold))
                .collect(),
        );
        *self.lock() = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// A seller changed the catalogue: show it at once.
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Vec<ProductView>>)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn view(p: &Product, low_threshold: u32) -> ProductView {
    let (stock_state, stock_left, unlimited) = match p.stock {
        Stock::Unlimited => ("in_stock", None, true),
        // Fewer than the smallest order allowed is as good as none.
        Stock::Count(n) if n <= 0 || n < p.pricing.min_quantity().into() => {
            ("sold_out", Some(n.max(0)), false)
        }
        Stock::Count(n) if n <= i64::from(low_threshold) => ("low", Some(n), false),
        Stock::Count(n) => ("in_stock", Some(n), false),
    };
    let pricing = &p.pricing;
    let cur = p.price.currency();
    let tiers: Vec<TierView> = pricing
        .tiers()
        .tiers()
        .iter()
        .filter_map(|t| {
            Some(TierView {
                min: t.min_quantity(),
                price: format_money(kami_core::Money::new(t.unit_minor(), cur).ok()?),
            })
        })
        .collect();
    let lowest = pricing
        .tiers()
        .tiers()
        .iter()
        .map(|t| t.unit_minor())
        .filter(|m| *m < p.price.minor())
        .min();
    // A stock count caps what can be ordered at once.
    let max_quantity = match stock_left {
        Some(n) if n > 0 && !unlimited => pricing.max_quantity().min(n as u32),
        _ => pricing.max_quantity(),
    };
    ProductView {
        slug: p.slug.to_string(),
        title: p.title.clone(),
        category: p.category.clone(),
        description_html: markdown(&p.description),
        price: format_money(p.price),
        money: p.price,
        own_prices: p.prices.clone(),
        price_minor: p.price.minor(),
        currency: cur.code().to_owned(),
        currency_exp: cur.exponent(),
        stock_state,
        stock_left,
        unlimited,
        manual: p.delivery == Delivery::Manual,
        min_quantity: pricing.min_quantity(),
        max_quantity: max_quantity.max(pricing.min_quantity()),
        tiers,
        tiers_data: pricing.tiers().to_string(),
        from_price: lowest.and_then(|m| kami_core::Money::new(m, cur).ok().map(format_money)),
        input_fields: p.input_fields.specs().to_vec(),
        image: p.image.clone(),
        thumb: p.image_thumb.clone().or_else(|| p.image.clone()),
    }
}
