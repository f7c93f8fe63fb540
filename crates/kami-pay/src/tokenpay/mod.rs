//! The `tokenpay` channel: USDT (or TRX, or EVM tokens) through a TokenPay gateway
//! (LightCountry/TokenPay; `shared/protocols.md` appendix A.5). Method `usdt`.
//!
//! * `create`: `POST {gateway}/CreateOrder`, PascalCase JSON `OutOrderId` (our trade number),
//!   `OrderUserKey` (the same: a fresh address per order), `ActualAmount` (fiat, two
//!   decimals), `Currency`, `NotifyUrl`, `RedirectUrl`, `Signature` ([`sign`]). The answer's
//!   `info` must name our order and amount; the buyer goes to its `data` (the pay page). The
//!   attempt's `gateway_ref` keeps `Id`, the fiat and the coin amount `Amount` ([`CoinRef`]).
//! * Notifications: signed over whatever keys arrive, sent only on success (`Status` 1);
//!   answered 200 `ok`. Its `ActualAmount` must be the order's, its `Amount` the coin amount
//!   of the create (the store checks both): an underpayment is never delivered.
//! * `query`: `GET {gateway}/Query?Id=…&Signature=…` (the answer is unsigned: TLS to the
//!   configured gateway). Every paid notification is confirmed by it before delivery
//!   (`confirm_by_query`), and the payment checks use it.
//! * `close`: TokenPay cannot cancel an order (it expires by itself): the query's state, with
//!   a pending order reported `Waiting`.
//! * No refunds: `Unsupported`.

mod notify;
pub mod settings;
pub mod sign;
mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, CoinAmount, Method};
use serde_json::Value;

use crate::common::coin_ref::CoinRef;
use crate::http::send;
use crate::{
    Ack, AckResponse, CreatePayment, Created, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

pub use notify::{ack as notify_ack, MAX_NOTIFY_BYTES};
pub use sign::{json_pairs, sign_string, signature, verify};
pub use wire::{create_fields, create_json, CoinCurrency, OrderStatus};

/// The id asked when an attempt has no reference: a GUID no TokenPay order has.
const UNKNOWN_ID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug)]
pub struct TokenPayConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    pub gateway: String,
    /// TokenPay's `ApiToken` (the notify secret).
    pub secret: String,
    pub currency: CoinCurrency,
}

pub struct TokenPayChannel {
    id: ChannelId,
    methods: Vec<Method>,
    priority: i32,
    base: String,
    secret: String,
    currency: CoinCurrency,
    http: reqwest::Client,
}

impl std::fmt::Debug for TokenPayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPayChannel")
            .field("id", &self.id)
            .field("gateway", &self.base)
            .field("secret", &"<redacted>")
            .field("currency", &self.currency)
            .finish()
    }
}

impl TokenPayChannel {
    pub fn new(cfg: TokenPayConfig, http: reqwest::Client) -> TokenPayChannel {
        TokenPayChannel {
            id: cfg.id,
            methods: cfg.methods,
            priority: cfg.priority,
            base: cfg.gateway.trim().trim_end_matches('/').to_owned(),
            secret: cfg.secret,
            currency: cfg.currency,
            http,
        }
    }

    fn url(&self, path: &str) -> Result<String, PayError> {
        if !(self.base.starts_with("http://") || self.base.starts_with("https://")) {
            return Err(PayError::Config(
                "tokenpay gateway must be an http(s) URL".into(),
            ));
        }
        Ok(format!("{}{path}", self.base))
    }

    /// The signed `CreateOrder` body.
    pub fn create_body(&self, req: &CreatePayment) -> String {
        let fields = create_fields(
            req.trade_no.as_str(),
            req.amount,
            &self.currency,
            &req.notify_url,
            &req.return_url,
        );
        let sig = signature(&fields, &self.secret);
        create_json(&fields, &sig)
    }

    async fn create_inner(
        &self,
        req: &CreatePayment,
    ) -> Result<(PaymentAction, CoinRef), PayError> {
        let url = self.url("/CreateOrder")?;
        let reply = send(
            self.http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(self.create_body(req)),
        )
        .await?;
        let a = wire::create_answer(
            reply.status,
            &reply.body,
            req.trade_no.as_str(),
            req.amount,
            &self.currency.unit(),
        )?;
        let r = CoinRef {
            id: a.id,
            fiat: req.amount,
            coin: a.coin,
        };
        Ok((PaymentAction::Redirect { url: a.pay_url }, r))
    }

    /// `/Query` of the attempt `r`.
    pub async fn query_ref(&self, trade_no: &str, r: &CoinRef) -> Result<TradeState, PayError> {
        let sig = signature(&[("Id", r.id.as_str())], &self.secret);
        let url = self.url(&format!("/Query?Id={}&Signature={sig}", r.id))?;
        let reply = send(self.http.get(url)).await?;
        let obj = wire::object(&reply.body)?;
        if obj.get("success") != Some(&Value::Bool(true)) {
            // `{"success":false,"message":"订单不存在！"}` (or a signature refusal, which
            // the message says: report it as an error, not as "not found").
            let msg = obj.get("message").and_then(Value::as_str).unwrap_or("");
            if msg.contains("不存在") {
                return Ok(TradeState::NotFound);
            }
            return Err(PayError::Gateway {
                code: "refused".into(),
                message: crate::common::text::clip(msg, 200),
            });
        }
        let Some(Value::Object(data)) = obj.get("data") else {
            return Err(PayError::Malformed("query answer without `data`".into()));
        };
        if !wire::string(data, "id")?.eq_ignore_ascii_case(&r.id)
            || wire::string(data, "outOrderId")? != trade_no
        {
            return Err(PayError::Malformed(
                "the query answered for another order".into(),
            ));
        }
        Ok(match OrderStatus::read(data.get("status")) {
            Some(OrderStatus::Paid) => TradeState::Paid(PaymentConfirmation {
                trade_no: trade_no.to_owned(),
                gateway_trade_no: r.id.clone(),
                amount: wire::fiat(data.get("actualAmount"), r.fiat.currency(), "actualAmount")?,
                paid_at: crate::common::pay_time::pay_time(
                    "tokenpay",
                    "payTime",
                    data.get("payTime").and_then(Value::as_str),
                    parse_dotnet_time,
                ),
                coin_amount: Some(wire::coin(
                    data.get("amount"),
                    &self.currency.unit(),
                    "amount",
                )?),
            }),
            Some(OrderStatus::Pending) => TradeState::Waiting,
            Some(OrderStatus::Expired) => TradeState::Closed,
            None => return Err(PayError::Malformed("unknown order status".into())),
        })
    }
}

/// .NET's `DateTime` in JSON (`2022-09-15T16:08:39` or with fractions), China time.
fn parse_dotnet_time(s: &str) -> Option<i64> {
    let head = s.get(..19)?.replace('T', " ");
    crate::common::pay_time::parse_china_time(&head)
}

#[async_trait]
impl PaymentChannel for TokenPayChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "tokenpay"
    }

    fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn priority(&self) -> i32 {
        self.priority
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
        notify::verdict(raw, &self.secret, &self.currency.unit())
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        notify::ack(ack)
    }

    /// `/Query` of the attempt's `Id`. Without a reference (the console's test call, or an
    /// attempt whose create never answered) the all-zero id is asked, which no order has:
    /// TokenPay's "订单不存在" then proves the signature, a refusal names the problem.
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let r = match &trade.gateway_ref {
            Some(r) => CoinRef::parse(r)?,
            None => CoinRef {
                id: UNKNOWN_ID.into(),
                fiat: kami_core::Money::new(0, kami_core::Currency::Cny)
                    .map_err(|e| PayError::Malformed(e.to_string()))?,
                coin: CoinAmount::parse("1", &self.currency.unit())
                    .map_err(|e| PayError::Malformed(e.to_string()))?,
            },
        };
        self.query_ref(&trade.trade_no, &r).await
    }

    /// TokenPay cannot cancel an order: the query's state (a pending order is `Waiting`, so
    /// kami expires it after a short grace; the gateway expires it by itself).
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        self.query(trade).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let _ = req;
        Err(PayError::Unsupported("USDT gateways have no refunds"))
    }

    fn confirm_by_query(&self) -> bool {
        true
    }
}
