//! Alerts end to end (issue 11 part 3): signals become one alert per condition and one resolve,
//! delivered to a local webhook sink (signed, verified here with the secret), a fake Telegram
//! API and the SMTP sink; retried after failures, exactly once; the events filter; kami's own
//! evaluators (exception orders, low stock, success rate with its volume guard, silence, the
//! notify lag of late WeChat Pay notifications on a manual clock); stored targets through the
//! API with their secrets sealed and never shown.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use kami_core::ManualClock;
use kami_server::services::alert_checks;
use kami_store::{AlertEvent, AlertSignal};
use serde_json::{json, Value};

use kami_testkit::{both_backends, hex_rand, inspect, seed, Backend, TestApp};

const SECRET: &str = "alert-webhook-secret-5d1c";
const BOT_TOKEN: &str = "424242:AAE-secret-bot-token";
const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

/// One request a sink received, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct SinkState {
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
}

/// An HTTP server on 127.0.0.1:0 that records every request and answers `status` (200 until
/// changed): the webhook receiver and the fake Telegram API.
struct HttpSink {
    url: String,
    state: SinkState,
}

async fn record(
    State(s): State<SinkState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let answered = s.status.load(Ordering::SeqCst);
    s.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        answered,
    });
    (
        StatusCode::from_u16(answered).unwrap(),
        r#"{"ok":true,"result":{}}"#,
    )
}

impl HttpSink {
    async fn start() -> HttpSink {
        let state = SinkState {
            hits: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
        };
        let router = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        HttpSink { url, state }
    }

    fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.answered))
            .collect()
    }

    /// Wait until `n` requests were answered 2xx.
    async fn wait_delivered(&self, n: usize) -> Vec<Hit> {
        let started = Instant::now();
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {n} alerts delivered within 20 s: {:?}",
                d.len(),
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `n` requests were answered 2xx and `app` applied every signal, then
    /// [`QUIET`] longer: no other request may come.
    async fn delivered_exactly(&self, app: &TestApp, n: usize) -> Vec<Hit> {
        let hits = self.wait_delivered(n).await;
        wait_signals_applied(app).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(self.hits().len(), n, "{:?}", self.hits());
        hits
    }
}

/// The delivery list once `n` deliveries are all `delivered`: a sink sees the message before
/// kami has its answer and records it, so the state is polled, not read once.
async fn deliveries_settled(app: &TestApp, n: usize) -> Value {
    let started = Instant::now();
    loop {
        let d = app.admin_get("/api/v1/admin/alerts/deliveries").await;
        let list = d["deliveries"].as_array().cloned().unwrap_or_default();
        if list.len() >= n && list.iter().all(|x| x["state"] == "delivered") {
            return d;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Long enough for the alerts job (every second) to have sent any delivery a signal made.
const QUIET: Duration = Duration::from_millis(2500);

/// `[alerting]` for tests: fast retries, no periodic evaluation (tests call it).
const ALERTING: &str =
    "[alerting]\nretry_base_seconds = 1\nevaluate_seconds = 3600\ntimeout_seconds = 5\n";

fn webhook(url: &str, events: Option<&[&str]>) -> String {
    let mut s =
        format!("[[alerts]]\nkind = \"webhook\"\nurl = \"{url}/hook\"\nsecret = \"{SECRET}\"\n");
    if let Some(e) = events {
        s.push_str(&format!("events = {}\n", json!(e)));
    }
    s
}

/// A configuration alerting the webhook at `url` (the `events` it wants, every event when
/// `None`): `before` (other sections and targets), the webhook, then [`ALERTING`] with the
/// keys `alerting` adds.
fn alerting_toml(url: &str, events: Option<&[&str]>, before: &str, alerting: &str) -> String {
    format!("{before}{}{ALERTING}{alerting}", webhook(url, events))
}

/// A webhook sink and a server alerting it, configured by [`alerting_toml`].
async fn spawn_alerting(
    backend: Backend,
    events: Option<&[&str]>,
    before: &str,
    alerting: &str,
) -> (HttpSink, TestApp) {
    let sink = HttpSink::start().await;
    let extra = alerting_toml(&sink.url, events, before, alerting);
    let app = TestApp::spawn_with(backend, &extra).await;
    (sink, app)
}

fn signal(event: AlertEvent, subject: &str, firing: bool) -> AlertSignal {
    AlertSignal {
        event,
        subject: subject.to_owned(),
        firing,
        details: json!({ "method": "sandbox", "failures": 5 }),
    }
}

async fn emit(app: &TestApp, s: AlertSignal) {
    app.state
        .store
        .emit_alert(s, app.state.now_ms())
        .await
        .unwrap();
}

/// No `alert.signal` row is left unapplied.
async fn wait_signals_applied(app: &TestApp) {
    let started = Instant::now();
    loop {
        let left = inspect::scalar(
            &app.db_url,
            "SELECT COUNT(*) FROM outbox WHERE kind = 'alert.signal' AND done_at IS NULL",
        )
        .await;
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{left} signals unapplied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The webhook's signature, checked with the secret (aws-lc-rs, not kami's helper).
fn assert_signed(hit: &Hit) {
    let header = hit.headers["x-kami-signature"].to_str().unwrap();
    let hex_sig = header.strip_prefix("sha256=").expect("sha256= prefix");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    aws_lc_rs::hmac::verify(&key, &hit.body, &hex::decode(hex_sig).unwrap())
        .expect("the signature is HMAC-SHA256 of the body with the secret");
    let wrong = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"another secret");
    assert!(aws_lc_rs::hmac::verify(&wrong, &hit.body, &hex::decode(hex_sig).unwrap()).is_err());
}

async fn conditions(app: &TestApp) -> Vec<Value> {
    app.admin_get("/api/v1/admin/alerts/conditions").await["conditions"]
        .as_array()
        .unwrap()
        .clone()
}

async fn channel_down_then_recovered_signed_and_once(backend: Backend) {
    let (sink, app) = spawn_alerting(backend, None, "[shop]\nname = \"Alert Shop\"\n", "").await;

    // The same condition signalled five times alerts once.
    for _ in 0..5 {
        emit(
            &app,
            signal(AlertEvent::ChannelDown, "sandbox/sandbox", true),
        )
        .await;
    }
    let hits = sink.delivered_exactly(&app, 1).await;
    let down = &hits[0];
    assert_eq!(down.path, "/hook");
    assert_eq!(down.headers["content-type"], "application/json");
    assert_signed(down);
    let body = down.json();
    assert_eq!(body["event"], "channel_down");
    assert_eq!(body["subject"], "sandbox/sandbox");
    assert_eq!(body["firing"], true);
    assert_eq!(
        body["details"],
        json!({ "method": "sandbox", "failures": 5 })
    );
    assert_eq!(body["shop"], "Alert Shop");
    assert!(body["at"].as_str().unwrap().ends_with('Z'), "{body}");
    let open = conditions(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (&open[0]["event"], &open[0]["subject"]),
        (&json!("channel_down"), &json!("sandbox/sandbox"))
    );

    // Resolved three times: one recovery.
    for _ in 0..3 {
        emit(
            &app,
            signal(AlertEvent::ChannelDown, "sandbox/sandbox", false),
        )
        .await;
    }
    let hits = sink.delivered_exactly(&app, 2).await;
    assert_signed(&hits[1]);
    let body = hits[1].json();
    assert_eq!(body["event"], "channel_recovered");
    assert_eq!(body["firing"], false);
    assert!(conditions(&app).await.is_empty());

    // Resolved again while not firing: nothing. Firing again: a new alert.
    emit(
        &app,
        signal(AlertEvent::ChannelDown, "sandbox/sandbox", false),
    )
    .await;
    emit(
        &app,
        signal(AlertEvent::ChannelDown, "sandbox/sandbox", true),
    )
    .await;
    let hits = sink.wait_delivered(3).await;
    assert_eq!(hits[2].json()["event"], "channel_down");

    let d = deliveries_settled(&app, 3).await;
    let list = d["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{d}");
    assert!(list.iter().all(|x| x["target"] == "config-0"), "{d}");
}
both_backends!(channel_down_then_recovered_signed_and_once);

/// Two processes consuming the same signals (three per condition, ten conditions): each
/// condition alerts exactly once.
async fn two_instances_alert_each_condition_once(backend: Backend) {
    let sink = HttpSink::start().await;
    let extra = alerting_toml(&sink.url, None, "", "");
    let app = TestApp::spawn_with(backend, &extra).await;
    let other = app.another_instance(&extra).await;
    let mut all = Vec::new();
    for round in 0..3 {
        for i in 0..10 {
            all.push(signal(
                AlertEvent::ReconciliationMismatch,
                &format!("batch-{i}"),
                true,
            ));
        }
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let stores = [app.state.store.clone(), other.state.store.clone()];
    let tasks: Vec<_> = all
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                store
                    .emit_alert(s, kami_core::clock::now_ms())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut subjects: Vec<String> = sink
        .delivered_exactly(&app, 10)
        .await
        .iter()
        .map(|h| h.json()["subject"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    let n = subjects.len();
    subjects.dedup();
    assert_eq!((n, subjects.len()), (10, 10), "{subjects:?}");
}
both_backends!(two_instances_alert_each_condition_once);

/// A sink answering 500 gets the alert again later; once it answers 200 the alert is delivered
/// and never sent again. The error is kept meanwhile.
async fn failing_sink_is_retried_until_delivered_once(backend: Backend) {
    let (sink, app) = spawn_alerting(backend, None, "", "").await;
    sink.answer(500);
    emit(&app, signal(AlertEvent::LowStock, "gift-card", true)).await;
    let started = Instant::now();
    while sink.hits().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The failure is on record for the seller.
    let started = Instant::now();
    loop {
        let d = app.admin_get("/api/v1/admin/alerts/deliveries").await;
        let one = &d["deliveries"][0];
        if one["last_error"].is_string() {
            assert_eq!(one["state"], "pending", "{d}");
            assert!(one["last_error"].as_str().unwrap().contains("500"), "{d}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.answer(200);
    let delivered = sink.wait_delivered(1).await;
    assert_signed(&delivered[0]);
    assert_eq!(delivered[0].json()["event"], "low_stock");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(sink.delivered().len(), 1, "{:?}", sink.hits());
    assert!(sink.hits().len() >= 2, "tried again after the 500");
    let d = deliveries_settled(&app, 1).await;
    assert!(d["deliveries"][0]["last_error"].is_null(), "{d}");
}
both_backends!(failing_sink_is_retried_until_delivered_once);

/// Telegram: `POST {api_base}/bot{token}/sendMessage` with the chat and a readable text; only
/// the events the target lists; the token never in an error, a response or the database.
async fn telegram_gets_only_its_events(backend: Backend) {
    let tg = HttpSink::start().await;
    let hook = HttpSink::start().await;
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{BOT_TOKEN}\n")).unwrap();
    let telegram = format!(
        "[shop]\nname = \"Alert Shop\"\ndefault_locale = \"en\"\n\
         [[alerts]]\nkind = \"telegram\"\nbot_token_file = \"{}\"\nchat_id = -1001234\n\
         api_base = \"{}\"\nevents = [\"exception_order\"]\n",
        token_file.path().display(),
        tg.url,
    );
    let extra = alerting_toml(&hook.url, Some(&["channel_down"]), &telegram, "");
    let app = TestApp::spawn_with(backend, &extra).await;
    emit(&app, signal(AlertEvent::ChannelDown, "ali/alipay", true)).await;
    emit(
        &app,
        signal(AlertEvent::ExceptionOrder, "K2026-ORDER", true),
    )
    .await;
    // Telegram takes exception_order only, the webhook channel_down only.
    let tg_hits = tg.delivered_exactly(&app, 1).await;
    let hook_hits = hook.wait_delivered(1).await;
    assert_eq!(hook.hits().len(), 1, "{:?}", hook.hits());
    assert_eq!(hook_hits[0].json()["event"], "channel_down");
    assert_eq!(tg_hits[0].path, format!("/bot{BOT_TOKEN}/sendMessage"));
    let m = tg_hits[0].json();
    assert_eq!(m["chat_id"], "-1001234");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("Order needs attention") && text.contains("K2026-ORDER"),
        "{text}"
    );

    // The configuration's targets are listed read-only, without secrets.
    let list = app.admin_get("/api/v1/admin/alerts/targets").await;
    let text = list.to_string();
    assert!(
        !text.contains(BOT_TOKEN) && !text.contains(SECRET),
        "{text}"
    );
    assert_eq!(list["targets"][0]["id"], "config-0");
    assert_eq!(list["targets"][0]["read_only"], true);
    assert_eq!(list["targets"][0]["secret_set"], true);
    let (s, v) = app
        .admin_post("/api/v1/admin/alerts/targets/config-0/test", json!({}))
        .await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    assert_eq!(tg.hits().len(), 2);
    let test_text = tg.hits()[1].json()["text"].as_str().unwrap().to_owned();
    assert!(test_text.contains("Test alert"), "{test_text}");
    let (s, v) = app
        .admin_patch(
            "/api/v1/admin/alerts/targets/config-0",
            json!({"chat_id": "1"}),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (409, &json!("alert_target_read_only"))
    );

    // A stored Telegram target whose API cannot be reached: the error says so, without the token.
    let closed = format!("http://127.0.0.1:{}", crate::mail::free_port());
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/alerts/targets",
            json!({"name": "tg-down", "kind": "telegram", "bot_token": BOT_TOKEN,
                   "chat_id": "7", "api_base": closed}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(BOT_TOKEN));
    let (s, v) = app
        .admin_post("/api/v1/admin/alerts/targets/tg-down/test", json!({}))
        .await;
    assert_eq!((s, &v["ok"]), (200, &json!(false)), "{v}");
    assert!(!v.to_string().contains(BOT_TOKEN), "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with("telegram:"),
        "{v}"
    );
    assert_eq!(secret_in_db(&app, BOT_TOKEN).await, 0);
}
both_backends!(telegram_gets_only_its_events);

/// Stored targets whose secret column holds `text` as plain bytes.
async fn secret_in_db(app: &TestApp, text: &str) -> i64 {
    let sql = match app.backend {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) FROM alert_targets WHERE instr(secret, CAST('{text}' AS BLOB)) > 0 \
             OR instr(settings, '{text}') > 0"
        ),
        Backend::Postgres => format!(
            "SELECT COUNT(*) FROM alert_targets WHERE position(convert_to('{text}', 'UTF8') in secret) > 0 \
             OR position('{text}' in settings) > 0"
        ),
    };
    inspect::scalar(&app.db_url, &sql).await
}

/// Stored targets through the API: refusals name the key, the secret is sealed, never shown,
/// kept when an edit leaves it out, and audited only as "stored"; a stored webhook gets alerts.
async fn stored_targets_through_the_api(backend: Backend) {
    let sink = HttpSink::start().await;
    let app = TestApp::spawn_with(backend, ALERTING).await;
    let post = |body: Value| {
        let app = &app;
        async move { app.admin_post("/api/v1/admin/alerts/targets", body).await }
    };
    let url = format!("{}/hook", sink.url);
    for (body, code, needle) in [
        (
            json!({"kind": "webhook", "url": url, "secret": SECRET}),
            "invalid_alert_target",
            "`name`",
        ),
        (
            json!({"name": "Bad Name", "kind": "webhook", "url": url, "secret": SECRET}),
            "invalid_alert_target",
            "`name`",
        ),
        (
            json!({"name": "config-9", "kind": "webhook", "url": url, "secret": SECRET}),
            "invalid_alert_target",
            "config-",
        ),
        (
            json!({"name": "ops", "kind": "pager", "url": url}),
            "invalid_alert_target",
            "`kind`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url}),
            "invalid_alert_target",
            "`secret`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": "ftp://x", "secret": SECRET}),
            "invalid_alert_target",
            "`url`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url, "secret": SECRET, "events": ["nope"]}),
            "invalid_alert_target",
            "`events`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url, "secret": SECRET, "events": []}),
            "invalid_alert_target",
            "`events`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url, "secret": SECRET, "chat_id": "1"}),
            "invalid_alert_target",
            "`chat_id`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url, "secret": 5}),
            "invalid_alert_target",
            "`secret`",
        ),
        (
            json!({"name": "ops", "kind": "webhook", "url": url, "secret": SECRET, "colour": "red"}),
            "invalid_alert_target",
            "`colour`",
        ),
        (
            json!({"name": "ops", "kind": "email", "to": ["not an address"]}),
            "invalid_alert_target",
            "`to`",
        ),
        (
            json!({"name": "ops", "kind": "telegram", "bot_token": "x y", "chat_id": "1"}),
            "invalid_alert_target",
            "`bot_token`",
        ),
    ] {
        let (s, v) = post(body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}: {v}"
        );
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{body}: {m}");
        assert!(!m.contains(SECRET), "{m}");
    }
    assert!(
        app.admin_get("/api/v1/admin/alerts/targets").await["targets"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (s, v) = post(
        json!({"name": "ops", "kind": "webhook", "url": url, "secret": SECRET,
                              "events": ["low_stock"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["secret_set"], true);
    assert_eq!(v["source"], "stored");
    assert!(!v.to_string().contains(SECRET));
    let (s, v) = post(json!({"name": "ops", "kind": "webhook", "url": url, "secret": "x"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("alert_target_exists"))
    );
    assert_eq!(secret_in_db(&app, SECRET).await, 0, "sealed at rest");

    // An edit that leaves the secret out keeps it: the alert is still signed with it.
    let patch = |body: Value| app.admin_patch("/api/v1/admin/alerts/targets/ops", body);
    let (s, v) = patch(json!({"events": ["low_stock", "exception_order"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["events"], json!(["low_stock", "exception_order"]));
    assert_eq!(v["secret_set"], true);
    assert_eq!(patch(json!({"kind": "email"})).await.0, 422);
    let (s, _) = app
        .admin_patch(
            "/api/v1/admin/alerts/targets/nobody",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(s, 404);

    emit(&app, signal(AlertEvent::ChannelDown, "x/y", true)).await; // not its event
    emit(&app, signal(AlertEvent::ExceptionOrder, "K1", true)).await;
    let hits = sink.delivered_exactly(&app, 1).await;
    assert_signed(&hits[0]);
    assert_eq!(hits[0].json()["event"], "exception_order");

    // Audited, the secret only as "stored".
    let audit = app.admin_get("/api/v1/admin/audit").await.to_string();
    assert!(
        audit.contains("alert_target.create") && audit.contains("alert_target.update"),
        "{audit}"
    );
    assert!(!audit.contains(SECRET), "{audit}");

    let delete = || app.admin_delete("/api/v1/admin/alerts/targets/ops");
    assert_eq!(delete().await.0, 200);
    let (s, v) = delete().await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (404, &json!("alert_target_not_found"))
    );
    assert!(app
        .admin_get("/api/v1/admin/audit")
        .await
        .to_string()
        .contains("alert_target.delete"));
    // Without a token: refused.
    let r = app
        .http
        .get(app.url("/api/v1/admin/alerts/targets"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(stored_targets_through_the_api);

/// An order that expired, lost its keys and was then paid: `exception`.
async fn exception_order(app: &TestApp, slug: &str) -> Value {
    app.stocked_product(slug, 700, 1).await;
    let late = app.order(slug, 1).await;
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let _other = app.order(slug, 1).await;
    let no = late["order_no"].as_str().unwrap();
    let (s, body) = app
        .send_notification(&app.notification(no, "7.00", "CNY", &format!("SBX{}", hex_rand())))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    let v = app.wait_settled(&late).await;
    assert_eq!(v["status"], "exception", "{v}");
    late
}

/// Evaluate once, let the consumer apply what it found, and return the open conditions.
async fn evaluate(app: &TestApp) -> Vec<Value> {
    alert_checks::evaluate_once(&app.state).await.unwrap();
    wait_signals_applied(app).await;
    conditions(app).await
}

/// Product `slug` at 1.00 with `keys` keys, for [`seed::orders`]: its id.
async fn seeded_product(app: &TestApp, slug: &str, keys: usize) -> i64 {
    app.stocked_product(slug, 100, keys).await;
    let sql = format!("SELECT id FROM products WHERE slug = '{slug}'");
    inspect::scalar(&app.db_url, &sql).await
}

fn has(open: &[Value], event: &str, subject: &str) -> bool {
    open.iter()
        .any(|c| c["event"] == event && c["subject"] == subject)
}

async fn exception_orders_and_low_stock_fire_and_resolve(backend: Backend) {
    let (sink, app) = spawn_alerting(
        backend,
        Some(&["exception_order", "low_stock"]),
        "[console]\nlow_stock_threshold = 3\n",
        "",
    )
    .await;
    let late = exception_order(&app, "exc").await;
    let no = late["order_no"].as_str().unwrap();
    let open = evaluate(&app).await;
    assert!(has(&open, "exception_order", no), "{open:?}");
    assert!(has(&open, "low_stock", "exc"), "no key left: {open:?}");
    let hits = sink.wait_delivered(2).await;
    let mut events: Vec<String> = hits
        .iter()
        .map(|h| h.json()["event"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(events, ["exception_order", "low_stock"]);
    let exc = hits
        .iter()
        .find(|h| h.json()["event"] == "exception_order")
        .unwrap()
        .json();
    assert_eq!(exc["subject"], no);
    assert_eq!(exc["details"]["order_no"], no);

    // Evaluating again changes nothing.
    evaluate(&app).await;
    sink.delivered_exactly(&app, 2).await;

    // Restocked and the exception delivered from stock: both resolve.
    app.import_keys("exc", 5).await;
    let (s, v) = app
        .admin_post(&format!("/api/v1/admin/orders/{no}/deliver"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let open = evaluate(&app).await;
    assert!(
        !has(&open, "exception_order", no) && !has(&open, "low_stock", "exc"),
        "{open:?}"
    );
    let hits = sink.wait_delivered(4).await;
    let mut events: Vec<String> = hits[2..]
        .iter()
        .map(|h| h.json()["event"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(events, ["exception_order_resolved", "low_stock_resolved"]);
}
both_backends!(exception_orders_and_low_stock_fire_and_resolve);

/// Success rate: a baseline of two in three paid, then an hour of unpaid orders: judged only
/// from `min_orders` orders on.
async fn success_rate_low_needs_the_volume(backend: Backend) {
    let (sink, app) = spawn_alerting(
        backend,
        Some(&["success_rate_low"]),
        "",
        "min_orders = 10\n",
    )
    .await;
    let pid = seeded_product(&app, "rate", 40).await;
    // 300 orders over the ~2 hours before the last hour, two in three paid.
    seed::orders(&app.db_url, pid, 300, app.state.now_ms() - 3_660_000).await;
    for _ in 0..5 {
        app.order("rate", 1).await;
    }
    let open = evaluate(&app).await;
    assert!(
        !has(&open, "success_rate_low", "sandbox"),
        "5 orders are too few: {open:?}"
    );
    for _ in 0..7 {
        app.order("rate", 1).await;
    }
    let open = evaluate(&app).await;
    assert!(
        has(&open, "success_rate_low", "sandbox"),
        "12 unpaid of 12: {open:?}"
    );
    let hits = sink.wait_delivered(1).await;
    let body = hits[0].json();
    assert_eq!(body["event"], "success_rate_low");
    assert_eq!(body["details"]["created_last_hour"], 12);
    assert_eq!(body["details"]["paid_last_hour"], 0);
}
both_backends!(success_rate_low_needs_the_volume);

/// Email: through the SMTP sink, in the shop's language.
async fn email_alert_reaches_the_mailbox(backend: Backend) {
    use crate::mail::{free_port, sink_python, smtp_toml, Sink, SinkTls};
    let python = sink_python();
    let port = free_port();
    let mailbox = Sink::start(&python, port, SinkTls::None, None, false).await;
    let extra = format!(
        "{}[[alerts]]\nkind = \"email\"\nto = \"ops@example.com\"\nevents = [\"low_stock\"]\n{ALERTING}",
        smtp_toml(port, SinkTls::None, None, false)
    );
    let app = TestApp::spawn_with(backend, &extra).await;
    emit(&app, signal(AlertEvent::LowStock, "gift-card", true)).await;
    let m = mailbox.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(m[0]["rcpt_tos"], json!(["ops@example.com"]));
    let subject = m[0]["subject"].as_str().unwrap();
    assert!(
        subject.contains("库存不足") && subject.contains("gift-card"),
        "{subject}"
    );
    let d = deliveries_settled(&app, 1).await;
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 1, "{d}");
}
kami_testkit::both_backends!(
    email_alert_reaches_the_mailbox,
    ignore = "needs the SMTP sink: bash interop/setup-smtp.sh",
    postgres =
        "needs the SMTP sink (bash interop/setup-smtp.sh) and PostgreSQL at KAMI_TEST_PG_URL"
);

/// Silence: a channel that paid ~29 orders a day over the week, none for two hours, fires once
/// the time for `silent_expected_orders` has passed; a payment resolves it.
async fn silent_channel_fires_and_a_payment_resolves_it(backend: Backend) {
    let (sink, app) = spawn_alerting(
        backend,
        Some(&["silent_channel"]),
        "",
        "silent_expected_orders = 1\n",
    )
    .await;
    let pid = seeded_product(&app, "quiet", 2).await;
    // 200 paid over the ~2 hours that ended 2 hours ago: 10 expected take ~8 hours, 1 ~50 min.
    seed::orders(&app.db_url, pid, 300, app.state.now_ms() - 2 * 3_600_000).await;
    let open = evaluate(&app).await;
    assert!(has(&open, "silent_channel", "sandbox"), "{open:?}");
    let hits = sink.wait_delivered(1).await;
    let body = hits[0].json();
    assert_eq!(body["event"], "silent_channel");
    assert_eq!(body["details"]["paid_last_7_days"], 200);

    let order = app.order("quiet", 1).await;
    app.pay(&order).await;
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");
    let open = evaluate(&app).await;
    assert!(!has(&open, "silent_channel", "sandbox"), "{open:?}");
    let hits = sink.wait_delivered(2).await;
    assert_eq!(hits[1].json()["event"], "silent_channel_resolved");
}
both_backends!(silent_channel_fires_and_a_payment_resolves_it);

/// Pay `n` orders of `slug` on WeChat Pay (`wechat-sim`) with the scan page's `notify`
/// control.
async fn pay_on_wechat(app: &TestApp, slug: &str, n: usize, notify: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    for _ in 0..n {
        let order = app.order_via(slug, "wxpay", "pc").await;
        assert_eq!(order["payment"]["channel"], "wechat-sim", "{order}");
        let (s, body) = app.pay_in_browser(&order, notify).await;
        assert_eq!(s, 200, "{body}");
        orders.push(order);
    }
    orders
}

async fn assert_delivered(app: &TestApp, orders: &[Value]) {
    for order in orders {
        let v = app.wait_settled(order).await;
        assert_eq!(v["status"], "delivered", "{v}");
    }
}

/// Notify lag: on a manual clock shared with the WeChat Pay simulator, three notifications
/// are held at the gateway while five minutes pass, so each arrives 300 s after its
/// `success_time`; the median over the last 30 minutes is above `notify_lag_seconds` and the
/// channel alerts once (signed); evaluating again sends nothing; four notifications arriving
/// at once bring the median back to 0 and it resolves once.
async fn late_notifications_fire_notify_lag_once_and_resolve(backend: Backend) {
    const LAG_S: i64 = 300;
    let sink = HttpSink::start().await;
    let extra = alerting_toml(
        &sink.url,
        Some(&["notify_lag"]),
        "",
        "notify_lag_seconds = 60\n",
    );
    // 2026-12-01T04:00:00Z, a whole second: the gateway's pay times are in seconds.
    let clock = Arc::new(ManualClock::new(1_796_097_600_000));
    let (app, sims) = TestApp::spawn_with_sims(backend, &extra, clock.clone()).await;
    let wechat = &sims.gateways.wechatpay;
    app.stocked_product("lag", 300, 20).await;

    let late = pay_on_wechat(&app, "lag", 3, "hold").await;
    // The payment checks that come due meanwhile must not find them first.
    wechat.fail_queries(true);
    clock.advance(LAG_S * 1000);
    assert_eq!(wechat.release_held(), 3);
    assert_delivered(&app, &late).await;
    wechat.fail_queries(false);
    let late_notified = format!(
        "SELECT COUNT(*) FROM payments WHERE channel_id = 'wechat-sim' \
         AND found_by = 'notify' AND paid_at - gateway_paid_at = {}",
        LAG_S * 1000
    );
    assert_eq!(inspect::scalar(&app.db_url, &late_notified).await, 3);

    let open = evaluate(&app).await;
    assert!(has(&open, "notify_lag", "wechat-sim"), "{open:?}");
    let hits = sink.wait_delivered(1).await;
    assert_signed(&hits[0]);
    let body = hits[0].json();
    assert_eq!(
        (&body["event"], &body["subject"], &body["firing"]),
        (&json!("notify_lag"), &json!("wechat-sim"), &json!(true)),
        "{body}"
    );
    let d = &body["details"];
    assert_eq!(d["median_lag_seconds"], LAG_S, "{body}");
    assert_eq!(d["threshold_seconds"], 60, "{body}");
    assert_eq!(
        (d["late_payments"].as_i64(), d["notified_payments"].as_i64()),
        (Some(3), Some(3)),
        "{body}"
    );

    // Evaluating again finds the same: no signal, nothing sent.
    assert_eq!(alert_checks::evaluate_once(&app.state).await.unwrap(), 0);
    sink.delivered_exactly(&app, 1).await;

    // Four notifications on time (the clock stands still): 4 of 7 at 0 s, the median is 0.
    let prompt = pay_on_wechat(&app, "lag", 4, "normal").await;
    assert_delivered(&app, &prompt).await;
    let open = evaluate(&app).await;
    assert!(!has(&open, "notify_lag", "wechat-sim"), "{open:?}");
    let hits = sink.wait_delivered(2).await;
    assert_signed(&hits[1]);
    let body = hits[1].json();
    assert_eq!(
        (&body["event"], &body["subject"], &body["firing"]),
        (
            &json!("notify_lag_resolved"),
            &json!("wechat-sim"),
            &json!(false)
        ),
        "{body}"
    );
    assert_eq!(alert_checks::evaluate_once(&app.state).await.unwrap(), 0);
    sink.delivered_exactly(&app, 2).await;
    let deliveries = app.admin_get("/api/v1/admin/alerts/deliveries").await;
    let list = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 2, "one alert, one resolve: {deliveries}");
}
both_backends!(late_notifications_fire_notify_lag_once_and_resolve);
