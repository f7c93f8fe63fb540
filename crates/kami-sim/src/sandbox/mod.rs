//! Gateway side of the `sandbox` protocol (see `kami_pay::sandbox` for the byte-level
//! description). Serves the buyer's pay page ([`pages`]), delivers signed notifications with
//! retries until the merchant answers `success`, and answers the signed query/close/refund
//! API ([`api`]).
//!
//! Trade states: unknown (`NOT_FOUND`) until the pay page is opened or posted, then `WAITING`,
//! then `PAID` (idempotent), `REFUNDED` once refunds reach the total; `CLOSED` through the
//! close API (unknown trades included, so a later pay attempt is refused with 409).

mod api;
mod bill;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use kami_core::clock::{self, SharedClock};
use kami_core::{Currency, Money};
use kami_pay::sandbox::{field, parse_form, signed, verify};
use rand::Rng;

use crate::common::notify::{ok_success, Notifier, Outbound};
pub use crate::common::{NotifyMode, NotifyStats};
use pages::PageError;

/// The `notify` values the pay page offers.
const NOTIFY_MODES: [&str; 3] = ["normal", "drop", "duplicate"];

/// Tunables of the simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Delay before each notification attempt; its length is the number of attempts.
    /// Default: immediately, then 1s, 2s, 4s, 8s, 16s, 30s, 60s, 120s, 300s.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one notification request (connect + answer).
    pub notify_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            retry_schedule: [0, 1, 2, 4, 8, 16, 30, 60, 120, 300]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            notify_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Paid,
    Closed,
    Refunded,
}

impl Status {
    fn api(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Paid => "PAID",
            Status::Closed => "CLOSED",
            Status::Refunded => "REFUNDED",
        }
    }
}

/// What the merchant's signed pay URL says.
#[derive(Debug, Clone)]
struct Order {
    amount: Money,
    subject: String,
    notify_url: String,
    return_url: String,
    expires_at: i64,
}

#[derive(Debug, Clone)]
struct Payment {
    gateway_trade_no: String,
    amount: Money,
    /// When it was paid (unix ms): the bill day it is listed on.
    paid_at: i64,
}

/// A refund as the bill lists it: our refund number (empty for one made in the merchant
/// portal), the amount, and when.
#[derive(Debug, Clone)]
struct RefundEntry {
    refund_no: String,
    amount: Money,
    at: i64,
}

#[derive(Debug)]
struct Trade {
    status: Status,
    order: Option<Order>,
    payment: Option<Payment>,
    /// refund_no → amount refunded under it.
    refunds: HashMap<String, Money>,
    refunded_minor: i64,
    /// Every refund in the order made, for the bill.
    refund_log: Vec<RefundEntry>,
    stats: NotifyStats,
}

impl Trade {
    fn new(status: Status, order: Option<Order>) -> Trade {
        Trade {
            status,
            order,
            payment: None,
            refunds: HashMap::new(),
            refunded_minor: 0,
            refund_log: Vec::new(),
            stats: NotifyStats::default(),
        }
    }
}

/// The sandbox gateway simulator. Share it as `Arc<SandboxSim>`.
pub struct SandboxSim {
    secret: Vec<u8>,
    opts: SimOptions,
    clock: SharedClock,
    notifier: Notifier,
    trades: Mutex<HashMap<String, Trade>>,
    faults: Mutex<bill::ApiFaults>,
}

impl std::fmt::Debug for SandboxSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxSim")
            .field("secret", &"<redacted>")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn gateway_trade_no() -> String {
    let mut rng = rand::thread_rng();
    let digits: String = (0..20)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("SBX{digits}")
}

fn required<'a>(params: &'a [(String, String)], key: &str) -> Result<&'a str, String> {
    field(params, key).ok_or_else(|| format!("missing field {key}"))
}

fn parse_money(amount: &str, currency: &str) -> Result<Money, String> {
    let currency = Currency::parse(currency).map_err(|e| e.to_string())?;
    Money::from_major_str(amount, currency).map_err(|e| e.to_string())
}

impl SandboxSim {
    /// A simulator on the wall clock.
    pub fn new(secret: Vec<u8>, opts: SimOptions) -> Arc<SandboxSim> {
        Self::with_clock(secret, opts, clock::system())
    }

    /// A simulator reading the time (link expiry, `paid_at`) from `clock`.
    pub fn with_clock(secret: Vec<u8>, opts: SimOptions, clock: SharedClock) -> Arc<SandboxSim> {
        let notifier = Notifier::new(
            "sandbox",
            opts.retry_schedule.clone(),
            opts.notify_timeout,
            ok_success,
        );
        Arc::new(SandboxSim {
            secret,
            opts,
            clock,
            notifier,
            trades: Mutex::new(HashMap::new()),
            faults: Mutex::new(bill::ApiFaults::default()),
        })
    }

    /// Routes under `/sim/sandbox/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sim/sandbox/pay/{trade_no}",
                get(pages::pay_page).post(pages::pay_submit),
            )
            .route("/sim/sandbox/api/query", get(api::query))
            .route("/sim/sandbox/api/close", post(api::close))
            .route("/sim/sandbox/api/refund", post(api::refund))
            .route("/sim/sandbox/api/bill", get(bill::bill))
            .with_state(Arc::clone(self))
    }

    /// Notification delivery stats of a paid trade (`None` if it was never paid).
    pub fn notify_stats(&self, trade_no: &str) -> Option<NotifyStats> {
        self.lock()
            .get(trade_no)
            .filter(|t| t.payment.is_some())
            .map(|t| t.stats.clone())
    }

    /// The trade's state as the query API reports it: `NOT_FOUND`, `WAITING`, `PAID`,
    /// `CLOSED` or `REFUNDED`.
    pub fn trade_status(&self, trade_no: &str) -> &'static str {
        self.lock()
            .get(trade_no)
            .map_or("NOT_FOUND", |t| t.status.api())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Trade>> {
        self.trades.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Verify a pay URL (path trade number + query string) and read the order it describes.
    fn check_pay_url(&self, path_trade_no: &str, query: &str) -> Result<Order, PageError> {
        let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m);
        let params = parse_form(query.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if !verify(&self.secret, &params) {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                "The payment link's signature is invalid.",
            ));
        }
        let trade_no = required(&params, "trade_no").map_err(bad)?;
        if trade_no != path_trade_no {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                "The payment link's signature is invalid (trade number mismatch).",
            ));
        }
        let amount = parse_money(
            required(&params, "amount").map_err(bad)?,
            required(&params, "currency").map_err(bad)?,
        )
        .map_err(bad)?;
        let expires_at = required(&params, "expires_at")
            .map_err(bad)?
            .parse::<i64>()
            .map_err(|_| bad("expires_at is not a number".into()))?;
        Ok(Order {
            amount,
            subject: required(&params, "subject").map_err(bad)?.to_owned(),
            notify_url: required(&params, "notify_url").map_err(bad)?.to_owned(),
            return_url: required(&params, "return_url").map_err(bad)?.to_owned(),
            expires_at,
        })
    }

    /// Pay `trade_no` for `order` (idempotent once paid). Returns the gateway trade number
    /// and, for a new payment that is to be notified, the signed notification body.
    fn pay(
        &self,
        trade_no: &str,
        order: &Order,
        mode: NotifyMode,
    ) -> Result<(String, Option<String>), PageError> {
        let mut trades = self.lock();
        let known = trades.get(trade_no).map(|t| t.status);
        if known.is_none_or(|s| s == Status::Waiting) && self.now_ms() > order.expires_at {
            return Err(PageError::expired());
        }
        let trade = trades
            .entry(trade_no.to_owned())
            .or_insert_with(|| Trade::new(Status::Waiting, None));
        match trade.status {
            Status::Paid | Status::Refunded => {
                let g = trade
                    .payment
                    .as_ref()
                    .map(|p| p.gateway_trade_no.clone())
                    .unwrap_or_default();
                Ok((g, None))
            }
            Status::Closed => Err(PageError::closed()),
            Status::Waiting => {
                let g = gateway_trade_no();
                let paid_at = self.now_ms();
                trade.status = Status::Paid;
                trade.order = Some(order.clone());
                trade.payment = Some(Payment {
                    gateway_trade_no: g.clone(),
                    amount: order.amount,
                    paid_at,
                });
                let params = signed(
                    &self.secret,
                    vec![
                        ("trade_no".into(), trade_no.to_owned()),
                        ("gateway_trade_no".into(), g.clone()),
                        ("amount".into(), order.amount.to_major_string()),
                        ("currency".into(), order.amount.currency().code().to_owned()),
                        ("status".into(), "paid".into()),
                        ("paid_at".into(), paid_at.to_string()),
                        ("notify_id".into(), hex::encode(rand::random::<[u8; 16]>())),
                    ],
                );
                let body = match (mode, serde_urlencoded::to_string(&params)) {
                    (NotifyMode::Drop, _) => None,
                    (_, Ok(body)) => Some(body),
                    (_, Err(e)) => {
                        tracing::error!(error = %e, "cannot encode sandbox notification");
                        None
                    }
                };
                Ok((g, body))
            }
        }
    }

    /// Deliver a payment notification following the retry schedule.
    async fn deliver(
        self: Arc<Self>,
        trade_no: String,
        url: String,
        body: String,
        mode: NotifyMode,
    ) {
        let outbound = Outbound::post(&url, "application/x-www-form-urlencoded", body);
        self.notifier
            .deliver(
                &trade_no,
                mode,
                |_| Some(outbound.clone()),
                |round| {
                    if let Some(t) = self.lock().get_mut(&trade_no) {
                        t.stats.record(round);
                    }
                    round.ok
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kami_core::clock::ManualClock;

    const SECRET: &[u8] = b"clock-test";

    fn pay_query(trade_no: &str, expires_at: i64) -> String {
        let fields = [
            ("trade_no", trade_no),
            ("amount", "1.00"),
            ("currency", "CNY"),
            ("expires_at", &expires_at.to_string()),
            ("subject", "key"),
            ("notify_url", "http://127.0.0.1:9/notify"),
            ("return_url", "http://127.0.0.1:9/return"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        serde_urlencoded::to_string(signed(SECRET, fields.to_vec())).unwrap()
    }

    #[test]
    fn link_expiry_follows_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let sim = SandboxSim::with_clock(SECRET.to_vec(), SimOptions::default(), clock.clone());
        let early = sim
            .check_pay_url("T1", &pay_query("T1", 1_000_500))
            .unwrap();
        assert!(sim.pay("T1", &early, NotifyMode::Drop).is_ok());
        assert_eq!(sim.trade_status("T1"), "PAID");

        let late = sim
            .check_pay_url("T2", &pay_query("T2", 1_000_500))
            .unwrap();
        clock.advance(501);
        let refused = sim.pay("T2", &late, NotifyMode::Drop).err().unwrap();
        assert_eq!(refused.status, StatusCode::GONE);
        assert_eq!(sim.trade_status("T2"), "NOT_FOUND");
    }
}
