use std::collections::HashSet;

use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{inspect, Backend, TestApp};

async fn buy_through_the_simulator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("game", 1230, "auto").await;
    let keys: HashSet<String> = app.import_keys("game", 5).await.into_iter().collect();
    assert_eq!(app.stock("game").await, json!(5));

    let order = app.order("game", 2).await;
    assert_eq!(order["status"], "pending");
    assert_eq!(order["amount"], 2460);
    assert_eq!(order["currency"], "CNY");
    assert_eq!(order["payment"]["action"], "redirect");
    assert_eq!(order["payment"]["channel"], "sandbox");
    let no = order["order_no"].as_str().unwrap();
    let token = order["access_token"].as_str().unwrap();
    // Reserved at creation.
    assert_eq!(app.stock("game").await, json!(3));

    // The buyer opens the simulator's pay page: a real page with a Pay button.
    let page = app
        .http
        .get(order["payment"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Pay"));

    // Pending orders show no keys.
    let (s, v) = app.read_order(no, token, 0).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "pending");
    assert!(v.get("cards").is_none());

    app.pay(&order).await;
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    let cards: Vec<String> = v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cards.len(), 2);
    assert!(cards.iter().all(|c| keys.contains(c)));
    assert_ne!(cards[0], cards[1]);
    assert!(v["paid_at"].is_string() && v["delivered_at"].is_string());

    // The order needs its token: none → 401, wrong → 404, query token works.
    let r = app
        .http
        .get(app.url(&format!("/api/v1/orders/{no}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = app.read_order(no, "not-the-token", 0).await;
    assert_eq!(s, 404);
    assert!(v.to_string().find("KEY-").is_none());
    let r = app
        .http
        .get(app.url(&format!("/api/v1/orders/{no}?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The seller sees it.
    let admin = app.admin_order(no).await;
    assert_eq!(admin["status"], "delivered");
    assert_eq!(admin["email"], "buyer@example.com");
    let delivered = app.admin_orders("delivered").await;
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].get("cards").is_none(),
        "lists leave keys out: {}",
        delivered[0]
    );
    assert_eq!(admin["cards"].as_array().unwrap().len(), 2);
    assert_eq!(app.stock("game").await, json!(3));
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    let h = app.get_json("/healthz").await;
    assert_eq!(h["status"], "ok");
}
both_backends!(buy_through_the_simulator);

async fn manual_and_loop_products(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Manual delivery: paid orders wait for the seller.
    app.create_product("recharge", 500, "manual").await;
    let order = app.order("recharge", 1).await;
    app.pay(&order).await;
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "awaiting_fulfilment");
    assert!(v.get("cards").is_none());

    // Loop key: one shared key, unlimited stock, quantity 1 only.
    app.create_product("tutorial", 100, "auto").await;
    let r = app
        .import_text("tutorial", "https://example.com/shared-link", true)
        .await;
    assert_eq!(r["imported"], 1);
    assert_eq!(app.stock("tutorial").await, serde_json::Value::Null);
    let (s, body) = app
        .try_order(
            json!({"product": "tutorial", "quantity": 2, "email": "a@b.cd", "method": "sandbox"}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(body["error"]["code"], "invalid_quantity");
    for _ in 0..3 {
        let order = app.order("tutorial", 1).await;
        app.pay(&order).await;
        let v = app.wait_settled(&order).await;
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["cards"], json!(["https://example.com/shared-link"]));
    }

    // Import de-duplicates against stored keys and within the file.
    app.create_product("dedup", 100, "auto").await;
    let r = app
        .import_text("dedup", "A\nB\nA\n\n  C  \r\n", false)
        .await;
    assert_eq!(
        (r["imported"].as_u64(), r["duplicates"].as_u64()),
        (Some(3), Some(1))
    );
    let r = app.import_text("dedup", "C\nD\n", false).await;
    assert_eq!(
        (r["imported"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(app.stock("dedup").await, json!(4));
}
both_backends!(manual_and_loop_products);

/// A gateway reusing its own trade number for two of our orders (a gateway bug, or numbers that
/// collide at high rates) must not leave a paid order stuck: each payment is bound by our trade
/// number and its amount, and both orders are delivered.
async fn a_reused_gateway_trade_number_does_not_block_delivery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("reuse", 300, "auto").await;
    app.import_keys("reuse", 2).await;
    let a = app.order("reuse", 1).await;
    let b = app.order("reuse", 1).await;
    for o in [&a, &b] {
        let n = app.notification(
            o["order_no"].as_str().unwrap(),
            "3.00",
            "CNY",
            "SBX-SAME-NUMBER",
        );
        let (s, body) = app.send_notification(&n).await;
        assert_eq!((s, body.as_str()), (200, "success"));
    }
    for o in [&a, &b] {
        assert_eq!(app.wait_settled(o).await["status"], "delivered");
    }
    // The second payment is noted for the seller, naming the order that had the number first.
    let (a_no, b_no) = (
        a["order_no"].as_str().unwrap(),
        b["order_no"].as_str().unwrap(),
    );
    let reused = |order_no: &str, other: &str| {
        format!(
            "SELECT COUNT(*) FROM outbox x JOIN orders o ON o.id = x.order_id \
             WHERE x.kind = 'payment.gateway_trade_reused' AND o.order_no = '{order_no}' \
             AND x.payload LIKE '%\"other_order_no\":\"{other}\"%'"
        )
    };
    assert_eq!(inspect::scalar(&app.db_url, &reused(b_no, a_no)).await, 1);
    assert_eq!(inspect::scalar(&app.db_url, &reused(a_no, b_no)).await, 0);
}
both_backends!(a_reused_gateway_trade_number_does_not_block_delivery);
