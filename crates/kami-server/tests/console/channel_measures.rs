//! The channel page's measures block (issue 11 part 2): per channel and method, the last
//! 24 hours and 7 days, with the figures of a scripted run (a notified payment, one found by
//! query after its notification was lost, an unpaid order, a forged notification); and the
//! Epay form's `confirm_by_query`, on by default.

use kami_testkit::{both_backends, Backend, TestApp};

use crate::support::{Browser, PASSWORD, USER};

async fn the_channel_page_shows_the_measures(backend: Backend) {
    // The wall clock: the payment checks must run to find the lost notification's payment.
    let app = TestApp::spawn(backend).await;
    let hash = kami_server::services::passwords::hash_blocking(PASSWORD).unwrap();
    assert!(app
        .state
        .store
        .create_admin_user(USER, &hash, 0)
        .await
        .unwrap());
    app.create_product("page", 500, "auto").await;
    app.import_keys("page", 5).await;
    let notified = app.order("page", 1).await;
    app.pay(&notified).await;
    assert_eq!(app.wait_settled(&notified).await["status"], "delivered");
    let lost = app.order("page", 1).await;
    let (s, body) = app.pay_with(&lost, "drop").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.wait_settled(&lost).await["status"], "delivered");
    let unpaid = app.order("page", 1).await;
    let mut forged = app.notification(unpaid["order_no"].as_str().unwrap(), "5.00", "CNY", "SBX0");
    for (k, v) in &mut forged {
        if k == "sign" {
            *v = "f".repeat(v.len());
        }
    }
    let (s, _) = app.send_notification(&forged).await;
    assert_ne!(s, 200);

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin/channels?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("data-testid=\"channel-measures\""));
    for window in ["24h", "7d"] {
        let m = |field: &str| {
            p.testid(&format!("m-sandbox-sandbox-{window}-{field}"))
                .unwrap_or_else(|| panic!("{window} {field}: {}", p.body))
        };
        assert_eq!(m("calls"), "3", "{window}");
        assert_eq!(m("outcomes"), "ok: 3", "{window}");
        assert_eq!(m("created"), "3", "{window}");
        assert_eq!(m("paid"), "2", "{window}");
        assert_eq!(m("conversion"), "66.7 %", "{window}");
        assert_eq!(m("found"), "1", "{window}: the lost notification's payment");
        // One notified payment: p50 = p95, a few seconds at most.
        let lag = m("lag").replace("&#x2f;", "/");
        let (p50, p95) = lag.split_once(" / ").unwrap_or_else(|| panic!("{lag}"));
        assert_eq!(p50, p95, "{lag}");
        assert!(["0 s", "1 s", "2 s"].contains(&p50), "{lag}");
        assert!(m("p95").ends_with(" ms"), "{window}");
    }
    assert_eq!(p.testid("f-sandbox-24h").as_deref(), Some("1"));
    assert_eq!(p.testid("f-sandbox-7d").as_deref(), Some("1"));
    let zh = b.get("/admin/channels?lang=zh-CN").await;
    assert!(zh.body.contains("各渠道、各支付方式的指标"), "{}", zh.body);

    // A new Epay channel's form: confirm_by_query, ticked.
    let f = b.get("/admin/channels/new?kind=epay&lang=en").await;
    assert_eq!(f.status, 200);
    assert!(
        f.body
            .contains("<input type=\"checkbox\" name=\"confirm_by_query\" checked>"),
        "{}",
        f.body
    );
    let alipay = b.get("/admin/channels/new?kind=alipay&lang=en").await;
    assert!(
        !alipay.body.contains("confirm_by_query"),
        "an Epay key only"
    );
}
both_backends!(the_channel_page_shows_the_measures);
