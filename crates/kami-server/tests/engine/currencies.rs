//! Prices in more than one currency (issue 12 part 5), on both backends: a CNY product paid
//! through PayPal (which never takes CNY) is charged in USD at the `[fx]` rate with its
//! rounding rule, or at the product's own USD price when it has one; a JPY product (no minor
//! digits) paid through a CNY-only gateway is converted exactly; with neither a price nor a
//! rate the method is not offered and an order for it is refused, nothing kept; the rate
//! table is edited through the settings API and bad rates change nothing.

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

const RATES: &str = "[fx]\nrounding = \"up\"\n[fx.rates]\nUSD = \"7.245\"\nJPY = \"0.0485\"\n";

async fn product(app: &TestApp, slug: &str, price: i64, currency: &str, extra: Value) {
    let mut body = json!({"slug": slug, "title": format!("Product {slug}"), "price": price,
                          "currency": currency, "delivery": "auto"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = app.admin_post("/api/v1/admin/products", body).await;
    assert_eq!(s, 201, "{v}");
    app.import_keys(slug, 5).await;
}

fn methods(p: &Value) -> Vec<String> {
    p["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

fn order_no(order: &Value) -> &str {
    order["order_no"].as_str().unwrap()
}

async fn cny_product_paid_with_paypal_at_the_rate(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, RATES).await;
    product(&app, "cn", 6900, "CNY", json!({})).await;
    assert!(methods(&app.product("cn").await).contains(&"paypal".to_owned()));
    let order = app.order_via("cn", "paypal", "pc").await;
    // The order is ¥69.00; PayPal charges ¥69.00 / 7.245 = US$9.5238…, rounded up.
    assert_eq!(
        (order["amount"].as_i64(), order["currency"].as_str()),
        (Some(6900), Some("CNY")),
        "{order}"
    );
    assert_eq!(
        order["charge"],
        json!({"amount": 953, "currency": "USD"}),
        "{order}"
    );
    let id = gw.paypal.order_for_trade(order_no(&order)).unwrap();
    // Duplicate webhooks, one delivery.
    let (s, body) = app.pay_in_browser(&order, "duplicate").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(
        v["charge"],
        json!({"amount": 953, "currency": "USD"}),
        "{v}"
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    // The seller's record names both amounts and how the charge followed.
    let admin = app.admin_order(order_no(&order)).await;
    assert_eq!(
        (admin["amount"].as_i64(), admin["currency"].as_str()),
        (Some(6900), Some("CNY")),
        "{admin}"
    );
    assert_eq!(admin["charge"]["currency"], "USD", "{admin}");
    let paid = &admin["payments"][0];
    assert_eq!(
        (
            paid["amount"].as_i64(),
            paid["currency"].as_str(),
            paid["status"].as_str()
        ),
        (Some(953), Some("USD"), Some("paid")),
        "{admin}"
    );
    assert_eq!(
        paid["charge_basis"], "1 USD = 7.245 CNY, rounded up",
        "{admin}"
    );
    // Refunds are in what was charged.
    let (s, r) = app.refund(order_no(&order), json!({})).await;
    assert_eq!(
        (
            s,
            r["order_status"].as_str(),
            r["amount"].as_i64(),
            r["currency"].as_str()
        ),
        (200, Some("refunded"), Some(953), Some("USD")),
        "{r}"
    );
    assert_eq!(gw.paypal.refunded_total(&id), 953);
}
both_backends!(cny_product_paid_with_paypal_at_the_rate);

async fn the_products_own_price_wins_over_the_rate(backend: Backend) {
    let (app, _gw) = TestApp::spawn_gateways_keeping(backend, RATES).await;
    product(&app, "own", 6900, "CNY", json!({"prices": {"USD": 999}})).await;
    assert_eq!(app.product("own").await["prices"], json!({"USD": 999}));
    let (s, order) = app
        .try_order(
            json!({"product": "own", "quantity": 2, "email": "buyer@example.com",
                          "method": "paypal", "device": "pc"}),
        )
        .await;
    assert_eq!(s, 201, "{order}");
    // Two at the own price exactly, not 2 × ¥69.00 at the rate.
    assert_eq!(order["amount"], 13800, "{order}");
    assert_eq!(
        order["charge"],
        json!({"amount": 1998, "currency": "USD"}),
        "{order}"
    );
    // The same product through a channel that takes CNY is charged CNY, no charge shown.
    let cny = app.order_via("own", "alipay", "pc").await;
    assert_eq!(cny["amount"], 6900, "{cny}");
    assert!(cny.get("charge").is_none(), "{cny}");
}
both_backends!(the_products_own_price_wins_over_the_rate);

async fn a_jpy_product_is_converted_to_whole_fen(backend: Backend) {
    let (app, _gw) = TestApp::spawn_gateways_keeping(backend, RATES).await;
    product(&app, "jp", 1500, "JPY", json!({})).await;
    let order = app.order_via("jp", "alipay", "pc").await;
    // ¥1500 (JPY) × 0.0485 = ¥72.75 (CNY) exactly: 7275 fen, no rounding.
    assert_eq!(
        (order["amount"].as_i64(), order["currency"].as_str()),
        (Some(1500), Some("JPY")),
        "{order}"
    );
    assert_eq!(
        order["charge"],
        json!({"amount": 7275, "currency": "CNY"}),
        "{order}"
    );
    let (s, body) = app.pay_in_browser(&order, "normal").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
}
both_backends!(a_jpy_product_is_converted_to_whole_fen);

async fn without_a_price_or_rate_the_method_is_not_offered(backend: Backend) {
    let (app, _gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    product(&app, "cn", 6900, "CNY", json!({})).await;
    let p = app.product("cn").await;
    assert!(!methods(&p).contains(&"paypal".to_owned()), "{p}");
    assert!(methods(&p).contains(&"alipay".to_owned()), "{p}");
    let (s, v) = app
        .try_order(
            json!({"product": "cn", "quantity": 1, "email": "buyer@example.com",
                          "method": "paypal", "device": "pc"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("currency_not_accepted")),
        "{v}"
    );
    // Nothing kept: no order, no key held.
    assert_eq!(app.stock("cn").await, json!(5));
    let list = app.admin_get("/api/v1/admin/orders").await;
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(0), "{list}");

    // Bad prices are refused, naming the problem, and change nothing.
    for (prices, code) in [
        (json!({"CNY": 100}), "invalid_pricing"),
        (json!({"XXX": 100}), "invalid_prices"),
        (json!({"USD": 0}), "invalid_prices"),
        (json!({"USD": -5}), "invalid_prices"),
        (json!({"USD": "1.00"}), "invalid_request"),
    ] {
        let (s, v) = app
            .admin_patch("/api/v1/admin/products/cn", json!({ "prices": prices }))
            .await;
        assert_eq!(s, 422, "{prices}: {v}");
        assert!(v["error"]["code"].as_str().is_some(), "{v}");
        let got = v["error"]["code"].as_str().unwrap();
        assert!(
            got == code || code == "invalid_request",
            "{prices}: {got} (wanted {code})"
        );
    }
    assert_eq!(app.product("cn").await["prices"], json!({}));
    // A USD price of its own makes PayPal available, at that price.
    let (s, v) = app
        .admin_patch("/api/v1/admin/products/cn", json!({"prices": {"USD": 150}}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(methods(&app.product("cn").await).contains(&"paypal".to_owned()));
    let order = app.order_via("cn", "paypal", "pc").await;
    assert_eq!(
        order["charge"],
        json!({"amount": 150, "currency": "USD"}),
        "{order}"
    );
}
both_backends!(without_a_price_or_rate_the_method_is_not_offered);

/// `PATCH /api/v1/admin/settings`.
async fn save(app: &TestApp, body: Value) -> (u16, Value) {
    app.admin_patch("/api/v1/admin/settings", body).await
}

async fn the_rate_table_is_edited_in_the_settings(backend: Backend) {
    let (app, _gw) = TestApp::spawn_gateways_keeping(backend, RATES).await;
    product(&app, "cn", 6900, "CNY", json!({})).await;
    // Bad tables are refused whole, naming the key; the rates in effect stay.
    for bad in [
        json!({"fx.rates": ["USD abc"]}),
        json!({"fx.rates": ["USD -7"]}),
        json!({"fx.rates": ["XXX 1"]}),
        json!({"fx.rates": ["CNY 1"]}),
        json!({"fx.rates": ["USD 7", "USD 8"]}),
        json!({"fx.rates": "USD 7"}),
        json!({"fx.rounding": "sideways"}),
    ] {
        let (s, v) = save(&app, bad.clone()).await;
        assert_eq!(s, 422, "{bad}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("fx."), "{bad}: {msg}");
    }
    let order = app.order_via("cn", "paypal", "pc").await;
    assert_eq!(order["charge"]["amount"], 953, "{order}");
    // A new rate and rounding hold from the next order on.
    let (s, v) = save(
        &app,
        json!({"fx.rates": ["USD = 7"], "fx.rounding": "down"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let settings = app.admin_get("/api/v1/admin/settings").await;
    let shown = serde_json::to_string(&settings).unwrap();
    assert!(shown.contains("USD 7"), "{shown}");
    // ¥69.00 / 7 = US$9.857…, rounded down.
    let order = app.order_via("cn", "paypal", "pc").await;
    assert_eq!(
        order["charge"],
        json!({"amount": 985, "currency": "USD"}),
        "{order}"
    );
    // Without USD in the table PayPal is no longer offered.
    let (s, v) = save(&app, json!({"fx.rates": ["JPY 0.05"]})).await;
    assert_eq!(s, 200, "{v}");
    assert!(!methods(&app.product("cn").await).contains(&"paypal".to_owned()));
}
both_backends!(the_rate_table_is_edited_in_the_settings);
