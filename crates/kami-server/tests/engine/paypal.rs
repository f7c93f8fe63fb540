//! PayPal through its simulator, on both backends: the buyer approves, kami captures (on the
//! return and on the approved webhook, through the payment check), duplicate webhooks deliver
//! once; every checked field of a webhook tampered is refused; a pending capture waits for the
//! completed event; refunds through the capture; an unapproved order expires.

use serde_json::{json, Value};

const PAYPAL_CHANNEL: &str = "paypal-sim";
const PAYPAL_WEBHOOK_ID: &str = "1JE4291016473214C";
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

async fn usd_product(app: &TestApp, slug: &str, price: i64, keys: usize) {
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": slug, "title": format!("Product {slug}"), "price": price,
                   "currency": "USD", "delivery": "auto"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    app.import_keys(slug, keys).await;
}

fn order_no(order: &Value) -> &str {
    order["order_no"].as_str().unwrap()
}

async fn post_webhook(app: &TestApp, headers: &[(&str, String)], body: &str) -> u16 {
    let mut r = app
        .http
        .post(app.url(&format!("/pay/notify/{PAYPAL_CHANNEL}")))
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn purchase_with_duplicate_webhooks_delivers_once(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    usd_product(&app, "pp", 1230, 5).await;
    let order = app.order_via("pp", "paypal", "pc").await;
    assert_eq!(order["payment"]["action"], "redirect", "{order}");
    assert_eq!(order["payment"]["channel"], PAYPAL_CHANNEL);
    assert_eq!(
        (order["amount"].as_i64(), order["currency"].as_str()),
        (Some(1230), Some("USD"))
    );
    // Approve: webhooks twice each; the return asks the channel, which captures.
    let (s, body) = app.pay_in_browser(&order, "duplicate").await;
    // Redirected back through /pay/return to the order page, as a browser is.
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    let id = gw.paypal.order_for_trade(order_no(&order)).unwrap();
    assert_eq!(
        gw.paypal.status(&id),
        Some(("COMPLETED", Some("COMPLETED")))
    );
    // Every webhook (approved ×2, completed ×2) is acknowledged; one delivery.
    for _ in 0..100 {
        if gw.paypal.webhook_stats(&id).delivered.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stats = gw.paypal.webhook_stats(&id);
    assert!(
        stats
            .delivered
            .contains(&"PAYMENT.CAPTURE.COMPLETED".to_owned()),
        "{stats:?}"
    );
    assert!(
        stats
            .delivered
            .contains(&"CHECKOUT.ORDER.APPROVED".to_owned()),
        "{stats:?}"
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(app.stock("pp").await, json!(4));
    // Refunds through the capture: partial, then the rest.
    let (s, r) = app.refund(order_no(&order), json!({"amount": 230})).await;
    assert_eq!(
        (s, r["order_status"].as_str()),
        (200, Some("partially_refunded")),
        "{r}"
    );
    let (s, r) = app.refund(order_no(&order), json!({})).await;
    assert_eq!(
        (s, r["order_status"].as_str(), r["amount"].as_i64()),
        (200, Some("refunded"), Some(1000)),
        "{r}"
    );
    assert_eq!(gw.paypal.refunded_total(&id), 1230);
}
both_backends!(purchase_with_duplicate_webhooks_delivers_once);

/// A capture event for `trade` as PayPal would send it, with the fields given.
fn capture_event(trade: &str, custom_id: &str, value: &str, currency: &str) -> String {
    json!({"id": "WH-TAMPER-1", "event_version": "1.0", "resource_type": "capture",
        "event_type": "PAYMENT.CAPTURE.COMPLETED", "summary": "Payment completed",
        "resource": {"id": "9XK12345AB678901C", "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": value},
            "custom_id": custom_id, "invoice_id": trade,
            "create_time": "2026-11-22T02:00:00Z", "update_time": "2026-11-22T02:00:00Z"}})
    .to_string()
}

/// A webhook delivery's headers.
type Headers = Vec<(&'static str, String)>;

async fn tampered_webhooks_are_refused(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    usd_product(&app, "pt", 1230, 3).await;
    let order = app.order_via("pt", "paypal", "pc").await;
    let trade = order_no(&order).to_owned();
    let other = app.order_via("pt", "paypal", "pc").await;
    let genuine = capture_event(&trade, &trade, "12.30", "USD");
    let cert = gw.paypal.cert_url();
    let sign =
        |body: &str, webhook_id: &str, url: &str| gw.paypal.sign(body.as_bytes(), webhook_id, url);

    let mut cases: Vec<(&str, Headers, String)> = Vec::new();
    // Signature: body changed after signing.
    cases.push((
        "signature",
        sign(&genuine, PAYPAL_WEBHOOK_ID, &cert),
        genuine.replace("12.30", "0.01"),
    ));
    // Signed for another webhook id.
    cases.push((
        "webhook_id",
        sign(&genuine, "WH-SOMEONE-ELSE", &cert),
        genuine.clone(),
    ));
    // The certificate URL on a host that is not PayPal's (kami never fetches it).
    let evil = cert.replace("127.0.0.1", "evil.example");
    cases.push((
        "cert url host",
        sign(&genuine, PAYPAL_WEBHOOK_ID, &evil),
        genuine.clone(),
    ));
    // Genuinely signed by PayPal, but another amount / currency / trade.
    let amount = capture_event(&trade, &trade, "12.29", "USD");
    cases.push(("amount", sign(&amount, PAYPAL_WEBHOOK_ID, &cert), amount));
    let currency = capture_event(&trade, &trade, "12.30", "EUR");
    cases.push((
        "currency",
        sign(&currency, PAYPAL_WEBHOOK_ID, &cert),
        currency,
    ));
    // custom_id names the other order while invoice_id names this one.
    let custom = capture_event(&trade, order_no(&other), "12.30", "USD");
    cases.push(("custom_id", sign(&custom, PAYPAL_WEBHOOK_ID, &cert), custom));
    // Signature header missing.
    let mut h = sign(&genuine, PAYPAL_WEBHOOK_ID, &cert);
    h.retain(|(k, _)| *k != "paypal-transmission-sig");
    cases.push(("no signature", h, genuine.clone()));
    for (what, headers, body) in &cases {
        assert_eq!(post_webhook(&app, headers, body).await, 400, "{what}");
    }
    for o in [&order, &other] {
        let (_, v) = app
            .read_order(order_no(o), o["access_token"].as_str().unwrap(), 0)
            .await;
        assert_eq!(v["status"], "pending", "{v}");
    }
    assert_eq!(app.stock("pt").await, json!(1));
    // The genuine one still delivers.
    assert_eq!(
        post_webhook(&app, &sign(&genuine, PAYPAL_WEBHOOK_ID, &cert), &genuine).await,
        200
    );
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");
}
both_backends!(tampered_webhooks_are_refused);

async fn pending_capture_waits_for_completion(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    usd_product(&app, "pw", 500, 2).await;
    let order = app.order_via("pw", "paypal", "pc").await;
    let (s, body) = app
        .pay_in_browser_with(&order, &[("notify", "normal"), ("capture", "pending")])
        .await;
    assert!(s < 500, "{s}: {body}");
    let id = gw.paypal.order_for_trade(order_no(&order)).unwrap();
    for _ in 0..100 {
        if gw
            .paypal
            .webhook_stats(&id)
            .delivered
            .contains(&"PAYMENT.CAPTURE.PENDING".to_owned())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(gw.paypal.status(&id), Some(("COMPLETED", Some("PENDING"))));
    // Captured but pending: not paid, however long the checks ask.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (_, v) = app
        .read_order(order_no(&order), order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(gw.paypal.complete_pending(&id));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
}
both_backends!(pending_capture_waits_for_completion);

async fn unapproved_order_expires_and_is_never_captured(backend: Backend) {
    let (app, gw) =
        TestApp::spawn_gateways_keeping(backend, "[orders]\nexpire_seconds = 5\n").await;
    usd_product(&app, "px", 500, 2).await;
    let order = app.order_via("px", "paypal", "pc").await;
    let v = app.wait_settled_for(&order, 40).await;
    assert_eq!(v["status"], "expired", "{v}");
    assert_eq!(app.stock("px").await, json!(2));
    let id = gw.paypal.order_for_trade(order_no(&order)).unwrap();
    assert_eq!(gw.paypal.status(&id), Some(("PAYER_ACTION_REQUIRED", None)));
    // A CNY product cannot be sold through PayPal.
    app.create_product("cny", 500, "auto").await;
    app.import_keys("cny", 1).await;
    let (s, v) = app
        .try_order(
            json!({"product": "cny", "quantity": 1, "email": "b@example.com", "method": "paypal"}),
        )
        .await;
    assert!(s >= 400, "{s}: {v}");
}
both_backends!(unapproved_order_expires_and_is_never_captured);
