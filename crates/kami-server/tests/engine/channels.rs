//! Every real protocol through its simulator, with the database on both backends: purchase,
//! concurrent duplicate notifications, a dropped notification found by active query, refunds,
//! closing at the channel before expiry — and a mixed run of hundreds of buyers over all
//! channels for fewer keys than buyers.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, Backend, TestApp};

/// (method, device) pairs covering each channel's flavours.
const FLAVOURS: [(&str, &str, &str); 6] = [
    ("alipay", "pc", "qr"),           // 当面付 precreate
    ("alipay", "mobile", "redirect"), // wap.pay
    ("wxpay", "pc", "qr"),            // Native
    ("wxpay", "mobile", "redirect"),  // H5
    ("qqpay", "pc", "redirect"),      // Epay submit.php
    ("sandbox", "pc", "redirect"),
];

async fn every_flavour_buys_refunds_and_survives_duplicates(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("multi", 1230, "auto").await;
    app.import_keys("multi", 20).await;
    for (method, device, action) in FLAVOURS {
        let order = app.order_via("multi", method, device).await;
        assert_eq!(
            order["payment"]["action"], action,
            "{method}/{device}: {order}"
        );
        // The simulator sends each notification twice at once: delivered exactly once.
        let (s, body) = app.pay_in_browser(&order, "duplicate").await;
        assert_eq!(s, 200, "{method}/{device}: {body}");
        let v = app.wait_settled(&order).await;
        assert_eq!(v["status"], "delivered", "{method}/{device}: {v}");
        assert_eq!(v["cards"].as_array().unwrap().len(), 1);
        let no = order["order_no"].as_str().unwrap();
        // Partial then full refund through the order's own channel.
        let (s, r) = app.refund(no, json!({"amount": 230})).await;
        assert_eq!(
            (s, r["order_status"].as_str()),
            (200, Some("partially_refunded")),
            "{method}: {r}"
        );
        let (s, r) = app.refund(no, json!({})).await;
        assert_eq!(
            (s, r["order_status"].as_str(), r["amount"].as_i64()),
            (200, Some("refunded"), Some(1000)),
            "{method}: {r}"
        );
    }
    assert_eq!(app.admin_orders("refunded").await.len(), FLAVOURS.len());
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        FLAVOURS.len() as u64
    );
    assert_eq!(app.stock("multi").await, json!(20 - FLAVOURS.len()));
}
both_backends!(every_flavour_buys_refunds_and_survives_duplicates);

/// Each channel's notification is dropped: the payment-check worker queries the channel.
async fn dropped_notifications_are_found_on_every_channel(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("drop", 500, "auto").await;
    app.import_keys("drop", 10).await;
    let mut orders = Vec::new();
    for (method, device, _) in FLAVOURS {
        let order = app.order_via("drop", method, device).await;
        let (s, body) = app.pay_in_browser(&order, "drop").await;
        assert_eq!(s, 200, "{method}/{device}: {body}");
        orders.push((method, order));
    }
    for (method, order) in &orders {
        let v = app.wait_settled(order).await;
        assert_eq!(
            v["status"], "delivered",
            "{method}: found by active query: {v}"
        );
    }
}
both_backends!(dropped_notifications_are_found_on_every_channel);

/// At the deadline every channel's trade is closed first: unpaid ones expire (and can no longer
/// be paid), quietly paid ones are delivered instead.
async fn every_channel_closes_before_expiry(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "[orders]\nexpire_seconds = 6\n").await;
    app.create_product("deadline", 500, "auto").await;
    app.import_keys("deadline", 20).await;
    let mut unpaid = Vec::new();
    let mut quiet = Vec::new();
    for (method, device, _) in FLAVOURS {
        let a = app.order_via("deadline", method, device).await;
        // Open the payment page (the trade becomes known to the gateway) but do not pay.
        let p = &a["payment"];
        if let Some(u) = p["url"].as_str() {
            let _ = app.http.get(u).send().await.unwrap();
        }
        unpaid.push((method, a));
        let b = app.order_via("deadline", method, device).await;
        let (s, body) = app.pay_in_browser(&b, "drop").await;
        assert_eq!(s, 200, "{body}");
        quiet.push((method, b));
    }
    for (method, o) in &unpaid {
        // Epay cannot close a trade: it expires after a short grace past the deadline instead.
        assert_eq!(
            app.wait_settled_for(o, 60).await["status"],
            "expired",
            "{method}"
        );
    }
    for (method, o) in &quiet {
        assert_eq!(
            app.wait_settled(o).await["status"],
            "delivered",
            "{method}: paid before the close"
        );
    }
    assert_eq!(app.stock("deadline").await, json!(20 - FLAVOURS.len()));
}
both_backends!(every_channel_closes_before_expiry);

/// Hundreds of buyers at once over every channel for fewer keys than buyers: everyone told
/// "paid" gets a key, no key twice, everyone else a clean out_of_stock.
async fn mixed_run_over_all_channels(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    let app = Arc::new(app);
    app.create_product("mixed", 100, "auto").await;
    let keys: HashSet<String> = app.import_keys("mixed", 120).await.into_iter().collect();
    let buyers: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let (method, device, _) = FLAVOURS[i % FLAVOURS.len()];
                let (s, order) = app
                    .try_order(json!({"product": "mixed", "email": format!("m{i}@example.com"), "method": method, "device": device}))
                    .await;
                if s == 409 {
                    assert_eq!(order["error"]["code"], "out_of_stock");
                    return None;
                }
                assert_eq!(s, 201, "{order}");
                let (s, body) = app.pay_in_browser(&order, "normal").await;
                assert_eq!(s, 200, "{method}: {body}");
                Some(app.wait_settled(&order).await)
            })
        })
        .collect();
    let mut delivered = Vec::new();
    for b in buyers {
        if let Some(v) = b.await.unwrap() {
            assert_eq!(
                v["status"], "delivered",
                "told paid, so it must be delivered: {v}"
            );
            assert_eq!(v["cards"].as_array().unwrap().len(), 1);
            delivered.push(v);
        }
    }
    assert_eq!(delivered.len(), 120, "every key sold exactly once");
    let seen = assert_no_key_twice(&delivered);
    assert!(seen.iter().all(|k| keys.contains(k)));
    assert_eq!(app.stock("mixed").await, json!(0));
    let by_channel: HashSet<&str> = delivered
        .iter()
        .map(|v| v["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_channel.len(),
        4,
        "every method sold something: {by_channel:?}"
    );
}
both_backends!(mixed_run_over_all_channels);

/// A gateway that reports a different amount (the buyer paid less): the notification verifies,
/// but the order is never delivered — not from the notification, not from the active query.
async fn a_wrong_amount_is_never_delivered(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("exact", 1230, "auto").await;
    app.import_keys("exact", 5).await;
    // Each simulator's own unit for its "pay a different amount" control.
    let cases = [
        ("alipay", "pc", "12.29"),
        ("wxpay", "pc", "1229"),
        ("qqpay", "pc", "12.29"),
    ];
    let mut orders = Vec::new();
    for (method, device, amount) in cases {
        let order = app.order_via("exact", method, device).await;
        let (s, body) = app
            .pay_in_browser_with(&order, &[("notify", "normal"), ("amount", amount)])
            .await;
        assert_eq!(s, 200, "{method}: {body}");
        orders.push((method, order));
    }
    // Past the first active query (~5 s) too.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    for (method, order) in &orders {
        let (_, v) = app
            .read_order(
                order["order_no"].as_str().unwrap(),
                order["access_token"].as_str().unwrap(),
                0,
            )
            .await;
        assert_eq!(v["status"], "pending", "{method}: {v}");
        assert!(v.get("cards").is_none());
        let detail = app.admin_order(order["order_no"].as_str().unwrap()).await;
        let events = detail["payment_events"].as_array().unwrap();
        assert!(
            !events.is_empty() && events.iter().all(|e| e["outcome"] == "amount_mismatch"),
            "{method}: {events:?}"
        );
    }
    assert!(
        app.metric("kami_notifications_total{outcome=\"amount_mismatch\"}")
            .await
            >= 3
    );
    assert_eq!(
        app.stock("exact").await,
        json!(2),
        "still reserved, never sold"
    );
    assert!(app.admin_orders("delivered").await.is_empty());
}
both_backends!(a_wrong_amount_is_never_delivered);

/// A channel that fails to create the payment: the buyer gets `502 channel_unavailable`, the
/// key goes back at once, and the seller sees on the order which channel failed and what the
/// gateway said.
async fn a_failed_create_tells_the_seller_which_channel_and_why(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("fails", 500, "auto").await;
    app.import_keys("fails", 2).await;
    let first = app.order_via("fails", "wxpay", "pc").await;
    let channel = first["payment"]["channel"].as_str().unwrap().to_owned();
    app.sim_controls(&first, &[("fail_creates", "1")]).await;
    let (s, v) = app
        .try_order(
            json!({"product": "fails", "quantity": 1, "email": "b@example.com",
                          "method": "wxpay", "device": "pc"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (502, Some("channel_unavailable")),
        "{v}"
    );
    assert_eq!(
        app.stock("fails").await,
        json!(1),
        "only the first order holds a key"
    );
    let expired = app.admin_orders("expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    let note = expired[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!(
            "no channel could create the payment: {channel} (wxpay): gateway refused: SYSTEM_ERROR"
        )),
        "names each channel tried and the gateway's answer: {note}"
    );
}
both_backends!(a_failed_create_tells_the_seller_which_channel_and_why);
