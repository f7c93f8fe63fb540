//! The seller finishing orders by hand: fulfilling a manual order, delivering an exception
//! order from stock (DESIGN 4.3 `…/fulfil`, `…/deliver`).

use std::sync::Arc;

use serde_json::{json, Value};

use kami_core::OrderNo;
use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, cards, hex_rand, Backend, TestApp};

const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

fn no(order: &Value) -> &str {
    order["order_no"].as_str().unwrap()
}

async fn fulfil(app: &TestApp, order_no: &str, content: &str) -> (u16, Value) {
    app.admin_post(
        &format!("/api/v1/admin/orders/{order_no}/fulfil"),
        json!({ "content": content }),
    )
    .await
}

async fn deliver(app: &TestApp, order_no: &str) -> (u16, Value) {
    app.admin_post(
        &format!("/api/v1/admin/orders/{order_no}/deliver"),
        json!({}),
    )
    .await
}

/// An order of `quantity` keys that expired, lost its keys to another buyer and was then
/// paid: `exception`. Returns it and the order that took the keys (pending).
async fn exception_order(app: &TestApp, slug: &str, quantity: u32) -> (Value, Value) {
    app.create_product(slug, 700, "auto").await;
    app.import_keys(slug, quantity as usize).await;
    let late = app.order(slug, quantity).await;
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let other = app.order(slug, quantity).await;
    let amount = format!("{}.00", 7 * quantity);
    let (s, body) = app
        .send_notification(&app.notification(
            no(&late),
            &amount,
            "CNY",
            &format!("SBX{}", hex_rand()),
        ))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    let v = app.wait_settled(&late).await;
    assert_eq!(v["status"], "exception", "{v}");
    (late, other)
}

async fn fulfilling_a_manual_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("recharge", 500, "manual").await;
    let order = app.order("recharge", 1).await;
    let token = order["access_token"].as_str().unwrap();
    app.pay(&order).await;
    assert_eq!(
        app.wait_settled(&order).await["status"],
        "awaiting_fulfilment"
    );

    // Nothing is shown to the buyer before.
    let (_, v) = app.read_order(no(&order), token, 0).await;
    assert!(v.get("fulfilment").is_none(), "{v}");

    // Empty (after trimming) or too long content: 422, nothing changed.
    for bad in ["", "  \n\t ", &"x".repeat(10_001)] {
        let (s, v) = fulfil(&app, no(&order), bad).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("invalid_content"))
        );
    }
    assert_eq!(
        app.admin_order(no(&order)).await["status"],
        "awaiting_fulfilment"
    );

    // No admin token: 401; an unknown order: 404.
    let r = app
        .http
        .post(app.url(&format!("/api/v1/admin/orders/{}/fulfil", no(&order))))
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let unknown = OrderNo::generate("20260101000000");
    let (s, v) = fulfil(&app, unknown.as_str(), "x").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("order_not_found"))
    );

    // Fulfilled: the seller's answer is the order, the buyer sees the content.
    let (s, v) = fulfil(&app, no(&order), "  account: a@b.cd\npassword: 123  \n").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "fulfilled");
    assert_eq!(v["fulfilment"], "account: a@b.cd\npassword: 123");
    assert_eq!(v["order_no"], order["order_no"]);
    let (s, v) = app.read_order(no(&order), token, 0).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "fulfilled");
    assert_eq!(v["fulfilment"], "account: a@b.cd\npassword: 123");

    // Twice: 409, the first content stays.
    let (s, v) = fulfil(&app, no(&order), "other").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
    assert_eq!(
        app.admin_order(no(&order)).await["fulfilment"],
        "account: a@b.cd\npassword: 123"
    );

    // A pending (unpaid) order: 409, still pending.
    let pending = app.order("recharge", 1).await;
    let (s, v) = fulfil(&app, no(&pending), "x").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
    let v = app.admin_order(no(&pending)).await;
    assert_eq!(v["status"], "pending");
    assert!(v["fulfilment"].is_null());

    // Deliver is for exception orders only.
    let (s, v) = deliver(&app, no(&pending)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
}
both_backends!(fulfilling_a_manual_order);

async fn delivering_an_exception_order_from_stock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (late, other) = exception_order(&app, "late", 2).await;
    let token = late["access_token"].as_str().unwrap();
    let no_late = OrderNo::parse(no(&late)).unwrap();
    assert_eq!(app.stock("late").await, json!(0));
    // The exception owes no delivery mail yet.
    assert!(app
        .state
        .store
        .mail_state(&no_late)
        .await
        .unwrap()
        .is_none());

    // No stock: 409 out_of_stock, nothing changed.
    let (s, v) = deliver(&app, no(&late)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("out_of_stock"))
    );
    let v = app.admin_order(no(&late)).await;
    assert_eq!(v["status"], "exception");
    assert!(v.get("cards").is_none() && v["delivered_at"].is_null());
    assert_eq!(app.stock("late").await, json!(0));

    // One key is not enough for two: still 409, the key stays in stock.
    app.import_keys("late", 1).await;
    let (s, v) = deliver(&app, no(&late)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("out_of_stock"))
    );
    assert_eq!(app.stock("late").await, json!(1));
    assert_eq!(app.admin_order(no(&late)).await["status"], "exception");

    // Keys back: delivered with exactly `quantity` keys, mail queued, stock taken.
    app.import_keys("late", 2).await;
    let (s, v) = deliver(&app, no(&late)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "delivered");
    assert!(v["delivered_at"].is_string());
    assert_eq!(cards(&v).len(), 2);
    assert_eq!(app.stock("late").await, json!(1));
    assert!(app
        .state
        .store
        .mail_state(&no_late)
        .await
        .unwrap()
        .is_some());
    let (s, buyer) = app.read_order(no(&late), token, 0).await;
    assert_eq!(s, 200);
    assert_eq!(buyer["status"], "delivered");
    assert_eq!(cards(&buyer), cards(&v));

    // Again: 409, nothing more sold.
    let (s, e) = deliver(&app, no(&late)).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
    assert_eq!(app.stock("late").await, json!(1));

    // The buyer who took the original keys still gets them; no key twice.
    app.pay(&other).await;
    let o = app.wait_settled(&other).await;
    assert_eq!(o["status"], "delivered");
    assert_eq!(assert_no_key_twice(&[v, o]).len(), 4);
}
both_backends!(delivering_an_exception_order_from_stock);

async fn concurrent_delivers_deliver_once(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let (late, other) = exception_order(&app, "race", 1).await;
    app.import_keys("race", 8).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            let no = no(&late).to_owned();
            tokio::spawn(async move { deliver(&app, &no).await })
        })
        .collect();
    let (mut ok, mut refused) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            (200, v) => ok.push(v),
            (409, v) => {
                assert_eq!(v["error"]["code"], "invalid_status", "{v}");
                refused += 1;
            }
            (s, v) => panic!("{s}: {v}"),
        }
    }
    assert_eq!((ok.len(), refused), (1, 7));
    assert_eq!(cards(&ok[0]).len(), 1);
    assert_eq!(app.stock("race").await, json!(7));
    let (_, v) = app
        .read_order(no(&late), late["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(cards(&v), cards(&ok[0]));
    app.pay(&other).await;
    let o = app.wait_settled(&other).await;
    assert_no_key_twice(&[v, o]);
    let counts = app.state.store.counts().await.unwrap();
    assert_eq!((counts.cards_sold, counts.cards_available), (2, 7));
}
both_backends!(concurrent_delivers_deliver_once);
