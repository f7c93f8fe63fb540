//! The overview's numbers for a seeded set of orders.

use kami_testkit::{both_backends, Backend};

use crate::support::{spawn, Browser};

async fn overview_counts_today(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("ov-auto", 700, "auto").await;
    app.import_keys("ov-auto", 5).await;
    app.create_product("ov-manual", 1500, "manual").await;
    let paid_auto = app.order("ov-auto", 1).await;
    let _unpaid = app.order("ov-auto", 2).await;
    let manual = app.order("ov-manual", 1).await;
    app.pay(&paid_auto).await;
    app.pay(&manual).await;
    app.wait_settled(&paid_auto).await;
    app.wait_settled(&manual).await;

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin?lang=en").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.testid("today-orders").as_deref(), Some("3"));
    assert_eq!(p.testid("today-paid").as_deref(), Some("2"));
    assert_eq!(p.testid("revenue-CNY").as_deref(), Some("¥22.00"));
    assert_eq!(p.testid("count-awaiting").as_deref(), Some("1"));
    assert_eq!(p.testid("count-exception").as_deref(), Some("0"));
    assert!(p.body.contains("UTC"), "says which day it counts");
}
both_backends!(overview_counts_today);
