//! The storefront: server-rendered pages (DESIGN 4.3 "Pages"), their theme, languages and
//! assets. Pages read and write through the same store and channels as the JSON API; they
//! work without JavaScript, and the page script adds live updates, the running total and
//! copy buttons.

pub mod catalog;
pub mod i18n;
pub mod markup;
mod pages;
pub mod request;
pub mod theme;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use i18n::Locale;
pub use theme::{Theme, ThemeError};

use crate::app::AppState;
use crate::config::ShopConfig;

/// Storefront state beyond the theme.
pub struct WebState {
    pub catalog: catalog::CatalogCache,
    /// Order lookups per client IP (`shop.lookup_per_minute`).
    pub lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Lookups per searched order number or email, whatever the client's address: guessing
    /// one buyer's query password from many addresses stays slow.
    pub lookup_targets: DefaultKeyedRateLimiter<String>,
    /// Orders from the product page per client IP (`shop.orders_per_minute`): each one
    /// reserves stock, so one client cannot hold the whole stock hostage.
    pub orders: DefaultKeyedRateLimiter<IpAddr>,
    pub notice_html: String,
    pub footer_html: String,
}

impl WebState {
    pub fn new(shop: &ShopConfig) -> WebState {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        WebState {
            catalog: Default::default(),
            lookups: RateLimiter::keyed(quota(shop.lookup_per_minute)),
            // One target: a burst of `lookup_per_minute`, then 3 × that per hour.
            lookup_targets: RateLimiter::keyed(
                Quota::per_hour(
                    NonZeroU32::new(shop.lookup_per_minute.saturating_mul(3))
                        .unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(shop.lookup_per_minute).unwrap_or(NonZeroU32::MIN)),
            ),
            orders: RateLimiter::keyed(quota(shop.orders_per_minute)),
            notice_html: markup::markdown(&shop.notice),
            footer_html: markup::markdown(&shop.footer),
        }
    }
}

/// Whether `ip` may go on. IPv6 clients are limited per /64 (one host usually holds a whole
/// /64). Idle clients are forgotten at most once a minute, so memory stays bounded under a
/// flood of addresses without a full scan per request.
pub fn allow(limiter: &DefaultKeyedRateLimiter<IpAddr>, ip: Option<IpAddr>) -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_SWEEP: AtomicI64 = AtomicI64::new(0);
    let now = crate::time::now_ms();
    if limiter.len() > 10_000 && now - LAST_SWEEP.swap(now, Ordering::Relaxed) > 60_000 {
        limiter.retain_recent();
    }
    let key = match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    limiter.check_key(&key).is_ok()
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::catalogue))
        .route("/p/{slug}", get(pages::product).post(pages::place))
        .route("/orders/{order_no}", get(pages::order))
        .route("/orders/{order_no}/keys.txt", get(pages::keys_txt))
        .route("/lookup", get(pages::lookup_form).post(pages::lookup))
        .route("/assets/{*path}", get(asset))
}

pub use pages::fallback;

async fn asset(State(state): State<Arc<AppState>>, Path(path): Path<String>) -> Response {
    match state.theme.asset(&path) {
        Some((bytes, mime)) => {
            let mut resp = bytes.into_owned().into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// What the order page says about the delivery mail: `off` (no `[smtp]`), `pending`, `sent`;
/// `none` (nothing said) for orders without a delivery mail, one given up, or a failed read.
async fn mail_line(state: &AppState, order: &kami_store::Order) -> &'static str {
    use crate::mail::MailStatus;
    use kami_store::MailState;
    match crate::mail::status(state, &order.order_no).await {
        Ok(MailStatus::Disabled) => "off",
        Ok(MailStatus::Known(MailState::Sent { .. })) => "sent",
        Ok(MailStatus::Known(MailState::Pending { .. })) => "pending",
        Ok(MailStatus::Known(MailState::Failed { .. })) => "failed",
        Ok(MailStatus::NotApplicable) => "none",
        Err(e) => {
            tracing::warn!(order = %order.order_no, "reading the delivery mail state: {e}");
            "none"
        }
    }
}
