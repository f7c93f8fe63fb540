//! The `sandbox` channel: kami's own test protocol. It is deliberately shaped like a real
//! gateway (signed redirect, signed asynchronous notification retried until acknowledged,
//! signed query/close/refund API) so the demo and the tests exercise kami's real payment
//! path. The gateway side lives in `kami_sim::sandbox`.
//!
//! # Protocol
//!
//! **Signature.** Both sides share a secret (bytes). `sign` = lowercase hex of
//! HMAC-SHA256(secret, canonical), where canonical = every parameter except `sign` whose value
//! is non-empty, sorted by key bytewise, joined as `k=v` with `&` (raw values, not
//! url-encoded). Verification compares in constant time. See [`sign`] and [`verify`].
//!
//! **create** (no network call, like Alipay page.pay): a redirect to
//! `{gateway}/sim/sandbox/pay/{trade_no}?{urlencoded params}` with `trade_no`, `amount`
//! (major units, "12.30"), `currency` ("CNY"), `subject`, `notify_url`, `return_url`,
//! `expires_at` (unix ms) and `sign`. `gateway` is the configured base URL without trailing
//! slash.
//!
//! **Pay page** (simulator): `GET /sim/sandbox/pay/{trade_no}?...` verifies the signature and
//! that the path's trade number equals the parameter (bad → 400), refuses a trade past
//! `expires_at` (410) or closed through the close API (409 "trade closed"), otherwise shows
//! subject, amount and currency and a form posting back to the same URL, with an optional
//! `notify` control: `normal` | `drop` (paid, never notified) | `duplicate` (each notification
//! sent twice concurrently). `POST` on the same URL (form body may carry `notify`) makes the
//! same checks, then marks the trade paid idempotently, assigns `gateway_trade_no` = "SBX" +
//! 20 random digits, schedules the notification and answers 200: JSON
//! `{"trade_no","gateway_trade_no","status":"paid"}` for `Accept: application/json`,
//! otherwise an HTML "Payment done" page linking to `return_url`.
//!
//! **Notification** (gateway → kami): `POST notify_url`, `application/x-www-form-urlencoded`,
//! parameters `trade_no`, `gateway_trade_no`, `amount`, `currency`, `status` (`paid`),
//! `paid_at` (unix ms), `notify_id` (random hex), `sign`. Delivered iff the answer is HTTP 200
//! with trimmed body exactly `success`; otherwise retried on a schedule (default immediately,
//! then 1s, 2s, 4s, 8s, 16s, 30s, 60s, 120s, 300s: 10 attempts). kami accepts the POST form
//! body, or the query string of a GET. All of `trade_no`, `gateway_trade_no`, `amount`,
//! `currency`, `status`, `sign` are required; duplicated keys, non-UTF-8 and bad
//! percent-encoding are malformed.
//!
//! **Ack.** Success → 200 `text/plain; charset=utf-8` `success`; Failure → 400 `fail`.
//!
//! **query**: `GET {gateway}/sim/sandbox/api/query?trade_no=..&nonce=..&sign=..` → JSON object
//! of string fields `trade_no`, `status` (`NOT_FOUND` | `WAITING` | `PAID` | `CLOSED` |
//! `REFUNDED`), when a payment exists `gateway_trade_no`, `amount`, `currency`, and `sign`
//! over the other fields. A trade is known to the gateway once its pay page was opened.
//!
//! **close**: `POST {gateway}/sim/sandbox/api/close`, form `trade_no, nonce, sign` → the same
//! signed JSON describing the state after closing: a paid trade stays `PAID`, anything else
//! (unknown trades included) becomes `CLOSED`.
//!
//! **refund**: `POST {gateway}/sim/sandbox/api/refund`, form `trade_no, refund_no, amount,
//! currency, nonce, sign` → signed JSON `refund_no, amount, currency, status="SUCCESS"`,
//! idempotent per `refund_no`. Errors are signed JSON with `error` (`NOT_PAID` |
//! `EXCEEDS_TOTAL` | ...) and HTTP 409. When refunds reach the total the trade is `REFUNDED`.
//!
//! API requests with a bad signature get HTTP 400 `{"error":"BAD_SIGNATURE"}` (unsigned).

pub mod settings;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use kami_core::{ChannelId, Currency, Method, Money};
use sha2::Sha256;

use crate::{
    Ack, AckResponse, CreatePayment, NotifyVerdict, PayError, PaymentAction, PaymentChannel,
    PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeState,
};

type HmacSha256 = Hmac<Sha256>;

use crate::form::{clip, required};
pub use crate::form::{field, parse_form, MAX_FORM_BYTES, MAX_FORM_FIELDS};
/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Field names of the notification that must be present.
const NOTIFY_REQUIRED: [&str; 6] = [
    "trade_no",
    "gateway_trade_no",
    "amount",
    "currency",
    "status",
    "sign",
];

fn canonical<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
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

fn mac(secret: &[u8], params_canonical: &str) -> Option<HmacSha256> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    mac.update(params_canonical.as_bytes());
    Some(mac)
}

/// The sandbox signature of `params`: lowercase hex HMAC-SHA256 of the canonical string
/// (every parameter but `sign` with a non-empty value, sorted by key, `k=v` joined by `&`).
pub fn sign<K: AsRef<str>, V: AsRef<str>>(secret: &[u8], params: &[(K, V)]) -> String {
    match mac(secret, &canonical(params)) {
        Some(m) => hex::encode(m.finalize().into_bytes()),
        None => String::new(),
    }
}

/// True iff `params` carries exactly one `sign` that is the lowercase-hex signature of the
/// other parameters, and no key appears twice. Constant-time comparison.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(secret: &[u8], params: &[(K, V)]) -> bool {
    let mut seen = HashSet::new();
    let mut sig = None;
    for (k, v) in params {
        if !seen.insert(k.as_ref()) {
            return false;
        }
        if k.as_ref() == "sign" {
            sig = Some(v.as_ref());
        }
    }
    let Some(sig) = sig else {
        return false;
    };
    if sig.len() != 64 || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return false;
    }
    let Ok(bytes) = hex::decode(sig) else {
        return false;
    };
    match mac(secret, &canonical(params)) {
        Some(m) => m.verify_slice(&bytes).is_ok(),
        None => false,
    }
}

/// Params with a fresh `sign` appended (any existing `sign` is replaced).
pub fn signed(secret: &[u8], params: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k != "sign").collect();
    let s = sign(secret, &params);
    params.push(("sign".to_owned(), s));
    params
}

fn parse_money(amount: &str, currency: &str) -> Result<Money, PayError> {
    let currency = Currency::parse(currency).map_err(|e| PayError::Malformed(e.to_string()))?;
    Money::from_major_str(amount, currency).map_err(|e| PayError::Malformed(e.to_string()))
}

fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The sandbox payment channel (kami side).
pub struct SandboxChannel {
    id: ChannelId,
    methods: Vec<Method>,
    priority: i32,
    secret: Vec<u8>,
    gateway: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for SandboxChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxChannel")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("secret", &"<redacted>")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl SandboxChannel {
    pub fn new(
        id: ChannelId,
        methods: Vec<Method>,
        priority: i32,
        secret: Vec<u8>,
        gateway: String,
        http: reqwest::Client,
    ) -> SandboxChannel {
        let gateway = gateway.trim_end_matches('/').to_owned();
        SandboxChannel {
            id,
            methods,
            priority,
            secret,
            gateway,
            http,
        }
    }

    /// The gateway base URL (no trailing slash).
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    fn api_url(&self, op: &str) -> String {
        format!("{}/sim/sandbox/api/{op}", self.gateway)
    }

    /// Send an API request and return the verified fields of a successful answer.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Vec<(String, String)>, PayError> {
        let crate::http::Reply { status, body, .. } =
            crate::http::send(req.timeout(API_TIMEOUT)).await?;
        let http_error = || PayError::Gateway {
            code: format!("HTTP_{status}"),
            message: clip(&String::from_utf8_lossy(&body)),
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&body)
        else {
            return Err(http_error());
        };
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => fields.push((k, s)),
                _ => {
                    return Err(PayError::Malformed(format!(
                        "gateway field {} is not a string",
                        clip(&k)
                    )))
                }
            }
        }
        let gateway_error = |fields: &[(String, String)]| {
            field(fields, "error").map(|code| PayError::Gateway {
                code: clip(code),
                message: field(fields, "message")
                    .map(clip)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            })
        };
        if field(&fields, "sign").is_none() {
            // Unsigned answers can only be errors (e.g. BAD_SIGNATURE); never trusted as facts.
            return Err(gateway_error(&fields).unwrap_or(PayError::BadResponseSignature));
        }
        if !verify(&self.secret, &fields) {
            return Err(PayError::BadResponseSignature);
        }
        if let Some(e) = gateway_error(&fields) {
            return Err(e);
        }
        if !(200..300).contains(&status) {
            return Err(http_error());
        }
        Ok(fields)
    }

    fn trade_state(
        &self,
        trade_no: &str,
        fields: &[(String, String)],
    ) -> Result<TradeState, PayError> {
        let got = required(fields, "trade_no")?;
        if got != trade_no {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        match required(fields, "status")? {
            "NOT_FOUND" => Ok(TradeState::NotFound),
            "WAITING" => Ok(TradeState::Waiting),
            "CLOSED" => Ok(TradeState::Closed),
            "REFUNDED" => Ok(TradeState::Refunded),
            "PAID" => {
                let gateway_trade_no = required(fields, "gateway_trade_no")?;
                let amount =
                    parse_money(required(fields, "amount")?, required(fields, "currency")?)?;
                Ok(TradeState::Paid(PaymentConfirmation {
                    trade_no: got.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                }))
            }
            other => Err(PayError::Malformed(format!(
                "unknown trade status {}",
                clip(other)
            ))),
        }
    }

    fn signed_form(&self, params: Vec<(String, String)>) -> Result<String, PayError> {
        serde_urlencoded::to_string(signed(&self.secret, params))
            .map_err(|e| PayError::Malformed(e.to_string()))
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl PaymentChannel for SandboxChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        let trade_no = req.trade_no.as_str();
        let amount = req.amount.to_major_string();
        let expires = req.expires_at_ms.to_string();
        let params = owned(&[
            ("trade_no", trade_no),
            ("amount", &amount),
            ("currency", req.amount.currency().code()),
            ("subject", &req.subject),
            ("notify_url", &req.notify_url),
            ("return_url", &req.return_url),
            ("expires_at", &expires),
        ]);
        let query = self.signed_form(params)?;
        Ok(PaymentAction::Redirect {
            url: format!("{}/sim/sandbox/pay/{trade_no}?{query}", self.gateway),
        })
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let input: &[u8] = if raw.method.eq_ignore_ascii_case("POST") {
            &raw.body
        } else if raw.method.eq_ignore_ascii_case("GET") {
            raw.query.as_bytes()
        } else {
            return Err(PayError::Malformed(format!(
                "unsupported method {}",
                clip(&raw.method)
            )));
        };
        let params = parse_form(input)?;
        for key in NOTIFY_REQUIRED {
            required(&params, key)?;
        }
        if !verify(&self.secret, &params) {
            return Err(PayError::BadSignature);
        }
        let trade_no = required(&params, "trade_no")?;
        let gateway_trade_no = required(&params, "gateway_trade_no")?;
        let amount = parse_money(required(&params, "amount")?, required(&params, "currency")?)?;
        let status = required(&params, "status")?;
        if status == "paid" {
            Ok(NotifyVerdict::Paid(PaymentConfirmation {
                trade_no: trade_no.to_owned(),
                gateway_trade_no: gateway_trade_no.to_owned(),
                amount,
            }))
        } else {
            Ok(NotifyVerdict::NotPaid {
                trade_no: trade_no.to_owned(),
                status: status.to_owned(),
            })
        }
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
        let n = nonce();
        let query = self.signed_form(owned(&[("trade_no", trade_no), ("nonce", &n)]))?;
        let url = format!("{}?{query}", self.api_url("query"));
        let fields = self.call(self.http.get(url)).await?;
        self.trade_state(trade_no, &fields)
    }

    async fn close(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let n = nonce();
        let body = self.signed_form(owned(&[("trade_no", trade_no), ("nonce", &n)]))?;
        let req = self
            .http
            .post(self.api_url("close"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let fields = self.call(req).await?;
        self.trade_state(trade_no, &fields)
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let n = nonce();
        let amount = req.amount.to_major_string();
        let body = self.signed_form(owned(&[
            ("trade_no", &req.trade_no),
            ("refund_no", &req.refund_no),
            ("amount", &amount),
            ("currency", req.amount.currency().code()),
            ("nonce", &n),
        ]))?;
        let http = self
            .http
            .post(self.api_url("refund"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let fields = self.call(http).await?;
        if required(&fields, "refund_no")? != req.refund_no {
            return Err(PayError::Malformed(
                "gateway answered for another refund".into(),
            ));
        }
        let status = required(&fields, "status")?;
        if status != "SUCCESS" {
            return Err(PayError::Gateway {
                code: clip(status),
                message: "refund not successful".into(),
            });
        }
        let refunded = parse_money(required(&fields, "amount")?, required(&fields, "currency")?)?;
        if refunded.currency() != req.amount.currency() {
            return Err(PayError::Malformed("refund currency differs".into()));
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: refunded,
            settled: true,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kami_core::OrderNo;

    const SECRET: &[u8] = b"sandbox-test-secret";

    fn channel() -> SandboxChannel {
        SandboxChannel::new(
            ChannelId::parse("sbx").unwrap(),
            vec![Method::Sandbox],
            5,
            SECRET.to_vec(),
            "http://127.0.0.1:9/".to_owned(),
            reqwest::Client::new(),
        )
    }

    fn notification_params(status: &str) -> Vec<(String, String)> {
        signed(
            SECRET,
            owned(&[
                ("trade_no", "K2024010112000012345678"),
                ("gateway_trade_no", "SBX12345678901234567890"),
                ("amount", "12.30"),
                ("currency", "CNY"),
                ("status", status),
                ("paid_at", "1700000000000"),
                ("notify_id", "abcdef"),
            ]),
        )
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

    fn encode(params: &[(String, String)]) -> String {
        serde_urlencoded::to_string(params).unwrap()
    }

    fn malformed(r: Result<NotifyVerdict, PayError>) -> String {
        match r {
            Err(PayError::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn canonical_string_rules() {
        let c = canonical(&[
            ("b", "2"),
            ("sign", "zzz"),
            ("a", "x y&z"),
            ("empty", ""),
            ("B", "upper"),
        ]);
        assert_eq!(c, "B=upper&a=x y&z&b=2");
    }

    #[test]
    fn known_vector() {
        let params = [
            ("trade_no", "K2024010112000012345678"),
            ("amount", "12.30"),
            ("currency", "CNY"),
            ("status", "paid"),
        ];
        assert_eq!(
            canonical(&params),
            "amount=12.30&currency=CNY&status=paid&trade_no=K2024010112000012345678"
        );
        // Cross-checked with Python's hmac module.
        let s = sign(b"kami-sandbox-secret", &params);
        assert_eq!(
            s,
            "a165327af5d1144d0660490a799efcbad9249bf1e178e46e06dbda302c813f15"
        );
        let mut with_sign: Vec<(&str, &str)> = params.to_vec();
        with_sign.push(("sign", &s));
        assert!(verify(b"kami-sandbox-secret", &with_sign));
        assert!(!verify(b"other-secret", &with_sign));
    }

    #[test]
    fn verify_rejects_uppercase_duplicates_and_missing_sign() {
        let params = notification_params("paid");
        assert!(verify(SECRET, &params));
        let upper: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| {
                if k == "sign" {
                    (k.clone(), v.to_uppercase())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        assert!(!verify(SECRET, &upper));
        let mut dup = params.clone();
        dup.push(("status".into(), "paid".into()));
        assert!(!verify(SECRET, &dup));
        let no_sign: Vec<_> = params.iter().filter(|(k, _)| k != "sign").collect();
        let no_sign: Vec<(String, String)> = no_sign.into_iter().cloned().collect();
        assert!(!verify(SECRET, &no_sign));
    }

    #[test]
    fn valid_notification_is_paid() {
        let ch = channel();
        let v = ch
            .verify_notification(&post(encode(&notification_params("paid"))))
            .unwrap();
        assert_eq!(
            v,
            NotifyVerdict::Paid(PaymentConfirmation {
                trade_no: "K2024010112000012345678".into(),
                gateway_trade_no: "SBX12345678901234567890".into(),
                amount: Money::new(1230, Currency::Cny).unwrap(),
            })
        );
    }

    #[test]
    fn get_query_string_is_accepted() {
        let ch = channel();
        let raw = RawNotification {
            method: "GET".into(),
            query: encode(&notification_params("paid")),
            headers: vec![],
            body: vec![],
        };
        assert!(matches!(
            ch.verify_notification(&raw),
            Ok(NotifyVerdict::Paid(_))
        ));
        // A POST's query string is not the message.
        let raw = RawNotification {
            method: "POST".into(),
            query: encode(&notification_params("paid")),
            headers: vec![],
            body: vec![],
        };
        malformed(ch.verify_notification(&raw));
    }

    #[test]
    fn other_status_is_not_paid() {
        let ch = channel();
        for status in ["closed", "waiting", "PAID", "refunded"] {
            let v = ch
                .verify_notification(&post(encode(&notification_params(status))))
                .unwrap();
            assert_eq!(
                v,
                NotifyVerdict::NotPaid {
                    trade_no: "K2024010112000012345678".into(),
                    status: status.into()
                }
            );
        }
    }

    #[test]
    fn every_tampered_field_fails() {
        let ch = channel();
        let good = notification_params("paid");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i].1.push('0');
            let r = ch.verify_notification(&post(encode(&bad)));
            assert!(
                matches!(r, Err(PayError::BadSignature)),
                "tampering {} gave {r:?}",
                good[i].0
            );
        }
        // An added field is also tampering.
        let mut extra = good.clone();
        extra.push(("seller".into(), "x".into()));
        assert!(matches!(
            ch.verify_notification(&post(encode(&extra))),
            Err(PayError::BadSignature)
        ));
        // Wrong secret.
        let other = SandboxChannel::new(
            ChannelId::parse("sbx").unwrap(),
            vec![Method::Sandbox],
            5,
            b"another".to_vec(),
            "http://x".into(),
            reqwest::Client::new(),
        );
        assert!(matches!(
            other.verify_notification(&post(encode(&good))),
            Err(PayError::BadSignature)
        ));
    }

    #[test]
    fn missing_fields_are_malformed() {
        let ch = channel();
        let good = notification_params("paid");
        for key in NOTIFY_REQUIRED {
            let without: Vec<(String, String)> =
                good.iter().filter(|(k, _)| k != key).cloned().collect();
            let m = malformed(ch.verify_notification(&post(encode(&without))));
            assert_eq!(m, format!("missing field {key}"));
        }
    }

    #[test]
    fn hostile_bodies_are_malformed_not_panics() {
        let ch = channel();
        let good = encode(&notification_params("paid"));
        malformed(ch.verify_notification(&post(Vec::new())));
        malformed(ch.verify_notification(&post(b"\xff\xfe\x00garbage".to_vec())));
        malformed(ch.verify_notification(&post(format!("{good}&trade_no=%FF"))));
        malformed(ch.verify_notification(&post(format!("{good}&x=%G1"))));
        malformed(ch.verify_notification(&post(format!("{good}&x=%4"))));
        malformed(ch.verify_notification(&post(format!("{good}&=v"))));
        // Duplicated keys are rejected, whatever the order or value.
        let m = malformed(ch.verify_notification(&post(format!("{good}&status=paid"))));
        assert!(m.contains("duplicate"), "{m}");
        let m = malformed(ch.verify_notification(&post(format!("status=closed&{good}"))));
        assert!(m.contains("duplicate"), "{m}");
        // Huge.
        let huge = format!("{good}&pad={}", "a".repeat(MAX_FORM_BYTES));
        malformed(ch.verify_notification(&post(huge)));
        let many: String = (0..1000).map(|i| format!("k{i}=v&")).collect();
        malformed(ch.verify_notification(&post(many)));
        // Wrong method.
        let mut raw = post(good);
        raw.method = "PUT".into();
        malformed(ch.verify_notification(&raw));
        // Arbitrary bytes never panic.
        for seed in 0u32..2000 {
            let bytes: Vec<u8> = (0..(seed % 97))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
                .collect();
            let _ = ch.verify_notification(&post(bytes));
        }
    }

    #[test]
    fn bad_amount_or_currency_is_malformed() {
        let ch = channel();
        for (amount, currency) in [
            ("12.345", "CNY"),
            ("-1.00", "CNY"),
            ("1.00", "XXX"),
            ("", "CNY"),
        ] {
            let params = signed(
                SECRET,
                owned(&[
                    ("trade_no", "K2024010112000012345678"),
                    ("gateway_trade_no", "SBX1"),
                    ("amount", amount),
                    ("currency", currency),
                    ("status", "paid"),
                ]),
            );
            let r = ch.verify_notification(&post(encode(&params)));
            if amount.is_empty() {
                // An empty amount is present but excluded from the canonical string.
                assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
            } else {
                malformed(r);
            }
        }
    }

    #[test]
    fn ack_bytes() {
        let ch = channel();
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
        assert_eq!(ch.kind(), "sandbox");
        assert_eq!(ch.gateway(), "http://127.0.0.1:9");
        assert!(!format!("{ch:?}").contains("sandbox-test-secret"));
    }

    #[tokio::test]
    async fn create_builds_signed_redirect() {
        let ch = channel();
        let trade_no = OrderNo::generate("20240101120000");
        let req = CreatePayment {
            trade_no: trade_no.clone(),
            amount: Money::new(1230, Currency::Cny).unwrap(),
            subject: "Steam 10 & more <b>".into(),
            method: Method::Sandbox,
            device: crate::Device::Pc,
            notify_url: "http://shop/pay/notify/sbx".into(),
            return_url: "http://shop/pay/return/sbx?x=1".into(),
            expires_at_ms: 1_700_000_000_000,
            user_agent: None,
            client_ip: None,
        };
        let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap() else {
            panic!("expected redirect");
        };
        let prefix = format!("http://127.0.0.1:9/sim/sandbox/pay/{trade_no}?");
        assert!(url.starts_with(&prefix), "{url}");
        let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
        assert!(verify(SECRET, &params));
        assert_eq!(field(&params, "amount"), Some("12.30"));
        assert_eq!(field(&params, "currency"), Some("CNY"));
        assert_eq!(field(&params, "subject"), Some("Steam 10 & more <b>"));
        assert_eq!(
            field(&params, "return_url"),
            Some("http://shop/pay/return/sbx?x=1")
        );
        assert_eq!(field(&params, "expires_at"), Some("1700000000000"));
        assert_eq!(field(&params, "trade_no"), Some(trade_no.as_str()));
    }

    #[tokio::test]
    async fn unreachable_gateway_is_transport_error() {
        let ch = channel();
        let r = ch.query("K2024010112000012345678").await;
        assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
    }
}
