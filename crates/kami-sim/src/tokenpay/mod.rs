//! Gateway side of TokenPay (`shared/protocols.md` A.5; the merchant side is
//! `kami_pay::tokenpay`). Routes under `/sim/tokenpay/`: `POST CreateOrder` (the signature
//! checked as TokenPay's `VerifySignature` does: the view model's properties with .NET's
//! `ToString()`, so `ActualAmount` signs as the number's literal text from the body),
//! `GET Query?Id=&Signature=` (the order row in camelCase, `status` by name, amounts with
//! their scale), `GET|POST Pay?Id=` (the cashier: pay, underpay, expire). Notifications are
//! TokenPay's `ToDic`: sorted PascalCase keys, null and empty values left out, signed with
//! the secret, POSTed only once paid, acknowledged by HTTP 200 with the body exactly `ok`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_core::{Currency, Money};
use kami_pay::epay::{field, parse_form};
use kami_pay::tokenpay::{signature, CoinCurrency};
use serde_json::{json, Value};

use crate::common::coin::HeldUnits;
pub use crate::common::coin::PayOptions;
use crate::common::html::{self, origin, web_url, Look};
use crate::common::notify::{Notifier, Outbound};
pub use crate::common::{NotifyMode, NotifyStats};

#[derive(Debug, Clone)]
pub struct TokenPaySimConfig {
    /// `ApiToken`.
    pub secret: String,
    /// The currency the merchant asks for (`USDT_TRC20`); others are refused.
    pub currency: String,
    /// Fen per coin.
    pub rate_fen: i64,
    pub retry_schedule: Vec<Duration>,
    pub notify_timeout: Duration,
}

impl TokenPaySimConfig {
    /// TokenPay: a try, then two more a minute apart.
    pub fn new(secret: &str, currency: &str) -> TokenPaySimConfig {
        TokenPaySimConfig {
            secret: secret.to_owned(),
            currency: currency.to_owned(),
            rate_fen: 700,
            retry_schedule: [0, 60, 60].map(Duration::from_secs).to_vec(),
            notify_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Paid,
    Expired,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Paid => "Paid",
            Status::Expired => "Expired",
        }
    }
}

#[derive(Debug)]
struct Order {
    out_order_id: String,
    user_key: String,
    fiat: Money,
    coin_units: i64,
    notify_url: String,
    redirect_url: String,
    status: Status,
    paid_fiat: Option<Money>,
    paid_coin_units: Option<i64>,
    block_tx: String,
    pay_time: String,
    stats: NotifyStats,
}

#[derive(Debug, Default)]
struct SimState {
    orders: HashMap<String, Order>,
    by_out: HashMap<String, String>,
    /// The coin amounts pending orders hold.
    held: HeldUnits,
}

pub struct TokenPaySim {
    cfg: TokenPaySimConfig,
    notifier: Notifier,
    state: Mutex<SimState>,
}

const LOOK: Look = Look {
    site: "TokenPay simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.2rem;padding:.5rem 2rem}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami TokenPay simulator — test payments only, no coin moves.",
};

const TO_ADDRESS: &str = "TSimKamiTokenPayAddre55000000000x";

/// `units` of 1e-4 with four decimals, as TokenPay's `decimal(15,4)` prints.
fn coin4(units: i64) -> String {
    format!("{}.{:04}", units / 10_000, units % 10_000)
}

fn refuse(message: &str) -> Response {
    Json(json!({"success": false, "message": message})).into_response()
}

/// The literal text of the JSON number of `key` in `body` (what .NET's decimal keeps).
fn number_text(body: &str, key: &str) -> Option<String> {
    let at = body.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_owned())
}

fn now_text() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    (time::OffsetDateTime::now_utc() + time::Duration::hours(8))
        .format(&fmt)
        .unwrap_or_default()
}

impl TokenPaySim {
    pub fn new(cfg: TokenPaySimConfig) -> Arc<TokenPaySim> {
        let notifier = Notifier::new(
            "tokenpay",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            |status, body| status == StatusCode::OK && body == b"ok",
        );
        Arc::new(TokenPaySim {
            cfg,
            notifier,
            state: Mutex::new(SimState::default()),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sim/tokenpay/CreateOrder", post(create))
            .route("/sim/tokenpay/Query", get(query))
            .route("/sim/tokenpay/Pay", get(cashier).post(pay_form))
            .with_state(Arc::clone(self))
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unit(&self) -> String {
        CoinCurrency::parse(&self.cfg.currency).map_or_else(|_| "USDT".into(), |c| c.unit())
    }

    /// TokenPay's `Id` of an order kami created.
    pub fn order_id(&self, out_order_id: &str) -> Option<String> {
        self.lock().by_out.get(out_order_id).cloned()
    }

    /// `Pending`, `Paid`, `Expired` or `unknown`.
    pub fn status(&self, out_order_id: &str) -> &'static str {
        let st = self.lock();
        st.by_out
            .get(out_order_id)
            .and_then(|i| st.orders.get(i))
            .map_or("unknown", |o| o.status.name())
    }

    pub fn coin_amount(&self, out_order_id: &str) -> Option<String> {
        let st = self.lock();
        st.orders
            .get(st.by_out.get(out_order_id)?)
            .map(|o| coin4(o.coin_units))
    }

    pub fn notify_stats(&self, out_order_id: &str) -> Option<NotifyStats> {
        let st = self.lock();
        st.orders
            .get(st.by_out.get(out_order_id)?)
            .map(|o| o.stats.clone())
    }

    pub fn pay(self: &Arc<Self>, out_order_id: &str, opts: PayOptions) -> Result<(), String> {
        let id = {
            let mut st = self.lock();
            let id = st
                .by_out
                .get(out_order_id)
                .cloned()
                .ok_or("unknown order")?;
            let o = st.orders.get_mut(&id).ok_or("unknown order")?;
            match o.status {
                Status::Paid => return Ok(()),
                Status::Expired => return Err("order expired".into()),
                Status::Pending => {}
            }
            o.status = Status::Paid;
            let units = o.coin_units;
            o.paid_coin_units = Some(opts.coin_units.unwrap_or(o.coin_units));
            o.paid_fiat = Some(opts.fiat.unwrap_or(o.fiat));
            o.block_tx = hex::encode(rand::random::<[u8; 32]>());
            o.pay_time = now_text();
            st.held.release(units);
            id
        };
        if opts.notify != NotifyMode::Drop {
            self.spawn_notify(id, opts.notify);
        }
        Ok(())
    }

    pub fn expire(&self, out_order_id: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = st.by_out.get(out_order_id).cloned() else {
            return false;
        };
        match st.orders.get_mut(&id) {
            Some(o) if o.status == Status::Pending => {
                o.status = Status::Expired;
                let units = o.coin_units;
                st.held.release(units);
                true
            }
            _ => false,
        }
    }

    /// Re-send the notification of a paid order (补发).
    pub fn resend(self: &Arc<Self>, out_order_id: &str) -> bool {
        match self.order_id(out_order_id) {
            Some(id) => {
                self.spawn_notify(id, NotifyMode::Normal);
                true
            }
            None => false,
        }
    }

    /// The notification of a paid order: `ToDic`, sorted, nulls and empties left out.
    fn notification(&self, id: &str) -> Option<(String, String)> {
        let st = self.lock();
        let o = st.orders.get(id)?;
        if o.status != Status::Paid {
            return None;
        }
        let fiat = o.paid_fiat.unwrap_or(o.fiat);
        let paid = coin4(o.paid_coin_units.unwrap_or(o.coin_units));
        let unit = self.unit();
        let pairs: Vec<(&str, Value)> = vec![
            ("ActualAmount", json!(fiat.to_major_string())),
            ("Amount", json!(paid)),
            ("BaseCurrency", json!(fiat.currency().code())),
            ("BlockChainName", json!("TRON")),
            ("BlockTransactionId", json!(o.block_tx)),
            ("Currency", json!(self.cfg.currency)),
            ("CurrencyName", json!(unit)),
            ("FromAddress", json!("TSimKamiBuyerAddre55000000000000x")),
            ("Id", json!(id)),
            ("IsDynamicAmount", json!(0)),
            ("OrderUserKey", json!(o.user_key)),
            ("OutOrderId", json!(o.out_order_id)),
            ("PayTime", json!(o.pay_time)),
            ("Status", json!(1)),
            ("ToAddress", json!(TO_ADDRESS)),
        ];
        let text: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| {
                let t = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ((*k).to_owned(), t)
            })
            .collect();
        let sig = signature(&text, &self.cfg.secret);
        let mut m = serde_json::Map::new();
        for (k, v) in pairs {
            m.insert(k.to_owned(), v);
        }
        m.insert("Signature".into(), json!(sig));
        Some((o.notify_url.clone(), Value::Object(m).to_string()))
    }

    fn spawn_notify(self: &Arc<Self>, id: String, mode: NotifyMode) {
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            sim.notifier
                .deliver(
                    &id,
                    mode,
                    |_| {
                        let (url, body) = sim.notification(&id)?;
                        Some(Outbound::post(&url, "application/json", body))
                    },
                    |round| {
                        if let Some(o) = sim.lock().orders.get_mut(&id) {
                            o.stats.record(round);
                        }
                        round.ok
                    },
                )
                .await;
        });
    }

    fn cashier_page(&self, id: &str) -> Response {
        let st = self.lock();
        let Some(o) = st.orders.get(id) else {
            return html::message(
                StatusCode::NOT_FOUND,
                &LOOK,
                "TokenPay",
                "订单不存在！",
                Some("error"),
            );
        };
        let state = match o.status {
            Status::Pending => "waiting",
            Status::Paid => "paid",
            Status::Expired => "expired",
        };
        let coin = coin4(o.coin_units);
        html::page(
            StatusCode::OK,
            &LOOK,
            "usdt/cashier.html",
            "TokenPay",
            minijinja::context! {
                coin => format!("{coin} {}", self.unit()),
                coin_value => coin,
                fiat => o.fiat.to_major_string(),
                address => TO_ADDRESS,
                trade_id => id,
                order_id => o.out_order_id,
                state => state,
                action => format!("/sim/tokenpay/Pay?Id={id}"),
                return_url => web_url(&o.redirect_url),
            },
        )
    }
}

async fn create(State(sim): State<Arc<TokenPaySim>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) else {
        return refuse("参数错误！");
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    // VerifySignature: the view model's properties, `ToString()`, empty ones skipped.
    let Some(amount_text) = number_text(&text, "ActualAmount") else {
        return refuse("实付金额为必传参数");
    };
    let props = [
        ("ActualAmount", amount_text.clone()),
        ("Currency", s("Currency")),
        ("NotifyUrl", s("NotifyUrl")),
        ("OrderUserKey", s("OrderUserKey")),
        ("OutOrderId", s("OutOrderId")),
        ("PassThroughInfo", s("PassThroughInfo")),
        ("RedirectUrl", s("RedirectUrl")),
    ];
    if s("Signature") != signature(&props, &sim.cfg.secret) {
        return refuse("签名验证失败！");
    }
    if s("Currency") != sim.cfg.currency {
        return refuse(&format!("不支持的币种【{}】！", s("Currency")));
    }
    let Ok(fiat) = Money::from_major_str(&amount_text, Currency::Cny) else {
        return refuse("金额有误！");
    };
    if fiat.minor() <= 0 || s("OutOrderId").is_empty() || s("OrderUserKey").is_empty() {
        return refuse("金额有误！");
    }
    let (id, message) = {
        let mut st = sim.lock();
        match st.by_out.get(&s("OutOrderId")).cloned() {
            Some(id)
                if st
                    .orders
                    .get(&id)
                    .is_some_and(|o| o.status != Status::Expired) =>
            {
                (id, "订单已存在，查询旧订单！")
            }
            _ => {
                let units = st
                    .held
                    .take_free((fiat.minor() * 10_000 + sim.cfg.rate_fen - 1) / sim.cfg.rate_fen);
                let h = hex::encode(rand::random::<[u8; 16]>());
                let id = format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                );
                st.by_out.insert(s("OutOrderId"), id.clone());
                st.orders.insert(
                    id.clone(),
                    Order {
                        out_order_id: s("OutOrderId"),
                        user_key: s("OrderUserKey"),
                        fiat,
                        coin_units: units,
                        notify_url: s("NotifyUrl"),
                        redirect_url: s("RedirectUrl"),
                        status: Status::Pending,
                        paid_fiat: None,
                        paid_coin_units: None,
                        block_tx: String::new(),
                        pay_time: String::new(),
                        stats: NotifyStats::default(),
                    },
                );
                (id, "创建订单成功！")
            }
        }
    };
    let st = sim.lock();
    let Some(o) = st.orders.get(&id) else {
        return refuse("订单不存在！");
    };
    let base = origin(&headers);
    Json(json!({
        "success": true,
        "message": message,
        "data": format!("{base}/sim/tokenpay/Pay?Id={id}"),
        "info": {
            "ActualAmount": o.fiat.to_major_string(),
            "Amount": coin4(o.coin_units),
            "BaseCurrency": "CNY",
            "BlockChainName": "TRON",
            "CurrencyName": sim.unit(),
            "ExpireTime": now_text(),
            "Id": id,
            "OrderUserKey": o.user_key,
            "OutOrderId": o.out_order_id,
            "QrCodeLink": format!("{base}/sim/tokenpay/GetQrCode?Id={id}"),
            "ToAddress": TO_ADDRESS,
        }
    }))
    .into_response()
}

async fn query(State(sim): State<Arc<TokenPaySim>>, RawQuery(q): RawQuery) -> Response {
    let Ok(params) = parse_form(q.unwrap_or_default().as_bytes()) else {
        return refuse("参数错误！");
    };
    let id = field(&params, "Id").unwrap_or("").to_ascii_lowercase();
    let sig = field(&params, "Signature").unwrap_or("");
    if sig != signature(&[("Id", id.as_str())], &sim.cfg.secret) {
        return refuse("签名验证失败！");
    }
    let st = sim.lock();
    let Some(o) = st.orders.get(&id) else {
        return refuse("订单不存在！");
    };
    let paid_fiat = o.paid_fiat.unwrap_or(o.fiat);
    let null = |s: &str| {
        if s.is_empty() {
            "null".to_owned()
        } else {
            Value::String(s.to_owned()).to_string()
        }
    };
    // System.Text.Json writes decimals with their scale: a raw body keeps `15.00`.
    let body = format!(
        concat!(
            r#"{{"success":true,"message":"订单信息获取成功！","data":{{"id":"{}","outOrderId":{},"#,
            r#""orderUserKey":{},"blockTransactionId":{},"payTime":{},"payAmount":null,"#,
            r#""isDynamicAmount":false,"fromAddress":null,"actualAmount":{},"currency":{},"#,
            r#""amount":{},"toAddress":"{}","status":"{}","passThroughInfo":null,"notifyUrl":{},"#,
            r#""redirectUrl":{},"callbackNum":0,"callbackConfirm":false,"lastNotifyTime":null,"#,
            r#""createTime":"2026-01-01T00:00:00"}}}}"#
        ),
        id,
        null(&o.out_order_id),
        null(&o.user_key),
        null(&o.block_tx),
        null(&o.pay_time.replace(' ', "T")),
        paid_fiat.to_major_string(),
        null(&sim.cfg.currency),
        coin4(o.paid_coin_units.unwrap_or(o.coin_units)),
        TO_ADDRESS,
        o.status.name(),
        null(&o.notify_url),
        null(&o.redirect_url),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn id_of(q: Option<String>) -> String {
    parse_form(q.unwrap_or_default().as_bytes())
        .ok()
        .and_then(|p| field(&p, "Id").map(str::to_owned))
        .unwrap_or_default()
}

async fn cashier(State(sim): State<Arc<TokenPaySim>>, RawQuery(q): RawQuery) -> Response {
    sim.cashier_page(&id_of(q))
}

async fn pay_form(
    State(sim): State<Arc<TokenPaySim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let id = id_of(q);
    let Ok(form) = parse_form(&body) else {
        return html::message(
            StatusCode::BAD_REQUEST,
            &LOOK,
            "TokenPay",
            "bad form",
            Some("error"),
        );
    };
    let Some(out) = sim.lock().orders.get(&id).map(|o| o.out_order_id.clone()) else {
        return html::message(
            StatusCode::NOT_FOUND,
            &LOOK,
            "TokenPay",
            "订单不存在！",
            Some("error"),
        );
    };
    if field(&form, "expire").is_some_and(|v| !v.is_empty()) {
        sim.expire(&out);
        return sim.cashier_page(&id);
    }
    let opts = match PayOptions::from_cashier_form(&form) {
        Ok(o) => o,
        Err(e) => {
            return html::message(StatusCode::BAD_REQUEST, &LOOK, "TokenPay", e, Some("error"))
        }
    };
    if let Err(e) = sim.pay(&out, opts) {
        return html::message(StatusCode::CONFLICT, &LOOK, "TokenPay", &e, Some("error"));
    }
    sim.cashier_page(&id)
}
