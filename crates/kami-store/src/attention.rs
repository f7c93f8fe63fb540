//! What waits for the seller on the dashboard: orders that need a hand (exception,
//! awaiting fulfilment) and each product's stock, for the low-stock list.

use kami_core::{Millis, OrderStatus};

use crate::error::Result;
use crate::params;
use crate::Store;

/// An order that needs the seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOrder {
    pub order_no: String,
    pub status: OrderStatus,
    pub product_title: String,
    pub amount: i64,
    pub currency: String,
    pub created_at: Millis,
}

/// One product's stock, as the low-stock list needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub slug: String,
    pub title: String,
    /// `auto` or `manual`.
    pub delivery: String,
    /// Auto products: unsold single-use keys. Manual products: `manual_stock`.
    pub available: Option<i64>,
    /// A reusable (loop) key serves every order: never low.
    pub has_loop_key: bool,
}

impl Store {
    /// The oldest `limit` orders in `status` (index `orders_status_id`), and how many there are.
    pub async fn orders_in_status(
        &self,
        status: OrderStatus,
        limit: u32,
    ) -> Result<(i64, Vec<ActionOrder>)> {
        self.read(move |tx| {
            let total = tx
                .query_one(
                    "SELECT COUNT(*) AS n FROM orders WHERE status = $1",
                    params![status],
                )?
                .get("n")?;
            let list = tx
                .query(
                    "SELECT o.order_no, o.status, p.title, o.amount, o.currency, o.created_at \
                     FROM orders o JOIN products p ON p.id = o.product_id \
                     WHERE o.status = $1 ORDER BY o.id LIMIT $2",
                    params![status, limit],
                )?
                .iter()
                .map(|r| {
                    Ok(ActionOrder {
                        order_no: r.get("order_no")?,
                        status: r.get("status")?,
                        product_title: r.get("title")?,
                        amount: r.get("amount")?,
                        currency: r.get("currency")?,
                        created_at: r.get("created_at")?,
                    })
                })
                .collect::<Result<_>>()?;
            Ok((total, list))
        })
        .await
    }

    /// The stock of every product on sale (active), by title. Keys are counted on the
    /// `cards_claim` index.
    pub async fn stock_levels(&self) -> Result<Vec<StockLevel>> {
        self.read(|tx| {
            tx.query(
                "SELECT p.slug, p.title, p.delivery, p.manual_stock, \
                 (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id \
                   AND c.status = 'available' AND c.is_loop = 0) AS keys, \
                 (SELECT COUNT(*) FROM cards c WHERE c.product_id = p.id \
                   AND c.is_loop = 1) AS loops \
                 FROM products p WHERE p.active = 1 ORDER BY p.title, p.id",
                params![],
            )?
            .iter()
            .map(|r| {
                let delivery: String = r.get("delivery")?;
                let available = if delivery == "manual" {
                    r.get("manual_stock")?
                } else {
                    Some(r.get("keys")?)
                };
                Ok(StockLevel {
                    slug: r.get("slug")?,
                    title: r.get("title")?,
                    delivery,
                    available,
                    has_loop_key: r.get::<i64>("loops")? > 0,
                })
            })
            .collect()
        })
        .await
    }
}
