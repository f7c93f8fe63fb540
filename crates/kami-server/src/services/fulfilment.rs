//! The seller finishing orders by hand: fulfilling a manual order with its content, and
//! delivering an exception order from stock once keys are back (补单). The store applies each
//! in one commit; the post-commit steps wake long-polling readers, the mail worker (for a
//! delivery) and refresh the catalogue's stock.

use kami_core::OrderNo;
use kami_store::{Actor, Order};

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// The longest fulfilment content, in characters.
pub const MAX_CONTENT_CHARS: usize = 10_000;

/// `awaiting_fulfilment` → `fulfilled` with `content` (trimmed, 1..=10,000 characters).
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn fulfil(
    state: &AppState,
    no: &OrderNo,
    content: &str,
    actor: &Actor,
) -> ServiceResult<Order> {
    let content = content.trim();
    if content.is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
        return Err(ServiceError::invalid(
            "invalid_content",
            format!("content must be 1 to {MAX_CONTENT_CHARS} characters"),
        ));
    }
    let order = state
        .store
        .fulfil_order(
            no,
            content,
            // The content itself stays out of the log: it may be an account's password.
            actor.entry(
                "order.fulfil",
                format!("order:{no}"),
                Some(serde_json::json!({ "status": "awaiting_fulfilment" })),
                Some(serde_json::json!({ "status": "fulfilled", "content_chars": content.chars().count() })),
            ),
            state.now_ms(),
        )
        .await?;
    state.watch.changed(no.as_str());
    Ok(order)
}

/// `exception` → `delivered`: the order's keys come from stock and the buyer is mailed.
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn deliver_exception(
    state: &AppState,
    no: &OrderNo,
    actor: &Actor,
) -> ServiceResult<Order> {
    let audit = actor.entry(
        "order.deliver",
        format!("order:{no}"),
        Some(serde_json::json!({ "status": "exception" })),
        Some(serde_json::json!({ "status": "delivered" })),
    );
    let order = state
        .store
        .deliver_exception(no, audit, state.now_ms())
        .await?;
    state.watch.changed(no.as_str());
    state.wake_mail();
    state.catalog.invalidate();
    Ok(order)
}
