//! The products pages: the list with stock, show/hide, and the edit form (exact price in
//! major units, tiers, limits, input fields) whose saved price the next order pays.

use kami_testkit::{both_backends, Backend};
use serde_json::json;

use crate::support::{audit, spawn, Browser, USER};

async fn send(b: &mut Browser, fields: &[(String, String)]) -> crate::support::Page {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post("/admin/products/vip", &refs).await
}

async fn edit_a_price_then_buy_at_it(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("vip", 1230, "auto").await;
    app.import_keys("vip", 3).await;
    let mut owner = Browser::signed_in(&app).await;

    let list = owner.get("/admin/products").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("12.30 CNY"), "{}", list.body);
    assert_eq!(list.testid("stock-vip").as_deref(), Some("3"));

    let form = owner.get("/admin/products/vip").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();
    let post = |price: &str, tiers: &str, min: &str, fields: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("title".to_owned(), "VIP key".to_owned()),
            ("price".to_owned(), price.to_owned()),
            ("category".to_owned(), "games".to_owned()),
            ("sort_order".to_owned(), "5".to_owned()),
            ("min_quantity".to_owned(), min.to_owned()),
            ("max_quantity".to_owned(), "10".to_owned()),
            ("visible".to_owned(), "on".to_owned()),
            ("tiers".to_owned(), tiers.to_owned()),
            ("fields".to_owned(), fields.to_owned()),
            ("description".to_owned(), "**fast**".to_owned()),
        ]
    };
    // Bad input: a clear message, the values kept, nothing changed.
    for (price, tiers, min, fields, says) in [
        ("9.999", "", "1", "", "price"),
        ("abc", "", "1", "", "price"),
        ("9.90", "10", "1", "", "wholesale tier"),
        ("9.90", "", "x", "", "whole number"),
        ("9.90", "", "1", "account | Account | maybe", "neither"),
        (
            "9.90",
            "",
            "1",
            "bad name | Account | required",
            "identifier",
        ),
    ] {
        let p = send(&mut owner, &post(price, tiers, min, fields)).await;
        assert_eq!(p.status, 422, "{price} {tiers} {fields}: {}", p.body);
        let error = p.testid("product-error").unwrap_or_default();
        assert!(error.to_lowercase().contains(says), "{says}: {error}");
        assert!(
            p.body.contains(&format!("value=\"{price}\"")),
            "the sent price is kept"
        );
    }
    assert_eq!(app.product("vip").await["price"], 1230, "nothing changed");

    let p = send(
        &mut owner,
        &post(
            "9.90",
            "2 8.50",
            "1",
            "account | 游戏账号 | required | ^[0-9]{5,12}$",
        ),
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/products/vip?saved=1"),
        "{}",
        p.body
    );
    let saved = owner.get("/admin/products/vip?saved=1").await;
    assert!(saved.testid("product-saved").is_some());
    assert!(
        saved.body.contains("2 8.50"),
        "tiers shown back: {}",
        saved.body
    );
    assert!(
        saved
            .body
            .contains("account | 游戏账号 | required | ^[0-9]{5,12}$"),
        "{}",
        saved.body
    );

    // The next order pays the new price (and the tier from 2 pieces).
    let (s, v) = app
        .try_order(
            json!({"product": "vip", "quantity": 1, "email": "b@example.com",
                          "method": "sandbox", "fields": {"account": "123456"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["amount"], 990);
    let (s, v) = app
        .try_order(
            json!({"product": "vip", "quantity": 2, "email": "c@example.com",
                          "method": "sandbox", "fields": {"account": "123456"}}),
        )
        .await;
    assert_eq!((s, v["amount"].as_i64()), (201, Some(1700)), "{v}");
    let (s, v) = app
        .try_order(
            json!({"product": "vip", "quantity": 1, "email": "d@example.com",
                          "method": "sandbox", "fields": {"account": "12"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_fields")),
        "{v}"
    );

    let updates = audit(&app, "product.update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].entry.actor, format!("user:{USER}"));
    assert_eq!(updates[0].entry.before.as_ref().unwrap()["price"], 1230);
    assert_eq!(updates[0].entry.after.as_ref().unwrap()["price"], 990);

    // Hide from the list: gone from the shop; show again.
    let list = owner.get("/admin/products").await;
    let p = owner
        .post(
            "/admin/products/vip/visibility",
            &[("csrf", &list.csrf()), ("visible", "0")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(owner
        .get("/admin/products")
        .await
        .testid("hidden-vip")
        .is_some());
    let catalogue = app.get_json("/api/v1/products").await;
    assert!(
        catalogue.to_string().find("\"vip\"").is_none(),
        "{catalogue}"
    );
    let p = owner
        .post(
            "/admin/products/vip/visibility",
            &[("csrf", &list.csrf()), ("visible", "1")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(owner
        .get("/admin/products")
        .await
        .testid("hidden-vip")
        .is_none());

    // It has orders: "delete" hides it.
    let p = owner
        .post("/admin/products/vip/delete", &[("csrf", &list.csrf())])
        .await;
    assert_eq!(p.status, 303);
    assert!(owner
        .get("/admin/products")
        .await
        .testid("hidden-vip")
        .is_some());
    // Without the token nothing happens.
    let p = owner
        .post("/admin/products/vip/visibility", &[("visible", "1")])
        .await;
    assert_eq!(p.status, 403);
    assert!(owner
        .get("/admin/products")
        .await
        .testid("hidden-vip")
        .is_some());
    assert_eq!(owner.get("/admin/products/nope").await.status, 404);
}
both_backends!(edit_a_price_then_buy_at_it);
