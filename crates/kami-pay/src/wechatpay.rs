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
//! Mode `auto` uses H5 on mobile browsers and Native (a QR code) on PCs and inside WeChat's
//! own browser, where H5 pay is refused but a QR code can be long-pressed.

pub mod settings;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use kami_core::{ChannelId, Currency, Method, Money};
use serde::{Deserialize, Serialize};

use crate::crypto::{aes256gcm_decrypt, Certificate, KeyError, RsaHash, RsaSigner, RsaVerifier};
use crate::{
    Ack, AckResponse, CreatePayment, Device, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeState,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

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

/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);
/// Pauses before re-querying a `PROCESSING` refund.
const REFUND_POLLS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(600),
    Duration::from_millis(1200),
];
const USER_AGENT: &str = concat!("kami/", env!("CARGO_PKG_VERSION"), " (WeChat Pay API v3)");
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

/// The keys that verify WeChat's signatures, selected by `Wechatpay-Serial` (B.2).
#[derive(Debug, Clone)]
pub enum PlatformKeys {
    /// "WeChat Pay public key" mode: `pub_key.pem` and its `PUB_KEY_ID_…`.
    PublicKey { id: String, key: RsaVerifier },
    /// Platform certificates (old mode), looked up by serial (hex, case-insensitive) and only
    /// within their validity window.
    Certificates(Vec<Certificate>),
}

impl PlatformKeys {
    /// The key for `serial` at unix time `now`, if any.
    pub fn find(&self, serial: &str, now: i64) -> Option<&RsaVerifier> {
        match self {
            PlatformKeys::PublicKey { id, key } => (!id.is_empty() && serial == id).then_some(key),
            PlatformKeys::Certificates(certs) => {
                let want = normalize_serial(serial)?;
                certs
                    .iter()
                    .find(|c| {
                        normalize_serial(&c.serial_hex).as_deref() == Some(want.as_str())
                            && c.not_before <= now
                            && now <= c.not_after
                    })
                    .map(|c| &c.verifier)
            }
        }
    }
}

/// Upper-case hex without leading zeros; `None` unless `s` is non-empty hex.
fn normalize_serial(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let t = s.trim_start_matches('0').to_ascii_uppercase();
    Some(if t.is_empty() { "0".to_owned() } else { t })
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
        if normalize_serial(&self.merchant_serial_no).is_none() {
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

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh request nonce: 32 upper-case hex characters (as the official SDKs make them).
pub fn nonce_str() -> String {
    hex::encode_upper(rand::random::<[u8; 16]>())
}

/// The B.1 request message: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The B.2 response/notification message: `TIMESTAMP\nNONCE\nBODY\n` over raw body bytes.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The parameters of a B.1 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationParams {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

impl AuthorizationParams {
    /// The header value, parameters in the SDKs' order.
    pub fn header_value(&self) -> String {
        format!(
            "{SIGNATURE_SCHEME} mchid=\"{}\",nonce_str=\"{}\",signature=\"{}\",timestamp=\"{}\",serial_no=\"{}\"",
            self.mchid, self.nonce_str, self.signature, self.timestamp, self.serial_no
        )
    }

    /// Parse `WECHATPAY2-SHA256-RSA2048 k="v",...`: the five parameters in any order, each
    /// exactly once, optional spaces around the commas; values may not contain `"`.
    pub fn parse(header: &str) -> Result<AuthorizationParams, String> {
        let rest = header
            .strip_prefix(SIGNATURE_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| format!("scheme must be {SIGNATURE_SCHEME}"))?;
        let mut fields: [Option<String>; 5] = Default::default();
        const NAMES: [&str; 5] = ["mchid", "nonce_str", "signature", "timestamp", "serial_no"];
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=').ok_or("parameter without '='")?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("parameter value must be quoted")?;
            let close = after.find('"').ok_or("unterminated parameter value")?;
            let value = &after[..close];
            let slot = NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("unknown parameter {}", clip(name)))?;
            if fields[slot].replace(value.to_owned()).is_some() {
                return Err(format!("duplicate parameter {name}"));
            }
            rest = after[close + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
                if rest.is_empty() {
                    return Err("trailing comma".into());
                }
            } else if !rest.is_empty() {
                return Err("parameters must be separated by commas".into());
            }
        }
        let [mchid, nonce_str, signature, timestamp, serial_no] = fields;
        let need = |v: Option<String>, n: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| format!("missing parameter {n}"))
        };
        Ok(AuthorizationParams {
            mchid: need(mchid, "mchid")?,
            nonce_str: need(nonce_str, "nonce_str")?,
            signature: need(signature, "signature")?,
            timestamp: need(timestamp, "timestamp")?,
            serial_no: need(serial_no, "serial_no")?,
        })
    }
}

/// Sign one request (B.1) and return the whole `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    signer: &RsaSigner,
    mchid: &str,
    serial_no: &str,
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> Result<String, KeyError> {
    let message = request_message(method, canonical_url, timestamp, nonce, body);
    let signature = signer.sign_base64(RsaHash::Sha256, message.as_bytes())?;
    Ok(AuthorizationParams {
        mchid: mchid.to_owned(),
        nonce_str: nonce.to_owned(),
        signature,
        timestamp: timestamp.to_owned(),
        serial_no: serial_no.to_owned(),
    }
    .header_value())
}

/// The signature headers of a response or notification (B.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
    pub signature_type: Option<String>,
}

/// Why a B.2 signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    /// `Wechatpay-Timestamp` is not a unix time.
    BadTimestamp,
    /// `Wechatpay-Signature-Type` is not [`SIGNATURE_SCHEME`].
    UnsupportedType,
    /// A `WECHATPAY/SIGNTEST/` probe.
    Probe,
    /// No platform key for `Wechatpay-Serial`.
    UnknownSerial,
    /// The signature does not verify.
    Invalid,
    /// Authentic but older or newer than [`MAX_CLOCK_SKEW_SECS`].
    Stale,
}

/// Verify a B.2 signature over `body` at unix time `now`: type, probe, serial → key,
/// SHA256withRSA, then the clock window. Never panics.
pub fn verify_signature(
    keys: &PlatformKeys,
    h: &SignedHeaders,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureFailure> {
    if h.signature_type
        .as_deref()
        .is_some_and(|t| t != SIGNATURE_SCHEME)
    {
        return Err(SignatureFailure::UnsupportedType);
    }
    if h.signature.starts_with(SIGNTEST_PREFIX) {
        return Err(SignatureFailure::Probe);
    }
    let ts = parse_unix(&h.timestamp).ok_or(SignatureFailure::BadTimestamp)?;
    let key = keys
        .find(&h.serial, now)
        .ok_or(SignatureFailure::UnknownSerial)?;
    let message = response_message(&h.timestamp, &h.nonce, body);
    if !key.verify_base64(RsaHash::Sha256, &message, &h.signature) {
        return Err(SignatureFailure::Invalid);
    }
    if ts.abs_diff(now) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(SignatureFailure::Stale);
    }
    Ok(())
}

/// Decimal unix seconds, at most 12 digits.
fn parse_unix(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

const CST: time::UtcOffset = time::macros::offset!(+8);

/// Unix seconds as RFC 3339 in China Standard Time: `2018-06-08T10:34:56+08:00` (B.4).
pub fn format_cst(unix_secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()?
        .to_offset(CST);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
    ))
    .ok()
}

/// An RFC 3339 time (any offset) as unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The `resource` of a notification (B.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub original_type: Option<String>,
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
}

/// A notification envelope (B.3).
#[derive(Debug, Clone, Deserialize)]
struct Envelope {
    event_type: String,
    #[serde(default)]
    resource_type: Option<String>,
    resource: Resource,
}

/// Decrypt a `resource` (AEAD_AES_256_GCM, B.3) with the APIv3 key.
pub fn decrypt_resource(apiv3_key: &[u8], r: &Resource) -> Result<Vec<u8>, PayError> {
    if r.algorithm != RESOURCE_ALGORITHM {
        return Err(PayError::Malformed(format!(
            "unsupported resource algorithm {}",
            clip(&r.algorithm)
        )));
    }
    if apiv3_key.len() != 32 {
        return Err(PayError::Config(
            "wechatpay: the APIv3 key must be exactly 32 bytes".into(),
        ));
    }
    let ct = B64
        .decode(r.ciphertext.as_bytes())
        .map_err(|_| PayError::Malformed("resource ciphertext is not base64".into()))?;
    let aad = r.associated_data.as_deref().unwrap_or("");
    aes256gcm_decrypt(apiv3_key, r.nonce.as_bytes(), aad.as_bytes(), &ct)
        .map_err(|_| PayError::Malformed("resource does not decrypt with the APIv3 key".into()))
}

/// `amount` of a transaction (fen).
#[derive(Debug, Clone, Deserialize)]
struct TxAmount {
    #[serde(default)]
    total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

/// The fields of a decrypted `transaction` resource or a query answer kami relies on (B.3).
#[derive(Debug, Clone, Deserialize)]
struct Transaction {
    #[serde(default)]
    mchid: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    trade_state: Option<String>,
    #[serde(default)]
    refund_status: Option<String>,
    #[serde(default)]
    amount: Option<TxAmount>,
}

#[derive(Debug, Clone, Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RefundAnswer {
    out_refund_no: String,
    status: String,
    #[serde(default)]
    amount: Option<RefundAnswerAmount>,
}

#[derive(Debug, Clone, Deserialize)]
struct RefundAnswerAmount {
    refund: i64,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Serialize)]
struct AmountReq<'a> {
    total: i64,
    currency: &'a str,
}

#[derive(Serialize)]
struct H5Info {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct SceneInfo<'a> {
    payer_client_ip: &'a str,
    h5_info: H5Info,
}

#[derive(Serialize)]
struct OrderReq<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_expire: Option<String>,
    notify_url: &'a str,
    amount: AmountReq<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_info: Option<SceneInfo<'a>>,
}

#[derive(Serialize)]
struct RefundAmountReq {
    refund: i64,
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct RefundReq<'a> {
    out_trade_no: &'a str,
    out_refund_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    amount: RefundAmountReq,
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(48).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `out_trade_no` rule (B.4): 6–32 of `[0-9A-Za-z_-|*]`.
pub fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

/// `out_refund_no` rule (B.4): 1–64 of `[0-9A-Za-z_-|*@]`.
pub fn valid_out_refund_no(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, PayError> {
    serde_json::from_slice(body)
        .map_err(|e| PayError::Malformed(format!("{what}: {}", clip(&e.to_string()))))
}

fn parse_amount(total: i64, currency: Option<&str>) -> Result<Money, PayError> {
    let currency = currency.ok_or_else(|| PayError::Malformed("amount.currency missing".into()))?;
    let currency = Currency::parse(currency).map_err(|e| PayError::Malformed(e.to_string()))?;
    Money::new(total, currency).map_err(|e| PayError::Malformed(format!("amount: {e}")))
}

/// The WeChat Pay API v3 channel (kami side).
pub struct WechatPayChannel {
    cfg: WechatPayConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for WechatPayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayChannel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A verified 2xx answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl WechatPayChannel {
    pub fn new(mut cfg: WechatPayConfig, http: reqwest::Client) -> WechatPayChannel {
        let base = cfg.api_base.trim().trim_end_matches('/');
        cfg.api_base = if base.is_empty() {
            DEFAULT_API_BASE.to_owned()
        } else {
            base.to_owned()
        };
        WechatPayChannel { cfg, http }
    }

    pub fn config(&self) -> &WechatPayConfig {
        &self.cfg
    }

    /// [`PaymentChannel::verify_notification`] at an explicit unix time (tests, replays of
    /// recorded vectors).
    pub fn verify_notification_at(
        &self,
        raw: &RawNotification,
        now: i64,
    ) -> Result<NotifyVerdict, PayError> {
        if !raw.method.eq_ignore_ascii_case("POST") {
            return Err(PayError::Malformed(format!(
                "unsupported method {}",
                clip(&raw.method)
            )));
        }
        if raw.body.len() > MAX_NOTIFY_BYTES {
            return Err(PayError::Malformed("notification too large".into()));
        }
        let headers = signed_headers(|name| {
            let mut it = raw
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            let first = it.next();
            if it.next().is_some() {
                return Err(format!("duplicate header {name}"));
            }
            Ok(first)
        })
        .map_err(PayError::Malformed)?;
        match verify_signature(&self.cfg.platform, &headers, &raw.body, now) {
            Ok(()) => {}
            Err(SignatureFailure::Stale) => return Err(PayError::Stale),
            Err(SignatureFailure::BadTimestamp) => {
                return Err(PayError::Malformed(
                    "Wechatpay-Timestamp is not a unix time".into(),
                ))
            }
            Err(_) => return Err(PayError::BadSignature),
        }
        let env: Envelope = json(&raw.body, "notification")?;
        if env
            .resource_type
            .as_deref()
            .is_some_and(|t| t != "encrypt-resource")
        {
            return Err(PayError::Malformed(
                "resource_type is not encrypt-resource".into(),
            ));
        }
        let plain = decrypt_resource(&self.cfg.apiv3_key, &env.resource)?;
        let tx: Transaction = json(&plain, "notification resource")?;
        match tx.mchid.as_deref() {
            Some(m) if m == self.cfg.mchid => {}
            Some(_) => return Err(PayError::WrongMerchant),
            None => return Err(PayError::Malformed("resource has no mchid".into())),
        }
        if tx.appid.as_deref().is_some_and(|a| a != self.cfg.appid) {
            return Err(PayError::WrongMerchant);
        }
        let paid =
            env.event_type == "TRANSACTION.SUCCESS" && tx.trade_state.as_deref() == Some("SUCCESS");
        if paid {
            return self.confirmation(&tx, None).map(NotifyVerdict::Paid);
        }
        let status = tx
            .trade_state
            .clone()
            .or_else(|| tx.refund_status.clone())
            .unwrap_or_else(|| env.event_type.clone());
        Ok(NotifyVerdict::NotPaid {
            trade_no: tx.out_trade_no.unwrap_or_default(),
            status: clip(&status),
        })
    }

    /// The verified facts of a paid transaction (notification or query).
    fn confirmation(
        &self,
        tx: &Transaction,
        expect_trade_no: Option<&str>,
    ) -> Result<PaymentConfirmation, PayError> {
        match tx.appid.as_deref() {
            Some(a) if a == self.cfg.appid => {}
            Some(_) => return Err(PayError::WrongMerchant),
            None => return Err(PayError::Malformed("transaction has no appid".into())),
        }
        let trade_no = tx
            .out_trade_no
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::Malformed("transaction has no out_trade_no".into()))?;
        if expect_trade_no.is_some_and(|e| e != trade_no) {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        let gateway_trade_no = tx
            .transaction_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::Malformed("transaction has no transaction_id".into()))?;
        let amount = tx
            .amount
            .as_ref()
            .ok_or_else(|| PayError::Malformed("transaction has no amount".into()))?;
        let total = amount
            .total
            .ok_or_else(|| PayError::Malformed("amount.total missing".into()))?;
        let amount = parse_amount(total, amount.currency.as_deref())?;
        Ok(PaymentConfirmation {
            trade_no: trade_no.to_owned(),
            gateway_trade_no: gateway_trade_no.to_owned(),
            amount,
        })
    }

    /// Sign and send one API request; verify a 2xx answer; map errors.
    async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<Answer, PayError> {
        let url = url::Url::parse(&format!("{}{path_and_query}", self.cfg.api_base))
            .map_err(|_| PayError::Config("wechatpay: api_base is not a URL".into()))?;
        let canonical = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let ts = now_secs().to_string();
        let nonce = nonce_str();
        let body = body.unwrap_or_default();
        let auth = authorization(
            &self.cfg.merchant_private_key,
            &self.cfg.mchid,
            &self.cfg.merchant_serial_no,
            method.as_str(),
            &canonical,
            &ts,
            &nonce,
            &body,
        )
        .map_err(|e| PayError::Config(format!("wechatpay: signing failed: {e}")))?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(API_TIMEOUT)
            .header("authorization", auth)
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT);
        if method != reqwest::Method::GET {
            req = req.header("content-type", "application/json").body(body);
        }
        let crate::http::Reply {
            status,
            headers,
            body: bytes,
        } = crate::http::send(req).await?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => PayError::Gateway {
                    code: clip(&e.code),
                    message: e
                        .message
                        .map(|m| clip(&m))
                        .unwrap_or_else(|| format!("HTTP {status}")),
                },
                Err(_) => PayError::Gateway {
                    code: format!("HTTP_{status}"),
                    message: clip(&String::from_utf8_lossy(&bytes)),
                },
            });
        }
        let signed = signed_headers(|name| {
            let mut it = headers.get_all(name).iter();
            let first = it.next();
            if it.next().is_some() {
                return Err(format!("duplicate header {name}"));
            }
            first
                .map(|v| v.to_str().map_err(|_| format!("header {name} is not text")))
                .transpose()
        })
        .map_err(|_| PayError::BadResponseSignature)?;
        match verify_signature(&self.cfg.platform, &signed, &bytes, now_secs()) {
            Ok(()) => Ok(Answer {
                status,
                body: bytes,
            }),
            Err(SignatureFailure::Stale) => Err(PayError::Stale),
            Err(_) => Err(PayError::BadResponseSignature),
        }
    }

    fn trade_path(trade_no: &str) -> Result<String, PayError> {
        if !valid_out_trade_no(trade_no) {
            return Err(PayError::Malformed(format!(
                "{} is not a valid WeChat out_trade_no",
                clip(trade_no)
            )));
        }
        Ok(format!("/v3/pay/transactions/out-trade-no/{trade_no}"))
    }

    fn flavour(&self, req: &CreatePayment) -> WechatMode {
        match self.cfg.mode {
            WechatMode::Auto => {
                let in_wechat = req
                    .user_agent
                    .as_deref()
                    .is_some_and(|ua| ua.contains("MicroMessenger"));
                if req.device == Device::Mobile && !in_wechat {
                    WechatMode::H5
                } else {
                    WechatMode::Native
                }
            }
            m => m,
        }
    }

    async fn refund_status(&self, refund_no: &str) -> Result<RefundAnswer, PayError> {
        let path = format!("/v3/refund/domestic/refunds/{refund_no}");
        let a = self.call(reqwest::Method::GET, &path, None).await?;
        json(&a.body, "refund answer")
    }
}

/// Collect the B.2 headers through `get` (which reports duplicates/non-text as `Err`).
fn signed_headers<'a>(
    get: impl Fn(&'static str) -> Result<Option<&'a str>, String>,
) -> Result<SignedHeaders, String> {
    let need = |name: &'static str| -> Result<String, String> {
        get(name)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("missing header {name}"))
    };
    Ok(SignedHeaders {
        timestamp: need("wechatpay-timestamp")?,
        nonce: need("wechatpay-nonce")?,
        signature: need("wechatpay-signature")?,
        serial: need("wechatpay-serial")?,
        signature_type: get("wechatpay-signature-type")?.map(|v| v.trim().to_owned()),
    })
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

    /// Native or H5 order (B.4).
    async fn create(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("wechatpay charges in CNY only"));
        }
        let trade_no = req.trade_no.as_str();
        if !valid_out_trade_no(trade_no) {
            return Err(PayError::Malformed(format!(
                "{} is not a valid WeChat out_trade_no",
                clip(trade_no)
            )));
        }
        let mut description = String::new();
        for c in req.subject.chars().filter(|c| !c.is_control()) {
            if description.len() + c.len_utf8() > MAX_DESCRIPTION_BYTES {
                break;
            }
            description.push(c);
        }
        if description.trim().is_empty() {
            description = trade_no.to_owned();
        }
        let time_expire = Some(
            format_cst(req.expires_at_ms.div_euclid(1000))
                .ok_or_else(|| PayError::Malformed("expiry time out of range".into()))?,
        );
        let mode = self.flavour(req);
        let client_ip = req.client_ip_or(DEFAULT_PAYER_CLIENT_IP);
        let scene_info = (mode == WechatMode::H5).then_some(SceneInfo {
            payer_client_ip: &client_ip,
            h5_info: H5Info { kind: "Wap" },
        });
        let body = serde_json::to_string(&OrderReq {
            appid: &self.cfg.appid,
            mchid: &self.cfg.mchid,
            description: &description,
            out_trade_no: trade_no,
            time_expire,
            notify_url: &req.notify_url,
            amount: AmountReq {
                total: req.amount.minor(),
                currency: "CNY",
            },
            scene_info,
        })
        .map_err(|e| PayError::Malformed(e.to_string()))?;
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
            Ok(PaymentAction::Redirect { url })
        } else {
            Ok(PaymentAction::Qr {
                qr_code: url.to_owned(),
            })
        }
    }

    /// B.3 notification: headers, clock window, decryption, merchant, state.
    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.verify_notification_at(raw, now_secs())
    }

    /// B.3 reply: 204 for success, 400 `{"code":"FAIL",...}` to have WeChat resend.
    fn ack(&self, ack: Ack) -> AckResponse {
        match ack {
            Ack::Success => AckResponse {
                status: 204,
                content_type: "text/plain; charset=utf-8",
                body: String::new(),
            },
            Ack::Failure => AckResponse {
                status: 400,
                content_type: "application/json",
                body: r#"{"code":"FAIL","message":"失败"}"#.to_owned(),
            },
        }
    }

    /// B.4 query by `out_trade_no`.
    async fn query(&self, trade_no: &str) -> Result<TradeState, PayError> {
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
    async fn close(&self, trade_no: &str) -> Result<TradeState, PayError> {
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
        self.query(trade_no).await
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
        if !valid_out_trade_no(&req.trade_no) {
            return Err(PayError::Malformed(format!(
                "{} is not a valid WeChat out_trade_no",
                clip(&req.trade_no)
            )));
        }
        let reason = req
            .reason
            .as_deref()
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect::<String>()
            })
            .filter(|r| !r.trim().is_empty());
        let body = serde_json::to_string(&RefundReq {
            out_trade_no: &req.trade_no,
            out_refund_no: &req.refund_no,
            reason,
            amount: RefundAmountReq {
                refund: req.amount.minor(),
                total: req.total.minor(),
                currency: "CNY",
            },
        })
        .map_err(|e| PayError::Malformed(e.to_string()))?;
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
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
