//! USDT through its gateways (issue 12 part 2), on both backends: epusdt (`usdt-sim`) and
//! TokenPay (a stored `tokenpay` channel added through the admin API, as the console does).
//! A purchase whose notification arrives twice is delivered once; every checked field of a
//! signed notification tampered is refused; an underpayment (a gateway that reports a smaller
//! coin amount than its create asked for) is never delivered; status-1 updates (BEpusdt's
//! roll) and status 3 (expired) are acknowledged and ignored; the coin amount is kept on the
//! payment.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use kami_testkit::kami_sim::gateways::{Gateways, TOKENPAY_CURRENCY};
use kami_testkit::{both_backends, Backend, TestApp};

async fn outcomes(app: &TestApp, no: &str) -> Vec<String> {
    app.admin_order(no).await["payment_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn wait_for_outcome(app: &TestApp, no: &str, outcome: &str) {
    let started = Instant::now();
    while !outcomes(app, no).await.iter().any(|o| o == outcome) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {outcome} event for {no}: {:?}",
            outcomes(app, no).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(app: &TestApp, order: &Value) -> String {
    let (s, v) = app
        .read_order(
            order["order_no"].as_str().unwrap(),
            order["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["status"].as_str().unwrap().to_owned()
}

async fn notify(app: &TestApp, channel: &str, body: &str) -> (u16, String) {
    let r = app
        .http
        .post(app.url(&format!("/pay/notify/{channel}")))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Re-sign a tampered epusdt notification with the right token: what is left to refuse it
/// is the binding (order, amount, coin amount), not the signature.
fn resigned(body: &Value, token: &str) -> String {
    let mut m = body.as_object().unwrap().clone();
    m.remove("signature");
    let signed = kami_pay::epusdt::signed(m, token, kami_pay::epusdt::Flavor::Epusdt);
    Value::Object(signed).to_string()
}

async fn epusdt_purchase_with_duplicates_is_delivered_once(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("u", 2880, "auto").await;
    app.import_keys("u", 3).await;
    let order = app.order_via("u", "usdt", "pc").await;
    assert_eq!(order["payment"]["channel"], "usdt-sim", "{order}");
    assert_eq!(order["payment"]["action"], "redirect", "{order}");
    let url = order["payment"]["url"].as_str().unwrap();
    assert!(url.contains("/sim/epusdt/pay/checkout-counter/"), "{url}");
    let no = order["order_no"].as_str().unwrap();
    // 28.80 CNY at 7.00 per USDT.
    assert_eq!(gw.epusdt.coin_amount(no).as_deref(), Some("4.1143"));
    let (s, body) = app.pay_in_browser(&order, "duplicate").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    // A resend of the same notification changes nothing.
    assert!(gw.epusdt.send_status(no, 2));
    wait_for_outcome(&app, no, "duplicate").await;
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(app.admin_orders("delivered").await.len(), 1);
    // Both amounts are on the payment.
    let payments = app
        .state
        .store
        .order_payments(&kami_core::OrderNo::parse(no).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payments[0].coin_amount.as_deref(), Some("4.1143 USDT"));
    assert_eq!(payments[0].amount.minor(), 2880);
    let stats = gw.epusdt.notify_stats(no).unwrap();
    assert!(stats.delivered, "{stats:?}");
}
both_backends!(epusdt_purchase_with_duplicates_is_delivered_once);

async fn epusdt_tampering_and_underpayment_are_refused(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    let token = gw.merchant_keys().unwrap().epusdt_token;
    app.create_product("u", 2880, "auto").await;
    app.import_keys("u", 3).await;
    let order = app.order_via("u", "usdt", "pc").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let trade_id = gw.epusdt.trade_id(&no).unwrap();
    // The buyer pays the right amount, but the notification is dropped: tamper with it.
    gw.epusdt
        .pay(
            &no,
            kami_testkit::kami_sim::epusdt::PayOptions {
                notify: kami_testkit::kami_sim::epusdt::NotifyMode::Drop,
                ..Default::default()
            },
        )
        .unwrap();
    let (_, good) = gw.epusdt.notification(&trade_id, 2).unwrap();
    let good: Value = serde_json::from_str(&good).unwrap();
    // A wrong byte anywhere breaks the signature.
    for (k, v) in [
        ("signature", json!("0".repeat(32))),
        ("order_id", json!("K00000000000000000000000000")),
        ("amount", json!(28.79)),
        ("actual_amount", json!(4.1142)),
        ("status", json!(1)),
        ("trade_id", json!("1")),
    ] {
        let mut b = good.clone();
        b[k] = v;
        let (s, body) = notify(&app, "usdt-sim", &b.to_string()).await;
        assert_eq!(s, 500, "{k}: {body}");
        assert_ne!(body, "ok");
    }
    // Signed, but another fiat amount or a smaller coin amount: never delivered.
    for (k, v) in [("amount", json!(28.79)), ("actual_amount", json!(4.1142))] {
        let mut b = good.clone();
        b[k] = v;
        let (s, body) = notify(&app, "usdt-sim", &resigned(&b, &token)).await;
        assert_eq!(s, 500, "{k}: {body}");
    }
    // Signed for another order: unknown.
    let mut b = good.clone();
    b["order_id"] = json!("K00000000000000000000000000");
    let (s, _) = notify(&app, "usdt-sim", &resigned(&b, &token)).await;
    assert_eq!(s, 500);
    // Status 1 (BEpusdt's roll) and 3 (expired): acknowledged, ignored.
    for st in [1, 3] {
        let mut b = good.clone();
        b["status"] = json!(st);
        let (s, body) = notify(&app, "usdt-sim", &resigned(&b, &token)).await;
        assert_eq!((s, body.as_str()), (200, "ok"), "status {st}");
    }
    assert_eq!(status_of(&app, &order).await, "pending");
    assert_eq!(app.admin_orders("delivered").await.len(), 0);
    let events = outcomes(&app, &no).await;
    assert!(
        events.iter().filter(|o| *o == "amount_mismatch").count() >= 2,
        "{events:?}"
    );
    assert!(events.iter().any(|o| o == "not_paid"), "{events:?}");
    // The genuine notification pays, exactly once.
    let (s, body) = notify(&app, "usdt-sim", &good.to_string()).await;
    assert_eq!((s, body.as_str()), (200, "ok"));
    let (s, body) = notify(&app, "usdt-sim", &good.to_string()).await;
    assert_eq!((s, body.as_str()), (200, "ok"));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");

    // A lenient gateway that notifies "paid" for an underpayment: never delivered.
    let order = app.order_via("u", "usdt", "mobile").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let (s, body) = app.pay_in_browser_with(&order, &[("coin", "4.1")]).await;
    assert_eq!(s, 200, "{body}");
    wait_for_outcome(&app, &no, "amount_mismatch").await;
    assert_eq!(status_of(&app, &order).await, "pending");
    // Signed status-1 updates while it waits change nothing either.
    assert!(gw.epusdt.send_status(&no, 1));
    wait_for_outcome(&app, &no, "not_paid").await;
    assert_eq!(status_of(&app, &order).await, "pending");
    assert_eq!(app.admin_orders("delivered").await.len(), 1);
}
both_backends!(epusdt_tampering_and_underpayment_are_refused);

/// A stored TokenPay channel above `usdt-sim`: the secret is given as text and kept sealed.
pub(crate) async fn add_tokenpay(app: &TestApp, gw: &Gateways) {
    let secret = gw.merchant_keys().unwrap().tokenpay_secret;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/channels",
            json!({"id": "tokenpay-db", "kind": "tokenpay", "methods": ["usdt"], "priority": 20,
                   "gateway": format!("{}/sim/tokenpay", gw.base_url()), "secret": secret,
                   "currency": TOKENPAY_CURRENCY}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["keys_set"], json!(["secret"]), "{v}");
    assert!(!v.to_string().contains(&secret));
}

async fn tokenpay_purchase_duplicates_and_underpayment(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    add_tokenpay(&app, &gw).await;
    app.create_product("u", 1500, "auto").await;
    app.import_keys("u", 3).await;
    let order = app.order_via("u", "usdt", "pc").await;
    assert_eq!(order["payment"]["channel"], "tokenpay-db", "{order}");
    let no = order["order_no"].as_str().unwrap().to_owned();
    assert_eq!(gw.tokenpay.coin_amount(&no).as_deref(), Some("2.1429"));
    let (s, body) = app.pay_in_browser(&order, "duplicate").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert!(gw.tokenpay.resend(&no));
    wait_for_outcome(&app, &no, "duplicate").await;
    assert_eq!(app.admin_orders("delivered").await.len(), 1);
    let payments = app
        .state
        .store
        .order_payments(&kami_core::OrderNo::parse(&no).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payments[0].coin_amount.as_deref(), Some("2.1429 USDT"));

    // Underpaid: TokenPay's query confirms what its notification says, but not what the
    // create asked for.
    let order = app.order_via("u", "usdt", "mobile").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let (s, body) = app.pay_in_browser_with(&order, &[("coin", "2")]).await;
    assert_eq!(s, 200, "{body}");
    wait_for_outcome(&app, &no, "amount_mismatch").await;
    assert_eq!(status_of(&app, &order).await, "pending");

    // Expired at the gateway: its status-3 query answer; no notification is ever sent.
    let order = app.order_via("u", "usdt", "pc").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    assert!(gw.tokenpay.expire(&no));
    assert_eq!(gw.tokenpay.status(&no), "Expired");
    assert_eq!(status_of(&app, &order).await, "pending");
    assert_eq!(app.admin_orders("delivered").await.len(), 1);

    // The channel test call: a signed query of an id no order has.
    let (s, v) = app
        .admin_post("/api/v1/admin/channels/tokenpay-db/test", json!({}))
        .await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
}
both_backends!(tokenpay_purchase_duplicates_and_underpayment);

async fn tampered_tokenpay_notifications_are_refused(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    add_tokenpay(&app, &gw).await;
    app.create_product("u", 1500, "auto").await;
    app.import_keys("u", 1).await;
    let order = app.order_via("u", "usdt", "pc").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let id = gw.tokenpay.order_id(&no).unwrap();
    let secret = gw.merchant_keys().unwrap().tokenpay_secret;
    let fields = |status: i64, amount: &str, out: &str| {
        let pairs = vec![
            ("ActualAmount".to_owned(), "15.00".to_owned()),
            ("Amount".to_owned(), amount.to_owned()),
            ("BaseCurrency".to_owned(), "CNY".to_owned()),
            ("Currency".to_owned(), TOKENPAY_CURRENCY.to_owned()),
            ("Id".to_owned(), id.clone()),
            ("OutOrderId".to_owned(), out.to_owned()),
            ("Status".to_owned(), status.to_string()),
        ];
        let sig = kami_pay::tokenpay::signature(&pairs, &secret);
        let mut m = serde_json::Map::new();
        for (k, v) in pairs {
            let v = if k == "Status" {
                json!(status)
            } else {
                json!(v)
            };
            m.insert(k, v);
        }
        m.insert("Signature".into(), json!(sig));
        Value::Object(m)
    };
    // Signed, but unpaid at the gateway: the query does not confirm it.
    let good = fields(1, "2.1429", &no);
    let (s, _) = notify(&app, "tokenpay-db", &good.to_string()).await;
    assert_eq!(s, 500);
    wait_for_outcome(&app, &no, "unconfirmed").await;
    for (k, v) in [
        ("Signature", json!("0".repeat(32))),
        ("OutOrderId", json!("K00000000000000000000000000")),
        ("ActualAmount", json!("14.00")),
        ("Amount", json!("2.1428")),
        ("Status", json!(2)),
    ] {
        let mut b = good.clone();
        b[k] = v;
        let (s, _) = notify(&app, "tokenpay-db", &b.to_string()).await;
        assert_eq!(s, 500, "{k}");
    }
    assert_eq!(status_of(&app, &order).await, "pending");
    // Paid at the gateway (notification dropped): the signed notification now confirms.
    gw.tokenpay
        .pay(
            &no,
            kami_testkit::kami_sim::tokenpay::PayOptions {
                notify: kami_testkit::kami_sim::tokenpay::NotifyMode::Drop,
                ..Default::default()
            },
        )
        .unwrap();
    let (s, body) = notify(&app, "tokenpay-db", &good.to_string()).await;
    assert_eq!((s, body.as_str()), (200, "ok"));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
}
both_backends!(tampered_tokenpay_notifications_are_refused);
