//! `confirm_by_query` (issue 11 part 5), on both backends: a validly signed Epay success that
//! the host's own order query does not confirm (the simulator's "forged upstream") is held —
//! the order stays pending, no key is sold, an `unconfirmed_payment` alert signal is written
//! and the host gets a failure so it resends — and once the host's record agrees, the payment
//! is delivered exactly once. With `confirm_by_query = false` the signed notification is
//! trusted as before. The setting shows and edits on stored channels.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use kami_testkit::kami_sim::gateways::EPAY_PID;
use kami_testkit::{both_backends, inspect, Backend, TestApp};

/// The outcomes of the order's payment events.
async fn outcomes(app: &TestApp, no: &str) -> Vec<String> {
    let detail = app.admin_order(no).await;
    detail["payment_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Wait (10 s at most) until the order has a payment event with `outcome`.
async fn wait_for_outcome(app: &TestApp, no: &str, outcome: &str) {
    let started = Instant::now();
    while !outcomes(app, no).await.iter().any(|o| o == outcome) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {outcome} event for {no}: {:?}",
            outcomes(app, no).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `unconfirmed_payment` signals of the order's (first) trade at `epay-sim`.
async fn alert_signals(app: &TestApp, no: &str, firing: bool) -> i64 {
    let subject = format!("epay-sim/{no}");
    inspect::alert_signals(&app.db_url, "unconfirmed_payment", &subject, firing).await
}

async fn sold_keys(app: &TestApp) -> i64 {
    inspect::scalar(
        &app.db_url,
        "SELECT COUNT(*) FROM cards WHERE status = 'sold'",
    )
    .await
}

async fn an_unconfirmed_epay_success_is_held_then_delivered_once(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.stocked_product("held", 700, 3).await;
    gw.epay.set_forged_upstream(true);
    let order = app.order_via("held", "qqpay", "pc").await;
    assert_eq!(order["payment"]["channel"], "epay-sim");
    let no = order["order_no"].as_str().unwrap();
    let (s, body) = app.pay_in_browser(&order, "normal").await;
    assert_eq!(s, 200, "{body}");

    wait_for_outcome(&app, no, "unconfirmed").await;
    let (s, v) = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("pending")), "{v}");
    assert_eq!(sold_keys(&app).await, 0, "no key sold");
    assert!(
        alert_signals(&app, no, true).await >= 1,
        "an unconfirmed_payment alert signal"
    );
    let stats = gw.epay.notify_stats(no).unwrap();
    assert!(
        !stats.delivered && stats.attempts >= 1,
        "the host got a failure and resends: {stats:?}"
    );
    assert!(
        app.metric(
            "kami_channel_verification_failures_total{channel=\"epay-sim\",reason=\"unconfirmed\"}"
        )
        .await
            >= 1
    );
    // The checks' queries (still unpaid at the host) change nothing either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sold_keys(&app).await, 0);

    // The host's own record now agrees: the next notification is confirmed and delivered,
    // once, whether it or a payment check gets there first.
    gw.epay.set_forged_upstream(false);
    assert!(gw.epay.resend_notification(no));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    assert_eq!(sold_keys(&app).await, 1);
    let events = outcomes(&app, no).await;
    assert_eq!(
        events.iter().filter(|o| *o == "delivered").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        alert_signals(&app, no, false).await,
        1,
        "the alert resolves"
    );
    assert_eq!(
        app.metric("kami_channel_orders_paid_total{channel=\"epay-sim\",method=\"qqpay\"}")
            .await,
        1
    );
}
both_backends!(an_unconfirmed_epay_success_is_held_then_delivered_once);

async fn add_epay(
    app: &TestApp,
    gw: &kami_testkit::kami_sim::gateways::Gateways,
    body: Value,
) -> Value {
    let keys = gw.merchant_keys().unwrap();
    let mut b = json!({
        "kind": "epay", "methods": ["qqpay"],
        "gateway": format!("{}/sim/epay/", gw.base_url()), "pid": EPAY_PID,
        "key": keys.epay_key, "version": 1
    });
    for (k, v) in body.as_object().unwrap() {
        b[k] = v.clone();
    }
    let (s, v) = app.admin_post("/api/v1/admin/channels", b).await;
    assert_eq!(s, 201, "{v}");
    v
}

/// `confirm_by_query = false`: the signed notification is trusted (the old behaviour), even
/// when the host's query disagrees. The key shows on stored channels (on by default) and edits.
async fn confirm_by_query_off_trusts_the_signed_notification(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.stocked_product("trust", 700, 3).await;
    let trusting = add_epay(
        &app,
        &gw,
        json!({"id": "epay-trust", "priority": 20, "confirm_by_query": false}),
    )
    .await;
    assert_eq!(
        trusting["settings"]["confirm_by_query"], false,
        "{trusting}"
    );
    let default = add_epay(&app, &gw, json!({"id": "epay-default", "priority": 1})).await;
    assert_eq!(
        default["settings"]["confirm_by_query"], true,
        "on when not given: {default}"
    );

    gw.epay.set_forged_upstream(true);
    let order = app.order_via("trust", "qqpay", "pc").await;
    assert_eq!(order["payment"]["channel"], "epay-trust");
    let (s, body) = app.pay_in_browser(&order, "normal").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "trusted without asking: {v}");
    let no = order["order_no"].as_str().unwrap();
    assert_eq!(outcomes(&app, no).await, ["delivered"]);

    // Turned on: the next one is held.
    let (s, v) = app
        .admin_patch(
            "/api/v1/admin/channels/epay-trust",
            json!({"confirm_by_query": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let view = app.admin_get("/api/v1/admin/channels/epay-trust").await;
    assert_eq!(view["settings"]["confirm_by_query"], true, "{view}");
    let held = app.order_via("trust", "qqpay", "pc").await;
    assert_eq!(held["payment"]["channel"], "epay-trust");
    let (s, body) = app.pay_in_browser(&held, "normal").await;
    assert_eq!(s, 200, "{body}");
    let held_no = held["order_no"].as_str().unwrap();
    wait_for_outcome(&app, held_no, "unconfirmed").await;
    assert_eq!(sold_keys(&app).await, 1, "only the trusted order's key");
}
both_backends!(confirm_by_query_off_trusts_the_signed_notification);
