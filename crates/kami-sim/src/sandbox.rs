//! Gateway side of the `sandbox` protocol (see `kami_pay::sandbox` for the byte-level
//! description). Serves the buyer's pay page, delivers signed notifications with retries until
//! the merchant answers `success`, and answers the signed query/close/refund API.
//!
//! Trade states: unknown (`NOT_FOUND`) until the pay page is opened or posted, then `WAITING`,
//! then `PAID` (idempotent), `REFUNDED` once refunds reach the total; `CLOSED` through the
//! close API (unknown trades included, so a later pay attempt is refused with 409).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_core::{Currency, Money};
use kami_pay::sandbox::{field, parse_form, signed, verify};
use rand::Rng;

/// Largest merchant reply body the simulator reads.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Tunables of the simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Delay before each notification attempt; its length is the number of attempts.
    /// Default: immediately, then 1s, 2s, 4s, 8s, 16s, 30s, 60s, 120s, 300s.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one notification request (connect + answer).
    pub notify_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            retry_schedule: [0, 1, 2, 4, 8, 16, 30, 60, 120, 300]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            notify_timeout: Duration::from_secs(10),
        }
    }
}

/// Delivery bookkeeping of one trade's payment notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// HTTP requests sent so far (a `duplicate` round counts two).
    pub attempts: u32,
    /// The merchant answered 200 `success` at least once.
    pub delivered: bool,
    /// Why the last failed request failed.
    pub last_error: Option<String>,
}

/// How the simulator notifies a payment (test control on the pay page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyMode {
    Normal,
    /// Mark the trade paid but never notify (kami must find it by query/close).
    Drop,
    /// Send every notification twice concurrently.
    Duplicate,
}

impl NotifyMode {
    fn parse(s: &str) -> Option<NotifyMode> {
        match s {
            "" | "normal" => Some(NotifyMode::Normal),
            "drop" => Some(NotifyMode::Drop),
            "duplicate" => Some(NotifyMode::Duplicate),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Paid,
    Closed,
    Refunded,
}

impl Status {
    fn api(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Paid => "PAID",
            Status::Closed => "CLOSED",
            Status::Refunded => "REFUNDED",
        }
    }
}

/// What the merchant's signed pay URL says.
#[derive(Debug, Clone)]
struct Order {
    amount: Money,
    subject: String,
    notify_url: String,
    return_url: String,
    expires_at: i64,
}

#[derive(Debug, Clone)]
struct Payment {
    gateway_trade_no: String,
    amount: Money,
}

#[derive(Debug)]
struct Trade {
    status: Status,
    order: Option<Order>,
    payment: Option<Payment>,
    /// refund_no → amount refunded under it.
    refunds: HashMap<String, Money>,
    refunded_minor: i64,
    stats: NotifyStats,
}

impl Trade {
    fn new(status: Status, order: Option<Order>) -> Trade {
        Trade {
            status,
            order,
            payment: None,
            refunds: HashMap::new(),
            refunded_minor: 0,
            stats: NotifyStats::default(),
        }
    }
}

/// The sandbox gateway simulator. Share it as `Arc<SandboxSim>`.
pub struct SandboxSim {
    secret: Vec<u8>,
    opts: SimOptions,
    http: reqwest::Client,
    trades: Mutex<HashMap<String, Trade>>,
}

impl std::fmt::Debug for SandboxSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxSim")
            .field("secret", &"<redacted>")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn gateway_trade_no() -> String {
    let mut rng = rand::thread_rng();
    let digits: String = (0..20)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("SBX{digits}")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · kami sandbox gateway</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         .amount{{font-size:2rem;font-weight:bold}}button{{font-size:1.2rem;padding:.5rem 2rem}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n<p><small>kami sandbox gateway — test payments only, \
         no real money moves.</small></p></body></html>\n",
        t = escape(title)
    )
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A refusal of the pay page, as HTML or JSON.
struct PageError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            code,
            message: message.into(),
        }
    }

    fn respond(self, json: bool) -> Response {
        if json {
            let body = serde_json::json!({"error": self.code, "message": self.message});
            (self.status, Json(body)).into_response()
        } else {
            let body = format!("<p>{}</p>", escape(&self.message));
            (self.status, Html(html_page("Payment refused", &body))).into_response()
        }
    }
}

fn required<'a>(params: &'a [(String, String)], key: &str) -> Result<&'a str, String> {
    field(params, key).ok_or_else(|| format!("missing field {key}"))
}

fn parse_money(amount: &str, currency: &str) -> Result<Money, String> {
    let currency = Currency::parse(currency).map_err(|e| e.to_string())?;
    Money::from_major_str(amount, currency).map_err(|e| e.to_string())
}

/// An unsigned API error (bad signature or unparseable request).
fn api_unsigned_error(status: StatusCode, code: &str, message: Option<&str>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), code.into());
    if let Some(m) = message {
        body.insert("message".into(), m.into());
    }
    (status, Json(serde_json::Value::Object(body))).into_response()
}

impl SandboxSim {
    pub fn new(secret: Vec<u8>, opts: SimOptions) -> Arc<SandboxSim> {
        Arc::new(SandboxSim {
            secret,
            opts,
            http: reqwest::Client::new(),
            trades: Mutex::new(HashMap::new()),
        })
    }

    /// Routes under `/sim/sandbox/...`; merge into any axum 0.8 router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sim/sandbox/pay/{trade_no}",
                get(pay_page).post(pay_submit),
            )
            .route("/sim/sandbox/api/query", get(api_query))
            .route("/sim/sandbox/api/close", post(api_close))
            .route("/sim/sandbox/api/refund", post(api_refund))
            .with_state(Arc::clone(self))
    }

    /// Notification delivery stats of a paid trade (`None` if it was never paid).
    pub fn notify_stats(&self, trade_no: &str) -> Option<NotifyStats> {
        self.lock()
            .get(trade_no)
            .filter(|t| t.payment.is_some())
            .map(|t| t.stats.clone())
    }

    /// The trade's state as the query API reports it: `NOT_FOUND`, `WAITING`, `PAID`,
    /// `CLOSED` or `REFUNDED`.
    pub fn trade_status(&self, trade_no: &str) -> &'static str {
        self.lock()
            .get(trade_no)
            .map_or("NOT_FOUND", |t| t.status.api())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Trade>> {
        self.trades.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signed_json(&self, status: StatusCode, fields: Vec<(String, String)>) -> Response {
        let map: serde_json::Map<String, serde_json::Value> = signed(&self.secret, fields)
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        (status, Json(serde_json::Value::Object(map))).into_response()
    }

    fn signed_error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.signed_json(
            status,
            vec![
                ("error".into(), code.into()),
                ("message".into(), message.into()),
            ],
        )
    }

    /// Parse and verify a signed API request; `Err` is the response to send.
    fn api_request(
        &self,
        raw: &[u8],
        fields: &[&str],
    ) -> Result<Vec<(String, String)>, Box<Response>> {
        let params = parse_form(raw).map_err(|e| {
            Box::new(api_unsigned_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                Some(&e.to_string()),
            ))
        })?;
        if !verify(&self.secret, &params) {
            return Err(Box::new(api_unsigned_error(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                None,
            )));
        }
        for f in fields {
            if let Err(m) = required(&params, f) {
                return Err(Box::new(self.signed_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    &m,
                )));
            }
        }
        Ok(params)
    }

    fn state_fields(trade_no: &str, trade: Option<&Trade>) -> Vec<(String, String)> {
        let mut fields = vec![
            ("trade_no".to_owned(), trade_no.to_owned()),
            (
                "status".to_owned(),
                trade.map_or("NOT_FOUND", |t| t.status.api()).to_owned(),
            ),
        ];
        if let Some(p) = trade.and_then(|t| t.payment.as_ref()) {
            fields.push(("gateway_trade_no".into(), p.gateway_trade_no.clone()));
            fields.push(("amount".into(), p.amount.to_major_string()));
            fields.push(("currency".into(), p.amount.currency().code().to_owned()));
        }
        fields
    }

    /// Verify a pay URL (path trade number + query string) and read the order it describes.
    fn check_pay_url(&self, path_trade_no: &str, query: &str) -> Result<Order, PageError> {
        let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m);
        let params = parse_form(query.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if !verify(&self.secret, &params) {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                "The payment link's signature is invalid.",
            ));
        }
        let trade_no = required(&params, "trade_no").map_err(bad)?;
        if trade_no != path_trade_no {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                "The payment link's signature is invalid (trade number mismatch).",
            ));
        }
        let amount = parse_money(
            required(&params, "amount").map_err(bad)?,
            required(&params, "currency").map_err(bad)?,
        )
        .map_err(bad)?;
        let expires_at = required(&params, "expires_at")
            .map_err(bad)?
            .parse::<i64>()
            .map_err(|_| bad("expires_at is not a number".into()))?;
        Ok(Order {
            amount,
            subject: required(&params, "subject").map_err(bad)?.to_owned(),
            notify_url: required(&params, "notify_url").map_err(bad)?.to_owned(),
            return_url: required(&params, "return_url").map_err(bad)?.to_owned(),
            expires_at,
        })
    }

    /// Send one notification; `Ok` iff the merchant answered 200 `success`.
    async fn send_notification(&self, url: &str, body: &str) -> Result<(), String> {
        let mut resp = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .timeout(self.opts.notify_timeout)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let mut reply = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("transport: {e}"))? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err("reply too large".into());
            }
            reply.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&reply);
        if status == StatusCode::OK && text.trim() == "success" {
            Ok(())
        } else {
            let snippet: String = text.chars().take(64).collect();
            Err(format!("HTTP {}: {snippet:?}", status.as_u16()))
        }
    }

    /// Deliver a payment notification following the retry schedule.
    async fn deliver(
        self: Arc<Self>,
        trade_no: String,
        url: String,
        body: String,
        mode: NotifyMode,
    ) {
        let copies: u32 = if mode == NotifyMode::Duplicate { 2 } else { 1 };
        for (round, delay) in self.opts.retry_schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            let results = if copies == 2 {
                let (a, b) = tokio::join!(
                    self.send_notification(&url, &body),
                    self.send_notification(&url, &body)
                );
                vec![a, b]
            } else {
                vec![self.send_notification(&url, &body).await]
            };
            let ok = results.iter().any(Result::is_ok);
            let last_error = results.into_iter().filter_map(Result::err).next_back();
            {
                let mut trades = self.lock();
                if let Some(t) = trades.get_mut(&trade_no) {
                    t.stats.attempts += copies;
                    if ok {
                        t.stats.delivered = true;
                    }
                    if let Some(e) = &last_error {
                        t.stats.last_error = Some(e.clone());
                    }
                }
            }
            if ok {
                tracing::debug!(%trade_no, round, "sandbox notification delivered");
                return;
            }
            tracing::info!(%trade_no, round, error = ?last_error, "sandbox notification failed");
        }
        tracing::warn!(%trade_no, "sandbox notification retries exhausted");
    }
}

async fn pay_page(
    State(sim): State<Arc<SandboxSim>>,
    Path(trade_no): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    let query = query.unwrap_or_default();
    let order = match sim.check_pay_url(&trade_no, &query) {
        Ok(o) => o,
        Err(e) => return e.respond(json),
    };
    let existing = {
        let mut trades = sim.lock();
        match trades.get(&trade_no).map(|t| t.status) {
            Some(Status::Paid | Status::Refunded) => trades
                .get(&trade_no)
                .and_then(|t| t.payment.as_ref())
                .map(|p| p.gateway_trade_no.clone()),
            Some(Status::Closed) => {
                return PageError::new(StatusCode::CONFLICT, "TRADE_CLOSED", "The trade is closed.")
                    .respond(json)
            }
            _ if now_ms() > order.expires_at => {
                return PageError::new(StatusCode::GONE, "EXPIRED", "The payment link has expired.")
                    .respond(json)
            }
            Some(Status::Waiting) => {
                if let Some(t) = trades.get_mut(&trade_no) {
                    t.order = Some(order.clone());
                }
                None
            }
            None => {
                trades.insert(
                    trade_no.clone(),
                    Trade::new(Status::Waiting, Some(order.clone())),
                );
                None
            }
        }
    };
    if json {
        let body = match &existing {
            Some(g) => {
                serde_json::json!({"trade_no": trade_no, "gateway_trade_no": g, "status": "paid"})
            }
            None => serde_json::json!({"trade_no": trade_no, "status": "waiting"}),
        };
        return Json(body).into_response();
    }
    let summary = format!(
        "<p>{}</p>\n<p class=\"amount\">{} {}</p>\n<p>Trade <code>{}</code></p>",
        escape(&order.subject),
        escape(&order.amount.to_major_string()),
        escape(order.amount.currency().code()),
        escape(&trade_no),
    );
    if existing.is_some() {
        let body = format!(
            "{summary}\n<p>This trade is already paid.</p>{}",
            return_link(&order)
        );
        return Html(html_page("Already paid", &body)).into_response();
    }
    let action = format!("/sim/sandbox/pay/{trade_no}?{query}");
    let body = format!(
        "{summary}\n<form method=\"post\" action=\"{}\">\n\
         <p><label>Notification (test control): <select name=\"notify\">\
         <option value=\"normal\" selected>normal</option>\
         <option value=\"drop\">drop (paid, never notified)</option>\
         <option value=\"duplicate\">duplicate (each notification twice)</option>\
         </select></label></p>\n<p><button type=\"submit\">Pay</button></p>\n</form>",
        escape(&action)
    );
    Html(html_page("Sandbox payment", &body)).into_response()
}

fn return_link(order: &Order) -> String {
    let url = &order.return_url;
    if url.starts_with("http://") || url.starts_with("https://") {
        format!("<p><a href=\"{}\">Return to the shop</a></p>", escape(url))
    } else {
        String::new()
    }
}

async fn pay_submit(
    State(sim): State<Arc<SandboxSim>>,
    Path(trade_no): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let query = query.unwrap_or_default();
    let order = match sim.check_pay_url(&trade_no, &query) {
        Ok(o) => o,
        Err(e) => return e.respond(json),
    };
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => {
            return PageError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string())
                .respond(json)
        }
    };
    let Some(mode) = NotifyMode::parse(field(&form, "notify").unwrap_or("")) else {
        return PageError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "notify must be normal, drop or duplicate",
        )
        .respond(json);
    };

    // Decide under the lock; deliver after releasing it.
    let (gateway_trade_no, delivery) = {
        let mut trades = sim.lock();
        let known = trades.get(&trade_no).map(|t| t.status);
        if known.is_none_or(|s| s == Status::Waiting) && now_ms() > order.expires_at {
            return PageError::new(StatusCode::GONE, "EXPIRED", "The payment link has expired.")
                .respond(json);
        }
        let trade = trades
            .entry(trade_no.clone())
            .or_insert_with(|| Trade::new(Status::Waiting, None));
        match trade.status {
            Status::Paid | Status::Refunded => {
                let g = trade
                    .payment
                    .as_ref()
                    .map(|p| p.gateway_trade_no.clone())
                    .unwrap_or_default();
                (g, None)
            }
            Status::Closed => {
                return PageError::new(StatusCode::CONFLICT, "TRADE_CLOSED", "The trade is closed.")
                    .respond(json)
            }
            Status::Waiting => {
                let g = gateway_trade_no();
                let paid_at = now_ms();
                trade.status = Status::Paid;
                trade.order = Some(order.clone());
                trade.payment = Some(Payment {
                    gateway_trade_no: g.clone(),
                    amount: order.amount,
                });
                let amount = order.amount.to_major_string();
                let params = signed(
                    &sim.secret,
                    vec![
                        ("trade_no".into(), trade_no.clone()),
                        ("gateway_trade_no".into(), g.clone()),
                        ("amount".into(), amount),
                        ("currency".into(), order.amount.currency().code().to_owned()),
                        ("status".into(), "paid".into()),
                        ("paid_at".into(), paid_at.to_string()),
                        ("notify_id".into(), hex::encode(rand::random::<[u8; 16]>())),
                    ],
                );
                let delivery = match (mode, serde_urlencoded::to_string(&params)) {
                    (NotifyMode::Drop, _) => None,
                    (_, Ok(body)) => Some(body),
                    (_, Err(e)) => {
                        tracing::error!(error = %e, "cannot encode sandbox notification");
                        None
                    }
                };
                (g, delivery)
            }
        }
    };
    if let Some(body) = delivery {
        tokio::spawn(Arc::clone(&sim).deliver(
            trade_no.clone(),
            order.notify_url.clone(),
            body,
            mode,
        ));
    }

    if json {
        return Json(serde_json::json!({
            "trade_no": trade_no,
            "gateway_trade_no": gateway_trade_no,
            "status": "paid",
        }))
        .into_response();
    }
    let body = format!(
        "<p>{}</p>\n<p class=\"amount\">{} {}</p>\n<p>Trade <code>{}</code>, gateway trade \
         <code>{}</code>.</p>{}",
        escape(&order.subject),
        escape(&order.amount.to_major_string()),
        escape(order.amount.currency().code()),
        escape(&trade_no),
        escape(&gateway_trade_no),
        return_link(&order),
    );
    Html(html_page("Payment done", &body)).into_response()
}

async fn api_query(State(sim): State<Arc<SandboxSim>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let params = match sim.api_request(query.as_bytes(), &["trade_no", "nonce"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = field(&params, "trade_no").unwrap_or_default();
    let fields = {
        let trades = sim.lock();
        SandboxSim::state_fields(trade_no, trades.get(trade_no))
    };
    sim.signed_json(StatusCode::OK, fields)
}

async fn api_close(State(sim): State<Arc<SandboxSim>>, body: Bytes) -> Response {
    let params = match sim.api_request(&body, &["trade_no", "nonce"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = field(&params, "trade_no").unwrap_or_default();
    let fields = {
        let mut trades = sim.lock();
        let trade = trades
            .entry(trade_no.to_owned())
            .or_insert_with(|| Trade::new(Status::Closed, None));
        if trade.status == Status::Waiting {
            trade.status = Status::Closed;
        }
        SandboxSim::state_fields(trade_no, Some(trade))
    };
    sim.signed_json(StatusCode::OK, fields)
}

async fn api_refund(State(sim): State<Arc<SandboxSim>>, body: Bytes) -> Response {
    let params = match sim.api_request(
        &body,
        &["trade_no", "refund_no", "amount", "currency", "nonce"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let get = |k: &str| field(&params, k).unwrap_or_default();
    let (trade_no, refund_no) = (get("trade_no"), get("refund_no"));
    let amount = match parse_money(get("amount"), get("currency")) {
        Ok(m) if m.minor() > 0 => m,
        Ok(_) => {
            return sim.signed_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "refund amount must be positive",
            )
        }
        Err(e) => return sim.signed_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &e),
    };
    let success = |m: Money| {
        vec![
            ("refund_no".to_owned(), refund_no.to_owned()),
            ("amount".to_owned(), m.to_major_string()),
            ("currency".to_owned(), m.currency().code().to_owned()),
            ("status".to_owned(), "SUCCESS".to_owned()),
        ]
    };
    let outcome = {
        let mut trades = sim.lock();
        match trades.get_mut(trade_no) {
            Some(t) if t.refunds.contains_key(refund_no) => {
                Ok(t.refunds.get(refund_no).copied().map(success))
            }
            Some(t) if matches!(t.status, Status::Paid | Status::Refunded) => {
                match t.payment.as_ref().map(|p| p.amount) {
                    Some(total) if total.currency() != amount.currency() => Err((
                        "CURRENCY_MISMATCH",
                        "refund currency differs from the trade's",
                    )),
                    Some(total) if t.refunded_minor + amount.minor() > total.minor() => {
                        Err(("EXCEEDS_TOTAL", "refunds would exceed the paid amount"))
                    }
                    Some(total) => {
                        t.refunded_minor += amount.minor();
                        t.refunds.insert(refund_no.to_owned(), amount);
                        if t.refunded_minor == total.minor() {
                            t.status = Status::Refunded;
                        }
                        Ok(Some(success(amount)))
                    }
                    None => Err(("NOT_PAID", "the trade is not paid")),
                }
            }
            _ => Err(("NOT_PAID", "the trade is not paid")),
        }
    };
    match outcome {
        Ok(Some(fields)) => sim.signed_json(StatusCode::OK, fields),
        Ok(None) => sim.signed_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "lost refund"),
        Err((code, message)) => sim.signed_error(StatusCode::CONFLICT, code, message),
    }
}
