use std::sync::Arc;

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, hex_rand, Backend, TestApp};

/// 200 concurrent duplicates of one notification, interleaved with notifications (and their
/// own duplicates) for 20 other orders: each order delivered once, every duplicate acknowledged.
async fn notification_storm(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app = Arc::new(app);
    app.create_product("storm", 1000, "auto").await;
    app.import_keys("storm", 30).await;

    let mut orders: Vec<Value> = Vec::new();
    for _ in 0..21 {
        orders.push(app.order("storm", 1).await);
    }
    // One gateway trade number per order, as a real gateway would resend it.
    let gateway: Vec<String> = (0..21).map(|_| format!("SBX{}", hex_rand())).collect();

    let mut sends = Vec::new();
    for i in 0..200 {
        sends.push((0usize, i));
    }
    for o in 1..21 {
        for i in 0..5 {
            sends.push((o, i));
        }
    }
    // Interleave: shuffle deterministically.
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..sends.len()).rev() {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        sends.swap(i, (rng_state % (i as u64 + 1)) as usize);
    }
    let total = sends.len();
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|(o, _)| {
            let app = app.clone();
            let no = orders[o]["order_no"].as_str().unwrap().to_owned();
            let gw = gateway[o].clone();
            tokio::spawn(async move {
                let params = app.notification(&no, "10.00", "CNY", &gw);
                app.send_notification(&params).await
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "success"),
            "every duplicate is acknowledged"
        );
    }

    let mut settled = Vec::new();
    for o in &orders {
        let v = app.wait_settled(o).await;
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["cards"].as_array().unwrap().len(), 1);
        settled.push(v);
    }
    assert_eq!(assert_no_key_twice(&settled).len(), 21);
    assert_eq!(app.stock("storm").await, json!(9));
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        21
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"duplicate\"}")
            .await,
        (total - 21) as u64
    );
    assert_eq!(app.admin_orders("delivered").await.len(), 21);
}
both_backends!(notification_storm);
