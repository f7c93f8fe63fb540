//! kami's PayPal channel against the PayPal simulator over HTTP (create, approve, capture by
//! query, pending captures, refunds, signed webhooks verified through a fetched certificate),
//! and the interop cross-check of the webhook message and signature against a Python
//! reference (`interop/paypal/check.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use kami_core::{ChannelId, Currency, Method, Money, TradeNo};
use kami_pay::paypal::{CertPolicy, PaypalChannel, PaypalConfig};
use kami_pay::settings::Secret;
use kami_pay::{
    CreatePayment, Device, NotifyVerdict, PayError, PaymentChannel, RawNotification, RefundRequest,
    TradeState,
};
use kami_sim::paypal::{PaypalSim, PaypalSimConfig};
use support::{interop_python, listen, new_trade_no, serve, workspace_root};

const WEBHOOK_ID: &str = "WH-SIM-0001";

type Inbox = Arc<Mutex<Vec<RawNotification>>>;

async fn record(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> &'static str {
    inbox.lock().unwrap().push(RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    });
    ""
}

struct World {
    sim: Arc<PaypalSim>,
    channel: PaypalChannel,
    inbox: Inbox,
    base: String,
    http: reqwest::Client,
}

async fn world() -> World {
    let (listener, base) = listen().await;
    let sim = PaypalSim::new(PaypalSimConfig {
        client_id: "client-1".into(),
        client_secret: "secret-1".into(),
        webhook_id: WEBHOOK_ID.into(),
        webhook_url: format!("{base}/notify"),
        base_url: base.clone(),
        retry_schedule: support::fast_schedule(3),
        notify_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let inbox = Inbox::default();
    let app = sim.router().merge(
        Router::new()
            .route("/notify", post(record))
            .with_state(inbox.clone()),
    );
    serve(listener, app);
    let channel = PaypalChannel::new(
        PaypalConfig {
            id: ChannelId::parse("paypal-sim").unwrap(),
            methods: vec![Method::Sandbox],
            priority: 1,
            api_base: format!("{base}/sim/paypal"),
            client_id: "client-1".into(),
            client_secret: Secret::new("secret-1"),
            webhook_id: WEBHOOK_ID.into(),
            certs: CertPolicy::custom(&[sim.cert_url_prefix()], sim.ca_pem()).unwrap(),
            currency: kami_core::Currency::Usd,
        },
        reqwest::Client::new(),
    );
    World {
        sim,
        channel,
        inbox,
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::Usd).unwrap()
}

fn request(trade_no: &TradeNo, amount: Money, base: &str) -> CreatePayment {
    CreatePayment {
        trade_no: trade_no.clone(),
        amount,
        subject: "Demo game key".into(),
        method: Method::Sandbox,
        device: Device::Pc,
        notify_url: format!("{base}/notify"),
        return_url: format!("{base}/return?order_no={trade_no}"),
        expires_at_ms: 0,
        user_agent: None,
        client_ip: None,
        payer_openid: None,
    }
}

impl World {
    /// Create an order and approve it on the simulator's page with `capture` as its outcome.
    async fn approved(&self, amount: Money, capture: &str) -> (TradeNo, String) {
        let trade = TradeNo::first(&new_trade_no());
        let (url, order_id) = self
            .channel
            .create_order(&request(&trade, amount, &self.base))
            .await
            .unwrap();
        assert!(url.contains(&format!("token={order_id}")), "{url}");
        // The same trade again (a retried create) names the same order.
        let (_, again) = self
            .channel
            .create_order(&request(&trade, amount, &self.base))
            .await
            .unwrap();
        assert_eq!(again, order_id);
        let r = self
            .http
            .post(&url)
            .form(&[
                ("action", "approve"),
                ("notify", "normal"),
                ("capture", capture),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let back = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            back.starts_with(&format!(
                "{}/return?order_no={trade}&token={order_id}&PayerID=",
                self.base
            )),
            "{back}"
        );
        (trade, order_id)
    }

    /// Every webhook received so far about `trade`, verified by the channel as the server does.
    async fn verdicts(&self, trade: &str) -> Vec<NotifyVerdict> {
        let raws: Vec<RawNotification> = self.inbox.lock().unwrap().clone();
        let mut out = Vec::new();
        for raw in raws {
            self.channel.prepare_notification(&raw).await;
            let v = self.channel.verify_notification(&raw).unwrap();
            let about = match &v {
                NotifyVerdict::Paid(c) => c.trade_no.as_str(),
                NotifyVerdict::NotPaid { trade_no, .. } => trade_no.as_str(),
            };
            if about == trade {
                out.push(v);
            }
        }
        out
    }
}

#[tokio::test]
async fn approve_capture_refund_and_signed_webhooks() {
    let w = world().await;
    let (trade, order_id) = w.approved(usd(1230), "completed").await;
    // Approval moved no money; the query captures, once.
    let paid = match w
        .channel
        .order_state(trade.as_str(), Some(&order_id))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(paid.amount, usd(1230));
    assert_eq!(
        w.sim.status(&order_id),
        Some(("COMPLETED", Some("COMPLETED")))
    );
    match w
        .channel
        .order_state(trade.as_str(), Some(&order_id))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => assert_eq!(c.gateway_trade_no, paid.gateway_trade_no),
        other => panic!("{other:?}"),
    }
    // Webhooks: approved, then the completed capture, each verified through the certificate
    // fetched from the simulator and its run-time CA.
    let mut vs = Vec::new();
    for _ in 0..250 {
        vs = w.verdicts(trade.as_str()).await;
        if vs.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(vs.iter().any(|v| matches!(v, NotifyVerdict::NotPaid { status, .. } if status == "CHECKOUT.ORDER.APPROVED")));
    assert!(vs.iter().any(|v| matches!(v, NotifyVerdict::Paid(c) if c.gateway_trade_no == paid.gateway_trade_no && c.amount == usd(1230))));
    // Partial refund, idempotent per refund number, never beyond the capture.
    let refund = |no: &str, minor: i64| RefundRequest {
        trade_no: trade.to_string(),
        refund_no: no.into(),
        amount: usd(minor),
        total: usd(1230),
        reason: Some("test".into()),
        gateway_ref: Some(order_id.clone()),
        gateway_trade_no: Some(paid.gateway_trade_no.clone()),
    };
    let r = w
        .channel
        .refund_capture(&refund("R1", 230), &paid.gateway_trade_no)
        .await
        .unwrap();
    assert!(r.settled);
    assert_eq!(r.amount, usd(230));
    w.channel
        .refund_capture(&refund("R1", 230), &paid.gateway_trade_no)
        .await
        .unwrap();
    assert_eq!(w.sim.refunded_total(&order_id), 230);
    match w
        .channel
        .refund_capture(&refund("R2", 1001), &paid.gateway_trade_no)
        .await
    {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, "REFUND_AMOUNT_EXCEEDED"),
        other => panic!("{other:?}"),
    }
    w.channel
        .refund_capture(&refund("R3", 1000), &paid.gateway_trade_no)
        .await
        .unwrap();
    assert_eq!(
        w.channel
            .order_state(trade.as_str(), Some(&order_id))
            .await
            .unwrap(),
        TradeState::Refunded
    );
    // The transaction search lists the capture and both refunds.
    let today = time::OffsetDateTime::now_utc()
        .to_offset(kami_pay::bill::BILL_OFFSET)
        .date();
    let bill = w.channel.bill(today).await.unwrap();
    let mine: Vec<_> = bill
        .rows
        .iter()
        .filter(|r| r.trade_no == trade.as_str())
        .collect();
    assert_eq!(mine.len(), 3, "{:?}", bill.rows);
}

#[tokio::test]
async fn pending_captures_wait_and_unapproved_orders_close() {
    let w = world().await;
    let (trade, order_id) = w
        .approved(Money::new(1230, Currency::Jpy).unwrap(), "pending")
        .await;
    assert_eq!(
        w.channel
            .order_state(trade.as_str(), Some(&order_id))
            .await
            .unwrap(),
        TradeState::Waiting
    );
    // At the deadline a pending capture is money on its way: not closed.
    assert!(w
        .channel
        .close_order(trade.as_str(), Some(&order_id))
        .await
        .is_err());
    assert!(w.sim.complete_pending(&order_id));
    match w
        .channel
        .order_state(trade.as_str(), Some(&order_id))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => assert_eq!(c.amount, Money::new(1230, Currency::Jpy).unwrap()),
        other => panic!("{other:?}"),
    }
    // An order the buyer never approved closes (kami will not capture it any more).
    let trade2 = TradeNo::first(&new_trade_no());
    let (_, id2) = w
        .channel
        .create_order(&request(&trade2, usd(100), &w.base))
        .await
        .unwrap();
    assert_eq!(
        w.channel
            .close_order(trade2.as_str(), Some(&id2))
            .await
            .unwrap(),
        TradeState::Closed
    );
    // Declined capture: closed.
    let (trade3, id3) = w.approved(usd(100), "declined").await;
    assert_eq!(
        w.channel
            .order_state(trade3.as_str(), Some(&id3))
            .await
            .unwrap(),
        TradeState::Closed
    );
    // Unknown order; CNY refused before any call.
    assert_eq!(
        w.channel
            .order_state(trade3.as_str(), Some("NOSUCHORDER"))
            .await
            .unwrap(),
        TradeState::NotFound
    );
    let cny = Money::new(100, Currency::Cny).unwrap();
    assert!(matches!(
        w.channel
            .create_order(&request(&trade3, cny, &w.base))
            .await,
        Err(PayError::Unsupported(_))
    ));
}

// ----------------------------------------------------------------------------------------
// Interop (interop/paypal/check.py): Python's zlib + cryptography, both ways.
// ----------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the SDK interop environment: bash interop/setup-paypal.sh"]
async fn interop_with_a_python_reference() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let python = interop_python("paypal", "setup-paypal.sh");
    let script = workspace_root().join("interop/paypal/check.py");
    let w = world().await;
    // A real delivery of the simulator, and messages over bodies with every kind of byte.
    let (trade, order_id) = w.approved(usd(1230), "completed").await;
    w.channel
        .order_state(trade.as_str(), Some(&order_id))
        .await
        .unwrap();
    let mut signed = Vec::new();
    for _ in 0..250 {
        signed = w.inbox.lock().unwrap().clone();
        if !signed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"id":"WH-TEST","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#.to_vec(),
        b"".to_vec(),
        "{\"summary\":\"付款完成 \\u00e9\"}".as_bytes().to_vec(),
        vec![0xff, 0x00, 0x80, b'|'],
    ];
    let cases: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let tid = format!("8f7c2e1a-{i}");
            let t = "2026-11-22T02:00:00Z";
            serde_json::json!({"transmission_id": tid, "transmission_time": t,
                "webhook_id": WEBHOOK_ID, "body_b64": b64.encode(b),
                "message": kami_pay::paypal::sign::expected_message(&tid, t, WEBHOOK_ID, b)})
        })
        .collect();
    // Python's certificate is served under a pinned prefix of its own.
    let (listener, cert_base) = listen().await;
    let cert_url = format!("{cert_base}/v1/notifications/certs/CERT-interop");
    let capture_body = w
        .sim
        .capture_event_body(&order_id, "PAYMENT.CAPTURE.COMPLETED")
        .unwrap();
    let input = serde_json::json!({
        "cases": cases, "webhook_id": WEBHOOK_ID, "cert_url": cert_url,
        "cert_pem": reqwest::get(w.sim.cert_url()).await.unwrap().text().await.unwrap(),
        "signed": signed.iter().map(|r| serde_json::json!({"headers": r.headers, "body_b64": b64.encode(&r.body)})).collect::<Vec<_>>(),
        "bodies": [capture_body],
    });
    let dir = tempfile_dir();
    let (inp, out) = (dir.join("in.json"), dir.join("out.json"));
    std::fs::write(&inp, input.to_string()).unwrap();
    let run = std::process::Command::new(&python)
        .arg(&script)
        .arg(&inp)
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // kami's message strings equal Python's, byte for byte.
    for (c, m) in cases.iter().zip(out["messages"].as_array().unwrap()) {
        assert_eq!(c["message"], *m);
    }
    // Python-signed deliveries: kami fetches Python's certificate, checks it against Python's
    // CA, and accepts the genuine ones only.
    let pem = out["cert_pem"].as_str().unwrap().to_owned();
    serve(
        listener,
        Router::new().route(
            "/v1/notifications/certs/CERT-interop",
            axum::routing::get(move || async move { pem }),
        ),
    );
    let channel = PaypalChannel::new(
        PaypalConfig {
            id: ChannelId::parse("paypal-interop").unwrap(),
            methods: vec![Method::Sandbox],
            priority: 1,
            api_base: format!("{}/sim/paypal", w.base),
            client_id: "client-1".into(),
            client_secret: Secret::new("secret-1"),
            webhook_id: WEBHOOK_ID.into(),
            certs: CertPolicy::custom(
                &[format!("{cert_base}/v1/notifications/certs/")],
                out["ca_pem"].as_str().unwrap(),
            )
            .unwrap(),
            currency: kami_core::Currency::Usd,
        },
        reqwest::Client::new(),
    );
    let deliveries = out["deliveries"].as_array().unwrap();
    assert!(deliveries.len() >= 4);
    for d in deliveries {
        let raw = RawNotification {
            method: "POST".into(),
            query: String::new(),
            headers: d["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_lowercase(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            body: d["body"].as_str().unwrap().as_bytes().to_vec(),
        };
        channel.prepare_notification(&raw).await;
        let verdict = channel.verify_notification(&raw);
        if d["genuine"] == true {
            assert!(
                matches!(verdict, Ok(NotifyVerdict::Paid(_))),
                "{}: {verdict:?}",
                d["what"]
            );
        } else {
            assert!(
                matches!(verdict, Err(PayError::BadSignature)),
                "{}: {verdict:?}",
                d["what"]
            );
        }
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kami-paypal-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
