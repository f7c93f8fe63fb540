//! `/admin/reconciliations`: in the navigation, both languages; "run now" reconciles a day
//! (a payment whose notification was dropped is recovered from the sandbox's bill) and leads
//! to its page with the finding and a link to the order; "mark handled" keeps a note, audited
//! as the signed-in user; a bad day is refused on the page; a post without the form token
//! changes nothing.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser, USER};

async fn reconciliation_pages(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    app.create_product("con-rc", 1000, "auto").await;
    app.import_keys("con-rc", 1).await;
    let o = app.order("con-rc", 1).await;
    let no = o["order_no"].as_str().unwrap();
    let (s, body) = app.pay_with(&o, "drop").await;
    assert_eq!(s, 200, "{body}");
    let today = kami_server::services::reconciliation::format_day(
        kami_server::services::reconciliation::beijing_today(kami_core::clock::Clock::now_ms(
            &*clock,
        )),
    );

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin/reconciliations?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("data-testid=\"nav-reconciliations\""),
        "{}",
        p.body
    );
    assert!(p.body.contains("data-testid=\"reconciliations-empty\""));
    let zh = b.get("/admin/reconciliations?lang=zh-CN").await;
    assert!(
        zh.body.contains("对账") && zh.body.contains("立即对账"),
        "{}",
        zh.body
    );
    let token = p.csrf();

    let refused = b
        .post(
            "/admin/reconciliations",
            &[
                ("csrf", &token),
                ("channel", "sandbox"),
                ("date", "2026-13-01"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused
        .body
        .contains("data-testid=\"reconciliation-error\""));
    let forged = b
        .post(
            "/admin/reconciliations",
            &[("channel", "sandbox"), ("date", &today)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        app.admin_order(no).await["status"],
        "pending",
        "nothing ran"
    );

    let ran = b
        .post(
            "/admin/reconciliations",
            &[("csrf", &token), ("channel", "sandbox"), ("date", &today)],
        )
        .await;
    assert_eq!(ran.status, 303, "{}", ran.body);
    let at = ran.location().to_owned();
    assert!(at.starts_with("/admin/reconciliations/"), "{at}");
    assert_eq!(app.admin_order(no).await["status"], "delivered");
    let page = b.get(&format!("{at}?lang=en")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Recovered"), "{}", page.body);
    assert!(
        page.body.contains(&format!("href=\"/admin/orders/{no}\"")),
        "{}",
        page.body
    );
    let item = page
        .body
        .split("data-testid=\"handle-")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no handle button: {}", page.body))
        .to_owned();
    let handled = b
        .post(
            &format!("{at}/items/{item}/handle"),
            &[("csrf", &token), ("note", "checked with the buyer")],
        )
        .await;
    assert_eq!((handled.status, handled.location()), (303, at.as_str()));
    let page = b.get(&format!("{at}?lang=en")).await;
    assert!(
        page.body
            .contains(&format!("data-testid=\"handled-{item}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("checked with the buyer"));
    let rows = audit(&app, "reconciliation.handle").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.actor, format!("user:{USER}"));
    let listed = b.get("/admin/reconciliations?lang=en").await;
    assert!(
        listed.body.contains(&today) && listed.body.contains("console:owner"),
        "{}",
        listed.body
    );
    assert_eq!(b.get("/admin/reconciliations/999999").await.status, 404);
}
both_backends!(reconciliation_pages);
