use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::{hex_rand, notification_params, Backend, TestApp};

/// Forged or tampered notifications are refused with the protocol's failure reply, are logged,
/// and change nothing; the genuine one afterwards still delivers.
async fn tampered_notifications_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("safe", 1230, "auto").await;
    app.import_keys("safe", 3).await;
    let order = app.order("safe", 1).await;
    let no = order["order_no"].as_str().unwrap();
    let gw = format!("SBX{}", hex_rand());

    let mut cases: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    // Wrong signature: amount changed after signing.
    let mut p = app.notification(no, "12.30", "CNY", &gw);
    p.iter_mut().find(|(k, _)| k == "amount").unwrap().1 = "0.01".into();
    cases.push(("signature", p));
    // Signed with another key.
    cases.push((
        "foreign key",
        notification_params(no, "12.30", "CNY", &gw, b"someone-else"),
    ));
    // Correctly signed, wrong amount.
    cases.push(("amount", app.notification(no, "12.29", "CNY", &gw)));
    // Correctly signed, wrong currency.
    cases.push(("currency", app.notification(no, "12.30", "USD", &gw)));
    // Correctly signed, unknown order.
    cases.push((
        "unknown order",
        app.notification("K2026010100000000000000000", "12.30", "CNY", &gw),
    ));
    // Signature missing.
    let mut p = app.notification(no, "12.30", "CNY", &gw);
    p.retain(|(k, _)| k != "sign");
    cases.push(("no signature", p));
    // Signed, but the gateway trade number is empty (signing skips empty values).
    cases.push((
        "empty gateway trade no",
        app.notification(no, "12.30", "CNY", ""),
    ));

    for (what, params) in &cases {
        let (status, body) = app.send_notification(params).await;
        assert_eq!((status, body.as_str()), (400, "fail"), "{what}");
    }
    // Garbage bodies.
    for body in [&b"\xff\xfe\x00garbage"[..], b"", b"a=1&a=2", b"%%%"] {
        let r = app
            .http
            .post(app.url("/pay/notify/sandbox"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.text().await.unwrap(), "fail");
    }
    // Unknown channel.
    let r = app
        .http
        .post(app.url("/pay/notify/nope"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Nothing changed.
    let (_, v) = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(v["status"], "pending");
    assert_eq!(app.stock("safe").await, json!(2));
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"rejected\"}")
            .await,
        8
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"amount_mismatch\"}")
            .await,
        2
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"unknown_order\"}")
            .await,
        1
    );
    assert_eq!(app.admin_orders("delivered").await.len(), 0);
    // Every attempt on this order's trade number is logged with its outcome, verified or not.
    let detail = app.admin_order(no).await;
    let outcomes: Vec<&str> = detail["payment_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec!["amount_mismatch", "amount_mismatch"],
        "forged ones carry no trusted trade number"
    );

    // The genuine notification still works.
    let (status, body) = app
        .send_notification(&app.notification(no, "12.30", "CNY", &gw))
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered");
    // A GET notification (query string) is accepted too, as a duplicate.
    let q = serde_urlencoded::to_string(app.notification(no, "12.30", "CNY", &gw)).unwrap();
    let r = app
        .http
        .get(app.url(&format!("/pay/notify/sandbox?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "success");
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"duplicate\"}")
            .await,
        1
    );
}
both_backends!(tampered_notifications_change_nothing);

/// DESIGN invariant 3: the browser coming back from the gateway never marks anything paid,
/// whatever it claims in the query string.
async fn the_return_url_never_marks_paid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("back", 100, "auto").await;
    app.import_keys("back", 1).await;
    let order = app.order("back", 1).await;
    let no = order["order_no"].as_str().unwrap();
    for q in [
        format!("order_no={no}"),
        format!("order_no={no}&trade_status=TRADE_SUCCESS&status=paid&total_amount=1.00"),
        "order_no=<script>".to_owned(),
    ] {
        let r = app
            .http
            .get(app.url(&format!("/pay/return/sandbox?{q}")))
            .send()
            .await
            .unwrap();
        let valid = !q.contains("<script>");
        assert_eq!(r.status(), if valid { 200 } else { 404 }, "{q}");
        let page = r.text().await.unwrap();
        assert!(!page.contains("<script>"), "{q}");
        if valid {
            // Redirected to the order page: status only, still pending.
            assert!(page.contains("data-status=\"pending\""), "{page}");
            assert!(!page.contains("data-testid=\"key\""), "{page}");
        }
    }
    let (_, v) = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(v["status"], "pending");
    assert_eq!(app.stock("back").await, json!(0), "still only reserved");
}
both_backends!(the_return_url_never_marks_paid);
