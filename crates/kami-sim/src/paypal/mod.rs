//! Gateway side of PayPal Orders v2 (`protocols.md` appendix A.2; kami's side is
//! `kami_pay::paypal`). Routes mirror the REST API under `/sim/paypal`, so a channel's
//! `api_base` is `http://HOST/sim/paypal`:
//! - `POST /v1/oauth2/token` (Basic `client_id:client_secret`, `grant_type=client_credentials`)
//!   → a bearer token valid 9 hours; every other API call needs one (`401 invalid_token`).
//! - `POST /v2/checkout/orders` → `201` order `PAYER_ACTION_REQUIRED` with a `payer-action`
//!   link to the approval page; `GET /v2/checkout/orders/{id}`;
//!   `POST /v2/checkout/orders/{id}/capture` (`422 ORDER_NOT_APPROVED` before approval,
//!   `422 ORDER_ALREADY_CAPTURED` for a second capture under another request id);
//!   `POST /v2/payments/captures/{id}/refund` (never more than captured);
//!   `GET /v1/reporting/transactions` (transaction search of captures and refunds);
//!   `GET /v1/notifications/certs/{CERT-…}` (the signing certificate, PEM).
//! - `PayPal-Request-Id`: a repeated create, capture or refund with the same id answers the
//!   first answer again, as PayPal does.
//!
//! Buyers: `GET /sim/paypal/checkoutnow?token=ORDER` shows the order and "Pay Now" with test
//! controls (webhooks normal / drop / duplicate / delay; capture completed / pending /
//! declined); approving sends `CHECKOUT.ORDER.APPROVED` and redirects to the merchant's
//! `return_url` with `token` and `PayerID`, as PayPal does. A capture sends
//! `PAYMENT.CAPTURE.COMPLETED` (or `…PENDING`, then `…COMPLETED` once
//! [`PaypalSim::complete_pending`] runs, or `…DENIED`); a refund `PAYMENT.CAPTURE.REFUNDED`.
//!
//! Webhooks go to the one URL the app registered ([`PaypalSimConfig::webhook_url`]), signed
//! as PayPal signs them (`kami_pay::paypal::sign`) with a key whose certificate is issued by a
//! CA generated when the simulator starts ([`PaypalSim::ca_pem`]: what kami's channel must be
//! told to trust); each attempt is signed afresh, retried on PayPal's schedule until a 2xx.

mod api;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use kami_core::clock::{self, SharedClock};
use kami_core::Money;
use kami_pay::crypto::RsaSigner;
use rand::Rng;

use crate::common::notify::{Notifier, Outbound};
pub use crate::common::NotifyMode;

/// Path prefix of every route.
pub const PREFIX: &str = "/sim/paypal";
/// The signing certificate's common name (as PayPal's).
pub const CERT_CN: &str = "messageverificationcerts.paypal.com";

/// Simulator settings.
pub struct PaypalSimConfig {
    pub client_id: String,
    pub client_secret: String,
    /// The id of the webhook the merchant registered: part of every signed message.
    pub webhook_id: String,
    /// Where webhooks go (kami's `/pay/notify/{channel}`).
    pub webhook_url: String,
    /// Where this simulator is reached (scheme://host:port): links and the cert URL.
    pub base_url: String,
    pub retry_schedule: Vec<Duration>,
    pub notify_timeout: Duration,
}

impl std::fmt::Debug for PaypalSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalSimConfig")
            .field("client_id", &self.client_id)
            .field("webhook_id", &self.webhook_id)
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

impl PaypalSimConfig {
    /// PayPal retries a webhook up to 25 times over 3 days; this spreads 25 attempts so.
    pub fn default_retry_schedule() -> Vec<Duration> {
        std::iter::once(0)
            .chain((0..24).map(|i| 60u64 * (1 << (i / 3).min(9))))
            .map(Duration::from_secs)
            .collect()
    }
}

/// How the capture of an approved order turns out (test control on the approval page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureMode {
    #[default]
    Completed,
    /// `PENDING` until [`PaypalSim::complete_pending`].
    Pending,
    /// `DECLINED`.
    Declined,
}

#[derive(Debug, Clone)]
struct SimCapture {
    id: String,
    status: &'static str,
    amount: Money,
    create_time: i64,
    update_time: i64,
    refunded: i64,
}

impl SimCapture {
    /// A new capture of `amount` in `status`, made `now` (ms).
    fn new(status: &'static str, amount: Money, now: i64) -> SimCapture {
        SimCapture {
            id: random_id(17),
            status,
            amount,
            create_time: now,
            update_time: now,
            refunded: 0,
        }
    }

    /// A completed capture of `amount`, made `now` (ms).
    fn completed(amount: Money, now: i64) -> SimCapture {
        SimCapture::new("COMPLETED", amount, now)
    }
}

#[derive(Debug, Clone)]
struct SimOrder {
    id: String,
    status: &'static str,
    custom_id: String,
    invoice_id: String,
    description: String,
    amount: Money,
    return_url: String,
    cancel_url: String,
    payer_id: Option<String>,
    capture: Option<SimCapture>,
    capture_mode: CaptureMode,
    notify: NotifyMode,
    create_time: i64,
}

#[derive(Debug, Clone)]
struct SimRefund {
    id: String,
    capture_id: String,
    custom_id: String,
    invoice_id: String,
    amount: Money,
    time: i64,
}

/// Delivery bookkeeping of the webhooks of one PayPal order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Requests sent (a duplicated attempt counts two).
    pub attempts: u32,
    /// Event types acknowledged with a 2xx.
    pub delivered: Vec<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<String, i64>,
    orders: HashMap<String, SimOrder>,
    /// `PayPal-Request-Id` (with the route) → the first answer (status, body).
    replays: HashMap<String, (u16, String)>,
    refunds: Vec<SimRefund>,
    stats: HashMap<String, WebhookStats>,
    /// Order creations to fail with `500 INTERNAL_SERVER_ERROR`.
    fail_creates: u32,
    /// Reconciliation controls: the search answers `500` while set; the next search states
    /// one item more than it lists; trades (`custom_id`) the search leaves out.
    search_failure: bool,
    tamper_next_search: bool,
    hidden: std::collections::HashSet<String>,
}

impl Inner {
    /// The order kami created for `trade_no` (its `custom_id`).
    fn order_of_trade(&mut self, trade_no: &str) -> Result<&mut SimOrder, String> {
        self.orders
            .values_mut()
            .find(|o| o.custom_id == trade_no)
            .ok_or_else(|| format!("no order for {trade_no}"))
    }
}

/// The PayPal simulator. Share it as `Arc<PaypalSim>`.
pub struct PaypalSim {
    cfg: PaypalSimConfig,
    clock: SharedClock,
    notifier: Notifier,
    signing_key: RsaSigner,
    /// The signing certificate served at [`PaypalSim::cert_url`], PEM.
    cert_pem: String,
    ca_pem: String,
    cert_id: String,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PaypalSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalSim")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum PaypalSimError {
    #[error("key: {0}")]
    Key(#[from] kami_pay::crypto::KeyError),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("time: {0}")]
    Time(#[from] time::error::ComponentRange),
}

pub(crate) fn random_id(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// RFC 3339 UTC of unix ms, as PayPal writes times.
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A CA and a signing certificate for `key` (CN [`CERT_CN`]) valid around `now_secs`.
fn generate_pki(key: &RsaSigner, now_secs: i64) -> Result<(String, String), PaypalSimError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let at = time::OffsetDateTime::from_unix_timestamp;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "kami PayPal simulator test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.not_before = at(now_secs - 86_400)?;
    ca.not_after = at(now_secs + 5 * 365 * 86_400)?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name.push(DnType::CommonName, CERT_CN);
    leaf.not_before = at(now_secs - 86_400)?;
    leaf.not_after = at(now_secs + 2 * 365 * 86_400)?;
    let leaf_key = KeyPair::from_pem(&key.private_key_pem()?)?;
    let cert_pem = leaf.signed_by(&leaf_key, &issuer)?.pem();
    Ok((cert_pem, ca_pem))
}

impl PaypalSim {
    /// A simulator on `clock` with a fresh signing key, CA and certificate.
    pub fn with_clock(
        cfg: PaypalSimConfig,
        clock: SharedClock,
    ) -> Result<Arc<PaypalSim>, PaypalSimError> {
        let signing_key = RsaSigner::generate()?;
        let (cert_pem, ca_pem) = generate_pki(&signing_key, clock.now_secs())?;
        let notifier = Notifier::new(
            "paypal",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            |status, _| status.is_success(),
        );
        Ok(Arc::new(PaypalSim {
            cfg,
            clock,
            notifier,
            signing_key,
            cert_pem,
            ca_pem,
            cert_id: format!("CERT-{}", random_id(8).to_lowercase()),
            inner: Mutex::new(Inner::default()),
        }))
    }

    /// On the wall clock.
    pub fn new(cfg: PaypalSimConfig) -> Result<Arc<PaypalSim>, PaypalSimError> {
        Self::with_clock(cfg, clock::system())
    }

    /// Routes under `/sim/paypal/...`.
    pub fn router(self: &Arc<Self>) -> Router {
        let p = |s: &str| format!("{PREFIX}{s}");
        Router::new()
            .route(&p("/v1/oauth2/token"), post(api::token))
            .route(&p("/v2/checkout/orders"), post(api::create_order))
            .route(&p("/v2/checkout/orders/{id}"), get(api::get_order))
            .route(&p("/v2/checkout/orders/{id}/capture"), post(api::capture))
            .route(&p("/v2/payments/captures/{id}/refund"), post(api::refund))
            .route(&p("/v1/reporting/transactions"), get(api::search))
            .route(&p("/v1/notifications/certs/{id}"), get(api::cert))
            .route(
                &p("/checkoutnow"),
                get(pages::approve_page).post(pages::approve_submit),
            )
            .with_state(Arc::clone(self))
    }

    pub fn config(&self) -> &PaypalSimConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CA kami must trust for this simulator's webhook certificates (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The URL prefix the certificates are served under (what kami's policy pins).
    pub fn cert_url_prefix(&self) -> String {
        format!("{}{PREFIX}/v1/notifications/certs/", self.cfg.base_url)
    }

    /// `PAYPAL-CERT-URL` of every webhook.
    pub fn cert_url(&self) -> String {
        format!("{}{}", self.cert_url_prefix(), self.cert_id)
    }

    // ---- test controls -----------------------------------------------------------------

    /// The next `n` order creations fail with `500 INTERNAL_SERVER_ERROR`.
    pub fn fail_next_creates(&self, n: u32) {
        self.lock().fail_creates = n;
    }

    // -- reconciliation controls: the transaction search is PayPal's bill ------------------

    /// The buyer approved and the order was captured (for `amount` minor units instead of
    /// the order's, when given), and nothing told kami: no webhook, no return — a capture
    /// whose answer kami never saw.
    pub fn capture_unseen(&self, trade_no: &str, amount: Option<i64>) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let o = inner.order_of_trade(trade_no)?;
        if o.capture.is_some() {
            return Err("already captured".into());
        }
        let amount = match amount {
            Some(m) => Money::new(m, o.amount.currency()).map_err(|e| e.to_string())?,
            None => o.amount,
        };
        o.status = "COMPLETED";
        o.payer_id = Some(random_id(13));
        o.capture = Some(SimCapture::completed(amount, now));
        Ok(())
    }

    /// A refund of `trade_no`'s capture made on paypal.com: no kami refund number.
    pub fn portal_refund(&self, trade_no: &str, minor: i64) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let o = inner.order_of_trade(trade_no)?;
        let c = o.capture.as_mut().ok_or("not captured")?;
        let amount = Money::new(minor, c.amount.currency()).map_err(|e| e.to_string())?;
        c.refunded += minor;
        c.status = if c.refunded >= c.amount.minor() {
            "REFUNDED"
        } else {
            "PARTIALLY_REFUNDED"
        };
        c.update_time = now;
        let refund = SimRefund {
            id: random_id(17),
            capture_id: c.id.clone(),
            custom_id: trade_no.to_owned(),
            invoice_id: String::new(),
            amount,
            time: now,
        };
        inner.refunds.push(refund);
        Ok(())
    }

    /// A completed capture for a trade kami never created (`custom_id` = `trade_no`).
    pub fn unknown_payment(&self, trade_no: &str, amount: Money) {
        let now = self.clock.now_ms();
        let id = random_id(17);
        let order = SimOrder {
            id: id.clone(),
            status: "COMPLETED",
            custom_id: trade_no.to_owned(),
            invoice_id: trade_no.to_owned(),
            description: "unknown".into(),
            amount,
            return_url: String::new(),
            cancel_url: String::new(),
            payer_id: Some(random_id(13)),
            capture: Some(SimCapture::completed(amount, now)),
            capture_mode: CaptureMode::Completed,
            notify: NotifyMode::Drop,
            create_time: now,
        };
        self.lock().orders.insert(id, order);
    }

    /// The search fails with `500 INTERNAL_SERVER_ERROR` while `on`.
    pub fn fail_search(&self, on: bool) {
        self.lock().search_failure = on;
    }

    /// The next search states one item more than its pages hold.
    pub fn tamper_next_search(&self) {
        self.lock().tamper_next_search = true;
    }

    /// The search leaves `trade_no`'s transactions out while `hidden`.
    pub fn hide_from_search(&self, trade_no: &str, hidden: bool) {
        let mut inner = self.lock();
        if hidden {
            inner.hidden.insert(trade_no.to_owned());
        } else {
            inner.hidden.remove(trade_no);
        }
    }

    /// The PayPal order id kami created for `trade_no` (`custom_id`).
    pub fn order_for_trade(&self, trade_no: &str) -> Option<String> {
        let mut inner = self.lock();
        inner.order_of_trade(trade_no).ok().map(|o| o.id.clone())
    }

    /// The order's status and its capture's (`None` before a capture).
    pub fn status(&self, order_id: &str) -> Option<(&'static str, Option<&'static str>)> {
        self.lock()
            .orders
            .get(order_id)
            .map(|o| (o.status, o.capture.as_ref().map(|c| c.status)))
    }

    /// Webhook bookkeeping of an order.
    pub fn webhook_stats(&self, order_id: &str) -> WebhookStats {
        self.lock().stats.get(order_id).cloned().unwrap_or_default()
    }

    /// Minor units refunded on the order's capture.
    pub fn refunded_total(&self, order_id: &str) -> i64 {
        self.lock()
            .orders
            .get(order_id)
            .and_then(|o| o.capture.as_ref())
            .map_or(0, |c| c.refunded)
    }

    /// A pending capture completes (as after an eCheck clears): `PAYMENT.CAPTURE.COMPLETED`
    /// follows. False when the order has no pending capture.
    pub fn complete_pending(self: &Arc<Self>, order_id: &str) -> bool {
        let event = {
            let mut inner = self.lock();
            let Some(o) = inner.orders.get_mut(order_id) else {
                return false;
            };
            let now = self.clock.now_ms();
            match o.capture.as_mut() {
                Some(c) if c.status == "PENDING" => {
                    c.status = "COMPLETED";
                    c.update_time = now;
                }
                _ => return false,
            }
            let o = o.clone();
            self.capture_event("PAYMENT.CAPTURE.COMPLETED", &o)
        };
        self.send_event(order_id, event, NotifyMode::Normal);
        true
    }

    /// Headers PayPal would send with `body`, signed for `webhook_id` and naming `cert_url`
    /// (tests build tampered deliveries with it).
    pub fn sign(
        &self,
        body: &[u8],
        webhook_id: &str,
        cert_url: &str,
    ) -> Vec<(&'static str, String)> {
        let tid = format!(
            "{}-{}-{}",
            random_id(8).to_lowercase(),
            random_id(4).to_lowercase(),
            random_id(12).to_lowercase()
        );
        kami_pay::paypal::sign::sign_headers(
            &self.signing_key,
            &tid,
            &rfc3339(self.clock.now_ms()),
            webhook_id,
            cert_url,
            body,
        )
        .unwrap_or_default()
    }

    /// The body of `event_type` about the order's current capture (`PAYMENT.CAPTURE.*`), as
    /// the simulator would send it now.
    pub fn capture_event_body(&self, order_id: &str, event_type: &str) -> Option<String> {
        let o = self.lock().orders.get(order_id)?.clone();
        o.capture.as_ref()?;
        Some(self.capture_event(event_type, &o))
    }

    // ---- events --------------------------------------------------------------------------

    fn event(&self, event_type: &str, resource_type: &str, resource: serde_json::Value) -> String {
        let summary = match event_type {
            "CHECKOUT.ORDER.APPROVED" => "An order has been approved by buyer",
            "PAYMENT.CAPTURE.COMPLETED" => "Payment completed",
            "PAYMENT.CAPTURE.PENDING" => "Payment pending",
            "PAYMENT.CAPTURE.DENIED" => "Payment denied",
            "PAYMENT.CAPTURE.REFUNDED" => "A capture payment was refunded",
            _ => "Event",
        };
        let id = format!("WH-{}-{}", random_id(17), random_id(17));
        serde_json::json!({
            "id": id,
            "event_version": "1.0",
            "create_time": rfc3339(self.clock.now_ms()),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
            "links": [{"href": format!("{}{PREFIX}/v1/notifications/webhooks-events/{id}", self.cfg.base_url),
                       "rel": "self", "method": "GET"}],
        })
        .to_string()
    }

    fn capture_event(&self, event_type: &str, o: &SimOrder) -> String {
        let resource = o
            .capture
            .as_ref()
            .map(|c| self.capture_json(o, c))
            .unwrap_or_default();
        self.event(event_type, "capture", resource)
    }

    /// Send `body` to the webhook URL per `mode`, re-signed each attempt.
    fn send_event(self: &Arc<Self>, order_id: &str, body: String, mode: NotifyMode) {
        if mode == NotifyMode::Drop {
            return;
        }
        let me = Arc::clone(self);
        let order_id = order_id.to_owned();
        let event_type = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["event_type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        tokio::spawn(async move {
            let url = me.cfg.webhook_url.clone();
            let cert_url = me.cert_url();
            me.notifier
                .deliver(
                    &order_id,
                    mode,
                    |_| {
                        let mut o = Outbound::post(&url, "application/json", body.clone());
                        o.headers
                            .extend(me.sign(body.as_bytes(), &me.cfg.webhook_id, &cert_url));
                        o.headers
                            .push(("user-agent", "PayPal/AUHD-214.0-58187024".to_owned()));
                        Some(o)
                    },
                    |round| {
                        let mut inner = me.lock();
                        let s = inner.stats.entry(order_id.clone()).or_default();
                        s.attempts += round.sent;
                        if round.ok {
                            s.delivered.push(event_type.clone());
                        }
                        if let Some(e) = &round.last_error {
                            s.last_error = Some(e.clone());
                        }
                        round.ok
                    },
                )
                .await;
        });
    }
}
