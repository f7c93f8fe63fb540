//! Gateway side of WeChat Pay API v3 (`protocols.md` B; byte-level description in
//! `kami_pay::wechatpay`), faithful to the checklist in `protocols.md` F.
//!
//! Routes mirror the API under `/sim/wechatpay`, so a channel's `api_base` is
//! `http://HOST/sim/wechatpay`:
//! - `POST /v3/pay/transactions/native` → `{"code_url":"weixin://wxpay/bizpayurl?pr=TOKEN"}`,
//!   `POST /v3/pay/transactions/h5` → `{"h5_url":"http://HOST/sim/wechatpay/h5/TOKEN"}`;
//!   the same `out_trade_no` with the same parameters answers the same URL, with other
//!   parameters `400 INVALID_REQUEST`, once paid `400 ORDERPAID`, once closed `400 ORDER_CLOSED`.
//! - `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` and `GET …/id/{transaction_id}?mchid=`
//!   → the transaction (B.3 fields; `404 ORDER_NOT_EXIST` when unknown).
//! - `POST …/out-trade-no/{no}/close` → `204` (`400 ORDERPAID` when paid, `404
//!   ORDER_NOT_EXIST` when unknown).
//! - `POST /v3/refund/domestic/refunds`, `GET /v3/refund/domestic/refunds/{out_refund_no}`:
//!   idempotent per `out_refund_no`; a new refund is `PROCESSING` for a configurable number of
//!   later looks (default 1), then `SUCCESS`; refunds never exceed the paid total.
//! - `GET /v3/bill/tradebill?bill_date=` and `GET /v3/billdownload/file?token=`: the day's
//!   trade bill (layout `ALL`), byte-faithful (module `bill`).
//!
//! Every API request must carry a valid B.1 `Authorization` (parameters in any order, the
//! five-line message over the path+query actually received, ±300 s, the configured `mchid` and
//! merchant serial) or gets `401 {"code":"SIGN_ERROR",...}`. Every answer (errors included) is
//! signed per B.2 with the platform key: `Wechatpay-Timestamp/Nonce/Signature/Serial`
//! (`Serial` = the `PUB_KEY_ID_…`), `Wechatpay-Signature-Type`, `Request-ID`; 204 answers sign
//! `TS\nNONCE\n\n`.
//!
//! Buyers: a `code_url` cannot be opened by a browser, so `/sim/wechatpay/scan/{TOKEN}` is its
//! "phone" ([`scan_page_url`]); `/sim/wechatpay/h5/{TOKEN}` is the H5 cashier (a
//! `redirect_url` query parameter becomes the "return to shop" link). Both pages show the
//! order and a Pay button with the test controls of [`PayOptions`], plus the global controls
//! ([`WechatSim::fail_next_creates`] …); every control is also a pub method.
//!
//! Notifications (B.3): POST JSON `{id, create_time, resource_type: encrypt-resource,
//! event_type: TRANSACTION.SUCCESS, summary, resource{original_type: transaction, algorithm:
//! AEAD_AES_256_GCM, ciphertext, associated_data: transaction, nonce}}` with signed headers,
//! re-signed per attempt, following the retry schedule until the merchant answers 200 or 204.

mod api;
mod bill;
mod demo;
mod jsapi;
mod pages;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use kami_core::clock::{self, SharedClock};
use kami_core::{Currency, Money};
use kami_pay::crypto::{RsaSigner, RsaVerifier};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::common::bill::BillFaults;
use crate::common::faults::{CreationFaults, Held as HeldQueue, Release};
use crate::common::notify::{ok_or_no_content, Notifier, Outbound};
pub use crate::common::NotifyMode;
pub use demo::{demo_pair, scan_page_url, DemoPair};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest API request body the simulator accepts.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Path prefix of every route.
pub const PREFIX: &str = "/sim/wechatpay";
/// The stand-in `WeixinJSBridge` script (demo and tests; see `jsapi`).
pub const BRIDGE_SCRIPT: &str = "/sim/wechatpay/jsapi/bridge.js";
/// Scheme + path of the `code_url`s the simulator hands out (token in `pr`).
pub const CODE_URL_PREFIX: &str = "weixin://wxpay/bizpayurl?pr=";

/// Simulator settings (keys of both sides, notification schedule).
pub struct WechatSimConfig {
    pub mchid: String,
    pub appid: String,
    /// Serial of the merchant API certificate the requests must name.
    pub merchant_serial_no: String,
    /// Verifies the merchant's request signatures.
    pub merchant_public_key: RsaVerifier,
    /// Signs responses and notifications.
    pub platform_key: RsaSigner,
    /// `PUB_KEY_ID_…`, sent as `Wechatpay-Serial`.
    pub platform_key_id: String,
    /// The 32-byte APIv3 key that encrypts notification resources.
    pub apiv3_key: Vec<u8>,
    /// Delay before each notification attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one notification request.
    pub notify_timeout: Duration,
    /// The Official Account's AppSecret (OAuth `sns/oauth2/access_token`).
    pub appsecret: String,
}

impl std::fmt::Debug for WechatSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSimConfig")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("platform_key_id", &self.platform_key_id)
            .field("apiv3_key", &"<redacted>")
            .field("retry_schedule", &self.retry_schedule)
            .field("notify_timeout", &self.notify_timeout)
            .field("appsecret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WechatSimConfig {
    /// WeChat's documented schedule (B.3): immediately, then 15s/15s/30s/3m/10m/20m/30m/30m/
    /// 30m/60m/3h/3h/3h/6h/6h.
    pub fn default_retry_schedule() -> Vec<Duration> {
        [
            0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600,
            21600,
        ]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
    }
}

/// A matching simulator and channel configuration with freshly generated keys (demo, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayOptions {
    /// Fen actually paid (and reported as `amount.total`); default the order's total.
    pub amount: Option<i64>,
    pub notify: NotifyMode,
    /// First send a `WECHATPAY/SIGNTEST/` probe, which the merchant must refuse.
    pub signtest_probe: bool,
    /// Sign the first attempt with a timestamp ten minutes old, which the merchant must refuse.
    pub stale_first: bool,
}

/// Faults injected into every signed API answer while set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFault {
    #[default]
    None,
    /// `Wechatpay-Signature: WECHATPAY/SIGNTEST/…`.
    SignTest,
    /// Correctly signed, but with a timestamp ten minutes old.
    Stale,
    /// A signature over other bytes.
    BadSignature,
    /// `Wechatpay-Serial` names a key the merchant does not have.
    WrongSerial,
    /// No signature headers at all.
    Unsigned,
}

impl ResponseFault {
    fn parse(s: &str) -> Option<ResponseFault> {
        Some(match s {
            "" | "none" => ResponseFault::None,
            "signtest" => ResponseFault::SignTest,
            "stale" => ResponseFault::Stale,
            "bad_signature" => ResponseFault::BadSignature,
            "wrong_serial" => ResponseFault::WrongSerial,
            "unsigned" => ResponseFault::Unsigned,
            _ => return None,
        })
    }
}

/// Delivery bookkeeping of one trade's payment notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Notification requests sent (duplicates count; probes do not).
    pub attempts: u32,
    /// The merchant answered 200/204 to a valid notification.
    pub delivered: bool,
    pub last_error: Option<String>,
    /// Probes sent, and whether the merchant wrongly accepted one.
    pub probes: u32,
    pub probe_accepted: bool,
    /// The merchant wrongly accepted a stale-timestamped attempt.
    pub stale_accepted: bool,
    /// Held until [`WechatSim::release_held`].
    pub held: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Native,
    H5,
    /// `POST /v3/pay/transactions/jsapi`: `url` holds the `prepay_id`.
    Jsapi,
}

impl Kind {
    fn trade_type(self) -> &'static str {
        match self {
            Kind::Native => "NATIVE",
            Kind::H5 => "MWEB",
            Kind::Jsapi => "JSAPI",
        }
    }
}

#[derive(Debug, Clone)]
struct Paid {
    transaction_id: String,
    total: i64,
    success_time: i64,
    openid: String,
}

#[derive(Debug)]
struct Trade {
    out_trade_no: String,
    kind: Kind,
    description: String,
    notify_url: String,
    total: i64,
    time_expire: Option<i64>,
    url: String,
    state: &'static str,
    paid: Option<Paid>,
    /// Sum of all refunds accepted (processing or settled).
    refund_reserved: i64,
    stats: NotifyStats,
    /// JSAPI: `payer.openid` (only that WeChat user can pay it).
    payer_openid: Option<String>,
}

#[derive(Debug, Clone)]
struct Refund {
    refund_id: String,
    out_refund_no: String,
    out_trade_no: String,
    amount: i64,
    status: &'static str,
    countdown: u32,
    create_time: i64,
    success_time: Option<i64>,
}

/// A notification kept back by [`NotifyMode::Hold`].
#[derive(Debug)]
struct Held {
    out_trade_no: String,
    url: String,
    body: String,
}

#[derive(Debug, Default)]
struct Controls {
    creation: CreationFaults,
    response_fault: ResponseFault,
    refund_polls: u32,
    public_base: Option<String>,
    bill: BillFaults,
    /// Queries answer `500 SYSTEM_ERROR` while set.
    fail_queries: bool,
}

#[derive(Debug, Default)]
struct Inner {
    trades: HashMap<String, Trade>,
    tokens: HashMap<String, String>,
    refunds: HashMap<String, Refund>,
    /// Refunds made in the merchant portal (no `out_refund_no`).
    portal_refunds: Vec<Refund>,
    /// Bill download token → (the file, expiry in unix ms).
    bill_files: HashMap<String, (Vec<u8>, i64)>,
    held: HeldQueue<Held>,
    /// OAuth codes handed out by the authorize page.
    oauth: jsapi::OAuthState,
}

/// The WeChat Pay v3 gateway simulator. Share it as `Arc<WechatSim>`.
pub struct WechatSim {
    cfg: WechatSimConfig,
    clock: SharedClock,
    notifier: Notifier,
    inner: Mutex<Inner>,
    /// Separate from `inner` so answers can be built while `inner` is held (lock order:
    /// `inner`, then `controls`).
    controls: Mutex<Controls>,
}

impl std::fmt::Debug for WechatSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSim")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why a payment attempt was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayRefusal {
    UnknownTrade,
    Closed,
    Expired,
    BadAmount,
}

impl std::fmt::Display for PayRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PayRefusal {}

impl PayRefusal {
    fn message(&self) -> &'static str {
        match self {
            PayRefusal::UnknownTrade => "The order does not exist.",
            PayRefusal::Closed => "The order is closed.",
            PayRefusal::Expired => "The order has expired.",
            PayRefusal::BadAmount => "The amount must be a positive number of fen.",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PayRefusal::UnknownTrade => StatusCode::NOT_FOUND,
            PayRefusal::Closed => StatusCode::CONFLICT,
            PayRefusal::Expired => StatusCode::GONE,
            PayRefusal::BadAmount => StatusCode::BAD_REQUEST,
        }
    }
}

fn yuan(fen: i64) -> String {
    Money::new(fen, Currency::Cny)
        .map(|m| m.to_major_string())
        .unwrap_or_else(|_| fen.to_string())
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

impl WechatSim {
    /// A simulator on the wall clock.
    pub fn new(cfg: WechatSimConfig) -> Arc<WechatSim> {
        Self::with_clock(cfg, clock::system())
    }

    /// A simulator reading the time (signatures, expiry, payment and refund times) from
    /// `clock`.
    pub fn with_clock(cfg: WechatSimConfig, clock: SharedClock) -> Arc<WechatSim> {
        let notifier = Notifier::new(
            "wechatpay",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            ok_or_no_content,
        );
        Arc::new(WechatSim {
            cfg,
            clock,
            notifier,
            inner: Mutex::new(Inner::default()),
            controls: Mutex::new(Controls {
                refund_polls: 1,
                ..Controls::default()
            }),
        })
    }

    /// Routes under `/sim/wechatpay/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        let p = |s: &str| format!("{PREFIX}{s}");
        self.api_routes(PREFIX)
            .route(
                &p("/scan/{token}"),
                get(pages::scan_page).post(pages::page_submit),
            )
            .route(
                &p("/h5/{token}"),
                get(pages::h5_page).post(pages::page_submit),
            )
            .merge(jsapi::routes())
            .with_state(Arc::clone(self))
    }

    /// Only the API, at the root (`/v3/...`) like the real host: for SDKs that sign the
    /// path without any prefix (e.g. wechatpayv3 with its `_gate_way` pointed here).
    pub fn api_root_router(self: &Arc<Self>) -> Router {
        self.api_routes("").with_state(Arc::clone(self))
    }

    fn api_routes(&self, prefix: &str) -> Router<Arc<WechatSim>> {
        let p = |s: &str| format!("{prefix}{s}");
        Router::new()
            .route(&p("/v3/pay/transactions/native"), post(api::api_native))
            .route(&p("/v3/pay/transactions/h5"), post(api::api_h5))
            .route(&p("/v3/pay/transactions/jsapi"), post(api::api_jsapi))
            .route(
                &p("/v3/pay/transactions/out-trade-no/{no}"),
                get(api::api_query_out_trade_no),
            )
            .route(
                &p("/v3/pay/transactions/id/{id}"),
                get(api::api_query_transaction_id),
            )
            .route(
                &p("/v3/pay/transactions/out-trade-no/{no}/close"),
                post(api::api_close),
            )
            .route(&p("/v3/refund/domestic/refunds"), post(api::api_refund))
            .route(
                &p("/v3/refund/domestic/refunds/{no}"),
                get(api::api_refund_query),
            )
            .route(&p("/v3/bill/tradebill"), get(bill::api_tradebill))
            .route(&p("/v3/billdownload/file"), get(bill::api_bill_download))
    }

    pub fn config(&self) -> &WechatSimConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- test controls -----------------------------------------------------------------

    /// The next `n` order creations fail with `500 SYSTEM_ERROR`.
    pub fn fail_next_creates(&self, n: u32) {
        self.controls().creation.fail_next = n;
    }

    /// Order creation answers only after this delay.
    pub fn set_create_delay(&self, d: Duration) {
        self.controls().creation.delay = d;
    }

    /// Inject a fault into every signed API answer (until reset with [`ResponseFault::None`]).
    pub fn set_response_fault(&self, fault: ResponseFault) {
        self.controls().response_fault = fault;
    }

    /// New refunds stay `PROCESSING` for this many later looks (create replays and queries);
    /// 0 settles them at once. Default 1.
    pub fn set_refund_processing_polls(&self, n: u32) {
        self.controls().refund_polls = n;
    }

    /// Base URL for `h5_url`s (default: `http://` + the request's `Host`).
    pub fn set_public_base(&self, base: Option<String>) {
        self.controls().public_base = base.map(|b| b.trim_end_matches('/').to_owned());
    }

    /// Force a trade's `trade_state` (e.g. `USERPAYING`, `PAYERROR`, `REVOKED`); false if
    /// the trade or state is unknown.
    pub fn force_state(&self, out_trade_no: &str, state: &str) -> bool {
        const STATES: [&str; 7] = [
            "SUCCESS",
            "REFUND",
            "NOTPAY",
            "CLOSED",
            "REVOKED",
            "USERPAYING",
            "PAYERROR",
        ];
        let Some(state) = STATES.into_iter().find(|s| *s == state) else {
            return false;
        };
        match self.lock().trades.get_mut(out_trade_no) {
            Some(t) => {
                t.state = state;
                true
            }
            None => false,
        }
    }

    /// Deliver every held notification, newest first and one after the other (each through
    /// its retry schedule). Returns how many.
    pub fn release_held(self: &Arc<Self>) -> usize {
        let held = {
            let mut inner = self.lock();
            // Newest first, reordering notifications across trades.
            let held = inner.held.release(Release::Reversed);
            for h in &held {
                if let Some(t) = inner.trades.get_mut(&h.out_trade_no) {
                    t.stats.held = false;
                }
            }
            held
        };
        let n = held.len();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            for h in held {
                // Sequential, so the order of arrival is the reversed order.
                me.clone()
                    .deliver(h.out_trade_no, h.url, h.body, PayOptions::default())
                    .await;
            }
        });
        n
    }

    // ---- inspection ----------------------------------------------------------------------

    /// The trade's `trade_state`, or `NOT_FOUND`.
    pub fn trade_state(&self, out_trade_no: &str) -> &'static str {
        self.lock()
            .trades
            .get(out_trade_no)
            .map_or("NOT_FOUND", |t| t.state)
    }

    /// Notification stats of a paid trade (`None` if never paid).
    pub fn notify_stats(&self, out_trade_no: &str) -> Option<NotifyStats> {
        self.lock()
            .trades
            .get(out_trade_no)
            .filter(|t| t.paid.is_some())
            .map(|t| t.stats.clone())
    }

    /// Fen refunded (settled) on a trade.
    pub fn refunded_total(&self, out_trade_no: &str) -> i64 {
        let inner = self.lock();
        inner
            .refunds
            .values()
            .chain(&inner.portal_refunds)
            .filter(|r| r.out_trade_no == out_trade_no && r.status == "SUCCESS")
            .map(|r| r.amount)
            .sum()
    }

    /// The trade a `code_url` / `h5_url` / token belongs to.
    pub fn trade_for_url(&self, url: &str) -> Option<String> {
        let token = url
            .strip_prefix(CODE_URL_PREFIX)
            .or_else(|| {
                url.split_once(&format!("{PREFIX}/h5/"))
                    .map(|(_, t)| t.split(['?', '#']).next().unwrap_or(""))
            })
            .unwrap_or(url);
        self.lock().tokens.get(token).cloned()
    }

    /// Pay a trade as the buyer would (idempotent once paid). Returns the `transaction_id`.
    pub fn pay(
        self: &Arc<Self>,
        out_trade_no: &str,
        opts: PayOptions,
    ) -> Result<String, PayRefusal> {
        let (transaction_id, delivery) = {
            let mut inner = self.lock();
            let trade = inner
                .trades
                .get_mut(out_trade_no)
                .ok_or(PayRefusal::UnknownTrade)?;
            if let Some(p) = &trade.paid {
                return Ok(p.transaction_id.clone());
            }
            match trade.state {
                "CLOSED" | "REVOKED" => return Err(PayRefusal::Closed),
                _ if trade.time_expire.is_some_and(|e| self.clock.now_secs() > e) => {
                    return Err(PayRefusal::Expired)
                }
                _ => {}
            }
            let total = opts.amount.unwrap_or(trade.total);
            if total < 1 || Money::new(total, Currency::Cny).is_err() {
                return Err(PayRefusal::BadAmount);
            }
            let paid = Paid {
                transaction_id: format!("4200{}", random_digits(24)),
                total,
                success_time: self.clock.now_secs(),
                openid: trade
                    .payer_openid
                    .clone()
                    .unwrap_or_else(|| format!("o{}", random_alnum(27))),
            };
            trade.paid = Some(paid.clone());
            trade.state = "SUCCESS";
            let plain = self.transaction_json(trade);
            let body = self.notification_body("TRANSACTION.SUCCESS", "支付成功", &plain);
            let delivery = match (opts.notify, body) {
                (NotifyMode::Drop, _) => None,
                (_, Ok(b)) => Some(b),
                (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot build wechatpay notification");
                    None
                }
            };
            let url = trade.notify_url.clone();
            let hold = opts.notify == NotifyMode::Hold;
            if hold && delivery.is_some() {
                trade.stats.held = true;
            }
            let delivery = match delivery {
                Some(body) if hold => {
                    inner.held.hold(Held {
                        out_trade_no: out_trade_no.to_owned(),
                        url,
                        body,
                    });
                    None
                }
                Some(body) => Some((url, body)),
                None => None,
            };
            (paid.transaction_id, delivery)
        };
        if let Some((url, body)) = delivery {
            tokio::spawn(Arc::clone(self).deliver(out_trade_no.to_owned(), url, body, opts));
        }
        Ok(transaction_id)
    }

    fn record(&self, out_trade_no: &str, f: impl FnOnce(&mut NotifyStats)) {
        if let Some(t) = self.lock().trades.get_mut(out_trade_no) {
            f(&mut t.stats);
        }
    }

    /// Deliver a payment notification per the schedule and the options: an optional
    /// SIGNTEST probe first, then attempts re-signed each time (the first one stale if asked),
    /// until the merchant answers 200 or 204 to a valid one.
    async fn deliver(
        self: Arc<Self>,
        out_trade_no: String,
        url: String,
        body: String,
        opts: PayOptions,
    ) {
        let outbound = |ts: i64, probe: bool| {
            let mut o = Outbound::post(&url, "application/json", body.clone());
            o.headers.push((
                "user-agent",
                "Mozilla/4.0 (kami WeChat Pay simulator)".to_owned(),
            ));
            o.headers
                .extend(self.sign_headers(body.as_bytes(), ts, probe));
            o
        };
        if let NotifyMode::Delay(d) = opts.notify {
            tokio::time::sleep(d).await;
        }
        if opts.signtest_probe {
            let r = self
                .notifier
                .send(&outbound(self.clock.now_secs(), true))
                .await;
            self.record(&out_trade_no, |s| {
                s.probes += 1;
                s.probe_accepted |= r.is_ok();
            });
        }
        let stale = |round: usize| opts.stale_first && round == 0;
        let mode = match opts.notify {
            NotifyMode::Delay(_) => NotifyMode::Normal,
            mode => mode,
        };
        self.notifier
            .deliver(
                &out_trade_no,
                mode,
                |round| {
                    let now = self.clock.now_secs();
                    Some(outbound(if stale(round) { now - 600 } else { now }, false))
                },
                |round| {
                    let stale = stale(round.index);
                    self.record(&out_trade_no, |s| {
                        s.attempts += round.sent;
                        s.stale_accepted |= round.ok && stale;
                        s.delivered |= round.ok && !stale;
                        if let Some(e) = &round.last_error {
                            s.last_error = Some(e.clone());
                        }
                    });
                    round.ok && !stale
                },
            )
            .await;
    }
}
