//! Products and card-key stock.

use kami_core::{Currency, Millis, Money, PriceTiers, Pricing};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{Delivery, ImportResult, NewProduct, Product, Stock};
use crate::params;

pub(crate) fn create_product(tx: &mut dyn Tx, p: &NewProduct, now: Millis) -> Result<()> {
    let inserted = tx.exec(
        "INSERT INTO products (slug, title, description, price, currency, delivery, manual_stock, created_at, \
           category, sort_order, min_quantity, max_quantity, price_tiers) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (slug) DO NOTHING",
        params![
            p.slug.as_str(),
            p.title.as_str(),
            p.description.as_str(),
            p.price.minor(),
            p.price.currency().code(),
            p.delivery.as_str(),
            p.manual_stock,
            now,
            p.category.as_str(),
            p.sort_order,
            p.min_quantity,
            p.max_quantity,
            p.tiers.to_string()
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::ProductExists);
    }
    Ok(())
}

fn product_from_row(r: &Row) -> Result<Product> {
    let delivery = Delivery::parse(&r.text(5)?)
        .ok_or_else(|| StoreError::Corrupt("unknown delivery kind".into()))?;
    let stock = match delivery {
        Delivery::Manual => r.opt_int(6)?.map_or(Stock::Unlimited, Stock::Count),
        Delivery::Auto if r.int(8)? > 0 => Stock::Unlimited,
        Delivery::Auto => Stock::Count(r.int(7)?),
    };
    let price = Money::new(r.int(3)?, Currency::parse(&r.text(4)?)?)?;
    Ok(Product {
        slug: r.text(0)?,
        title: r.text(1)?,
        description: r.text(2)?,
        price,
        delivery,
        stock,
        category: r.text(9)?,
        sort_order: r.int(10)?,
        pricing: pricing_from(price, &r.text(13)?, r.int(11)?, r.int(12)?)?,
    })
}

pub(crate) fn pricing_from(price: Money, tiers: &str, min: i64, max: i64) -> Result<Pricing> {
    let corrupt = |e: kami_core::PricingError| StoreError::Corrupt(format!("product pricing: {e}"));
    Pricing::new(price, PriceTiers::parse(tiers).map_err(corrupt)?, min, max).map_err(corrupt)
}

pub(crate) fn list_products(tx: &mut dyn Tx) -> Result<Vec<Product>> {
    tx.query(
        "SELECT p.slug, p.title, p.description, p.price, p.currency, p.delivery, p.manual_stock, \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.status = 'available' AND c.is_loop = 0), \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.is_loop = 1), \
           p.category, p.sort_order, p.min_quantity, p.max_quantity, p.price_tiers \
         FROM products p WHERE p.active = 1 ORDER BY p.sort_order, p.id",
        &[],
    )?
    .iter()
    .map(product_from_row)
    .collect()
}

pub(crate) fn product_by_slug(tx: &mut dyn Tx, slug: &str) -> Result<Option<Product>> {
    tx.query_opt(
        "SELECT p.slug, p.title, p.description, p.price, p.currency, p.delivery, p.manual_stock, \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.status = 'available' AND c.is_loop = 0), \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.is_loop = 1), \
           p.category, p.sort_order, p.min_quantity, p.max_quantity, p.price_tiers \
         FROM products p WHERE p.slug = $1 AND p.active = 1",
        params![slug],
    )?
    .as_ref()
    .map(product_from_row)
    .transpose()
}

pub(crate) fn product_id(tx: &mut dyn Tx, slug: &str) -> Result<(i64, Delivery)> {
    let r = tx
        .query_opt(
            "SELECT id, delivery FROM products WHERE slug = $1",
            params![slug],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let delivery = Delivery::parse(&r.text(1)?)
        .ok_or_else(|| StoreError::Corrupt("unknown delivery kind".into()))?;
    Ok((r.int(0)?, delivery))
}

/// Insert keys, skipping any the product already has (de-duplicated by the unique index).
pub(crate) fn import_cards(
    tx: &mut dyn Tx,
    product_id: i64,
    keys: &[String],
    is_loop: bool,
    now: Millis,
) -> Result<ImportResult> {
    let mut res = ImportResult::default();
    for k in keys {
        let n = tx.exec(
            "INSERT INTO cards (product_id, secret, is_loop, status, created_at) \
             VALUES ($1, $2, $3, 'available', $4) ON CONFLICT (product_id, secret) DO NOTHING",
            params![product_id, k.as_str(), is_loop, now],
        )?;
        if n == 1 {
            res.imported += 1;
        } else {
            res.duplicates += 1;
        }
    }
    Ok(res)
}
