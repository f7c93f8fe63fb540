//! Gateway side of the 易支付 (Epay) merchant protocol (`shared/protocols.md` section G; the
//! merchant side and the byte-level rules are in `kami_pay::epay`). One simulated host with one
//! merchant, speaking v1 (MD5) or v2 (RSA) depending on [`EpaySimCredentials`].
//!
//! Routes, all under `/sim/epay/` (so a channel's `gateway` is `http://HOST/sim/epay/`):
//!
//! | route | version | what |
//! | --- | --- | --- |
//! | `GET\|POST submit.php` | v1 | verify, create the trade, show the cashier page |
//! | `POST mapi.php` | v1 | verify, create, JSON `code=1` + `qrcode` / `payurl` / `urlscheme` |
//! | `GET\|POST api.php?act=order\|refund\|query` | v1 | merchant `key` check; JSON |
//! | `GET\|POST api/pay/submit` | v2 | like `submit.php` |
//! | `POST api/pay/create` | v2 | signed JSON `code=0`, `pay_type` + `pay_info` |
//! | `POST api/pay/query`, `refund`, `refundquery`, `close`; `api/merchant/info` | v2 | signed JSON |
//! | `GET\|POST pay/{trade_no}` | both | cashier page / pay (with test controls) |
//! | `GET\|POST control` | both | creation failures and delays, mapi reply kind, held notifications |
//!
//! v1 requests must carry a valid MD5 `sign` (`sign_type` MD5 or absent) and our `pid`; v2
//! requests a valid SHA256withRSA signature by the merchant key and a `timestamp` within ±300 s.
//! v2 successes are signed with the platform key and carry a fresh `timestamp`; errors are
//! unsigned `{"code":-1,"msg":…}` (v1 errors are `{"code":-1,"msg":…}` too).
//!
//! Paying (the Pay button, or [`EpaySim::pay`]) marks the trade paid and notifies `notify_url`
//! with `pid, trade_no, out_trade_no, type, name, money, trade_status=TRADE_SUCCESS, param` (+ v2
//! `timestamp`), `sign`, `sign_type` — by GET query string (default, like most hosts) or POST
//! form ([`NotifyMethod`]) — retried on the schedule until the trimmed body is exactly
//! `success`. v2 notifications are re-signed with a fresh timestamp on every attempt.
//!
//! Test controls: pay a different amount than ordered; notifications normal, dropped,
//! duplicated (each attempt sent twice concurrently), delayed, or held and later released in
//! order or reversed (reordering); re-send ("补发"); make creation fail or slow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_core::{Currency, Money};
use kami_pay::crypto::{ct_eq, RsaSigner, RsaVerifier};
use kami_pay::epay::{
    check_timestamp, field, md5_verify, now_secs, parse_form, rsa_verify, signed_md5, signed_rsa,
    TRADE_SUCCESS,
};
use rand::Rng;

/// Largest merchant reply body the simulator reads.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The merchant's credentials as the host knows them.
pub enum EpaySimCredentials {
    /// v1: the shared MD5 key.
    V1 { key: String },
    /// v2: the merchant's public key (verifies requests) and the platform's private key (signs
    /// replies and notifications).
    V2 {
        merchant_public_key: RsaVerifier,
        platform_key: RsaSigner,
    },
}

impl std::fmt::Debug for EpaySimCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpaySimCredentials::V1 { .. } => f.write_str("V1 { key: <redacted> }"),
            EpaySimCredentials::V2 { .. } => f.write_str("V2 { platform_key: <redacted> }"),
        }
    }
}

/// How notifications reach `notify_url` (real hosts differ, G.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMethod {
    /// Parameters appended to the URL's query string (most hosts).
    #[default]
    Get,
    /// `application/x-www-form-urlencoded` body.
    Post,
}

/// Simulator configuration.
#[derive(Debug)]
pub struct EpaySimConfig {
    pub pid: String,
    pub credentials: EpaySimCredentials,
    /// Delay before each notification attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one notification request.
    pub notify_timeout: Duration,
    pub notify_method: NotifyMethod,
}

impl EpaySimConfig {
    /// The retry schedule of a typical host (G.3): immediately, then 15 s, 1 min, 3 min,
    /// 30 min, 1 h.
    pub fn default_schedule() -> Vec<Duration> {
        [0, 15, 60, 180, 1800, 3600]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }

    /// A v1 (MD5) host with the default schedule, GET notifications.
    pub fn v1(pid: &str, key: &str) -> EpaySimConfig {
        EpaySimConfig {
            pid: pid.to_owned(),
            credentials: EpaySimCredentials::V1 {
                key: key.to_owned(),
            },
            retry_schedule: Self::default_schedule(),
            notify_timeout: Duration::from_secs(10),
            notify_method: NotifyMethod::Get,
        }
    }

    /// A v2 (RSA) host with the default schedule, GET notifications.
    pub fn v2(
        pid: &str,
        merchant_public_key: RsaVerifier,
        platform_key: RsaSigner,
    ) -> EpaySimConfig {
        EpaySimConfig {
            pid: pid.to_owned(),
            credentials: EpaySimCredentials::V2 {
                merchant_public_key,
                platform_key,
            },
            retry_schedule: Self::default_schedule(),
            notify_timeout: Duration::from_secs(10),
            notify_method: NotifyMethod::Get,
        }
    }
}

/// Delivery bookkeeping of one trade's payment notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// HTTP requests sent so far (a duplicated attempt counts two).
    pub attempts: u32,
    /// The merchant answered `success` at least once.
    pub delivered: bool,
    /// Why the last failed request failed.
    pub last_error: Option<String>,
}

/// What happens to the payment notification (test control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    #[default]
    Normal,
    /// Paid, never notified: kami must find it by query.
    Drop,
    /// Every attempt sent twice concurrently.
    Duplicate,
    /// Kept until [`EpaySim::release_held`] (release reversed to reorder).
    Hold,
}

impl NotifyMode {
    fn parse(s: &str) -> Option<NotifyMode> {
        match s {
            "" | "normal" => Some(NotifyMode::Normal),
            "drop" => Some(NotifyMode::Drop),
            "duplicate" => Some(NotifyMode::Duplicate),
            "hold" => Some(NotifyMode::Hold),
            _ => None,
        }
    }
}

/// How a payment is made (test controls).
#[derive(Debug, Clone, Copy, Default)]
pub struct PayOptions {
    /// Pay this instead of the ordered amount (the notification says what was paid).
    pub amount: Option<Money>,
    pub notify: NotifyMode,
    /// Wait this long before the first notification attempt.
    pub delay: Duration,
}

/// Which payment form `mapi.php` / `api/pay/create` hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapiReply {
    /// `qrcode` for `device=pc`, `payurl` (v2 `jump`) otherwise.
    #[default]
    Auto,
    QrCode,
    PayUrl,
    UrlScheme,
}

impl MapiReply {
    fn parse(s: &str) -> Option<MapiReply> {
        match s {
            "" | "auto" => Some(MapiReply::Auto),
            "qrcode" => Some(MapiReply::QrCode),
            "payurl" => Some(MapiReply::PayUrl),
            "urlscheme" => Some(MapiReply::UrlScheme),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Paid,
    Refunded,
    Closed,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Paid => "PAID",
            Status::Refunded => "REFUNDED",
            Status::Closed => "CLOSED",
        }
    }

    /// The numeric `status` of order queries (彩虹: 0 unpaid, 1 paid, 2 refunded).
    fn code(self) -> u8 {
        match self {
            Status::Waiting | Status::Closed => 0,
            Status::Paid => 1,
            Status::Refunded => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct Refund {
    refund_no: String,
    money: Money,
    addtime: String,
}

#[derive(Debug)]
struct Trade {
    trade_no: String,
    out_trade_no: String,
    pay_type: String,
    name: String,
    money: Money,
    notify_url: String,
    return_url: String,
    param: String,
    clientip: String,
    status: Status,
    paid: Option<Money>,
    addtime: String,
    endtime: String,
    refunded_minor: i64,
    /// out_refund_no (or a generated key) → refund.
    refunds: HashMap<String, Refund>,
    stats: NotifyStats,
}

#[derive(Debug, Default)]
struct Controls {
    create_failure: Option<String>,
    create_delay: Duration,
    mapi_reply: MapiReply,
    /// Held notifications (out_trade_no), in payment order.
    held: Vec<String>,
}

#[derive(Debug, Default)]
struct SimState {
    /// By out_trade_no.
    trades: HashMap<String, Trade>,
    /// trade_no → out_trade_no.
    by_trade_no: HashMap<String, String>,
    controls: Controls,
}

/// The Epay host simulator. Share it as `Arc<EpaySim>`.
pub struct EpaySim {
    cfg: EpaySimConfig,
    http: reqwest::Client,
    state: Mutex<SimState>,
}

impl std::fmt::Debug for EpaySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpaySim")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

type Params = Vec<(String, String)>;

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

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · 易支付 simulator</title>\
         <style>body{{font-family:sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}\
         .amount{{font-size:2rem;font-weight:bold}}button{{font-size:1.2rem;padding:.5rem 2rem}}\
         fieldset{{margin:1rem 0}}label{{display:block;margin:.3rem 0}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n<p><small>kami 易支付 (Epay) simulator — test \
         payments only, no real money moves.</small></p></body></html>\n",
        t = escape(title)
    )
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                })
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn json_error(msg: &str) -> Response {
    Json(serde_json::json!({"code": -1, "msg": msg})).into_response()
}

fn html_error(status: StatusCode, msg: &str) -> Response {
    let body = format!("<p class=\"error\">{}</p>", escape(msg));
    (status, Html(html_page("支付失败 / Payment refused", &body))).into_response()
}

fn page_error(json: bool, status: StatusCode, msg: &str) -> Response {
    if json {
        (status, Json(serde_json::json!({"code": -1, "msg": msg}))).into_response()
    } else {
        html_error(status, msg)
    }
}

/// Unique per simulator process, like a real platform's order number: the Unix second, a
/// sequence number and random digits (random digits alone collide at 1,000+ trades/s).
fn new_trade_no() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    let mut rng = rand::thread_rng();
    let digits: String = (0..4)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("{}{seq:06}{digits}", now_secs())
}

/// `YYYY-MM-DD HH:MM:SS` in China time, as hosts print `addtime` / `endtime`.
fn datetime() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(now_secs() + 8 * 3600)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

fn cny(money: &str) -> Result<Money, String> {
    Money::from_major_str(money, Currency::Cny)
        .map_err(|_| "金额格式错误 (money must be a decimal with at most 2 digits)".to_owned())
}

fn str_fields(pairs: &[(&str, String)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Query string and form body together; a key in both is refused like any duplicate.
fn merged(query: Option<&str>, body: &[u8]) -> Result<Params, String> {
    let mut params = parse_form(query.unwrap_or("").as_bytes()).map_err(|e| e.to_string())?;
    let form = parse_form(body).map_err(|e| e.to_string())?;
    for (k, v) in form {
        if field(&params, &k).is_some() {
            return Err(format!("duplicate field {k}"));
        }
        params.push((k, v));
    }
    Ok(params)
}

fn req<'a>(params: &'a Params, key: &str) -> Result<&'a str, String> {
    field(params, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("缺少参数 {key} (missing {key})"))
}

impl EpaySim {
    pub fn new(cfg: EpaySimConfig) -> Arc<EpaySim> {
        Arc::new(EpaySim {
            cfg,
            http: reqwest::Client::new(),
            state: Mutex::new(SimState::default()),
        })
    }

    /// Routes under `/sim/epay/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sim/epay/submit.php", get(submit_v1).post(submit_v1))
            .route("/sim/epay/mapi.php", post(mapi_v1))
            .route("/sim/epay/api.php", get(api_v1).post(api_v1))
            .route("/sim/epay/api/pay/submit", get(submit_v2).post(submit_v2))
            .route("/sim/epay/api/pay/create", post(create_v2))
            .route("/sim/epay/api/pay/query", post(query_v2))
            .route("/sim/epay/api/pay/refund", post(refund_v2))
            .route("/sim/epay/api/pay/refundquery", post(refundquery_v2))
            .route("/sim/epay/api/pay/close", post(close_v2))
            .route("/sim/epay/api/merchant/info", post(info_v2))
            .route("/sim/epay/pay/{trade_no}", get(cashier).post(pay_form))
            .route("/sim/epay/control", get(control_page).post(control_form))
            .with_state(Arc::clone(self))
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when this host speaks v2 (RSA).
    pub fn is_v2(&self) -> bool {
        matches!(self.cfg.credentials, EpaySimCredentials::V2 { .. })
    }

    // -- test controls --------------------------------------------------------------------

    /// Make every creation (submit, mapi, api/pay/create) fail with this message; `None`
    /// restores normal behaviour.
    pub fn set_create_failure(&self, message: Option<String>) {
        self.lock().controls.create_failure = message;
    }

    /// Answer every creation only after this delay.
    pub fn set_create_delay(&self, delay: Duration) {
        self.lock().controls.create_delay = delay;
    }

    /// Which form `mapi.php` / `api/pay/create` hands out.
    pub fn set_mapi_reply(&self, reply: MapiReply) {
        self.lock().controls.mapi_reply = reply;
    }

    /// Pay a trade as the buyer would. Idempotent: paying a paid trade returns its trade
    /// number and sends nothing. Returns the platform trade number.
    pub fn pay(self: &Arc<Self>, out_trade_no: &str, opts: PayOptions) -> Result<String, String> {
        let (trade_no, first) = {
            let mut st = self.lock();
            let trade = st
                .trades
                .get_mut(out_trade_no)
                .ok_or_else(|| "订单号不存在 (unknown trade)".to_owned())?;
            match trade.status {
                Status::Paid | Status::Refunded => return Ok(trade.trade_no.clone()),
                Status::Closed => return Err("订单已关闭 (trade closed)".into()),
                Status::Waiting => {}
            }
            let amount = opts.amount.unwrap_or(trade.money);
            if amount.currency() != Currency::Cny || amount.minor() <= 0 {
                return Err("金额错误 (bad amount)".into());
            }
            trade.status = Status::Paid;
            trade.paid = Some(amount);
            trade.endtime = datetime();
            let trade_no = trade.trade_no.clone();
            if opts.notify == NotifyMode::Hold {
                st.controls.held.push(out_trade_no.to_owned());
            }
            (trade_no, opts.notify)
        };
        match first {
            NotifyMode::Drop | NotifyMode::Hold => {}
            mode => {
                let sim = Arc::clone(self);
                let out = out_trade_no.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(opts.delay).await;
                    sim.deliver(&out, mode == NotifyMode::Duplicate).await;
                });
            }
        }
        Ok(trade_no)
    }

    /// Deliver the held notifications one after another (each with its retries), in payment
    /// order or reversed. Returns how many were released.
    pub fn release_held(self: &Arc<Self>, reverse: bool) -> usize {
        let mut held = std::mem::take(&mut self.lock().controls.held);
        if reverse {
            held.reverse();
        }
        let n = held.len();
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            for out in held {
                sim.deliver(&out, false).await;
            }
        });
        n
    }

    /// Send the payment notification again (补发通知), with retries. False if the trade is
    /// not paid.
    pub fn resend_notification(self: &Arc<Self>, out_trade_no: &str) -> bool {
        let paid = self
            .lock()
            .trades
            .get(out_trade_no)
            .is_some_and(|t| t.paid.is_some());
        if paid {
            let sim = Arc::clone(self);
            let out = out_trade_no.to_owned();
            tokio::spawn(async move { sim.deliver(&out, false).await });
        }
        paid
    }

    /// `NOT_FOUND`, `WAITING`, `PAID`, `REFUNDED` or `CLOSED`.
    pub fn trade_status(&self, out_trade_no: &str) -> &'static str {
        self.lock()
            .trades
            .get(out_trade_no)
            .map_or("NOT_FOUND", |t| t.status.name())
    }

    /// The platform trade number of a known trade.
    pub fn trade_no(&self, out_trade_no: &str) -> Option<String> {
        self.lock()
            .trades
            .get(out_trade_no)
            .map(|t| t.trade_no.clone())
    }

    /// Total refunded so far (`None` for unknown trades).
    pub fn refunded(&self, out_trade_no: &str) -> Option<Money> {
        self.lock()
            .trades
            .get(out_trade_no)
            .and_then(|t| Money::new(t.refunded_minor, Currency::Cny).ok())
    }

    /// Notification stats of a paid trade (`None` if never paid).
    pub fn notify_stats(&self, out_trade_no: &str) -> Option<NotifyStats> {
        self.lock()
            .trades
            .get(out_trade_no)
            .filter(|t| t.paid.is_some())
            .map(|t| t.stats.clone())
    }

    // -- signatures -------------------------------------------------------------------------

    /// Verify a merchant request's signature (and v2 timestamp) and `pid`.
    fn verify_request(&self, params: &Params, v2: bool) -> Result<(), String> {
        let sign_type = field(params, "sign_type").unwrap_or("");
        match (&self.cfg.credentials, v2) {
            (EpaySimCredentials::V1 { key }, false) => {
                if !(sign_type.is_empty() || sign_type.eq_ignore_ascii_case("MD5"))
                    || !md5_verify(key, params)
                {
                    return Err("签名校验失败 (bad signature)".into());
                }
            }
            (
                EpaySimCredentials::V2 {
                    merchant_public_key,
                    ..
                },
                true,
            ) => {
                if !sign_type.eq_ignore_ascii_case("RSA")
                    || !rsa_verify(merchant_public_key, params)
                {
                    return Err("签名校验失败 (bad signature)".into());
                }
                check_timestamp(field(params, "timestamp"), now_secs())
                    .map_err(|e| format!("时间戳错误 (timestamp: {e})"))?;
            }
            (_, false) => return Err("v1 接口未开启 (this host speaks v2)".into()),
            (_, true) => return Err("v2 接口未开启 (this host speaks v1)".into()),
        }
        if req(params, "pid")? != self.cfg.pid {
            return Err("商户不存在 (unknown pid)".into());
        }
        Ok(())
    }

    /// Sign outbound fields (notification or v2 reply) with the platform's credentials.
    fn sign_out(&self, mut fields: Params) -> Params {
        match &self.cfg.credentials {
            EpaySimCredentials::V1 { key } => signed_md5(key, fields),
            EpaySimCredentials::V2 { platform_key, .. } => {
                fields.push(("timestamp".into(), now_secs().to_string()));
                signed_rsa(platform_key, fields).unwrap_or_default()
            }
        }
    }

    /// A signed v2 success reply (`code` 0).
    fn v2_reply(&self, fields: Params) -> Response {
        let mut all = vec![("code".to_owned(), "0".to_owned())];
        all.extend(fields);
        let signed = self.sign_out(all);
        let map: serde_json::Map<String, serde_json::Value> = signed
            .into_iter()
            .map(|(k, v)| {
                let v = if k == "code" {
                    serde_json::Value::from(0)
                } else {
                    serde_json::Value::String(v)
                };
                (k, v)
            })
            .collect();
        Json(serde_json::Value::Object(map)).into_response()
    }

    // -- trades -----------------------------------------------------------------------------

    /// Apply the creation controls; `Err` is the failure message.
    async fn creation_controls(&self) -> Result<(), String> {
        let (delay, failure) = {
            let st = self.lock();
            (st.controls.create_delay, st.controls.create_failure.clone())
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match failure {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }

    /// Create (or reopen) the trade a verified request describes. Returns the platform trade
    /// number and whether it is already paid.
    fn create_trade(&self, params: &Params, need_return: bool) -> Result<(String, bool), String> {
        let out_trade_no = req(params, "out_trade_no")?;
        let pay_type = req(params, "type")?;
        if !matches!(pay_type, "alipay" | "wxpay" | "qqpay") {
            return Err("支付方式不存在 (type must be alipay, wxpay or qqpay)".into());
        }
        let money = cny(req(params, "money")?)?;
        if money.minor() <= 0 {
            return Err("金额不合法 (money must be positive)".into());
        }
        let notify_url = req(params, "notify_url")?;
        let name = req(params, "name")?;
        let return_url = if need_return {
            req(params, "return_url")?
        } else {
            field(params, "return_url").unwrap_or("")
        };
        let mut st = self.lock();
        if let Some(t) = st.trades.get_mut(out_trade_no) {
            if t.money != money {
                return Err("订单号已存在 (out_trade_no reused with another amount)".into());
            }
            return match t.status {
                Status::Closed => Err("订单已关闭 (trade closed)".into()),
                Status::Waiting => {
                    t.notify_url = notify_url.to_owned();
                    t.return_url = return_url.to_owned();
                    Ok((t.trade_no.clone(), false))
                }
                Status::Paid | Status::Refunded => Ok((t.trade_no.clone(), true)),
            };
        }
        let trade_no = new_trade_no();
        st.by_trade_no
            .insert(trade_no.clone(), out_trade_no.to_owned());
        st.trades.insert(
            out_trade_no.to_owned(),
            Trade {
                trade_no: trade_no.clone(),
                out_trade_no: out_trade_no.to_owned(),
                pay_type: pay_type.to_owned(),
                name: name.to_owned(),
                money,
                notify_url: notify_url.to_owned(),
                return_url: return_url.to_owned(),
                param: field(params, "param").unwrap_or("").to_owned(),
                clientip: field(params, "clientip").unwrap_or("").to_owned(),
                status: Status::Waiting,
                paid: None,
                addtime: datetime(),
                endtime: String::new(),
                refunded_minor: 0,
                refunds: HashMap::new(),
                stats: NotifyStats::default(),
            },
        );
        Ok((trade_no, false))
    }

    /// Find a trade by `out_trade_no` or `trade_no` (out_trade_no first).
    fn lookup(st: &SimState, params: &Params) -> Option<String> {
        if let Some(out) = field(params, "out_trade_no").filter(|v| !v.is_empty()) {
            return st.trades.contains_key(out).then(|| out.to_owned());
        }
        let t = field(params, "trade_no").filter(|v| !v.is_empty())?;
        st.by_trade_no.get(t).cloned()
    }

    /// The fields an order query answers (v1 `act=order`, v2 `api/pay/query`).
    fn order_fields(&self, t: &Trade) -> Params {
        let refund = Money::new(t.refunded_minor, Currency::Cny)
            .map(|m| m.to_major_string())
            .unwrap_or_default();
        str_fields(&[
            ("trade_no", t.trade_no.clone()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("api_trade_no", format!("SIM{}", t.trade_no)),
            ("type", t.pay_type.clone()),
            ("pid", self.cfg.pid.clone()),
            ("addtime", t.addtime.clone()),
            ("endtime", t.endtime.clone()),
            ("name", t.name.clone()),
            ("money", t.paid.unwrap_or(t.money).to_major_string()),
            ("param", t.param.clone()),
            (
                "buyer",
                if t.paid.is_some() {
                    "sim-buyer".into()
                } else {
                    String::new()
                },
            ),
            ("refundmoney", refund),
            ("clientip", t.clientip.clone()),
        ])
    }

    /// The signed notification parameters of a paid trade (fresh v2 timestamp).
    fn notification(&self, out_trade_no: &str) -> Option<(String, Params)> {
        let fields = {
            let st = self.lock();
            let t = st.trades.get(out_trade_no)?;
            let paid = t.paid?;
            let mut f = str_fields(&[
                ("pid", self.cfg.pid.clone()),
                ("trade_no", t.trade_no.clone()),
                ("out_trade_no", t.out_trade_no.clone()),
                ("type", t.pay_type.clone()),
                ("name", t.name.clone()),
                ("money", paid.to_major_string()),
                ("trade_status", TRADE_SUCCESS.to_owned()),
            ]);
            if !t.param.is_empty() {
                f.push(("param".into(), t.param.clone()));
            }
            (t.notify_url.clone(), f)
        };
        Some((fields.0, self.sign_out(fields.1)))
    }

    /// One notification request; `Ok` iff the answer's trimmed body is exactly `success`.
    async fn send_notification(&self, url: &str, params: &Params) -> Result<(), String> {
        let body = serde_urlencoded::to_string(params).map_err(|e| e.to_string())?;
        let request = match self.cfg.notify_method {
            NotifyMethod::Get => {
                let sep = if url.contains('?') { '&' } else { '?' };
                self.http.get(format!("{url}{sep}{body}"))
            }
            NotifyMethod::Post => self
                .http
                .post(url)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body),
        };
        let mut resp = request
            .timeout(self.cfg.notify_timeout)
            .send()
            .await
            .map_err(|e| format!("transport: {}", e.without_url()))?;
        let status = resp.status();
        let mut reply = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("transport: {}", e.without_url()))?
        {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err("reply too large".into());
            }
            reply.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&reply);
        if text.trim() == "success" {
            Ok(())
        } else {
            let snippet: String = text.chars().take(64).collect();
            Err(format!("HTTP {}: {snippet:?}", status.as_u16()))
        }
    }

    /// Deliver a trade's notification on the retry schedule until `success`.
    async fn deliver(self: &Arc<Self>, out_trade_no: &str, duplicate: bool) {
        for (round, delay) in self.cfg.retry_schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            let Some((url, params)) = self.notification(out_trade_no) else {
                return;
            };
            let results = if duplicate {
                let (a, b) = tokio::join!(
                    self.send_notification(&url, &params),
                    self.send_notification(&url, &params)
                );
                vec![a, b]
            } else {
                vec![self.send_notification(&url, &params).await]
            };
            let ok = results.iter().any(Result::is_ok);
            let last_error = results.into_iter().filter_map(Result::err).next_back();
            if let Some(t) = self.lock().trades.get_mut(out_trade_no) {
                t.stats.attempts += if duplicate { 2 } else { 1 };
                if ok {
                    t.stats.delivered = true;
                }
                if let Some(e) = &last_error {
                    t.stats.last_error = Some(e.clone());
                }
            }
            if ok {
                tracing::debug!(%out_trade_no, round, "epay notification delivered");
                return;
            }
            tracing::info!(%out_trade_no, round, error = ?last_error, "epay notification failed");
        }
        tracing::warn!(%out_trade_no, "epay notification retries exhausted");
    }

    /// The return URL with the signed notification parameters appended (G.3), if it is a
    /// web URL.
    fn return_link(&self, out_trade_no: &str) -> String {
        let Some(return_url) = self
            .lock()
            .trades
            .get(out_trade_no)
            .map(|t| t.return_url.clone())
        else {
            return String::new();
        };
        if !(return_url.starts_with("http://") || return_url.starts_with("https://")) {
            return String::new();
        }
        let Some((_, params)) = self.notification(out_trade_no) else {
            return String::new();
        };
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        let sep = if return_url.contains('?') { '&' } else { '?' };
        format!(
            "<p><a id=\"return\" href=\"{}\">返回商户 / Return to the shop</a></p>",
            escape(&format!("{return_url}{sep}{query}"))
        )
    }

    /// The cashier page of a trade.
    fn cashier_html(&self, trade_no: &str) -> Option<String> {
        let st = self.lock();
        let out = st.by_trade_no.get(trade_no)?;
        let t = st.trades.get(out)?;
        let summary = format!(
            "<p>{}</p>\n<p class=\"amount\">¥{}</p>\n<p>支付方式 <code>{}</code> · 订单 \
             <code>{}</code> · 商户订单 <code>{}</code></p>",
            escape(&t.name),
            escape(&t.money.to_major_string()),
            escape(&t.pay_type),
            escape(&t.trade_no),
            escape(&t.out_trade_no),
        );
        let body = match t.status {
            Status::Paid | Status::Refunded => {
                format!("{summary}\n<p class=\"status\">This trade is already paid.</p>")
            }
            Status::Closed => format!("{summary}\n<p class=\"status\">This trade is closed.</p>"),
            Status::Waiting => format!(
                "{summary}\n<form method=\"post\" action=\"/sim/epay/pay/{}\">\n\
                 <fieldset><legend>Test controls</legend>\
                 <label>Amount actually paid: <input name=\"amount\" value=\"{}\"></label>\
                 <label>Notification: <select name=\"notify\">\
                 <option value=\"normal\" selected>normal</option>\
                 <option value=\"drop\">drop (paid, never notified)</option>\
                 <option value=\"duplicate\">duplicate (every attempt twice)</option>\
                 <option value=\"hold\">hold (until released on /sim/epay/control)</option>\
                 </select></label>\
                 <label>Delay before notifying (ms): <input name=\"delay_ms\" value=\"0\"></label>\
                 </fieldset>\n<p><button type=\"submit\">Pay</button></p>\n</form>",
                escape(&t.trade_no),
                escape(&t.money.to_major_string()),
            ),
        };
        Some(html_page("易支付收银台", &body))
    }
}

// ---------------------------------------------------------------------------------------
// Handlers: pages
// ---------------------------------------------------------------------------------------

async fn submit_common(sim: Arc<EpaySim>, params: Result<Params, String>, v2: bool) -> Response {
    let params = match params {
        Ok(p) => p,
        Err(e) => return html_error(StatusCode::BAD_REQUEST, &e),
    };
    if let Err(e) = sim.verify_request(&params, v2) {
        return html_error(StatusCode::BAD_REQUEST, &e);
    }
    if let Err(e) = sim.creation_controls().await {
        return html_error(StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    match sim.create_trade(&params, true) {
        Ok((trade_no, _)) => match sim.cashier_html(&trade_no) {
            Some(page) => Html(page).into_response(),
            None => html_error(StatusCode::INTERNAL_SERVER_ERROR, "lost trade"),
        },
        Err(e) => html_error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn submit_v1(
    State(sim): State<Arc<EpaySim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit_common(sim, merged(query.as_deref(), &body), false).await
}

async fn submit_v2(
    State(sim): State<Arc<EpaySim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit_common(sim, merged(query.as_deref(), &body), true).await
}

async fn cashier(
    State(sim): State<Arc<EpaySim>>,
    Path(trade_no): Path<String>,
    headers: HeaderMap,
) -> Response {
    if wants_json(&headers) {
        let st = sim.lock();
        let Some(t) = st.by_trade_no.get(&trade_no).and_then(|o| st.trades.get(o)) else {
            return page_error(true, StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)");
        };
        return Json(serde_json::json!({
            "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
            "money": t.money.to_major_string(), "status": t.status.name(),
        }))
        .into_response();
    }
    match sim.cashier_html(&trade_no) {
        Some(page) => Html(page).into_response(),
        None => html_error(StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)"),
    }
}

async fn pay_form(
    State(sim): State<Arc<EpaySim>>,
    Path(trade_no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(out) = sim.lock().by_trade_no.get(&trade_no).cloned() else {
        return page_error(json, StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)");
    };
    let amount = match field(&form, "amount").filter(|a| !a.trim().is_empty()) {
        None => None,
        Some(a) => match cny(a.trim()) {
            Ok(m) => Some(m),
            Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e),
        },
    };
    let Some(notify) = NotifyMode::parse(field(&form, "notify").unwrap_or("")) else {
        return page_error(
            json,
            StatusCode::BAD_REQUEST,
            "notify must be normal, drop, duplicate or hold",
        );
    };
    let delay = match field(&form, "delay_ms")
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => Duration::ZERO,
        Some(d) => match d.parse::<u64>() {
            Ok(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
            _ => return page_error(json, StatusCode::BAD_REQUEST, "delay_ms must be 0-3600000"),
        },
    };
    let opts = PayOptions {
        amount,
        notify,
        delay,
    };
    match sim.pay(&out, opts) {
        Ok(trade_no) => {
            if json {
                return Json(serde_json::json!({
                    "code": 1, "trade_no": trade_no, "out_trade_no": out, "status": "PAID",
                }))
                .into_response();
            }
            let paid = sim
                .lock()
                .trades
                .get(&out)
                .and_then(|t| t.paid)
                .map(|m| m.to_major_string())
                .unwrap_or_default();
            let body = format!(
                "<p class=\"status\">支付成功 · paid ¥{}</p>\n<p>订单 <code>{}</code> · 商户订单 \
                 <code>{}</code></p>{}",
                escape(&paid),
                escape(&trade_no),
                escape(&out),
                sim.return_link(&out)
            );
            Html(html_page("支付成功 / Payment done", &body)).into_response()
        }
        Err(e) => page_error(json, StatusCode::CONFLICT, &e),
    }
}

async fn control_page(State(sim): State<Arc<EpaySim>>) -> Response {
    let (failure, delay, reply, held) = {
        let st = sim.lock();
        let c = &st.controls;
        (
            c.create_failure.clone().unwrap_or_default(),
            c.create_delay.as_millis(),
            c.mapi_reply,
            c.held.len(),
        )
    };
    let opt = |v: &str, cur: bool| {
        format!(
            "<option value=\"{v}\"{}>{v}</option>",
            if cur { " selected" } else { "" }
        )
    };
    let body = format!(
        "<form method=\"post\" action=\"/sim/epay/control\">\
         <label>Fail creation with message (empty = succeed): \
         <input name=\"create_fail\" value=\"{}\"></label>\
         <label>Creation delay (ms): <input name=\"create_delay_ms\" value=\"{delay}\"></label>\
         <label>mapi / create reply: <select name=\"mapi_reply\">{}{}{}{}</select></label>\
         <label>Held notifications ({held}): <select name=\"release\">\
         <option value=\"\">keep</option><option value=\"in_order\">release in order</option>\
         <option value=\"reverse\">release reversed</option></select></label>\
         <p><button type=\"submit\">Apply</button></p></form>",
        escape(&failure),
        opt("auto", reply == MapiReply::Auto),
        opt("qrcode", reply == MapiReply::QrCode),
        opt("payurl", reply == MapiReply::PayUrl),
        opt("urlscheme", reply == MapiReply::UrlScheme),
    );
    Html(html_page("Simulator controls", &body)).into_response()
}

async fn control_form(
    State(sim): State<Arc<EpaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(f) = field(&form, "create_fail") {
        sim.set_create_failure((!f.is_empty()).then(|| f.to_owned()));
    }
    if let Some(d) = field(&form, "create_delay_ms").filter(|d| !d.is_empty()) {
        match d.parse::<u64>() {
            Ok(ms) if ms <= 600_000 => sim.set_create_delay(Duration::from_millis(ms)),
            _ => {
                return page_error(
                    json,
                    StatusCode::BAD_REQUEST,
                    "create_delay_ms must be 0-600000",
                )
            }
        }
    }
    if let Some(r) = field(&form, "mapi_reply") {
        match MapiReply::parse(r) {
            Some(r) => sim.set_mapi_reply(r),
            None => return page_error(json, StatusCode::BAD_REQUEST, "unknown mapi_reply"),
        }
    }
    let released = match field(&form, "release").unwrap_or("") {
        "" => 0,
        "in_order" => sim.release_held(false),
        "reverse" => sim.release_held(true),
        _ => {
            return page_error(
                json,
                StatusCode::BAD_REQUEST,
                "release must be in_order or reverse",
            )
        }
    };
    if json {
        return Json(serde_json::json!({"code": 1, "released": released})).into_response();
    }
    let body = format!("<p>Applied. Released {released} held notification(s).</p>");
    Html(html_page("Simulator controls", &body)).into_response()
}

// ---------------------------------------------------------------------------------------
// Handlers: v1 API
// ---------------------------------------------------------------------------------------

/// Which URL form `mapi.php` / `api/pay/create` answers with: (kind, value) where kind is
/// `qrcode`, `payurl` or `urlscheme`.
fn pay_target(
    sim: &EpaySim,
    headers: &HeaderMap,
    trade_no: &str,
    device: &str,
) -> (&'static str, String) {
    let page = format!("{}/sim/epay/pay/{trade_no}", origin(headers));
    let reply = sim.lock().controls.mapi_reply;
    match reply {
        MapiReply::QrCode => ("qrcode", page),
        MapiReply::PayUrl => ("payurl", page),
        MapiReply::UrlScheme => ("urlscheme", format!("weixin://dl/business/?t={trade_no}")),
        MapiReply::Auto if device.is_empty() || device == "pc" => ("qrcode", page),
        MapiReply::Auto => ("payurl", page),
    }
}

async fn mapi_v1(State(sim): State<Arc<EpaySim>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parse_form(&body) {
        Ok(p) => p,
        Err(e) => return json_error(&e.to_string()),
    };
    if let Err(e) = sim.verify_request(&params, false) {
        return json_error(&e);
    }
    if let Err(e) = req(&params, "clientip") {
        return json_error(&e);
    }
    if let Err(e) = sim.creation_controls().await {
        return json_error(&e);
    }
    let trade_no = match sim.create_trade(&params, false) {
        Ok((_, true)) => return json_error("订单已支付 (already paid)"),
        Ok((t, false)) => t,
        Err(e) => return json_error(&e),
    };
    let (kind, value) = pay_target(
        &sim,
        &headers,
        &trade_no,
        field(&params, "device").unwrap_or(""),
    );
    let mut reply = serde_json::Map::new();
    reply.insert("code".into(), 1.into());
    reply.insert("msg".into(), "".into());
    reply.insert("trade_no".into(), trade_no.into());
    reply.insert(kind.into(), value.into());
    Json(serde_json::Value::Object(reply)).into_response()
}

async fn api_v1(
    State(sim): State<Arc<EpaySim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match merged(query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return json_error(&e),
    };
    let EpaySimCredentials::V1 { key } = &sim.cfg.credentials else {
        return json_error("v1 接口未开启 (this host speaks v2)");
    };
    if field(&params, "pid") != Some(sim.cfg.pid.as_str()) {
        return json_error("商户不存在 (unknown pid)");
    }
    let given = field(&params, "key").unwrap_or("");
    if !ct_eq(given.as_bytes(), key.as_bytes()) {
        return Json(serde_json::json!({"code": -3, "msg": "KEY校验失败"})).into_response();
    }
    match field(&params, "act").unwrap_or("") {
        "order" => {
            let st = sim.lock();
            let Some(t) = EpaySim::lookup(&st, &params).and_then(|o| st.trades.get(&o)) else {
                return json_error("订单号不存在");
            };
            let mut reply = serde_json::Map::new();
            reply.insert("code".into(), 1.into());
            reply.insert("msg".into(), "查询订单号成功！".into());
            for (k, v) in sim.order_fields(t) {
                reply.insert(k, v.into());
            }
            reply.insert("status".into(), t.status.code().into());
            Json(serde_json::Value::Object(reply)).into_response()
        }
        "refund" => match refund(&sim, &params) {
            Ok(_) => Json(serde_json::json!({"code": 1, "msg": "退款成功"})).into_response(),
            Err(e) => json_error(&e),
        },
        "query" => {
            let st = sim.lock();
            let balance: i64 = st
                .trades
                .values()
                .filter_map(|t| t.paid.map(|p| p.minor() - t.refunded_minor))
                .sum();
            let money = Money::new(balance, Currency::Cny)
                .map(|m| m.to_major_string())
                .unwrap_or_default();
            Json(serde_json::json!({
                "code": 1, "pid": sim.cfg.pid, "active": 1, "money": money,
                "orders": st.trades.len(),
            }))
            .into_response()
        }
        _ => Json(serde_json::json!({"code": -5, "msg": "No Act!"})).into_response(),
    }
}

/// Refund part or all of a paid trade. Idempotent per `out_refund_no` when given (v2).
fn refund(sim: &EpaySim, params: &Params) -> Result<Refund, String> {
    let money = cny(req(params, "money")?)?;
    if money.minor() <= 0 {
        return Err("退款金额不合法 (money must be positive)".into());
    }
    let out_refund_no = field(params, "out_refund_no").filter(|v| !v.is_empty());
    let mut st = sim.lock();
    let out = EpaySim::lookup(&st, params).ok_or_else(|| "订单号不存在".to_owned())?;
    let t = st
        .trades
        .get_mut(&out)
        .ok_or_else(|| "订单号不存在".to_owned())?;
    if let Some(r) = out_refund_no.and_then(|no| t.refunds.get(no)) {
        if r.money != money {
            return Err("退款单号已存在 (out_refund_no reused with another amount)".into());
        }
        return Ok(r.clone());
    }
    let Some(paid) = t.paid else {
        return Err("订单未支付 (not paid)".into());
    };
    if t.refunded_minor + money.minor() > paid.minor() {
        return Err("退款金额超过订单剩余金额 (exceeds the paid amount)".into());
    }
    t.refunded_minor += money.minor();
    if t.refunded_minor == paid.minor() {
        t.status = Status::Refunded;
    }
    let refund = Refund {
        refund_no: new_trade_no(),
        money,
        addtime: datetime(),
    };
    let key = out_refund_no.map_or_else(|| refund.refund_no.clone(), str::to_owned);
    t.refunds.insert(key, refund.clone());
    Ok(refund)
}

// ---------------------------------------------------------------------------------------
// Handlers: v2 API (G.5)
// ---------------------------------------------------------------------------------------

/// Parse and verify a v2 API request; `Err` is the (unsigned) error response.
fn v2_request(sim: &EpaySim, body: &[u8]) -> Result<Params, Box<Response>> {
    let params = parse_form(body).map_err(|e| Box::new(json_error(&e.to_string())))?;
    sim.verify_request(&params, true)
        .map_err(|e| Box::new(json_error(&e)))?;
    Ok(params)
}

async fn create_v2(State(sim): State<Arc<EpaySim>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    for k in ["method", "clientip"] {
        if let Err(e) = req(&params, k) {
            return json_error(&e);
        }
    }
    if let Err(e) = sim.creation_controls().await {
        return json_error(&e);
    }
    let trade_no = match sim.create_trade(&params, false) {
        Ok((_, true)) => return json_error("订单已支付 (already paid)"),
        Ok((t, false)) => t,
        Err(e) => return json_error(&e),
    };
    let (kind, value) = pay_target(
        &sim,
        &headers,
        &trade_no,
        field(&params, "device").unwrap_or(""),
    );
    let pay_type = match kind {
        "qrcode" => "qrcode",
        "urlscheme" => "urlscheme",
        _ => "jump",
    };
    sim.v2_reply(str_fields(&[
        ("msg", String::new()),
        ("trade_no", trade_no),
        ("pay_type", pay_type.to_owned()),
        ("pay_info", value),
    ]))
}

async fn query_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let fields = {
        let st = sim.lock();
        let Some(t) = EpaySim::lookup(&st, &params).and_then(|o| st.trades.get(&o)) else {
            return json_error("订单号不存在");
        };
        let mut f = sim.order_fields(t);
        f.push(("status".into(), t.status.code().to_string()));
        f
    };
    sim.v2_reply(fields)
}

async fn refund_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = {
        let st = sim.lock();
        EpaySim::lookup(&st, &params)
            .and_then(|o| st.trades.get(&o))
            .map(|t| t.trade_no.clone())
            .unwrap_or_default()
    };
    match refund(&sim, &params) {
        Ok(r) => sim.v2_reply(str_fields(&[
            ("msg", "退款成功".to_owned()),
            ("refund_no", r.refund_no),
            (
                "out_refund_no",
                field(&params, "out_refund_no").unwrap_or("").to_owned(),
            ),
            ("trade_no", trade_no),
            ("money", r.money.to_major_string()),
            ("reducemoney", r.money.to_major_string()),
        ])),
        Err(e) => json_error(&e),
    }
}

async fn refundquery_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let wanted_out = field(&params, "out_refund_no").filter(|v| !v.is_empty());
    let wanted_no = field(&params, "refund_no").filter(|v| !v.is_empty());
    let found = {
        let st = sim.lock();
        st.trades.values().find_map(|t| {
            t.refunds.iter().find_map(|(key, r)| {
                let hit = wanted_out.is_some_and(|w| w == key)
                    || wanted_no.is_some_and(|w| w == r.refund_no);
                hit.then(|| {
                    str_fields(&[
                        ("refund_no", r.refund_no.clone()),
                        ("out_refund_no", wanted_out.unwrap_or("").to_owned()),
                        ("trade_no", t.trade_no.clone()),
                        ("out_trade_no", t.out_trade_no.clone()),
                        ("money", r.money.to_major_string()),
                        ("status", "1".to_owned()),
                        ("addtime", r.addtime.clone()),
                    ])
                })
            })
        })
    };
    match found {
        Some(f) => sim.v2_reply(f),
        None => json_error("退款单号不存在"),
    }
}

async fn close_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let outcome = {
        let mut st = sim.lock();
        match EpaySim::lookup(&st, &params).and_then(|o| st.trades.get_mut(&o).map(|t| (o, t))) {
            None => Err("订单号不存在"),
            Some((_, t)) => match t.status {
                Status::Waiting | Status::Closed => {
                    t.status = Status::Closed;
                    Ok((t.trade_no.clone(), t.out_trade_no.clone()))
                }
                Status::Paid | Status::Refunded => Err("订单已支付，无法关闭"),
            },
        }
    };
    match outcome {
        Ok((trade_no, out_trade_no)) => sim.v2_reply(str_fields(&[
            ("msg", "关闭订单成功".to_owned()),
            ("trade_no", trade_no),
            ("out_trade_no", out_trade_no),
        ])),
        Err(e) => json_error(e),
    }
}

async fn info_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    if let Err(r) = v2_request(&sim, &body) {
        return *r;
    }
    let (balance, orders) = {
        let st = sim.lock();
        let b: i64 = st
            .trades
            .values()
            .filter_map(|t| t.paid.map(|p| p.minor() - t.refunded_minor))
            .sum();
        (b, st.trades.len())
    };
    let money = Money::new(balance, Currency::Cny)
        .map(|m| m.to_major_string())
        .unwrap_or_default();
    sim.v2_reply(str_fields(&[
        ("pid", sim.cfg.pid.clone()),
        ("status", "1".to_owned()),
        ("money", money),
        ("orders", orders.to_string()),
    ]))
}
