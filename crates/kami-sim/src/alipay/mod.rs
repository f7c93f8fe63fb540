//! Gateway side of Alipay OpenAPI (`gateway.do`, protocols.md section A; checklist F), for
//! kami's `alipay` channel (`kami_pay::alipay`). Routes, all under `/sim/alipay/`:
//!
//! * `GET|POST /sim/alipay/gateway.do` — the gateway. Query string and form body are MERGED
//!   (A.1; a key in both is an error). Checks, in order, answered as Alipay does (compact
//!   JSON, node first, `sign` last, `/` escaped as `\/`, signed with the gateway key using the
//!   request's `sign_type`): `40001 isv.missing-method` (under `error_response`),
//!   `40002 isv.invalid-method` (unknown method, `error_response`), then under the method's
//!   node `40001 isv.missing-app-id|missing-signature|missing-signature-type|missing-timestamp|
//!   missing-version`, `40002 isv.invalid-app-id|invalid-signature-type|invalid-charset|
//!   invalid-format|invalid-version|invalid-timestamp` (±10 min by default), and
//!   `40002 isv.invalid-signature` whose `sub_msg` carries the gateway's sign string (request
//!   rule A.2: `sign_type` signed, empties skipped). Business errors are `40004 ACQ.*`.
//!   `alipay.trade.page.pay` / `wap.pay` answer the buyer's browser with an HTML cashier
//!   (errors as HTML pages) instead of JSON.
//! * `GET /sim/alipay/qr/{token}` — the precreate `qr_code` URL. Opening it counts as the
//!   buyer scanning: the trade becomes visible to query/close as `WAIT_BUYER_PAY`. Until then
//!   query/close answer `ACQ.TRADE_NOT_EXIST` (A.5 trade-existence semantics).
//! * `POST /sim/alipay/pay/{token}` — the cashier's "Pay" button. Form fields (test
//!   controls): `amount` (pay a different amount, yuan), `notify` = `normal` | `drop` |
//!   `duplicate` | `delay` | `reorder`, `delay_ms`. Answers HTML (with a signed return-URL
//!   link for page/wap, A.4) or JSON for `Accept: application/json`.
//! * `GET /sim/alipay/` (trades and a fault form) and `POST /sim/alipay/control` — fault
//!   injection: form `method`, `fault` = `system_error` | `error` (+ `code`, `sub_code`) |
//!   `sleep` (+ `sleep_ms`) | `lose_response` | `forge_signature` | `unsigned` |
//!   `retry_later`, `times`.
//!
//! * `GET /sim/alipay/downloadBillFile.resource?…&token=` — a bill archive (module `bill`).
//!
//! Methods: `alipay.trade.precreate`, `page.pay`, `wap.pay`, `query`, `close`, `cancel`,
//! `refund`, `fastpay.refund.query`, `alipay.data.dataservice.bill.downloadurl.query` (the
//! day's bill, byte-faithful: a zip of GBK CSVs; see `bill.rs`). Semantics (A.5): precreate of a paid `out_trade_no` →
//! `ACQ.TRADE_HAS_SUCCESS`, closed → `ACQ.TRADE_HAS_CLOSE`, another amount →
//! `ACQ.CONTEXT_INCONSISTENT`, same → the same QR. close: only `WAIT_BUYER_PAY` (else
//! `ACQ.TRADE_STATUS_ERROR`), unscanned → `ACQ.TRADE_NOT_EXIST`. cancel: unpaid (scanned or
//! not) → closed, `action=close`; paid → fully refunded, `action=refund`. refund: idempotent by
//! `out_request_no` (a replay answers `fund_change=N`), bounded by the paid amount
//! (`ACQ.REASON_TRADE_REFUND_FEE_ERR`); a partial refund notifies `TRADE_SUCCESS` with
//! `refund_fee`/`gmt_refund`/`out_biz_no`, the last one `TRADE_CLOSED`.
//!
//! Notifications (A.4): `POST notify_url`, `application/x-www-form-urlencoded;
//! charset=utf-8`, signed with the notify rule (`sign`, `sign_type` unsigned); delivered when
//! the answer is HTTP 200 with body exactly `success`, otherwise retried on the configured
//! schedule with the same body and `notify_id`. Sent for payment, close of a visible trade,
//! timeout close and refunds.
//!
//! Test controls (Rust API): [`AlipaySim::inject_fault`] (the next N calls of a method),
//! [`AlipaySim::set_failing`] (every call of a method until cleared), [`PayOptions::notify`]
//! (`NotifyMode::Drop` and friends), and for bills [`AlipaySim::refund_in_portal`],
//! [`AlipaySim::add_unknown_trade`], [`AlipaySim::tamper_next_bill`],
//! [`AlipaySim::fail_bill_api`].

mod api;
mod bill;
mod bill_file;
mod notify;
mod pages;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use kami_core::clock::{self, SharedClock};
use kami_core::{Currency, Money};
use kami_pay::alipay::wire::{self, AlipaySignType};
use kami_pay::crypto::{RsaSigner, RsaVerifier};
use rand::Rng;

use crate::common::bill::BillFaults;
use crate::common::notify::{ok_exactly_success, Notifier};
pub use crate::common::NotifyMode;

/// The `notify` values the cashier offers.
const NOTIFY_MODES: [&str; 5] = ["normal", "drop", "duplicate", "delay", "reorder"];

/// The methods the simulated gateway knows.
pub const METHODS: [&str; 9] = [
    "alipay.trade.precreate",
    "alipay.trade.page.pay",
    "alipay.trade.wap.pay",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
    "alipay.data.dataservice.bill.downloadurl.query",
];

/// Settings of the simulator.
pub struct AlipaySimConfig {
    /// The merchant's app.
    pub app_id: String,
    /// Verifies the merchant's request signatures.
    pub merchant_public_key: RsaVerifier,
    /// "Alipay's" private key: signs responses and notifications (the channel verifies with
    /// its public half).
    pub gateway_key: RsaSigner,
    /// The merchant's PID (`seller_id` in notifications).
    pub seller_id: String,
    /// Delay before each notification attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one notification request.
    pub notify_timeout: Duration,
}

impl AlipaySimConfig {
    /// The documented schedule (A.4): immediately, then 2m, 10m, 10m, 1h, 2h, 6h, 15h.
    pub fn default_retry_schedule() -> Vec<Duration> {
        [0u64, 2, 10, 10, 60, 120, 360, 900]
            .into_iter()
            .map(|m| Duration::from_secs(m * 60))
            .collect()
    }
}

impl std::fmt::Debug for AlipaySimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipaySimConfig")
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .field("retry_schedule", &self.retry_schedule)
            .field("notify_timeout", &self.notify_timeout)
            .finish_non_exhaustive()
    }
}

/// Options of a simulated payment.
#[derive(Debug, Clone, Copy, Default)]
pub struct PayOptions {
    /// Pay (and report) this amount instead of the trade's `total_amount`.
    pub amount: Option<Money>,
    pub notify: NotifyMode,
}

/// A fault injected into the next calls of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this error without processing (signed, under the method's node).
    Error {
        code: String,
        msg: String,
        sub_code: String,
        sub_msg: String,
    },
    /// Sleep, then process normally (slow gateway; client timeouts).
    Sleep(Duration),
    /// Process the request, then answer `20000 isp.unknow-error` (result unknown).
    LoseResponse,
    /// Process the request, then answer with a signature that does not verify.
    ForgeSignature,
    /// Process the request, then answer without `sign`.
    Unsigned,
    /// `alipay.trade.cancel` only: answer `retry_flag=Y` without an action, unprocessed.
    RetryLater,
}

impl Fault {
    /// `20000 Service Currently Unavailable` / `ACQ.SYSTEM_ERROR` (A.5: retry or query).
    pub fn system_error() -> Fault {
        Fault::Error {
            code: "20000".into(),
            msg: "Service Currently Unavailable".into(),
            sub_code: "ACQ.SYSTEM_ERROR".into(),
            sub_msg: "系统错误".into(),
        }
    }

    /// A `40004 Business Failed` with the given `ACQ.*` sub code.
    pub fn business(sub_code: &str) -> Fault {
        Fault::Error {
            code: "40004".into(),
            msg: "Business Failed".into(),
            sub_code: sub_code.into(),
            sub_msg: sub_code.into(),
        }
    }
}

/// One notification of a trade and its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRecord {
    pub notify_id: String,
    /// `trade_status` it carries.
    pub trade_status: String,
    /// `payment`, `wait` (reorder's stale one), `close`, `refund`, `finish`.
    pub kind: &'static str,
    /// HTTP requests sent so far (a duplicate round counts two).
    pub attempts: u32,
    /// The merchant answered 200 `success`.
    pub delivered: bool,
    pub last_error: Option<String>,
    /// The exact form body sent on every attempt.
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    WaitBuyerPay,
    Success,
    Finished,
    Closed,
}

impl Status {
    fn api(self) -> &'static str {
        match self {
            Status::WaitBuyerPay => "WAIT_BUYER_PAY",
            Status::Success => "TRADE_SUCCESS",
            Status::Finished => "TRADE_FINISHED",
            Status::Closed => "TRADE_CLOSED",
        }
    }
}

/// What the simulator knows of a trade (test inspection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeView {
    pub out_trade_no: String,
    /// Alipay's trade number (`trade_no`).
    pub trade_no: String,
    /// The creating method.
    pub method: String,
    /// Scanned / opened at the cashier: visible to query and close.
    pub visible: bool,
    /// `WAIT_BUYER_PAY`, `TRADE_SUCCESS`, `TRADE_FINISHED` or `TRADE_CLOSED`.
    pub status: &'static str,
    pub total: Money,
    pub paid: Option<Money>,
    pub refunded: Money,
    /// `out_request_no`s of successful refunds, in order.
    pub refund_nos: Vec<String>,
    pub qr_token: String,
}

#[derive(Debug, Clone)]
struct Refund {
    out_request_no: String,
    amount: Money,
    at_ms: i64,
}

#[derive(Debug)]
struct Trade {
    out_trade_no: String,
    trade_no: String,
    method: String,
    subject: String,
    total: Money,
    notify_url: Option<String>,
    return_url: Option<String>,
    expire_ms: Option<i64>,
    sign_type: AlipaySignType,
    token: String,
    visible: bool,
    status: Status,
    created_ms: i64,
    paid_ms: Option<i64>,
    paid: Option<Money>,
    refunds: Vec<Refund>,
    notifications: Vec<NotifyRecord>,
}

impl Trade {
    fn refunded_minor(&self) -> i64 {
        self.refunds.iter().map(|r| r.amount.minor()).sum()
    }

    fn view(&self) -> TradeView {
        TradeView {
            out_trade_no: self.out_trade_no.clone(),
            trade_no: self.trade_no.clone(),
            method: self.method.clone(),
            visible: self.visible,
            status: self.status.api(),
            total: self.total,
            paid: self.paid,
            // Refunds never exceed the paid amount, so this cannot fail.
            refunded: Money::new(self.refunded_minor(), Currency::Cny).unwrap_or(self.total),
            refund_nos: self
                .refunds
                .iter()
                .map(|r| r.out_request_no.clone())
                .collect(),
            qr_token: self.token.clone(),
        }
    }

    fn expired(&self, now: i64) -> bool {
        self.status == Status::WaitBuyerPay && self.expire_ms.is_some_and(|e| now > e)
    }
}

#[derive(Default)]
struct SimState {
    trades: HashMap<String, Trade>,
    /// token → out_trade_no.
    tokens: HashMap<String, String>,
    /// method → queued faults.
    faults: HashMap<String, VecDeque<Fault>>,
    /// method → the fault of every call while set ([`AlipaySim::set_failing`]).
    failing: HashMap<String, Fault>,
    bill_faults: BillFaults,
    /// download token → (bill archive, expiry in unix ms).
    bill_files: HashMap<String, (Vec<u8>, i64)>,
}

/// Why a simulator control call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    UnknownTrade,
    Closed,
    AlreadyPaid,
    Expired,
    /// Notifications need a tokio runtime (call from within one).
    NoRuntime,
    /// Not a positive CNY amount within what is left to refund.
    BadAmount,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimError::UnknownTrade => "unknown trade",
            SimError::Closed => "the trade is closed",
            SimError::AlreadyPaid => "the trade is already paid",
            SimError::Expired => "the trade has expired",
            SimError::NoRuntime => "no tokio runtime to deliver notifications",
            SimError::BadAmount => "not a refundable amount",
        })
    }
}

impl std::error::Error for SimError {}

/// A notification to deliver after the state lock is released.
struct Outgoing {
    out_trade_no: String,
    url: String,
    /// Index into the trade's `notifications`.
    index: usize,
    body: String,
    mode: NotifyMode,
    /// Delivered after this one completes (reorder).
    then: Option<Box<Outgoing>>,
}

/// The Alipay gateway simulator. Share it as `Arc<AlipaySim>`.
pub struct AlipaySim {
    /// Itself, for spawning deliveries that outlive a request.
    me: std::sync::Weak<AlipaySim>,
    cfg: AlipaySimConfig,
    clock: SharedClock,
    notifier: Notifier,
    state: Mutex<SimState>,
    settings: Mutex<Settings>,
}

#[derive(Debug, Clone)]
struct Settings {
    timestamp_window: Option<Duration>,
    public_base: Option<String>,
}

impl std::fmt::Debug for AlipaySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipaySim")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// `yyyy-MM-dd HH:mm:ss` Beijing time, or empty if the clock is absurd.
fn bj(ms: i64) -> String {
    wire::beijing_time(ms).unwrap_or_default()
}

impl AlipaySim {
    /// A simulator on the wall clock.
    pub fn new(cfg: AlipaySimConfig) -> Arc<AlipaySim> {
        Self::with_clock(cfg, clock::system())
    }

    /// A simulator reading the time (timestamps, expiry, notification times) from `clock`.
    pub fn with_clock(cfg: AlipaySimConfig, clock: SharedClock) -> Arc<AlipaySim> {
        let notifier = Notifier::new(
            "alipay",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            ok_exactly_success,
        );
        Arc::new_cyclic(|me| AlipaySim {
            me: me.clone(),
            cfg,
            clock,
            notifier,
            state: Mutex::new(SimState::default()),
            settings: Mutex::new(Settings {
                timestamp_window: Some(Duration::from_secs(600)),
                public_base: None,
            }),
        })
    }

    /// Routes under `/sim/alipay/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sim/alipay/gateway.do",
                get(api::gateway).post(api::gateway),
            )
            .route("/sim/alipay/qr/{token}", get(pages::qr_page))
            .route("/sim/alipay/downloadBillFile.resource", get(bill::download))
            .route("/sim/alipay/pay/{token}", post(pages::pay_submit))
            .route("/sim/alipay/", get(pages::index_page))
            .route("/sim/alipay/control", post(pages::control))
            .with_state(Arc::clone(self))
    }

    pub fn config(&self) -> &AlipaySimConfig {
        &self.cfg
    }

    /// Accepted |now − timestamp| of requests (`None`: any). Default 10 minutes.
    pub fn set_timestamp_window(&self, window: Option<Duration>) {
        self.settings().timestamp_window = window;
    }

    /// Base URL for the `qr_code`s the simulator hands out (default: `http://` + the
    /// request's `Host`).
    pub fn set_public_base(&self, base: Option<String>) {
        self.settings().public_base = base.map(|b| b.trim_end_matches('/').to_owned());
    }

    /// Queue `fault` for the next `times` calls of `method` (e.g. `alipay.trade.precreate`).
    pub fn inject_fault(&self, method: &str, fault: Fault, times: u32) {
        let mut st = self.lock();
        let q = st.faults.entry(method.to_owned()).or_default();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    /// Answer every call of `method` with `fault` while it is `Some` (e.g.
    /// `alipay.trade.query` with [`Fault::system_error`]: queries fail until cleared).
    /// Queued faults ([`AlipaySim::inject_fault`]) come first.
    pub fn set_failing(&self, method: &str, fault: Option<Fault>) {
        let mut st = self.lock();
        match fault {
            Some(f) => st.failing.insert(method.to_owned(), f),
            None => st.failing.remove(method),
        };
    }

    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.clear();
        st.failing.clear();
    }

    /// The trade as the simulator holds it (visible or not).
    pub fn trade(&self, out_trade_no: &str) -> Option<TradeView> {
        self.lock().trades.get(out_trade_no).map(Trade::view)
    }

    /// Every trade, newest first.
    pub fn trades(&self) -> Vec<TradeView> {
        let st = self.lock();
        let mut v: Vec<&Trade> = st.trades.values().collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.created_ms));
        v.into_iter().map(Trade::view).collect()
    }

    /// The trade's notifications and their delivery so far.
    pub fn notifications(&self, out_trade_no: &str) -> Vec<NotifyRecord> {
        self.lock()
            .trades
            .get(out_trade_no)
            .map(|t| t.notifications.clone())
            .unwrap_or_default()
    }

    /// The buyer scans the QR code (or logs in at the cashier): the trade becomes visible.
    pub fn scan(&self, out_trade_no: &str) -> Result<TradeView, SimError> {
        let mut st = self.lock();
        let t = st
            .trades
            .get_mut(out_trade_no)
            .ok_or(SimError::UnknownTrade)?;
        if t.status == Status::WaitBuyerPay {
            t.visible = true;
        }
        Ok(t.view())
    }

    /// The buyer pays (scanning first if needed). Returns Alipay's `trade_no`. Needs a tokio
    /// runtime when a notification is to be sent.
    pub fn pay(&self, out_trade_no: &str, opts: PayOptions) -> Result<String, SimError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SimError::NoRuntime);
        }
        let (trade_no, outgoing) = {
            let mut st = self.lock();
            let t = st
                .trades
                .get_mut(out_trade_no)
                .ok_or(SimError::UnknownTrade)?;
            self.pay_locked(t, opts)?
        };
        if let Some(o) = outgoing {
            self.spawn_delivery(o);
        }
        Ok(trade_no)
    }

    /// The refund period of a paid trade ends: `TRADE_SUCCESS` → `TRADE_FINISHED`, notified
    /// (A.4). Refunds and cancel are refused afterwards (`ACQ.TRADE_HAS_FINISHED`).
    pub fn finish(&self, out_trade_no: &str) -> Result<TradeView, SimError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SimError::NoRuntime);
        }
        let (view, outgoing) = {
            let mut st = self.lock();
            let t = st
                .trades
                .get_mut(out_trade_no)
                .ok_or(SimError::UnknownTrade)?;
            match t.status {
                Status::Success => {
                    t.status = Status::Finished;
                    let o = self.notification_locked(t, "finish", NotifyMode::Normal, &[]);
                    (t.view(), o)
                }
                Status::Finished => (t.view(), None),
                Status::Closed => return Err(SimError::Closed),
                Status::WaitBuyerPay => return Err(SimError::UnknownTrade),
            }
        };
        if let Some(o) = outgoing {
            self.spawn_delivery(o);
        }
        Ok(view)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_fault(&self, method: &str) -> Option<Fault> {
        let mut st = self.lock();
        match st.faults.get_mut(method).and_then(VecDeque::pop_front) {
            Some(f) => Some(f),
            None => st.failing.get(method).cloned(),
        }
    }

    /// Expire a waiting trade past its `time_expire` (closing it, notifying if visible).
    fn expire_locked(&self, t: &mut Trade, now: i64) -> Option<Outgoing> {
        if !t.expired(now) {
            return None;
        }
        t.status = Status::Closed;
        if t.visible {
            self.notification_locked(t, "close", NotifyMode::Normal, &[])
        } else {
            None
        }
    }

    fn pay_locked(
        &self,
        t: &mut Trade,
        opts: PayOptions,
    ) -> Result<(String, Option<Outgoing>), SimError> {
        let now = self.now_ms();
        match t.status {
            Status::Success | Status::Finished => return Err(SimError::AlreadyPaid),
            Status::Closed => return Err(SimError::Closed),
            Status::WaitBuyerPay if t.expired(now) => {
                // Closed by timeout; the close notification goes out with the refusal.
                if let Some(o) = self.expire_locked(t, now) {
                    self.spawn_delivery(o);
                }
                return Err(SimError::Expired);
            }
            Status::WaitBuyerPay => {}
        }
        t.visible = true;
        t.status = Status::Success;
        t.paid_ms = Some(now);
        t.paid = Some(opts.amount.unwrap_or(t.total));
        let outgoing = match opts.notify {
            NotifyMode::Drop => None,
            NotifyMode::Reorder => {
                let stale = self.notification_locked(t, "wait", NotifyMode::Normal, &[]);
                let paid = self.notification_locked(t, "payment", NotifyMode::Normal, &[]);
                paid.map(|mut p| {
                    p.then = stale.map(Box::new);
                    p
                })
            }
            mode => self.notification_locked(t, "payment", mode, &[]),
        };
        Ok((t.trade_no.clone(), outgoing))
    }
}
