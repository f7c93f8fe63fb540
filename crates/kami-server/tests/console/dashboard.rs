//! The dashboard: a period's numbers, the daily SVG chart (parsed as XML: one bar and one
//! point per day), the channel table, orders that need the seller and low-stock products.

use kami_core::Clock;
use kami_testkit::{both_backends, Backend};
use serde_json::json;

use crate::support::{spawn, Browser, Page};

/// The inline chart, parsed: (bars, points, whether it has a title and a desc).
fn chart(p: &Page) -> (usize, usize, bool) {
    let start = p.body.find("<svg").expect("an inline SVG chart");
    let end = p.body[start..].find("</svg>").unwrap() + start + "</svg>".len();
    let svg = &p.body[start..end];
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
    let count = |tag: &str, class: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name(tag) && n.attribute("class") == Some(class))
            .count()
    };
    let root = doc.root_element();
    let has = |tag: &str| root.children().any(|n| n.has_tag_name(tag));
    (
        count("rect", "bar"),
        count("circle", "point"),
        has("title") && has("desc"),
    )
}

async fn dashboard_numbers_chart_and_lists(backend: Backend) {
    let (app, _clock) = spawn(
        backend,
        "[shop]\ntimezone = \"Asia/Shanghai\"\n[console]\nlow_stock_threshold = 3\n",
    )
    .await;
    app.create_product("ov-auto", 700, "auto").await;
    app.import_keys("ov-auto", 6).await;
    app.create_product("ov-manual", 1500, "manual").await;
    app.create_product("low-auto", 100, "auto").await;
    app.import_keys("low-auto", 2).await;
    app.create_product("loop-auto", 100, "auto").await;
    app.import_text("loop-auto", "shared-key", true).await;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "low-manual", "title": "Top-up", "price": 100, "currency": "CNY",
                   "delivery": "manual", "stock": 1}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let paid_auto = app.order("ov-auto", 1).await;
    let _unpaid = app.order("ov-auto", 2).await;
    let manual = app.order("ov-manual", 1).await;
    app.pay(&paid_auto).await;
    app.pay(&manual).await;
    app.wait_settled(&paid_auto).await;
    app.wait_settled(&manual).await;
    let manual_no = manual["order_no"].as_str().unwrap();

    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin?lang=en").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.testid("period-orders").as_deref(), Some("3"));
    assert_eq!(p.testid("period-paid").as_deref(), Some("2"));
    assert_eq!(p.testid("period-conversion").as_deref(), Some("66.7%"));
    assert_eq!(p.testid("revenue-CNY").as_deref(), Some("¥22.00"));
    assert_eq!(p.testid("refunded-none").as_deref(), Some("0"));
    assert_eq!(p.testid("count-awaiting").as_deref(), Some("1"));
    assert_eq!(p.testid("count-exception").as_deref(), Some("0"));
    assert!(
        p.body.contains("Asia&#x2f;Shanghai"),
        "says which days it counts"
    );
    // the channel table: three create calls, all answered
    assert_eq!(p.testid("success-sandbox").as_deref(), Some("100.0%"));
    assert!(p.testid("p95-sandbox").is_some_and(|t| t.ends_with(" ms")));
    // needs action: the manual order, linked to its page
    assert!(
        p.body.contains(&format!(
            "<a href=\"/admin/orders/{manual_no}\">{manual_no}</a>"
        )),
        "awaiting order linked"
    );
    // low stock: fewer than 3 keys or manual stock; loop keys and unlimited manual never
    assert_eq!(p.testid("count-low-stock").as_deref(), Some("2"));
    assert!(p.body.contains("data-testid=\"low-low-auto\""));
    assert!(p.body.contains("data-testid=\"low-low-manual\""));
    assert!(!p.body.contains("data-testid=\"low-loop-auto\""));
    assert!(
        !p.body.contains("data-testid=\"low-ov-auto\""),
        "3 left is not low"
    );
    assert!(!p.body.contains("data-testid=\"low-ov-manual\""));
    let (bars, points, labelled) = chart(&p);
    assert_eq!((bars, points, labelled), (1, 1, true), "today: one day");

    for (period, days) in [("7d", 7), ("30d", 30)] {
        let p = b.get(&format!("/admin?period={period}&lang=en")).await;
        assert_eq!(p.status, 200);
        let (bars, points, labelled) = chart(&p);
        assert_eq!((bars, points, labelled), (days, days, true), "{period}");
        assert_eq!(p.testid("period-paid").as_deref(), Some("2"), "{period}");
        assert!(p.body.len() < 100_000, "{period}: {} bytes", p.body.len());
    }

    let zh = b.get("/admin?lang=zh-CN").await;
    assert_eq!(zh.status, 200);
    assert!(zh.body.contains("库存不足"));
    assert!(
        zh.body.contains("每日已支付订单与收入"),
        "chart title in Chinese"
    );
}
both_backends!(dashboard_numbers_chart_and_lists);

async fn dashboard_needs_a_session(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::new(&app);
    let p = b.get("/admin?period=7d").await;
    assert_eq!(p.status, 303);
    assert!(p.location().starts_with("/admin/login"), "{}", p.location());
}
both_backends!(dashboard_needs_a_session);

/// A measurement, not a check: with `KAMI_MEASURE=1`, seed 100,000 orders (30 days) and
/// print how long the dashboard and the stats API take and how big the page is
/// (`cargo test --release -p kami-server --test console measure -- --include-ignored
/// --nocapture`).
async fn measure_dashboard_with_100k_orders(backend: Backend) {
    if std::env::var("KAMI_MEASURE").as_deref() != Ok("1") {
        return;
    }
    let (app, clock) = spawn(backend, "[shop]\ntimezone = \"Asia/Shanghai\"\n").await;
    app.create_product("seed", 1000, "auto").await;
    let pid = kami_testkit::inspect::scalar(
        &app.db_url,
        "SELECT CAST(id AS BIGINT) FROM products WHERE slug = 'seed'",
    )
    .await;
    let t = std::time::Instant::now();
    kami_testkit::seed::orders(&app.db_url, pid, 100_000, clock.now_ms()).await;
    println!("{backend:?}: seeded 100000 orders in {:?}", t.elapsed());
    // The warm-up at start cached the closed days empty: five minutes on, they are stale and
    // the first dashboard below reads them (printed as `first`), the others hit the cache.
    clock.set(clock.now_ms() + 300_000);
    let mut b = Browser::signed_in(&app).await;
    for period in ["today", "7d", "30d"] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let p = b.get(&format!("/admin?period={period}")).await;
            times.push(t.elapsed());
            assert_eq!(p.status, 200);
            bytes = p.body.len();
        }
        let first = times[0];
        times.sort();
        println!(
            "{backend:?}: /admin?period={period}: first {first:?}, median {:?}, max {:?}, \
             {bytes} bytes",
            times[3], times[6]
        );
    }
    // The other pages a seller opens every day, on the same 100,000 orders.
    for path in [
        "/admin/orders",
        "/admin/orders?status=delivered",
        "/admin/orders?q=b4242%40example.com",
        "/admin/orders?q=K20260101000000000000077777",
        "/admin/orders?channel=sandbox&from=2000-01-01",
        "/admin/orders/K20260101000000000000004242",
        "/admin/products",
        "/admin/products/seed/cards",
        "/admin/audit",
        "/admin/coupons",
        "/admin/users",
        "/admin/security",
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        let mut status = 0;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let p = b.get(path).await;
            times.push(t.elapsed());
            status = p.status;
            bytes = p.body.len();
        }
        times.sort();
        println!(
            "{backend:?}: {path}: {status}, median {:?}, max {:?}, {bytes} bytes",
            times[3], times[6]
        );
    }
    let today = app
        .admin_get("/api/v1/admin/stats?from=2000-01-01&to=2000-01-01")
        .await;
    assert_eq!(today["total"]["created"], 0);
    let to = jiff::Timestamp::from_millisecond(clock.now_ms())
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date();
    for days in [30i64, 366] {
        let from = to.checked_sub(jiff::Span::new().days(days - 1)).unwrap();
        let path = format!("/api/v1/admin/stats?from={from}&to={to}");
        let mut times = Vec::new();
        let mut total = serde_json::Value::Null;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let v = app.admin_get(&path).await;
            times.push(t.elapsed());
            total = v["total"].clone();
        }
        times.sort();
        println!(
            "{backend:?}: stats {days} days: median {:?}, max {:?}; total {total}",
            times[3], times[6]
        );
    }
}
both_backends!(
    measure_dashboard_with_100k_orders,
    ignore = "a measurement: set KAMI_MEASURE=1 and run in release mode",
    postgres = "a measurement: set KAMI_MEASURE=1 and run in release mode"
);
