//! Coupons (issue 10 part 7): the seller's API (create, list, edit, delete or disable, audit
//! rows), applied on `POST /api/v1/orders` after wholesale tiers, every refusal reason as
//! `422 invalid_coupon` changing nothing, the last use under concurrent orders, uses given back
//! on expiry and cancellation, once per email.

use std::sync::Arc;

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

use crate::seller_products::{admin_call, audit};

const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

async fn create_coupon(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.admin_post("/api/v1/admin/coupons", body).await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn coupon(app: &TestApp, code: &str) -> Value {
    app.admin_get("/api/v1/admin/coupons").await["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn order_with(app: &TestApp, slug: &str, qty: u32, email: &str, code: &str) -> (u16, Value) {
    app.try_order(json!({"product": slug, "quantity": qty, "email": email,
                         "method": "sandbox", "coupon": code}))
        .await
}

fn refusal(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or(""),
        v["error"]["message"].as_str().unwrap_or(""),
    )
}

async fn percent_coupon_applies_after_tiers_and_is_recorded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1230, "auto").await;
    app.import_keys("vip", 10).await;
    let (s, v) = admin_call(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/admin/products/vip",
        Some(&json!({"tiers": [{"min_quantity": 5, "price": 1100}]}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c = create_coupon(
        &app,
        json!({"code": "spring-15", "kind": "percent", "value": 1500}),
    )
    .await;
    assert_eq!(c["code"], "SPRING-15", "codes are stored upper-case");
    assert_eq!(c["used"], 0);

    // One piece: 12.30 − floor(1.845) = 10.46.
    let (s, one) = order_with(&app, "vip", 1, "a@example.com", "Spring-15").await;
    assert_eq!(s, 201, "{one}");
    assert_eq!(
        (one["amount"].clone(), one["discount"].clone()),
        (json!(1046), json!(184))
    );
    // Five pieces at the tier price: 55.00 − 8.25 = 46.75.
    let (s, five) = order_with(&app, "vip", 5, "b@example.com", "spring-15").await;
    assert_eq!(s, 201, "{five}");
    assert_eq!(
        (five["amount"].clone(), five["discount"].clone()),
        (json!(4675), json!(825))
    );

    let no = one["order_no"].as_str().unwrap();
    let admin = app.admin_order(no).await;
    assert_eq!(admin["coupon"], "SPRING-15");
    assert_eq!(admin["discount"], 184);
    assert_eq!(admin["amount"], 1046);
    assert_eq!(coupon(&app, "SPRING-15").await["used"], 2);

    // Paid at the discounted amount and delivered.
    app.pay(&one).await;
    let paid = app.wait_settled(&one).await;
    assert_eq!(paid["status"], "delivered", "{paid}");
    assert_eq!(paid["amount"], 1046);

    // Without a coupon (or with a blank one) the full price.
    let (s, plain) = order_with(&app, "vip", 1, "c@example.com", "  ").await;
    assert_eq!(s, 201, "{plain}");
    assert_eq!(plain["amount"], 1230);
    assert!(plain.get("discount").is_none(), "{plain}");
}
both_backends!(percent_coupon_applies_after_tiers_and_is_recorded);

async fn every_refusal_is_precise_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1000, "auto").await;
    app.create_product("other", 1000, "auto").await;
    app.import_keys("vip", 5).await;
    app.import_keys("other", 5).await;
    for body in [
        json!({"code": "OFF", "kind": "fixed", "value": 100, "currency": "CNY", "enabled": false}),
        json!({"code": "LATER", "kind": "percent", "value": 1000, "valid_from": "2099-01-01T00:00:00Z"}),
        json!({"code": "OVER", "kind": "percent", "value": 1000, "valid_to": "2001-01-01T00:00:00+08:00"}),
        json!({"code": "ONLY-OTHER", "kind": "percent", "value": 1000, "products": ["other"]}),
        json!({"code": "BIG-ONLY", "kind": "percent", "value": 1000, "currency": "CNY", "min_amount": 2000}),
        json!({"code": "DOLLAR", "kind": "fixed", "value": 100, "currency": "USD"}),
        json!({"code": "ALL", "kind": "fixed", "value": 1000, "currency": "CNY"}),
        json!({"code": "ONCE", "kind": "percent", "value": 1000, "max_uses": 1}),
        json!({"code": "MINE", "kind": "percent", "value": 1000, "once_per_email": true}),
    ] {
        create_coupon(&app, body).await;
    }
    // Take ONCE's only use and MINE's use for a@example.com.
    assert_eq!(
        order_with(&app, "vip", 1, "z@example.com", "once").await.0,
        201
    );
    assert_eq!(
        order_with(&app, "vip", 1, "a@example.com", "mine").await.0,
        201
    );
    let stock = app.stock("vip").await;
    let used_before: Vec<Value> = app.admin_get("/api/v1/admin/coupons").await["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["used"].clone())
        .collect();

    for (code, product, expected) in [
        ("NOPE", "vip", "there is no coupon with this code"),
        ("no such code!", "vip", "there is no coupon with this code"),
        ("off", "vip", "this coupon is no longer active"),
        ("LATER", "vip", "this coupon is not valid yet"),
        ("OVER", "vip", "this coupon has expired"),
        ("ONLY-OTHER", "vip", "this coupon is not for this product"),
        (
            "BIG-ONLY",
            "vip",
            "this coupon needs an order total of at least 20.00 CNY",
        ),
        ("DOLLAR", "vip", "this coupon is only for orders in USD"),
        ("ALL", "vip", "this coupon would make the order free"),
        ("ONCE", "vip", "this coupon has been used up"),
        (
            "MINE",
            "vip",
            "this coupon was already used with this email",
        ),
    ] {
        let (s, v) = order_with(&app, product, 1, "A@example.com", code).await;
        assert_eq!(s, 422, "{code}: {v}");
        let (c, msg) = refusal(&v);
        assert_eq!(c, "invalid_coupon", "{code}: {v}");
        assert!(msg.starts_with(expected), "{code}: {msg}");
    }
    assert_eq!(
        app.stock("vip").await,
        stock,
        "no stock taken by a refused order"
    );
    let used_after: Vec<Value> = app.admin_get("/api/v1/admin/coupons").await["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["used"].clone())
        .collect();
    assert_eq!(used_after, used_before, "no use counted by a refused order");
    // The same coupons work where they apply.
    assert_eq!(
        order_with(&app, "other", 1, "a@example.com", "only-other")
            .await
            .0,
        201
    );
    assert_eq!(
        order_with(&app, "vip", 2, "a@example.com", "big-only")
            .await
            .0,
        201
    );
    assert_eq!(
        order_with(&app, "vip", 1, "b@example.com", "mine").await.0,
        201
    );
}
both_backends!(every_refusal_is_precise_and_changes_nothing);

/// 20 buyers at once for a coupon's last use: exactly one order gets it.
async fn last_use_goes_to_exactly_one_of_twenty(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    app.create_product("vip", 1000, "manual").await;
    create_coupon(
        &app,
        json!({"code": "LAST", "kind": "fixed", "value": 300, "currency": "CNY", "max_uses": 3}),
    )
    .await;
    for i in 0..2 {
        assert_eq!(
            order_with(&app, "vip", 1, &format!("early{i}@example.com"), "LAST")
                .await
                .0,
            201
        );
    }
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                order_with(&app, "vip", 1, &format!("b{i}@example.com"), "last").await
            })
        })
        .collect();
    let (mut won, mut used_up) = (0, 0);
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            201 => {
                assert_eq!(v["amount"], 700, "{v}");
                won += 1;
            }
            422 => {
                assert_eq!(
                    refusal(&v),
                    ("invalid_coupon", "this coupon has been used up")
                );
                used_up += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((won, used_up), (1, 19));
    assert_eq!(coupon(&app, "LAST").await["used"], 3);
    assert_eq!(app.admin_orders("pending").await.len(), 3);
}
both_backends!(last_use_goes_to_exactly_one_of_twenty);

async fn uses_come_back_when_unpaid_orders_expire_or_are_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 5).await;
    create_coupon(
        &app,
        json!({"code": "ONE", "kind": "percent", "value": 5000, "max_uses": 1, "once_per_email": true}),
    )
    .await;
    let (s, first) = order_with(&app, "vip", 1, "a@example.com", "ONE").await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(coupon(&app, "ONE").await["used"], 1);
    assert_eq!(
        order_with(&app, "vip", 1, "b@example.com", "ONE").await.0,
        422
    );

    // Expired unpaid: the use is back, and the email may use it again.
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    assert_eq!(coupon(&app, "ONE").await["used"], 0);
    // Expiring again gives nothing back twice.
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    assert_eq!(coupon(&app, "ONE").await["used"], 0);
    let (s, second) = order_with(&app, "vip", 1, "a@example.com", "ONE").await;
    assert_eq!(s, 201, "{second}");

    // Cancelled by the seller: back too.
    let no = second["order_no"].as_str().unwrap();
    let (s, v) = app
        .admin_post(&format!("/api/v1/admin/orders/{no}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(coupon(&app, "ONE").await["used"], 0);

    // A paid order keeps its use (and counts for once per email).
    let (s, third) = order_with(&app, "vip", 1, "c@example.com", "ONE").await;
    assert_eq!(s, 201, "{third}");
    app.pay(&third).await;
    assert_eq!(app.wait_settled(&third).await["status"], "delivered");
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    assert_eq!(coupon(&app, "ONE").await["used"], 1);
    let (s, v) = admin_call(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/admin/coupons/one",
        Some(r#"{"max_uses": null}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = order_with(&app, "vip", 1, "c@example.com", "ONE").await;
    assert_eq!(
        refusal(&v).1,
        "this coupon was already used with this email",
        "{s} {v}"
    );
}
both_backends!(uses_come_back_when_unpaid_orders_expire_or_are_cancelled);

async fn seller_manages_coupons_with_audit_rows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1000, "manual").await;
    let c = create_coupon(
        &app,
        json!({"code": "summer", "kind": "fixed", "value": 250, "currency": "CNY",
               "products": ["vip"], "valid_from": "2026-06-01T00:00:00+08:00",
               "valid_to": "2026-09-01T00:00:00+08:00", "max_uses": 100,
               "once_per_email": true, "min_amount": 1000}),
    )
    .await;
    assert_eq!(c["valid_from"], "2026-05-31T16:00:00Z");
    assert_eq!(c["products"], json!(["vip"]));
    assert_eq!(c["enabled"], true);
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/coupons",
            json!({"code": "SUMMER", "kind": "percent", "value": 10}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("coupon_exists")),
        "{v}"
    );

    // Bad settings: precise, nothing created.
    for (body, code) in [
        (
            json!({"code": "X", "kind": "percent", "value": 10}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "P0", "kind": "percent", "value": 0}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "P-BIG", "kind": "percent", "value": 10001}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "F-NOCUR", "kind": "fixed", "value": 100}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "F-NEG", "kind": "fixed", "value": -1, "currency": "CNY"}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "WIN", "kind": "percent", "value": 10, "valid_from": "2026-02-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "WHEN", "kind": "percent", "value": 10, "valid_to": "tomorrow"}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "KIND", "kind": "free", "value": 10}),
            "invalid_coupon_settings",
        ),
        (
            json!({"code": "EXTRA", "kind": "percent", "value": 10, "price": 1}),
            "invalid_field",
        ),
    ] {
        let (s, v) = app.admin_post("/api/v1/admin/coupons", body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}: {v}"
        );
    }
    assert_eq!(
        app.admin_get("/api/v1/admin/coupons").await["coupons"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (s, v) = admin_call(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/admin/coupons/Summer",
        Some(&json!({"value": 300, "valid_to": null, "products": []}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["value"].clone(), v["valid_to"].clone()),
        (json!(300), Value::Null)
    );
    let (s, _) = admin_call(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/admin/coupons/NOPE",
        Some("{}"),
    )
    .await;
    assert_eq!(s, 404);

    // Unused: deleted. Used: disabled.
    create_coupon(
        &app,
        json!({"code": "GONE", "kind": "percent", "value": 10}),
    )
    .await;
    let (s, v) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/coupons/gone",
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({"deleted": true, "disabled": false})));
    create_coupon(
        &app,
        json!({"code": "KEPT", "kind": "percent", "value": 10}),
    )
    .await;
    assert_eq!(
        order_with(&app, "vip", 1, "a@example.com", "KEPT").await.0,
        201
    );
    let (s, v) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/coupons/KEPT",
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({"deleted": false, "disabled": true})));
    assert_eq!(coupon(&app, "KEPT").await["enabled"], false);
    assert_eq!(coupon(&app, "GONE").await, Value::Null);

    let rows = audit(&app, "coupon:SUMMER").await;
    let actions: Vec<&str> = rows.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, ["coupon.create", "coupon.update"]);
    assert_eq!(rows[0].entry.actor, "token:test");
    assert_eq!(rows[0].entry.after.as_ref().unwrap()["value"], 250);
    assert_eq!(
        rows[1].entry.before,
        Some(json!({"value": 250, "valid_to": 1_788_192_000_000_i64, "products": ["vip"]}))
    );
    assert_eq!(
        rows[1].entry.after,
        Some(json!({"value": 300, "valid_to": null, "products": []}))
    );
    let gone: Vec<String> = audit(&app, "coupon:GONE")
        .await
        .iter()
        .map(|r| r.entry.action.clone())
        .collect();
    assert_eq!(gone, ["coupon.create", "coupon.delete"]);
    let kept: Vec<String> = audit(&app, "coupon:KEPT")
        .await
        .iter()
        .map(|r| r.entry.action.clone())
        .collect();
    assert_eq!(kept, ["coupon.create", "coupon.disable"]);
}
both_backends!(seller_manages_coupons_with_audit_rows);
