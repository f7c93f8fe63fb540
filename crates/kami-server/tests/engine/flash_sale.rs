use std::sync::Arc;

use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{assert_no_key_twice, Backend, TestApp};

/// 500 buyers at once for 50 keys: exactly 50 orders, 450 clean 409s, no key twice.
async fn flash_sale(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app = Arc::new(app);
    app.create_product("flash", 990, "auto").await;
    let keys = app.import_keys("flash", 50).await;

    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.try_order(json!({"product": "flash", "quantity": 1, "email": format!("b{i}@example.com"), "method": "sandbox"}))
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => created.push(body),
            409 => {
                assert_eq!(body["error"]["code"], "out_of_stock", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), 50);
    assert_eq!(refused, 450);
    assert_eq!(app.stock("flash").await, json!(0));

    // Everyone who got an order can pay and gets a distinct key.
    let pays: Vec<_> = created
        .iter()
        .cloned()
        .map(|o| {
            let app = app.clone();
            tokio::spawn(async move {
                app.pay(&o).await;
                app.wait_settled(&o).await
            })
        })
        .collect();
    let mut delivered = Vec::new();
    for p in pays {
        let v = p.await.unwrap();
        assert_eq!(v["status"], "delivered", "{v}");
        assert_eq!(v["cards"].as_array().unwrap().len(), 1);
        delivered.push(v);
    }
    let seen = assert_no_key_twice(&delivered);
    assert_eq!(seen.len(), 50);
    assert!(keys.iter().all(|k| seen.contains(k)));
    assert_eq!(app.admin_orders("delivered").await.len(), 50);
}
both_backends!(flash_sale);
