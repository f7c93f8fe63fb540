//! Buyer mail through the outbox, against a real SMTP server: `interop/smtp/sink.py`
//! (aiosmtpd, from the venv `interop/setup-smtp.sh` creates) started on a free port, with a
//! certificate generated here for STARTTLS and implicit TLS. The tests that need the sink are
//! ignored by default; run with `--include-ignored` they fail when the venv is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kami_core::OrderNo;
use kami_server::services::mail::MailStatus;
use kami_server::AppState;
use kami_store::MailState;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use kami_testkit::{both_backends, cards, workspace_root, Backend, TestApp};

const SINK_USER: &str = "kami";
const SINK_PASSWORD: &str = "sink-test-password";
const SHOP: &str = "Kami Test Shop";

/// The sink's Python; a test that needs it fails when the venv is missing.
pub(crate) fn sink_python() -> PathBuf {
    let python = workspace_root().join("target/interop-venv/smtp/bin/python");
    if !python.exists() {
        kami_testkit::require(
            "the SMTP sink",
            "Run bash interop/setup-smtp.sh.",
            format_args!("{} does not exist", python.display()),
        );
    }
    python
}

/// `both_backends!` for a test that also needs the SMTP sink: both variants ignored.
macro_rules! with_sink {
    ($name:ident) => {
        kami_testkit::both_backends!(
            $name,
            ignore = "needs the SMTP sink: bash interop/setup-smtp.sh",
            postgres = "needs the SMTP sink (bash interop/setup-smtp.sh) and PostgreSQL at KAMI_TEST_PG_URL"
        );
    };
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1 / localhost, as PEM files.
pub(crate) struct TestCert {
    dir: tempfile::TempDir,
}

impl TestCert {
    fn generate() -> TestCert {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        TestCert { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkTls {
    None,
    StartTls,
    Tls,
}

/// The SMTP server process; killed when dropped.
pub(crate) struct Sink {
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Sink {
    pub(crate) async fn start(
        python: &Path,
        port: u16,
        tls: SinkTls,
        cert: Option<&TestCert>,
        auth: bool,
    ) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(workspace_root().join("interop/smtp/sink.py"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dir")
            .arg(dir.path());
        if tls != SinkTls::None {
            let cert = cert.unwrap();
            cmd.arg("--tls")
                .arg(if tls == SinkTls::Tls {
                    "tls"
                } else {
                    "starttls"
                })
                .arg("--cert")
                .arg(cert.cert())
                .arg("--key")
                .arg(cert.key());
        }
        if auth {
            cmd.arg("--auth")
                .arg(format!("{SINK_USER}:{SINK_PASSWORD}"));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP sink did not start within 30 s")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("READY"), "SMTP sink failed to start");
        Sink { _child: child, dir }
    }

    /// Every message accepted so far, oldest first.
    pub(crate) fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Wait until at least `n` messages arrived.
    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                started.elapsed() < within,
                "{} of {n} mails arrived within {within:?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `[smtp]` for a sink on `port`.
pub(crate) fn smtp_toml(port: u16, tls: SinkTls, ca: Option<&TestCert>, auth: bool) -> String {
    let mut s = format!(
        "[shop]\nname = \"{SHOP}\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         from = \"{SHOP} <shop@example.com>\"\ntimeout_seconds = 5\nretry_base_seconds = 1\ntls = \"{}\"\n",
        match tls {
            SinkTls::None => "none",
            SinkTls::StartTls => "starttls",
            SinkTls::Tls => "tls",
        }
    );
    if let Some(ca) = ca {
        s.push_str(&format!("ca_file = \"{}\"\n", ca.cert().display()));
    }
    if auth {
        s.push_str(&format!(
            "username = \"{SINK_USER}\"\npassword = \"{SINK_PASSWORD}\"\n"
        ));
    }
    s
}

/// Order `qty` of `slug` in a language, pay it, and return the delivered order as the API
/// shows it (with keys), plus its `access_token`.
async fn buy(app: &TestApp, slug: &str, qty: u32, email: &str, accept_language: &str) -> Value {
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("accept-language", accept_language)
        .json(&json!({"product": slug, "quantity": qty, "email": email, "method": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.unwrap();
    app.pay(&order).await;
    let mut v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), qty as usize);
    v["access_token"] = order["access_token"].clone();
    v
}

fn order_no(v: &Value) -> OrderNo {
    OrderNo::parse(v["order_no"].as_str().unwrap()).unwrap()
}

async fn mail_state(state: &AppState, v: &Value) -> MailState {
    state
        .store
        .mail_state(&order_no(v))
        .await
        .unwrap()
        .expect("a delivered order has a delivery mail")
}

/// Poll the order's mail state until `done` says so (or fail after `within`).
async fn wait_mail_state(
    state: &AppState,
    v: &Value,
    within: Duration,
    what: &str,
    done: impl Fn(&MailState) -> bool,
) -> MailState {
    let started = Instant::now();
    loop {
        let s = mail_state(state, v).await;
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < within,
            "mail of {} not {what} within {within:?}: {s:?}",
            v["order_no"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The buyer's order page (with the order's access token).
async fn order_page(app: &TestApp, order: &Value) -> String {
    let r = app
        .http
        .get(app.url(&format!(
            "/orders/{}?t={}",
            order["order_no"].as_str().unwrap(),
            order["access_token"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn is_sent(s: &MailState) -> bool {
    matches!(s, MailState::Sent { .. })
}

/// The one message to `email`.
fn message_to<'a>(messages: &'a [Value], email: &str) -> &'a Value {
    let mine: Vec<&Value> = messages
        .iter()
        .filter(|m| m["rcpt_tos"] == json!([email]))
        .collect();
    assert_eq!(mine.len(), 1, "mails to {email}: {messages:?}");
    mine[0]
}

/// A delivery mail as the buyer's mail client sees it: multipart text + HTML with every key.
fn check_delivery_mail(m: &Value, order: &Value, email: &str, subject: &str, order_line: &str) {
    let no = order["order_no"].as_str().unwrap();
    assert_eq!(m["mail_from"], "shop@example.com");
    assert_eq!(m["rcpt_tos"], json!([email]));
    assert_eq!(m["to"], email);
    assert_eq!(m["from"], format!("{SHOP} <shop@example.com>"));
    assert_eq!(m["subject"], subject);
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["auto_submitted"], "auto-generated");
    let id = m["message_id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("<{no}.")) && id.ends_with("@example.com>"),
        "{id}"
    );
    let parts = m["parts"].as_array().unwrap();
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let text = parts[0]["body"].as_str().unwrap();
    let html = parts[1]["body"].as_str().unwrap().replace("&#x2f;", "/");
    for body in [text, html.as_str()] {
        for key in cards(order) {
            assert!(body.contains(&key), "key {key} missing from {body}");
        }
        assert!(body.contains(no));
        assert!(body.contains(&format!("/orders/{no}")));
        assert!(body.contains(SHOP));
    }
    assert!(text.contains(order_line), "{text}");
    // Keys never leave through headers.
    let raw = m["raw"].as_str().unwrap();
    let headers = raw.split("\r\n\r\n").next().unwrap();
    for key in cards(order) {
        assert!(!headers.contains(&key));
    }
}

/// A delivered order mails its keys to the buyer, in the order's language, over STARTTLS
/// with a certificate trusted through `ca_file` and SMTP AUTH; exactly one mail per order.
async fn delivery_mail_reaches_the_buyer(backend: Backend) {
    let python = sink_python();
    let cert = TestCert::generate();
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::StartTls, Some(&cert), true).await;
    let app = TestApp::spawn_with(
        backend,
        &smtp_toml(port, SinkTls::StartTls, Some(&cert), true),
    )
    .await;
    app.create_product("mailed", 1230, "auto").await;
    app.import_keys("mailed", 5).await;
    let zh = buy(
        &app,
        "mailed",
        2,
        "zh-buyer@example.com",
        "zh-CN,zh;q=0.9,en;q=0.5",
    )
    .await;
    let en = buy(&app, "mailed", 1, "en-buyer@example.com", "en-US,en;q=0.9").await;

    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let zh_no = zh["order_no"].as_str().unwrap();
    let en_no = en["order_no"].as_str().unwrap();
    let m = message_to(&messages, "zh-buyer@example.com");
    check_delivery_mail(
        m,
        &zh,
        "zh-buyer@example.com",
        &format!("【{SHOP}】您的订单 {zh_no} 已发货"),
        &format!("订单号：{zh_no}"),
    );
    assert!(m["parts"][0]["body"].as_str().unwrap().contains("¥24.60"));
    assert_eq!(m["transport"], "starttls");
    assert_eq!(m["auth_login"], SINK_USER);
    let m = message_to(&messages, "en-buyer@example.com");
    check_delivery_mail(
        m,
        &en,
        "en-buyer@example.com",
        &format!("[{SHOP}] Your order {en_no} has been delivered"),
        &format!("Order number: {en_no}"),
    );
    assert!(m["parts"][0]["body"].as_str().unwrap().contains("¥12.30"));

    for order in [&zh, &en] {
        let s = wait_mail_state(&app.state, order, Duration::from_secs(10), "sent", is_sent).await;
        assert!(matches!(s, MailState::Sent { attempts: 1, .. }), "{s:?}");
        assert!(matches!(
            kami_server::services::mail::status(&app.state, &order_no(order))
                .await
                .unwrap(),
            MailStatus::Known(MailState::Sent { .. })
        ));
        let page = order_page(&app, order).await;
        assert!(page.contains("data-testid=\"mail-sent\""), "{page}");
    }
    // Both rows are done: nothing more is sent.
    assert_eq!(sink.messages().len(), 2);
}
with_sink!(delivery_mail_reaches_the_buyer);

/// A fulfilled manual order mails the seller's content; "resend" mails a delivered order's
/// keys (and a fulfilled order's content) once more, audited; other statuses have no mail.
async fn fulfilment_mail_and_resend(backend: Backend) {
    let python = sink_python();
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::None, None, false).await;
    let app = TestApp::spawn_with(backend, &smtp_toml(port, SinkTls::None, None, false)).await;
    app.create_product("topup", 500, "manual").await;
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("accept-language", "en-US")
        .json(&json!({"product": "topup", "quantity": 1, "email": "manual@example.com", "method": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let manual: Value = r.json().await.unwrap();
    app.pay(&manual).await;
    let settled = app.wait_settled(&manual).await;
    assert_eq!(settled["status"], "awaiting_fulfilment", "{settled}");
    let no = manual["order_no"].as_str().unwrap();
    let content = "Topped up account 42 <ok> & done";
    let (s, v) = app
        .admin_post(
            &format!("/api/v1/admin/orders/{no}/fulfil"),
            json!({ "content": content }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let m = message_to(&messages, "manual@example.com");
    let text = m["parts"][0]["body"].as_str().unwrap();
    assert!(text.contains("From the seller"), "{text}");
    assert!(text.contains(content), "{text}");
    let html = m["parts"][1]["body"].as_str().unwrap();
    assert!(
        html.contains("Topped up account 42 &lt;ok&gt; &amp; done"),
        "{html}"
    );

    app.create_product("keys", 300, "auto").await;
    app.import_keys("keys", 2).await;
    let auto = buy(&app, "keys", 1, "auto@example.com", "en-US").await;
    assert_eq!(auto["status"], "delivered");
    sink.wait_for(2, Duration::from_secs(20)).await;
    let auto_no = auto["order_no"].as_str().unwrap();
    for order_no in [auto_no, no] {
        let (s, v) = app
            .admin_post(
                &format!("/api/v1/admin/orders/{order_no}/resend-mail"),
                json!({}),
            )
            .await;
        assert_eq!((s, v["queued"].as_bool()), (202, Some(true)), "{v}");
    }
    let messages = sink.wait_for(4, Duration::from_secs(20)).await;
    let to_auto: Vec<&Value> = messages
        .iter()
        .filter(|m| m["rcpt_tos"] == json!(["auto@example.com"]))
        .collect();
    assert_eq!(to_auto.len(), 2, "the keys twice: {messages:?}");
    for m in to_auto {
        let body = m["parts"][0]["body"].as_str().unwrap();
        for key in cards(&auto) {
            assert!(body.contains(&key), "{body}");
        }
    }
    let to_manual = messages
        .iter()
        .filter(|m| m["rcpt_tos"] == json!(["manual@example.com"]))
        .count();
    assert_eq!(to_manual, 2);
    let audited = app
        .state
        .store
        .audit_log(kami_store::AuditFilter {
            target: Some(format!("order:{auto_no}")),
            limit: 10,
            ..kami_store::AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].entry.action, "order.resend_mail");

    // A pending order has no mail to send.
    app.create_product("later", 300, "auto").await;
    app.import_keys("later", 1).await;
    let pending = app.order("later", 1).await;
    let (s, v) = app
        .admin_post(
            &format!(
                "/api/v1/admin/orders/{}/resend-mail",
                pending["order_no"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("nothing_to_mail")),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 4, "nothing more was sent");
}
with_sink!(fulfilment_mail_and_resend);

/// The mail server is down when the order is paid: the order is delivered at once all the
/// same, the mail waits in the outbox with its failed tries, and it goes out once the server
/// is back (retry_base_seconds = 1).
async fn mail_server_outage_delays_mail_not_delivery(backend: Backend) {
    let python = sink_python();
    let port = free_port(); // nothing listens here yet
    let app = TestApp::spawn_with(backend, &smtp_toml(port, SinkTls::None, None, false)).await;
    app.create_product("outage", 500, "auto").await;
    app.import_keys("outage", 2).await;
    let started = Instant::now();
    let order = buy(&app, "outage", 1, "patient@example.com", "en").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "delivery waited on the mail server"
    );
    // The buyer has the keys through the API while the mail cannot go out.
    let (s, v) = app
        .read_order(
            order["order_no"].as_str().unwrap(),
            order["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("delivered")));
    assert_eq!(cards(&v), cards(&order));

    let pending = wait_mail_state(
        &app.state,
        &order,
        Duration::from_secs(15),
        "tried",
        |s| matches!(s, MailState::Pending { attempts, last_error: Some(_), .. } if *attempts >= 1),
    )
    .await;
    let MailState::Pending { last_error, .. } = &pending else {
        unreachable!()
    };
    let error = last_error.clone().unwrap();
    assert!(error.to_lowercase().contains("connect"), "{error}");
    assert!(!cards(&order).iter().any(|k| error.contains(k)));
    assert!(matches!(
        kami_server::services::mail::status(&app.state, &order_no(&order))
            .await
            .unwrap(),
        MailStatus::Known(MailState::Pending { .. })
    ));
    let page = order_page(&app, &order).await;
    assert!(page.contains("data-testid=\"mail-pending\""), "{page}");

    // The server comes back on the same port.
    let sink = Sink::start(&python, port, SinkTls::None, None, false).await;
    let messages = sink.wait_for(1, Duration::from_secs(40)).await;
    let no = order["order_no"].as_str().unwrap();
    check_delivery_mail(
        message_to(&messages, "patient@example.com"),
        &order,
        "patient@example.com",
        &format!("[{SHOP}] Your order {no} has been delivered"),
        &format!("Order number: {no}"),
    );
    let sent = wait_mail_state(&app.state, &order, Duration::from_secs(10), "sent", is_sent).await;
    assert!(
        matches!(sent, MailState::Sent { attempts, .. } if attempts >= 2),
        "{sent:?}"
    );
    assert_eq!(sink.messages().len(), 1);
    let page = order_page(&app, &order).await;
    assert!(page.contains("data-testid=\"mail-sent\""), "{page}");
}
with_sink!(mail_server_outage_delays_mail_not_delivery);

/// Without `[smtp]` no mail is attempted: the delivery's outbox row stays unclaimed and the
/// order's mail status says mail is off.
async fn without_smtp_no_mail_is_attempted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert!(app.state.mailer().is_none());
    app.create_product("nomail", 100, "auto").await;
    app.import_keys("nomail", 1).await;
    let order = buy(&app, "nomail", 1, "buyer@example.com", "en").await;
    // Give a (wrongly) running mail worker more than two of its polls to claim the row.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    match mail_state(&app.state, &order).await {
        MailState::Pending {
            attempts: 0,
            last_error: None,
            ..
        } => {}
        other => panic!("the outbox row was touched: {other:?}"),
    }
    assert_eq!(
        kami_server::services::mail::status(&app.state, &order_no(&order))
            .await
            .unwrap(),
        MailStatus::Disabled
    );
    // The order page says so.
    let page = order_page(&app, &order).await;
    assert!(page.contains("data-testid=\"mail-off\""), "{page}");
    // Orders without a delivery have no mail at all.
    app.import_keys("nomail", 1).await;
    let unpaid = app.order("nomail", 1).await;
    assert_eq!(
        kami_server::services::mail::status(&app.state, &order_no(&unpaid))
            .await
            .unwrap(),
        MailStatus::NotApplicable
    );
}
both_backends!(without_smtp_no_mail_is_attempted);

/// Several processes claiming outbox rows at once never claim one twice.
async fn outbox_rows_are_claimed_once_across_processes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("claimed", 100, "auto").await;
    app.import_keys("claimed", 24).await;
    let mut expected = Vec::new();
    for i in 0..24 {
        let order = buy(&app, "claimed", 1, &format!("c{i}@example.com"), "en").await;
        expected.push(order["order_no"].as_str().unwrap().to_owned());
    }
    let at = kami_server::time::now_ms() + 1_000;
    let all = app
        .claim_from_two_processes(12, "an outbox row was claimed", move |s| async move {
            let items = s
                .claim_outbox(&[kami_store::ORDER_DELIVERED], at, at + 600_000, 2)
                .await
                .unwrap();
            items
                .into_iter()
                .map(|item| {
                    assert_eq!(item.attempts, 1, "{item:?}");
                    item.order_no.unwrap().to_string()
                })
                .collect()
        })
        .await;
    expected.sort();
    assert_eq!(all, expected);
    // Leased: nothing is due any more.
    assert!(app
        .state
        .store
        .claim_outbox(&[kami_store::ORDER_DELIVERED], at, at + 600_000, 10)
        .await
        .unwrap()
        .is_empty());
}
both_backends!(outbox_rows_are_claimed_once_across_processes);

/// Two kami processes with mail workers share one database holding a backlog of delivered
/// orders: every order gets exactly one mail, each row claimed once.
async fn two_instances_send_one_mail_per_order(backend: Backend) {
    let python = sink_python();
    // The shop delivers while no process sends mail: a backlog builds up.
    let app = TestApp::spawn(backend).await;
    app.create_product("shared", 100, "auto").await;
    app.import_keys("shared", 16).await;
    let mut orders = Vec::new();
    for i in 0..16 {
        orders.push(buy(&app, "shared", 1, &format!("buyer{i}@example.com"), "en").await);
    }
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::None, None, false).await;
    let smtp = smtp_toml(port, SinkTls::None, None, false);
    let a = app.another_instance(&smtp).await;
    let b = app.another_instance(&smtp).await;

    let messages = sink.wait_for(16, Duration::from_secs(30)).await;
    for (i, order) in orders.iter().enumerate() {
        let state = if i % 2 == 0 { &a.state } else { &b.state };
        let s = wait_mail_state(state, order, Duration::from_secs(10), "sent", is_sent).await;
        assert!(
            matches!(s, MailState::Sent { attempts: 1, .. }),
            "claimed more than once: {s:?}"
        );
        let email = format!("buyer{i}@example.com");
        let m = message_to(&messages, &email);
        let no = order["order_no"].as_str().unwrap();
        check_delivery_mail(
            m,
            order,
            &email,
            &format!("[{SHOP}] Your order {no} has been delivered"),
            &format!("Order number: {no}"),
        );
    }
    assert_eq!(sink.messages().len(), 16);
}
with_sink!(two_instances_send_one_mail_per_order);

/// Implicit TLS ("SMTPS") works with the trusted certificate; without `ca_file` the same
/// self-signed server is refused (no mail leaves over an unverified connection) and the row
/// keeps the TLS error for the seller.
async fn implicit_tls_and_certificate_verification(backend: Backend) {
    let python = sink_python();
    let cert = TestCert::generate();
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::Tls, Some(&cert), true).await;
    let app = TestApp::spawn_with(backend, &smtp_toml(port, SinkTls::Tls, Some(&cert), true)).await;
    app.create_product("smtps", 100, "auto").await;
    app.import_keys("smtps", 1).await;
    let order = buy(&app, "smtps", 1, "tls@example.com", "zh-CN").await;
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let m = message_to(&messages, "tls@example.com");
    assert_eq!(m["transport"], "tls");
    assert_eq!(m["auth_login"], SINK_USER);
    let no = order["order_no"].as_str().unwrap();
    check_delivery_mail(
        m,
        &order,
        "tls@example.com",
        &format!("【{SHOP}】您的订单 {no} 已发货"),
        &format!("订单号：{no}"),
    );

    // The same server, not trusted.
    let untrusting = TestApp::spawn_with(backend, &smtp_toml(port, SinkTls::Tls, None, true)).await;
    untrusting.create_product("smtps", 100, "auto").await;
    untrusting.import_keys("smtps", 1).await;
    let order = buy(&untrusting, "smtps", 1, "tls@example.com", "en").await;
    let s = wait_mail_state(
        &untrusting.state,
        &order,
        Duration::from_secs(15),
        "refused",
        |s| {
            matches!(
                s,
                MailState::Pending {
                    last_error: Some(_),
                    ..
                }
            )
        },
    )
    .await;
    let MailState::Pending {
        last_error: Some(e),
        ..
    } = s
    else {
        unreachable!()
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(!e.contains(SINK_PASSWORD));
    assert_eq!(
        sink.messages().len(),
        1,
        "nothing sent over an unverified connection"
    );
}
with_sink!(implicit_tls_and_certificate_verification);

/// `PATCH /api/v1/admin/settings`.
async fn patch_settings(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .http
        .patch(app.url("/api/v1/admin/settings"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn test_mail(app: &TestApp, to: &str) -> (u16, Value) {
    app.admin_post("/api/v1/admin/settings/test-mail", json!({ "to": to }))
        .await
}

/// Mail set up in the console of a shop whose file has no `[smtp]`: on at once, no restart.
/// The test mail reaches the server, and a delivery made while mail was off is mailed now.
async fn mail_set_up_in_the_console_reaches_the_sink(backend: Backend) {
    let python = sink_python();
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::None, None, false).await;
    let app = TestApp::spawn_with(backend, &format!("[shop]\nname = \"{SHOP}\"\n")).await;
    app.create_product("later", 100, "auto").await;
    app.import_keys("later", 1).await;
    let order = buy(&app, "later", 1, "buyer@example.com", "en").await;
    assert!(order_page(&app, &order)
        .await
        .contains("data-testid=\"mail-off\""));
    let (s, v) = test_mail(&app, "owner@example.com").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("mail_off")),
        "{v}"
    );

    let (s, v) = patch_settings(
        &app,
        json!({"smtp.host": "127.0.0.1", "smtp.port": port, "smtp.tls": "none",
               "smtp.from": format!("{SHOP} <shop@example.com>")}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = test_mail(&app, "owner@example.com").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["message"], format!("accepted by 127.0.0.1:{port} (none)"));

    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let test = message_to(&messages, "owner@example.com");
    assert_eq!(
        test["subject"],
        format!("【{SHOP}】测试邮件"),
        "the shop's language"
    );
    assert_eq!(test["from"], format!("{SHOP} <shop@example.com>"));
    let delivery = message_to(&messages, "buyer@example.com");
    check_delivery_mail(
        delivery,
        &order,
        "buyer@example.com",
        &format!(
            "[{SHOP}] Your order {} has been delivered",
            order["order_no"].as_str().unwrap()
        ),
        "Order number:",
    );
    wait_mail_state(&app.state, &order, Duration::from_secs(10), "sent", is_sent).await;
}
with_sink!(mail_set_up_in_the_console_reaches_the_sink);

/// The console's SMTP values over the file's `[smtp]` (whose `ca_file` stays): the file's
/// wrong port fails with the connection's error; the console's port, login and password get
/// the test mail through STARTTLS with AUTH.
async fn console_login_over_the_files_smtp(backend: Backend) {
    let python = sink_python();
    let cert = TestCert::generate();
    let port = free_port();
    let sink = Sink::start(&python, port, SinkTls::StartTls, Some(&cert), true).await;
    let closed = free_port();
    let app = TestApp::spawn_with(
        backend,
        &smtp_toml(closed, SinkTls::StartTls, Some(&cert), false),
    )
    .await;
    let (s, v) = test_mail(&app, "owner@example.com").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], false);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("127.0.0.1:{closed} (starttls): ")) && msg.contains("refused"),
        "{msg}"
    );

    let (s, v) = patch_settings(
        &app,
        json!({"smtp.port": port, "smtp.username": SINK_USER, "smtp.password": SINK_PASSWORD}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settings"]["smtp.host"]["source"], "config");
    assert_eq!(v["settings"]["smtp.port"]["source"], "console");
    let (s, v) = test_mail(&app, "owner@example.com").await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let m = &sink.wait_for(1, Duration::from_secs(20)).await[0];
    assert_eq!(m["transport"], "starttls");
    assert_eq!(m["auth_login"], SINK_USER);

    // A wrong password: the server's refusal, word for word.
    let (s, _) = patch_settings(&app, json!({"smtp.password": "wrong-password"})).await;
    assert_eq!(s, 200);
    let (s, v) = test_mail(&app, "owner@example.com").await;
    assert_eq!((s, &v["ok"]), (200, &json!(false)), "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("535") || msg.to_lowercase().contains("auth"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-password"), "{msg}");
}
with_sink!(console_login_over_the_files_smtp);
