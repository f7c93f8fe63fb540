//! Gateway side of epusdt and BEpusdt's epusdt-compatible API (`shared/protocols.md` A.3,
//! A.4; the merchant side is `kami_pay::epusdt`). One wallet, one API token; the
//! [`EpusdtFlavor`] picks the gateway: epusdt (numbers formatted `FormatFloat`, empty strings
//! signed, coin amounts as JSON numbers, the notification acknowledged only by the body
//! `ok`) or BEpusdt (`%v`, coin amounts as strings, any HTTP 200 acknowledges, signed
//! `status=1` updates for waiting trades on a roll, `check-status`, `cancel-transaction`).
//!
//! Routes under `/sim/epusdt/`: `POST api/v1/order/create-transaction` (signature checked
//! byte-exactly with the flavor's rule: one wrong byte is `401 签名认证错误`), `GET|POST
//! pay/checkout-counter/{trade_id}` (the cashier: pay, underpay, expire), BEpusdt `GET
//! pay/check-status/{trade_id}` and `POST api/v1/order/cancel-transaction`.
//!
//! The coin amount is the fiat amount at [`EpusdtSimConfig::rate_fen`] fen per coin, rounded up
//! to 4 decimals, raised by one atomic unit while another waiting trade uses it (both
//! gateways match payments by amount). Test controls: pay with another coin amount (a
//! lenient gateway that still notifies "paid": kami must refuse it), another fiat amount,
//! drop or duplicate the notification, expire, send any signed status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_core::{Currency, Money};
use kami_pay::epay::{field, parse_form};
use kami_pay::epusdt::{signature, Flavor};
use serde_json::{json, Map, Value};

use crate::common::coin::HeldUnits;
pub use crate::common::coin::{units_of, PayOptions};
use crate::common::html::{self, origin, web_url, Look};
use crate::common::notify::{Notifier, Outbound};
pub use crate::common::{NotifyMode, NotifyStats};

/// Which gateway the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpusdtFlavor {
    Epusdt,
    Bepusdt,
}

#[derive(Debug, Clone)]
pub struct EpusdtSimConfig {
    pub token: String,
    pub flavor: EpusdtFlavor,
    /// Fen per coin (700: 7.00 CNY per USDT).
    pub rate_fen: i64,
    pub retry_schedule: Vec<Duration>,
    pub notify_timeout: Duration,
    /// BEpusdt: signed `status=1` updates for every waiting trade at this interval (real:
    /// about once a minute); `None`: none.
    pub roll: Option<Duration>,
}

impl EpusdtSimConfig {
    /// epusdt: 5 tries (A.3), a few seconds apart.
    pub fn epusdt(token: &str) -> EpusdtSimConfig {
        EpusdtSimConfig {
            token: token.to_owned(),
            flavor: EpusdtFlavor::Epusdt,
            rate_fen: 700,
            retry_schedule: [0, 5, 10, 20, 40].map(Duration::from_secs).to_vec(),
            notify_timeout: Duration::from_secs(5),
            roll: None,
        }
    }

    /// BEpusdt: retried at 2^n minutes; status-1 rolls every minute.
    pub fn bepusdt(token: &str) -> EpusdtSimConfig {
        EpusdtSimConfig {
            flavor: EpusdtFlavor::Bepusdt,
            retry_schedule: [0, 60, 120, 240, 480].map(Duration::from_secs).to_vec(),
            roll: Some(Duration::from_secs(60)),
            ..EpusdtSimConfig::epusdt(token)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting = 1,
    Paid = 2,
    Expired = 3,
    Cancelled = 4,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Paid => "paid",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug)]
struct Trade {
    order_id: String,
    fiat: Money,
    /// In 1e-4 coin units.
    coin_units: i64,
    notify_url: String,
    redirect_url: String,
    status: Status,
    /// What the notification reports (test controls may make it differ).
    paid_fiat: Option<Money>,
    paid_coin_units: Option<i64>,
    block_tx: String,
    stats: NotifyStats,
}

#[derive(Debug, Default)]
struct SimState {
    trades: HashMap<String, Trade>,
    by_order: HashMap<String, String>,
    seq: u64,
    /// The coin amounts waiting trades hold.
    held: HeldUnits,
}

pub struct EpusdtSim {
    cfg: EpusdtSimConfig,
    notifier: Notifier,
    state: Mutex<SimState>,
}

const LOOK: Look = Look {
    site: "epusdt simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.2rem;padding:.5rem 2rem}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami epusdt / BEpusdt simulator — test payments only, no coin moves.",
};

fn coin_text(units: i64) -> String {
    let s = format!("{}.{:04}", units / 10_000, units % 10_000);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

fn fail(code: i64, message: &str) -> Response {
    Json(json!({"status_code": code, "message": message, "data": null, "request_id": ""}))
        .into_response()
}

impl EpusdtSim {
    pub fn new(cfg: EpusdtSimConfig) -> Arc<EpusdtSim> {
        let ack: fn(StatusCode, &[u8]) -> bool = match cfg.flavor {
            // epusdt compares the body: `body != "ok"` is a failure.
            EpusdtFlavor::Epusdt => |_, body| body == b"ok",
            // BEpusdt reads only the status.
            EpusdtFlavor::Bepusdt => |status, _| status == StatusCode::OK,
        };
        let notifier = Notifier::new(
            "epusdt",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            ack,
        );
        Arc::new(EpusdtSim {
            cfg,
            notifier,
            state: Mutex::new(SimState::default()),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sim/epusdt/api/v1/order/create-transaction", post(create))
            .route("/sim/epusdt/api/v1/order/cancel-transaction", post(cancel))
            .route(
                "/sim/epusdt/pay/checkout-counter/{trade_id}",
                get(cashier).post(pay_form),
            )
            .route("/sim/epusdt/pay/check-status/{trade_id}", get(check_status))
            .with_state(Arc::clone(self))
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sign_flavor(&self) -> Flavor {
        match self.cfg.flavor {
            EpusdtFlavor::Epusdt => Flavor::Epusdt,
            EpusdtFlavor::Bepusdt => Flavor::Bepusdt,
        }
    }

    /// The request's signature exactly as this gateway computes it.
    fn verify(&self, m: &Map<String, Value>) -> bool {
        let Some(Value::String(sig)) = m.get("signature") else {
            return false;
        };
        signature(m, &self.cfg.token, self.sign_flavor()).as_deref() == Some(sig.as_str())
    }

    /// The trade id of `order_id`, if kami created it.
    pub fn trade_id(&self, order_id: &str) -> Option<String> {
        self.lock().by_order.get(order_id).cloned()
    }

    /// `waiting`, `paid`, `expired`, `cancelled` or `unknown`.
    pub fn status(&self, order_id: &str) -> &'static str {
        let st = self.lock();
        st.by_order
            .get(order_id)
            .and_then(|t| st.trades.get(t))
            .map_or("unknown", |t| t.status.name())
    }

    /// The coin amount asked of the buyer (`4.1258 USDT` as a decimal).
    pub fn coin_amount(&self, order_id: &str) -> Option<String> {
        let st = self.lock();
        let t = st.trades.get(st.by_order.get(order_id)?)?;
        Some(coin_text(t.coin_units))
    }

    pub fn notify_stats(&self, order_id: &str) -> Option<NotifyStats> {
        let st = self.lock();
        st.trades
            .get(st.by_order.get(order_id)?)
            .map(|t| t.stats.clone())
    }

    /// The buyer pays (or underpays): the trade is paid and a status-2 notification goes out
    /// as `opts` says. Paying a paid trade does nothing.
    pub fn pay(self: &Arc<Self>, order_id: &str, opts: PayOptions) -> Result<(), String> {
        let trade_id = {
            let mut st = self.lock();
            let id = st.by_order.get(order_id).cloned().ok_or("unknown order")?;
            let t = st.trades.get_mut(&id).ok_or("unknown trade")?;
            match t.status {
                Status::Paid => return Ok(()),
                Status::Expired | Status::Cancelled => return Err("trade closed".into()),
                Status::Waiting => {}
            }
            t.status = Status::Paid;
            let units = t.coin_units;
            t.paid_coin_units = Some(opts.coin_units.unwrap_or(t.coin_units));
            t.paid_fiat = Some(opts.fiat.unwrap_or(t.fiat));
            t.block_tx = hex::encode(rand::random::<[u8; 32]>());
            st.held.release(units);
            id
        };
        if opts.notify != NotifyMode::Drop {
            self.spawn_notify(trade_id, Status::Paid, opts.notify);
        }
        Ok(())
    }

    /// The trade's time runs out unpaid (no notification: gateways send only status 2).
    pub fn expire(&self, order_id: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = st.by_order.get(order_id).cloned() else {
            return false;
        };
        match st.trades.get_mut(&id) {
            Some(t) if t.status == Status::Waiting => {
                t.status = Status::Expired;
                let units = t.coin_units;
                st.held.release(units);
                true
            }
            _ => false,
        }
    }

    /// Send one signed notification with `status` for the trade, whatever its state (tests:
    /// BEpusdt's status-1 updates, a status-3 message).
    pub fn send_status(self: &Arc<Self>, order_id: &str, status: i64) -> bool {
        let Some(id) = self.trade_id(order_id) else {
            return false;
        };
        let st = match status {
            1 => Status::Waiting,
            2 => Status::Paid,
            3 => Status::Expired,
            _ => Status::Cancelled,
        };
        self.spawn_notify(id, st, NotifyMode::Normal);
        true
    }

    /// The signed notification body of a trade with `status`.
    pub fn notification(&self, trade_id: &str, status: i64) -> Option<(String, String)> {
        let st = self.lock();
        let t = st.trades.get(trade_id)?;
        let fiat = t.paid_fiat.unwrap_or(t.fiat);
        let fiat: f64 = fiat.to_major_string().parse().ok()?;
        let coin = coin_text(t.paid_coin_units.unwrap_or(t.coin_units));
        let coin_value = match self.cfg.flavor {
            EpusdtFlavor::Epusdt => json!(coin.parse::<f64>().ok()?),
            EpusdtFlavor::Bepusdt => json!(coin),
        };
        let mut m = Map::new();
        m.insert("trade_id".into(), json!(trade_id));
        m.insert("order_id".into(), json!(t.order_id));
        m.insert("amount".into(), json!(fiat));
        m.insert("actual_amount".into(), coin_value);
        m.insert("token".into(), json!(WALLET));
        m.insert("block_transaction_id".into(), json!(t.block_tx));
        m.insert("status".into(), json!(status));
        let sig = signature(&m, &self.cfg.token, self.sign_flavor())?;
        m.insert("signature".into(), json!(sig));
        Some((t.notify_url.clone(), Value::Object(m).to_string()))
    }

    fn spawn_notify(self: &Arc<Self>, trade_id: String, status: Status, mode: NotifyMode) {
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            sim.notifier
                .deliver(
                    &trade_id,
                    mode,
                    |_| {
                        let (url, body) = sim.notification(&trade_id, status as i64)?;
                        Some(Outbound::post(&url, "application/json", body))
                    },
                    |round| {
                        if status == Status::Paid {
                            if let Some(t) = sim.lock().trades.get_mut(&trade_id) {
                                t.stats.record(round);
                            }
                        }
                        round.ok
                    },
                )
                .await;
        });
    }

    /// BEpusdt's roll: a signed status-1 update each interval while the trade waits.
    fn spawn_roll(self: &Arc<Self>, trade_id: String) {
        let Some(every) = self.cfg.roll else {
            return;
        };
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let waiting = sim
                    .lock()
                    .trades
                    .get(&trade_id)
                    .is_some_and(|t| t.status == Status::Waiting);
                if !waiting {
                    return;
                }
                if let Some((url, body)) = sim.notification(&trade_id, 1) {
                    let _ = sim
                        .notifier
                        .send(&Outbound::post(&url, "application/json", body))
                        .await;
                }
            }
        });
    }

    fn cashier_page(&self, trade_id: &str) -> Response {
        let st = self.lock();
        let Some(t) = st.trades.get(trade_id) else {
            return html::message(
                StatusCode::NOT_FOUND,
                &LOOK,
                "epusdt",
                "订单不存在",
                Some("error"),
            );
        };
        let coin = coin_text(t.coin_units);
        html::page(
            StatusCode::OK,
            &LOOK,
            "usdt/cashier.html",
            "USDT 收银台",
            minijinja::context! {
                coin => format!("{coin} USDT"),
                coin_value => coin,
                fiat => t.fiat.to_major_string(),
                address => WALLET,
                trade_id => trade_id,
                order_id => t.order_id,
                state => t.status.name(),
                action => format!("/sim/epusdt/pay/checkout-counter/{trade_id}"),
                return_url => web_url(&t.redirect_url),
            },
        )
    }
}

/// The simulated receiving wallet (a TRON address shape).
pub const WALLET: &str = "TSimKamiWa11etAddre55000000000000x";

async fn create(State(sim): State<Arc<EpusdtSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) else {
        return fail(10009, "无法解析参数");
    };
    if !sim.verify(&m) {
        return fail(401, "签名认证错误");
    }
    let str_of = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let order_id = str_of("order_id");
    let notify_url = str_of("notify_url");
    let Some(amount) = m.get("amount").and_then(Value::as_f64) else {
        return fail(10009, "amount must be a number");
    };
    let Ok(fiat) = Money::from_major_str(&kami_pay::epusdt::go_f(amount), Currency::Cny) else {
        return fail(10004, "支付金额有误, 无法满足最小支付单位");
    };
    if order_id.is_empty() || notify_url.is_empty() || fiat.minor() < 1 {
        return fail(400, "系统错误");
    }
    let bep = sim.cfg.flavor == EpusdtFlavor::Bepusdt;
    if bep {
        let tt = str_of("trade_type");
        if !tt.is_empty() && tt != "usdt.trc20" {
            return fail(400, "不支持的交易类型");
        }
    }
    let (trade_id, coin_units) = {
        let mut st = sim.lock();
        if let Some(id) = st.by_order.get(&order_id).cloned() {
            if !bep {
                return fail(10002, "支付交易已存在，请勿重复创建");
            }
            // BEpusdt rebuilds a pending order of the same order_id.
            let t = st.trades.get(&id).map(|t| (t.status, t.fiat, t.coin_units));
            match t {
                Some((Status::Waiting, f, units)) if f == fiat => (id, units),
                _ => return fail(400, "订单已存在"),
            }
        } else {
            // Fiat at the rate, rounded up to 1e-4, then above any waiting trade's amount.
            let units = st
                .held
                .take_free((fiat.minor() * 10_000 + sim.cfg.rate_fen - 1) / sim.cfg.rate_fen);
            st.seq += 1;
            let id = if bep {
                let r: [u8; 16] = rand::random();
                let h = hex::encode(r);
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            } else {
                format!(
                    "{}{:06}",
                    time::OffsetDateTime::now_utc().unix_timestamp(),
                    st.seq
                )
            };
            st.by_order.insert(order_id.clone(), id.clone());
            st.trades.insert(
                id.clone(),
                Trade {
                    order_id: order_id.clone(),
                    fiat,
                    coin_units: units,
                    notify_url,
                    redirect_url: str_of("redirect_url"),
                    status: Status::Waiting,
                    paid_fiat: None,
                    paid_coin_units: None,
                    block_tx: String::new(),
                    stats: NotifyStats::default(),
                },
            );
            (id, units)
        }
    };
    if bep {
        sim.spawn_roll(trade_id.clone());
    }
    let url = format!(
        "{}/sim/epusdt/pay/checkout-counter/{trade_id}",
        origin(&headers)
    );
    let coin = coin_text(coin_units);
    let expiration = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    let data = if bep {
        json!({"fiat": "CNY", "trade_type": "usdt.trc20", "trade_id": trade_id, "order_id": order_id,
               "status": 1, "amount": fiat.to_major_string(), "actual_amount": coin, "token": WALLET,
               "expiration_time": 600, "payment_url": url})
    } else {
        json!({"trade_id": trade_id, "order_id": order_id, "amount": amount,
               "actual_amount": coin.parse::<f64>().unwrap_or_default(), "token": WALLET,
               "expiration_time": expiration, "payment_url": url})
    };
    Json(
        json!({"status_code": 200, "message": "success", "data": data,
                "request_id": hex::encode(rand::random::<[u8; 8]>())}),
    )
    .into_response()
}

async fn cancel(State(sim): State<Arc<EpusdtSim>>, body: Bytes) -> Response {
    if sim.cfg.flavor != EpusdtFlavor::Bepusdt {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) else {
        return fail(400, "请求参数错误");
    };
    if !sim.verify(&m) {
        return fail(400, "签名错误");
    }
    let id = m.get("trade_id").and_then(Value::as_str).unwrap_or("");
    let mut st = sim.lock();
    match st.trades.get_mut(id) {
        None => fail(400, "订单不存在"),
        Some(t) if t.status != Status::Waiting => fail(400, "当前订单状态不允许取消"),
        Some(t) => {
            t.status = Status::Cancelled;
            let units = t.coin_units;
            st.held.release(units);
            Json(json!({"status_code": 200, "message": "success", "data": {"trade_id": id}, "request_id": ""}))
                .into_response()
        }
    }
}

async fn check_status(State(sim): State<Arc<EpusdtSim>>, Path(trade_id): Path<String>) -> Response {
    if sim.cfg.flavor != EpusdtFlavor::Bepusdt {
        return StatusCode::NOT_FOUND.into_response();
    }
    let st = sim.lock();
    match st.trades.get(&trade_id) {
        None => Json(json!({"status_code": 400, "message": "订单不存在"})).into_response(),
        Some(t) => Json(json!({
            "trade_id": trade_id,
            "trade_hash": t.block_tx,
            "status": t.status as i64,
            "return_url": if t.status == Status::Paid { t.redirect_url.clone() } else { String::new() },
        }))
        .into_response(),
    }
}

async fn cashier(State(sim): State<Arc<EpusdtSim>>, Path(trade_id): Path<String>) -> Response {
    sim.cashier_page(&trade_id)
}

async fn pay_form(
    State(sim): State<Arc<EpusdtSim>>,
    Path(trade_id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(form) = parse_form(&body) else {
        return html::message(
            StatusCode::BAD_REQUEST,
            &LOOK,
            "epusdt",
            "bad form",
            Some("error"),
        );
    };
    let order_id = {
        let st = sim.lock();
        match st.trades.get(&trade_id) {
            Some(t) => t.order_id.clone(),
            None => {
                return html::message(
                    StatusCode::NOT_FOUND,
                    &LOOK,
                    "epusdt",
                    "订单不存在",
                    Some("error"),
                )
            }
        }
    };
    if field(&form, "expire").is_some_and(|v| !v.is_empty()) {
        sim.expire(&order_id);
        return sim.cashier_page(&trade_id);
    }
    let opts = match PayOptions::from_cashier_form(&form) {
        Ok(o) => o,
        Err(e) => return html::message(StatusCode::BAD_REQUEST, &LOOK, "epusdt", e, Some("error")),
    };
    if let Err(e) = sim.pay(&order_id, opts) {
        return html::message(StatusCode::CONFLICT, &LOOK, "epusdt", &e, Some("error"));
    }
    sim.cashier_page(&trade_id)
}
