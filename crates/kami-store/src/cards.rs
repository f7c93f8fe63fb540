//! Card-key stock moves for orders: reserve, sell, release. Each runs kami-core's
//! [`CardStatus::on`] and is a compare-and-set on the status the event starts from, so a key
//! is never reserved by two orders or sold twice.

use kami_core::{CardEvent, CardStatus, Millis};

use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// The (from, to) statuses of a card event, as the state machine decides them.
fn transition(event: CardEvent) -> Result<(CardStatus, CardStatus)> {
    let from = event.from_status();
    Ok((from, from.on(event)?))
}

/// Reserve up to `n` available keys of a product for an order; returns how many were taken.
/// PostgreSQL skips rows other transactions are claiming instead of waiting on them; on
/// SQLite the single writer makes the same statement race-free.
pub(crate) fn reserve(tx: &mut dyn Tx, order_id: i64, product_id: i64, n: i64) -> Result<u64> {
    let (from, to) = transition(CardEvent::Reserve)?;
    if n == 1 && !tx.is_postgres() {
        // One key (most orders): SQLite would build temporary tables for the CTE and the IN.
        return tx.exec(
            "UPDATE cards SET status = $4, order_id = $1 WHERE id = \
               (SELECT id FROM cards WHERE product_id = $2 AND status = $3 AND is_loop = 0 \
                ORDER BY id LIMIT 1) AND status = $3",
            params![order_id, product_id, from, to],
        );
    }
    tx.exec(
        "WITH picked AS (SELECT id FROM cards WHERE product_id = $2 AND status = $4 AND is_loop = 0 \
                         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE cards SET status = $5, order_id = $1 \
         WHERE id IN (SELECT id FROM picked) AND status = $4",
        params![order_id, product_id, n, from, to],
    )
}

/// The paid order's reserved keys become the buyer's; returns how many.
pub(crate) fn sell(tx: &mut dyn Tx, order_id: i64, now: Millis) -> Result<u64> {
    let (from, to) = transition(CardEvent::Sell)?;
    tx.exec(
        "UPDATE cards SET status = $3, sold_at = $2 WHERE order_id = $1 AND status = $4",
        params![order_id, now, to, from],
    )
}

/// Return an order's reserved (unsold) keys to stock.
pub(crate) fn release(tx: &mut dyn Tx, order_id: i64) -> Result<u64> {
    let (from, to) = transition(CardEvent::Release)?;
    tx.exec(
        "UPDATE cards SET status = $2, order_id = NULL WHERE order_id = $1 AND status = $3",
        params![order_id, to, from],
    )
}
