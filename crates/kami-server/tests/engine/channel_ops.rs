//! Never lose a payment, and refunds: active query, close-before-expire and refunds through
//! the sandbox simulator's real query / close / refund API.

use std::time::{Duration, Instant};

use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

/// The notification is dropped by the gateway: the payment-check worker finds the payment by
/// querying the channel, and delivers.
async fn dropped_notification_is_recovered_by_active_query(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("quiet", 500, "auto").await;
    app.import_keys("quiet", 2).await;
    let order = app.order("quiet", 1).await;
    let (s, body) = app.pay_with(&order, "drop").await;
    assert_eq!(s, 200, "{body}");
    let started = Instant::now();
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "found by the first check, ~5 s after creation"
    );
    let detail = app.admin_order(order["order_no"].as_str().unwrap()).await;
    assert_eq!(detail["payment_events"][0]["outcome"], "delivered");
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
}
both_backends!(dropped_notification_is_recovered_by_active_query);

/// At the deadline the trade is closed at the channel before the keys go back; a trade that
/// was paid (its notification lost) is delivered instead of expired.
async fn expiry_closes_at_the_channel_first(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[orders]\nexpire_seconds = 5\n").await;
    app.create_product("close", 500, "auto").await;
    app.import_keys("close", 2).await;
    let unpaid = app.order("close", 1).await;
    let paid_quietly = app.order("close", 1).await;
    // The buyer opens the page (the trade exists at the gateway) but does not pay.
    let page = app
        .http
        .get(unpaid["payment"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let (s, _) = app.pay_with(&paid_quietly, "drop").await;
    assert_eq!(s, 200);
    assert_eq!(app.stock("close").await, json!(0));

    let v = app.wait_settled(&unpaid).await;
    assert_eq!(v["status"], "expired");
    let v = app.wait_settled(&paid_quietly).await;
    assert_eq!(
        v["status"], "delivered",
        "paid before close: delivered, not expired"
    );
    assert_eq!(
        app.stock("close").await,
        json!(1),
        "only the unpaid order's key went back"
    );
    // The closed trade can no longer be paid at the gateway.
    let (s, _) = app.pay_with(&unpaid, "normal").await;
    assert_eq!(s, 409, "the simulator refuses a closed trade");
}
both_backends!(expiry_closes_at_the_channel_first);

/// Partial and full refunds through the order's channel, idempotent by refund number.
async fn refunds_partial_then_full(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("refund", 1000, "auto").await;
    app.import_keys("refund", 3).await;
    let pending = app.order("refund", 1).await;
    let (s, v) = app
        .refund(pending["order_no"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_refundable")),
        "unpaid orders have nothing to refund"
    );

    let order = app.order("refund", 1).await;
    let no = order["order_no"].as_str().unwrap();
    app.pay(&order).await;
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");

    let (s, v) = app.refund(no, json!({"amount": 1001})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_amount"))
    );
    let (s, v) = app
        .refund(
            no,
            json!({"amount": 300, "reason": "partial", "refund_no": "R-1"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["amount"].as_i64()),
        (Some("succeeded"), Some(300))
    );
    assert_eq!(v["order_status"], "partially_refunded");
    // The same request again: the same refund, not a second one.
    let (s, again) = app
        .refund(no, json!({"amount": 300, "refund_no": "R-1"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["refund_no"], "R-1");
    // The rest.
    let (s, v) = app.refund(no, json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["amount"].as_i64(), v["order_status"].as_str()),
        (Some(700), Some("refunded"))
    );
    let (s, v) = app.refund(no, json!({"amount": 1})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_refundable"))
    );
    assert_eq!(
        v["error"]["message"], "the order is already fully refunded",
        "says why, not \"no settled payment\": {v}"
    );

    let detail = app.admin_order(no).await;
    let refunds = detail["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 2);
    assert!(refunds.iter().all(|r| r["status"] == "succeeded"));
    assert_eq!(detail["status"], "refunded");
    // The buyer still sees the keys they were given.
    assert_eq!(detail["cards"].as_array().unwrap().len(), 1);
    let r = app
        .http
        .post(app.url(&format!("/api/v1/admin/orders/{no}/refund")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(refunds_partial_then_full);

/// Two kami processes claiming payment checks at once never claim the same payment twice.
async fn payment_checks_are_claimed_once_across_processes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("claims", 100, "auto").await;
    app.import_keys("claims", 30).await;
    let mut expected = Vec::new();
    for _ in 0..30 {
        expected.push(
            app.order("claims", 1).await["order_no"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // "Now" a little ahead so every first check is due; leases outlast the test.
    let at = kami_server::time::now_ms() + 10_000;
    let all = app
        .claim_from_two_processes(15, "a payment was claimed", move |s| async move {
            s.claim_payment_checks(at, at + 600_000, 3)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.order_no.to_string())
                .collect()
        })
        .await;
    expected.sort();
    assert_eq!(all, expected);
}
both_backends!(payment_checks_are_claimed_once_across_processes);

/// The gateway gave the money back before kami delivered (refunded in its console, or Alipay
/// refunding a payment that raced the cancel): the order becomes an exception for the seller,
/// its key returns to stock, and the payment's own notification arriving late delivers nothing.
async fn money_returned_by_the_gateway_is_never_delivered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("reversed", 700, "auto").await;
    app.import_keys("reversed", 1).await;
    let order = app.order("reversed", 1).await;
    let no = order["order_no"].as_str().unwrap();
    let (s, body) = app.pay_with(&order, "drop").await;
    assert_eq!(s, 200, "{body}");
    let gateway_trade_no = serde_json::from_str::<serde_json::Value>(&body).unwrap()
        ["gateway_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    // The seller refunds at the gateway, behind kami's back.
    let channel = app.state.channels.get("sandbox").unwrap().clone();
    let money = kami_core::Money::new(700, kami_core::Currency::Cny).unwrap();
    let r = channel
        .refund(&kami_pay::RefundRequest {
            gateway_ref: None,
            gateway_trade_no: None,
            trade_no: no.to_owned(),
            refund_no: "console-1".into(),
            amount: money,
            total: money,
            reason: None,
        })
        .await
        .unwrap();
    assert!(r.settled);

    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "exception", "{v}");
    assert!(v.get("cards").is_none());
    assert_eq!(
        app.stock("reversed").await,
        json!(1),
        "the reserved key went back"
    );
    // The original notification arrives late: acknowledged, nothing delivered.
    let (s, body) = app
        .send_notification(&app.notification(no, "7.00", "CNY", &gateway_trade_no))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    let (_, v) = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(v["status"], "exception");
    assert_eq!(app.stock("reversed").await, json!(1));
    assert!(app.admin_order(no).await["note"]
        .as_str()
        .unwrap()
        .contains("refunded"));
    // Nor can the seller deliver it from stock: the money is not kami's.
    let (s, v) = app
        .admin_post(&format!("/api/v1/admin/orders/{no}/deliver"), json!({}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
    assert_eq!(app.stock("reversed").await, json!(1));
}
both_backends!(money_returned_by_the_gateway_is_never_delivered);
