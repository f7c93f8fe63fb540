//! The console's order page: facts, timeline, and actions through its forms (CSRF, status).

use kami_testkit::{both_backends, Backend};

use crate::search::order_as;
use crate::support::{spawn, Browser};

async fn detail_timeline_and_refund(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("pg-auto", 1200, "auto").await;
    app.import_keys("pg-auto", 2).await;
    let order = order_as(&app, "pg-auto", "gina@example.com").await;
    app.pay(&order).await;
    app.wait_settled(&order).await;
    let no = order["order_no"].as_str().unwrap();

    let mut b = Browser::signed_in(&app).await;
    let p = b.get(&format!("/admin/orders/{no}?lang=en")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.testid("fact-email").as_deref(), Some("gina@example.com"));
    assert_eq!(p.testid("fact-amount").as_deref(), Some("¥12.00"));
    assert!(p.body.contains("data-testid=\"event-created\""));
    assert!(p.body.contains("data-testid=\"event-delivered\""));
    assert!(p.body.contains("data-testid=\"action-refund\""));
    assert!(
        !p.body.contains("data-testid=\"action-cancel\""),
        "not for a delivered order"
    );

    // Without / with a wrong token: refused, nothing refunded.
    let p2 = b
        .post(&format!("/admin/orders/{no}/refund"), &[("amount", "1.00")])
        .await;
    assert_eq!(p2.status, 403);
    let p2 = b
        .post(
            &format!("/admin/orders/{no}/refund"),
            &[("csrf", "x"), ("amount", "1.00")],
        )
        .await;
    assert_eq!(p2.status, 403);
    assert!(app
        .state
        .store
        .refunds(&kami_core::OrderNo::parse(no).unwrap())
        .await
        .unwrap()
        .is_empty());

    // Not valid for the status: a clear message, nothing done.
    let csrf = p.csrf();
    let r = b
        .post(&format!("/admin/orders/{no}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    let p3 = b.get(&format!("/admin/orders/{no}?lang=en")).await;
    assert!(
        p3.testid("flash")
            .unwrap()
            .contains("cancel is not possible"),
        "{:?}",
        p3.testid("flash")
    );

    // A partial refund in major units, exactly.
    let r = b
        .post(
            &format!("/admin/orders/{no}/refund"),
            &[("csrf", &csrf), ("amount", "2.50"), ("reason", "test")],
        )
        .await;
    assert_eq!(r.status, 303);
    let refunds = app
        .state
        .store
        .refunds(&kami_core::OrderNo::parse(no).unwrap())
        .await
        .unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount.minor(), 250);
    let p4 = b.get(&format!("/admin/orders/{no}?lang=en")).await;
    assert!(p4.body.contains("data-testid=\"event-refund\""));
    assert!(p4.testid("flash").is_some());
    let r = b
        .post(
            &format!("/admin/orders/{no}/refund"),
            &[("csrf", &csrf), ("amount", "1.001")],
        )
        .await;
    assert_eq!(r.status, 303);
    let p5 = b.get(&format!("/admin/orders/{no}?lang=en")).await;
    assert!(
        p5.testid("flash").unwrap().contains("amount"),
        "sub-cent amounts refused"
    );
}
both_backends!(detail_timeline_and_refund);
