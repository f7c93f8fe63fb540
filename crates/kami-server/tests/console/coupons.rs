//! `/admin/coupons`: list, create (errors keep the form), edit, delete (disabled once used),
//! in both languages, every POST behind the form token, audited as the signed-in user.

use kami_testkit::{both_backends, Backend};
use serde_json::json;

use crate::support::{audit, spawn, Browser};

async fn coupons_page_creates_edits_and_deletes(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("vip", 1000, "manual").await;
    let mut b = Browser::signed_in(&app).await;

    let p = b.get("/admin/coupons?lang=en").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("No coupons yet."), "{}", p.body);
    assert!(
        p.body.contains("data-testid=\"nav-coupons\""),
        "in the navigation"
    );
    let zh = b.get("/admin/coupons?lang=zh-CN").await;
    assert!(zh.body.contains("新建优惠券"));
    let token = p.csrf();

    // A bad value: 422, the message, and what was typed kept.
    let p = b
        .post(
            "/admin/coupons?lang=en",
            &[
                ("csrf", &token),
                ("code", "spring"),
                ("kind", "percent"),
                ("value", "150"),
                ("products", "vip"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("coupon-error").unwrap().contains("basis points"),
        "{}",
        p.body
    );
    assert!(p.body.contains("value=\"spring\""), "the code is kept");
    assert!(p.body.contains("value=\"150\""), "the value is kept");
    assert!(app.state.store.coupons().await.unwrap().is_empty());

    // Without the token: refused, nothing created.
    let p = b
        .post(
            "/admin/coupons",
            &[("code", "spring"), ("kind", "percent"), ("value", "15")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(app.state.store.coupons().await.unwrap().is_empty());

    // Created: 12.5 % is 1250 basis points; an amount of 5.00 CNY is 500.
    let p = b
        .post(
            "/admin/coupons",
            &[
                ("csrf", &token),
                ("code", "spring"),
                ("kind", "percent"),
                ("value", "12.5"),
                ("products", "vip"),
                ("valid_to", "2099-01-01T00:00"),
                ("max_uses", "10"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/coupons"),
        "{}",
        p.body
    );
    let p = b
        .post(
            "/admin/coupons",
            &[
                ("csrf", &token),
                ("code", "five"),
                ("kind", "fixed"),
                ("value", "5.00"),
                ("currency", "CNY"),
                ("min_amount", "8"),
                ("once_per_email", "on"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let (s, v) = app
        .try_order(
            json!({"product": "vip", "email": "a@example.com", "method": "sandbox",
                          "coupon": "spring"}),
        )
        .await;
    assert_eq!((s, v["amount"].clone()), (201, json!(875)), "{v}");
    let (s, v) = app
        .try_order(
            json!({"product": "vip", "email": "a@example.com", "method": "sandbox",
                          "coupon": "FIVE"}),
        )
        .await;
    assert_eq!((s, v["amount"].clone()), (201, json!(500)), "{v}");

    let p = b.get("/admin/coupons").await;
    assert_eq!(p.testid("coupon-used-SPRING").as_deref(), Some("1 / 10"));
    let p = b.get("/admin/coupons/spring").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("value=\"12.50\""), "{}", p.body);
    assert!(p.body.contains("value=\"2099-01-01T00:00\""));

    // Edited: 20 %, no end.
    let p = b
        .post(
            "/admin/coupons/SPRING",
            &[
                ("csrf", &token),
                ("kind", "percent"),
                ("value", "20"),
                ("products", "vip"),
                ("max_uses", "10"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let c = &app.state.store.coupons().await.unwrap();
    let spring = c.iter().find(|c| c.code.as_str() == "SPRING").unwrap();
    assert_eq!(
        (spring.settings.value, spring.settings.valid_to),
        (2000, None)
    );
    // A cap below the uses held: refused on the form.
    let p = b
        .post(
            "/admin/coupons/SPRING",
            &[
                ("csrf", &token),
                ("kind", "percent"),
                ("value", "20"),
                ("max_uses", "0"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.testid("coupon-error").unwrap().contains("max_uses"));

    // Delete: SPRING was used, so disabled; an unused one is gone.
    b.post(
        "/admin/coupons",
        &[
            ("csrf", &token),
            ("code", "unused"),
            ("kind", "percent"),
            ("value", "1"),
            ("enabled", "on"),
        ],
    )
    .await;
    assert_eq!(
        b.post("/admin/coupons/SPRING/delete", &[("csrf", &token)])
            .await
            .status,
        303
    );
    assert_eq!(
        b.post("/admin/coupons/unused/delete", &[("csrf", &token)])
            .await
            .status,
        303
    );
    let c = app.state.store.coupons().await.unwrap();
    let codes: Vec<(&str, bool)> = c
        .iter()
        .map(|c| (c.code.as_str(), c.settings.enabled))
        .collect();
    assert_eq!(codes, [("FIVE", true), ("SPRING", false)]);

    for (action, n) in [
        ("coupon.create", 3),
        ("coupon.update", 1),
        ("coupon.disable", 1),
        ("coupon.delete", 1),
    ] {
        let rows = audit(&app, action).await;
        assert_eq!(rows.len(), n, "{action}");
        assert!(
            rows.iter().all(|r| r.entry.actor == "user:owner"),
            "{action}"
        );
    }
}
both_backends!(coupons_page_creates_edits_and_deletes);
