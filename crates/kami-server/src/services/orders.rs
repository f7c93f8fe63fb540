//! Reading an order as its buyer: the access token opens it, and a reader may wait (long-poll)
//! for the next change instead of asking again and again.

use std::time::Duration;

use kami_core::{OrderNo, SecretToken};
use kami_store::{Order, StoreError};

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// Longest long-poll a reader may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The order `order_no` if `presented` is its access token. Unknown numbers and wrong tokens
/// get the same answer, so the answer tells nothing about which orders exist.
pub async fn for_token(
    state: &AppState,
    order_no: &str,
    presented: &str,
) -> ServiceResult<(OrderNo, Order)> {
    let not_found = || {
        ServiceError::not_found(
            "order_not_found",
            "no such order, or the token does not match",
        )
    };
    let no = OrderNo::parse(order_no).map_err(|_| not_found())?;
    let order = state.store.order(&no).await?.ok_or_else(not_found)?;
    if !SecretToken::from_presented(presented).matches(&order.access_token_hash) {
        return Err(not_found());
    }
    Ok((no, order))
}

/// Wait up to `wait` (at most [`MAX_WAIT`]) while `unchanged(order)` holds, then return the
/// order as it is now. Subscribes first and re-reads, so a change committed between the
/// caller's read and the subscription is not missed.
pub async fn wait_while(
    state: &AppState,
    no: &OrderNo,
    mut order: Order,
    wait: Duration,
    unchanged: impl Fn(&Order) -> bool,
) -> Result<Order, StoreError> {
    let wait = wait.min(MAX_WAIT);
    if wait.is_zero() || !unchanged(&order) {
        return Ok(order);
    }
    let handle = state.watch.subscribe(no.as_str());
    let result = async {
        let notified = handle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(o) = state.store.order(no).await? {
            order = o;
        }
        if unchanged(&order) && tokio::time::timeout(wait, notified).await.is_ok() {
            if let Some(o) = state.store.order(no).await? {
                order = o;
            }
        }
        Ok(order)
    }
    .await;
    state.watch.unsubscribe(no.as_str(), handle);
    result
}
