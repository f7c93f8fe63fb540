//! Outbox consumers: work written in the same transaction as a business change (an order
//! delivered, an alert) is picked up afterwards by a worker, which may fail and retry without
//! ever touching the change itself.
//!
//! A row is due while `done_at IS NULL AND available_at <= now`. Claiming moves `available_at`
//! to the end of the claimer's lease and counts the attempt, in the claiming transaction;
//! PostgreSQL skips rows another transaction is claiming (`FOR UPDATE SKIP LOCKED`) and the
//! update is a compare-and-set on the row still being due, so several processes never hold
//! the same row at once. A crashed worker's row becomes due again when its lease ends.
//!
//! After the work, the claimer marks the row done, reschedules it (with the error, and only if
//! nobody re-claimed it meanwhile: the attempt count is the lease token), or gives it up.

use kami_core::{Millis, OrderNo};

use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// Kind of the row written when an order is delivered (payload `{"order_no": …}`).
pub const ORDER_DELIVERED: &str = "order.delivered";
/// Kind of the row written when the seller fulfils a manual order (payload `{"order_no": …}`):
/// the buyer is mailed the content.
pub const ORDER_FULFILLED: &str = "order.fulfilled";

/// Longest error text kept on a row.
const MAX_ERROR_CHARS: usize = 500;

/// One claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    /// The order the row belongs to, if any.
    pub order_no: Option<OrderNo>,
    /// JSON written with the row (never secrets or card keys).
    pub payload: String,
    pub created_at: Millis,
    /// Attempts including this claim (1 on the first). Pass it back to
    /// [`crate::Store::reschedule_outbox`]: it identifies this claim.
    pub attempts: i64,
    /// The previous try's failure, if it failed.
    pub last_error: Option<String>,
}

/// Where an order's delivery mail stands (see [`crate::Store::mail_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailState {
    /// The mail server accepted the message at `at`, at try number `attempts`.
    Sent { at: Millis, attempts: i64 },
    /// Not sent yet: `attempts` tries so far (0 = not tried, e.g. no mail server is
    /// configured); the next one is due at `next_attempt_at` (while a try is running, the end
    /// of its lease). `last_error` is the latest failure — for the seller: it may quote the
    /// mail server, so a buyer-facing page should not show it.
    Pending {
        attempts: i64,
        next_attempt_at: Millis,
        last_error: Option<String>,
    },
    /// Given up at `at` (e.g. the mail stayed unsent for days); `error` says why.
    Failed { at: Millis, error: String },
}

/// Write a row in the caller's transaction: due at once.
pub(crate) fn insert(
    tx: &mut dyn Tx,
    kind: &str,
    order_id: i64,
    payload: String,
    now: Millis,
) -> Result<()> {
    tx.exec(
        "INSERT INTO outbox (kind, order_id, payload, created_at, available_at) VALUES ($1, $2, $3, $4, $4)",
        params![kind, order_id, payload, now],
    )?;
    Ok(())
}

pub(crate) fn claim(
    tx: &mut dyn Tx,
    kinds: &[String],
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<OutboxItem>> {
    let mut out = Vec::new();
    for kind in kinds {
        let left = i64::from(limit) - out.len() as i64;
        if left <= 0 {
            break;
        }
        let due = tx.query(
            "SELECT id FROM outbox WHERE kind = $1 AND done_at IS NULL AND available_at <= $2 \
             ORDER BY available_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
            params![kind.as_str(), now, left],
        )?;
        for r in &due {
            let id: i64 = r.get("id")?;
            // Compare-and-set: only a row that is still due is taken.
            if tx.exec(
                "UPDATE outbox SET available_at = $3, attempts = attempts + 1 \
                 WHERE id = $1 AND done_at IS NULL AND available_at <= $2",
                params![id, now, lease_until],
            )? != 1
            {
                continue;
            }
            let d = tx.query_one(
                "SELECT x.kind, x.payload, x.created_at, x.attempts, o.order_no, x.last_error \
                 FROM outbox x LEFT JOIN orders o ON o.id = x.order_id WHERE x.id = $1",
                params![id],
            )?;
            out.push(OutboxItem {
                id,
                kind: d.get("kind")?,
                payload: d.get("payload")?,
                created_at: d.get("created_at")?,
                attempts: d.get("attempts")?,
                order_no: d.get("order_no")?,
                last_error: d.get("last_error")?,
            });
        }
    }
    Ok(out)
}

/// The work succeeded. False if the row was already finished.
pub(crate) fn complete(tx: &mut dyn Tx, id: i64, now: Millis) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE outbox SET done_at = $2, last_error = NULL, gave_up = 0 WHERE id = $1 AND done_at IS NULL",
        params![id, now],
    )? == 1)
}

/// The work failed; try again at `next_at`. Only the claim that made `attempts` may do this
/// (false otherwise, or if the row is finished).
pub(crate) fn reschedule(
    tx: &mut dyn Tx,
    id: i64,
    attempts: i64,
    next_at: Millis,
    error: &str,
) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE outbox SET available_at = $3, last_error = $4 WHERE id = $1 AND attempts = $2 AND done_at IS NULL",
        params![id, attempts, next_at, clip(error)],
    )? == 1)
}

/// Finish the row without success. False if it was already finished.
pub(crate) fn give_up(tx: &mut dyn Tx, id: i64, now: Millis, error: &str) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE outbox SET done_at = $2, gave_up = 1, last_error = $3 WHERE id = $1 AND done_at IS NULL",
        params![id, now, clip(error)],
    )? == 1)
}

/// The newest `order.delivered` row of an order; `None` if it has none (not delivered, or
/// no such order).
/// A new mail row for a delivered or fulfilled order (the seller's "resend"); false for any
/// other status.
pub(crate) fn requeue_order_mail(tx: &mut dyn Tx, order_no: &str, now: Millis) -> Result<bool> {
    let Some(o) = tx.query_opt(
        "SELECT id, status FROM orders WHERE order_no = $1",
        params![order_no],
    )?
    else {
        return Err(crate::StoreError::OrderNotFound);
    };
    let kind = match o.get::<kami_core::OrderStatus>("status")? {
        kami_core::OrderStatus::Delivered => ORDER_DELIVERED,
        kami_core::OrderStatus::Fulfilled => ORDER_FULFILLED,
        _ => return Ok(false),
    };
    let payload = serde_json::json!({ "order_no": order_no, "resent": true });
    insert(tx, kind, o.get("id")?, payload.to_string(), now)?;
    Ok(true)
}

pub(crate) fn mail_state(tx: &mut dyn Tx, order_no: &str) -> Result<Option<MailState>> {
    let Some(r) = tx.query_opt(
        "SELECT x.done_at, x.gave_up, x.attempts, x.available_at, x.last_error \
         FROM outbox x JOIN orders o ON o.id = x.order_id \
         WHERE o.order_no = $1 AND x.kind IN ($2, $3) ORDER BY x.id DESC LIMIT 1",
        params![order_no, ORDER_DELIVERED, ORDER_FULFILLED],
    )?
    else {
        return Ok(None);
    };
    let last_error: Option<String> = r.get("last_error")?;
    let attempts: i64 = r.get("attempts")?;
    Ok(Some(match r.get::<Option<i64>>("done_at")? {
        Some(at) if r.get::<bool>("gave_up")? => MailState::Failed {
            at,
            error: last_error.unwrap_or_default(),
        },
        Some(at) => MailState::Sent { at, attempts },
        None => MailState::Pending {
            attempts,
            next_attempt_at: r.get("available_at")?,
            last_error,
        },
    }))
}

fn clip(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &error[..i]),
        None => error.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_clipped_on_a_char_boundary() {
        assert_eq!(super::clip("short"), "short");
        let long = "错".repeat(600);
        let c = super::clip(&long);
        assert_eq!(c.chars().count(), super::MAX_ERROR_CHARS + 1);
        assert!(c.ends_with('…'));
    }
}
