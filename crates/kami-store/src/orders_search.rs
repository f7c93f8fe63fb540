//! The seller's order search: newest first by creation (the row id: order numbers sort by
//! second only, then by their random part), exact-match filters, cursor paging by order
//! number. SQL is static, so each query names one *driving* predicate the planner can answer
//! from an index (migration 0013: `(column, id)` indexes that also give the order), and
//! carries every other filter as a residual `($n = '' OR …)` test on the rows it visits.
//! The creation-time range is written `+o.created_at` when it is residual so that neither
//! planner trades the driving index (and its order) for a range scan.

use kami_core::{Millis, OrderStatus};

use crate::db::{Tx, Value};
use crate::error::Result;
use crate::model::{Order, OrderFilter, OrderQuery};
use crate::orders::order_from_row;
use crate::params;
use crate::sealed::Keyring;

/// One search statement: `$prefix` (empty, or the backend's EXPLAIN), the driving predicate
/// (ending in `AND`, or empty), the residual filters in fixed parameter positions.
macro_rules! search_sql {
    ($prefix:expr, $driver:expr, $created:expr) => {
        concat!(
            $prefix,
            order_columns!(),
            "WHERE ",
            $driver,
            " ($1 = '' OR o.order_no = $1) AND ($2 = '' OR o.email = $2) \
             AND (o.id = $3 OR $3 = CAST(0 AS BIGINT)) \
             AND ($4 = '' OR o.status = $4) AND ($5 = '' OR o.channel_id = $5) \
             AND ($6 = '' OR o.method = $6) \
             AND (o.product_id = $7 OR $7 = CAST(0 AS BIGINT)) ",
            $created,
            " AND o.id < $10 ORDER BY o.id DESC LIMIT $11"
        )
    };
}

/// The index-backed predicate a search is driven by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    OrderNo,
    Email,
    GatewayTradeNo,
    Status,
    Product,
    Created,
    Channel,
    Method,
    /// No filter: the primary key, backwards.
    Newest,
}

macro_rules! statements {
    ($prefix:expr) => {
        [
            search_sql!(
                $prefix,
                "o.order_no = $1 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "o.email = $2 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "o.id = $3 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "o.status = $4 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "o.product_id = $7 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!($prefix, "", "AND o.created_at >= $8 AND o.created_at < $9"),
            search_sql!(
                $prefix,
                "o.channel_id = $5 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "o.method = $6 AND",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
            search_sql!(
                $prefix,
                "",
                "AND +o.created_at >= $8 AND +o.created_at < $9"
            ),
        ]
    };
}

const SEARCH: [&str; 9] = statements!("");
const EXPLAIN_SQLITE: [&str; 9] = statements!("EXPLAIN QUERY PLAN ");
const EXPLAIN_POSTGRES: [&str; 9] = statements!("EXPLAIN ");

impl Driver {
    /// The most selective filter present drives: a search-box match, then status (the
    /// "needs action" views ask for rare ones), product, the creation range, channel, method.
    pub(crate) fn of(f: &OrderFilter) -> Driver {
        match (&f.query, f.status, &f.product) {
            (Some(OrderQuery::OrderNo(_)), ..) => Driver::OrderNo,
            (Some(OrderQuery::Email(_)), ..) => Driver::Email,
            (Some(OrderQuery::GatewayTradeNo(_)), ..) => Driver::GatewayTradeNo,
            (None, Some(_), _) => Driver::Status,
            (None, None, Some(_)) => Driver::Product,
            // A wide range with a channel or method: their (key, id) index gives newest first
            // and stops at the page, where the range would be read whole and sorted.
            _ if (f.created_from.is_some() || f.created_before.is_some())
                && !(wide_range(f) && (f.channel.is_some() || f.method.is_some())) =>
            {
                Driver::Created
            }
            _ if f.channel.is_some() => Driver::Channel,
            _ if f.method.is_some() => Driver::Method,
            _ => Driver::Newest,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Ranges wider than this are not selective enough to drive a search that has a channel or
/// method to drive it instead.
const WIDE_RANGE_MS: i64 = 31 * 86_400_000;

fn wide_range(f: &OrderFilter) -> bool {
    match (f.created_from, f.created_before) {
        (Some(from), Some(before)) => before.saturating_sub(from) > WIDE_RANGE_MS,
        _ => true,
    }
}

/// The orders a gateway trade number names (one, but numbers of two channels may collide),
/// newest first, from the payments' index; the search then runs once for each.
const TRADE_ORDERS: &str = "SELECT DISTINCT order_id FROM payments WHERE gateway_trade_no = $1 \
     ORDER BY order_id DESC LIMIT 20";

/// The statement's parameters (`trade_order`: the order a gateway trade number named, else
/// 0); `None` when the filter cannot match anything (an unknown product or cursor).
fn parameters(tx: &mut dyn Tx, f: &OrderFilter, trade_order: i64) -> Result<Option<Vec<Value>>> {
    let product_id: i64 = match &f.product {
        None => 0,
        Some(slug) => match tx.query_opt(
            "SELECT id FROM products WHERE slug = $1",
            params![slug.as_str()],
        )? {
            Some(r) => r.get("id")?,
            None => return Ok(None),
        },
    };
    let before: i64 = match &f.before {
        None => i64::MAX,
        Some(no) => match tx.query_opt(
            "SELECT id FROM orders WHERE order_no = $1",
            params![no.as_str()],
        )? {
            Some(r) => r.get("id")?,
            None => return Ok(None),
        },
    };
    let (order_no, email) = match &f.query {
        Some(OrderQuery::OrderNo(no)) => (no.as_str(), ""),
        Some(OrderQuery::Email(e)) => ("", e.as_str()),
        None | Some(OrderQuery::GatewayTradeNo(_)) => ("", ""),
    };
    let from: Millis = f.created_from.unwrap_or(i64::MIN);
    let to: Millis = f.created_before.unwrap_or(i64::MAX);
    Ok(Some(
        params![
            order_no,
            email,
            trade_order,
            f.status.map_or("", OrderStatus::as_str),
            f.channel.as_ref().map_or("", |c| c.as_str()),
            f.method.as_ref().map_or("", |m| m.as_str()),
            product_id,
            from,
            to,
            before,
            i64::from(f.limit.clamp(1, MAX_PAGE)),
        ]
        .to_vec(),
    ))
}

/// The largest page a search returns.
pub const MAX_PAGE: u32 = 500;

pub(crate) fn list_orders(tx: &mut dyn Tx, ring: &Keyring, f: &OrderFilter) -> Result<Vec<Order>> {
    let trade_orders = match &f.query {
        Some(OrderQuery::GatewayTradeNo(t)) => {
            let rows = tx.query(TRADE_ORDERS, params![t.as_str()])?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            rows.iter()
                .map(|r| r.get::<i64>("order_id"))
                .collect::<Result<Vec<_>>>()?
        }
        _ => vec![0],
    };
    let sql = SEARCH[Driver::of(f).index()];
    let mut orders = Vec::new();
    for id in trade_orders {
        let Some(params) = parameters(tx, f, id)? else {
            return Ok(Vec::new());
        };
        for r in tx.query(sql, &params)? {
            orders.push(order_from_row(ring, &r)?);
        }
    }
    orders.truncate(f.limit.clamp(1, MAX_PAGE) as usize);
    Ok(orders)
}

/// The plan the backend would run for this search, one line per step (for the index tests);
/// a gateway trade number's lookup in payments comes first.
pub(crate) fn explain(tx: &mut dyn Tx, f: &OrderFilter) -> Result<Vec<String>> {
    let pg = tx.is_postgres();
    let column = if pg { "QUERY PLAN" } else { "detail" };
    let mut plan = Vec::new();
    if let Some(OrderQuery::GatewayTradeNo(t)) = &f.query {
        let sql = if pg {
            concat!(
                "EXPLAIN ",
                "SELECT DISTINCT order_id FROM payments WHERE gateway_trade_no = $1 \
     ORDER BY order_id DESC LIMIT 20"
            )
        } else {
            concat!(
                "EXPLAIN QUERY PLAN ",
                "SELECT DISTINCT order_id FROM payments WHERE gateway_trade_no = $1 \
     ORDER BY order_id DESC LIMIT 20"
            )
        };
        for r in tx.query(sql, params![t.as_str()])? {
            plan.push(r.get::<String>(column)?);
        }
    }
    // A named order stands in for whatever the trade number resolves to.
    let stand_in = i64::from(matches!(f.query, Some(OrderQuery::GatewayTradeNo(_))));
    let Some(params) = parameters(tx, f, stand_in)? else {
        return Ok(plan);
    };
    let i = Driver::of(f).index();
    let sql = if pg {
        EXPLAIN_POSTGRES[i]
    } else {
        EXPLAIN_SQLITE[i]
    };
    for r in tx.query(sql, &params)? {
        plan.push(r.get::<String>(column)?);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kami_core::ChannelId;

    const DAY: i64 = 86_400_000;

    fn filter(from: Option<i64>, before: Option<i64>, channel: bool) -> OrderFilter {
        OrderFilter {
            created_from: from,
            created_before: before,
            channel: channel.then(|| ChannelId::parse("alipay-main").unwrap()),
            limit: 50,
            ..OrderFilter::default()
        }
    }

    #[test]
    fn a_narrow_range_drives_a_wide_one_leaves_it_to_the_channel() {
        let at = 1_000 * DAY;
        assert_eq!(
            Driver::of(&filter(Some(at), Some(at + 7 * DAY), true)),
            Driver::Created
        );
        assert_eq!(
            Driver::of(&filter(Some(at), Some(at + 90 * DAY), true)),
            Driver::Channel
        );
        assert_eq!(
            Driver::of(&filter(Some(at), None, true)),
            Driver::Channel,
            "open-ended"
        );
        assert_eq!(
            Driver::of(&filter(Some(at), None, false)),
            Driver::Created,
            "nothing else to drive"
        );
    }
}
