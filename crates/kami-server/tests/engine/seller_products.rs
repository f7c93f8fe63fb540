//! Seller operations on products (DESIGN 4.3 "Seller operations"): the admin product list,
//! PATCH (price changes reach the next order only, validation changes nothing), hide and
//! delete, the buyer's input fields on orders, audit rows, the admin order list's order.

use serde_json::{json, Value};

use kami_store::AuditFilter;
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

/// (status, JSON body) of an admin request with any method; a non-JSON body as `{"raw"}`.
pub async fn admin_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.admin_token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, v)
}

pub async fn patch(app: &TestApp, slug: &str, body: Value) -> (u16, Value) {
    admin_call(
        app,
        reqwest::Method::PATCH,
        &format!("/api/v1/admin/products/{slug}"),
        Some(&body.to_string()),
    )
    .await
}

pub async fn admin_product(app: &TestApp, slug: &str) -> Option<Value> {
    app.admin_get("/api/v1/admin/products").await["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slug"] == slug)
        .cloned()
}

/// The `product.*` audit rows of a product, oldest first (imports write rows of their own).
async fn product_audit(app: &TestApp, slug: &str) -> Vec<kami_store::AuditRecord> {
    let mut rows = audit(app, &format!("product:{slug}")).await;
    // The changes made after its creation (creating is audited too, as `product.create`).
    rows.retain(|r| r.entry.action.starts_with("product.") && r.entry.action != "product.create");
    rows
}

/// The audit rows about `target`, oldest first.
pub async fn audit(app: &TestApp, target: &str) -> Vec<kami_store::AuditRecord> {
    let mut rows = app
        .state
        .store
        .audit_log(AuditFilter {
            target: Some(target.into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

fn in_catalogue(catalogue: &Value, slug: &str) -> bool {
    catalogue["products"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["slug"] == slug)
}

async fn price_change_reaches_the_next_order_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 3).await;
    let pending = app.order("vip", 1).await;
    assert_eq!(pending["amount"], 1000);

    let (s, v) = patch(&app, "vip", json!({"price": 800})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["price"], 800);
    assert_eq!(
        app.product("vip").await["price"],
        800,
        "the catalogue at once"
    );

    let next = app.order("vip", 1).await;
    assert_eq!(
        next["amount"], 800,
        "the next order is charged the new price"
    );
    let no = pending["order_no"].as_str().unwrap();
    assert_eq!(
        app.admin_order(no).await["amount"],
        1000,
        "a pending one keeps its own"
    );
    // It is still paid at what it was charged, and delivered.
    app.pay(&pending).await;
    let paid = app.wait_settled(&pending).await;
    assert_eq!(paid["status"], "delivered", "{paid}");
    assert_eq!(paid["amount"], 1000);

    let rows = product_audit(&app, "vip").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let e = &rows[0].entry;
    assert_eq!(
        (e.actor.as_str(), e.action.as_str()),
        ("token:test", "product.update")
    );
    assert_eq!(e.before, Some(json!({"price": 1000})));
    assert_eq!(e.after, Some(json!({"price": 800})));
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));

    // The same price again changes nothing and writes no row.
    assert_eq!(patch(&app, "vip", json!({"price": 800})).await.0, 200);
    assert_eq!(product_audit(&app, "vip").await.len(), 1);
}
both_backends!(price_change_reaches_the_next_order_only);

async fn every_field_is_patched_and_listed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("pack", 1000, "auto").await;
    app.import_keys("pack", 2).await;
    let (s, v) = patch(
        &app,
        "pack",
        json!({"title": "  Big pack ", "description": "**new**", "category": "Games",
               "tiers": [{"min_quantity": 5, "price": 900}], "min_quantity": 2,
               "max_quantity": 20, "sort_order": -3,
               "input_fields": [{"name": "account", "label": "Account", "required": true,
                                 "pattern": "[0-9]+"}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let listed = admin_product(&app, "pack").await.unwrap();
    assert_eq!(listed, v, "the answer is the product as listed");
    assert_eq!(v["title"], "Big pack");
    assert_eq!(v["description"], "**new**");
    assert_eq!(v["category"], "Games");
    assert_eq!(v["tiers"], json!([{"min_quantity": 5, "price": 900}]));
    assert_eq!(
        (v["min_quantity"].clone(), v["max_quantity"].clone()),
        (json!(2), json!(20))
    );
    assert_eq!(v["sort_order"], -3);
    assert_eq!(
        v["input_fields"],
        json!([{"name": "account", "label": "Account", "required": true, "pattern": "[0-9]+"}])
    );
    assert_eq!(v["visible"], true);
    assert_eq!(v["has_orders"], false);
    assert_eq!(
        v["stock"],
        json!({"available": 2, "reserved": 0, "sold": 0, "loop": 0, "manual": null})
    );
    let public = app.product("pack").await;
    assert_eq!(public["title"], "Big pack");
    assert_eq!(public["tiers"], json!([{"min_quantity": 5, "price": 900}]));

    // One audit row, with exactly the changed fields.
    let rows = product_audit(&app, "pack").await;
    assert_eq!(rows.len(), 1);
    let before = rows[0].entry.before.clone().unwrap();
    let after = rows[0].entry.after.clone().unwrap();
    let mut changed: Vec<&String> = after.as_object().unwrap().keys().collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            "category",
            "description",
            "input_fields",
            "max_quantity",
            "min_quantity",
            "sort_order",
            "tiers",
            "title"
        ]
    );
    assert_eq!(before["title"], "Product pack");
    assert_eq!(before["tiers"], json!([]));
    assert_eq!(after["max_quantity"], 20);
}
both_backends!(every_field_is_patched_and_listed);

async fn bad_patches_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("safe", 1000, "auto").await;
    let before = admin_product(&app, "safe").await.unwrap();
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"price": -1}"#, 422, "invalid_price"),
        (r#"{"price": 1e3}"#, 422, "invalid_field"),
        (r#"{"price": "9.90"}"#, 422, "invalid_field"),
        (r#"{"colour": "red"}"#, 422, "invalid_field"),
        (r#"{"title": "ok", "colour": "red"}"#, 422, "invalid_field"),
        (
            r#"{"min_quantity": 5, "max_quantity": 2}"#,
            422,
            "invalid_pricing",
        ),
        (r#"{"max_quantity": 0}"#, 422, "invalid_pricing"),
        (r#"{"min_quantity": 200}"#, 422, "invalid_pricing"),
        (
            r#"{"tiers": [{"min_quantity": 1, "price": 900}]}"#,
            422,
            "invalid_tiers",
        ),
        (
            r#"{"tiers": [{"min_quantity": 5, "price": -1}]}"#,
            422,
            "invalid_tiers",
        ),
        (
            r#"{"tiers": [{"min_quantity": 5, "price": 900, "x": 1}]}"#,
            422,
            "invalid_field",
        ),
        (r#"{"title": "   "}"#, 422, "invalid_title"),
        (
            r#"{"input_fields": [{"name": "a", "label": "A", "pattern": "(unclosed"}]}"#,
            422,
            "invalid_input_fields",
        ),
        (
            r#"{"input_fields": [{"name": "a", "label": "A", "pattern": "\\w{1000}\\w{1000}"}]}"#,
            422,
            "invalid_input_fields",
        ),
        (
            r#"{"input_fields": [{"name": "1a", "label": "A"}]}"#,
            422,
            "invalid_input_fields",
        ),
        (
            r#"{"input_fields": [{"name": "a", "label": "A", "secret": true}]}"#,
            422,
            "invalid_field",
        ),
        (r#"{"price": 800"#, 400, "invalid_json"),
        (r#"[1]"#, 422, "invalid_field"),
    ];
    for (body, status, code) in cases {
        let (s, v) = admin_call(
            &app,
            reqwest::Method::PATCH,
            "/api/v1/admin/products/safe",
            Some(body),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{body}: {v}"
        );
    }
    // A valid change of another field alongside a bad one: nothing either.
    let (s, _) = patch(&app, "safe", json!({"title": "New", "price": -5})).await;
    assert_eq!(s, 422);
    assert_eq!(admin_product(&app, "safe").await.unwrap(), before);
    assert!(product_audit(&app, "safe").await.is_empty());

    let (s, v) = patch(&app, "nope", json!({"price": 1})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("product_not_found"))
    );
    // Not JSON: 415.
    let r = app
        .http
        .patch(app.url("/api/v1/admin/products/safe"))
        .bearer_auth(&app.admin_token)
        .body(r#"{"price": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}
both_backends!(bad_patches_change_nothing);

async fn hiding_and_deleting(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("quiet", 500, "auto").await;
    app.import_keys("quiet", 2).await;

    // Hidden: gone from the buyer's catalogue, ordering refused; back when shown again.
    let (s, v) = patch(&app, "quiet", json!({"visible": false})).await;
    assert_eq!((s, v["visible"].clone()), (200, json!(false)));
    assert!(!in_catalogue(
        &app.get_json("/api/v1/products").await,
        "quiet"
    ));
    let (s, v) = app
        .try_order(
            json!({"product": "quiet", "quantity": 1, "email": "b@example.com",
                          "method": "sandbox"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("product_not_found"))
    );
    let page = app.http.get(app.url("/p/quiet")).send().await.unwrap();
    assert_eq!(page.status(), 404, "no product page either");
    assert_eq!(
        admin_product(&app, "quiet").await.unwrap()["visible"],
        false
    );
    patch(&app, "quiet", json!({"visible": true})).await;
    assert!(in_catalogue(
        &app.get_json("/api/v1/products").await,
        "quiet"
    ));
    let rows = product_audit(&app, "quiet").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].entry.after, Some(json!({"visible": false})));
    assert_eq!(rows[1].entry.after, Some(json!({"visible": true})));

    // No orders: deleted, with its keys.
    let (s, v) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/products/quiet",
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({"deleted": true, "hidden": false})));
    assert!(admin_product(&app, "quiet").await.is_none());
    let url = app.db_url.clone();
    assert_eq!(
        kami_testkit::inspect::scalar(&url, "SELECT COUNT(*) FROM cards").await,
        0
    );
    let rows = product_audit(&app, "quiet").await;
    assert_eq!(rows.last().unwrap().entry.action, "product.delete");
    let (s, v) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/products/quiet",
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("product_not_found"))
    );
    // The slug is free again.
    app.create_product("quiet", 500, "auto").await;

    // With orders: hidden instead, its orders intact.
    app.create_product("sold", 500, "auto").await;
    app.import_keys("sold", 2).await;
    let order = app.order("sold", 1).await;
    app.pay(&order).await;
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");
    let (s, v) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/products/sold",
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({"deleted": false, "hidden": true})));
    let listed = admin_product(&app, "sold").await.unwrap();
    assert_eq!(
        (listed["visible"].clone(), listed["has_orders"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(listed["stock"]["sold"], 1);
    assert!(!in_catalogue(
        &app.get_json("/api/v1/products").await,
        "sold"
    ));
    let no = order["order_no"].as_str().unwrap();
    let (s, v) = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(
        (s, v["cards"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    let rows = product_audit(&app, "sold").await;
    let e = &rows.last().unwrap().entry;
    assert_eq!(e.action, "product.hide");
    assert_eq!(
        (e.before.clone(), e.after.clone()),
        (
            Some(json!({"visible": true})),
            Some(json!({"visible": false}))
        )
    );
}
both_backends!(hiding_and_deleting);

async fn input_fields_on_order_creation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("topup", 500, "manual").await;
    let (s, v) = patch(
        &app,
        "topup",
        json!({"input_fields": [
            {"name": "account", "label": "Game account", "required": true, "pattern": "[0-9]{5,12}"},
            {"name": "note", "label": "Note"}
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        app.product("topup").await["input_fields"],
        v["input_fields"],
        "the buyer's catalogue says what to send"
    );
    let order = |fields: Value| {
        let app = &app;
        async move {
            app.try_order(
                json!({"product": "topup", "quantity": 1, "email": "b@example.com",
                                 "method": "sandbox", "fields": fields}),
            )
            .await
        }
    };
    for (fields, why) in [
        (json!({}), "required missing"),
        (json!({"account": "   "}), "required blank"),
        (
            json!({"account": "12345x"}),
            "pattern must match the whole answer",
        ),
        (json!({"account": "1234"}), "too short for the pattern"),
        (json!({"account": "12345", "other": "x"}), "unknown field"),
        (
            json!({"account": "12345", "note": "n".repeat(501)}),
            "too long",
        ),
    ] {
        let (s, v) = order(fields).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("invalid_fields")),
            "{why}: {v}"
        );
    }
    let (s, v) = order(json!({"account": 12345})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{v}"
    );
    assert!(
        app.admin_orders("").await.is_empty(),
        "no refused order was stored"
    );

    let (s, placed) = order(json!({"account": " 123456 ", "note": "星期五前"})).await;
    assert_eq!(s, 201, "{placed}");
    let no = placed["order_no"].as_str().unwrap();
    let admin = app.admin_order(no).await;
    assert_eq!(
        admin["fields"],
        json!({"account": "123456", "note": "星期五前"})
    );
    // The buyer's own view does not echo them; at rest they are sealed.
    let (_, buyer) = app
        .read_order(no, placed["access_token"].as_str().unwrap(), 0)
        .await;
    assert!(buyer.get("fields").is_none(), "{buyer}");
    let census = app.state.store.sealed_census().await.unwrap();
    assert!(census.iter().all(|(key, _)| key.is_some()), "{census:?}");
    assert_eq!(census.iter().map(|(_, n)| n).sum::<u64>(), 1);
    assert_eq!(app.state.store.verify_secrets().await.unwrap(), 1);

    // A product without fields takes none.
    app.create_product("plain", 500, "manual").await;
    let (s, v) = app
        .try_order(
            json!({"product": "plain", "quantity": 1, "email": "b@example.com",
                          "method": "sandbox", "fields": {"x": "1"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_fields"))
    );
    let plain = app.order("plain", 1).await;
    let admin = app.admin_order(plain["order_no"].as_str().unwrap()).await;
    assert_eq!(admin["fields"], json!({}));
}
both_backends!(input_fields_on_order_creation);

async fn admin_orders_are_listed_by_creation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("many", 100, "manual").await;
    let mut created = Vec::new();
    for _ in 0..8 {
        created.push(
            app.order("many", 1).await["order_no"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    created.reverse();
    let listed: Vec<String> = app
        .admin_orders("")
        .await
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, created, "newest first by creation");
    // Paged three at a time, with a status filter.
    let mut paged = Vec::new();
    let mut before = String::new();
    loop {
        let r = app
            .admin_get(&format!(
                "/api/v1/admin/orders?status=pending&limit=3&before={before}"
            ))
            .await;
        paged.extend(
            r["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_no"].as_str().unwrap().to_owned()),
        );
        match r["next_before"].as_str() {
            Some(n) => before = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, created);
}
both_backends!(admin_orders_are_listed_by_creation);

async fn seller_routes_need_the_admin_token(backend: Backend) {
    // Each refusal from its own address (through a trusted proxy): the per-address lock-out
    // after 10 failures a minute would otherwise answer 429.
    let app =
        TestApp::spawn_with(backend, "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    app.create_product("locked", 100, "auto").await;
    app.import_keys("locked", 1).await;
    let before = admin_product(&app, "locked").await.unwrap();
    let routes = [
        (reqwest::Method::GET, "/api/v1/admin/products"),
        (reqwest::Method::PATCH, "/api/v1/admin/products/locked"),
        (reqwest::Method::DELETE, "/api/v1/admin/products/locked"),
        (reqwest::Method::GET, "/api/v1/admin/products/locked/cards"),
        (
            reqwest::Method::DELETE,
            "/api/v1/admin/products/locked/cards?all=unsold",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/admin/products/locked/cards/1",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/admin/products/locked/cards.csv",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/admin/products/locked/batches",
        ),
        (reqwest::Method::POST, "/api/v1/admin/products/locked/cards"),
    ];
    let mut client = 0;
    for (method, path) in routes {
        for token in [None, Some("not-a-token")] {
            client += 1;
            let mut req = app
                .http
                .request(method.clone(), app.url(path))
                .header("x-forwarded-for", format!("198.51.100.{client}"))
                .header("content-type", "application/json")
                .body(r#"{"price": 1}"#);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(admin_product(&app, "locked").await.unwrap(), before);
    assert!(product_audit(&app, "locked")
        .await
        .iter()
        .all(|r| r.entry.action == "cards.import"));
}
both_backends!(seller_routes_need_the_admin_token);
