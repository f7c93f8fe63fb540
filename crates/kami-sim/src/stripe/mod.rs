//! Gateway side of Stripe Checkout (`shared/protocols.md` appendix A.1; the merchant side is
//! `kami_pay::stripe`). One simulated Stripe account with one secret key and one webhook
//! endpoint, all under `/sim/stripe/` (a channel's `api_base` is `http://HOST/sim/stripe`):
//!
//! | route | what |
//! | --- | --- |
//! | `POST v1/checkout/sessions` | create a Checkout Session (form fields checked like Stripe) |
//! | `GET v1/checkout/sessions?limit=&payment_intent=` | list sessions, newest first |
//! | `GET v1/checkout/sessions/{id}` | retrieve it |
//! | `POST v1/checkout/sessions/{id}/expire` | expire an open session (400 otherwise) |
//! | `POST v1/refunds`, `GET v1/refunds?payment_intent=` | refund a payment intent; list its refunds |
//! | `GET v1/balance_transactions` | the balance's payments and refunds (reconciliation) |
//! | `GET\|POST c/pay/{id}` | the hosted checkout page the buyer pays on, with test controls |
//!
//! The API wants `Authorization: Bearer <secret key>` (or the key as the Basic user name) and
//! answers Stripe's `{"error": {type, code, message, param}}` with Stripe's statuses (401 bad
//! key, 404 `resource_missing`, 400 invalid request). `Idempotency-Key` works as at Stripe:
//! the first answer is stored for 24 hours and replayed (`Idempotent-Replayed: true`); the same
//! key on another endpoint or with other parameters is a 400 `idempotency_error`; a request
//! refused for its parameters stores nothing.
//!
//! Paying completes the session (`status=complete`, a fresh `pi_…`) and sends the signed
//! webhook events to the account's endpoint ([`StripeSimConfig::webhook_url`]): one
//! `Stripe-Signature` `v1` per configured endpoint secret (several while a secret is rolled),
//! re-signed with a fresh `t` on every attempt, the same event id across retries, any 2xx
//! acknowledging. Test controls on the page and as methods: notifications dropped, duplicated,
//! delayed, held and released; a delayed (asynchronous) payment method whose
//! `checkout.session.completed` is `unpaid` and followed by `async_payment_succeeded` or
//! `_failed`, optionally delivered in reverse order (out of order); a different `amount_total`
//! or `currency` in the events; creation failures and delays. Expiring a session (by the API
//! or by its `expires_at` passing) sends `checkout.session.expired`.
//!
//! Currencies: the simulated account takes every currency kami knows, CNY included. A real
//! Stripe account presents CNY only where Stripe supports it for the account's country, and
//! Stripe does not open accounts for businesses in mainland China: the demo's CNY prices work
//! here, not necessarily on a real account ([`StripeSimConfig::currencies`] narrows the list).

mod api;
mod pages;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use kami_core::clock::{self, SharedClock};
use kami_core::{Currency, Money};
use kami_pay::stripe::{currency_param, signature_header};
use rand::Rng;
use serde_json::{json, Value};

use crate::common::faults::{CreationFaults, Held, Release};
use crate::common::notify::{Notifier, Outbound};
pub use crate::common::{NotifyMode, NotifyStats};

/// Where the routes live.
pub const PREFIX: &str = "/sim/stripe";
/// Idempotency keys are forgotten this long after first use (Stripe: 24 hours).
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// Any 2xx acknowledges a webhook.
pub fn acknowledged(status: axum::http::StatusCode, _: &[u8]) -> bool {
    status.is_success()
}

/// The simulated account.
#[derive(Debug, Clone)]
pub struct StripeSimConfig {
    /// The secret API key the merchant must present (`sk_test_…`).
    pub secret_key: String,
    /// The webhook endpoint's signing secrets (`whsec_…`): each event carries one `v1` per
    /// secret (two while a secret is rolled).
    pub webhook_secrets: Vec<String>,
    /// The endpoint the account sends events to (set in Stripe's dashboard, not per session).
    /// `None`: kami's own endpoint for the session, `…/pay/notify/<id>` beside the
    /// `…/pay/return/<id>` kami sends as `success_url` (a simulator convenience, so one
    /// simulator serves any channel id and runs standalone).
    pub webhook_url: Option<String>,
    /// Currencies the account presents; `None`: every currency kami knows.
    pub currencies: Option<Vec<Currency>>,
    /// Delay before each webhook attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    pub notify_timeout: Duration,
}

impl StripeSimConfig {
    /// Stripe's live-mode retries (over about three days) in short: immediately, then 1 min,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h.
    pub fn default_schedule() -> Vec<Duration> {
        [0, 60, 300, 1800, 7200, 18000, 36000, 36000, 86400]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }
}

/// How the buyer's payment goes (page controls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// A card: paid at once, `checkout.session.completed` with `payment_status=paid`.
    #[default]
    Paid,
    /// A delayed method that succeeds: `completed` (unpaid), then `async_payment_succeeded`.
    AsyncSucceeded,
    /// A delayed method that fails: `completed` (unpaid), then `async_payment_failed`.
    AsyncFailed,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PayOptions {
    pub outcome: Outcome,
    pub notify: NotifyMode,
    /// Events report this `amount_total` instead of the session's (a test of kami's check).
    pub amount: Option<i64>,
    /// Events report this currency instead of the session's.
    pub currency: Option<Currency>,
    pub delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Complete,
    Expired,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Complete => "complete",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RefundRec {
    id: String,
    amount: i64,
    created: i64,
    metadata: BTreeMap<String, String>,
    reason: Option<String>,
}

#[derive(Debug)]
pub(crate) struct SessionRec {
    id: String,
    /// `http://host` the API was called at: where the hosted page is.
    origin: String,
    client_reference_id: Option<String>,
    metadata: BTreeMap<String, String>,
    pi_metadata: BTreeMap<String, String>,
    amount: Money,
    product_name: String,
    success_url: String,
    cancel_url: String,
    created: i64,
    expires_at: i64,
    status: Status,
    paid: bool,
    payment_intent: Option<String>,
    /// How the buyer paid (page controls); `None` while unpaid.
    outcome: Option<Outcome>,
    /// What the events report (test controls), if not the session's own.
    reported: Option<(i64, Currency)>,
    refunds: Vec<RefundRec>,
    stats: NotifyStats,
    /// What the charge says was paid, if not `amount` (a reconciliation test control).
    charged: Option<i64>,
}

impl SessionRec {
    fn refunded(&self) -> i64 {
        self.refunds.iter().map(|r| r.amount).sum()
    }
}

/// A stored idempotent answer.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    path: String,
    params: Vec<(String, String)>,
    status: u16,
    body: String,
    at: i64,
}

#[derive(Debug, Default)]
struct Controls {
    creation: CreationFaults,
    /// Lists answer at most this many items a page (0: as asked), to exercise paging.
    page_cap: usize,
    held: Held<(String, Vec<&'static str>)>,
    /// `GET /v1/balance_transactions` answers `api_error` while set.
    balance_failure: bool,
    /// The next balance-transactions page states a charge of no amount.
    tamper_next_page: bool,
    /// Sessions whose transactions the list leaves out.
    hidden: HashSet<String>,
}

/// A balance transaction: a payment or a refund landing in the balance.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    id: String,
    created: i64,
    session: String,
    /// The refund's index in its session, for a refund.
    refund: Option<usize>,
}

#[derive(Debug, Default)]
struct SimState {
    sessions: HashMap<String, SessionRec>,
    /// Balance transactions, oldest first.
    txns: Vec<Txn>,
    /// payment intent → session id.
    by_pi: HashMap<String, String>,
    idempotency: HashMap<String, Stored>,
    controls: Controls,
}

/// The Stripe simulator. Share it as `Arc<StripeSim>`.
pub struct StripeSim {
    cfg: StripeSimConfig,
    clock: SharedClock,
    notifier: Notifier,
    state: Mutex<SimState>,
    /// Starts as the configuration's; [`StripeSim::set_webhook_url`] moves it.
    webhook_url: Mutex<Option<String>>,
}

impl std::fmt::Debug for StripeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSim")
            .field("webhook_url", &self.webhook_url())
            .finish_non_exhaustive()
    }
}

/// `prefix` + random letters and digits, like Stripe's object ids.
pub(crate) fn object_id(prefix: &str, n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..n)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect();
    format!("{prefix}{tail}")
}

impl StripeSim {
    pub fn new(cfg: StripeSimConfig) -> Arc<StripeSim> {
        Self::with_clock(cfg, clock::system())
    }

    pub fn with_clock(cfg: StripeSimConfig, clock: SharedClock) -> Arc<StripeSim> {
        let notifier = Notifier::new(
            "stripe",
            cfg.retry_schedule.clone(),
            cfg.notify_timeout,
            acknowledged,
        );
        Arc::new(StripeSim {
            webhook_url: Mutex::new(cfg.webhook_url.clone()),
            cfg,
            clock,
            notifier,
            state: Mutex::new(SimState::default()),
        })
    }

    /// Routes under `/sim/stripe/...`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sim/stripe/v1/checkout/sessions",
                post(api::create_session).get(api::list_sessions),
            )
            .route(
                "/sim/stripe/v1/checkout/sessions/{id}",
                get(api::retrieve_session),
            )
            .route(
                "/sim/stripe/v1/checkout/sessions/{id}/expire",
                post(api::expire_session),
            )
            .route(
                "/sim/stripe/v1/refunds",
                post(api::create_refund).get(api::list_refunds),
            )
            .route(
                "/sim/stripe/v1/balance_transactions",
                get(api::balance_transactions),
            )
            .route(
                "/sim/stripe/c/pay/{id}",
                get(pages::checkout).post(pages::submit),
            )
            .with_state(Arc::clone(self))
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &StripeSimConfig {
        &self.cfg
    }

    fn takes(&self, c: Currency) -> bool {
        self.cfg.currencies.as_ref().is_none_or(|l| l.contains(&c))
    }

    /// The endpoint set for the account, if any (see [`StripeSimConfig::webhook_url`]).
    pub fn webhook_url(&self) -> Option<String> {
        self.webhook_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Send events to another endpoint (as when the seller edits it in the dashboard);
    /// `None`: each session's kami endpoint.
    pub fn set_webhook_url(&self, url: Option<&str>) {
        *self.webhook_url.lock().unwrap_or_else(|e| e.into_inner()) = url.map(str::to_owned);
    }

    /// Where a session's events go: the account's endpoint, else kami's beside its return URL.
    fn endpoint_for(&self, s: &SessionRec) -> Option<String> {
        if let Some(u) = self.webhook_url() {
            return Some(u);
        }
        let mut u = reqwest::Url::parse(&s.success_url).ok()?;
        let id = u.path().strip_prefix("/pay/return/")?.to_owned();
        if id.is_empty() || id.contains('/') {
            return None;
        }
        u.set_path(&format!("/pay/notify/{id}"));
        u.set_query(None);
        u.set_fragment(None);
        Some(u.to_string())
    }

    // -- test controls --------------------------------------------------------------------

    /// Fail every session create with this message (`None`: succeed again).
    pub fn set_create_failure(&self, message: Option<String>) {
        self.lock().controls.creation.fail_always = message;
    }

    /// Fail the next `n` session creates.
    pub fn fail_next_creates(&self, n: u32) {
        self.lock().controls.creation.fail_next = n;
    }

    /// Lists answer at most `n` items a page whatever `limit` asks (0: as asked).
    pub fn set_page_cap(&self, n: usize) {
        self.lock().controls.page_cap = n;
    }

    /// Answer every session create only after this delay.
    pub fn set_create_delay(&self, delay: Duration) {
        self.lock().controls.creation.delay = delay;
    }

    /// The session created for kami's trade `trade_no` (its `client_reference_id`).
    pub fn session_for_trade(&self, trade_no: &str) -> Option<String> {
        self.lock()
            .sessions
            .values()
            .find(|s| s.client_reference_id.as_deref() == Some(trade_no))
            .map(|s| s.id.clone())
    }

    /// `open`, `complete` or `expired` (`None`: unknown session).
    pub fn session_status(self: &Arc<Self>, id: &str) -> Option<&'static str> {
        self.expire_due(id);
        self.lock().sessions.get(id).map(|s| s.status.name())
    }

    /// The payment intent of a paid session.
    pub fn payment_intent(&self, id: &str) -> Option<String> {
        self.lock().sessions.get(id)?.payment_intent.clone()
    }

    /// The `payment_intent_data[metadata]` the session was created with.
    pub fn payment_intent_metadata(&self, id: &str) -> Option<BTreeMap<String, String>> {
        self.lock().sessions.get(id).map(|s| s.pi_metadata.clone())
    }

    /// Refunded so far, minor units (`None`: unknown session).
    pub fn refunded(&self, id: &str) -> Option<i64> {
        self.lock().sessions.get(id).map(SessionRec::refunded)
    }

    /// How many refunds the session's payment has.
    pub fn refund_count(&self, id: &str) -> usize {
        self.lock().sessions.get(id).map_or(0, |s| s.refunds.len())
    }

    /// Webhook delivery of a session's events.
    pub fn notify_stats(&self, id: &str) -> Option<NotifyStats> {
        self.lock().sessions.get(id).map(|s| s.stats.clone())
    }

    /// An event of `kind` about the session as its body would be sent now, unsigned (tests
    /// sign and tamper with it themselves).
    pub fn event_body(&self, id: &str, kind: &str) -> Option<String> {
        let st = self.lock();
        let s = st.sessions.get(id)?;
        Some(self.event(s, kind, &object_id("evt_", 24)).to_string())
    }

    /// `body` signed as the account signs its webhooks, at unix time `t`.
    pub fn sign(&self, body: &[u8], t: i64) -> String {
        let secrets: Vec<&str> = self
            .cfg
            .webhook_secrets
            .iter()
            .map(String::as_str)
            .collect();
        signature_header(&secrets, t, body)
    }

    // -- reconciliation controls: the day's balance transactions are Stripe's bill --------

    /// `GET /v1/balance_transactions` answers `api_error` (500) while `on`.
    pub fn fail_balance_api(&self, on: bool) {
        self.lock().controls.balance_failure = on;
    }

    /// The next balance-transactions page states its first charge with no amount.
    pub fn tamper_next_balance_page(&self) {
        self.lock().controls.tamper_next_page = true;
    }

    /// The paid session of `trade_no` was charged `minor` (its charge says so), not its
    /// amount: a payment of another sum.
    pub fn charge_another_amount(&self, trade_no: &str, minor: i64) -> Result<(), String> {
        let id = self
            .session_for_trade(trade_no)
            .ok_or_else(|| format!("no session for {trade_no}"))?;
        let mut st = self.lock();
        let s = st.sessions.get_mut(&id).ok_or("no such session")?;
        s.charged = Some(minor);
        Ok(())
    }

    /// A refund of `trade_no`'s payment made in the dashboard: no kami refund number.
    pub fn dashboard_refund(&self, trade_no: &str, minor: i64) -> Result<(), String> {
        let id = self
            .session_for_trade(trade_no)
            .ok_or_else(|| format!("no session for {trade_no}"))?;
        let now = self.clock.now_secs();
        let mut st = self.lock();
        let s = st.sessions.get_mut(&id).ok_or("no such session")?;
        if !s.paid {
            return Err("the session is not paid".into());
        }
        s.refunds.push(RefundRec {
            id: object_id("re_3", 23),
            amount: minor,
            created: now,
            metadata: BTreeMap::new(),
            reason: Some("requested_by_customer".into()),
        });
        let refund = Some(s.refunds.len() - 1);
        st.txns.push(Txn {
            id: object_id("txn_3", 23),
            created: now,
            session: id,
            refund,
        });
        Ok(())
    }

    /// A paid payment for a trade kami never created (metadata naming `trade_no`).
    pub fn unknown_payment(&self, trade_no: &str, amount: Money) {
        let now = self.clock.now_secs();
        let id = object_id("cs_test_", 40);
        let meta = BTreeMap::from([(
            kami_pay::stripe::TRADE_NO_KEY.to_owned(),
            trade_no.to_owned(),
        )]);
        let rec = SessionRec {
            id: id.clone(),
            origin: String::new(),
            client_reference_id: Some(trade_no.to_owned()),
            metadata: meta.clone(),
            pi_metadata: meta,
            amount,
            product_name: "unknown".into(),
            success_url: String::new(),
            cancel_url: String::new(),
            created: now,
            expires_at: now + 3600,
            status: Status::Complete,
            paid: true,
            payment_intent: Some(object_id("pi_3", 23)),
            outcome: Some(Outcome::Paid),
            reported: None,
            refunds: Vec::new(),
            stats: Default::default(),
            charged: None,
        };
        let mut st = self.lock();
        st.sessions.insert(id.clone(), rec);
        st.txns.push(Txn {
            id: object_id("txn_3", 23),
            created: now,
            session: id,
            refund: None,
        });
    }

    /// The balance list leaves `trade_no`'s transactions out while `hidden`.
    pub fn hide_from_balance(&self, trade_no: &str, hidden: bool) {
        let Some(id) = self.session_for_trade(trade_no) else {
            return;
        };
        let mut st = self.lock();
        if hidden {
            st.controls.hidden.insert(id);
        } else {
            st.controls.hidden.remove(&id);
        }
    }

    /// Pay an open session as the buyer would. Returns the payment intent.
    pub fn pay(self: &Arc<Self>, id: &str, opts: PayOptions) -> Result<String, String> {
        self.expire_due(id);
        let (pi, events) = {
            let mut st = self.lock();
            let s = st
                .sessions
                .get_mut(id)
                .ok_or_else(|| "No such checkout session.".to_owned())?;
            match s.status {
                Status::Complete => return Err("This Checkout Session is already paid.".into()),
                Status::Expired => return Err("This Checkout Session has expired.".into()),
                Status::Open => {}
            }
            let pi = object_id("pi_3", 23);
            s.status = Status::Complete;
            s.payment_intent = Some(pi.clone());
            // A delayed method that succeeds settles right after `completed` (unpaid).
            s.paid = opts.outcome != Outcome::AsyncFailed;
            s.outcome = Some(opts.outcome);
            if opts.amount.is_some() || opts.currency.is_some() {
                s.reported = Some((
                    opts.amount.unwrap_or(s.amount.minor()),
                    opts.currency.unwrap_or(s.amount.currency()),
                ));
            }
            let mut events = vec!["checkout.session.completed"];
            match opts.outcome {
                Outcome::Paid => {}
                Outcome::AsyncSucceeded => events.push("checkout.session.async_payment_succeeded"),
                Outcome::AsyncFailed => events.push("checkout.session.async_payment_failed"),
            }
            if opts.notify == NotifyMode::Reorder {
                events.reverse();
            }
            st.by_pi.insert(pi.clone(), id.to_owned());
            if opts.outcome != Outcome::AsyncFailed {
                let created = self.clock.now_secs();
                st.txns.push(Txn {
                    id: object_id("txn_3", 23),
                    created,
                    session: id.to_owned(),
                    refund: None,
                });
            }
            if opts.notify == NotifyMode::Hold {
                st.controls.held.hold((id.to_owned(), events.clone()));
            }
            (pi, events)
        };
        match opts.notify {
            NotifyMode::Drop | NotifyMode::Hold => {}
            mode => {
                let sim = Arc::clone(self);
                let id = id.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(opts.delay).await;
                    sim.deliver_all(&id, &events, mode).await;
                });
            }
        }
        Ok(pi)
    }

    /// Deliver the held events (each session's in its order), sessions in payment order or
    /// reversed. Returns how many sessions were released.
    pub fn release_held(self: &Arc<Self>, reverse: bool) -> usize {
        let order = if reverse {
            Release::Reversed
        } else {
            Release::InOrder
        };
        let held = self.lock().controls.held.release(order);
        let n = held.len();
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            for (id, events) in held {
                sim.deliver_all(&id, &events, NotifyMode::Normal).await;
            }
        });
        n
    }

    /// Send one more event of `kind` about the session (a resend from the dashboard).
    pub fn resend(self: &Arc<Self>, id: &str, kind: &'static str) -> bool {
        if !self.lock().sessions.contains_key(id) {
            return false;
        }
        let sim = Arc::clone(self);
        let id = id.to_owned();
        tokio::spawn(async move { sim.deliver_all(&id, &[kind], NotifyMode::Normal).await });
        true
    }

    /// Expire the session if its `expires_at` has passed (Stripe does it on its own) and
    /// send `checkout.session.expired`.
    fn expire_due(self: &Arc<Self>, id: &str) {
        let now = self.clock.now_secs();
        let due = match self.lock().sessions.get_mut(id) {
            Some(s) if s.status == Status::Open && now >= s.expires_at => {
                s.status = Status::Expired;
                true
            }
            _ => false,
        };
        if due {
            self.resend(id, "checkout.session.expired");
        }
    }

    // -- objects ----------------------------------------------------------------------------

    /// The Checkout Session object as the API shows it.
    pub(crate) fn session_json(&self, s: &SessionRec) -> Value {
        let (amount, currency) = match s.reported {
            Some((a, c)) => (a, c),
            None => (s.amount.minor(), s.amount.currency()),
        };
        let url =
            (s.status == Status::Open).then(|| format!("{}{PREFIX}/c/pay/{}", s.origin, s.id));
        json!({
            "id": s.id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": s.cancel_url,
            "client_reference_id": s.client_reference_id,
            "created": s.created,
            "currency": currency_param(currency),
            "expires_at": s.expires_at,
            "livemode": false,
            "metadata": s.metadata,
            "mode": "payment",
            "payment_intent": s.payment_intent,
            "payment_method_types": ["card"],
            "payment_status": if s.paid { "paid" } else { "unpaid" },
            "status": s.status.name(),
            "success_url": s.success_url,
            "url": url,
        })
    }

    pub(crate) fn refund_json(&self, s: &SessionRec, r: &RefundRec) -> Value {
        json!({
            "id": r.id,
            "object": "refund",
            "amount": r.amount,
            "charge": s.payment_intent.as_deref().map(|p| p.replacen("pi_", "ch_", 1)),
            "created": r.created,
            "currency": currency_param(s.amount.currency()),
            "metadata": r.metadata,
            "payment_intent": s.payment_intent,
            "reason": r.reason,
            "status": "succeeded",
        })
    }

    /// The charge behind a paid session (a balance transaction's source).
    pub(crate) fn charge_json(&self, s: &SessionRec, expand_pi: bool) -> Value {
        json!({
            "id": s.payment_intent.as_deref().map(|p| p.replacen("pi_", "ch_", 1)),
            "object": "charge",
            "amount": s.charged.unwrap_or(s.amount.minor()),
            "amount_refunded": s.refunded(),
            "currency": currency_param(s.amount.currency()),
            "metadata": {},
            "paid": true,
            "payment_intent": self.pi_value(s, expand_pi),
            "status": "succeeded",
        })
    }

    /// A payment intent as an id or, expanded, the object.
    pub(crate) fn pi_value(&self, s: &SessionRec, expand: bool) -> Value {
        if !expand {
            return json!(s.payment_intent);
        }
        json!({
            "id": s.payment_intent,
            "object": "payment_intent",
            "amount": s.amount.minor(),
            "currency": currency_param(s.amount.currency()),
            "metadata": s.pi_metadata,
            "status": "succeeded",
        })
    }

    fn event(&self, s: &SessionRec, kind: &str, id: &str) -> Value {
        let mut object = self.session_json(s);
        // Each event shows the payment as it stood when the event happened: `completed` of a
        // delayed method is unpaid even once the payment has succeeded.
        let paid = match kind {
            "checkout.session.completed" => s.outcome == Some(Outcome::Paid),
            "checkout.session.async_payment_succeeded" => true,
            _ => false,
        };
        object["payment_status"] = json!(if paid { "paid" } else { "unpaid" });
        json!({
            "id": id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": self.clock.now_secs(),
            "data": {"object": object},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        })
    }

    /// Send each event in turn (each until acknowledged or out of retries).
    async fn deliver_all(self: &Arc<Self>, id: &str, kinds: &[&'static str], mode: NotifyMode) {
        for kind in kinds {
            self.deliver(id, kind, mode).await;
        }
    }

    async fn deliver(self: &Arc<Self>, id: &str, kind: &str, mode: NotifyMode) {
        let (body, url) = {
            let st = self.lock();
            let Some(s) = st.sessions.get(id) else {
                return;
            };
            let body = self.event(s, kind, &object_id("evt_", 24)).to_string();
            (body, self.endpoint_for(s))
        };
        let Some(url) = url else {
            tracing::warn!(
                session = id,
                "stripe simulator: no webhook endpoint for this session"
            );
            return;
        };
        self.notifier
            .deliver(
                id,
                mode,
                |_| {
                    // Re-signed with a fresh timestamp on every attempt; same event id.
                    let mut o =
                        Outbound::post(&url, "application/json; charset=utf-8", body.clone());
                    o.headers.push((
                        "stripe-signature",
                        self.sign(body.as_bytes(), self.clock.now_secs()),
                    ));
                    Some(o)
                },
                |round| {
                    if let Some(s) = self.lock().sessions.get_mut(id) {
                        s.stats.record(round);
                    }
                    round.ok
                },
            )
            .await;
    }
}
