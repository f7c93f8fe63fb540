//! Finding an order again by its number or the buyer's email, plus the query password the
//! buyer chose. The answer takes the same work whatever exists: always exactly
//! [`CANDIDATES`] argon2 checks, so its timing tells nothing about which orders or emails
//! exist. Only paid orders are found by email (unpaid decoys cannot push a buyer's orders out).

use std::net::IpAddr;

use kami_core::{Email, OrderNo};
use kami_store::Order;

use super::{passwords, risk, ServiceError, ServiceResult};
use crate::state::AppState;

/// Orders checked per lookup (an email's newest paid orders with a query password).
pub const CANDIDATES: u32 = 5;

/// The longest search text: an email is at most 254 characters, an order number less.
pub const MAX_QUERY_CHARS: usize = 254;

/// The orders `q` (an order number or an email) names whose query password is `password`,
/// read in full (with their keys when delivered). The hashing counts against `ip`'s share
/// (`429 rate_limited` beyond it).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(
    state: &AppState,
    q: &str,
    password: String,
    ip: Option<IpAddr>,
) -> ServiceResult<Vec<Order>> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ServiceError::invalid(
            "query_too_long",
            format!("search text must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let _slot = risk::hash_slot(state, ip)?;
    let candidates: Vec<Order> = if let Ok(no) = OrderNo::parse(q) {
        state.store.order(&no).await?.into_iter().collect()
    } else if let Ok(email) = Email::parse(q) {
        state
            .store
            .orders_by_email(email.as_str(), CANDIDATES)
            .await?
    } else {
        Vec::new()
    };
    let matched = verify_all(password, candidates)
        .await
        .map_err(ServiceError::internal)?;
    // Lists leave the keys out: read each match in full.
    let mut found = Vec::new();
    for o in matched {
        let no = OrderNo::parse(o.order_no.as_str()).map_err(ServiceError::internal)?;
        if let Some(full) = state.store.order(&no).await? {
            found.push(full);
        }
    }
    Ok(found)
}

/// The orders whose query password is `password`. The same work whatever the candidates:
/// exactly [`CANDIDATES`] argon2 checks (off the async threads), the missing ones
/// against a dummy hash, so the time of an answer tells nothing about which orders or emails
/// exist. A password of impossible length is still hashed, and then refused.
async fn verify_all(password: String, candidates: Vec<Order>) -> Result<Vec<Order>, String> {
    let _permit = passwords::permit().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let len = password.chars().count();
        let plausible = (passwords::MIN_LEN..=passwords::MAX_LEN).contains(&len);
        // Hash at most MAX_LEN characters: a huge password must not cost more.
        let probe: String = password.chars().take(passwords::MAX_LEN).collect();
        let mut out = Vec::new();
        let mut checks = 0;
        for o in candidates.into_iter().take(CANDIDATES as usize) {
            let hash = o
                .query_password_hash
                .clone()
                .unwrap_or_else(|| passwords::dummy_hash().to_owned());
            checks += 1;
            let ok = passwords::verify_blocking(&probe, &hash);
            if ok && plausible && o.query_password_hash.is_some() {
                out.push(o);
            }
        }
        for _ in checks..CANDIDATES {
            passwords::verify_blocking(&probe, passwords::dummy_hash());
        }
        out
    })
    .await
    .map_err(|e| e.to_string())
}
