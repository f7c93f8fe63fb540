//! The `epusdt` channel: USDT through an epusdt gateway (assimon/epusdt), or BEpusdt in its
//! epusdt-compatible mode (`shared/protocols.md` appendix A.3, A.4). Method `usdt`.
//!
//! * `create`: `POST {gateway}/api/v1/order/create-transaction` with JSON `order_id` (our
//!   trade number), `amount` (CNY, a number), `notify_url`, `redirect_url`, and for BEpusdt
//!   (`trade_type` set) `trade_type` and `timeout` (seconds to the order's deadline, at least
//!   120), signed ([`sign`]). The answer's `data` must name our order and amount; the buyer is
//!   sent to `payment_url`. The attempt's `gateway_ref` keeps `trade_id`, the fiat amount and
//!   the coin amount `actual_amount` ([`CoinRef`]), so a later notification or query is held
//!   to the coin amount asked for.
//! * Notifications ([`notify`]): signed JSON; status 2 pays, 1 (BEpusdt's periodic updates)
//!   and 3 (expired) are acknowledged and ignored. The fiat `amount` must equal the order's
//!   (the store checks it) and `actual_amount` the coin amount of the create (the store checks
//!   it against the payment's `coin_amount`): an underpayment is never delivered.
//! * `query` / confirmation: **epusdt has no order query API** (its only merchant endpoint is
//!   create-transaction), so an epusdt channel answers `Unsupported` and delivers on the
//!   signed notification alone. BEpusdt serves `GET /pay/check-status/{trade_id}` (its
//!   cashier's poll, unsigned: authenticated only by TLS to the configured gateway), so a
//!   BEpusdt channel confirms every paid notification by it before delivery
//!   (`confirm_by_query`) and uses it for the payment checks; its paid answer carries the
//!   amounts bound at create.
//! * `close`: BEpusdt `POST /api/v1/order/cancel-transaction` `{trade_id, signature}`, then
//!   the query; epusdt cannot cancel (its trades expire by themselves): `Waiting`.
//! * No refunds (a chain transfer cannot be pulled back by the gateway): `Unsupported`.

mod notify;
pub mod settings;
pub mod sign;
mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method};
use serde_json::{Map, Value};

use crate::common::coin_ref::CoinRef;
use crate::http::send;
use crate::{
    Ack, AckResponse, CreatePayment, Created, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

pub use notify::{ack as notify_ack, MAX_NOTIFY_BYTES};
pub use sign::{go_f, go_v, signature, signed, verify, Flavor};
pub use wire::{amount_number, TradeStatus, TradeType};

/// BEpusdt refuses a `timeout` under 120 s.
const MIN_TIMEOUT_SECS: i64 = 120;

#[derive(Debug)]
pub struct EpusdtConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    /// Base URL, e.g. `https://usdt.example.com` (a trailing `/` is dropped).
    pub gateway: String,
    pub token: String,
    /// Set for BEpusdt: its trade type, `%v` signing, query and close.
    pub trade_type: Option<TradeType>,
}

pub struct EpusdtChannel {
    id: ChannelId,
    methods: Vec<Method>,
    priority: i32,
    base: String,
    token: String,
    trade_type: Option<TradeType>,
    http: reqwest::Client,
}

impl std::fmt::Debug for EpusdtChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpusdtChannel")
            .field("id", &self.id)
            .field("gateway", &self.base)
            .field("token", &"<redacted>")
            .field("trade_type", &self.trade_type)
            .finish()
    }
}

impl EpusdtChannel {
    pub fn new(cfg: EpusdtConfig, http: reqwest::Client) -> EpusdtChannel {
        EpusdtChannel {
            id: cfg.id,
            methods: cfg.methods,
            priority: cfg.priority,
            base: cfg.gateway.trim().trim_end_matches('/').to_owned(),
            token: cfg.token,
            trade_type: cfg.trade_type,
            http,
        }
    }

    fn is_bepusdt(&self) -> bool {
        self.trade_type.is_some()
    }

    fn flavor(&self) -> Flavor {
        if self.is_bepusdt() {
            Flavor::Bepusdt
        } else {
            Flavor::Epusdt
        }
    }

    /// The coin this channel is paid in.
    pub fn unit(&self) -> String {
        self.trade_type
            .as_ref()
            .map_or_else(|| "USDT".to_owned(), TradeType::unit)
    }

    fn url(&self, path: &str) -> Result<String, PayError> {
        if !(self.base.starts_with("http://") || self.base.starts_with("https://")) {
            return Err(PayError::Config(
                "epusdt gateway must be an http(s) URL".into(),
            ));
        }
        Ok(format!("{}{path}", self.base))
    }

    /// The create request's signed JSON object.
    pub fn create_body(
        &self,
        req: &CreatePayment,
        now_ms: i64,
    ) -> Result<Map<String, Value>, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("epusdt takes CNY amounts only"));
        }
        let mut m = Map::new();
        m.insert(
            "order_id".into(),
            Value::String(req.trade_no.as_str().to_owned()),
        );
        m.insert("amount".into(), wire::amount_number(req.amount)?);
        m.insert("notify_url".into(), Value::String(req.notify_url.clone()));
        m.insert("redirect_url".into(), Value::String(req.return_url.clone()));
        if let Some(t) = &self.trade_type {
            m.insert("trade_type".into(), Value::String(t.as_str().to_owned()));
            let secs = ((req.expires_at_ms - now_ms) / 1000).max(MIN_TIMEOUT_SECS);
            m.insert("timeout".into(), Value::from(secs));
        }
        Ok(signed(m, &self.token, self.flavor()))
    }

    /// BEpusdt `check-status` of a trade id nobody created: reachability only (the answer
    /// is unsigned).
    async fn check_unknown(&self) -> Result<TradeState, PayError> {
        let url = self.url("/pay/check-status/kamitest")?;
        let reply = send(self.http.get(url)).await?;
        let obj = wire::object(&reply.body)?;
        match obj.get("trade_id") {
            None => Ok(TradeState::NotFound),
            Some(_) => Err(PayError::Malformed(
                "check-status knows a trade nobody created".into(),
            )),
        }
    }

    /// BEpusdt `check-status` of the attempt `r`.
    async fn check_status(&self, trade_no: &str, r: &CoinRef) -> Result<TradeState, PayError> {
        let url = self.url(&format!("/pay/check-status/{}", r.id))?;
        let reply = send(self.http.get(url)).await?;
        let obj = wire::object(&reply.body)?;
        if obj.get("status_code").is_some() && obj.get("trade_id").is_none() {
            // `{"status_code":400,"message":"订单不存在"}`
            return Ok(TradeState::NotFound);
        }
        if wire::text(&obj, "trade_id")? != r.id {
            return Err(PayError::Malformed(
                "check-status answered for another trade".into(),
            ));
        }
        let code = wire::int(&obj, "status")?;
        Ok(match TradeStatus::from_code(code) {
            Some(TradeStatus::Paid) => TradeState::Paid(PaymentConfirmation {
                trade_no: trade_no.to_owned(),
                gateway_trade_no: r.id.clone(),
                amount: r.fiat,
                paid_at: None,
                coin_amount: Some(r.coin.clone()),
            }),
            Some(TradeStatus::Waiting | TradeStatus::Confirming) => TradeState::Waiting,
            Some(TradeStatus::Expired | TradeStatus::Cancelled) => TradeState::Closed,
            None => return Err(PayError::Malformed(format!("unknown status {code}"))),
        })
    }

    async fn create_inner(
        &self,
        req: &CreatePayment,
    ) -> Result<(PaymentAction, CoinRef), PayError> {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let body = self.create_body(req, now_ms)?;
        let url = self.url("/api/v1/order/create-transaction")?;
        let reply = send(self.http.post(url).json(&Value::Object(body))).await?;
        let a = wire::create_answer(
            reply.status,
            &reply.body,
            req.trade_no.as_str(),
            req.amount,
            &self.unit(),
        )?;
        let r = CoinRef {
            id: a.trade_id,
            fiat: req.amount,
            coin: a.coin,
        };
        Ok((PaymentAction::Redirect { url: a.payment_url }, r))
    }
}

#[async_trait]
impl PaymentChannel for EpusdtChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "epusdt"
    }

    fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    /// Mainland gateways settle in CNY only (epusdt and BEpusdt take the fiat amount in CNY).
    fn charge_currency(&self, _offered: Currency) -> Currency {
        Currency::Cny
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        let (action, r) = self.create_inner(req).await?;
        Ok(Created {
            action,
            coin_amount: Some(r.coin.clone()),
            gateway_ref: Some(r.to_string()),
        })
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        notify::verdict(notify::verified(raw, &self.token)?, &self.unit())
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        notify::ack(ack)
    }

    /// epusdt has no order query API: `Unsupported`. BEpusdt: `check-status` of the
    /// attempt's `trade_id`; an attempt without a reference (never created there, or the
    /// console's test call) is not found.
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        if !self.is_bepusdt() {
            return Err(PayError::Unsupported("epusdt has no order query"));
        }
        match &trade.gateway_ref {
            Some(r) => {
                self.check_status(&trade.trade_no, &CoinRef::parse(r)?)
                    .await
            }
            None => self.check_unknown().await,
        }
    }

    /// BEpusdt: `cancel-transaction`, then the query (a trade paid meanwhile is reported
    /// paid). epusdt cannot cancel; its trades expire at the gateway: `Waiting`.
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let Some(r) = trade.gateway_ref.as_deref().filter(|_| self.is_bepusdt()) else {
            return Ok(TradeState::Waiting);
        };
        let r = CoinRef::parse(r)?;
        if let Err(e) = self.cancel(&r).await {
            // A paid or expired trade refuses the cancel: its state tells.
            tracing::debug!(channel = %self.id, "cancel-transaction refused: {e}");
        }
        self.check_status(&trade.trade_no, &r).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let _ = req;
        Err(PayError::Unsupported("USDT gateways have no refunds"))
    }

    fn confirm_by_query(&self) -> bool {
        self.is_bepusdt()
    }
}

impl EpusdtChannel {
    /// BEpusdt `cancel-transaction` of the attempt (a signed `{trade_id}`).
    async fn cancel(&self, r: &CoinRef) -> Result<(), PayError> {
        let mut m = Map::new();
        m.insert("trade_id".into(), Value::String(r.id.clone()));
        let body = signed(m, &self.token, self.flavor());
        let url = self.url("/api/v1/order/cancel-transaction")?;
        let reply = send(self.http.post(url).json(&Value::Object(body))).await?;
        let obj = wire::object(&reply.body)?;
        match wire::int(&obj, "status_code")? {
            200 => Ok(()),
            code => Err(PayError::Gateway {
                code: code.to_string(),
                message: obj
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| crate::common::text::clip(m, 200))
                    .unwrap_or_default(),
            }),
        }
    }
}
