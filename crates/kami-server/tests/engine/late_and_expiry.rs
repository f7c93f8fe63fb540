use std::sync::Arc;

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, hex_rand, Backend, TestApp};

const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

async fn expired_orders_release_stock_and_late_payments_are_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("late", 700, "auto").await;
    app.import_keys("late", 1).await;

    // A expires: its key goes back exactly once.
    let a = app.order("late", 1).await;
    assert_eq!(app.stock("late").await, json!(0));
    let expired = app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let expired: Vec<String> = expired.iter().map(ToString::to_string).collect();
    assert_eq!(expired, vec![a["order_no"].as_str().unwrap().to_owned()]);
    assert!(app
        .state
        .store
        .expire_due(FAR_FUTURE, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(app.stock("late").await, json!(1));
    let (_, v) = app
        .read_order(
            a["order_no"].as_str().unwrap(),
            a["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(v["status"], "expired");

    // A pays late while the key is free: delivered after all.
    let gw_a = format!("SBX{}", hex_rand());
    let (s, body) = app
        .send_notification(&app.notification(a["order_no"].as_str().unwrap(), "7.00", "CNY", &gw_a))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    let v = app.wait_settled(&a).await;
    assert_eq!(v["status"], "delivered");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"late_delivered\"}")
            .await,
        1
    );
    assert_eq!(app.stock("late").await, json!(0));

    // B expires, C buys the last key, then B pays: paid but undeliverable → exception, never lost.
    app.import_keys("late", 1).await;
    let b = app.order("late", 1).await;
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let c = app.order("late", 1).await;
    let (s, body) = app
        .send_notification(&app.notification(
            b["order_no"].as_str().unwrap(),
            "7.00",
            "CNY",
            &format!("SBX{}", hex_rand()),
        ))
        .await;
    assert_eq!(
        (s, body.as_str()),
        (200, "success"),
        "a paid exception is still acknowledged"
    );
    let v = app.wait_settled(&b).await;
    assert_eq!(v["status"], "exception");
    assert!(v.get("cards").is_none());
    let exceptions = app.admin_orders("exception").await;
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0]["order_no"], b["order_no"]);
    assert!(exceptions[0]["paid_at"].is_string());
    // The raw notification is in the order's event log.
    let detail = app.admin_order(b["order_no"].as_str().unwrap()).await;
    let events = detail["payment_events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["outcome"], "exception");
    assert_eq!(events[0]["verified"], true);
    // C is unaffected.
    app.pay(&c).await;
    assert_eq!(app.wait_settled(&c).await["status"], "delivered");
}
both_backends!(expired_orders_release_stock_and_late_payments_are_kept);

/// Notifications racing the expiry worker: no double release, no double delivery, and
/// released keys become sellable again exactly once.
async fn expiry_race(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app = Arc::new(app);
    app.create_product("race", 100, "auto").await;
    app.import_keys("race", 40).await;
    let mut paid = Vec::new();
    for _ in 0..40 {
        paid.push(app.order("race", 1).await);
    }

    let store = app.state.store.clone();
    let expirer = tokio::spawn(async move {
        let mut total = 0;
        for _ in 0..200 {
            total += store.expire_due(FAR_FUTURE, 3).await.unwrap().len();
            tokio::task::yield_now().await;
        }
        total
    });
    let mut tasks = Vec::new();
    for o in &paid {
        for _ in 0..3 {
            let app = app.clone();
            let no = o["order_no"].as_str().unwrap().to_owned();
            let gw = format!("SBX-{no}");
            tasks.push(tokio::spawn(async move {
                let (s, body) = app
                    .send_notification(&app.notification(&no, "1.00", "CNY", &gw))
                    .await;
                assert_eq!((s, body.as_str()), (200, "success"));
            }));
        }
    }
    // New buyers compete for keys the expiry releases.
    let buyers: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.try_order(json!({"product": "race", "email": format!("n{i}@example.com"), "method": "sandbox"})).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let expired_count = expirer.await.unwrap();
    let mut newcomers: Vec<Value> = Vec::new();
    for b in buyers {
        let (s, body) = b.await.unwrap();
        match s {
            201 => newcomers.push(body),
            409 => assert_eq!(body["error"]["code"], "out_of_stock"),
            other => panic!("{other}: {body}"),
        }
    }

    let mut delivered = Vec::new();
    let mut exceptions = 0;
    for o in &paid {
        let v = app.wait_settled(o).await;
        match v["status"].as_str().unwrap() {
            "delivered" => delivered.push(v),
            "exception" => exceptions += 1,
            other => panic!("paid order ended {other}"),
        }
    }
    assert_eq!(delivered.len() + exceptions, 40);
    assert_no_key_twice(&delivered);
    // Newcomers' orders may have been expired by the racing worker; expire the rest now.
    app.state.store.expire_due(FAR_FUTURE, 1000).await.unwrap();
    // Every key is either sold (once) or back in stock (once).
    let stock = app.stock("race").await.as_i64().unwrap();
    assert_eq!(
        stock,
        40 - delivered.len() as i64,
        "expired {expired_count}, newcomers {}",
        newcomers.len()
    );
    // Released keys are sellable again, exactly as many as the stock says.
    for _ in 0..stock {
        app.order("race", 1).await;
    }
    let (s, body) = app
        .try_order(json!({"product": "race", "email": "last@example.com", "method": "sandbox"}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("out_of_stock"))
    );
}
both_backends!(expiry_race);

/// Two kami processes (two stores with their own connections) run the expiry worker over the
/// same orders at once: every order expires exactly once and every key returns exactly once.
async fn expiry_in_two_processes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("twice", 100, "auto").await;
    app.import_keys("twice", 120).await;
    let mut orders = Vec::new();
    for _ in 0..60 {
        orders.push(
            app.order("twice", 2).await["order_no"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(app.stock("twice").await, json!(0));
    let all = app
        .claim_from_two_processes(40, "an order was expired", |s| async move {
            let expired = s.expire_due(FAR_FUTURE, 4).await.unwrap();
            expired.iter().map(ToString::to_string).collect()
        })
        .await;
    orders.sort();
    assert_eq!(all, orders, "every order expired");
    assert_eq!(
        app.stock("twice").await,
        json!(120),
        "every key back exactly once"
    );
}
both_backends!(expiry_in_two_processes);
