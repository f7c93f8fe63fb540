//! Risk rules (`[risk]`, or as the console saved them: the settings in effect), shared by the JSON API and the product page's form: block lists,
//! the per-client order rate, the pending-order caps the store enforces, and the per-client
//! share of password hashing.

use std::net::IpAddr;

use kami_store::{PendingCaps, PendingScope, StoreError};

use super::{ServiceError, ServiceResult};
use crate::limits::{client_key_text, HashSlot, RetryAfter};
use crate::state::AppState;

/// May this client place an order for this (parsed, lower-case) email now? Block lists
/// first (`403 blocked`), then the per-minute rate (`429 rate_limited`).
pub fn admit_order(state: &AppState, ip: Option<IpAddr>, email: &str) -> ServiceResult<()> {
    let settings = state.settings();
    let risk = &settings.risk;
    if ip.is_some_and(|ip| risk.is_blocked_ip(ip)) || risk.is_blocked_email(email) {
        return Err(ServiceError::Blocked);
    }
    state
        .limits
        .allow_order(ip, state.now_ms())
        .map_err(|r| rate_limited("too many orders from this address; try again later", r))
}

/// The store's caps for an order from `ip`, and the key it is counted under.
pub fn pending_caps(state: &AppState, ip: Option<IpAddr>) -> (Option<String>, PendingCaps) {
    let settings = state.settings();
    let risk = &settings.risk;
    (
        ip.map(client_key_text),
        PendingCaps {
            per_client: Some(risk.max_pending_orders_per_ip),
            per_email: Some(risk.max_pending_orders_per_email),
        },
    )
}

/// The store refused an order at a pending cap: `429 too_many_pending_orders`, to retry when
/// the oldest of the pending orders expires.
pub fn pending_refusal(e: StoreError, now_ms: i64) -> ServiceError {
    match e {
        StoreError::TooManyPending {
            scope,
            oldest_expires_at,
        } => {
            let secs = (oldest_expires_at - now_ms).max(0) as u64;
            ServiceError::Limited {
                code: "too_many_pending_orders",
                message: match scope {
                    PendingScope::Client => {
                        "too many unpaid orders from this address; pay or wait for one to expire"
                    }
                    PendingScope::Email => {
                        "too many unpaid orders for this email; pay or wait for one to expire"
                    }
                }
                .into(),
                retry_after: secs.div_ceil(1000).max(1),
            }
        }
        other => other.into(),
    }
}

/// A turn to hash a password for this client (`429 rate_limited` beyond its share).
pub fn hash_slot(state: &AppState, ip: Option<IpAddr>) -> ServiceResult<HashSlot<'_>> {
    state.limits.hash_slot(ip, state.now_ms()).map_err(|r| {
        rate_limited(
            "too many password checks from this address; try again later",
            r,
        )
    })
}

/// `429 rate_limited` with this message.
pub fn rate_limited(message: &str, r: RetryAfter) -> ServiceError {
    ServiceError::Limited {
        code: "rate_limited",
        message: message.into(),
        retry_after: r.0,
    }
}
