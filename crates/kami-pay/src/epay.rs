//! The `epay` channel: the 易支付 merchant protocol spoken by the 彩虹易支付 family of
//! aggregators (`shared/protocols.md` section G). Both versions are implemented:
//!
//! * **v1** (G.1–G.4): MD5 signatures with the merchant key; `submit.php` page jump,
//!   `mapi.php` server-to-server API, `api.php?act=order|refund` with the key in the request.
//! * **v2** (G.5): SHA256withRSA signatures (merchant private key out, platform public key in),
//!   a `timestamp` on every message checked against a ±[`TIMESTAMP_WINDOW_SECS`] window, and
//!   the `/api/pay/*` endpoints. Success `code` is 0 (v1: 1).
//!
//! The gateway side (simulator) is `kami_sim::epay`.
//!
//! # Canonical string and signatures (G.4, G.5)
//!
//! Every parameter except `sign` and `sign_type` whose value is non-empty, sorted by key
//! bytewise, joined as `k=v` with `&`, raw (not URL-encoded) UTF-8 values: see [`canonical`].
//! v1: `sign` = lower-case hex MD5 of `canonical + KEY` (key appended directly, no `&`),
//! `sign_type=MD5` sent but not signed ([`md5_sign`]). v2: `sign` = standard base64
//! SHA256withRSA of the canonical string, `sign_type=RSA` ([`rsa_sign`]).
//!
//! Verification ([`md5_verify`], [`rsa_verify`]) compares in constant time, accepts the MD5
//! hex in either case, and — as G.6 recommends because some implementations (sub2api) also
//! drop `"0"` values — retries once with `"0"` values dropped when the exact rule fails. Both
//! candidates need the key, so this does not weaken anything.
//!
//! # Tolerance (G.6) and strictness
//!
//! Notifications are accepted by GET (query string; what most hosts do) **and** POST (form
//! body; or the query string when a host POSTs with an empty body). `sign_type` may be absent
//! or in any letter case; any other `sign_type` than the configured version's (`MD5` for v1,
//! `RSA` for v2) is a bad signature — a v2 channel never falls back to MD5. The form parser
//! is strict: valid percent-encoding, UTF-8, at most [`MAX_FORM_FIELDS`] fields and
//! [`MAX_FORM_BYTES`] bytes, and **a duplicated key is malformed** (PHP would silently take the
//! last one, so a duplicate is how a tampered message would hide). Money is strict: `money`
//! must be a plain decimal with at most two fraction digits (`"12.30"`, `"12.3"`, `"12"`) and
//! is converted to fen exactly by [`Money::from_major_str`]; only `trade_status ==
//! "TRADE_SUCCESS"` means paid; `pid` must be ours.
//!
//! # What each trait method sends
//!
//! * `create`, [`EpayFlow::Submit`]: no network call; a redirect to
//!   `{gateway}submit.php?…` (v2: `{gateway}api/pay/submit?…`) with `pid, type, out_trade_no,
//!   notify_url, return_url, name, money` (+ v2 `timestamp`), `sign`, `sign_type`.
//! * `create`, [`EpayFlow::Api`]: v1 POSTs the same plus `clientip, device` to `mapi.php` and
//!   maps the JSON reply: `qrcode` → [`PaymentAction::Qr`], `payurl` / `urlscheme` →
//!   [`PaymentAction::Redirect`] (on a PC the QR code is preferred when a host sends several,
//!   on mobile the URL). v2 POSTs to `api/pay/create` with `method=web` and maps the signed
//!   reply's `pay_type`: `qrcode` → Qr, `jump` / `urlscheme` → Redirect (`pay_info`); other
//!   pay types (`html`, `jsapi`, …) are [`PayError::Unsupported`] — use the Submit flow there.
//! * `query`: v1 `GET api.php?act=order&pid=&key=&out_trade_no=` (the key travels in the URL,
//!   as every v1 host requires; transport errors are reported without the URL so it never
//!   reaches a log). The reply is unsigned in v1: it is authenticated by TLS to the configured
//!   gateway only. `status` 1 → Paid, 0 → Waiting, 2 → Refunded (彩虹 builds), "order does
//!   not exist" → NotFound. v2 POSTs `api/pay/query` and verifies the platform's signature and
//!   timestamp.
//! * `close`: **v1 has no close.** The channel queries instead and returns what it finds:
//!   `Paid` if paid, `Refunded` if refunded, and otherwise [`TradeState::Waiting`] — also when
//!   the host does not know the trade yet, because a signed `submit.php` URL never expires and
//!   the buyer can still open it and pay. `Waiting` from `close` therefore means "cannot be
//!   closed, keep querying until your grace period ends"; kami must never treat it as closed.
//!   v2 calls `api/pay/close` and then queries: `Closed` once the host confirmed the close,
//!   `Paid` if the payment won the race, `Waiting` if the close was refused.
//! * `refund`: v1 `POST api.php?act=refund` with `pid, key, out_trade_no, money`; `code == 1`
//!   means refunded (settled). **Epay v1 refunds have no refund number**: the host cannot tell a
//!   retry from a second refund, so the caller must guard idempotency in its database (record
//!   the refund before calling, never blindly retry after a timeout — check the merchant
//!   console instead). v2 POSTs `api/pay/refund` with `out_refund_no` = the refund number, which
//!   newer hosts use to deduplicate; older ones ignore it, so the same caution applies.
//!
//! # Ack (G.3)
//!
//! Success → HTTP 200 `text/plain` body exactly `success` (also for duplicates already
//! processed); Failure → HTTP 400 body `fail` (the host retries).
//!
//! # Known limits
//!
//! [`CreatePayment`] carries no buyer IP, so `mapi.php` / `api/pay/create` get
//! [`DEFAULT_CLIENT_IP`] as `clientip`. v1 submit URLs carry no expiry (see `close`). The
//! amount must be in CNY. Hosts append the notification parameters to `notify_url`, so a
//! `notify_url` with its own query parameters would fail verification (they are unsigned):
//! kami's `/pay/notify/{channel_id}` has none.

pub mod settings;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, Money};

use crate::crypto::{ct_eq, md5_hex, RsaHash, RsaSigner, RsaVerifier};
use crate::{
    Ack, AckResponse, CreatePayment, Device, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeState,
};

use crate::form::{clip, required};
pub use crate::form::{field, parse_form, MAX_FORM_BYTES, MAX_FORM_FIELDS};
/// v2 messages whose `timestamp` is further than this from our clock are refused (G.5).
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;
/// `clientip` sent to `mapi.php` / `api/pay/create`: [`CreatePayment`] has no buyer IP.
pub const DEFAULT_CLIENT_IP: &str = "127.0.0.1";
/// The `trade_status` that means paid (G.3).
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";
/// Longest `name` sent, in bytes (cut at a character boundary): some hosts truncate names
/// around 127 bytes before verifying, which would break the signature (G.2).
pub const MAX_NAME_BYTES: usize = 120;
/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Fields every notification must carry (besides `sign`).
const NOTIFY_REQUIRED: [&str; 6] = [
    "pid",
    "trade_no",
    "out_trade_no",
    "money",
    "trade_status",
    "sign",
];

// ---------------------------------------------------------------------------------------
// Signing (G.4, G.5)
// ---------------------------------------------------------------------------------------

fn canonical_with<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], drop_zero: bool) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, v)| {
            *k != "sign" && *k != "sign_type" && !v.is_empty() && !(drop_zero && *v == "0")
        })
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The canonical string of G.4 steps 1–4: every parameter except `sign` and `sign_type`
/// with a non-empty value, sorted by key (bytewise), `k=v` joined by `&`, raw values.
pub fn canonical<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    canonical_with(params, false)
}

/// v1 signature (G.4): lower-case hex `MD5(canonical + key)`.
pub fn md5_sign<K: AsRef<str>, V: AsRef<str>>(key: &str, params: &[(K, V)]) -> String {
    md5_of(key, &canonical(params))
}

fn md5_of(key: &str, canonical: &str) -> String {
    let mut buf = Vec::with_capacity(canonical.len() + key.len());
    buf.extend_from_slice(canonical.as_bytes());
    buf.extend_from_slice(key.as_bytes());
    md5_hex(&buf)
}

/// The single `sign` value, or `None` if absent or if any key appears twice.
fn unique_sign<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Option<&str> {
    let mut seen = HashSet::new();
    let mut sig = None;
    for (k, v) in params {
        if !seen.insert(k.as_ref()) {
            return None;
        }
        if k.as_ref() == "sign" {
            sig = Some(v.as_ref());
        }
    }
    sig
}

fn has_zero<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> bool {
    params
        .iter()
        .any(|(k, v)| v.as_ref() == "0" && k.as_ref() != "sign" && k.as_ref() != "sign_type")
}

/// True iff `params` has exactly one `sign`, no duplicated key, and `sign` is the MD5
/// signature (hex, either case) of the other parameters under `key` — by the exact G.4 rule,
/// or else by the variant that also drops `"0"` values (G.6). Constant-time comparison.
pub fn md5_verify<K: AsRef<str>, V: AsRef<str>>(key: &str, params: &[(K, V)]) -> bool {
    let Some(sig) = unique_sign(params) else {
        return false;
    };
    if sig.len() != 32 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let sig = sig.to_ascii_lowercase();
    if ct_eq(md5_of(key, &canonical(params)).as_bytes(), sig.as_bytes()) {
        return true;
    }
    has_zero(params)
        && ct_eq(
            md5_of(key, &canonical_with(params, true)).as_bytes(),
            sig.as_bytes(),
        )
}

/// v2 signature (G.5): standard base64 SHA256withRSA of the canonical string.
pub fn rsa_sign<K: AsRef<str>, V: AsRef<str>>(
    signer: &RsaSigner,
    params: &[(K, V)],
) -> Result<String, PayError> {
    signer
        .sign_base64(RsaHash::Sha256, canonical(params).as_bytes())
        .map_err(|e| PayError::Config(format!("epay RSA signing: {e}")))
}

/// True iff `params` has exactly one `sign`, no duplicated key, and `sign` is a valid
/// SHA256withRSA signature by `verifier`'s key over the canonical string (exact rule, or the
/// `"0"`-dropping variant of G.6).
pub fn rsa_verify<K: AsRef<str>, V: AsRef<str>>(verifier: &RsaVerifier, params: &[(K, V)]) -> bool {
    let Some(sig) = unique_sign(params) else {
        return false;
    };
    if verifier.verify_base64(RsaHash::Sha256, canonical(params).as_bytes(), sig) {
        return true;
    }
    has_zero(params)
        && verifier.verify_base64(
            RsaHash::Sha256,
            canonical_with(params, true).as_bytes(),
            sig,
        )
}

fn without_sign(params: Vec<(String, String)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .collect()
}

/// `params` with `sign` (v1 MD5) and `sign_type=MD5` appended (existing ones replaced).
pub fn signed_md5(key: &str, params: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut params = without_sign(params);
    let s = md5_sign(key, &params);
    params.push(("sign".into(), s));
    params.push(("sign_type".into(), "MD5".into()));
    params
}

/// `params` with `sign` (v2 RSA) and `sign_type=RSA` appended (existing ones replaced). The
/// caller includes `timestamp`.
pub fn signed_rsa(
    signer: &RsaSigner,
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PayError> {
    let mut params = without_sign(params);
    let s = rsa_sign(signer, &params)?;
    params.push(("sign".into(), s));
    params.push(("sign_type".into(), "RSA".into()));
    Ok(params)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Check a v2 `timestamp` (Unix seconds, plain digits) against `now` ± [`TIMESTAMP_WINDOW_SECS`].
pub fn check_timestamp(timestamp: Option<&str>, now: i64) -> Result<(), PayError> {
    let ts = timestamp
        .filter(|t| !t.is_empty())
        .ok_or_else(|| PayError::Malformed("missing field timestamp".into()))?;
    if ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayError::Malformed("timestamp is not a number".into()));
    }
    let ts: i64 = ts
        .parse()
        .map_err(|_| PayError::Malformed("timestamp is not a number".into()))?;
    if (ts - now).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(PayError::Stale);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Forms
// ---------------------------------------------------------------------------------------

fn urlencode(params: &[(String, String)]) -> Result<String, PayError> {
    serde_urlencoded::to_string(params).map_err(|e| PayError::Malformed(e.to_string()))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Parse `money` as CNY, exactly (G.2; DESIGN invariant 6).
pub fn parse_money(money: &str) -> Result<Money, PayError> {
    Money::from_major_str(money, Currency::Cny).map_err(|e| PayError::Malformed(e.to_string()))
}

/// The Epay `type` for a buyer-facing method (G.2).
pub fn pay_type(method: Method) -> Result<&'static str, PayError> {
    match method {
        Method::Alipay => Ok("alipay"),
        Method::Wxpay => Ok("wxpay"),
        Method::Qqpay => Ok("qqpay"),
        Method::Sandbox => Err(PayError::Unsupported("epay serves alipay, wxpay and qqpay")),
    }
}

/// The `device` of `mapi.php` (G.2): `pc`, or on mobile the in-app browser when the
/// User-Agent reveals it (`wechat`, `qq`, `alipay`), else `mobile`.
pub fn device_param(device: Device, user_agent: Option<&str>) -> &'static str {
    if device == Device::Pc {
        return "pc";
    }
    let ua = user_agent.unwrap_or("");
    if ua.contains("MicroMessenger") {
        "wechat"
    } else if ua.contains("AlipayClient") {
        "alipay"
    } else if ua.contains(" QQ/") {
        "qq"
    } else {
        "mobile"
    }
}

fn truncate_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Schemes a payment redirect may never use.
fn is_safe_redirect(url: &str, web_only: bool) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.chars().any(char::is_control) {
        return false;
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return true;
    }
    if web_only {
        return false;
    }
    let Some((scheme, _)) = lower.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !matches!(scheme, "javascript" | "data" | "vbscript" | "file" | "blob")
}

// ---------------------------------------------------------------------------------------
// JSON replies
// ---------------------------------------------------------------------------------------

/// A JSON reply flattened to string fields the way PHP hosts sign them: strings as they are,
/// integers in decimal, `true` → `"1"`, `false`/`null` → `""`; arrays and objects skipped
/// (G.5 "skip arrays").
fn flatten_json(body: &[u8]) -> Option<Vec<(String, String)>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let serde_json::Value::Object(map) = serde_json::from_slice::<serde_json::Value>(body).ok()?
    else {
        return None;
    };
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(true) => "1".into(),
            serde_json::Value::Bool(false) | serde_json::Value::Null => String::new(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => continue,
        };
        fields.push((k, s));
    }
    Some(fields)
}

fn is_not_found(msg: &str) -> bool {
    let lower = msg.to_ascii_lowercase();
    msg.contains("不存在") || lower.contains("not exist") || lower.contains("not found")
}

fn gateway_error(fields: &[(String, String)]) -> PayError {
    PayError::Gateway {
        code: clip(field(fields, "code").unwrap_or("")),
        message: clip(field(fields, "msg").unwrap_or("")),
    }
}

// ---------------------------------------------------------------------------------------
// The channel
// ---------------------------------------------------------------------------------------

/// The merchant's keys for one Epay host.
pub enum EpayCredentials {
    /// v1: the MD5 merchant key (商户密钥).
    V1 { key: String },
    /// v2: the merchant's RSA private key (signs requests) and the platform's public key
    /// (verifies replies and notifications).
    V2 {
        merchant_private_key: RsaSigner,
        platform_public_key: RsaVerifier,
    },
}

impl std::fmt::Debug for EpayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpayCredentials::V1 { .. } => f.write_str("V1 { key: <redacted> }"),
            EpayCredentials::V2 { .. } => f.write_str("V2 { merchant_private_key: <redacted> }"),
        }
    }
}

/// How `create` starts a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpayFlow {
    /// `submit.php` (v2 `api/pay/submit`) page jump: always a [`PaymentAction::Redirect`] to
    /// the host's cashier. Every host supports it; no network call at creation.
    Submit,
    /// `mapi.php` (v2 `api/pay/create`) server-to-server: a QR code or a wallet URL.
    #[default]
    Api,
}

/// Configuration of one Epay channel.
#[derive(Debug)]
pub struct EpayConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    /// Platform base URL, e.g. `https://pay.example.com/` (a missing trailing slash is added;
    /// a pasted `submit.php` / `mapi.php` suffix is removed).
    pub gateway: String,
    /// Merchant id (商户ID).
    pub pid: String,
    pub credentials: EpayCredentials,
    pub flow: EpayFlow,
}

/// The Epay payment channel (merchant side). See the module documentation.
pub struct EpayChannel {
    id: ChannelId,
    methods: Vec<Method>,
    priority: i32,
    /// Base URL ending in `/`.
    base: String,
    pid: String,
    credentials: EpayCredentials,
    flow: EpayFlow,
    http: reqwest::Client,
}

impl std::fmt::Debug for EpayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpayChannel")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("gateway", &self.base)
            .field("pid", &self.pid)
            .field("credentials", &self.credentials)
            .field("flow", &self.flow)
            .finish()
    }
}

/// `https://pay.example.com` → `https://pay.example.com/`; drops a pasted endpoint name.
pub fn normalize_gateway(gateway: &str) -> String {
    let mut g = gateway.trim().to_owned();
    for suffix in ["submit.php", "mapi.php", "api.php"] {
        if let Some(stripped) = g.strip_suffix(suffix) {
            if stripped.ends_with('/') {
                g = stripped.to_owned();
            }
        }
    }
    if !g.ends_with('/') {
        g.push('/');
    }
    g
}

/// Which signature version a message uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl EpayChannel {
    pub fn new(cfg: EpayConfig, http: reqwest::Client) -> EpayChannel {
        EpayChannel {
            id: cfg.id,
            methods: cfg.methods,
            priority: cfg.priority,
            base: normalize_gateway(&cfg.gateway),
            pid: cfg.pid.trim().to_owned(),
            credentials: cfg.credentials,
            flow: cfg.flow,
            http,
        }
    }

    /// The gateway base URL, ending in `/`.
    pub fn gateway(&self) -> &str {
        &self.base
    }

    pub fn flow(&self) -> EpayFlow {
        self.flow
    }

    fn version(&self) -> Version {
        match self.credentials {
            EpayCredentials::V1 { .. } => Version::V1,
            EpayCredentials::V2 { .. } => Version::V2,
        }
    }

    fn url(&self, path: &str) -> Result<String, PayError> {
        if !(self.base.starts_with("http://") || self.base.starts_with("https://")) {
            return Err(PayError::Config(
                "epay gateway must be an http(s) URL".into(),
            ));
        }
        Ok(format!("{}{path}", self.base))
    }

    /// Sign outgoing parameters with this channel's credentials (v2 adds `timestamp`).
    fn sign_request(
        &self,
        mut params: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PayError> {
        match &self.credentials {
            EpayCredentials::V1 { key } => Ok(signed_md5(key, params)),
            EpayCredentials::V2 {
                merchant_private_key,
                ..
            } => {
                params.push(("timestamp".into(), now_secs().to_string()));
                signed_rsa(merchant_private_key, params)
            }
        }
    }

    /// Check the signature of inbound parameters (notification or v2 reply) and, for v2,
    /// the timestamp. `sign_type` may be absent or any case of the version's own type.
    fn check_signature(
        &self,
        params: &[(String, String)],
        now: i64,
        bad: PayError,
    ) -> Result<(), PayError> {
        let sign_type = field(params, "sign_type").unwrap_or("");
        match &self.credentials {
            EpayCredentials::V1 { key } => {
                if !(sign_type.is_empty() || sign_type.eq_ignore_ascii_case("MD5"))
                    || !md5_verify(key, params)
                {
                    return Err(bad);
                }
            }
            EpayCredentials::V2 {
                platform_public_key,
                ..
            } => {
                if !(sign_type.is_empty() || sign_type.eq_ignore_ascii_case("RSA"))
                    || !rsa_verify(platform_public_key, params)
                {
                    return Err(bad);
                }
                check_timestamp(field(params, "timestamp"), now)?;
            }
        }
        Ok(())
    }

    /// Parse and verify notification parameters at time `now` (Unix seconds).
    fn verify_params(
        &self,
        params: &[(String, String)],
        now: i64,
    ) -> Result<NotifyVerdict, PayError> {
        for key in NOTIFY_REQUIRED {
            required(params, key)?;
        }
        self.check_signature(params, now, PayError::BadSignature)?;
        if required(params, "pid")? != self.pid {
            return Err(PayError::WrongMerchant);
        }
        let out_trade_no = required(params, "out_trade_no")?;
        let trade_no = required(params, "trade_no")?;
        let amount = parse_money(required(params, "money")?)?;
        let status = required(params, "trade_status")?;
        if status == TRADE_SUCCESS {
            Ok(NotifyVerdict::Paid(PaymentConfirmation {
                trade_no: out_trade_no.to_owned(),
                gateway_trade_no: trade_no.to_owned(),
                amount,
            }))
        } else {
            Ok(NotifyVerdict::NotPaid {
                trade_no: out_trade_no.to_owned(),
                status: status.to_owned(),
            })
        }
    }

    /// Send a request; the reply's HTTP status and flattened JSON fields.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Vec<(String, String)>, PayError> {
        // Transport errors never carry the URL: v1 URLs carry the merchant key.
        let crate::http::Reply { status, body, .. } =
            crate::http::send(req.timeout(API_TIMEOUT)).await?;
        match flatten_json(&body) {
            Some(fields) => Ok(fields),
            None => Err(PayError::Gateway {
                code: format!("HTTP_{status}"),
                message: clip(&String::from_utf8_lossy(&body)),
            }),
        }
    }

    fn post_form(
        &self,
        url: String,
        params: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, PayError> {
        Ok(self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencode(params)?))
    }

    /// A v2 API call: signed request, then a reply that must be signed by the platform and
    /// fresh when `code == 0`. Returns `Err(Gateway)` for `code != 0` (unsigned errors are
    /// never facts).
    async fn call_v2(
        &self,
        path: &str,
        params: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PayError> {
        let params = self.sign_request(params)?;
        let req = self.post_form(self.url(path)?, &params)?;
        let fields = self.call(req).await?;
        if field(&fields, "code") != Some("0") {
            return Err(gateway_error(&fields));
        }
        self.check_signature(&fields, now_secs(), PayError::BadResponseSignature)?;
        Ok(fields)
    }

    fn check_reply_binding(
        &self,
        fields: &[(String, String)],
        trade_no: &str,
    ) -> Result<(), PayError> {
        if let Some(pid) = field(fields, "pid").filter(|p| !p.is_empty()) {
            if pid != self.pid {
                return Err(PayError::WrongMerchant);
            }
        }
        if let Some(got) = field(fields, "out_trade_no").filter(|p| !p.is_empty()) {
            if got != trade_no {
                return Err(PayError::Malformed(
                    "gateway answered for another trade".into(),
                ));
            }
        }
        Ok(())
    }

    /// Map an order reply (v1 `act=order`, v2 `api/pay/query`) to a [`TradeState`].
    fn trade_state(
        &self,
        trade_no: &str,
        fields: &[(String, String)],
    ) -> Result<TradeState, PayError> {
        self.check_reply_binding(fields, trade_no)?;
        match required(fields, "status")? {
            "0" => Ok(TradeState::Waiting),
            "1" => {
                let gateway_trade_no = required(fields, "trade_no")?;
                let amount = parse_money(required(fields, "money")?)?;
                Ok(TradeState::Paid(PaymentConfirmation {
                    trade_no: trade_no.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                }))
            }
            "2" => Ok(TradeState::Refunded),
            other => Err(PayError::Gateway {
                code: format!("STATUS_{}", clip(other)),
                message: "unknown epay order status".into(),
            }),
        }
    }

    fn create_params(&self, req: &CreatePayment) -> Result<Vec<(String, String)>, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("epay settles in CNY only"));
        }
        let money = req.amount.to_major_string();
        Ok(owned(&[
            ("pid", &self.pid),
            ("type", pay_type(req.method)?),
            ("out_trade_no", req.trade_no.as_str()),
            ("notify_url", &req.notify_url),
            ("return_url", &req.return_url),
            ("name", &truncate_name(&req.subject)),
            ("money", &money),
        ]))
    }

    /// The page-jump URL (G.1 `submit.php`; v2 `api/pay/submit`).
    fn submit_url(&self, req: &CreatePayment) -> Result<String, PayError> {
        let path = match self.version() {
            Version::V1 => "submit.php",
            Version::V2 => "api/pay/submit",
        };
        let params = self.sign_request(self.create_params(req)?)?;
        Ok(format!("{}?{}", self.url(path)?, urlencode(&params)?))
    }

    async fn create_api_v1(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        let mut params = self.create_params(req)?;
        params.push(("clientip".into(), req.client_ip_or(DEFAULT_CLIENT_IP)));
        params.push((
            "device".into(),
            device_param(req.device, req.user_agent.as_deref()).into(),
        ));
        let params = self.sign_request(params)?;
        let fields = self
            .call(self.post_form(self.url("mapi.php")?, &params)?)
            .await?;
        if field(&fields, "code") != Some("1") {
            return Err(gateway_error(&fields));
        }
        self.check_reply_binding(&fields, req.trade_no.as_str())?;
        let get = |k: &str| field(&fields, k).filter(|v| !v.trim().is_empty());
        let qr = get("qrcode").map(|q| PaymentAction::Qr {
            qr_code: q.trim().to_owned(),
        });
        let pay_url = get("payurl").map(|u| (u.trim(), true));
        let scheme = get("urlscheme").map(|u| (u.trim(), false));
        let redirect = pay_url.or(scheme).map(|(u, web_only)| {
            if is_safe_redirect(u, web_only) {
                Ok(PaymentAction::Redirect { url: u.to_owned() })
            } else {
                Err(PayError::Malformed(
                    "unsafe payment URL from gateway".into(),
                ))
            }
        });
        let chosen = match req.device {
            Device::Pc => qr.map(Ok).or(redirect),
            Device::Mobile => redirect.or(qr.map(Ok)),
        };
        chosen.unwrap_or_else(|| {
            Err(PayError::Malformed(
                "mapi.php reply has no qrcode, payurl or urlscheme".into(),
            ))
        })
    }

    async fn create_api_v2(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        let mut params = self.create_params(req)?;
        params.push(("method".into(), "web".into()));
        params.push(("clientip".into(), req.client_ip_or(DEFAULT_CLIENT_IP)));
        params.push((
            "device".into(),
            device_param(req.device, req.user_agent.as_deref()).into(),
        ));
        let fields = self.call_v2("api/pay/create", params).await?;
        self.check_reply_binding(&fields, req.trade_no.as_str())?;
        let info = required(&fields, "pay_info")?.trim();
        match required(&fields, "pay_type")? {
            "qrcode" => Ok(PaymentAction::Qr {
                qr_code: info.to_owned(),
            }),
            t @ ("jump" | "urlscheme") => {
                if is_safe_redirect(info, t == "jump") {
                    Ok(PaymentAction::Redirect {
                        url: info.to_owned(),
                    })
                } else {
                    Err(PayError::Malformed(
                        "unsafe payment URL from gateway".into(),
                    ))
                }
            }
            _ => Err(PayError::Unsupported(
                "epay v2 pay_type other than qrcode, jump, urlscheme (use flow = submit)",
            )),
        }
    }

    async fn query_v1(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let EpayCredentials::V1 { key } = &self.credentials else {
            return Err(PayError::Config("not a v1 channel".into()));
        };
        let query = urlencode(&owned(&[
            ("act", "order"),
            ("pid", &self.pid),
            ("key", key),
            ("out_trade_no", trade_no),
        ]))?;
        let url = format!("{}?{query}", self.url("api.php")?);
        let fields = self.call(self.http.get(url)).await?;
        if field(&fields, "code") == Some("1") {
            return self.trade_state(trade_no, &fields);
        }
        if is_not_found(field(&fields, "msg").unwrap_or("")) {
            return Ok(TradeState::NotFound);
        }
        Err(gateway_error(&fields))
    }

    async fn query_v2(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let params = owned(&[("pid", &self.pid), ("out_trade_no", trade_no)]);
        match self.call_v2("api/pay/query", params).await {
            Ok(fields) => self.trade_state(trade_no, &fields),
            Err(PayError::Gateway { message, .. }) if is_not_found(&message) => {
                Ok(TradeState::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    async fn close_v2(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let params = owned(&[("pid", &self.pid), ("out_trade_no", trade_no)]);
        let closed = match self.call_v2("api/pay/close", params).await {
            Ok(fields) => {
                self.check_reply_binding(&fields, trade_no)?;
                true
            }
            Err(PayError::Gateway { .. }) => false,
            Err(e) => return Err(e),
        };
        match self.query_v2(trade_no).await? {
            s @ (TradeState::Paid(_) | TradeState::Refunded) => Ok(s),
            TradeState::NotFound | TradeState::Waiting | TradeState::Closed if closed => {
                Ok(TradeState::Closed)
            }
            TradeState::Closed => Ok(TradeState::Closed),
            // The host refused to close: the buyer can still pay.
            TradeState::NotFound | TradeState::Waiting => Ok(TradeState::Waiting),
        }
    }

    fn refund_money(req: &RefundRequest) -> Result<String, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("epay settles in CNY only"));
        }
        if req.amount.minor() <= 0 {
            return Err(PayError::Malformed("refund amount must be positive".into()));
        }
        Ok(req.amount.to_major_string())
    }

    async fn refund_v1(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let EpayCredentials::V1 { key } = &self.credentials else {
            return Err(PayError::Config("not a v1 channel".into()));
        };
        let money = Self::refund_money(req)?;
        let body = owned(&[
            ("pid", &self.pid),
            ("key", key),
            ("out_trade_no", &req.trade_no),
            ("money", &money),
        ]);
        let url = format!("{}?act=refund", self.url("api.php")?);
        let fields = self.call(self.post_form(url, &body)?).await?;
        if field(&fields, "code") != Some("1") {
            return Err(gateway_error(&fields));
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: req.amount,
            settled: true,
        })
    }

    async fn refund_v2(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let money = Self::refund_money(req)?;
        let params = owned(&[
            ("pid", &self.pid),
            ("out_trade_no", &req.trade_no),
            ("money", &money),
            ("out_refund_no", &req.refund_no),
        ]);
        let fields = self.call_v2("api/pay/refund", params).await?;
        self.check_reply_binding(&fields, &req.trade_no)?;
        if let Some(r) = field(&fields, "out_refund_no").filter(|v| !v.is_empty()) {
            if r != req.refund_no {
                return Err(PayError::Malformed(
                    "gateway answered for another refund".into(),
                ));
            }
        }
        if let Some(m) = field(&fields, "money").filter(|v| !v.is_empty()) {
            if parse_money(m)? != req.amount {
                return Err(PayError::Malformed(
                    "gateway refunded another amount".into(),
                ));
            }
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: req.amount,
            settled: true,
        })
    }
}

/// The parameters of a notification: GET → query string; POST → form body (or the query
/// string when the body is empty: some hosts POST with the parameters in the URL).
fn notification_params(raw: &RawNotification) -> Result<Vec<(String, String)>, PayError> {
    let input: &[u8] = if raw.method.eq_ignore_ascii_case("GET") {
        raw.query.as_bytes()
    } else if raw.method.eq_ignore_ascii_case("POST") {
        if raw.body.is_empty() {
            raw.query.as_bytes()
        } else {
            let ct = raw.header("content-type").unwrap_or("");
            let form = ct.is_empty()
                || ct
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded");
            if !form {
                return Err(PayError::Malformed(format!(
                    "unsupported content type {}",
                    clip(ct)
                )));
            }
            &raw.body
        }
    } else {
        return Err(PayError::Malformed(format!(
            "unsupported method {}",
            clip(&raw.method)
        )));
    };
    parse_form(input)
}

#[async_trait]
impl PaymentChannel for EpayChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "epay"
    }

    fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        match (self.flow, self.version()) {
            (EpayFlow::Submit, _) => Ok(PaymentAction::Redirect {
                url: self.submit_url(req)?,
            }),
            (EpayFlow::Api, Version::V1) => self.create_api_v1(req).await,
            (EpayFlow::Api, Version::V2) => self.create_api_v2(req).await,
        }
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let params = notification_params(raw)?;
        self.verify_params(&params, now_secs())
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        match ack {
            Ack::Success => AckResponse {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "success".to_owned(),
            },
            Ack::Failure => AckResponse {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: "fail".to_owned(),
            },
        }
    }

    async fn query(&self, trade_no: &str) -> Result<TradeState, PayError> {
        match self.version() {
            Version::V1 => self.query_v1(trade_no).await,
            Version::V2 => self.query_v2(trade_no).await,
        }
    }

    /// v1 cannot close (see the module documentation): the queried state, with anything
    /// not paid or refunded reported as `Waiting`. v2: `api/pay/close`, then a query.
    async fn close(&self, trade_no: &str) -> Result<TradeState, PayError> {
        match self.version() {
            Version::V1 => match self.query_v1(trade_no).await? {
                s @ (TradeState::Paid(_) | TradeState::Refunded) => Ok(s),
                TradeState::NotFound | TradeState::Waiting | TradeState::Closed => {
                    Ok(TradeState::Waiting)
                }
            },
            Version::V2 => self.close_v2(trade_no).await,
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        match self.version() {
            Version::V1 => self.refund_v1(req).await,
            Version::V2 => self.refund_v2(req).await,
        }
    }

    /// v1 `act=refund` carries no refund number (G.1), and older v2 hosts ignore
    /// `out_refund_no` (G.5): a repeat may be a second refund.
    fn refund_is_idempotent(&self) -> bool {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kami_core::OrderNo;

    /// protocols.md G.4 test key.
    const KEY: &str = "K3yExample";

    fn v1_channel(flow: EpayFlow) -> EpayChannel {
        EpayChannel::new(
            EpayConfig {
                id: ChannelId::parse("ep").unwrap(),
                methods: vec![Method::Alipay, Method::Wxpay],
                priority: 3,
                gateway: "http://127.0.0.1:9".into(),
                pid: "1001".into(),
                credentials: EpayCredentials::V1 { key: KEY.into() },
                flow,
            },
            reqwest::Client::new(),
        )
    }

    struct V2Keys {
        merchant: RsaSigner,
        platform: RsaSigner,
    }

    fn v2_keys() -> V2Keys {
        V2Keys {
            merchant: RsaSigner::generate().unwrap(),
            platform: RsaSigner::generate().unwrap(),
        }
    }

    fn v2_channel(keys: &V2Keys, flow: EpayFlow) -> EpayChannel {
        let merchant_private_key =
            RsaSigner::from_text(&keys.merchant.private_key_pem().unwrap()).unwrap();
        EpayChannel::new(
            EpayConfig {
                id: ChannelId::parse("ep2").unwrap(),
                methods: vec![Method::Alipay],
                priority: 0,
                gateway: "http://127.0.0.1:9/".into(),
                pid: "1001".into(),
                credentials: EpayCredentials::V2 {
                    merchant_private_key,
                    platform_public_key: keys.platform.verifier().unwrap(),
                },
                flow,
            },
            reqwest::Client::new(),
        )
    }

    /// The G.4 notification, unsigned.
    fn notify_fields(status: &str) -> Vec<(String, String)> {
        owned(&[
            ("pid", "1001"),
            ("trade_no", "2024010112000001"),
            ("out_trade_no", "ORD20240101001"),
            ("type", "alipay"),
            ("name", "VIP 月卡"),
            ("money", "1.00"),
            ("trade_status", status),
        ])
    }

    fn v1_notify(status: &str) -> Vec<(String, String)> {
        signed_md5(KEY, notify_fields(status))
    }

    fn v2_notify(keys: &V2Keys, status: &str, timestamp: i64) -> Vec<(String, String)> {
        let mut p = notify_fields(status);
        p.push(("timestamp".into(), timestamp.to_string()));
        signed_rsa(&keys.platform, p).unwrap()
    }

    fn encode(params: &[(String, String)]) -> String {
        serde_urlencoded::to_string(params).unwrap()
    }

    fn get(query: impl Into<String>) -> RawNotification {
        RawNotification {
            method: "GET".into(),
            query: query.into(),
            headers: vec![],
            body: vec![],
        }
    }

    fn post(body: impl Into<Vec<u8>>) -> RawNotification {
        RawNotification {
            method: "POST".into(),
            query: String::new(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.into(),
        }
    }

    fn paid(amount_fen: i64) -> NotifyVerdict {
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "ORD20240101001".into(),
            gateway_trade_no: "2024010112000001".into(),
            amount: Money::new(amount_fen, Currency::Cny).unwrap(),
        })
    }

    fn malformed(r: Result<NotifyVerdict, PayError>) -> String {
        match r {
            Err(PayError::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn md5_vectors_from_protocols_g4() {
        // Pinned: computed once with Python's hashlib (md5((canonical + key).encode()).hexdigest()).
        let request = owned(&[
            ("pid", "1001"),
            ("type", "alipay"),
            ("out_trade_no", "ORD20240101001"),
            ("notify_url", "https://shop.example/pay/epay/notify"),
            ("return_url", "https://shop.example/pay/epay/return"),
            ("name", "VIP 月卡"),
            ("money", "1.00"),
            ("param", ""),
        ]);
        assert_eq!(
            canonical(&request),
            "money=1.00&name=VIP 月卡&notify_url=https://shop.example/pay/epay/notify\
             &out_trade_no=ORD20240101001&pid=1001&return_url=https://shop.example/pay/epay/return\
             &type=alipay"
        );
        assert_eq!(md5_sign(KEY, &request), "06240e357ae9b2c0bb5ca2f451bc9e54");
        assert_eq!(
            md5_sign(KEY, &notify_fields("TRADE_SUCCESS")),
            "ab6c613e0a751cfd0f4b8abef6260b47"
        );
        // sign and sign_type never take part; order of input is irrelevant.
        let mut shuffled = notify_fields("TRADE_SUCCESS");
        shuffled.reverse();
        shuffled.push(("sign_type".into(), "MD5".into()));
        shuffled.push(("sign".into(), "whatever".into()));
        assert_eq!(md5_sign(KEY, &shuffled), "ab6c613e0a751cfd0f4b8abef6260b47");
        // Same Python check with param="0" (the exact rule keeps it).
        let mut zero = notify_fields("TRADE_SUCCESS");
        zero.push(("param".into(), "0".into()));
        assert_eq!(md5_sign(KEY, &zero), "b6d340d7c562a46f9f881f3bc14f2978");
    }

    #[test]
    fn md5_verify_rules() {
        let good = v1_notify("TRADE_SUCCESS");
        assert!(md5_verify(KEY, &good));
        assert!(!md5_verify("other", &good));
        // Upper-case hex is accepted (some hosts), other lengths are not.
        let upper: Vec<(String, String)> = good
            .iter()
            .map(|(k, v)| {
                let v = if k == "sign" {
                    v.to_uppercase()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        assert!(md5_verify(KEY, &upper));
        let mut short = good.clone();
        for (k, v) in &mut short {
            if k == "sign" {
                v.pop();
            }
        }
        assert!(!md5_verify(KEY, &short));
        // Duplicated keys and a missing sign fail.
        let mut dup = good.clone();
        dup.push(("money".into(), "1.00".into()));
        assert!(!md5_verify(KEY, &dup));
        let no_sign: Vec<(String, String)> =
            good.iter().filter(|(k, _)| k != "sign").cloned().collect();
        assert!(!md5_verify(KEY, &no_sign));
        // G.6: a host that drops "0" values signed without `param=0`; accepted on retry.
        let mut zero = notify_fields("TRADE_SUCCESS");
        zero.push(("param".into(), "0".into()));
        zero.push(("sign".into(), "ab6c613e0a751cfd0f4b8abef6260b47".into()));
        assert!(md5_verify(KEY, &zero));
        // ...but the retry still needs the key.
        assert!(!md5_verify("other", &zero));
    }

    #[test]
    fn v1_get_and_post_notifications_are_paid() {
        let ch = v1_channel(EpayFlow::Api);
        let q = encode(&v1_notify("TRADE_SUCCESS"));
        assert_eq!(ch.verify_notification(&get(q.clone())).unwrap(), paid(100));
        assert_eq!(ch.verify_notification(&post(q.clone())).unwrap(), paid(100));
        // A POST whose parameters are in the URL.
        let mut raw = post(Vec::new());
        raw.query = q.clone();
        assert_eq!(ch.verify_notification(&raw).unwrap(), paid(100));
        // POST without content type is read as a form too.
        let mut raw = post(q.clone());
        raw.headers.clear();
        assert_eq!(ch.verify_notification(&raw).unwrap(), paid(100));
        // A JSON body is not an Epay notification.
        let mut raw = post(q);
        raw.headers = vec![("content-type".into(), "application/json".into())];
        malformed(ch.verify_notification(&raw));
    }

    #[test]
    fn v1_sign_type_tolerance() {
        let ch = v1_channel(EpayFlow::Api);
        let base = notify_fields("TRADE_SUCCESS");
        let sign = md5_sign(KEY, &base);
        for sign_type in [None, Some("MD5"), Some("md5"), Some("")] {
            let mut p = base.clone();
            p.push(("sign".into(), sign.clone()));
            if let Some(t) = sign_type {
                p.push(("sign_type".into(), t.into()));
            }
            assert_eq!(
                ch.verify_notification(&get(encode(&p))).unwrap(),
                paid(100),
                "{sign_type:?}"
            );
        }
        for sign_type in ["RSA", "HMAC-SHA256", "SHA1"] {
            let mut p = base.clone();
            p.push(("sign".into(), sign.clone()));
            p.push(("sign_type".into(), sign_type.into()));
            assert!(matches!(
                ch.verify_notification(&get(encode(&p))),
                Err(PayError::BadSignature)
            ));
        }
    }

    #[test]
    fn every_tampered_field_is_rejected() {
        let ch = v1_channel(EpayFlow::Api);
        let good = v1_notify("TRADE_SUCCESS");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i].1.push('0');
            let r = ch.verify_notification(&get(encode(&bad)));
            assert!(
                matches!(r, Err(PayError::BadSignature)),
                "tampering {} gave {r:?}",
                good[i].0
            );
        }
        // Money changed to another valid amount: still the signature that fails.
        let bad: Vec<(String, String)> = good
            .iter()
            .map(|(k, v)| {
                let v = if k == "money" {
                    "0.01".into()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        assert!(matches!(
            ch.verify_notification(&get(encode(&bad))),
            Err(PayError::BadSignature)
        ));
        // An added field and a removed optional field are tampering too.
        let mut extra = good.clone();
        extra.push(("param".into(), "x".into()));
        assert!(matches!(
            ch.verify_notification(&get(encode(&extra))),
            Err(PayError::BadSignature)
        ));
        for key in ["type", "name"] {
            let without: Vec<(String, String)> =
                good.iter().filter(|(k, _)| k != key).cloned().collect();
            assert!(matches!(
                ch.verify_notification(&get(encode(&without))),
                Err(PayError::BadSignature)
            ));
        }
        // Required fields missing: malformed, named.
        for key in NOTIFY_REQUIRED {
            let without: Vec<(String, String)> =
                good.iter().filter(|(k, _)| k != key).cloned().collect();
            assert_eq!(
                malformed(ch.verify_notification(&get(encode(&without)))),
                format!("missing field {key}")
            );
        }
    }

    #[test]
    fn merchant_status_and_money_checks() {
        let ch = v1_channel(EpayFlow::Api);
        // Validly signed for another merchant.
        let mut other = notify_fields("TRADE_SUCCESS");
        other[0].1 = "1002".into();
        let r = ch.verify_notification(&get(encode(&signed_md5(KEY, other))));
        assert!(matches!(r, Err(PayError::WrongMerchant)), "{r:?}");
        // Only TRADE_SUCCESS pays; case matters.
        for status in [
            "WAIT_BUYER_PAY",
            "TRADE_CLOSED",
            "TRADE_FINISHED",
            "trade_success",
        ] {
            assert_eq!(
                ch.verify_notification(&get(encode(&v1_notify(status))))
                    .unwrap(),
                NotifyVerdict::NotPaid {
                    trade_no: "ORD20240101001".into(),
                    status: status.into()
                }
            );
        }
        // Money is exact to the fen; PHP-style "10" and "12.3" are fine, the rest is not.
        for (money, fen) in [("10", 1000), ("12.3", 1230), ("0.01", 1)] {
            let mut p = notify_fields("TRADE_SUCCESS");
            p[5].1 = money.into();
            let v = ch
                .verify_notification(&get(encode(&signed_md5(KEY, p))))
                .unwrap();
            assert_eq!(v, paid(fen));
        }
        for money in [
            "1.001", "-1.00", "1e2", " 1.00", "1,00", "0x10", "NaN", "１.00",
        ] {
            let mut p = notify_fields("TRADE_SUCCESS");
            p[5].1 = money.into();
            malformed(ch.verify_notification(&get(encode(&signed_md5(KEY, p)))));
        }
    }

    #[test]
    fn duplicated_keys_and_hostile_input_are_malformed() {
        let ch = v1_channel(EpayFlow::Api);
        let good = encode(&v1_notify("TRADE_SUCCESS"));
        for dup in [
            format!("{good}&money=1.00"),
            format!("money=100.00&{good}"),
            format!("{good}&sign=00000000000000000000000000000000"),
            format!("{good}&pid=1001"),
        ] {
            let m = malformed(ch.verify_notification(&get(dup.clone())));
            assert!(m.contains("duplicate"), "{m}");
            malformed(ch.verify_notification(&post(dup)));
        }
        malformed(ch.verify_notification(&get("")));
        malformed(ch.verify_notification(&post(b"\xff\xfe\x00garbage".to_vec())));
        malformed(ch.verify_notification(&get(format!("{good}&x=%FF"))));
        malformed(ch.verify_notification(&get(format!("{good}&x=%G1"))));
        malformed(ch.verify_notification(&get(format!("{good}&x=%4"))));
        malformed(ch.verify_notification(&get(format!("{good}&=v"))));
        malformed(
            ch.verify_notification(&post(format!("{good}&pad={}", "a".repeat(MAX_FORM_BYTES)))),
        );
        let many: String = (0..1000).map(|i| format!("k{i}=v&")).collect();
        malformed(ch.verify_notification(&get(many)));
        let mut put = post(good);
        put.method = "PUT".into();
        malformed(ch.verify_notification(&put));
    }

    #[test]
    fn random_bytes_never_panic() {
        let keys = v2_keys();
        let channels = [v1_channel(EpayFlow::Api), v2_channel(&keys, EpayFlow::Api)];
        let good = encode(&v1_notify("TRADE_SUCCESS"));
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..4000u32 {
            let len = (next() % 160) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 4 == 0 {
                // Mostly-valid forms with random corruption reach deeper code.
                bytes = good.as_bytes().to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            for ch in &channels {
                let _ = ch.verify_notification(&post(bytes.clone()));
                let _ = ch.verify_notification(&get(String::from_utf8_lossy(&bytes)));
            }
            let _ = flatten_json(&bytes);
        }
    }

    #[test]
    fn v2_rsa_sign_verify_and_timestamp_window() {
        let keys = v2_keys();
        let ch = v2_channel(&keys, EpayFlow::Api);
        let now = now_secs();
        let p = v2_notify(&keys, "TRADE_SUCCESS", now);
        assert_eq!(field(&p, "sign_type"), Some("RSA"));
        assert_eq!(field(&p, "sign").map(str::len), Some(344));
        assert!(rsa_verify(&keys.platform.verifier().unwrap(), &p));
        assert!(!rsa_verify(&keys.merchant.verifier().unwrap(), &p));
        assert_eq!(ch.verify_notification(&get(encode(&p))).unwrap(), paid(100));
        assert_eq!(
            ch.verify_notification(&post(encode(&p))).unwrap(),
            paid(100)
        );

        // Window: inside at both edges, stale outside.
        for (offset, ok) in [(-300, true), (300, true), (-301, false), (301, false)] {
            let p = v2_notify(&keys, "TRADE_SUCCESS", now + offset);
            let r = ch.verify_params(&p, now);
            if ok {
                assert_eq!(r.unwrap(), paid(100), "{offset}");
            } else {
                assert!(matches!(r, Err(PayError::Stale)), "{offset}: {r:?}");
            }
        }
        // A stale timestamp that was tampered to look fresh breaks the signature.
        let mut p = v2_notify(&keys, "TRADE_SUCCESS", now - 3600);
        for (k, v) in &mut p {
            if k == "timestamp" {
                *v = now.to_string();
            }
        }
        assert!(matches!(
            ch.verify_params(&p, now),
            Err(PayError::BadSignature)
        ));
        // Missing or non-numeric timestamp, when otherwise validly signed.
        let unsigned_ts = signed_rsa(&keys.platform, notify_fields("TRADE_SUCCESS")).unwrap();
        malformed(ch.verify_params(&unsigned_ts, now));
        let mut odd = notify_fields("TRADE_SUCCESS");
        odd.push(("timestamp".into(), "-5".into()));
        malformed(ch.verify_params(&signed_rsa(&keys.platform, odd).unwrap(), now));

        // Signed by the merchant key (or anyone else): bad signature.
        let mut forged = notify_fields("TRADE_SUCCESS");
        forged.push(("timestamp".into(), now.to_string()));
        let forged = signed_rsa(&keys.merchant, forged).unwrap();
        assert!(matches!(
            ch.verify_notification(&get(encode(&forged))),
            Err(PayError::BadSignature)
        ));
        // No downgrade: a v2 channel refuses MD5, even with a valid RSA signature present.
        let relabelled: Vec<(String, String)> = v2_notify(&keys, "TRADE_SUCCESS", now)
            .into_iter()
            .map(|(k, v)| {
                if k == "sign_type" {
                    (k, "MD5".into())
                } else {
                    (k, v)
                }
            })
            .collect();
        assert!(matches!(
            ch.verify_notification(&get(encode(&relabelled))),
            Err(PayError::BadSignature)
        ));
        assert!(matches!(
            ch.verify_notification(&get(encode(&v1_notify("TRADE_SUCCESS")))),
            Err(PayError::Malformed(_)) | Err(PayError::BadSignature)
        ));
        // Every tampered field fails.
        let good = v2_notify(&keys, "TRADE_SUCCESS", now);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i].1.push('1');
            let r = ch.verify_params(&bad, now);
            assert!(
                matches!(r, Err(PayError::BadSignature)),
                "tampering {} gave {r:?}",
                good[i].0
            );
        }
        // Wrong merchant, validly signed.
        let mut other = notify_fields("TRADE_SUCCESS");
        other[0].1 = "7".into();
        other.push(("timestamp".into(), now.to_string()));
        let other = signed_rsa(&keys.platform, other).unwrap();
        assert!(matches!(
            ch.verify_params(&other, now),
            Err(PayError::WrongMerchant)
        ));
    }

    #[test]
    fn ack_bytes_kind_and_redaction() {
        let ch = v1_channel(EpayFlow::Api);
        assert_eq!(
            ch.ack(Ack::Success),
            AckResponse {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "success".into()
            }
        );
        assert_eq!(
            ch.ack(Ack::Failure),
            AckResponse {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: "fail".into()
            }
        );
        assert_eq!(ch.kind(), "epay");
        assert_eq!(ch.priority(), 3);
        assert_eq!(ch.methods(), &[Method::Alipay, Method::Wxpay]);
        assert_eq!(ch.gateway(), "http://127.0.0.1:9/");
        assert!(!format!("{ch:?}").contains(KEY));
    }

    fn create_req(subject: &str, device: Device) -> CreatePayment {
        CreatePayment {
            trade_no: OrderNo::generate("20240101120000"),
            amount: Money::new(1230, Currency::Cny).unwrap(),
            subject: subject.into(),
            method: Method::Wxpay,
            device,
            notify_url: "https://shop.example/pay/notify/ep".into(),
            return_url: "https://shop.example/pay/return/ep?o=1".into(),
            expires_at_ms: 0,
            user_agent: None,
            client_ip: None,
        }
    }

    #[tokio::test]
    async fn submit_flow_builds_signed_urls() {
        let ch = v1_channel(EpayFlow::Submit);
        let req = create_req("Steam 10 & more <b>", Device::Pc);
        let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap() else {
            panic!("expected redirect");
        };
        let prefix = "http://127.0.0.1:9/submit.php?";
        assert!(url.starts_with(prefix), "{url}");
        let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
        assert!(md5_verify(KEY, &params));
        assert_eq!(field(&params, "pid"), Some("1001"));
        assert_eq!(field(&params, "type"), Some("wxpay"));
        assert_eq!(field(&params, "money"), Some("12.30"));
        assert_eq!(field(&params, "name"), Some("Steam 10 & more <b>"));
        assert_eq!(field(&params, "sign_type"), Some("MD5"));
        assert_eq!(field(&params, "out_trade_no"), Some(req.trade_no.as_str()));
        assert_eq!(
            field(&params, "return_url"),
            Some("https://shop.example/pay/return/ep?o=1")
        );
        assert_eq!(params.len(), 9);

        let keys = v2_keys();
        let ch = v2_channel(&keys, EpayFlow::Submit);
        let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap() else {
            panic!("expected redirect");
        };
        let prefix = "http://127.0.0.1:9/api/pay/submit?";
        assert!(url.starts_with(prefix), "{url}");
        let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
        assert!(rsa_verify(&keys.merchant.verifier().unwrap(), &params));
        assert_eq!(field(&params, "sign_type"), Some("RSA"));
        check_timestamp(field(&params, "timestamp"), now_secs()).unwrap();

        // Other currencies and the sandbox method are refused.
        let mut usd = create_req("x", Device::Pc);
        usd.amount = Money::new(100, Currency::Usd).unwrap();
        assert!(matches!(
            ch.create(&usd).await,
            Err(PayError::Unsupported(_))
        ));
        let mut sbx = create_req("x", Device::Pc);
        sbx.method = Method::Sandbox;
        assert!(matches!(
            ch.create(&sbx).await,
            Err(PayError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_gateway_is_transport_error_without_the_key() {
        let ch = v1_channel(EpayFlow::Api);
        for r in [ch.query("ORD1").await, ch.close("ORD1").await] {
            match r {
                Err(PayError::Transport(m)) => assert!(!m.contains(KEY), "{m}"),
                other => panic!("expected Transport, got {other:?}"),
            }
        }
        let r = ch
            .refund(&RefundRequest {
                trade_no: "ORD1".into(),
                refund_no: "R1".into(),
                amount: Money::new(100, Currency::Cny).unwrap(),
                total: Money::new(100, Currency::Cny).unwrap(),
                reason: None,
            })
            .await;
        assert!(matches!(r, Err(PayError::Transport(m)) if !m.contains(KEY)));
        let r = ch.create(&create_req("x", Device::Pc)).await;
        assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
    }

    #[test]
    fn helpers() {
        assert_eq!(normalize_gateway("https://p.example"), "https://p.example/");
        assert_eq!(
            normalize_gateway(" https://p.example/ "),
            "https://p.example/"
        );
        assert_eq!(
            normalize_gateway("https://p.example/x/submit.php"),
            "https://p.example/x/"
        );
        assert_eq!(
            normalize_gateway("https://p.example/mapi.php"),
            "https://p.example/"
        );

        assert_eq!(device_param(Device::Pc, Some("MicroMessenger")), "pc");
        assert_eq!(device_param(Device::Mobile, None), "mobile");
        assert_eq!(
            device_param(Device::Mobile, Some("Mozilla/5.0 MicroMessenger/8.0")),
            "wechat"
        );
        assert_eq!(
            device_param(Device::Mobile, Some("x AlipayClient/10")),
            "alipay"
        );
        assert_eq!(device_param(Device::Mobile, Some("x QQ/8.9 y")), "qq");

        let long = "月".repeat(100);
        let t = truncate_name(&long);
        assert!(t.len() <= MAX_NAME_BYTES && long.starts_with(&t) && t.len() == 120);

        assert!(is_safe_redirect("https://qr.alipay.com/x", true));
        assert!(!is_safe_redirect("weixin://wxpay/x", true));
        assert!(is_safe_redirect("weixin://dl/business/?t=x", false));
        assert!(is_safe_redirect("alipays://platformapi/startapp", false));
        for bad in [
            "javascript:alert(1)",
            " JavaScript:x",
            "data:text/html,x",
            "noscheme",
            "",
        ] {
            assert!(!is_safe_redirect(bad, false), "{bad}");
        }

        let f = flatten_json(
            "\u{feff}{\"code\":1,\"ok\":true,\"no\":false,\"n\":null,\"a\":[1],\"s\":\"x\"}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            f,
            owned(&[
                ("code", "1"),
                ("n", ""),
                ("no", ""),
                ("ok", "1"),
                ("s", "x")
            ])
        );
        assert!(flatten_json(b"[1]").is_none());
        assert!(flatten_json(b"<html>").is_none());

        assert!(is_not_found("订单号不存在"));
        assert!(is_not_found("Order Not Found"));
        assert!(!is_not_found("KEY校验失败"));
    }
}
