//! The HTTP side: admin setup (product + card keys), the buyers (create → pay → delivered;
//! pay is the sandbox's JSON pay call, or for a real protocol the simulator's payment page
//! and its Pay form, like a browser), and the admin-API cross-check of delivered orders.

use anyhow::{bail, Context, Result};
use reqwest::{header, Client, StatusCode, Url};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::browser::{self, Device, PayMethod};

/// `base` + path segments (each percent-encoded as needed).
pub fn api_url(base: &Url, segments: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("base URL {base} cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// At most `max` characters of a response body, for error messages.
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        let cut: String = trimmed.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The `error.code` of a kami JSON error body, if any.
pub fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("error")?.get("code")?.as_str().map(str::to_string)
}

/// `count` unique card keys, tagged with the run id so a shared server cannot confuse
/// them with other runs.
pub fn generate_keys(run_id: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("BENCH-{run_id}-{i:08}-{:016x}", rand::random::<u64>()))
        .collect()
}

async fn admin_post(
    client: &Client,
    url: Url,
    token: &str,
    content_type: &str,
    body: String,
) -> Result<(StatusCode, String)> {
    let resp = client
        .post(url.clone())
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(120))
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("POST {url}: body"))?;
    Ok((status, text))
}

/// `POST /api/v1/admin/products` → 201.
pub async fn create_product(
    client: &Client,
    base: &Url,
    token: &str,
    slug: &str,
    price: i64,
    currency: &str,
) -> Result<()> {
    let url = api_url(base, &["api", "v1", "admin", "products"])?;
    let body = json!({
        "slug": slug,
        "title": "Bench",
        "price": price,
        "currency": currency,
        "delivery": "auto",
        "description": "created by kami-bench",
    });
    let (status, text) =
        admin_post(client, url, token, "application/json", body.to_string()).await?;
    if !status.is_success() {
        bail!(
            "creating product {slug} failed: HTTP {status}: {}",
            snippet(&text, 400)
        );
    }
    if status != StatusCode::CREATED {
        eprintln!("warning: POST /api/v1/admin/products returned {status}, the contract says 201");
    }
    Ok(())
}

/// `POST /api/v1/admin/products/{slug}/cards` in chunks; returns (imported, duplicates).
pub async fn import_cards(
    client: &Client,
    base: &Url,
    token: &str,
    slug: &str,
    keys: &[String],
    chunk: usize,
) -> Result<(u64, u64)> {
    let url = api_url(base, &["api", "v1", "admin", "products", slug, "cards"])?;
    let (mut imported, mut duplicates) = (0u64, 0u64);
    for part in keys.chunks(chunk.max(1)) {
        let mut body = part.join("\n");
        body.push('\n');
        let (status, text) = admin_post(client, url.clone(), token, "text/plain", body).await?;
        if !status.is_success() {
            bail!(
                "importing cards failed: HTTP {status}: {}",
                snippet(&text, 400)
            );
        }
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("card import reply is not JSON: {}", snippet(&text, 200)))?;
        imported += v.get("imported").and_then(Value::as_u64).with_context(|| {
            format!(
                "card import reply lacks `imported`: {}",
                snippet(&text, 200)
            )
        })?;
        duplicates += v.get("duplicates").and_then(Value::as_u64).unwrap_or(0);
    }
    Ok((imported, duplicates))
}

/// How one order ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered { cards: Vec<String> },
    OutOfStock,
    Failed { kind: String, message: String },
}

/// Everything the bench saw of one order.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub index: usize,
    pub order_no: Option<String>,
    /// The channel the create answer named (`payment.channel`).
    pub channel: Option<String>,
    /// The pay step succeeded (sandbox: answered `paid`; real protocols: the simulator's
    /// Pay form answered HTTP 200).
    pub paid: bool,
    /// The create request as the buyer saw it, answered with success or an error.
    pub create_us: Option<u64>,
    pub pay_us: Option<u64>,
    pub deliver_us: Option<u64>,
    pub total_us: Option<u64>,
    /// GET polls needed until delivered (or given up).
    pub polls: u32,
    pub outcome: Outcome,
}

impl OrderRecord {
    pub fn delivered_cards(&self) -> Option<&[String]> {
        match &self.outcome {
            Outcome::Delivered { cards } => Some(cards),
            _ => None,
        }
    }
}

/// What every buyer shares.
pub struct BuyerCtx {
    pub client: Client,
    pub base: Url,
    /// What the payment pages' relative URLs (and `weixin://` codes) resolve against: the
    /// server with `--demo`, the standalone simulator otherwise.
    pub pages_base: Url,
    pub slug: String,
    pub quantity: u32,
    pub method: PayMethod,
    pub device: Device,
    pub wait_s: u64,
    pub deliver_timeout: Duration,
    pub request_timeout: Duration,
    pub progress: Progress,
    /// `channel … action …` of the first order created, for the report.
    pub first_payment: std::sync::OnceLock<String>,
}

/// `channel alipay-sim, action qr` from a create answer's `payment`.
pub fn describe_payment(payment: &Value) -> String {
    let get = |k: &str| payment.get(k).and_then(Value::as_str).unwrap_or("?");
    format!("channel {}, action {}", get("channel"), get("action"))
}

/// Live counters for the progress line.
#[derive(Default)]
pub struct Progress {
    pub started: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub out_of_stock: AtomicU64,
    pub shed: AtomicU64,
}

impl Progress {
    fn record(&self, r: &OrderRecord) {
        let c = match r.outcome {
            Outcome::Delivered { .. } => &self.delivered,
            Outcome::OutOfStock => &self.out_of_stock,
            Outcome::Failed { .. } => &self.failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn fail(mut rec: OrderRecord, kind: impl Into<String>, message: impl Into<String>) -> OrderRecord {
    rec.outcome = Outcome::Failed {
        kind: kind.into(),
        message: snippet(&message.into(), 300),
    };
    rec
}

fn transport_kind(step: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{step}_timeout")
    } else if e.is_connect() {
        format!("{step}_connect")
    } else {
        format!("{step}_transport")
    }
}

/// Runs one buyer's order through create → pay → delivered.
pub async fn run_order(ctx: &BuyerCtx, index: usize) -> OrderRecord {
    ctx.progress.started.fetch_add(1, Ordering::Relaxed);
    let rec = run_order_inner(ctx, index).await;
    ctx.progress.record(&rec);
    rec
}

async fn run_order_inner(ctx: &BuyerCtx, index: usize) -> OrderRecord {
    let mut rec = OrderRecord {
        index,
        order_no: None,
        channel: None,
        paid: false,
        create_us: None,
        pay_us: None,
        deliver_us: None,
        total_us: None,
        polls: 0,
        outcome: Outcome::Failed {
            kind: "unfinished".into(),
            message: String::new(),
        },
    };
    let t0 = Instant::now();

    // 1. create
    let create_url = match api_url(&ctx.base, &["api", "v1", "orders"]) {
        Ok(u) => u,
        Err(e) => return fail(rec, "create_url", e.to_string()),
    };
    let body = json!({
        "product": ctx.slug,
        "quantity": ctx.quantity,
        "email": format!("b{index}@bench.test"),
        "method": ctx.method.as_str(),
        "device": ctx.device.as_str(),
    });
    let resp = ctx
        .client
        .post(create_url)
        .header(header::ACCEPT, "application/json")
        // Each order from its own address, as real buyers are (the spawned server trusts
        // 127.0.0.1 as a proxy), so per-client limits and locks are exercised as in a shop.
        .header(
            "x-forwarded-for",
            format!(
                "10.{}.{}.{}",
                (index >> 16) & 255,
                (index >> 8) & 255,
                index & 255
            ),
        )
        .json(&body)
        .timeout(ctx.request_timeout)
        .send()
        .await;
    let (status, text) = match resp {
        Ok(r) => {
            let status = r.status();
            match r.text().await {
                Ok(t) => (status, t),
                Err(e) => return fail(rec, transport_kind("create", &e), e.to_string()),
            }
        }
        Err(e) => return fail(rec, transport_kind("create", &e), e.to_string()),
    };
    if status == StatusCode::CONFLICT && error_code(&text).as_deref() == Some("out_of_stock") {
        rec.create_us = Some(micros(t0.elapsed()));
        rec.outcome = Outcome::OutOfStock;
        return rec;
    }
    if !status.is_success() {
        rec.create_us = Some(micros(t0.elapsed()));
        let kind = match error_code(&text) {
            Some(code) => format!("create_http_{}_{code}", status.as_u16()),
            None => format!("create_http_{}", status.as_u16()),
        };
        return fail(rec, kind, text);
    }
    let created: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fail(rec, "create_bad_json", format!("{e}: {text}")),
    };
    let (Some(order_no), Some(access_token), Some(payment)) = (
        created.get("order_no").and_then(Value::as_str),
        created.get("access_token").and_then(Value::as_str),
        created.get("payment"),
    ) else {
        return fail(
            rec,
            "create_missing_fields",
            format!("need order_no, access_token, payment: {text}"),
        );
    };
    let order_no = order_no.to_string();
    let access_token = access_token.to_string();
    let payment = payment.clone();
    rec.order_no = Some(order_no.clone());
    rec.channel = payment
        .get("channel")
        .and_then(Value::as_str)
        .map(str::to_owned);
    rec.create_us = Some(micros(t0.elapsed()));

    // 2. pay at the simulator.
    let t1 = Instant::now();
    let _ = ctx.first_payment.set(describe_payment(&payment));
    let paid = if ctx.method == PayMethod::Sandbox {
        pay_sandbox(ctx, &payment).await
    } else {
        pay_in_browser(ctx, &payment).await
    };
    if let Err((kind, message)) = paid {
        return fail(rec, kind, message);
    }
    rec.paid = true;
    rec.pay_us = Some(micros(t1.elapsed()));

    // 3. long-poll until delivered.
    let t2 = Instant::now();
    let deadline = t2 + ctx.deliver_timeout;
    let order_url = match api_url(&ctx.base, &["api", "v1", "orders", &order_no]) {
        Ok(u) => u,
        Err(e) => return fail(rec, "deliver_url", e.to_string()),
    };
    let mut backoff = Duration::from_millis(5);
    let mut last = String::from("no answer yet");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return fail(
                rec,
                "deliver_timeout",
                format!(
                    "not delivered after {:?}; last: {last}",
                    ctx.deliver_timeout
                ),
            );
        }
        let wait = ctx.wait_s.min(remaining.as_secs().max(1));
        let mut url = order_url.clone();
        url.query_pairs_mut().append_pair("wait", &wait.to_string());
        rec.polls += 1;
        let poll_start = Instant::now();
        let resp = ctx
            .client
            .get(url)
            .bearer_auth(&access_token)
            .header(header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(wait) + ctx.request_timeout)
            .send()
            .await;
        let (status, text) = match resp {
            Ok(r) => {
                let status = r.status();
                match r.text().await {
                    Ok(t) => (status, t),
                    Err(e) => {
                        last = format!("{}: {e}", transport_kind("deliver", &e));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            Err(e) => {
                last = format!("{}: {e}", transport_kind("deliver", &e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            last = format!("HTTP {status}: {}", snippet(&text, 200));
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if !status.is_success() {
            return fail(rec, format!("deliver_http_{}", status.as_u16()), text);
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return fail(rec, "deliver_bad_json", format!("{e}: {text}")),
        };
        let st = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match st.as_str() {
            "delivered" => {
                let Some(cards) = v.get("cards").and_then(Value::as_array) else {
                    return fail(rec, "deliver_no_cards", text);
                };
                let cards: Vec<String> = cards
                    .iter()
                    .map(|c| match c {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                rec.deliver_us = Some(micros(t2.elapsed()));
                rec.total_us = Some(micros(t0.elapsed()));
                rec.outcome = Outcome::Delivered { cards };
                return rec;
            }
            "pending" | "paid" => {
                last = format!("status {st}");
                // A quick non-final answer means no long-poll (or delivery in progress):
                // back off instead of spinning.
                if poll_start.elapsed() < Duration::from_millis(50) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
            other => {
                return fail(
                    rec,
                    format!(
                        "deliver_status_{}",
                        if other.is_empty() { "missing" } else { other }
                    ),
                    text,
                );
            }
        }
    }
}

type PayError = (String, String);

/// Sends a request and reads the body; (status, final URL after redirects, body).
async fn send_read(
    req: reqwest::RequestBuilder,
    step: &str,
) -> Result<(StatusCode, Url, String), PayError> {
    let r = req
        .send()
        .await
        .map_err(|e| (transport_kind(step, &e), e.to_string()))?;
    let status = r.status();
    let url = r.url().clone();
    let text = r
        .text()
        .await
        .map_err(|e| (transport_kind(step, &e), e.to_string()))?;
    Ok((status, url, text))
}

/// Sandbox: `POST payment.url` with `notify=normal` (JSON answer `{"status":"paid"}`).
async fn pay_sandbox(ctx: &BuyerCtx, payment: &Value) -> Result<(), PayError> {
    let Some(pay_url) = payment.get("url").and_then(Value::as_str) else {
        return Err((
            "pay_no_url".into(),
            format!("sandbox payment without url: {payment}"),
        ));
    };
    // Relative URLs resolve against the server.
    let pay_url = ctx
        .base
        .join(pay_url)
        .map_err(|e| ("pay_bad_url".to_string(), format!("{e}: {pay_url}")))?;
    let (status, _, text) = send_read(
        ctx.client
            .post(pay_url)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("notify=normal")
            .timeout(ctx.request_timeout),
        "pay",
    )
    .await?;
    if !status.is_success() {
        return Err((format!("pay_http_{}", status.as_u16()), text));
    }
    let paid_status = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string));
    if paid_status.as_deref() != Some("paid") {
        return Err(("pay_not_paid".into(), text));
    }
    Ok(())
}

/// A real protocol, like a browser: open the payment page (`payment.url`, or the page
/// behind `payment.qr_code`; redirects followed), then POST its first form with
/// `notify=normal`. Success is HTTP 200; the simulator then notifies kami on its own.
async fn pay_in_browser(ctx: &BuyerCtx, payment: &Value) -> Result<(), PayError> {
    let page = browser::payment_page(
        &ctx.pages_base,
        payment.get("url").and_then(Value::as_str),
        payment.get("qr_code").and_then(Value::as_str),
    )
    .map_err(|e| ("pay_bad_url".to_string(), format!("{e:#}: {payment}")))?;
    let (status, page_url, html) = send_read(
        ctx.client
            .get(page)
            .header(header::ACCEPT, "text/html")
            .timeout(ctx.request_timeout),
        "pay_page",
    )
    .await?;
    if status != StatusCode::OK {
        return Err((format!("pay_page_http_{}", status.as_u16()), html));
    }
    let Some(action) = browser::first_post_form(&page_url, &html) else {
        return Err(("pay_page_no_form".into(), format!("{page_url}: {html}")));
    };
    let (status, _, text) = send_read(
        ctx.client
            .post(action)
            .header(header::ACCEPT, "text/html")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("notify=normal")
            .timeout(ctx.request_timeout),
        "pay",
    )
    .await?;
    if status != StatusCode::OK {
        return Err((format!("pay_http_{}", status.as_u16()), text));
    }
    Ok(())
}

/// Closed loop: `buyers` tasks each run orders back to back until `orders` were started.
pub async fn closed_loop(ctx: Arc<BuyerCtx>, buyers: usize, orders: usize) -> Vec<OrderRecord> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..buyers.max(1) {
        let ctx = ctx.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= orders {
                    break;
                }
                out.push(run_order(&ctx, i).await);
            }
            out
        });
    }
    let mut all = Vec::with_capacity(orders);
    while let Some(res) = set.join_next().await {
        match res {
            Ok(v) => all.extend(v),
            Err(e) => eprintln!("warning: a buyer task failed: {e}"),
        }
    }
    all.sort_by_key(|r| r.index);
    all
}

/// Open loop: one new order every 1/`rate` s for `duration` (at most `arrivals` in all),
/// at most `max_in_flight` at once; arrivals over the cap are shed (counted, not run).
pub async fn open_loop(
    ctx: Arc<BuyerCtx>,
    rate: f64,
    duration: Duration,
    arrivals: usize,
    max_in_flight: usize,
) -> Vec<OrderRecord> {
    let sem = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = tokio::time::Instant::now();
    let end = start + duration;
    let mut set = JoinSet::new();
    let mut all = Vec::new();
    let mut index = 0usize;
    loop {
        if index >= arrivals {
            break;
        }
        let tick = interval.tick().await;
        if tick >= end {
            break;
        }
        match sem.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                let i = index;
                set.spawn(async move {
                    let r = run_order(&ctx, i).await;
                    drop(permit);
                    r
                });
            }
            Err(_) => {
                ctx.progress.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        index += 1;
        while let Some(res) = set.try_join_next() {
            if let Ok(r) = res {
                all.push(r);
            }
        }
    }
    while let Some(res) = set.join_next().await {
        match res {
            Ok(r) => all.push(r),
            Err(e) => eprintln!("warning: an order task failed: {e}"),
        }
    }
    all.sort_by_key(|r| r.index);
    all
}

/// Prints a progress line to stderr every `every` until aborted.
pub fn spawn_progress(ctx: Arc<BuyerCtx>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let p = &ctx.progress;
            let delivered = p.delivered.load(Ordering::Relaxed);
            let failed = p.failed.load(Ordering::Relaxed);
            let oos = p.out_of_stock.load(Ordering::Relaxed);
            let started = p.started.load(Ordering::Relaxed);
            let in_flight = started.saturating_sub(delivered + failed + oos);
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "[{secs:7.1}s] delivered {delivered} ({:.1}/s)  failed {failed}  out_of_stock {oos}  shed {}  in flight {in_flight}",
                delivered as f64 / secs.max(1e-9),
                p.shed.load(Ordering::Relaxed),
            );
        }
    })
}

/// Result of the admin-API cross-check.
#[derive(Debug, Clone)]
pub enum ServerCount {
    /// The endpoint answered 404.
    Unavailable,
    Counted {
        /// Delivered orders server-side that this run created.
        ours: u64,
        /// All delivered orders server-side.
        total: u64,
        pages: u64,
        /// Listed orders whose status was not `delivered` despite the filter.
        wrong_status: u64,
    },
}

/// Pages through `GET /api/v1/admin/orders?status=delivered&limit=500[&before=NO]`.
pub async fn count_server_delivered(
    client: &Client,
    base: &Url,
    token: &str,
    ours: &HashSet<String>,
) -> Result<ServerCount> {
    let list_url = api_url(base, &["api", "v1", "admin", "orders"])?;
    let mut before: Option<String> = None;
    let (mut n_ours, mut total, mut pages, mut wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = HashSet::new();
    loop {
        let mut url = list_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("status", "delivered")
                .append_pair("limit", "500");
            if let Some(b) = &before {
                q.append_pair("before", b);
            }
        }
        let resp = client
            .get(url.clone())
            .bearer_auth(token)
            .header(header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && pages == 0 {
            return Ok(ServerCount::Unavailable);
        }
        let text = resp.text().await.context("admin orders body")?;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}: {}", snippet(&text, 300));
        }
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("admin orders reply is not JSON: {}", snippet(&text, 200)))?;
        let orders = v.get("orders").and_then(Value::as_array).with_context(|| {
            format!("admin orders reply lacks `orders`: {}", snippet(&text, 200))
        })?;
        pages += 1;
        for o in orders {
            let no = match o.get("order_no") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => bail!(
                    "admin order without order_no: {}",
                    snippet(&o.to_string(), 200)
                ),
            };
            if !seen.insert(no.clone()) {
                bail!("admin order list repeated order {no} while paging");
            }
            total += 1;
            if ours.contains(&no) {
                n_ours += 1;
            }
            if o.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| s != "delivered")
            {
                wrong += 1;
            }
        }
        let next = match v.get("next_before") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        match next {
            None => break,
            Some(_) if orders.is_empty() => break,
            Some(n) => {
                if before.as_ref() == Some(&n) {
                    bail!("admin order list paging did not advance (next_before {n})");
                }
                before = Some(n);
            }
        }
    }
    Ok(ServerCount::Counted {
        ours: n_ours,
        total,
        pages,
        wrong_status: wrong,
    })
}

/// Error counts by kind, with the first message seen for each.
pub fn errors_by_kind(records: &[OrderRecord]) -> BTreeMap<String, (u64, String)> {
    let mut out: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for r in records {
        if let Outcome::Failed { kind, message } = &r.outcome {
            let e = out.entry(kind.clone()).or_insert((0, message.clone()));
            e.0 += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls() {
        let base = Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            api_url(&base, &["api", "v1", "orders", "K123"])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8080/api/v1/orders/K123"
        );
        let base = Url::parse("http://127.0.0.1:8080/shop/").expect("url");
        assert_eq!(
            api_url(&base, &["api", "v1", "admin", "products", "a b/c", "cards"])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8080/shop/api/v1/admin/products/a%20b%2Fc/cards"
        );
    }

    #[test]
    fn pay_url_resolution_keeps_query() {
        let base = Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            base.join("/sim/sandbox/pay?order=K1&sig=ab%2B")
                .expect("join")
                .as_str(),
            "http://127.0.0.1:8080/sim/sandbox/pay?order=K1&sig=ab%2B"
        );
        assert_eq!(
            base.join("http://127.0.0.1:9/x?y=1")
                .expect("join")
                .as_str(),
            "http://127.0.0.1:9/x?y=1"
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(r#"{"error":{"code":"out_of_stock","message":"no"}}"#).as_deref(),
            Some("out_of_stock")
        );
        assert_eq!(error_code("not json"), None);
        assert_eq!(error_code(r#"{"error":"x"}"#), None);
    }

    #[test]
    fn snippets() {
        assert_eq!(snippet(" a\nb ", 10), "a b");
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert_eq!(snippet("卡密卡密", 2), "卡密…");
    }

    #[test]
    fn keys_are_unique() {
        let keys = generate_keys("r1", 1000);
        let set: HashSet<_> = keys.iter().collect();
        assert_eq!(set.len(), 1000);
        assert!(keys
            .iter()
            .all(|k| k.starts_with("BENCH-r1-") && !k.contains('\n')));
    }

    #[test]
    fn errors_group_by_kind() {
        let mk = |i, outcome| OrderRecord {
            index: i,
            order_no: None,
            channel: None,
            paid: false,
            create_us: None,
            pay_us: None,
            deliver_us: None,
            total_us: None,
            polls: 0,
            outcome,
        };
        let recs = vec![
            mk(
                0,
                Outcome::Failed {
                    kind: "a".into(),
                    message: "first".into(),
                },
            ),
            mk(1, Outcome::OutOfStock),
            mk(
                2,
                Outcome::Failed {
                    kind: "a".into(),
                    message: "second".into(),
                },
            ),
            mk(
                3,
                Outcome::Failed {
                    kind: "b".into(),
                    message: "x".into(),
                },
            ),
            mk(4, Outcome::Delivered { cards: vec![] }),
        ];
        let e = errors_by_kind(&recs);
        assert_eq!(e.len(), 2);
        assert_eq!(e["a"], (2, "first".to_string()));
        assert_eq!(e["b"], (1, "x".to_string()));
    }
}
