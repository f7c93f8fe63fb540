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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use kami_core::{ChannelId, Currency, Method, Money};
use kami_pay::crypto::{aes256gcm_encrypt, KeyError, RsaHash, RsaSigner, RsaVerifier};
use kami_pay::wechatpay::{
    format_cst, now_secs, parse_rfc3339, request_message, response_message, valid_out_refund_no,
    valid_out_trade_no, AuthorizationParams, PlatformKeys, WechatMode, WechatPayConfig,
    MAX_CLOCK_SKEW_SECS, RESOURCE_ALGORITHM, SIGNATURE_SCHEME, SIGNTEST_PREFIX,
};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest merchant reply body the simulator reads.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Largest API request body the simulator accepts.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Path prefix of every route.
pub const PREFIX: &str = "/sim/wechatpay";
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
pub struct DemoPair {
    pub sim: WechatSimConfig,
    pub channel: WechatPayConfig,
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

/// Generate a [`DemoPair`]: `api_base` is where the simulator is mounted, e.g.
/// `http://127.0.0.1:8080/sim/wechatpay`. Public-key mode, default retry schedule.
pub fn demo_pair(
    id: ChannelId,
    methods: Vec<Method>,
    api_base: &str,
    mode: WechatMode,
) -> Result<DemoPair, KeyError> {
    let merchant = RsaSigner::generate()?;
    let platform = RsaSigner::generate()?;
    let platform_verifier = platform.verifier()?;
    let mchid = format!("19{}", random_digits(8));
    let appid = format!("wx{}", random_alnum(16).to_ascii_lowercase());
    let serial = hex::encode_upper(rand::random::<[u8; 20]>());
    let key_id = format!("PUB_KEY_ID_01{}{}", mchid, random_digits(22));
    let apiv3_key = random_alnum(32).into_bytes();
    Ok(DemoPair {
        sim: WechatSimConfig {
            mchid: mchid.clone(),
            appid: appid.clone(),
            merchant_serial_no: serial.clone(),
            merchant_public_key: merchant.verifier()?,
            platform_key_id: key_id.clone(),
            apiv3_key: apiv3_key.clone(),
            retry_schedule: WechatSimConfig::default_retry_schedule(),
            notify_timeout: Duration::from_secs(5),
            platform_key: platform,
        },
        channel: WechatPayConfig {
            id,
            methods,
            priority: 0,
            api_base: api_base.to_owned(),
            mchid,
            appid,
            merchant_serial_no: serial,
            merchant_private_key: merchant,
            apiv3_key,
            platform: PlatformKeys::PublicKey {
                id: key_id,
                key: platform_verifier,
            },
            mode,
        },
    })
}

/// The scan page of a `code_url` the simulator issued: `{sim_base}/sim/wechatpay/scan/TOKEN`
/// (`sim_base` without trailing slash, `""` for a root-relative link). `None` for other URLs.
pub fn scan_page_url(sim_base: &str, code_url: &str) -> Option<String> {
    let token = code_url.strip_prefix(CODE_URL_PREFIX)?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(format!(
        "{}{PREFIX}/scan/{token}",
        sim_base.trim_end_matches('/')
    ))
}

/// How the payment notification is delivered (test control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    #[default]
    Normal,
    /// Paid but never notified (kami must find it by query/close).
    Drop,
    /// Every attempt sent twice concurrently.
    Duplicate,
    /// Delivery starts after this delay.
    Delay(Duration),
    /// Queued until [`WechatSim::release_held`], which sends the queue newest first
    /// (reordering notifications across trades).
    Hold,
}

/// Test controls for one payment.
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
}

impl Kind {
    fn trade_type(self) -> &'static str {
        match self {
            Kind::Native => "NATIVE",
            Kind::H5 => "MWEB",
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

#[derive(Debug)]
struct Held {
    out_trade_no: String,
    url: String,
    body: String,
}

#[derive(Debug, Default)]
struct Controls {
    fail_creates: u32,
    create_delay: Duration,
    response_fault: ResponseFault,
    refund_polls: u32,
    public_base: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    trades: HashMap<String, Trade>,
    tokens: HashMap<String, String>,
    refunds: HashMap<String, Refund>,
    held: Vec<Held>,
}

/// The WeChat Pay v3 gateway simulator. Share it as `Arc<WechatSim>`.
pub struct WechatSim {
    cfg: WechatSimConfig,
    http: reqwest::Client,
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

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn yuan(fen: i64) -> String {
    Money::new(fen, Currency::Cny)
        .map(|m| m.to_major_string())
        .unwrap_or_else(|_| fen.to_string())
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · WeChat Pay simulator</title>\
         <style>body{{font-family:sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}}\
         .amount{{font-size:2rem;font-weight:bold}}button{{font-size:1.1rem;padding:.4rem 1.5rem}}\
         fieldset{{margin:1rem 0}}label{{display:block;margin:.3rem 0}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n<p><small>kami WeChat Pay simulator — test payments \
         only, no real money moves.</small></p></body></html>\n",
        t = escape(title)
    )
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Order creation request (B.4); loose types so bad values get WeChat-style errors.
#[derive(Debug, Deserialize)]
struct OrderReq {
    appid: Option<String>,
    mchid: Option<String>,
    description: Option<String>,
    out_trade_no: Option<String>,
    time_expire: Option<String>,
    notify_url: Option<String>,
    amount: Option<OrderAmount>,
    scene_info: Option<SceneInfo>,
}

#[derive(Debug, Deserialize)]
struct OrderAmount {
    total: Option<i64>,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SceneInfo {
    payer_client_ip: Option<String>,
    h5_info: Option<H5Info>,
}

#[derive(Debug, Deserialize)]
struct H5Info {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloseReq {
    mchid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundReq {
    transaction_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: Option<String>,
    amount: Option<RefundAmount>,
}

#[derive(Debug, Deserialize)]
struct RefundAmount {
    refund: Option<i64>,
    total: Option<i64>,
    currency: Option<String>,
}

type ApiResult = Result<Response, Box<Response>>;

impl WechatSim {
    pub fn new(cfg: WechatSimConfig) -> Arc<WechatSim> {
        Arc::new(WechatSim {
            cfg,
            http: reqwest::Client::new(),
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
            .route(&p("/scan/{token}"), get(scan_page).post(page_submit))
            .route(&p("/h5/{token}"), get(h5_page).post(page_submit))
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
            .route(&p("/v3/pay/transactions/native"), post(api_native))
            .route(&p("/v3/pay/transactions/h5"), post(api_h5))
            .route(
                &p("/v3/pay/transactions/out-trade-no/{no}"),
                get(api_query_out_trade_no),
            )
            .route(
                &p("/v3/pay/transactions/id/{id}"),
                get(api_query_transaction_id),
            )
            .route(
                &p("/v3/pay/transactions/out-trade-no/{no}/close"),
                post(api_close),
            )
            .route(&p("/v3/refund/domestic/refunds"), post(api_refund))
            .route(
                &p("/v3/refund/domestic/refunds/{no}"),
                get(api_refund_query),
            )
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
        self.controls().fail_creates = n;
    }

    /// Order creation answers only after this delay.
    pub fn set_create_delay(&self, d: Duration) {
        self.controls().create_delay = d;
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
            let held = std::mem::take(&mut inner.held);
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
            for h in held.into_iter().rev() {
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
        self.lock()
            .refunds
            .values()
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
                _ if trade.time_expire.is_some_and(|e| now_secs() > e) => {
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
                success_time: now_secs(),
                openid: format!("o{}", random_alnum(27)),
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
                    inner.held.push(Held {
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

    // ---- wire helpers -------------------------------------------------------------------

    /// The B.2 signature headers for `body` at `ts` (a probe signature when `probe`).
    pub fn sign_headers(&self, body: &[u8], ts: i64, probe: bool) -> Vec<(&'static str, String)> {
        let nonce = random_alnum(32);
        let ts = ts.to_string();
        let signature = if probe {
            format!(
                "{SIGNTEST_PREFIX}{}",
                B64.encode(rand::random::<[u8; 32]>())
            )
        } else {
            self.cfg
                .platform_key
                .sign_base64(RsaHash::Sha256, &response_message(&ts, &nonce, body))
                .unwrap_or_default()
        };
        vec![
            ("wechatpay-timestamp", ts),
            ("wechatpay-nonce", nonce),
            ("wechatpay-serial", self.cfg.platform_key_id.clone()),
            ("wechatpay-signature-type", SIGNATURE_SCHEME.to_owned()),
            ("wechatpay-signature", signature),
            ("request-id", hex::encode_upper(rand::random::<[u8; 16]>())),
        ]
    }

    /// A B.3 notification body around `plaintext` (encrypted with the APIv3 key).
    pub fn notification_body(
        &self,
        event_type: &str,
        summary: &str,
        plaintext: &Value,
    ) -> Result<String, String> {
        let nonce = random_alnum(12);
        let ct = aes256gcm_encrypt(
            &self.cfg.apiv3_key,
            nonce.as_bytes(),
            b"transaction",
            plaintext.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        // Field order as WeChat sends it (serde_json's map keeps insertion order only with
        // `preserve_order`, so build the text directly).
        let resource = format!(
            r#"{{"original_type":"transaction","algorithm":{},"ciphertext":{},"associated_data":"transaction","nonce":{}}}"#,
            Value::from(RESOURCE_ALGORITHM),
            Value::from(B64.encode(ct)),
            Value::from(nonce),
        );
        let id = format!(
            "{}-{}-{}-{}-{}",
            hex::encode(rand::random::<[u8; 4]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 6]>())
        );
        Ok(format!(
            r#"{{"id":{},"create_time":{},"resource_type":"encrypt-resource","event_type":{},"summary":{},"resource":{resource}}}"#,
            Value::from(id),
            Value::from(format_cst(now_secs()).unwrap_or_default()),
            Value::from(event_type),
            Value::from(summary),
        ))
    }

    fn transaction_json(&self, t: &Trade) -> Value {
        let mut v = json!({
            "appid": self.cfg.appid,
            "mchid": self.cfg.mchid,
            "out_trade_no": t.out_trade_no,
            "trade_type": t.kind.trade_type(),
            "trade_state": t.state,
            "trade_state_desc": trade_state_desc(t.state),
            "attach": "",
        });
        match &t.paid {
            Some(p) => {
                v["transaction_id"] = json!(p.transaction_id);
                v["bank_type"] = json!("OTHERS");
                v["success_time"] = json!(format_cst(p.success_time).unwrap_or_default());
                v["payer"] = json!({ "openid": p.openid });
                v["amount"] = json!({
                    "total": p.total, "payer_total": p.total,
                    "currency": "CNY", "payer_currency": "CNY"
                });
            }
            None => {
                v["amount"] =
                    json!({ "total": t.total, "currency": "CNY", "payer_currency": "CNY" });
            }
        }
        v
    }

    fn refund_json(&self, r: &Refund, trade: Option<&Trade>) -> Value {
        let (transaction_id, total) = trade
            .and_then(|t| t.paid.as_ref())
            .map_or((String::new(), 0), |p| (p.transaction_id.clone(), p.total));
        let mut v = json!({
            "refund_id": r.refund_id,
            "out_refund_no": r.out_refund_no,
            "transaction_id": transaction_id,
            "out_trade_no": r.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": format_cst(r.create_time).unwrap_or_default(),
            "status": r.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total, "refund": r.amount, "payer_total": total,
                "payer_refund": r.amount, "settlement_total": total,
                "settlement_refund": r.amount, "discount_refund": 0,
                "currency": "CNY", "refund_fee": 0, "from": []
            },
            "promotion_detail": []
        });
        if let Some(t) = r.success_time {
            v["success_time"] = json!(format_cst(t).unwrap_or_default());
        }
        v
    }

    /// A signed API answer (fault injection applies).
    fn answer(&self, status: StatusCode, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let fault = self.controls().response_fault;
        let now = now_secs();
        let mut headers = match fault {
            ResponseFault::Unsigned => {
                vec![("request-id", hex::encode_upper(rand::random::<[u8; 16]>()))]
            }
            ResponseFault::SignTest => self.sign_headers(&bytes, now, true),
            ResponseFault::Stale => self.sign_headers(&bytes, now - 600, false),
            ResponseFault::BadSignature => self.sign_headers(b"something else", now, false),
            ResponseFault::WrongSerial | ResponseFault::None => {
                self.sign_headers(&bytes, now, false)
            }
        };
        if fault == ResponseFault::WrongSerial {
            for h in &mut headers {
                if h.0 == "wechatpay-serial" {
                    h.1 = "PUB_KEY_ID_0000000000000000000000000000000000".into();
                }
            }
        }
        let mut resp = if body.is_some() {
            (status, bytes).into_response()
        } else {
            status.into_response()
        };
        let hm = resp.headers_mut();
        if body.is_some() {
            hm.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                hm.insert(k, v);
            }
        }
        resp
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Box<Response> {
        Box::new(self.answer(status, Some(&json!({"code": code, "message": message}))))
    }

    /// Check the B.1 `Authorization` of an API request.
    fn authenticate(
        &self,
        method: &HttpMethod,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Box<Response>> {
        let sign_error = |m: &str| self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", m);
        if body.len() > MAX_REQUEST_BYTES {
            return Err(self.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PARAM_ERROR",
                "body too large",
            ));
        }
        let value = header_str(headers, "authorization")
            .ok_or_else(|| sign_error("Authorization header is missing"))?;
        let auth = AuthorizationParams::parse(value)
            .map_err(|e| sign_error(&format!("Authorization is malformed: {e}")))?;
        if auth.mchid != self.cfg.mchid {
            return Err(sign_error("mchid in Authorization is not this merchant"));
        }
        if !auth
            .serial_no
            .eq_ignore_ascii_case(&self.cfg.merchant_serial_no)
        {
            return Err(sign_error(
                "serial_no is not the merchant certificate's serial",
            ));
        }
        let ts: i64 = (auth.timestamp.len() <= 12
            && auth.timestamp.bytes().all(|b| b.is_ascii_digit()))
        .then(|| auth.timestamp.parse().ok())
        .flatten()
        .ok_or_else(|| sign_error("timestamp is not a unix time"))?;
        if ts.abs_diff(now_secs()) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
            return Err(sign_error("timestamp is outside the accepted window"));
        }
        let canonical = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let head = request_message(
            method.as_str(),
            &canonical,
            &auth.timestamp,
            &auth.nonce_str,
            "",
        );
        // `head` ends with "\n" + "" + "\n": splice the raw body bytes in before the last "\n".
        let mut message = head.into_bytes();
        message.pop();
        message.extend_from_slice(body);
        message.push(b'\n');
        if !self
            .cfg
            .merchant_public_key
            .verify_base64(RsaHash::Sha256, &message, &auth.signature)
        {
            return Err(sign_error("signature does not verify"));
        }
        Ok(())
    }

    fn parse_json<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, Box<Response>> {
        serde_json::from_slice(body).map_err(|e| {
            self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                &format!("body is not valid JSON for this API: {e}"),
            )
        })
    }

    fn check_mchid(&self, got: Option<&str>) -> Result<(), Box<Response>> {
        match got {
            Some(m) if m == self.cfg.mchid => Ok(()),
            Some(_) => Err(self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "mchid does not match the Authorization merchant",
            )),
            None => Err(self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid is missing")),
        }
    }

    fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.controls().public_base {
            return b.clone();
        }
        let host = header_str(headers, "host")
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                    })
            })
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    }

    async fn create(
        &self,
        kind: Kind,
        method: HttpMethod,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        self.authenticate(&method, &uri, &headers, &body)?;
        let (fail, delay) = {
            let mut c = self.controls();
            let fail = c.fail_creates > 0;
            if fail {
                c.fail_creates -= 1;
            }
            (fail, c.create_delay)
        };
        if fail {
            return Err(self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误 (simulated)",
            ));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let req: OrderReq = self.parse_json(&body)?;
        let param = |m: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
        if req.appid.as_deref() != Some(self.cfg.appid.as_str()) {
            return Err(self.error(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid and mchid do not match",
            ));
        }
        self.check_mchid(req.mchid.as_deref())?;
        let description = req.description.unwrap_or_default();
        let n = description.chars().count();
        if n == 0 || n > 127 {
            return Err(param("description must be 1-127 characters"));
        }
        let out_trade_no = req.out_trade_no.unwrap_or_default();
        if !valid_out_trade_no(&out_trade_no) {
            return Err(param("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]"));
        }
        let notify_url = req.notify_url.unwrap_or_default();
        if !(notify_url.starts_with("https://") || notify_url.starts_with("http://"))
            || notify_url.contains('?')
            || notify_url.len() > 255
        {
            return Err(param(
                "notify_url must be an absolute URL without a query string",
            ));
        }
        let amount = req.amount.ok_or_else(|| param("amount is missing"))?;
        let total = amount
            .total
            .filter(|t| *t >= 1)
            .ok_or_else(|| param("amount.total must be a positive integer (fen)"))?;
        if amount.currency.as_deref().is_some_and(|c| c != "CNY") {
            return Err(param("amount.currency must be CNY"));
        }
        let time_expire = match req.time_expire.as_deref() {
            None => None,
            Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
                param("time_expire must be RFC 3339 (yyyy-MM-DDTHH:mm:ss+TIMEZONE)")
            })?),
        };
        if kind == Kind::H5 {
            let scene = req
                .scene_info
                .ok_or_else(|| param("scene_info is required for H5"))?;
            if scene.payer_client_ip.as_deref().is_none_or(str::is_empty) {
                return Err(param("scene_info.payer_client_ip is required"));
            }
            let t = scene.h5_info.and_then(|h| h.kind);
            if !matches!(t.as_deref(), Some("Wap" | "iOS" | "Android")) {
                return Err(param("scene_info.h5_info.type must be Wap, iOS or Android"));
            }
        }
        let base = self.public_base(&headers);
        let mut inner = self.lock();
        let url = if let Some(t) = inner.trades.get(&out_trade_no) {
            match t.state {
                "SUCCESS" | "REFUND" => {
                    return Err(self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付"))
                }
                "CLOSED" | "REVOKED" => {
                    return Err(self.error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "该订单已关闭"))
                }
                _ => {}
            }
            if t.kind != kind
                || t.total != total
                || t.description != description
                || t.notify_url != notify_url
            {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_trade_no was already used with different parameters",
                ));
            }
            t.url.clone()
        } else {
            let token = random_alnum(16);
            let url = match kind {
                Kind::Native => format!("{CODE_URL_PREFIX}{token}"),
                Kind::H5 => format!("{base}{PREFIX}/h5/{token}"),
            };
            inner.tokens.insert(token.clone(), out_trade_no.clone());
            inner.trades.insert(
                out_trade_no.clone(),
                Trade {
                    out_trade_no,
                    kind,
                    description,
                    notify_url,
                    total,
                    time_expire,
                    url: url.clone(),
                    state: "NOTPAY",
                    paid: None,
                    refund_reserved: 0,
                    stats: NotifyStats::default(),
                },
            );
            url
        };
        drop(inner);
        let body = match kind {
            Kind::Native => json!({ "code_url": url }),
            Kind::H5 => json!({ "h5_url": url }),
        };
        Ok(self.answer(StatusCode::OK, Some(&body)))
    }

    async fn query(
        &self,
        by_id: bool,
        key: String,
        method: HttpMethod,
        uri: axum::http::Uri,
        headers: HeaderMap,
        query: Option<String>,
    ) -> ApiResult {
        self.authenticate(&method, &uri, &headers, b"")?;
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|_| {
                self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "bad query string")
            })?;
        let mchid = params
            .iter()
            .find(|(k, _)| k == "mchid")
            .map(|(_, v)| v.as_str());
        self.check_mchid(mchid)?;
        let inner = self.lock();
        let trade = if by_id {
            inner
                .trades
                .values()
                .find(|t| t.paid.as_ref().is_some_and(|p| p.transaction_id == key))
        } else {
            inner.trades.get(&key)
        };
        match trade {
            Some(t) => {
                let v = self.transaction_json(t);
                drop(inner);
                Ok(self.answer(StatusCode::OK, Some(&v)))
            }
            None => Err(self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")),
        }
    }

    async fn close(
        &self,
        no: String,
        method: HttpMethod,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        self.authenticate(&method, &uri, &headers, &body)?;
        let req: CloseReq = self.parse_json(&body)?;
        self.check_mchid(req.mchid.as_deref())?;
        let mut inner = self.lock();
        match inner.trades.get_mut(&no) {
            None => Err(self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")),
            Some(t) if matches!(t.state, "SUCCESS" | "REFUND") => {
                Err(self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付"))
            }
            Some(t) => {
                t.state = "CLOSED";
                drop(inner);
                Ok(self.answer(StatusCode::NO_CONTENT, None))
            }
        }
    }

    /// Advance a processing refund by one look; settle it when its countdown ends.
    fn observe_refund(inner: &mut Inner, out_refund_no: &str) {
        let Some(r) = inner.refunds.get_mut(out_refund_no) else {
            return;
        };
        if r.status != "PROCESSING" {
            return;
        }
        r.countdown = r.countdown.saturating_sub(1);
        if r.countdown == 0 {
            Self::settle_refund(inner, out_refund_no);
        }
    }

    fn settle_refund(inner: &mut Inner, out_refund_no: &str) {
        let Some(r) = inner.refunds.get_mut(out_refund_no) else {
            return;
        };
        r.status = "SUCCESS";
        r.success_time = Some(now_secs());
        let trade_no = r.out_trade_no.clone();
        if let Some(t) = inner.trades.get_mut(&trade_no) {
            t.state = "REFUND";
        }
    }

    async fn refund(
        &self,
        method: HttpMethod,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        self.authenticate(&method, &uri, &headers, &body)?;
        let req: RefundReq = self.parse_json(&body)?;
        let param = |m: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
        let out_refund_no = req.out_refund_no.unwrap_or_default();
        if !valid_out_refund_no(&out_refund_no) {
            return Err(param("out_refund_no must be 1-64 of [0-9A-Za-z_-|*@]"));
        }
        let amount = req.amount.ok_or_else(|| param("amount is missing"))?;
        let refund = amount
            .refund
            .filter(|r| *r >= 1)
            .ok_or_else(|| param("amount.refund must be a positive integer (fen)"))?;
        let total = amount
            .total
            .ok_or_else(|| param("amount.total is missing"))?;
        if amount.currency.as_deref() != Some("CNY") {
            return Err(param("amount.currency must be CNY"));
        }
        let mut inner = self.lock();
        let trade_no = match (&req.out_trade_no, &req.transaction_id) {
            (Some(no), _) => inner.trades.get(no).map(|t| t.out_trade_no.clone()),
            (None, Some(id)) => inner
                .trades
                .values()
                .find(|t| t.paid.as_ref().is_some_and(|p| &p.transaction_id == id))
                .map(|t| t.out_trade_no.clone()),
            (None, None) => return Err(param("out_trade_no or transaction_id is required")),
        };
        let Some(trade_no) = trade_no else {
            return Err(self.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"));
        };
        if let Some(existing) = inner.refunds.get(&out_refund_no) {
            if existing.out_trade_no != trade_no || existing.amount != refund {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_refund_no was already used with different parameters",
                ));
            }
            Self::observe_refund(&mut inner, &out_refund_no);
        } else {
            let polls = self.controls().refund_polls;
            let Some(t) = inner.trades.get_mut(&trade_no) else {
                return Err(self.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"));
            };
            let Some(paid_total) = t.paid.as_ref().map(|p| p.total) else {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "订单未支付 (the trade is not paid)",
                ));
            };
            if total != paid_total {
                return Err(param("amount.total differs from the paid total"));
            }
            if t.refund_reserved + refund > paid_total {
                return Err(self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "申请退款金额超过订单可退金额 (refunds would exceed the paid total)",
                ));
            }
            t.refund_reserved += refund;
            inner.refunds.insert(
                out_refund_no.clone(),
                Refund {
                    refund_id: format!("50{}", random_digits(27)),
                    out_refund_no: out_refund_no.clone(),
                    out_trade_no: trade_no.clone(),
                    amount: refund,
                    status: "PROCESSING",
                    countdown: polls,
                    create_time: now_secs(),
                    success_time: None,
                },
            );
            if polls == 0 {
                Self::settle_refund(&mut inner, &out_refund_no);
            }
        }
        let v = match inner.refunds.get(&out_refund_no) {
            Some(r) => self.refund_json(r, inner.trades.get(&trade_no)),
            None => {
                return Err(self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SYSTEM_ERROR",
                    "lost refund",
                ))
            }
        };
        drop(inner);
        Ok(self.answer(StatusCode::OK, Some(&v)))
    }

    async fn refund_query(
        &self,
        no: String,
        method: HttpMethod,
        uri: axum::http::Uri,
        headers: HeaderMap,
    ) -> ApiResult {
        self.authenticate(&method, &uri, &headers, b"")?;
        let mut inner = self.lock();
        Self::observe_refund(&mut inner, &no);
        let v = match inner.refunds.get(&no) {
            Some(r) => self.refund_json(r, inner.trades.get(&r.out_trade_no)),
            None => {
                return Err(self.error(
                    StatusCode::NOT_FOUND,
                    "RESOURCE_NOT_EXISTS",
                    "退款单不存在",
                ))
            }
        };
        drop(inner);
        Ok(self.answer(StatusCode::OK, Some(&v)))
    }

    // ---- notification delivery ------------------------------------------------------------

    /// POST one notification; `Ok(())` iff the merchant answered 200 or 204.
    async fn send_notification(
        &self,
        url: &str,
        body: &str,
        ts: i64,
        probe: bool,
    ) -> Result<(), String> {
        let mut req = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                "Mozilla/4.0 (kami WeChat Pay simulator)",
            )
            .timeout(self.cfg.notify_timeout)
            .body(body.to_owned());
        for (k, v) in self.sign_headers(body.as_bytes(), ts, probe) {
            req = req.header(k, v);
        }
        let mut resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let mut reply = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("transport: {e}"))? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err("reply too large".into());
            }
            reply.extend_from_slice(&chunk);
        }
        if status == StatusCode::OK || status == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            let snippet: String = String::from_utf8_lossy(&reply).chars().take(64).collect();
            Err(format!("HTTP {}: {snippet:?}", status.as_u16()))
        }
    }

    fn record(&self, out_trade_no: &str, f: impl FnOnce(&mut NotifyStats)) {
        if let Some(t) = self.lock().trades.get_mut(out_trade_no) {
            f(&mut t.stats);
        }
    }

    /// Deliver a payment notification per the schedule and the options.
    async fn deliver(
        self: Arc<Self>,
        out_trade_no: String,
        url: String,
        body: String,
        opts: PayOptions,
    ) {
        if let NotifyMode::Delay(d) = opts.notify {
            tokio::time::sleep(d).await;
        }
        if opts.signtest_probe {
            let r = self.send_notification(&url, &body, now_secs(), true).await;
            self.record(&out_trade_no, |s| {
                s.probes += 1;
                s.probe_accepted |= r.is_ok();
            });
        }
        let copies: u32 = if opts.notify == NotifyMode::Duplicate {
            2
        } else {
            1
        };
        for (round, delay) in self.cfg.retry_schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            let stale = opts.stale_first && round == 0;
            let ts = if stale { now_secs() - 600 } else { now_secs() };
            let results = if copies == 2 {
                let (a, b) = tokio::join!(
                    self.send_notification(&url, &body, ts, false),
                    self.send_notification(&url, &body, ts, false)
                );
                vec![a, b]
            } else {
                vec![self.send_notification(&url, &body, ts, false).await]
            };
            let ok = results.iter().any(Result::is_ok);
            let last_error = results.into_iter().filter_map(Result::err).next_back();
            self.record(&out_trade_no, |s| {
                s.attempts += copies;
                if ok && stale {
                    s.stale_accepted = true;
                }
                if ok && !stale {
                    s.delivered = true;
                }
                if let Some(e) = &last_error {
                    s.last_error = Some(e.clone());
                }
            });
            if ok && !stale {
                tracing::debug!(%out_trade_no, round, "wechatpay notification delivered");
                return;
            }
            tracing::info!(%out_trade_no, round, error = ?last_error, "wechatpay notification not acknowledged");
        }
        tracing::warn!(%out_trade_no, "wechatpay notification retries exhausted");
    }
}

fn trade_state_desc(state: &str) -> &'static str {
    match state {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "NOTPAY" => "未支付",
        "CLOSED" => "已关闭",
        "REVOKED" => "已撤销",
        "USERPAYING" => "用户支付中",
        "PAYERROR" => "支付失败",
        _ => "",
    }
}

fn flatten(r: ApiResult) -> Response {
    r.unwrap_or_else(|e| *e)
}

async fn api_native(
    State(sim): State<Arc<WechatSim>>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    flatten(sim.create(Kind::Native, method, uri, headers, body).await)
}

async fn api_h5(
    State(sim): State<Arc<WechatSim>>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    flatten(sim.create(Kind::H5, method, uri, headers, body).await)
}

async fn api_query_out_trade_no(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    flatten(sim.query(false, no, method, uri, headers, q).await)
}

async fn api_query_transaction_id(
    State(sim): State<Arc<WechatSim>>,
    Path(id): Path<String>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    flatten(sim.query(true, id, method, uri, headers, q).await)
}

async fn api_close(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    flatten(sim.close(no, method, uri, headers, body).await)
}

async fn api_refund(
    State(sim): State<Arc<WechatSim>>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    flatten(sim.refund(method, uri, headers, body).await)
}

async fn api_refund_query(
    State(sim): State<Arc<WechatSim>>,
    Path(no): Path<String>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    flatten(sim.refund_query(no, method, uri, headers).await)
}

// ---- buyer pages ------------------------------------------------------------------------

struct PageView {
    out_trade_no: String,
    description: String,
    total: i64,
    state: &'static str,
    paid: Option<Paid>,
    kind: Kind,
}

impl WechatSim {
    fn view(&self, token: &str) -> Option<PageView> {
        let inner = self.lock();
        let no = inner.tokens.get(token)?;
        let t = inner.trades.get(no)?;
        Some(PageView {
            out_trade_no: t.out_trade_no.clone(),
            description: t.description.clone(),
            total: t.total,
            state: t.state,
            paid: t.paid.clone(),
            kind: t.kind,
        })
    }
}

fn page_error(json: bool, status: StatusCode, message: &str) -> Response {
    if json {
        (
            status,
            Json(json!({"error": status.as_u16(), "message": message})),
        )
            .into_response()
    } else {
        (
            status,
            Html(html_page(
                "Payment refused",
                &format!("<p>{}</p>", escape(message)),
            )),
        )
            .into_response()
    }
}

/// The "return to shop" link of an H5 page (`redirect_url`, http(s) only).
fn redirect_link(query: Option<&str>) -> String {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    match params
        .iter()
        .find(|(k, _)| k == "redirect_url")
        .map(|(_, v)| v)
    {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            format!(
                "<p><a id=\"return\" href=\"{}\">Return to the shop</a></p>",
                escape(u)
            )
        }
        _ => String::new(),
    }
}

fn render_page(v: &PageView, action: &str, query: Option<&str>) -> String {
    let title = match v.kind {
        Kind::Native => "WeChat Pay — scan",
        Kind::H5 => "WeChat Pay — H5 cashier",
    };
    let mut body = format!(
        "<p>{}</p>\n<p class=\"amount\">¥{}</p>\n<p>Order <code>{}</code> · state <b id=\"state\">{}</b></p>\n",
        escape(&v.description),
        escape(&yuan(v.total)),
        escape(&v.out_trade_no),
        escape(v.state),
    );
    if let Some(p) = &v.paid {
        body.push_str(&format!(
            "<p>Paid ¥{} · transaction <code id=\"transaction_id\">{}</code></p>\n{}",
            escape(&yuan(p.total)),
            escape(&p.transaction_id),
            if v.kind == Kind::H5 {
                redirect_link(query)
            } else {
                String::new()
            },
        ));
    } else if matches!(v.state, "NOTPAY" | "USERPAYING" | "PAYERROR") {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{a}\">\n<input type=\"hidden\" name=\"action\" value=\"pay\">\n\
             <p><button type=\"submit\">Pay ¥{amt}</button></p>\n<fieldset><legend>Test controls</legend>\n\
             <label>Pay a different amount (fen): <input name=\"amount\" inputmode=\"numeric\" placeholder=\"{total}\"></label>\n\
             <label>Notification: <select name=\"notify\">\
             <option value=\"normal\" selected>normal</option>\
             <option value=\"drop\">drop (paid, never notified)</option>\
             <option value=\"duplicate\">duplicate (each attempt twice)</option>\
             <option value=\"delay\">delay (by the milliseconds below)</option>\
             <option value=\"hold\">hold (until released; released newest first)</option>\
             </select></label>\n\
             <label>Delay (ms): <input name=\"delay_ms\" inputmode=\"numeric\" value=\"3000\"></label>\n\
             <label><input type=\"checkbox\" name=\"signtest\" value=\"1\"> send a WECHATPAY/SIGNTEST/ probe first</label>\n\
             <label><input type=\"checkbox\" name=\"stale\" value=\"1\"> first attempt with a stale timestamp</label>\n\
             </fieldset>\n</form>\n",
            a = escape(action),
            amt = escape(&yuan(v.total)),
            total = v.total,
        ));
    } else {
        body.push_str("<p>This order can no longer be paid.</p>\n");
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{a}\"><input type=\"hidden\" name=\"action\" value=\"release\">\
         <button type=\"submit\">Release held notifications (newest first)</button></form>\n\
         <form method=\"post\" action=\"{a}\"><fieldset><legend>Simulator controls (all orders)</legend>\n\
         <input type=\"hidden\" name=\"action\" value=\"controls\">\n\
         <label>Fail the next N order creations: <input name=\"fail_creates\" inputmode=\"numeric\" value=\"0\"></label>\n\
         <label>Delay order creation (ms): <input name=\"create_delay_ms\" inputmode=\"numeric\" value=\"0\"></label>\n\
         <label>API answers: <select name=\"response_fault\">\
         <option value=\"none\" selected>correctly signed</option>\
         <option value=\"signtest\">SIGNTEST probe signature</option>\
         <option value=\"stale\">stale timestamp</option>\
         <option value=\"bad_signature\">bad signature</option>\
         <option value=\"wrong_serial\">unknown serial</option>\
         <option value=\"unsigned\">unsigned</option></select></label>\n\
         <label>Refunds stay PROCESSING for N looks: <input name=\"refund_polls\" inputmode=\"numeric\" value=\"1\"></label>\n\
         <button type=\"submit\">Apply</button></fieldset></form>",
        a = escape(action),
    ));
    html_page(title, &body)
}

async fn scan_page(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    show_page(
        &sim,
        &token,
        &headers,
        None,
        &format!("{PREFIX}/scan/{token}"),
    )
}

async fn h5_page(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let action = match &q {
        Some(q) => format!("{PREFIX}/h5/{token}?{q}"),
        None => format!("{PREFIX}/h5/{token}"),
    };
    show_page(&sim, &token, &headers, q.as_deref(), &action)
}

fn show_page(
    sim: &WechatSim,
    token: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    action: &str,
) -> Response {
    let json = wants_json(headers);
    let Some(v) = sim.view(token) else {
        return page_error(
            json,
            StatusCode::NOT_FOUND,
            "Unknown or expired payment code.",
        );
    };
    if json {
        return Json(json!({
            "out_trade_no": v.out_trade_no, "trade_state": v.state, "total": v.total,
            "transaction_id": v.paid.as_ref().map(|p| p.transaction_id.clone()),
        }))
        .into_response();
    }
    Html(render_page(&v, action, query)).into_response()
}

fn form_u64(form: &[(String, String)], key: &str) -> Result<Option<u64>, String> {
    match form.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} must be a whole number")),
    }
}

/// Parse the pay form's test controls.
fn pay_options(form: &[(String, String)]) -> Result<PayOptions, String> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let amount = form_u64(form, "amount")?
        .map(|a| i64::try_from(a).map_err(|_| "amount is too large".to_owned()))
        .transpose()?;
    let notify = match get("notify").unwrap_or("normal") {
        "" | "normal" => NotifyMode::Normal,
        "drop" => NotifyMode::Drop,
        "duplicate" => NotifyMode::Duplicate,
        "hold" => NotifyMode::Hold,
        "delay" => NotifyMode::Delay(Duration::from_millis(
            form_u64(form, "delay_ms")?.unwrap_or(3000).min(3_600_000),
        )),
        _ => return Err("notify must be normal, drop, duplicate, delay or hold".into()),
    };
    let flag = |k: &str| get(k).is_some_and(|v| !v.is_empty() && v != "0");
    Ok(PayOptions {
        amount,
        notify,
        signtest_probe: flag("signtest"),
        stale_first: flag("stale"),
    })
}

async fn page_submit(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    OriginalUri(uri): OriginalUri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return page_error(json, StatusCode::BAD_REQUEST, "The form is not valid.");
    };
    let Some(v) = sim.view(&token) else {
        return page_error(
            json,
            StatusCode::NOT_FOUND,
            "Unknown or expired payment code.",
        );
    };
    let action_url = uri.to_string();
    let done = |sim: &WechatSim, msg: &str| -> Response {
        if json {
            let v = sim.view(&token);
            return Json(json!({
                "result": msg,
                "out_trade_no": v.as_ref().map(|v| v.out_trade_no.clone()),
                "trade_state": v.as_ref().map(|v| v.state),
                "transaction_id": v.and_then(|v| v.paid.map(|p| p.transaction_id)),
            }))
            .into_response();
        }
        match sim.view(&token) {
            Some(v) => {
                let page = render_page(&v, &action_url, q.as_deref());
                Html(page.replacen("</h1>", &format!("</h1>\n<p><b>{}</b></p>", escape(msg)), 1))
                    .into_response()
            }
            None => page_error(
                false,
                StatusCode::NOT_FOUND,
                "Unknown or expired payment code.",
            ),
        }
    };
    let action = form
        .iter()
        .find(|(k, _)| k == "action")
        .map_or("pay", |(_, v)| v.as_str());
    match action {
        "pay" => {
            let opts = match pay_options(&form) {
                Ok(o) => o,
                Err(m) => return page_error(json, StatusCode::BAD_REQUEST, &m),
            };
            match sim.pay(&v.out_trade_no, opts) {
                Ok(_) => done(&sim, "Payment done."),
                Err(e) => page_error(json, e.status(), e.message()),
            }
        }
        "release" => {
            let n = sim.release_held();
            done(&sim, &format!("Released {n} held notification(s)."))
        }
        "controls" => {
            let parsed = (|| -> Result<(), String> {
                let fail = form_u64(&form, "fail_creates")?.unwrap_or(0);
                let delay = form_u64(&form, "create_delay_ms")?.unwrap_or(0);
                let polls = form_u64(&form, "refund_polls")?.unwrap_or(1);
                let fault = form
                    .iter()
                    .find(|(k, _)| k == "response_fault")
                    .map_or(Some(ResponseFault::None), |(_, v)| ResponseFault::parse(v))
                    .ok_or("unknown response_fault")?;
                sim.fail_next_creates(u32::try_from(fail).unwrap_or(u32::MAX));
                sim.set_create_delay(Duration::from_millis(delay.min(600_000)));
                sim.set_refund_processing_polls(u32::try_from(polls).unwrap_or(u32::MAX));
                sim.set_response_fault(fault);
                Ok(())
            })();
            match parsed {
                Ok(()) => done(&sim, "Simulator controls applied."),
                Err(m) => page_error(json, StatusCode::BAD_REQUEST, &m),
            }
        }
        _ => page_error(json, StatusCode::BAD_REQUEST, "Unknown action."),
    }
}
