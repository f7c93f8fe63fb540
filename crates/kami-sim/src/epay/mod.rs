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
//! order or reversed (reordering); re-send ("补发"); make creation fail or slow; "forged
//! upstream" (signed success notifications that the host's own order query contradicts).

mod api;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_core::clock::{self, SharedClock};
use kami_core::{Currency, Money};
use kami_pay::crypto::{RsaSigner, RsaVerifier};
use kami_pay::epay::{
    check_timestamp, field, md5_verify, parse_form, rsa_verify, signed_md5, signed_rsa,
    TRADE_SUCCESS,
};
use rand::Rng;

use crate::common::faults::{CreationFaults, Held, Release};
use crate::common::notify::{any_success, Notifier, Outbound, Verb};
pub use crate::common::{NotifyMode, NotifyStats};

/// The `notify` values the cashier offers.
const NOTIFY_MODES: [&str; 4] = ["normal", "drop", "duplicate", "hold"];

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
    const ALL: [MapiReply; 4] = [
        MapiReply::Auto,
        MapiReply::QrCode,
        MapiReply::PayUrl,
        MapiReply::UrlScheme,
    ];

    fn name(self) -> &'static str {
        match self {
            MapiReply::Auto => "auto",
            MapiReply::QrCode => "qrcode",
            MapiReply::PayUrl => "payurl",
            MapiReply::UrlScheme => "urlscheme",
        }
    }

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
    creation: CreationFaults,
    mapi_reply: MapiReply,
    /// Held notifications (out_trade_no), in payment order.
    held: Held<String>,
    /// "Forged upstream": the host signs success notifications, but its order query says
    /// unpaid (as when its upstream never received the money; dujiao-next #340).
    forged_upstream: bool,
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
    clock: SharedClock,
    notifier: Notifier,
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

/// Unique per simulator process, like a real platform's order number: the Unix second, a
/// sequence number and random digits (random digits alone collide at 1,000+ trades/s).
fn new_trade_no(now_secs: i64) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    let mut rng = rand::thread_rng();
    let digits: String = (0..4)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("{now_secs}{seq:06}{digits}")
}

/// `YYYY-MM-DD HH:MM:SS` in China time, as hosts print `addtime` / `endtime`.
fn datetime(now_secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(now_secs + 8 * 3600)
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
    /// A simulator on the wall clock.
    pub fn new(cfg: EpaySimConfig) -> Arc<EpaySim> {
        Self::with_clock(cfg, clock::system())
    }

    /// A simulator reading the time (timestamps, trade numbers, v2 signatures) from `clock`.
    pub fn with_clock(cfg: EpaySimConfig, clock: SharedClock) -> Arc<EpaySim> {
        let notifier = Notifier::new(
            "epay",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            any_success,
        );
        Arc::new(EpaySim {
            cfg,
            clock,
            notifier,
            state: Mutex::new(SimState::default()),
        })
    }

    /// Routes under `/sim/epay/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sim/epay/submit.php",
                get(pages::submit::<false>).post(pages::submit::<false>),
            )
            .route("/sim/epay/mapi.php", post(api::mapi_v1))
            .route("/sim/epay/api.php", get(api::api_v1).post(api::api_v1))
            .route(
                "/sim/epay/api/pay/submit",
                get(pages::submit::<true>).post(pages::submit::<true>),
            )
            .route("/sim/epay/api/pay/create", post(api::create_v2))
            .route("/sim/epay/api/pay/query", post(api::query_v2))
            .route("/sim/epay/api/pay/refund", post(api::refund_v2))
            .route("/sim/epay/api/pay/refundquery", post(api::refundquery_v2))
            .route("/sim/epay/api/pay/close", post(api::close_v2))
            .route("/sim/epay/api/merchant/info", post(api::info_v2))
            .route(
                "/sim/epay/pay/{trade_no}",
                get(pages::cashier).post(pages::pay_form),
            )
            .route(
                "/sim/epay/control",
                get(pages::control_page).post(pages::control_form),
            )
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
        self.lock().controls.creation.fail_always = message;
    }

    /// Answer every creation only after this delay.
    pub fn set_create_delay(&self, delay: Duration) {
        self.lock().controls.creation.delay = delay;
    }

    /// "Forged upstream" on or off: while on, order queries (`act=order`, `api/pay/query`)
    /// answer a paid trade as unpaid (`status` 0, no `endtime`, no buyer), though its
    /// notifications still say `TRADE_SUCCESS`.
    pub fn set_forged_upstream(&self, on: bool) {
        self.lock().controls.forged_upstream = on;
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
            trade.endtime = datetime(self.clock.now_secs());
            let trade_no = trade.trade_no.clone();
            if opts.notify == NotifyMode::Hold {
                st.controls.held.hold(out_trade_no.to_owned());
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
                    sim.deliver(&out, mode).await;
                });
            }
        }
        Ok(trade_no)
    }

    /// Deliver the held notifications one after another (each with its retries), in payment
    /// order or reversed. Returns how many were released.
    pub fn release_held(self: &Arc<Self>, reverse: bool) -> usize {
        let order = if reverse {
            Release::Reversed
        } else {
            Release::InOrder
        };
        let held = self.lock().controls.held.release(order);
        let n = held.len();
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            for out in held {
                sim.deliver(&out, NotifyMode::Normal).await;
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
            tokio::spawn(async move { sim.deliver(&out, NotifyMode::Normal).await });
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
                check_timestamp(field(params, "timestamp"), self.clock.now_secs())
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
                fields.push(("timestamp".into(), self.clock.now_secs().to_string()));
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
        let creation = self.lock().controls.creation.next("");
        creation.apply().await
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
        let now = self.clock.now_secs();
        let trade_no = new_trade_no(now);
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
                addtime: datetime(now),
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

    /// The fields an order query answers (v1 `act=order`, v2 `api/pay/query`), `status`
    /// included; under "forged upstream" a paid trade reads as unpaid.
    fn queried_fields(&self, st: &SimState, t: &Trade) -> Params {
        if st.controls.forged_upstream && t.status == Status::Paid {
            let mut f = self.order_fields(t);
            for (k, v) in &mut f {
                if k == "endtime" || k == "buyer" {
                    v.clear();
                }
            }
            f.push(("status".into(), Status::Waiting.code().to_string()));
            return f;
        }
        let mut f = self.order_fields(t);
        f.push(("status".into(), t.status.code().to_string()));
        f
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

    /// Deliver a trade's notification on the retry schedule until `success`, re-signed
    /// (fresh v2 timestamp) for every attempt, by GET or POST as configured.
    async fn deliver(self: &Arc<Self>, out_trade_no: &str, mode: NotifyMode) {
        let verb = match self.cfg.notify_method {
            NotifyMethod::Get => Verb::Get,
            NotifyMethod::Post => Verb::Post,
        };
        self.notifier
            .deliver(
                out_trade_no,
                mode,
                |_| {
                    let (url, params) = self.notification(out_trade_no)?;
                    let body = serde_urlencoded::to_string(&params).ok()?;
                    Some(Outbound {
                        verb,
                        ..Outbound::post(&url, "application/x-www-form-urlencoded", body)
                    })
                },
                |round| {
                    if let Some(t) = self.lock().trades.get_mut(out_trade_no) {
                        t.stats.record(round);
                    }
                    round.ok
                },
            )
            .await;
    }
}
