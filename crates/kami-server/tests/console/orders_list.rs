//! The console's order list: filters, masked emails, paging, the CSV export (defused cells,
//! audited), on both backends.

use kami_testkit::{both_backends, Backend};
use serde_json::json;

use crate::search::order_as;
use crate::support::{audit, spawn, Browser, USER};

async fn list_filters_and_masks(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("list-auto", 500, "auto").await;
    app.import_keys("list-auto", 2).await;
    app.create_product("list-manual", 900, "manual").await;
    let paid = order_as(&app, "list-auto", "carol@example.com").await;
    app.pay(&paid).await;
    app.wait_settled(&paid).await;
    let pending = order_as(&app, "list-manual", "dave@example.com").await;
    let (paid_no, pending_no) = (
        paid["order_no"].as_str().unwrap(),
        pending["order_no"].as_str().unwrap(),
    );

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin/orders?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("data-testid=\"nav-orders\""));
    assert_eq!(p.body.matches("data-testid=\"order-row\"").count(), 2);
    assert_eq!(
        p.testid(&format!("email-{paid_no}")).as_deref(),
        Some("c***@example.com")
    );
    assert!(
        !p.body.contains("carol@example.com"),
        "emails are masked in the list"
    );
    assert!(p.body.contains("¥5.00") && p.body.contains("¥9.00"));
    assert!(p.body.contains("UTC"), "says which days it filters by");
    assert!(p.body.contains("href=\"/admin/orders?status=exception\""));

    let p = b.get("/admin/orders?status=awaiting_fulfilment").await;
    assert_eq!(p.body.matches("data-testid=\"order-row\"").count(), 0);
    let p = b.get("/admin/orders?status=pending").await;
    assert!(p.body.contains(pending_no) && !p.body.contains(paid_no));
    let p = b.get("/admin/orders?q=carol%40example.com").await;
    assert!(p.body.contains(paid_no) && !p.body.contains(pending_no));
    let p = b.get("/admin/orders?limit=1").await;
    let next = p.body.split("data-testid=\"next-page\"").next().unwrap();
    assert!(
        next.contains(&format!("before={pending_no}")),
        "a cursor to the next page"
    );
    let p = b
        .get(&format!("/admin/orders?limit=1&before={pending_no}"))
        .await;
    assert!(p.body.contains(paid_no));

    let p = b.get("/admin/orders?from=2024-99-99&lang=en").await;
    assert_eq!(p.status, 422);
    assert!(p.testid("filter-error").is_some());

    // Signed out: to the sign-in page.
    let mut anon = Browser::new(&app);
    let p = anon.get("/admin/orders").await;
    assert_eq!(p.status, 303);
    assert!(p.location().starts_with("/admin/login"));
}
both_backends!(list_filters_and_masks);

async fn csv_export_is_defused_and_audited(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let (status, body) = app
        .shop
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "csv-evil", "title": "=HYPERLINK(\"http://x\"),1", "price": 300,
                   "currency": "CNY", "delivery": "manual"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let a = order_as(&app, "csv-evil", "erin@example.com").await;
    let b_order = order_as(&app, "csv-evil", "frank@example.com").await;

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin/orders.csv?product=csv-evil").await;
    assert_eq!(p.status, 200);
    assert!(p.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = p.body.lines().collect();
    assert_eq!(lines[0], "order_no,created_at,product,title,quantity,amount,currency,status,channel,method,email,paid_at");
    assert_eq!(lines.len(), 3, "{}", p.body);
    assert!(lines[1].starts_with(b_order["order_no"].as_str().unwrap()));
    assert!(lines[2].starts_with(a["order_no"].as_str().unwrap()));
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"http://x\"\"),1\","),
        "formula defused and quoted: {}",
        lines[1]
    );
    assert!(
        lines[1].contains("frank@example.com"),
        "the export is the seller's full data"
    );
    let rows = audit(&app, "orders.export").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.actor, format!("user:{USER}"));
    assert_eq!(rows[0].entry.after.as_ref().unwrap()["product"], "csv-evil");

    // Filtered to nothing: only the header.
    let p = b.get("/admin/orders.csv?status=refunded").await;
    assert_eq!(p.body.lines().count(), 1);
}
both_backends!(csv_export_is_defused_and_audited);
