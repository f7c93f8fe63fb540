//! The seller's actions on one order (DESIGN 4.3): check the payment at the channel now
//! (补单), cancel a pending order (closed at the channel first), resend the buyer's mail.
//! The background payment check is held off (its lease taken) wherever it could otherwise
//! find the payment first, so what these tests see is the seller's action alone.

use kami_pay::TradeRef;
use std::sync::Arc;

use serde_json::{json, Value};

use kami_store::AuditFilter;
use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, cards, Backend, TestApp};

const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

fn no(order: &Value) -> &str {
    order["order_no"].as_str().unwrap()
}

async fn alipay_order(app: &TestApp, slug: &str) -> Value {
    let (s, v) = app
        .try_order(
            json!({"product": slug, "quantity": 1, "email": "b@example.com",
                          "method": "alipay", "device": "pc"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Take every due payment check's lease, so only the seller's action asks the channel.
async fn hold_background_checks(app: &TestApp) {
    app.state
        .store
        .claim_payment_checks(FAR_FUTURE, FAR_FUTURE + 1, 1000)
        .await
        .unwrap();
}

async fn action(app: &TestApp, order_no: &str, what: &str) -> (u16, Value) {
    app.admin_post(
        &format!("/api/v1/admin/orders/{order_no}/{what}"),
        json!({}),
    )
    .await
}

async fn audit_actions(app: &TestApp, order_no: &str) -> Vec<(String, String)> {
    app.state
        .store
        .audit_log(AuditFilter {
            target: Some(format!("order:{order_no}")),
            limit: 50,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.entry.action, r.entry.actor))
        .collect()
}

async fn check_payment_recovers_a_dropped_notification_once(backend: Backend) {
    let app = Arc::new(TestApp::spawn_gateways(backend, "").await);
    app.create_product("dropped", 990, "auto").await;
    app.import_keys("dropped", 5).await;
    let order = alipay_order(&app, "dropped").await;
    let other = alipay_order(&app, "dropped").await;
    hold_background_checks(&app).await;
    for o in [&order, &other] {
        let (s, body) = app.pay_in_browser(o, "drop").await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(app.admin_order(no(&order)).await["status"], "pending");

    let (s, v) = action(&app, no(&order), "check-payment").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["checked"][0]["channel"], order["payment"]["channel"]);
    assert_eq!(
        (
            v["checked"][0]["answer"].as_str(),
            v["checked"][0]["outcome"].as_str()
        ),
        (Some("paid"), Some("delivered")),
        "{v}"
    );
    assert_eq!(v["status"], "delivered", "{v}");
    let delivered = cards(&v);
    assert_eq!(delivered.len(), 1);

    // Again: kami holds the final state now; nothing more happens.
    let (s, again) = action(&app, no(&order), "check-payment").await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["checked"][0]["answer"], "settled", "{again}");
    assert_eq!(cards(&again), delivered);

    // Many checks of the other order at once: delivered once.
    let answers = futures::future::join_all((0..6).map(|_| {
        let app = app.clone();
        let n = no(&other).to_owned();
        async move { action(&app, &n, "check-payment").await }
    }))
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let paid = answers
        .iter()
        .filter(|(_, v)| v["checked"][0]["outcome"] == "delivered")
        .count();
    assert_eq!(paid, 1, "one check applied the payment: {answers:?}");
    let other_now = app.admin_order(no(&other)).await;
    assert_eq!(other_now["status"], "delivered");
    assert_no_key_twice(&[v.clone(), other_now]);
    assert_eq!(app.stock("dropped").await, json!(3));
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        2
    );

    let audit = audit_actions(&app, no(&order)).await;
    assert_eq!(
        audit,
        vec![
            ("order.check_payment".to_owned(), "token:test".to_owned()),
            ("order.check_payment".to_owned(), "token:test".to_owned())
        ]
    );
    let (s, v) = action(&app, "K20990101000000000000000000", "check-payment").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("order_not_found"))
    );
    let r = app
        .http
        .post(app.url(&format!(
            "/api/v1/admin/orders/{}/check-payment",
            no(&order)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(check_payment_recovers_a_dropped_notification_once);

async fn check_payment_of_an_unpaid_trade_changes_nothing(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("unpaid", 500, "auto").await;
    app.import_keys("unpaid", 2).await;
    let order = alipay_order(&app, "unpaid").await;
    hold_background_checks(&app).await;
    let before = app.admin_order(no(&order)).await;
    let (s, v) = action(&app, no(&order), "check-payment").await;
    assert_eq!(s, 200, "{v}");
    // An unscanned 当面付 trade does not exist at Alipay yet.
    assert_eq!(v["checked"][0]["answer"], "not_found", "{v}");
    assert!(v["checked"][0].get("outcome").is_none(), "{v}");
    let after = app.admin_order(no(&order)).await;
    assert_eq!(after["status"], "pending");
    assert_eq!(after["paid_at"], before["paid_at"]);
    assert_eq!(app.stock("unpaid").await, json!(1), "still reserved");
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        0
    );
}
both_backends!(check_payment_of_an_unpaid_trade_changes_nothing);

async fn cancel_closes_the_trade_at_the_channel_first(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("cancel", 500, "auto").await;
    app.import_keys("cancel", 3).await;
    let order = alipay_order(&app, "cancel").await;
    hold_background_checks(&app).await;
    assert_eq!(app.stock("cancel").await, json!(2));

    let (s, v) = action(&app, no(&order), "cancel").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "expired", "{v}");
    assert_eq!(v["note"], "cancelled by the seller");
    assert_eq!(app.stock("cancel").await, json!(3), "the key is back");
    // The trade is closed at Alipay: the buyer can no longer pay it.
    let channel = app
        .state
        .channels
        .get(order["payment"]["channel"].as_str().unwrap())
        .unwrap();
    let at_channel = channel.query(&TradeRef::from(no(&order))).await;
    assert!(
        matches!(at_channel, Ok(kami_pay::TradeState::Closed)),
        "{at_channel:?}"
    );
    assert_eq!(app.admin_order(no(&order)).await["status"], "expired");
    assert_eq!(
        audit_actions(&app, no(&order)).await,
        vec![("order.cancel".to_owned(), "token:test".to_owned())]
    );

    // Only a pending order: cancelling again is a conflict and changes nothing.
    let (s, v) = action(&app, no(&order), "cancel").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("order_not_pending"))
    );
    assert_eq!(audit_actions(&app, no(&order)).await.len(), 1);

    // Paid at the channel but the notification was lost: closing finds the payment, which is
    // applied (delivered), and the order is not cancelled.
    let paid = alipay_order(&app, "cancel").await;
    hold_background_checks(&app).await;
    let (s, body) = app.pay_in_browser(&paid, "drop").await;
    assert_eq!(s, 200, "{body}");
    let (s, v) = action(&app, no(&paid), "cancel").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("order_paid")),
        "{v}"
    );
    let now = app.admin_order(no(&paid)).await;
    assert_eq!(now["status"], "delivered", "{now}");
    assert_eq!(cards(&now).len(), 1);
    assert!(audit_actions(&app, no(&paid)).await.is_empty());
}
both_backends!(cancel_closes_the_trade_at_the_channel_first);

async fn resend_mail_needs_mail_and_a_delivered_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("mailless", 500, "auto").await;
    app.import_keys("mailless", 1).await;
    let order = app.order("mailless", 1).await;
    app.pay(&order).await;
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");
    let (s, v) = action(&app, no(&order), "resend-mail").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("mail_off")),
        "{v}"
    );
    assert!(audit_actions(&app, no(&order)).await.is_empty());
}
both_backends!(resend_mail_needs_mail_and_a_delivered_order);

/// Refunds, fulfilments and deliveries by hand each leave an audit row with who did it; the
/// fulfilment content (it may be an account's password) stays out of the log, and a repeated
/// refund request adds no second row.
async fn hand_actions_are_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("topup", 500, "manual").await;
    let manual = app.order("topup", 1).await;
    app.pay(&manual).await;
    assert_eq!(
        app.wait_settled(&manual).await["status"],
        "awaiting_fulfilment"
    );
    let secret = "account 42 password hunter2";
    let (s, v) = app
        .admin_post(
            &format!("/api/v1/admin/orders/{}/fulfil", no(&manual)),
            json!({ "content": secret }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let rows = audit_actions(&app, no(&manual)).await;
    assert_eq!(
        rows,
        vec![("order.fulfil".to_owned(), "token:test".to_owned())]
    );
    let logged = app
        .state
        .store
        .audit_log(AuditFilter {
            target: Some(format!("order:{}", no(&manual))),
            limit: 5,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        logged[0].entry.after.as_ref().unwrap()["status"],
        "fulfilled"
    );
    assert!(
        format!("{:?}", logged[0].entry).find("hunter2").is_none(),
        "no content in the log"
    );

    app.create_product("keys", 1000, "auto").await;
    app.import_keys("keys", 1).await;
    let paid = app.order("keys", 1).await;
    app.pay(&paid).await;
    assert_eq!(app.wait_settled(&paid).await["status"], "delivered");
    for _ in 0..2 {
        let (s, v) = app
            .refund(no(&paid), json!({"amount": 300, "refund_no": "R-A1"}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(
        audit_actions(&app, no(&paid)).await,
        vec![("order.refund".to_owned(), "token:test".to_owned())],
        "the repeat is the same refund"
    );

    // An exception order (paid after its keys went to another buyer), delivered by hand.
    app.create_product("late", 700, "auto").await;
    app.import_keys("late", 1).await;
    let late = app.order("late", 1).await;
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let _other = app.order("late", 1).await;
    let (s, body) = app
        .send_notification(&app.notification(no(&late), "7.00", "CNY", "SBX-LATE-1"))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    assert_eq!(app.wait_settled(&late).await["status"], "exception");
    app.import_keys("late", 1).await;
    let (s, v) = action(&app, no(&late), "deliver").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        audit_actions(&app, no(&late)).await,
        vec![("order.deliver".to_owned(), "token:test".to_owned())]
    );
}
both_backends!(hand_actions_are_audited);
