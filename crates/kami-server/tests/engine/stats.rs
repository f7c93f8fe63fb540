//! `GET /api/v1/admin/stats`: numbers per local day (Asia/Shanghai) and per channel, for
//! orders placed, paid and refunded at chosen instants on the app's manual clock; refunds,
//! the day boundary, recorded channel calls' success rate and p95, bad ranges, the admin
//! token; and the plans of the stats queries.

use std::sync::Arc;

use kami_core::ManualClock;
use kami_store::{CallOutcome, ChannelCall};
use kami_testkit::{both_backends, sandbox_on_clock, Backend, TestApp};
use serde_json::{json, Value};

/// 2025-03-10T10:00:00Z = 18:00 in Shanghai on 10 March.
const MARCH_10_10H_UTC: i64 = 1_741_600_800_000;
/// 2025-03-10T23:30:00Z = 07:30 in Shanghai on 11 March.
const MARCH_10_2330_UTC: i64 = MARCH_10_10H_UTC + 13 * 3_600_000 + 1_800_000;

async fn spawn(backend: Backend, tz: &str) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(MARCH_10_10H_UTC));
    let opts = sandbox_on_clock(clock.clone());
    let app = TestApp::spawn_opts(backend, &format!("[shop]\ntimezone = \"{tz}\"\n"), opts).await;
    (app, clock)
}

async fn paid_order(app: &TestApp, slug: &str, quantity: u32) -> String {
    let o = app.order(slug, quantity).await;
    app.pay(&o).await;
    app.wait_settled(&o).await;
    o["order_no"].as_str().unwrap().to_owned()
}

async fn stats_per_shanghai_day(backend: Backend) {
    let (app, clock) = spawn(backend, "Asia/Shanghai").await;
    app.create_product("st-cny", 1000, "auto").await;
    app.import_keys("st-cny", 10).await;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "st-usd", "title": "Dollar key", "price": 500, "currency": "USD",
                   "delivery": "auto"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    app.import_keys("st-usd", 10).await;

    // 10 March (Shanghai): one paid CNY order, one never paid.
    paid_order(&app, "st-cny", 1).await;
    let _unpaid = app.order("st-cny", 1).await;
    // 23:30 UTC is 07:30 on 11 March in Shanghai: a USD order of two, and a CNY order
    // refunded in part.
    clock.set(MARCH_10_2330_UTC);
    paid_order(&app, "st-usd", 2).await;
    let refunded = paid_order(&app, "st-cny", 1).await;
    let (s, v) = app.refund(&refunded, json!({"amount": 300})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("succeeded")), "{v}");

    let v = app
        .admin_get("/api/v1/admin/stats?from=2025-03-10&to=2025-03-11")
        .await;
    assert_eq!(v["timezone"], "Asia/Shanghai");
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["date"], "2025-03-10");
    assert_eq!(
        (
            &days[0]["created"],
            &days[0]["paid"],
            &days[0]["conversion"]
        ),
        (&json!(2), &json!(1), &json!(0.5))
    );
    assert_eq!(days[0]["revenue"], json!({"CNY": 1000}));
    assert_eq!(days[0]["refunded"], json!({}));
    assert_eq!(days[1]["date"], "2025-03-11");
    assert_eq!(
        (
            &days[1]["created"],
            &days[1]["paid"],
            &days[1]["conversion"]
        ),
        (&json!(2), &json!(2), &json!(1.0))
    );
    assert_eq!(days[1]["revenue"], json!({"CNY": 1000, "USD": 1000}));
    assert_eq!(days[1]["refunded"], json!({"CNY": 300}));
    assert_eq!(days[1]["net"], json!({"CNY": 700, "USD": 1000}));
    let t = &v["total"];
    assert_eq!((&t["created"], &t["paid"]), (&json!(4), &json!(3)));
    assert_eq!(t["conversion"], json!(0.75));
    assert_eq!(t["revenue"], json!({"CNY": 2000, "USD": 1000}));
    assert_eq!(t["net"], json!({"CNY": 1700, "USD": 1000}));
    let sandbox = &v["channels"][0];
    assert_eq!(sandbox["channel"], "sandbox");
    assert_eq!(
        (&sandbox["created"], &sandbox["paid"]),
        (&json!(4), &json!(3))
    );
    assert_eq!(sandbox["calls"]["total"], 4, "every create call recorded");
    assert_eq!(sandbox["success_rate"], json!(1.0));
    assert!(sandbox["p95_ms"].as_i64().is_some(), "{sandbox}");

    // One day of the range alone.
    let day = app
        .admin_get("/api/v1/admin/stats?from=2025-03-11&to=2025-03-11")
        .await;
    assert_eq!(day["total"]["created"], 2, "one day of the range alone");
}
both_backends!(stats_per_shanghai_day);

async fn utc_day_holds_the_late_order(backend: Backend) {
    let (app, clock) = spawn(backend, "UTC").await;
    app.create_product("utc-p", 1000, "auto").await;
    app.import_keys("utc-p", 5).await;
    paid_order(&app, "utc-p", 1).await;
    clock.set(MARCH_10_2330_UTC);
    paid_order(&app, "utc-p", 1).await;
    let v = app
        .admin_get("/api/v1/admin/stats?from=2025-03-10&to=2025-03-11")
        .await;
    assert_eq!(v["timezone"], "UTC");
    assert_eq!(
        v["days"][0]["paid"], 2,
        "23:30 UTC is still 10 March in UTC"
    );
    assert_eq!(v["days"][1]["paid"], 0);
}
both_backends!(utc_day_holds_the_late_order);

async fn channel_success_rate_and_p95_from_recorded_calls(backend: Backend) {
    let (app, _clock) = spawn(backend, "UTC").await;
    // 20 calls of "slow": 17 quick, one quick error, two slow (one timed out).
    let mut calls = Vec::new();
    for _ in 0..17 {
        calls.push((CallOutcome::Ok, 12));
    }
    calls.push((CallOutcome::GatewayError, 15));
    calls.push((CallOutcome::Ok, 640));
    calls.push((CallOutcome::Timeout, 5000));
    let calls = calls
        .into_iter()
        .map(|(outcome, duration_ms)| {
            let call = ChannelCall {
                channel: "slow".into(),
                method: "create",
                pay_method: None,
                outcome,
                duration_ms,
            };
            (call, MARCH_10_10H_UTC)
        })
        .collect::<Vec<_>>();
    // In the same batch, 50 calls of "busy" lasting 1..=50 ms: the batch is written 32 rows
    // per statement and the rest one by one, and every row keeps its own values.
    let busy = (1..=50).map(|duration_ms| {
        let call = ChannelCall {
            channel: "busy".into(),
            method: "create",
            pay_method: None,
            outcome: CallOutcome::Ok,
            duration_ms,
        };
        (call, MARCH_10_10H_UTC)
    });
    let calls = busy.chain(calls).collect();
    app.state.store.record_channel_calls(calls).await.unwrap();
    // Outside the range: not counted.
    let old = ChannelCall {
        channel: "slow".into(),
        method: "create",
        pay_method: None,
        outcome: CallOutcome::GatewayError,
        duration_ms: 9,
    };
    app.state
        .store
        .record_channel_calls(vec![(old, MARCH_10_10H_UTC - 86_400_000)])
        .await
        .unwrap();
    let v = app
        .admin_get("/api/v1/admin/stats?from=2025-03-10&to=2025-03-10")
        .await;
    let channel = |name: &str| -> Value {
        let all = v["channels"].as_array().unwrap();
        all.iter().find(|c| c["channel"] == name).unwrap().clone()
    };
    let slow = channel("slow");
    assert_eq!(
        slow["calls"],
        json!({"total": 20, "ok": 18, "error": 1, "timeout": 1})
    );
    assert_eq!(slow["success_rate"], json!(0.9));
    // nearest rank: the 19th of 20 sorted durations
    assert_eq!(slow["p95_ms"], 640);
    assert_eq!((&slow["created"], &slow["paid"]), (&json!(0), &json!(0)));
    let busy = channel("busy");
    assert_eq!(
        busy["calls"],
        json!({"total": 50, "ok": 50, "error": 0, "timeout": 0})
    );
    // nearest rank: the 48th of 1..=50
    assert_eq!(busy["p95_ms"], 48);

    // Pruning (the hourly job's store call) removes only what is older.
    let gone = app
        .state
        .store
        .prune_channel_calls(MARCH_10_10H_UTC, 1000)
        .await
        .unwrap();
    assert_eq!(gone, 1);
}
both_backends!(channel_success_rate_and_p95_from_recorded_calls);

async fn bad_ranges_are_refused(backend: Backend) {
    let (app, _clock) = spawn(backend, "UTC").await;
    let http = reqwest::Client::new();
    for (query, code) in [
        ("from=2025-03-11&to=2025-03-10", "invalid_range"),
        ("from=2024-01-01&to=2025-01-01", "invalid_range"),
        ("from=2025-02-30&to=2025-03-01", "invalid_date"),
        ("from=10.3.2025&to=2025-03-11", "invalid_date"),
        ("to=2025-03-11", "invalid_date"),
        ("", "invalid_date"),
    ] {
        let r = http
            .get(app.url(&format!("/api/v1/admin/stats?{query}")))
            .bearer_auth(&app.shop.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{query}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
    // The longest range allowed.
    let v = app
        .admin_get("/api/v1/admin/stats?from=2024-01-01&to=2024-12-31")
        .await;
    assert_eq!(v["days"].as_array().map(Vec::len), Some(366));

    // No token, a wrong token.
    let url = app.url("/api/v1/admin/stats?from=2025-03-10&to=2025-03-10");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(bad_ranges_are_refused);

async fn stats_queries_use_their_indexes(backend: Backend) {
    let (app, _clock) = spawn(backend, "UTC").await;
    let plans = app
        .state
        .store
        .stats_plans(MARCH_10_10H_UTC, MARCH_10_2330_UTC)
        .await
        .unwrap();
    let expect = [
        ("created", "orders_created_stats"),
        ("paid", "orders_paid_stats"),
        ("refunded", "refunds_settled"),
        ("calls", "channel_calls_at"),
    ];
    assert_eq!(plans.len(), expect.len());
    for ((name, plan), (want_name, index)) in plans.iter().zip(expect) {
        assert_eq!(*name, want_name);
        assert!(plan.contains(index), "{name} should use {index}:\n{plan}");
    }
}
both_backends!(stats_queries_use_their_indexes);

/// Closed days are read through a five-minute cache; today and yesterday are always fresh.
/// A late change to a closed day shows once its copy is five minutes old.
async fn closed_days_are_cached_for_five_minutes(backend: Backend) {
    const DAY: i64 = 86_400_000;
    let (app, clock) = spawn(backend, "UTC").await;
    app.create_product("cache", 1000, "auto").await;
    app.import_keys("cache", 10).await;
    paid_order(&app, "cache", 1).await; // 10 March
    clock.set(MARCH_10_10H_UTC + 3 * DAY); // 13 March: 10 March is closed
    let range = "/api/v1/admin/stats?from=2025-03-10&to=2025-03-13";
    let paid_on = |v: &serde_json::Value, i: usize| v["days"][i]["paid"].as_i64().unwrap();
    let v = app.admin_get(range).await;
    assert_eq!((paid_on(&v, 0), paid_on(&v, 3)), (1, 0), "{v}");

    // Today: seen at once.
    paid_order(&app, "cache", 1).await;
    let v = app.admin_get(range).await;
    assert_eq!((paid_on(&v, 0), paid_on(&v, 3)), (1, 1), "{v}");

    // A call recorded on 10 March after the fact: the cached day does not show it yet...
    let late = ChannelCall {
        channel: "late".into(),
        method: "create",
        pay_method: None,
        outcome: CallOutcome::Ok,
        duration_ms: 7,
    };
    app.state
        .store
        .record_channel_calls(vec![(late, MARCH_10_10H_UTC)])
        .await
        .unwrap();
    let has_late = |v: &serde_json::Value| {
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["channel"] == "late")
    };
    assert!(!has_late(&app.admin_get(range).await));
    // ...and does five minutes later; a range starting mid-day is read fresh as well.
    clock.set(MARCH_10_10H_UTC + 3 * DAY + 5 * 60_000);
    assert!(has_late(&app.admin_get(range).await));
}
both_backends!(closed_days_are_cached_for_five_minutes);
