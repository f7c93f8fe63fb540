//! Products and card-key stock.

use kami_core::{CardStatus, InputFields, Millis, Money, OwnPrices, PriceTiers, Pricing};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{
    AdminProduct, CardCounts, Delivery, ImportResult, NewProduct, OpenBatch, Product, Stock,
};
use crate::params;
use crate::sealed::{card_place, Keyring};

pub(crate) fn create_product(tx: &mut dyn Tx, p: &NewProduct, now: Millis) -> Result<()> {
    let prices = OwnPrices::new(p.prices.clone(), p.price.currency())
        .map_err(|e| StoreError::InvalidPricing(e.to_string()))?;
    let inserted = tx.exec(
        "INSERT INTO products (slug, title, description, price, currency, delivery, manual_stock, created_at, \
           category, sort_order, min_quantity, max_quantity, price_tiers, prices) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (slug) DO NOTHING",
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
            p.tiers.to_string(),
            prices.to_string()
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::ProductExists);
    }
    // A category named for the first time joins the catalogue's groups, last.
    crate::categories::ensure(tx, &p.category, now)?;
    Ok(())
}

/// The columns every product read selects (`product_from_row` reads them by name). The
/// storefront's hottest query: `'available'` ([`CardStatus::Available`]) stays a literal so
/// the planner sees it.
macro_rules! product_fields {
    () => {
        "p.slug, p.title, p.description, p.price, p.currency, p.delivery, p.manual_stock, \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.status = 'available' AND c.is_loop = 0) AS available, \
           (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.is_loop = 1) AS loop_cards, \
           p.category, p.sort_order, p.min_quantity, p.max_quantity, p.price_tiers, p.input_fields, \
           p.image, p.image_thumb, p.prices"
    };
}
macro_rules! product_columns {
    () => {
        concat!("SELECT ", product_fields!(), " FROM products p ")
    };
}
/// [`product_columns`] and what the seller sees besides: visibility, the keys by status, and
/// whether any order points at the product.
macro_rules! admin_product_columns {
    () => {
        concat!(
            "SELECT ",
            product_fields!(),
            ", p.active, \
               (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.status = 'reserved') AS reserved, \
               (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id AND c.status = 'sold') AS sold, \
               (SELECT COUNT(*) FROM (SELECT 1 FROM orders o WHERE o.product_id = p.id LIMIT 1) x) AS has_orders \
             FROM products p "
        )
    };
}

fn product_from_row(r: &Row) -> Result<Product> {
    let delivery: Delivery = r.get("delivery")?;
    let stock = match delivery {
        Delivery::Manual => r
            .get::<Option<i64>>("manual_stock")?
            .map_or(Stock::Unlimited, Stock::Count),
        Delivery::Auto if r.get::<i64>("loop_cards")? > 0 => Stock::Unlimited,
        Delivery::Auto => Stock::Count(r.get("available")?),
    };
    let price = r.money("price", "currency")?;
    Ok(Product {
        slug: r.get("slug")?,
        title: r.get("title")?,
        description: r.get("description")?,
        price,
        delivery,
        stock,
        category: r.get("category")?,
        sort_order: r.get("sort_order")?,
        pricing: pricing_from(
            price,
            &r.get::<String>("price_tiers")?,
            r.get("min_quantity")?,
            r.get("max_quantity")?,
        )?,
        input_fields: InputFields::from_json(&r.get::<String>("input_fields")?)
            .map_err(|e| StoreError::Corrupt(format!("product input fields: {e}")))?,
        image: r.get("image")?,
        image_thumb: r.get("image_thumb")?,
        prices: crate::charges::own_prices(r, price.currency())?,
    })
}

fn admin_product_from_row(r: &Row) -> Result<AdminProduct> {
    let product = product_from_row(r)?;
    Ok(AdminProduct {
        visible: r.get("active")?,
        manual_stock: match product.delivery {
            Delivery::Manual => r.get("manual_stock")?,
            Delivery::Auto => None,
        },
        cards: CardCounts {
            available: r.get("available")?,
            reserved: r.get("reserved")?,
            sold: r.get("sold")?,
            loop_keys: r.get("loop_cards")?,
        },
        has_orders: r.get::<i64>("has_orders")? > 0,
        product,
    })
}

/// The storefront's order: groups in their order (products without one last), then the
/// products' own order within each group.
macro_rules! catalogue_order {
    ($where:literal) => {
        concat!(
            "LEFT JOIN categories cat ON cat.name = p.category ",
            $where,
            " ORDER BY CASE WHEN cat.id IS NULL THEN 1 ELSE 0 END, cat.sort_order, cat.id, \
               p.sort_order, p.id"
        )
    };
}

/// Every product, hidden ones too, in catalogue order.
pub(crate) fn admin_products(tx: &mut dyn Tx) -> Result<Vec<AdminProduct>> {
    tx.query(concat!(admin_product_columns!(), catalogue_order!("")), &[])?
        .iter()
        .map(admin_product_from_row)
        .collect()
}

pub(crate) fn admin_product(tx: &mut dyn Tx, slug: &str) -> Result<AdminProduct> {
    tx.query_opt(
        concat!(admin_product_columns!(), "WHERE p.slug = $1"),
        params![slug],
    )?
    .as_ref()
    .map(admin_product_from_row)
    .transpose()?
    .ok_or(StoreError::ProductNotFound)
}

pub(crate) fn pricing_from(price: Money, tiers: &str, min: i64, max: i64) -> Result<Pricing> {
    let corrupt = |e: kami_core::PricingError| StoreError::Corrupt(format!("product pricing: {e}"));
    Pricing::new(price, PriceTiers::parse(tiers).map_err(corrupt)?, min, max).map_err(corrupt)
}

pub(crate) fn list_products(tx: &mut dyn Tx) -> Result<Vec<Product>> {
    tx.query(
        concat!(product_columns!(), catalogue_order!("WHERE p.active = 1")),
        &[],
    )?
    .iter()
    .map(product_from_row)
    .collect()
}

pub(crate) fn product_by_slug(tx: &mut dyn Tx, slug: &str) -> Result<Option<Product>> {
    tx.query_opt(
        concat!(product_columns!(), "WHERE p.slug = $1 AND p.active = 1"),
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
    Ok((r.get("id")?, r.get("delivery")?))
}

/// Insert keys sealed (`sealed.rs`) into an import batch, skipping any the product already
/// has: de-duplicated by the unique index on the keyed hash, and, while a key rotation has left
/// keys under another key of the ring, by their hashes under that key. The batch's counts
/// move in the same transaction.
pub(crate) fn import_cards(
    tx: &mut dyn Tx,
    ring: &Keyring,
    batch: &OpenBatch,
    keys: &[String],
    now: Millis,
) -> Result<ImportResult> {
    let mut res = ImportResult::default();
    let product_id = batch.product_id;
    let place = card_place(product_id);
    for k in keys {
        let hashes = ring.hashes(&place, k.as_bytes());
        let mut known = false;
        for h in hashes.iter().skip(1) {
            known |= tx
                .query_opt(
                    "SELECT id FROM cards WHERE product_id = $1 AND secret_hash = $2",
                    params![product_id, h.clone()],
                )?
                .is_some();
        }
        if known {
            res.duplicates += 1;
            continue;
        }
        let hash = hashes.into_iter().next().unwrap_or_default();
        let n = tx.exec(
            "INSERT INTO cards (product_id, secret, secret_hash, is_loop, status, created_at, batch_id) \
             VALUES ($1, $2, $6, $3, $5, $4, $7) ON CONFLICT (product_id, secret_hash) DO NOTHING",
            params![
                product_id,
                ring.seal(&place, k.as_bytes())?,
                batch.is_loop,
                now,
                CardStatus::Available,
                hash,
                batch.id
            ],
        )?;
        if n == 1 {
            res.imported += 1;
        } else {
            res.duplicates += 1;
        }
    }
    if !keys.is_empty() {
        tx.exec(
            "UPDATE card_batches SET imported = imported + $2, duplicates = duplicates + $3 WHERE id = $1",
            params![
                batch.id,
                i64::try_from(res.imported).unwrap_or(i64::MAX),
                i64::try_from(res.duplicates).unwrap_or(i64::MAX)
            ],
        )?;
    }
    Ok(res)
}
