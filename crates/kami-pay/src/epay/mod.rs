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
//! is converted to fen exactly by [`Money::from_major_str`](kami_core::Money::from_major_str); only `trade_status ==
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
//! # Confirmation by query
//!
//! An Epay host signs what its own database says, which is not always what its upstream
//! (Alipay, WeChat) collected: dujiao-next #340 credited a top-up the upstream never received.
//! With `confirm_by_query` (default on) kami applies a verified "paid" notification only once
//! this channel's `query` says the same trade is paid with the same amount; otherwise the
//! notification is held (failure ack, so the host retries) and the seller is alerted.
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
//!
//! # Files
//!
//! `sign` (the canonical string, the version's signature), `v1` (MD5, `mapi.php`,
//! `api.php`), `v2` (RSA, timestamps, `/api/pay/*`), `wire` (what both versions share),
//! `notify` (G.3), `tests`. v2 timestamps and the window use the channel's
//! [`kami_core::Clock`] ([`EpayChannel::with_clock`]).

mod notify;
pub mod settings;
mod sign;
mod v1;
mod v2;
mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, SharedClock};

use crate::common::ack::plain_text_ack;
use crate::crypto::{RsaSigner, RsaVerifier};
use crate::{
    Ack, AckResponse, CreatePayment, Created, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, RawNotification, RefundOutcome, RefundRequest, TradeRef, TradeState,
};

pub use crate::common::form::{field, parse_form, MAX_FORM_BYTES, MAX_FORM_FIELDS};
pub use sign::canonical;
pub use v1::{md5_sign, md5_verify, signed_md5};
pub use v2::{check_timestamp, rsa_sign, rsa_verify, signed_rsa};
pub use wire::{device_param, parse_money, pay_type, DEFAULT_CLIENT_IP};

/// v2 messages whose `timestamp` is further than this from our clock are refused (G.5).
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;
/// The `trade_status` that means paid (G.3).
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";
/// Longest `name` sent, in bytes (cut at a character boundary): some hosts truncate names
/// around 127 bytes before verifying, which would break the signature (G.2).
pub const MAX_NAME_BYTES: usize = 120;

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
    /// Request timestamps and the v2 freshness window read this clock.
    clock: SharedClock,
    /// `confirm_by_query` (default on): see [`PaymentChannel::confirm_by_query`].
    confirm_by_query: bool,
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
            .field("confirm_by_query", &self.confirm_by_query)
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
pub(crate) enum Version {
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
            clock: kami_core::clock::system(),
            confirm_by_query: true,
        }
    }

    /// The same channel with `confirm_by_query` on or off (on by default): whether a signed
    /// "paid" notification is applied only once the host's own query confirms it.
    pub fn with_confirm_by_query(mut self, on: bool) -> EpayChannel {
        self.confirm_by_query = on;
        self
    }

    /// The same channel reading `clock` for request timestamps and the v2 window.
    pub fn with_clock(mut self, clock: SharedClock) -> EpayChannel {
        self.clock = clock;
        self
    }

    /// The gateway base URL, ending in `/`.
    pub fn gateway(&self) -> &str {
        &self.base
    }

    pub fn flow(&self) -> EpayFlow {
        self.flow
    }

    pub(crate) fn version(&self) -> Version {
        match self.credentials {
            EpayCredentials::V1 { .. } => Version::V1,
            EpayCredentials::V2 { .. } => Version::V2,
        }
    }

    pub(crate) fn url(&self, path: &str) -> Result<String, PayError> {
        if !(self.base.starts_with("http://") || self.base.starts_with("https://")) {
            return Err(PayError::Config(
                "epay gateway must be an http(s) URL".into(),
            ));
        }
        Ok(format!("{}{path}", self.base))
    }
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

    /// Mainland gateways settle in CNY only (epusdt and BEpusdt take the fiat amount in CNY).
    fn charge_currency(&self, _offered: Currency) -> Currency {
        Currency::Cny
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        match (self.flow, self.version()) {
            (EpayFlow::Submit, _) => Ok(PaymentAction::Redirect {
                url: self.submit_url(req)?,
            }
            .into()),
            (EpayFlow::Api, Version::V1) => self.create_api_v1(req).await.map(Created::from),
            (EpayFlow::Api, Version::V2) => self.create_api_v2(req).await.map(Created::from),
        }
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let params = notify::notification_params(raw)?;
        self.verify_params(&params, self.clock.now_secs())
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        plain_text_ack(ack)
    }

    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        match self.version() {
            Version::V1 => self.query_v1(trade_no).await,
            Version::V2 => self.query_v2(trade_no).await,
        }
    }

    /// v1 cannot close (see the module documentation): the queried state, with anything
    /// not paid or refunded reported as `Waiting`. v2: `api/pay/close`, then a query.
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        match self.version() {
            Version::V1 => self.close_v1(trade_no).await,
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

    fn confirm_by_query(&self) -> bool {
        self.confirm_by_query
    }
}
