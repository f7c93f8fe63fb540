//! Channel measures (issue 11 part 2) on both backends: the notify lag from the gateways' pay
//! times (Alipay `gmt_payment`, WeChat `success_time`), payments found without a notification
//! (掉单 recovered), verification failures per channel, and `/metrics` after a scripted run of
//! orders (a failed create, a paid order, an unpaid one), with the same figures in
//! `GET /api/v1/admin/channels/{id}/stats`.

use serde_json::{json, Value};

use kami_testkit::{both_backends, inspect, Backend, TestApp};

/// The value of the sample `line` names exactly (name and labels), if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

async fn stats(app: &TestApp, channel: &str) -> Value {
    let v = app
        .admin_get(&format!("/api/v1/admin/channels/{channel}/stats"))
        .await;
    assert_eq!(v["channel"], channel, "{v}");
    v
}

/// The measures of `method` in a channel's stats.
fn method<'a>(stats: &'a Value, method: &str) -> &'a Value {
    stats["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == method)
        .unwrap_or_else(|| panic!("no {method} in {stats}"))
}

async fn notify_lag_is_measured_from_alipay_and_wechat_pay_times(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.stocked_product("lag", 800, 4).await;
    for (m, channel) in [("alipay", "alipay-sim"), ("wxpay", "wechat-sim")] {
        let order = app.order_via("lag", m, "pc").await;
        let (s, body) = app.pay_in_browser(&order, "normal").await;
        assert_eq!(s, 200, "{m}: {body}");
        let v = app.wait_settled(&order).await;
        assert_eq!(v["status"], "delivered", "{m}: {v}");
        let no = order["order_no"].as_str().unwrap();
        // The payment row: found by its notification, with the gateway's pay time (seconds).
        let q = |what: &str| {
            format!(
                "SELECT {what} FROM payments p JOIN orders o ON o.id = p.order_id \
                 WHERE o.order_no = '{no}'"
            )
        };
        let gateway_paid_at = inspect::scalar(&app.db_url, &q("p.gateway_paid_at")).await;
        let paid_at = inspect::scalar(&app.db_url, &q("p.paid_at")).await;
        assert!(gateway_paid_at > 0 && gateway_paid_at % 1000 == 0, "{m}");
        assert!(
            (0..60_000).contains(&(paid_at - gateway_paid_at + 1000)),
            "{m}: paid at {paid_at}, gateway says {gateway_paid_at}"
        );
        let notified = inspect::scalar(
            &app.db_url,
            &q("COUNT(*)").replace("WHERE", "WHERE p.found_by = 'notify' AND"),
        )
        .await;
        assert_eq!(notified, 1, "{m}: found by its notification");

        let text = app.metrics_text().await;
        let labels = format!("{{channel=\"{channel}\",method=\"{m}\"}}");
        assert_eq!(
            sample(
                &text,
                &format!("kami_channel_notify_lag_seconds_count{labels}")
            ),
            Some(1.0),
            "{m}:\n{text}"
        );
        assert_eq!(
            sample(&text, &format!("kami_channel_orders_paid_total{labels}")),
            Some(1.0),
            "{m}"
        );
        // Same-second pay times: well under a minute of lag.
        let sum = sample(
            &text,
            &format!("kami_channel_notify_lag_seconds_sum{labels}"),
        )
        .unwrap();
        assert!((0.0..60.0).contains(&sum), "{m}: lag {sum}");

        let s = stats(&app, channel).await;
        let w = &method(&s, m)["last_24h"];
        assert_eq!(w["payments_by_found_by"]["notify"], 1, "{m}: {w}");
        assert_eq!(w["found_without_notify"], 0, "{m}: {w}");
        let p50 = w["notify_lag_p50_s"].as_i64().unwrap();
        assert!((0..60).contains(&p50), "{m}: {w}");
        assert_eq!(w["notify_lag_p95_s"], w["notify_lag_p50_s"]);
    }
}
both_backends!(notify_lag_is_measured_from_alipay_and_wechat_pay_times);

/// The gateway drops the notification: the payment check finds the payment by query; it
/// counts as recovered (`found_by=query`), with no notify lag.
async fn a_payment_found_by_query_counts_as_recovered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.stocked_product("quiet", 500, 2).await;
    let order = app.order("quiet", 1).await;
    let (s, body) = app.pay_with(&order, "drop").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");

    let text = app.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            "kami_channel_payments_found_without_notify_total{channel=\"sandbox\",method=\"sandbox\",found_by=\"query\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "kami_channel_notify_lag_seconds_count{channel=\"sandbox\",method=\"sandbox\"}"
        ),
        None,
        "a payment found by query has no notify lag"
    );
    let no = order["order_no"].as_str().unwrap();
    assert_eq!(
        inspect::scalar(
            &app.db_url,
            &format!(
                "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id \
                 WHERE o.order_no = '{no}' AND p.found_by = 'query' AND p.gateway_paid_at > 0"
            ),
        )
        .await,
        1,
        "found by query, with the query's pay time"
    );
    let s = stats(&app, "sandbox").await;
    for window in ["last_24h", "last_7d"] {
        let w = &method(&s, "sandbox")[window];
        assert_eq!(w["found_without_notify"], 1, "{window}: {w}");
        assert_eq!(w["payments_by_found_by"], json!({"query": 1}), "{window}");
        assert_eq!(w["notify_lag_p50_s"], Value::Null, "{window}");
        assert_eq!(
            (w["orders_created"].as_i64(), w["orders_paid"].as_i64()),
            (Some(1), Some(1))
        );
    }
}
both_backends!(a_payment_found_by_query_counts_as_recovered);

/// Forged and mismatched notifications count per channel and reason, on `/metrics` and in
/// the channel's stats; other channels count nothing.
async fn verification_failures_are_counted_per_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.stocked_product("forge", 500, 2).await;
    let order = app.order("forge", 1).await;
    let no = order["order_no"].as_str().unwrap();
    let mut forged = app.notification(no, "5.00", "CNY", "SBX-FORGED");
    for (k, v) in &mut forged {
        if k == "sign" {
            *v = "0".repeat(v.len());
        }
    }
    let (s, _) = app.send_notification(&forged).await;
    assert_ne!(s, 200, "a forged notification is refused");
    let wrong_amount = app.notification(no, "0.01", "CNY", "SBX-CHEAP");
    let (s, _) = app.send_notification(&wrong_amount).await;
    assert_ne!(s, 200, "an amount mismatch is refused");

    let text = app.metrics_text().await;
    for (reason, n) in [("bad_signature", 1.0), ("amount_mismatch", 1.0)] {
        assert_eq!(
            sample(
                &text,
                &format!(
                    "kami_channel_verification_failures_total{{channel=\"sandbox\",reason=\"{reason}\"}}"
                )
            ),
            Some(n),
            "{reason}:\n{text}"
        );
    }
    let s = stats(&app, "sandbox").await;
    assert_eq!(s["verification_failures_24h"]["total"], 2, "{s}");
    assert_eq!(
        s["verification_failures_7d"]["by_outcome"],
        json!({"amount_mismatch": 1, "rejected": 1}),
        "{s}"
    );
    let v = app
        .read_order(no, order["access_token"].as_str().unwrap(), 0)
        .await
        .1;
    assert_eq!(v["status"], "pending", "nothing was delivered: {v}");
}
both_backends!(verification_failures_are_counted_per_channel);

/// A scripted run on WeChat Pay: a paid order, an unpaid one, and a create the gateway refuses.
/// Every family is on `/metrics` with its labels and values, and the stats agree.
async fn metrics_after_a_scripted_run(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.stocked_product("script", 600, 5).await;
    let paid = app.order_via("script", "wxpay", "pc").await;
    let (s, body) = app.pay_in_browser(&paid, "normal").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.wait_settled(&paid).await["status"], "delivered");
    let _unpaid = app.order_via("script", "wxpay", "pc").await;
    app.sim_controls(&paid, &[("fail_creates", "1")]).await;
    let (s, v) = app
        .try_order(
            json!({"product": "script", "quantity": 1, "email": "m@example.com",
                          "method": "wxpay", "device": "pc"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (502, Some("channel_unavailable"))
    );

    let text = app.metrics_text().await;
    let wx = "channel=\"wechat-sim\",method=\"wxpay\"";
    for (name, value) in [
        (
            format!("kami_channel_create_calls_total{{{wx},outcome=\"ok\"}}"),
            2.0,
        ),
        (
            format!("kami_channel_create_calls_total{{{wx},outcome=\"gateway_error\"}}"),
            1.0,
        ),
        (format!("kami_channel_create_seconds_count{{{wx}}}"), 3.0),
        (format!("kami_channel_orders_created_total{{{wx}}}"), 3.0),
        (format!("kami_channel_orders_paid_total{{{wx}}}"), 1.0),
        (
            format!("kami_channel_notify_lag_seconds_count{{{wx}}}"),
            1.0,
        ),
        // A refusal of one payment is not the channel's failure: still healthy.
        (format!("kami_channel_health_state{{{wx}}}"), 0.0),
        (
            "kami_channel_health_state{channel=\"alipay-sim\",method=\"alipay\"}".to_owned(),
            0.0,
        ),
        (
            "kami_channel_health_state{channel=\"epay-sim\",method=\"qqpay\"}".to_owned(),
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, &name), Some(value), "{name}:\n{text}");
    }
    // (A family shows once it has a sample: nothing was found without a notification here.)
    for family in [
        "# TYPE kami_channel_create_calls_total counter",
        "# TYPE kami_channel_create_seconds histogram",
        "# TYPE kami_channel_notify_lag_seconds histogram",
        "# TYPE kami_channel_health_state gauge",
    ] {
        assert!(text.contains(family), "{family}:\n{text}");
    }
    assert!(
        !text.contains(paid["order_no"].as_str().unwrap()),
        "no order number in a label"
    );

    let wechat = stats(&app, "wechat-sim").await;
    let w = &method(&wechat, "wxpay")["last_24h"];
    assert_eq!(w["create_calls"], 3, "{w}");
    assert_eq!(
        w["create_calls_by_outcome"],
        json!({"ok": 2, "gateway_error": 1}),
        "{w}"
    );
    assert!(w["create_p95_ms"].as_i64().is_some(), "{w}");
    assert_eq!(
        (w["orders_created"].as_i64(), w["orders_paid"].as_i64()),
        (Some(3), Some(1))
    );
    let conversion = w["conversion"].as_f64().unwrap();
    assert!((conversion - 1.0 / 3.0).abs() < 1e-9, "{w}");
    // Another channel's stats: its methods, all zero.
    let ali = stats(&app, "alipay-sim").await;
    assert_eq!(
        method(&ali, "alipay")["last_7d"]["orders_created"],
        0,
        "{ali}"
    );
    let unknown = app
        .http
        .get(app.url("/api/v1/admin/channels/nope/stats"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "an unknown channel");
}
both_backends!(metrics_after_a_scripted_run);

/// Each measure is a range scan of its index, whatever the tables' size (PostgreSQL plans
/// with sequential scans off).
async fn measure_queries_use_their_indexes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = kami_core::clock::now_ms();
    let plans = app
        .state
        .store
        .channel_measure_plans(now - 7 * 86_400_000, now - 86_400_000)
        .await
        .unwrap();
    // Payments by pay time have three indexes since routing (the day's paid totals) and
    // reconciliation (a channel's paid payments): the planner may range-scan any of them.
    let expect: [(&str, &[&str]); 4] = [
        ("calls", &["channel_calls_at"]),
        ("orders", &["orders_created_stats"]),
        (
            "found",
            &[
                "payments_found",
                "payments_channel_paid",
                "payments_paid_at",
            ],
        ),
        ("failures", &["payment_events_outcome"]),
    ];
    assert_eq!(plans.len(), expect.len());
    for ((name, plan), (want_name, indexes)) in plans.iter().zip(expect) {
        assert_eq!(*name, want_name);
        assert!(
            indexes.iter().any(|i| plan.contains(i)),
            "{name} should use one of {indexes:?}:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan on payments"), "{name}:\n{plan}");
    }
}
both_backends!(measure_queries_use_their_indexes);
