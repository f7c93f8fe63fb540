//! Payment channels. One trait, [`PaymentChannel`], that every protocol implements, and one
//! module per protocol that owns that protocol's bytes. Nothing here touches the database:
//! the server feeds raw notifications in and gets verified facts ([`NotifyVerdict`]) out.

pub mod alipay;
pub mod bill;
pub mod common;
pub mod crypto;
pub mod epay;
pub mod epusdt;
mod http;
pub mod paypal;
pub mod routing;
pub mod sandbox;
pub mod settings;
pub mod stripe;
pub mod tokenpay;
pub mod wechatpay;

pub use bill::{Bill, BillDay, BillEntry, BillRow, BillTotals};
/// The strict form parser, at its historical path.
pub use common::form;
pub use settings::{ChannelKind, ChannelSettings};

use async_trait::async_trait;
use kami_core::{ChannelId, CoinAmount, Currency, Method, Money, TradeNo};

/// Everything a channel needs to start collecting money for one order.
#[derive(Debug, Clone)]
pub struct CreatePayment {
    /// Our trade number sent to the gateway (`out_trade_no`): one per payment attempt.
    pub trade_no: TradeNo,
    pub amount: Money,
    /// Short product title for the gateway's `subject`.
    pub subject: String,
    pub method: Method,
    pub device: Device,
    /// Absolute URL the gateway must send asynchronous notifications to.
    pub notify_url: String,
    /// Absolute URL the buyer's browser returns to (never marks anything paid).
    pub return_url: String,
    /// Unix milliseconds after which the gateway should refuse payment.
    pub expires_at_ms: i64,
    /// The buyer's User-Agent, for channels that pick a flavour from it.
    pub user_agent: Option<String>,
    /// The buyer's IP address (WeChat H5 `payer_client_ip`, Epay `clientip`); channels send
    /// a loopback placeholder when it is unknown (API orders).
    pub client_ip: Option<std::net::IpAddr>,
    /// The buyer's id at the gateway, learned through the browser before this call (WeChat
    /// OAuth `openid` for JSAPI, see [`PaymentChannel::payer_return`]); `None` otherwise.
    pub payer_openid: Option<String>,
}

impl CreatePayment {
    /// The buyer's IP as gateways want it, or a placeholder when unknown.
    pub fn client_ip_or(&self, placeholder: &str) -> String {
        self.client_ip
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_else(|| placeholder.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Pc,
    Mobile,
}

/// What the buyer must do next to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAction {
    /// Show this text as a QR code (e.g. Alipay precreate `qr_code`, WeChat `code_url`).
    Qr { qr_code: String },
    /// Send the browser to this URL.
    Redirect { url: String },
    /// Send the browser (in the same window) to the gateway to learn who pays first (WeChat
    /// OAuth `snsapi_base` before JSAPI); it comes back to the return URL, where
    /// [`PaymentChannel::payer_return`] reads it and the payment is created with the payer.
    Authorize { url: String },
    /// Ask the wallet the page runs inside to pay (WeChat JSAPI:
    /// `WeixinJSBridge.invoke('getBrandWCPayRequest', params, cb)`). What the page's callback
    /// says never marks anything paid.
    JsApi { params: JsApiParams },
}

/// The parameters of `getBrandWCPayRequest`, named as the bridge wants them (B.4): `appId`,
/// `timeStamp` (unix seconds as a string), `nonceStr`, `package` (`prepay_id=…`),
/// `signType` (`RSA`) and `paySign` (base64 SHA256withRSA over
/// `appId\ntimeStamp\nonceStr\npackage\n` with the merchant key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsApiParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// A browser back from the gateway's payer sign-in, its `state` verified: which trade it is
/// for, and the one-time code that names the payer ([`PaymentChannel::payer_id`]).
#[derive(Clone, PartialEq, Eq)]
pub struct PayerReturn {
    pub trade_no: String,
    /// One-time (WeChat: five minutes, single use); never logged.
    pub code: String,
}

impl std::fmt::Debug for PayerReturn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayerReturn")
            .field("trade_no", &self.trade_no)
            .finish_non_exhaustive()
    }
}

/// What a create call started at the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub action: PaymentAction,
    /// The gateway's own id of this attempt, when kami must name it later to query, close or
    /// refund it (a Stripe Checkout Session, a PayPal order). The server keeps it on the
    /// payment row and hands it back in [`TradeRef`]. `None` for gateways that know the trade
    /// by kami's trade number.
    pub gateway_ref: Option<String>,
    /// The coin amount the attempt asks the buyer for (USDT gateways): kept on the payment,
    /// shown to the seller, and every later payment of the attempt must report the same.
    pub coin_amount: Option<CoinAmount>,
}

impl From<PaymentAction> for Created {
    fn from(action: PaymentAction) -> Created {
        Created {
            action,
            gateway_ref: None,
            coin_amount: None,
        }
    }
}

/// One payment attempt as kami names it to its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRef {
    /// Our trade number (`out_trade_no`).
    pub trade_no: String,
    /// What the channel returned in [`Created::gateway_ref`], if anything.
    pub gateway_ref: Option<String>,
}

impl TradeRef {
    pub fn new(trade_no: impl Into<String>) -> TradeRef {
        TradeRef {
            trade_no: trade_no.into(),
            gateway_ref: None,
        }
    }
    pub fn with_ref(trade_no: impl Into<String>, gateway_ref: Option<String>) -> TradeRef {
        TradeRef {
            trade_no: trade_no.into(),
            gateway_ref,
        }
    }
}

impl From<&str> for TradeRef {
    fn from(trade_no: &str) -> TradeRef {
        TradeRef::new(trade_no)
    }
}

/// A notification exactly as it reached `/pay/notify/{channel_id}`.
#[derive(Debug, Clone)]
pub struct RawNotification {
    pub method: String,
    /// Raw query string without the leading `?` (empty if none).
    pub query: String,
    /// Header names lower-cased, values as received (non-UTF-8 values dropped).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawNotification {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A payment the channel has verified cryptographically and semantically (merchant id,
/// status). The order engine still checks the order binding, amount and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentConfirmation {
    pub trade_no: String,
    pub gateway_trade_no: String,
    pub amount: Money,
    /// When the gateway says the buyer paid (unix ms): Alipay `gmt_payment` /
    /// `send_pay_date`, WeChat `success_time`, Epay `endtime` (query only). `None` when the
    /// message has none or it does not parse (the payment still counts; only the notify-lag
    /// measure misses it).
    pub paid_at: Option<i64>,
    /// What the buyer paid in coin, where a crypto gateway reports it (epusdt / BEpusdt
    /// `actual_amount`, TokenPay `Amount`): the store refuses a payment whose coin amount is
    /// not the one the attempt was created for (an underpayment). `None` for fiat channels.
    pub coin_amount: Option<CoinAmount>,
}

/// The outcome of parsing and verifying one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyVerdict {
    /// Authentic and says the trade is paid.
    Paid(PaymentConfirmation),
    /// Authentic but not a payment (e.g. `TRADE_CLOSED`, `WAIT_BUYER_PAY`): nothing to do,
    /// acknowledge so the gateway stops resending.
    NotPaid { trade_no: String, status: String },
}

/// How kami answers a notification; each protocol turns it into its exact bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The outcome is durably committed (or was already): stop resending.
    Success,
    /// Rejected or not committed: the gateway should resend (or give up if forged).
    Failure,
}

/// An HTTP response for a gateway, byte-exact for the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// The channel's view of a trade when kami asks actively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// The gateway does not know the trade (not created or not yet scanned).
    NotFound,
    /// Created, waiting for the buyer.
    Waiting,
    /// Paid: carries the same verified facts a notification would.
    Paid(PaymentConfirmation),
    /// Closed or cancelled without payment.
    Closed,
    /// Fully refunded after payment.
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub trade_no: String,
    /// The attempt's [`Created::gateway_ref`], if the channel returned one.
    pub gateway_ref: Option<String>,
    /// The gateway's id of the money to return (the confirmation's `gateway_trade_no`: a
    /// Stripe payment intent, a PayPal capture), when known.
    pub gateway_trade_no: Option<String>,
    /// Idempotency key for this refund at the gateway (`out_request_no` / `out_refund_no`).
    pub refund_no: String,
    pub amount: Money,
    /// Total paid amount of the trade (some gateways require it).
    pub total: Money,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    pub refund_no: String,
    pub amount: Money,
    /// True when the money has actually moved (Alipay `fund_change=Y`, WeChat `SUCCESS`).
    pub settled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("notification signature is invalid")]
    BadSignature,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message is for another merchant or app")]
    WrongMerchant,
    #[error("message is outside the accepted time window")]
    Stale,
    #[error("gateway refused: {code}: {message}")]
    Gateway { code: String, message: String },
    #[error("gateway unreachable: {0}")]
    Transport(String),
    #[error("gateway response signature is invalid")]
    BadResponseSignature,
    #[error("operation not supported by this channel: {0}")]
    Unsupported(&'static str),
    #[error("channel configuration: {0}")]
    Config(String),
}

impl PayError {
    /// A short, fixed name of the error's kind: a metric label (never the message, which may
    /// carry gateway text).
    pub fn code(&self) -> &'static str {
        match self {
            PayError::BadSignature => "bad_signature",
            PayError::Malformed(_) => "malformed",
            PayError::WrongMerchant => "wrong_merchant",
            PayError::Stale => "stale",
            PayError::Gateway { .. } => "gateway_error",
            PayError::Transport(_) => "transport_error",
            PayError::BadResponseSignature => "bad_response_signature",
            PayError::Unsupported(_) => "unsupported",
            PayError::Config(_) => "config_error",
        }
    }
}

/// One configured payment channel. Implementations are cheap to share (`Arc<dyn ...>`).
#[async_trait]
pub trait PaymentChannel: Send + Sync {
    fn id(&self) -> &ChannelId;
    /// `alipay`, `wechatpay`, `epay`, `sandbox`.
    fn kind(&self) -> &'static str;
    fn methods(&self) -> &[Method];
    fn priority(&self) -> i32;

    /// The currency this channel charges for an order priced in `offered`: `offered` when
    /// it takes it, else the one it settles in (mainland gateways: CNY; PayPal, which never
    /// takes CNY: its `currency`). Checkout converts the order's amount with the product's
    /// own price in that currency or the `[fx]` rate table, and skips the channel when
    /// neither can. The default takes every currency.
    fn charge_currency(&self, offered: Currency) -> Currency {
        offered
    }

    /// Whether the channel can charge in this currency.
    fn accepts_currency(&self, currency: Currency) -> bool {
        self.charge_currency(currency) == currency
    }

    /// Start collecting: returns what the buyer must do.
    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError>;

    /// The I/O a notification's verification needs, done before the pure
    /// [`verify_notification`](PaymentChannel::verify_notification) and left in the channel
    /// (PayPal: fetch and check the signing certificate the webhook names, on PayPal's hosts
    /// only, and cache it). A failure is logged by the channel; verification then refuses.
    async fn prepare_notification(&self, raw: &RawNotification) {
        let _ = raw;
    }

    /// Parse and verify a raw notification. Pure: no I/O, no database.
    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError>;

    /// The exact reply the gateway expects for this outcome.
    fn ack(&self, ack: Ack) -> AckResponse;

    /// Ask the gateway for the trade's state (authenticated, verified response).
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError>;

    /// Close the trade at the gateway so it can no longer be paid. Returns the state the
    /// gateway reports afterwards: `Closed`/`NotFound` when closed, `Paid` if it was paid in
    /// the meantime (then the order must be delivered, not expired).
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError>;

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError>;

    /// Whether calling `refund` again with the same refund number is safe because the gateway
    /// de-duplicates on it. When false, a refund whose outcome is unknown (timeout) must not be
    /// retried automatically: it could pay the buyer back twice.
    fn refund_is_idempotent(&self) -> bool {
        true
    }

    /// Whether a verified notification saying "paid" must be confirmed by this channel's own
    /// [`query`](PaymentChannel::query) before it is applied (`confirm_by_query`). Aggregators
    /// (Epay) sign what their own database says, which is not always what the upstream
    /// collected: a success the query does not confirm is held, never delivered.
    fn confirm_by_query(&self) -> bool {
        false
    }

    /// Whether the buyer's return from the gateway, and a verified notification that is not
    /// a payment, make kami ask this channel about the trade at once ([`query`]). PayPal: an
    /// approved order is paid only once kami captures it, which its `query` does.
    ///
    /// [`query`]: PaymentChannel::query
    fn check_on_return(&self) -> bool {
        false
    }

    /// A browser at `/pay/return/{channel}` may come back from the payer sign-in this
    /// channel sent it to ([`PaymentAction::Authorize`]). Pure: reads the query string and
    /// verifies its `state` (unforgeable, bound to one trade, not past the trade's expiry).
    /// `Ok(None)`: an ordinary return.
    fn payer_return(&self, query: &str) -> Result<Option<PayerReturn>, PayError> {
        let _ = query;
        Ok(None)
    }

    /// The payer's id at the gateway (WeChat `openid`) for a verified [`PayerReturn`]: the
    /// code is exchanged at the gateway, once.
    async fn payer_id(&self, ret: &PayerReturn) -> Result<String, PayError> {
        let _ = ret;
        Err(PayError::Unsupported("payer sign-in"))
    }

    /// The gateway's bill for one day (authenticated download, totals checked). Channels
    /// without bills (Epay) answer `Unsupported`: reconciliation then queries each trade.
    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let _ = day;
        Err(PayError::Unsupported("bill download"))
    }
}
