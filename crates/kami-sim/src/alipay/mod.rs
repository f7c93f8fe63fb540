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
//! Methods: `alipay.trade.precreate`, `page.pay`, `wap.pay`, `query`, `close`, `cancel`,
//! `refund`, `fastpay.refund.query`. Semantics (A.5): precreate of a paid `out_trade_no` →
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

mod pages;

use pages::{control, index_page, pay_submit, qr_page};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kami_core::{Currency, Money};
use kami_pay::alipay::wire::{
    self, build_response, field, now_ms, request_sign_content, response_node_name, signed_notify,
    AlipaySignType, ERROR_NODE, REQUEST_UNSIGNED,
};
use kami_pay::crypto::{RsaSigner, RsaVerifier};
use kami_pay::sandbox::parse_form;
use rand::Rng;
use serde_json::Value;

/// Largest merchant reply body the simulator reads.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The methods the simulated gateway knows.
pub const METHODS: [&str; 8] = [
    "alipay.trade.precreate",
    "alipay.trade.page.pay",
    "alipay.trade.wap.pay",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
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

/// How a payment's notification is delivered (test control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    #[default]
    Normal,
    /// Paid, never notified (kami must find it by query/close).
    Drop,
    /// Every attempt sent twice concurrently.
    Duplicate,
    /// Wait this long before the first attempt.
    Delay(Duration),
    /// Also emit a `WAIT_BUYER_PAY` notification (as for merchants who enabled it), but
    /// deliver it AFTER the `TRADE_SUCCESS` one: an out-of-order, stale notification.
    Reorder,
}

impl NotifyMode {
    fn parse(s: &str, delay_ms: Option<u64>) -> Option<NotifyMode> {
        match s {
            "" | "normal" => Some(NotifyMode::Normal),
            "drop" => Some(NotifyMode::Drop),
            "duplicate" => Some(NotifyMode::Duplicate),
            "delay" => Some(NotifyMode::Delay(Duration::from_millis(
                delay_ms.unwrap_or(2000),
            ))),
            "reorder" => Some(NotifyMode::Reorder),
            _ => None,
        }
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
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimError::UnknownTrade => "unknown trade",
            SimError::Closed => "the trade is closed",
            SimError::AlreadyPaid => "the trade is already paid",
            SimError::Expired => "the trade has expired",
            SimError::NoRuntime => "no tokio runtime to deliver notifications",
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
    http: reqwest::Client,
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

/// A business/protocol error answered under a node.
#[derive(Debug, Clone)]
struct ApiErr {
    code: String,
    msg: String,
    sub_code: String,
    sub_msg: String,
}

fn err(code: &str, sub_code: &str, sub_msg: impl Into<String>) -> ApiErr {
    let msg = match code {
        "20000" => "Service Currently Unavailable",
        "40001" => "Missing Required Arguments",
        "40002" => "Invalid Arguments",
        "40004" => "Business Failed",
        _ => "Error",
    };
    ApiErr {
        code: code.to_owned(),
        msg: msg.to_owned(),
        sub_code: sub_code.to_owned(),
        sub_msg: sub_msg.into(),
    }
}

fn acq(sub_code: &str, sub_msg: &str) -> ApiErr {
    err("40004", sub_code, sub_msg)
}

fn not_exist() -> ApiErr {
    acq("ACQ.TRADE_NOT_EXIST", "交易不存在")
}

fn invalid(what: &str) -> ApiErr {
    acq("ACQ.INVALID_PARAMETER", &format!("参数无效: {what}"))
}

type Fields = Vec<(&'static str, Value)>;

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn biz_str<'a>(biz: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    biz.get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

fn parse_amount(v: Option<&str>, what: &str) -> Result<Money, ApiErr> {
    let m = v
        .and_then(|v| Money::from_major_str(v, Currency::Cny).ok())
        .ok_or_else(|| invalid(what))?;
    if m.minor() < 1 || m.minor() > 10_000_000_000 {
        return Err(invalid(what));
    }
    Ok(m)
}

/// `timeout_express` (`90m`, `2h`, `1d`; A.6) in milliseconds.
fn parse_timeout_express(v: &str) -> Option<i64> {
    let unit = match v.as_bytes().last()? {
        b'm' => 60_000,
        b'h' => 3_600_000,
        b'd' => 86_400_000,
        _ => return None,
    };
    // The last byte is ASCII, so this slice ends on a character boundary.
    let n: i64 = v.get(..v.len() - 1)?.parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(unit)
}

impl AlipaySim {
    pub fn new(cfg: AlipaySimConfig) -> Arc<AlipaySim> {
        Arc::new_cyclic(|me| AlipaySim {
            me: me.clone(),
            cfg,
            http: reqwest::Client::new(),
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
            .route("/sim/alipay/gateway.do", get(gateway).post(gateway))
            .route("/sim/alipay/qr/{token}", get(qr_page))
            .route("/sim/alipay/pay/{token}", post(pay_submit))
            .route("/sim/alipay/", get(index_page))
            .route("/sim/alipay/control", post(control))
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

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
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

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_fault(&self, method: &str) -> Option<Fault> {
        self.lock()
            .faults
            .get_mut(method)
            .and_then(VecDeque::pop_front)
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
        let now = now_ms();
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

    /// Build, sign and record a notification of the trade's current state (A.4).
    fn notification_locked(
        &self,
        t: &mut Trade,
        kind: &'static str,
        mode: NotifyMode,
        extra: &[(&str, String)],
    ) -> Option<Outgoing> {
        let url = t.notify_url.clone()?;
        let status = if kind == "wait" {
            Status::WaitBuyerPay
        } else {
            t.status
        };
        let now = now_ms();
        let notify_id = format!(
            "{}{}",
            bj(now).replace(['-', ' ', ':'], ""),
            random_digits(20)
        );
        let paid = t.paid.unwrap_or(t.total).to_major_string();
        let mut params: Vec<(String, String)> = vec![
            ("notify_time".into(), bj(now)),
            ("notify_type".into(), "trade_status_sync".into()),
            ("notify_id".into(), notify_id.clone()),
            ("app_id".into(), self.cfg.app_id.clone()),
            ("auth_app_id".into(), self.cfg.app_id.clone()),
            ("charset".into(), "utf-8".into()),
            ("version".into(), "1.0".into()),
            ("trade_no".into(), t.trade_no.clone()),
            ("out_trade_no".into(), t.out_trade_no.clone()),
            ("buyer_id".into(), "2088102177846880".into()),
            ("buyer_logon_id".into(), "158****1234".into()),
            ("seller_id".into(), self.cfg.seller_id.clone()),
            ("seller_email".into(), "shop@example.com".into()),
            ("trade_status".into(), status.api().into()),
            ("total_amount".into(), paid.clone()),
            ("subject".into(), t.subject.clone()),
            ("gmt_create".into(), bj(t.created_ms)),
        ];
        if status != Status::WaitBuyerPay && t.paid.is_some() {
            let zero = "0.00".to_owned();
            params.extend([
                ("receipt_amount".into(), paid.clone()),
                ("invoice_amount".into(), paid.clone()),
                ("buyer_pay_amount".into(), paid.clone()),
                ("point_amount".into(), zero),
                ("gmt_payment".into(), bj(t.paid_ms.unwrap_or(now))),
                (
                    "fund_bill_list".into(),
                    format!("[{{\"amount\":\"{paid}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
                ),
            ]);
        }
        if status == Status::Closed {
            params.push(("gmt_close".into(), bj(now)));
        }
        for (k, v) in extra {
            params.push(((*k).to_owned(), v.clone()));
        }
        let signed = match signed_notify(&self.cfg.gateway_key, t.sign_type, params) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign alipay notification");
                return None;
            }
        };
        let body = match serde_urlencoded::to_string(&signed) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode alipay notification");
                return None;
            }
        };
        t.notifications.push(NotifyRecord {
            notify_id,
            trade_status: status.api().into(),
            kind,
            attempts: 0,
            delivered: false,
            last_error: None,
            body: body.clone(),
        });
        Some(Outgoing {
            out_trade_no: t.out_trade_no.clone(),
            url,
            index: t.notifications.len() - 1,
            body,
            mode,
            then: None,
        })
    }

    fn spawn_delivery(&self, o: Outgoing) {
        // Deliveries outlive the request: they need the Arc. Handlers and `pay` hold one.
        if let Some(sim) = self.me.upgrade() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(sim.deliver(o));
            }
        }
    }

    /// Send one notification; `Ok` iff the merchant answered 200 with body exactly
    /// `success`.
    async fn send_notification(&self, url: &str, body: &str) -> Result<(), String> {
        let mut resp = self
            .http
            .post(url)
            .header(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body.to_owned())
            .timeout(self.cfg.notify_timeout)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let mut reply = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("transport: {e}"))? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err("reply too large".into());
            }
            reply.extend_from_slice(&chunk);
        }
        if status == StatusCode::OK && reply == b"success" {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&reply);
            let snippet: String = text.chars().take(64).collect();
            Err(format!("HTTP {}: {snippet:?}", status.as_u16()))
        }
    }

    /// Deliver on the retry schedule, then whatever was queued behind it (reorder).
    async fn deliver(self: Arc<Self>, first: Outgoing) {
        let mut next = Some(first);
        while let Some(o) = next.take() {
            self.deliver_one(&o).await;
            next = o.then.map(|b| *b);
        }
    }

    async fn deliver_one(&self, o: &Outgoing) {
        if let NotifyMode::Delay(d) = o.mode {
            tokio::time::sleep(d).await;
        }
        let copies: u32 = if o.mode == NotifyMode::Duplicate {
            2
        } else {
            1
        };
        for (round, delay) in self.cfg.retry_schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            let results = if copies == 2 {
                let (a, b) = tokio::join!(
                    self.send_notification(&o.url, &o.body),
                    self.send_notification(&o.url, &o.body)
                );
                vec![a, b]
            } else {
                vec![self.send_notification(&o.url, &o.body).await]
            };
            let ok = results.iter().any(Result::is_ok);
            let last_error = results.into_iter().filter_map(Result::err).next_back();
            {
                let mut st = self.lock();
                if let Some(r) = st
                    .trades
                    .get_mut(&o.out_trade_no)
                    .and_then(|t| t.notifications.get_mut(o.index))
                {
                    r.attempts += copies;
                    r.delivered |= ok;
                    if let Some(e) = &last_error {
                        r.last_error = Some(e.clone());
                    }
                }
            }
            if ok {
                tracing::debug!(trade = %o.out_trade_no, round, "alipay notification delivered");
                return;
            }
            tracing::info!(trade = %o.out_trade_no, round, error = ?last_error,
                "alipay notification failed");
        }
        tracing::warn!(trade = %o.out_trade_no, "alipay notification retries exhausted");
    }
}

// ---- request checks and business logic -------------------------------------------------

fn is_browser_method(m: &str) -> bool {
    m == "alipay.trade.page.pay" || m == "alipay.trade.wap.pay"
}

fn valid_out_trade_no(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Fields of a successful answer, after `code` and `msg`.
type Answer = Result<Fields, ApiErr>;

impl AlipaySim {
    /// The request checks every method shares (A.1, A.2; checklist F), in the gateway's order.
    fn check_common(&self, params: &[(String, String)]) -> Result<(), ApiErr> {
        let get = |k: &str| field(params, k).filter(|v| !v.is_empty());
        let required = [
            ("app_id", "isv.missing-app-id", "缺少AppID参数"),
            ("sign", "isv.missing-signature", "缺少签名参数"),
            (
                "sign_type",
                "isv.missing-signature-type",
                "缺少签名类型参数",
            ),
            ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
            ("version", "isv.missing-version", "缺少版本参数"),
            ("charset", "isv.missing-charset", "缺少字符集参数"),
        ];
        for (k, sub, msg) in required {
            if get(k).is_none() {
                return Err(err("40001", sub, msg));
            }
        }
        if get("app_id") != Some(self.cfg.app_id.as_str()) {
            return Err(err("40002", "isv.invalid-app-id", "无效的AppID参数"));
        }
        let Some(sign_type) = get("sign_type").and_then(AlipaySignType::parse) else {
            return Err(err("40002", "isv.invalid-signature-type", "无效签名类型"));
        };
        if !get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) {
            return Err(err("40002", "isv.invalid-charset", "字符集错误"));
        }
        if get("format").is_some_and(|f| !f.eq_ignore_ascii_case("JSON")) {
            return Err(err("40002", "isv.invalid-format", "无效的数据格式"));
        }
        if get("version") != Some("1.0") {
            return Err(err("40002", "isv.invalid-version", "无效的版本号"));
        }
        let window = self.settings().timestamp_window;
        let ts = get("timestamp").and_then(wire::parse_beijing_time);
        let fresh = match (ts, window) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(ts), Some(w)) => {
                (ts - now_ms()).unsigned_abs() <= u64::try_from(w.as_millis()).unwrap_or(u64::MAX)
            }
        };
        if !fresh {
            return Err(err("40002", "isv.invalid-timestamp", "非法的时间戳参数"));
        }
        if !wire::verify_params(
            &self.cfg.merchant_public_key,
            sign_type,
            params,
            REQUEST_UNSIGNED,
        ) {
            let content = request_sign_content(params);
            return Err(err(
                "40002",
                "isv.invalid-signature",
                format!(
                    "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}"
                ),
            ));
        }
        Ok(())
    }

    /// The signed JSON answer (A.3) to an API call.
    fn respond(
        &self,
        node: &str,
        sign_type: AlipaySignType,
        answer: Answer,
        fault: Option<&Fault>,
    ) -> Response {
        let answer = match fault {
            Some(Fault::LoseResponse) => Err(err("20000", "isp.unknow-error", "系统繁忙")),
            _ => answer,
        };
        let fields: Fields = match answer {
            Ok(f) => {
                let mut all: Fields = vec![("code", s("10000")), ("msg", s("Success"))];
                all.extend(f);
                all
            }
            Err(e) => vec![
                ("code", s(e.code)),
                ("msg", s(e.msg)),
                ("sub_code", s(e.sub_code)),
                ("sub_msg", s(e.sub_msg)),
            ],
        };
        let body = match fault {
            Some(Fault::Unsigned) => {
                let name = Value::String(node.to_owned()).to_string();
                Ok(format!("{{{name}:{}}}", wire::compact_json_object(&fields)))
            }
            Some(Fault::ForgeSignature) => {
                let mut other = fields.clone();
                other.push(("forged", s("yes")));
                // The signature of other content, attached to these fields.
                build_response(&self.cfg.gateway_key, sign_type, node, &other).and_then(|b| {
                    let good = build_response(&self.cfg.gateway_key, sign_type, node, &fields)?;
                    let sig_at = |x: &str| x.rfind(",\"sign\":").unwrap_or(x.len());
                    Ok(format!("{}{}", &good[..sig_at(&good)], &b[sig_at(&b)..]))
                })
            }
            _ => build_response(&self.cfg.gateway_key, sign_type, node, &fields),
        };
        match body {
            Ok(b) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
                b,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }

    /// Find the trade a business request names (`trade_no` wins over `out_trade_no`),
    /// expiring it first if its time is up.
    fn find_trade<'a>(
        &self,
        st: &'a mut SimState,
        biz: &serde_json::Map<String, Value>,
        out: &mut Vec<Outgoing>,
    ) -> Result<&'a mut Trade, ApiErr> {
        let key = if let Some(trade_no) = biz_str(biz, "trade_no") {
            st.trades
                .values()
                .find(|t| t.trade_no == trade_no)
                .map(|t| t.out_trade_no.clone())
        } else if let Some(o) = biz_str(biz, "out_trade_no") {
            Some(o.to_owned())
        } else {
            return Err(invalid("out_trade_no"));
        };
        let t = key
            .and_then(|k| st.trades.get_mut(&k))
            .ok_or_else(not_exist)?;
        out.extend(self.expire_locked(t, now_ms()));
        Ok(t)
    }

    fn new_trade(
        &self,
        method: &str,
        out_trade_no: &str,
        subject: &str,
        total: Money,
        params: &[(String, String)],
        expire_ms: Option<i64>,
    ) -> Trade {
        let now = now_ms();
        let date: String = bj(now)
            .chars()
            .filter(char::is_ascii_digit)
            .take(8)
            .collect();
        Trade {
            out_trade_no: out_trade_no.to_owned(),
            trade_no: format!("{date}22001{}", random_digits(15)),
            method: method.to_owned(),
            subject: subject.to_owned(),
            total,
            notify_url: field(params, "notify_url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            return_url: field(params, "return_url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            expire_ms,
            sign_type: field(params, "sign_type")
                .and_then(AlipaySignType::parse)
                .unwrap_or(AlipaySignType::Rsa2),
            token: random_token(),
            visible: false,
            status: Status::WaitBuyerPay,
            created_ms: now,
            paid_ms: None,
            paid: None,
            refunds: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// Validate the order fields of a create call; `(out_trade_no, subject, total, expiry)`.
    fn order_fields(
        biz: &serde_json::Map<String, Value>,
        default_ttl_ms: i64,
    ) -> Result<(String, String, Money, Option<i64>), ApiErr> {
        let out_trade_no = biz_str(biz, "out_trade_no")
            .filter(|o| valid_out_trade_no(o))
            .ok_or_else(|| invalid("out_trade_no"))?;
        let total = parse_amount(biz_str(biz, "total_amount"), "total_amount")?;
        let subject = biz_str(biz, "subject")
            .filter(|s| s.chars().count() <= 256)
            .ok_or_else(|| invalid("subject"))?;
        let expire = match (biz_str(biz, "time_expire"), biz_str(biz, "timeout_express")) {
            (Some(t), _) => {
                Some(wire::parse_beijing_time(t).ok_or_else(|| invalid("time_expire"))?)
            }
            (None, Some(t)) => Some(now_ms().saturating_add(
                parse_timeout_express(t).ok_or_else(|| invalid("timeout_express"))?,
            )),
            (None, None) => Some(now_ms() + default_ttl_ms),
        };
        Ok((out_trade_no.to_owned(), subject.to_owned(), total, expire))
    }

    /// Create-or-reuse under the lock (A.5 precreate/page/wap semantics for a known
    /// `out_trade_no`).
    fn upsert_trade<'a>(
        &self,
        st: &'a mut SimState,
        method: &str,
        biz: &serde_json::Map<String, Value>,
        params: &[(String, String)],
        out: &mut Vec<Outgoing>,
    ) -> Result<&'a mut Trade, ApiErr> {
        let default_ttl = if method == "alipay.trade.precreate" {
            2 * 3_600_000
        } else {
            15 * 86_400_000
        };
        let (out_trade_no, subject, total, expire) = Self::order_fields(biz, default_ttl)?;
        if !st.trades.contains_key(&out_trade_no) {
            let t = self.new_trade(method, &out_trade_no, &subject, total, params, expire);
            st.tokens.insert(t.token.clone(), out_trade_no.clone());
            st.trades.insert(out_trade_no.clone(), t);
        }
        let t = st.trades.get_mut(&out_trade_no).ok_or_else(not_exist)?;
        out.extend(self.expire_locked(t, now_ms()));
        match t.status {
            Status::Success | Status::Finished => Err(acq("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")),
            Status::Closed => Err(acq("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
            Status::WaitBuyerPay if t.total != total => {
                Err(acq("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"))
            }
            Status::WaitBuyerPay => Ok(t),
        }
    }

    fn dispatch(
        &self,
        st: &mut SimState,
        method: &str,
        params: &[(String, String)],
        biz: &serde_json::Map<String, Value>,
        base: &str,
        out: &mut Vec<Outgoing>,
    ) -> Answer {
        match method {
            "alipay.trade.precreate" => {
                let t = self.upsert_trade(st, method, biz, params, out)?;
                Ok(vec![
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("qr_code", s(format!("{base}/sim/alipay/qr/{}", t.token))),
                ])
            }
            "alipay.trade.query" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                let amount = t.paid.unwrap_or(t.total).to_major_string();
                let paid = t.paid.map(Money::to_major_string);
                let mut f: Fields = vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("buyer_logon_id", s("158****1234")),
                    ("trade_status", s(t.status.api())),
                    ("total_amount", s(&amount)),
                    ("buyer_pay_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("point_amount", s("0.00")),
                    ("invoice_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("receipt_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("buyer_user_id", s("2088102177846880")),
                    ("subject", s(&t.subject)),
                ];
                if let (Some(p), Some(at)) = (&paid, t.paid_ms) {
                    f.push(("send_pay_date", s(bj(at))));
                    f.push((
                        "fund_bill_list",
                        serde_json::json!([{"fund_channel": "ALIPAYACCOUNT", "amount": p}]),
                    ));
                }
                Ok(f)
            }
            "alipay.trade.close" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                if t.status != Status::WaitBuyerPay {
                    return Err(acq("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"));
                }
                t.status = Status::Closed;
                out.extend(self.notification_locked(t, "close", NotifyMode::Normal, &[]));
                Ok(vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                ])
            }
            "alipay.trade.cancel" => {
                let t = self.find_trade(st, biz, out)?;
                let action = match t.status {
                    Status::Finished => return Err(acq("ACQ.TRADE_HAS_FINISHED", "交易已完结")),
                    Status::Closed => "close",
                    Status::WaitBuyerPay => {
                        t.status = Status::Closed;
                        if t.visible {
                            out.extend(self.notification_locked(
                                t,
                                "close",
                                NotifyMode::Normal,
                                &[],
                            ));
                        }
                        t.visible = true;
                        "close"
                    }
                    Status::Success => {
                        let now = now_ms();
                        let rest = t.paid.unwrap_or(t.total).minor() - t.refunded_minor();
                        if let Ok(amount) = Money::new(rest, Currency::Cny) {
                            if rest > 0 {
                                t.refunds.push(Refund {
                                    out_request_no: t.out_trade_no.clone(),
                                    amount,
                                    at_ms: now,
                                });
                            }
                        }
                        t.status = Status::Closed;
                        let fee = Money::new(t.refunded_minor(), Currency::Cny)
                            .map(Money::to_major_string)
                            .unwrap_or_default();
                        out.extend(self.notification_locked(
                            t,
                            "refund",
                            NotifyMode::Normal,
                            &[
                                ("refund_fee", fee),
                                ("gmt_refund", format!("{}.000", bj(now))),
                            ],
                        ));
                        "refund"
                    }
                };
                Ok(vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("retry_flag", s("N")),
                    ("action", s(action)),
                ])
            }
            "alipay.trade.refund" => self.refund_locked(st, biz, out),
            "alipay.trade.fastpay.refund.query" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                let req_no = biz_str(biz, "out_request_no").unwrap_or(&t.out_trade_no);
                let mut f: Fields = vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("out_request_no", s(req_no)),
                ];
                if let Some(r) = t.refunds.iter().find(|r| r.out_request_no == req_no) {
                    let total = t.paid.unwrap_or(t.total).to_major_string();
                    f.extend([
                        ("total_amount", s(total)),
                        ("refund_amount", s(r.amount.to_major_string())),
                        ("refund_status", s("REFUND_SUCCESS")),
                        ("gmt_refund_pay", s(format!("{}.000", bj(r.at_ms)))),
                        ("send_back_fee", s(r.amount.to_major_string())),
                    ]);
                }
                Ok(f)
            }
            _ => Err(err("40002", "isv.invalid-method", "不存在的方法名")),
        }
    }

    fn refund_locked(
        &self,
        st: &mut SimState,
        biz: &serde_json::Map<String, Value>,
        out: &mut Vec<Outgoing>,
    ) -> Answer {
        let t = self.find_trade(st, biz, out)?;
        if !t.visible {
            return Err(not_exist());
        }
        let amount = parse_amount(biz_str(biz, "refund_amount"), "refund_amount")?;
        let explicit_no = biz_str(biz, "out_request_no");
        let req_no = explicit_no.unwrap_or(&t.out_trade_no).to_owned();
        let answer = |t: &Trade, fund_change: &str, sent_back: Money, at: i64| -> Fields {
            let fee = Money::new(t.refunded_minor(), Currency::Cny)
                .map(Money::to_major_string)
                .unwrap_or_default();
            vec![
                ("trade_no", s(&t.trade_no)),
                ("out_trade_no", s(&t.out_trade_no)),
                ("buyer_logon_id", s("158****1234")),
                ("fund_change", s(fund_change)),
                ("refund_fee", s(fee)),
                ("send_back_fee", s(sent_back.to_major_string())),
                ("gmt_refund_pay", s(format!("{}.000", bj(at)))),
            ]
        };
        if let Some(r) = t.refunds.iter().find(|r| r.out_request_no == req_no) {
            // A replay: same refund, no money moves (A.5 fund_change=N).
            let (amt, at) = (r.amount, r.at_ms);
            return Ok(answer(t, "N", amt, at));
        }
        let paid = match t.status {
            Status::WaitBuyerPay => return Err(acq("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")),
            Status::Finished => return Err(acq("ACQ.TRADE_HAS_FINISHED", "交易已完结")),
            Status::Closed => return Err(acq("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
            Status::Success => t.paid.unwrap_or(t.total),
        };
        if explicit_no.is_none() && amount != paid {
            return Err(acq(
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "撤销或退款金额与订单金额不一致",
            ));
        }
        if t.refunded_minor() + amount.minor() > paid.minor() {
            return Err(acq("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限"));
        }
        let now = now_ms();
        t.refunds.push(Refund {
            out_request_no: req_no.clone(),
            amount,
            at_ms: now,
        });
        let fee = Money::new(t.refunded_minor(), Currency::Cny)
            .map(Money::to_major_string)
            .unwrap_or_default();
        let extra = [
            ("refund_fee", fee),
            ("gmt_refund", format!("{}.000", bj(now))),
            ("out_biz_no", req_no),
        ];
        if t.refunded_minor() == paid.minor() {
            t.status = Status::Closed;
        }
        out.extend(self.notification_locked(t, "refund", NotifyMode::Normal, &extra));
        Ok(answer(t, "Y", amount, now))
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(b) = self.settings().public_base.clone() {
            return b;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    }
}

fn merged_params(
    method: &HttpMethod,
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let mut params = parse_form(query.unwrap_or("").as_bytes()).map_err(|e| e.to_string())?;
    if method == HttpMethod::POST && !body.is_empty() {
        for (k, v) in parse_form(body).map_err(|e| e.to_string())? {
            if field(&params, &k).is_some() {
                return Err(format!("duplicate field {}", wire::clip(&k, 32)));
            }
            params.push((k, v));
        }
    }
    Ok(params)
}

async fn gateway(
    State(sim): State<Arc<AlipaySim>>,
    method: HttpMethod,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match merged_params(&method, query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => {
            return sim.respond(
                ERROR_NODE,
                AlipaySignType::Rsa2,
                Err(err(
                    "40002",
                    "isv.invalid-parameter",
                    format!("参数无效: {e}"),
                )),
                None,
            )
        }
    };
    let sign_type = field(&params, "sign_type")
        .and_then(AlipaySignType::parse)
        .unwrap_or(AlipaySignType::Rsa2);
    let m = field(&params, "method").unwrap_or("").to_owned();
    if m.is_empty() {
        let e = err("40001", "isv.missing-method", "缺少方法名参数");
        return sim.respond(ERROR_NODE, sign_type, Err(e), None);
    }
    if !METHODS.contains(&m.as_str()) {
        let e = err("40002", "isv.invalid-method", "不存在的方法名");
        return sim.respond(ERROR_NODE, sign_type, Err(e), None);
    }
    let node = response_node_name(&m);
    let browser = is_browser_method(&m);
    if let Err(e) = sim.check_common(&params) {
        return if browser {
            pages::gateway_error(&e)
        } else {
            sim.respond(&node, sign_type, Err(e), None)
        };
    }
    let fault = sim.take_fault(&m);
    match &fault {
        Some(Fault::Sleep(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Error {
            code,
            msg,
            sub_code,
            sub_msg,
        }) => {
            let mut e = err(code, sub_code, sub_msg.clone());
            if !msg.is_empty() {
                e.msg.clone_from(msg);
            }
            return if browser {
                pages::gateway_error(&e)
            } else {
                sim.respond(&node, sign_type, Err(e), None)
            };
        }
        Some(Fault::RetryLater) if m == "alipay.trade.cancel" => {
            return sim.respond(&node, sign_type, Ok(vec![("retry_flag", s("Y"))]), None);
        }
        _ => {}
    }
    let biz: serde_json::Map<String, Value> = match field(&params, "biz_content")
        .map(serde_json::from_str::<serde_json::Map<String, Value>>)
    {
        Some(Ok(b)) => b,
        _ => {
            let e = invalid("biz_content");
            return if browser {
                pages::gateway_error(&e)
            } else {
                sim.respond(&node, sign_type, Err(e), None)
            };
        }
    };
    let base = sim.base_url(&headers);
    if browser {
        return sim.cashier(&m, &params, &biz, &headers);
    }
    let mut out = Vec::new();
    let answer = {
        let mut st = sim.lock();
        sim.dispatch(&mut st, &m, &params, &biz, &base, &mut out)
    };
    for o in out {
        sim.spawn_delivery(o);
    }
    sim.respond(&node, sign_type, answer, fault.as_ref())
}
