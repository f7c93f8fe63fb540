//! The `wechatpay` channel: WeChat Pay API v3 for a direct merchant (`protocols.md` B). The
//! gateway side lives in `kami_sim::wechatpay`.
//!
//! # Protocol (byte level, `protocols.md` B.1–B.4)
//!
//! **Request signing (B.1).** Every API call carries
//! `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",timestamp="..",serial_no=".."`
//! where `signature` = base64 SHA256withRSA (PKCS#1 v1.5, merchant API key) over the five-line
//! message `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` ([`request_message`]); the path and
//! query are exactly the ones sent (a configured `api_base` with a path prefix is part of it),
//! the body is the exact request bytes (empty for GET). See [`authorization`].
//!
//! **Response and notification signatures (B.2).** `Wechatpay-Timestamp`, `Wechatpay-Nonce`,
//! `Wechatpay-Signature`, `Wechatpay-Serial` (and `Wechatpay-Signature-Type` when present,
//! which must be `WECHATPAY2-SHA256-RSA2048`); the signature is SHA256withRSA over
//! `TIMESTAMP\nNONCE\nBODY\n` with the RAW body bytes ([`response_message`]), verified with
//! the platform key selected by `Wechatpay-Serial` ([`PlatformKeys`]: a WeChat Pay public key
//! with its `PUB_KEY_ID_…`, or platform certificates by serial). Signature probes
//! (`WECHATPAY/SIGNTEST/…`) always fail; a timestamp more than [`MAX_CLOCK_SKEW_SECS`] from
//! the local clock is refused (replay protection). Every 2xx API answer must verify, or the
//! call fails with [`PayError::BadResponseSignature`]; non-2xx answers are API errors
//! `{"code","message"}` → [`PayError::Gateway`] (not verified, like wechatpay-go).
//!
//! **Notifications (B.3).** POST JSON `{id, create_time, event_type, resource_type, summary,
//! resource{algorithm: AEAD_AES_256_GCM, ciphertext, associated_data, nonce, original_type}}`.
//! kami verifies the headers over the raw body, decrypts `resource` with AES-256-GCM (key = the
//! 32-byte APIv3 key, nonce = the 12-byte `nonce` string, AAD = `associated_data`, input =
//! base64 ciphertext‖tag), then checks `mchid`/`appid` are ours. `TRANSACTION.SUCCESS` with
//! `trade_state` `SUCCESS` is a payment ([`NotifyVerdict::Paid`] with `out_trade_no`,
//! `transaction_id` and `amount{total (fen), currency}`); any other authentic event is
//! [`NotifyVerdict::NotPaid`]. Ack: success → HTTP 204 with no body; failure → 400
//! `{"code":"FAIL","message":"失败"}` (WeChat resends).
//!
//! **Endpoints (B.4).** Native `POST /v3/pay/transactions/native` → `code_url`
//! ([`PaymentAction::Qr`]); H5 `POST /v3/pay/transactions/h5` with `scene_info{payer_client_ip,
//! h5_info{type: Wap}}` → `h5_url` (+ `&redirect_url=<return_url>`, [`PaymentAction::Redirect`]);
//! `time_expire` is RFC 3339 in +08:00, `amount{total: fen, currency: CNY}`. Query
//! `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` (`SUCCESS` → paid, `NOTPAY`/`USERPAYING`
//! → waiting, `CLOSED`/`REVOKED`/`PAYERROR` → closed, `REFUND` → refunded — WeChat reports
//! `REFUND` after any refund, partial ones included; 404 `ORDER_NOT_EXIST` → not found).
//! Close `POST …/{no}/close` `{"mchid"}` → 204, then a query reports the state (paid if the
//! buyer paid meanwhile: WeChat answers `ORDERPAID` to the close). Refund
//! `POST /v3/refund/domestic/refunds` (idempotent per `out_refund_no`), settled when `status`
//! is `SUCCESS`; `PROCESSING` is polled with `GET /v3/refund/domestic/refunds/{out_refund_no}`
//! a few times within about two seconds, then reported unsettled.
//!
//! Bill: `GET /v3/bill/tradebill?bill_date=&bill_type=ALL` → `{hash_type, hash_value,
//! download_url}` (`NO_STATEMENT_EXIST` → an empty bill); the signed GET of `download_url`
//! answers unsigned bytes whose SHA1 must equal `hash_value`; [`bill_file`] reads the CSV.
//!
//! Mode `auto` uses H5 on mobile browsers, Native (a QR code) on PCs, and inside WeChat's own
//! browser (where H5 pay is refused) JSAPI when the channel has the Official Account's
//! `appsecret` ([`jsapi`]: OAuth `snsapi_base` for the buyer's openid through
//! [`PaymentAction::Authorize`], then `POST /v3/pay/transactions/jsapi` with
//! `payer{openid}` → `prepay_id` → [`PaymentAction::JsApi`] with the RSA `paySign`), else
//! Native.
//!
//! # Files
//!
//! `sign` (B.1/B.2 messages, `Authorization`, platform keys), `wire` (JSON shapes, answers →
//! facts, one verified call), `notify` (B.3 and the reply), `bill` and
//! `bill_file` (the day's bill), `tests` with `vectors`. Request
//! timestamps and the clock window use the channel's [`kami_core::Clock`]
//! ([`WechatPayChannel::with_clock`]).

mod bill;
pub mod bill_file;
pub mod jsapi;
mod notify;
pub mod settings;
mod sign;
mod wire;

#[cfg(test)]
mod bill_tests;
#[cfg(test)]
mod jsapi_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

use std::time::Duration;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, SharedClock};

use crate::crypto::RsaSigner;
use crate::{
    Ack, AckResponse, Bill, BillDay, CreatePayment, Created, Device, NotifyVerdict, PayError,
    PayerReturn, PaymentAction, PaymentChannel, RawNotification, RefundOutcome, RefundRequest,
    TradeRef, TradeState,
};

pub use bill::{sha1_hex, NO_BILL};
pub use jsapi::JsapiConfig;
pub use notify::{decrypt_resource, Resource};
pub use sign::{
    authorization, nonce_str, request_message, response_message, verify_signature,
    AuthorizationParams, PlatformKeys, SignatureFailure, SignedHeaders,
};
use wire::{checked_trade_no, clip, json, parse_amount, refund_body, RefundAnswer, Transaction};
pub use wire::{format_cst, parse_rfc3339, valid_out_refund_no, valid_out_trade_no};

/// Production API base (B); `https://api2.mch.weixin.qq.com` is the documented backup.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// The only signature scheme of API v3 (B.1, B.2).
pub const SIGNATURE_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// Signature-probe traffic starts its `Wechatpay-Signature` with this; never valid (B.2).
pub const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// Largest accepted |local clock − `Wechatpay-Timestamp`| in seconds (B.2).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Largest notification body [`WechatPayChannel::verify_notification`] reads.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;
/// `payer_client_ip` sent for H5 orders: kami's payment request does not carry the buyer's IP.
pub const DEFAULT_PAYER_CLIENT_IP: &str = "127.0.0.1";
/// The only `resource.algorithm` of API v3 notifications (B.3).
pub const RESOURCE_ALGORITHM: &str = "AEAD_AES_256_GCM";

/// Pauses before re-querying a `PROCESSING` refund.
const REFUND_POLLS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(600),
    Duration::from_millis(1200),
];
/// WeChat's `description` limit, `string(127)`; counted in UTF-8 bytes to be safe.
const MAX_DESCRIPTION_BYTES: usize = 127;

/// How orders are placed (DESIGN 4.2 `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WechatMode {
    /// `code_url` shown as a QR code.
    Native,
    /// `h5_url`: the mobile browser jumps into WeChat.
    H5,
    /// Native on PCs (and in WeChat's own browser), H5 on other mobile browsers.
    Auto,
}

impl WechatMode {
    /// `native` | `h5` | `auto`.
    pub fn parse(s: &str) -> Option<WechatMode> {
        match s {
            "native" => Some(WechatMode::Native),
            "h5" => Some(WechatMode::H5),
            "auto" => Some(WechatMode::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WechatMode::Native => "native",
            WechatMode::H5 => "h5",
            WechatMode::Auto => "auto",
        }
    }
}

/// Everything a `wechatpay` channel needs (DESIGN 4.2 kind-specific keys).
pub struct WechatPayConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    /// Default [`DEFAULT_API_BASE`]; no trailing slash needed.
    pub api_base: String,
    pub mchid: String,
    pub appid: String,
    /// Serial (hex) of the merchant API certificate whose key signs requests.
    pub merchant_serial_no: String,
    pub merchant_private_key: RsaSigner,
    /// The 32-byte APIv3 key (used as raw bytes).
    pub apiv3_key: Vec<u8>,
    pub platform: PlatformKeys,
    pub mode: WechatMode,
    /// JSAPI inside WeChat (`appsecret_file`): `None` keeps WeChat's browser on Native.
    pub jsapi: Option<JsapiConfig>,
}

impl std::fmt::Debug for WechatPayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayConfig")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("api_base", &self.api_base)
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_private_key", &"<redacted>")
            .field("apiv3_key", &"<redacted>")
            .field("platform", &self.platform)
            .field("mode", &self.mode)
            .field("jsapi", &self.jsapi)
            .finish()
    }
}

impl WechatPayConfig {
    /// Load-time sanity checks (the channel works without them, but fails every call).
    pub fn validate(&self) -> Result<(), PayError> {
        let bad = |m: &str| Err(PayError::Config(format!("wechatpay: {m}")));
        if self.apiv3_key.len() != 32 {
            return bad("the APIv3 key must be exactly 32 bytes");
        }
        if self.mchid.is_empty() || !self.mchid.bytes().all(|b| b.is_ascii_digit()) {
            return bad("mchid must be digits");
        }
        if self.appid.is_empty() || !self.appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad("appid must be letters and digits");
        }
        if sign::normalize_serial(&self.merchant_serial_no).is_none() {
            return bad("merchant_serial_no must be hex");
        }
        match url::Url::parse(&self.api_base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => return bad("api_base must be an http(s) URL without query"),
        }
        match &self.platform {
            PlatformKeys::PublicKey { id, .. } if id.is_empty() => {
                bad("wechatpay_public_key_id is empty")
            }
            PlatformKeys::Certificates(c) if c.is_empty() => bad("no platform certificate"),
            _ => Ok(()),
        }
    }
}

/// The WeChat Pay API v3 channel (kami side).
pub struct WechatPayChannel {
    cfg: WechatPayConfig,
    http: reqwest::Client,
    /// Request timestamps and the signature clock window read this clock.
    clock: SharedClock,
}

impl std::fmt::Debug for WechatPayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayChannel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl WechatPayChannel {
    pub fn new(mut cfg: WechatPayConfig, http: reqwest::Client) -> WechatPayChannel {
        let base = cfg.api_base.trim().trim_end_matches('/');
        cfg.api_base = if base.is_empty() {
            DEFAULT_API_BASE.to_owned()
        } else {
            base.to_owned()
        };
        WechatPayChannel {
            cfg,
            http,
            clock: kami_core::clock::system(),
        }
    }

    /// The same channel reading `clock` for request timestamps and the clock window.
    pub fn with_clock(mut self, clock: SharedClock) -> WechatPayChannel {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &WechatPayConfig {
        &self.cfg
    }

    fn flavour(&self, req: &CreatePayment) -> Flavour {
        match self.cfg.mode {
            WechatMode::Auto => {
                let in_wechat = req
                    .user_agent
                    .as_deref()
                    .is_some_and(|ua| ua.contains("MicroMessenger"));
                if in_wechat && self.cfg.jsapi.is_some() && !req.return_url.is_empty() {
                    Flavour::Jsapi
                } else if req.device == Device::Mobile && !in_wechat {
                    Flavour::H5
                } else {
                    Flavour::Native
                }
            }
            WechatMode::H5 => Flavour::H5,
            WechatMode::Native => Flavour::Native,
        }
    }

    /// JSAPI without the payer yet: the OAuth hop, coming back to the return URL with a
    /// `state` bound to this trade until its expiry.
    fn authorize(
        &self,
        req: &CreatePayment,
        jsapi: &JsapiConfig,
    ) -> Result<PaymentAction, PayError> {
        let state = jsapi::make_state(
            &jsapi.appsecret,
            self.cfg.id.as_str(),
            req.trade_no.as_str(),
            req.expires_at_ms.div_euclid(1000),
        )?;
        Ok(PaymentAction::Authorize {
            url: jsapi::authorize_url(&jsapi.oauth_base, &self.cfg.appid, &req.return_url, &state),
        })
    }

    /// B.4 JSAPI order for a known payer, then the bridge parameters of its `prepay_id`.
    async fn jsapi_order(
        &self,
        req: &CreatePayment,
        trade_no: &str,
        openid: &str,
    ) -> Result<PaymentAction, PayError> {
        if !jsapi::valid_openid(openid) {
            return Err(PayError::Malformed(
                "the payer's openid is not valid".into(),
            ));
        }
        let body = self.order_body(req, trade_no, WechatMode::Native, Some(openid))?;
        let a = self
            .call(
                reqwest::Method::POST,
                "/v3/pay/transactions/jsapi",
                Some(body),
            )
            .await?;
        let v: serde_json::Value = json(&a.body, "order answer")?;
        let prepay_id = v
            .get("prepay_id")
            .and_then(|u| u.as_str())
            .filter(|p| {
                !p.is_empty()
                    && p.len() <= 64
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .ok_or_else(|| PayError::Malformed("order answer has no prepay_id".into()))?;
        let params = jsapi::jsapi_params(
            &self.cfg.merchant_private_key,
            &self.cfg.appid,
            prepay_id,
            self.clock.now_secs(),
            &nonce_str(),
        )
        .map_err(|e| PayError::Config(format!("wechatpay: signing paySign: {e}")))?;
        Ok(PaymentAction::JsApi { params })
    }
}

/// What a create call asks WeChat for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Native,
    H5,
    /// Inside WeChat's browser with `appsecret` set: OAuth for the openid, then JSAPI.
    Jsapi,
}

#[async_trait]
impl PaymentChannel for WechatPayChannel {
    fn id(&self) -> &ChannelId {
        &self.cfg.id
    }

    fn kind(&self) -> &'static str {
        "wechatpay"
    }

    fn methods(&self) -> &[Method] {
        &self.cfg.methods
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    /// Mainland gateways settle in CNY only (epusdt and BEpusdt take the fiat amount in CNY).
    fn charge_currency(&self, _offered: Currency) -> Currency {
        Currency::Cny
    }

    /// Native, H5 or JSAPI order (B.4); JSAPI first learns the payer (OAuth).
    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("wechatpay charges in CNY only"));
        }
        let trade_no = checked_trade_no(req.trade_no.as_str())?;
        let mode = match (
            self.flavour(req),
            &self.cfg.jsapi,
            req.payer_openid.as_deref(),
        ) {
            (Flavour::Jsapi, Some(_), Some(openid)) => {
                return self
                    .jsapi_order(req, trade_no, openid)
                    .await
                    .map(Created::from)
            }
            (Flavour::Jsapi, Some(jsapi), None) => {
                return self.authorize(req, jsapi).map(Created::from)
            }
            (Flavour::H5, ..) => WechatMode::H5,
            _ => WechatMode::Native,
        };
        let body = self.order_body(req, trade_no, mode, None)?;
        let path = if mode == WechatMode::H5 {
            "/v3/pay/transactions/h5"
        } else {
            "/v3/pay/transactions/native"
        };
        let a = self.call(reqwest::Method::POST, path, Some(body)).await?;
        let v: serde_json::Value = json(&a.body, "order answer")?;
        let field = if mode == WechatMode::H5 {
            "h5_url"
        } else {
            "code_url"
        };
        let url = v
            .get(field)
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| PayError::Malformed(format!("order answer has no {field}")))?;
        if mode == WechatMode::H5 {
            let mut url = url.to_owned();
            if !req.return_url.is_empty() {
                let enc: String =
                    url::form_urlencoded::byte_serialize(req.return_url.as_bytes()).collect();
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("redirect_url=");
                url.push_str(&enc);
            }
            Ok(PaymentAction::Redirect { url }.into())
        } else {
            Ok(PaymentAction::Qr {
                qr_code: url.to_owned(),
            }
            .into())
        }
    }

    /// B.3 notification: headers, clock window, decryption, merchant, state.
    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.verify_notification_at(raw, self.clock.now_secs())
    }

    /// The OAuth hop's return: `state` verified against this channel's appsecret.
    fn payer_return(&self, query: &str) -> Result<Option<PayerReturn>, PayError> {
        match &self.cfg.jsapi {
            Some(j) => jsapi::read_return(
                &j.appsecret,
                self.cfg.id.as_str(),
                query,
                self.clock.now_secs(),
            ),
            None => Ok(None),
        }
    }

    /// `sns/oauth2/access_token`: the code (once) for the buyer's openid.
    async fn payer_id(&self, ret: &PayerReturn) -> Result<String, PayError> {
        let Some(j) = &self.cfg.jsapi else {
            return Err(PayError::Unsupported("JSAPI needs appsecret"));
        };
        let url =
            jsapi::access_token_url(&j.sns_api_base, &self.cfg.appid, &j.appsecret, &ret.code)?;
        let reply = crate::http::send(self.http.get(url).timeout(Duration::from_secs(10))).await?;
        if !(200..300).contains(&reply.status) {
            return Err(PayError::Gateway {
                code: format!("HTTP_{}", reply.status),
                message: "sns/oauth2/access_token failed".into(),
            });
        }
        jsapi::openid_of(&reply.body)
    }

    /// B.3 reply: 204 for success, 400 `{"code":"FAIL",...}` to have WeChat resend.
    fn ack(&self, ack: Ack) -> AckResponse {
        notify::ack(ack)
    }

    /// B.4 query by `out_trade_no`.
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let path = format!("{}?mchid={}", Self::trade_path(trade_no)?, self.cfg.mchid);
        let a = match self.call(reqwest::Method::GET, &path, None).await {
            Ok(a) => a,
            Err(PayError::Gateway { code, .. }) if code == "ORDER_NOT_EXIST" => {
                return Ok(TradeState::NotFound)
            }
            Err(e) => return Err(e),
        };
        let tx: Transaction = json(&a.body, "query answer")?;
        if tx.mchid.as_deref().is_some_and(|m| m != self.cfg.mchid) {
            return Err(PayError::WrongMerchant);
        }
        if tx.out_trade_no.as_deref().is_some_and(|t| t != trade_no) {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        match tx.trade_state.as_deref() {
            Some("SUCCESS") => Ok(TradeState::Paid(self.confirmation(&tx, Some(trade_no))?)),
            Some("NOTPAY" | "USERPAYING") => Ok(TradeState::Waiting),
            Some("CLOSED" | "REVOKED" | "PAYERROR") => Ok(TradeState::Closed),
            Some("REFUND") => Ok(TradeState::Refunded),
            Some(other) => Err(PayError::Malformed(format!(
                "unknown trade_state {}",
                clip(other)
            ))),
            None => Err(PayError::Malformed(
                "query answer has no trade_state".into(),
            )),
        }
    }

    /// B.4 close, then a query for the resulting state.
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let path = format!("{}/close", Self::trade_path(trade_no)?);
        let body = serde_json::json!({ "mchid": self.cfg.mchid }).to_string();
        match self.call(reqwest::Method::POST, &path, Some(body)).await {
            Ok(a) if a.status == 204 || a.status == 200 => {}
            Ok(a) => {
                return Err(PayError::Gateway {
                    code: format!("HTTP_{}", a.status),
                    message: "unexpected answer to close".into(),
                })
            }
            // Already paid, already closed or never created: the query tells which.
            Err(PayError::Gateway { code, .. })
                if matches!(
                    code.as_str(),
                    "ORDERPAID" | "ORDER_PAID" | "ORDER_CLOSED" | "ORDERCLOSED" | "ORDER_NOT_EXIST"
                ) => {}
            Err(e) => return Err(e),
        }
        self.query(trade).await
    }

    /// B.4 domestic refund, idempotent per `refund_no`.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        if req.amount.currency() != Currency::Cny || req.total.currency() != Currency::Cny {
            return Err(PayError::Unsupported("wechatpay refunds in CNY only"));
        }
        if !valid_out_refund_no(&req.refund_no) {
            return Err(PayError::Malformed(format!(
                "{} is not a valid WeChat out_refund_no",
                clip(&req.refund_no)
            )));
        }
        checked_trade_no(&req.trade_no)?;
        let body = refund_body(req)?;
        let a = self
            .call(
                reqwest::Method::POST,
                "/v3/refund/domestic/refunds",
                Some(body),
            )
            .await?;
        let mut answer: RefundAnswer = json(&a.body, "refund answer")?;
        for pause in REFUND_POLLS {
            if answer.status != "PROCESSING" {
                break;
            }
            tokio::time::sleep(pause).await;
            answer = self.refund_status(&req.refund_no).await?;
        }
        if answer.out_refund_no != req.refund_no {
            return Err(PayError::Malformed(
                "gateway answered for another refund".into(),
            ));
        }
        let settled = match answer.status.as_str() {
            "SUCCESS" => true,
            "PROCESSING" => false,
            other => {
                return Err(PayError::Gateway {
                    code: clip(other),
                    message: "refund not successful".into(),
                })
            }
        };
        let amount = match &answer.amount {
            Some(a) => parse_amount(a.refund, a.currency.as_deref().or(Some("CNY")))?,
            None => return Err(PayError::Malformed("refund answer has no amount".into())),
        };
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount,
            settled,
        })
    }

    /// B.4 trade bill (`ALL`), its SHA1 checked, its totals checked.
    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        self.fetch_bill(day).await
    }
}
