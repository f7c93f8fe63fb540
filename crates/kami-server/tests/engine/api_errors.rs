use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

/// Bad input gets a precise error code and changes nothing.
async fn precise_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("p", 100, "auto").await;
    app.import_keys("p", 2).await;
    let ok = json!({"product": "p", "quantity": 1, "email": "a@b.cd", "method": "sandbox"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("product", json!("nope")), 404, "product_not_found"),
        (with("product", json!("../etc")), 404, "product_not_found"),
        (with("quantity", json!(0)), 422, "invalid_quantity"),
        (with("quantity", json!(101)), 422, "invalid_quantity"),
        (with("quantity", json!(3)), 409, "out_of_stock"),
        (with("email", json!("not-an-email")), 422, "invalid_email"),
        (with("method", json!("bitcoin")), 422, "unknown_method"),
        (with("method", json!("alipay")), 422, "unknown_method"),
        (with("device", json!("fridge")), 422, "invalid_device"),
        (with("query_password", json!("12")), 422, "invalid_password"),
        (with("quantity", json!("two")), 400, "invalid_json"),
        (json!({"product": "p"}), 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let (s, v) = app.try_order(body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.stock("p").await,
        json!(2),
        "refused orders reserve nothing"
    );

    // A query password is accepted and never echoed.
    let (s, v) = app.try_order(with("query_password", json!("0"))).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = app
        .try_order(with("query_password", json!("secret-pw")))
        .await;
    assert_eq!(s, 201);
    assert!(!v.to_string().contains("secret-pw"));

    // Admin endpoints need the admin token.
    for (method, path) in [
        ("GET", "/api/v1/admin/orders"),
        ("POST", "/api/v1/admin/products"),
        ("POST", "/api/v1/admin/products/p/cards"),
        ("GET", "/api/v1/admin/orders/K2026010100000000000000000"),
    ] {
        let req = app.http.request(method.parse().unwrap(), app.url(path));
        let r = req.try_clone().unwrap().send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let r = req.bearer_auth("wrong").send().await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    let admin = |body: serde_json::Value| app.admin_post("/api/v1/admin/products", body);
    let good =
        json!({"slug": "x", "title": "X", "price": 100, "currency": "CNY", "delivery": "auto"});
    let mk = |k: &str, v: serde_json::Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    for (body, status, code) in [
        (mk("slug", json!("Bad Slug")), 422, "invalid_slug"),
        (mk("price", json!(-1)), 422, "invalid_price"),
        (mk("currency", json!("XXX")), 422, "invalid_currency"),
        (mk("delivery", json!("drone")), 422, "invalid_delivery"),
        (mk("title", json!("")), 422, "invalid_title"),
        (mk("slug", json!("p")), 409, "product_exists"),
        (mk("stock", json!(5)), 422, "invalid_stock"),
        (
            json!({"slug": "m", "title": "M", "price": 1, "currency": "CNY", "delivery": "manual", "stock": i64::MAX}),
            422,
            "invalid_stock",
        ),
    ] {
        let (s, v) = admin(body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let r = app
        .http
        .post(app.url("/api/v1/admin/products/nope/cards"))
        .bearer_auth(&app.admin_token)
        .body("A\nB")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .post(app.url("/api/v1/admin/products/p/cards"))
        .bearer_auth(&app.admin_token)
        .body(vec![0xff, 0xfe, 0x41])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .http
        .get(app.url("/api/v1/admin/orders?status=bogus"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .http
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.stock("p").await, json!(1));
}
both_backends!(precise_errors);
