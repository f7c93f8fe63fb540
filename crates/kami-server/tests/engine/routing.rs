//! Routing and failover (issue 11 part 1) through the real server, on both backends: a
//! primary whose create calls all fail (or hang) and a backup that takes every buyer within
//! the create budget; the primary resting, its ChannelDown alert signal, the half-open probe
//! that brings it back; another kami process on the same database seeing the down state;
//! the shares success-rate routing gives a 95 % and a 70 % channel; amount and daily limits;
//! a late payment of an abandoned attempt; the buyer's method switch.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::faulty::{faulty_sandboxes, Faults, FaultySpec};
use kami_testkit::inspect::{alert_signals, scalar};
use kami_testkit::{Backend, TestApp, SANDBOX_SECRET};

const BUDGET_MS: u64 = 3_000;

fn spec(id: &'static str, priority: i32, faults: &Faults) -> FaultySpec {
    FaultySpec {
        id,
        priority,
        faults: faults.clone(),
    }
}

/// The faults of a `primary` that fails every create (seeded `seed`) and a healthy `backup`.
fn failing_primary(seed: u64) -> (Faults, Faults) {
    let primary = Faults::new(seed);
    primary.fail_ratio(1.0);
    (primary, Faults::new(seed + 1))
}

/// Channels `primary` (priority 10) and `backup` (priority 5), failing as told.
fn primary_and_backup(primary: &Faults, backup: &Faults) -> Vec<FaultySpec> {
    vec![spec("primary", 10, primary), spec("backup", 5, backup)]
}

/// A server (`extra` configuration) on the faulty sandbox channels `specs`, selling `slug`
/// at `price` with `keys` keys.
async fn spawn_selling(
    backend: Backend,
    extra: &str,
    specs: Vec<FaultySpec>,
    (slug, price, keys): (&str, i64, usize),
) -> TestApp {
    let app = TestApp::spawn_opts(backend, extra, faulty_sandboxes(specs)).await;
    app.stocked_product(slug, price, keys).await;
    app
}

/// A buyer's order of `quantity` keys of `slug`, paid with the sandbox method.
fn order_body(slug: &str, quantity: u32) -> Value {
    json!({"product": slug, "quantity": quantity, "email": "b@example.com", "method": "sandbox"})
}

/// The routing state of `channel` for the sandbox method, from the admin API.
async fn lane(app: &TestApp, channel: &str) -> Value {
    let list = app.admin_get("/api/v1/admin/channels").await;
    let c = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == channel)
        .unwrap_or_else(|| panic!("no channel {channel}: {list}"))
        .clone();
    c["routing"]["methods"][0].clone()
}

/// Poll until the condition holds (every 100 ms, at most `secs`).
macro_rules! eventually {
    ($secs:expr, $what:expr, $cond:expr) => {{
        let until = Instant::now() + Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            assert!(Instant::now() < until, "not within {} s: {}", $secs, $what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

/// The primary's ChannelDown signals, firing or resolving.
async fn signals(app: &TestApp, firing: bool) -> i64 {
    alert_signals(&app.db_url, "channel_down", "primary/sandbox", firing).await
}

async fn attempts(app: &TestApp, order_no: &str) -> i64 {
    scalar(
        &app.db_url,
        &format!(
            "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id \
             WHERE o.order_no = '{order_no}'"
        ),
    )
    .await
}

async fn buy(app: &TestApp, slug: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (s, v) = app.try_order(order_body(slug, 1)).await;
    (s, v, started.elapsed())
}

/// The primary fails every create: 40 buyers at once all get a payment from the backup within
/// the budget; the primary goes down (one ChannelDown firing signal); once the fault clears
/// and the rest is over, a probe brings it back (resolved signal).
async fn failover_when_the_primary_fails_every_create(backend: Backend) {
    let (primary, backup) = failing_primary(1);
    let app = spawn_selling(
        backend,
        "[routing]\nrest_seconds = 2\n",
        primary_and_backup(&primary, &backup),
        ("fo", 500, 45),
    )
    .await;

    let buyers: Vec<_> = (0..40)
        .map(|_| {
            let shop = kami_testkit::Shop::new(app.base.clone(), app.admin_token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let (s, v) = shop.try_order(order_body("fo", 1)).await;
                (s, v, started.elapsed())
            })
        })
        .collect();
    let mut orders = Vec::new();
    for b in buyers {
        let (s, v, took) = b.await.unwrap();
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["payment"]["channel"], "backup", "{v}");
        assert!(
            took < Duration::from_millis(BUDGET_MS + 1_000),
            "answered in {took:?}"
        );
        orders.push(v);
    }
    let tried = primary.creates();
    println!(
        "40 buyers: primary tried {tried} times, backup {} times",
        backup.creates()
    );
    assert!(
        (5..=40).contains(&tried),
        "the primary rests after 5 failures: {tried}"
    );
    assert_eq!(backup.creates(), 40);
    assert_eq!(lane(&app, "primary").await["state"], "down");
    eventually!(
        5,
        "ChannelDown firing signal",
        signals(&app, true).await == 1
    );
    assert_eq!(signals(&app, false).await, 0);
    let note_free = app.admin_orders("expired").await;
    assert!(
        note_free.is_empty(),
        "nobody was turned away: {note_free:?}"
    );

    // A failed-over order pays through its own attempt (trade number `<order>A2`).
    let first = &orders[0];
    let no = first["order_no"].as_str().unwrap();
    assert_eq!(
        attempts(&app, no).await,
        2,
        "the primary's attempt and the backup's"
    );
    app.pay(first).await;
    assert_eq!(app.wait_settled(first).await["status"], "delivered");

    // While resting, orders go straight to the backup.
    let before = primary.creates();
    let (s, v, _) = buy(&app, "fo").await;
    assert_eq!((s, v["payment"]["channel"].as_str()), (201, Some("backup")));
    assert_eq!(primary.creates(), before, "a resting channel is not called");
    assert_eq!(attempts(&app, v["order_no"].as_str().unwrap()).await, 1);

    // The fault clears; after the rest one order probes the primary and brings it back.
    primary.fail_ratio(0.0);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (s, v, _) = buy(&app, "fo").await;
    assert_eq!(
        (s, v["payment"]["channel"].as_str()),
        (201, Some("primary")),
        "{v}"
    );
    assert_eq!(lane(&app, "primary").await["state"], "degraded");
    eventually!(
        5,
        "ChannelDown resolved signal",
        signals(&app, false).await == 1
    );
    for _ in 0..3 {
        let (s, v, _) = buy(&app, "fo").await;
        assert_eq!(
            (s, v["payment"]["channel"].as_str()),
            (201, Some("primary"))
        );
    }
    assert_eq!(lane(&app, "primary").await["state"], "healthy");
}
both_backends!(failover_when_the_primary_fails_every_create);

/// The primary hangs: its attempt is cut at two thirds of the budget and the backup answers;
/// the whole checkout stays within the budget.
async fn a_hung_primary_fails_over_within_the_budget(backend: Backend) {
    let primary = Faults::new(3);
    let backup = Faults::new(4);
    primary.hang(Some(Duration::from_secs(30)));
    let app = spawn_selling(
        backend,
        "",
        primary_and_backup(&primary, &backup),
        ("hang", 500, 3),
    )
    .await;
    let (s, v, took) = buy(&app, "hang").await;
    println!("hung primary: answered in {took:?}");
    assert_eq!(
        (s, v["payment"]["channel"].as_str()),
        (201, Some("backup")),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(1_900),
        "the primary had its slice: {took:?}"
    );
    assert!(
        took < Duration::from_millis(BUDGET_MS + 500),
        "within the budget: {took:?}"
    );
    let timeouts =
        "SELECT COUNT(*) FROM channel_calls WHERE channel_id = 'primary' AND outcome = 'timeout'";
    eventually!(
        5,
        "the timeout is recorded",
        scalar(&app.db_url, timeouts).await == 1
    );
    app.pay(&v).await;
    assert_eq!(app.wait_settled(&v).await["status"], "delivered");
}
both_backends!(a_hung_primary_fails_over_within_the_budget);

/// Two kami processes on one database: the first finds the primary down; the second, which
/// never called it, stops routing to it once it reads the shared state.
async fn another_process_sees_the_down_state(backend: Backend) {
    let (primary, backup) = failing_primary(5);
    let specs = primary_and_backup(&primary, &backup);
    let app = spawn_selling(backend, "", specs.clone(), ("two", 500, 12)).await;
    let other = app.another_instance_with("", faulty_sandboxes(specs)).await;
    // Before: the second process's lane is healthy (it saw nothing yet).
    assert_eq!(lane(&other, "primary").await["state"], "healthy");
    for _ in 0..5 {
        let (s, v, _) = buy(&app, "two").await;
        assert_eq!((s, v["payment"]["channel"].as_str()), (201, Some("backup")));
    }
    assert_eq!(primary.creates(), 5);
    let shared = "SELECT COUNT(*) FROM channel_health WHERE channel_id = 'primary' AND method = 'sandbox' AND state = 'down'";
    eventually!(
        5,
        "the down state in the database",
        scalar(&app.db_url, shared).await == 1
    );
    eventually!(
        6,
        "the second process adopts it",
        lane(&other, "primary").await["state"] == "down"
    );
    let (s, v, _) = buy(&other, "two").await;
    assert_eq!(
        (s, v["payment"]["channel"].as_str()),
        (201, Some("backup")),
        "{v}"
    );
    assert_eq!(
        primary.creates(),
        5,
        "the second process did not call the resting primary"
    );
    assert_eq!(attempts(&app, v["order_no"].as_str().unwrap()).await, 1);
    assert_eq!(signals(&app, true).await, 1, "one alert for both processes");
}
both_backends!(another_process_sees_the_down_state);

/// Shares of first choices: `ids` and how many orders each channel's create saw first.
async fn shares(app: &TestApp, slug: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut got = std::collections::BTreeMap::new();
    let mut pending = Vec::new();
    for i in 0..n {
        let shop = kami_testkit::Shop::new(app.base.clone(), app.admin_token.clone());
        let slug = slug.to_owned();
        pending.push(tokio::spawn(async move {
            shop.try_order(order_body(&slug, 1)).await
        }));
        if pending.len() == 8 || i + 1 == n {
            for p in pending.drain(..) {
                let (s, v) = p.await.unwrap();
                assert_eq!(s, 201, "{v}");
                *got.entry(v["payment"]["channel"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    got
}

/// Success-rate routing between a 95 % and a 70 % channel: the healthier gets clearly more
/// (printed); every buyer still gets a payment (failover covers the failures).
async fn success_rate_routing_favours_the_healthier_channel(backend: Backend) {
    let good = Faults::new(7);
    let poor = Faults::new(8);
    good.fail_ratio(0.05);
    poor.fail_ratio(0.30);
    let app = spawn_selling(
        backend,
        "[routing]\nmode = \"success_rate\"\n",
        vec![spec("good", 10, &good), spec("poor", 10, &poor)],
        ("sr", 100, 400),
    )
    .await;
    let n = 400;
    let paid_by = shares(&app, "sr", n).await;
    let (g, p) = (good.creates(), poor.creates());
    println!(
        "success_rate mode, {n} orders: create calls good (95 %) {g}, poor (70 %) {p} \
         ({:.0} % / {:.0} %); payments by {paid_by:?}; good failed {}, poor failed {}",
        100.0 * g as f64 / (g + p) as f64,
        100.0 * p as f64 / (g + p) as f64,
        good.failed(),
        poor.failed()
    );
    assert!(g > 3 * p, "the 95 % channel gets clearly more: {g} vs {p}");
    assert_eq!(paid_by.values().sum::<usize>(), n);
    let lane_good = lane(&app, "good").await;
    assert!(
        lane_good["success_rate"].as_f64().unwrap() > 0.85,
        "{lane_good}"
    );
}
both_backends!(success_rate_routing_favours_the_healthier_channel);

const WEIGHTED: &str = "[[channels]]\nid = \"w3\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
    secret = \"test-only-sandbox-secret\"\nallow_sandbox = true\npriority = 10\nweight = 3\n\
    [[channels]]\nid = \"w1\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
    secret = \"test-only-sandbox-secret\"\nallow_sandbox = true\npriority = 10\nweight = 1\n";

/// Priority mode: shares follow the weights.
async fn priority_mode_shares_follow_weight(backend: Backend) {
    assert!(WEIGHTED.contains(SANDBOX_SECRET));
    let app = TestApp::spawn_with(backend, WEIGHTED).await;
    app.stocked_product("w", 100, 200).await;
    let got = shares(&app, "w", 200).await;
    println!("priority mode, weights 3:1, 200 orders: {got:?}");
    let w3 = *got.get("w3").unwrap_or(&0) as f64 / 200.0;
    assert!((0.62..0.88).contains(&w3), "w3 takes about 3/4: {got:?}");
    assert_eq!(
        got.get("sandbox"),
        None,
        "a lower priority is only a fallback"
    );
}
both_backends!(priority_mode_shares_follow_weight);

/// Shadow mode: routes like priority (weights), and records what success-rate routing would
/// have chosen — visible per method in the admin API.
async fn shadow_mode_routes_by_priority_and_records_sr_decisions(backend: Backend) {
    let good = Faults::new(9);
    let poor = Faults::new(10);
    poor.fail_ratio(0.1);
    let app = spawn_selling(
        backend,
        "[routing]\nmode = \"shadow\"\nrest_seconds = 1\n",
        vec![spec("good", 10, &good), spec("poor", 10, &poor)],
        ("sh", 100, 200),
    )
    .await;
    let n = 160;
    shares(&app, "sh", n).await;
    let (g, p) = (good.creates(), poor.creates());
    let tally = lane(&app, "good").await["shadow"].clone();
    println!("shadow mode, {n} orders: create calls good {g}, poor {p}; SR agreement {tally}");
    // Health still applies (a degraded channel keeps a fifth of its weight), success rates
    // do not: the poorer channel keeps a share.
    assert!(
        p >= 10,
        "shadow does not route by success rate: good {g}, poor {p}"
    );
    assert_eq!(tally["decisions"].as_u64(), Some(n as u64), "{tally}");
    let agreed = tally["agreed"].as_u64().unwrap();
    assert!(
        agreed < n as u64,
        "SR routing would have decided otherwise sometimes: {tally}"
    );
    let list = app.admin_get("/api/v1/admin/channels").await;
    assert_eq!(list["routing"]["mode"], "shadow");
}
both_backends!(shadow_mode_routes_by_priority_and_records_sr_decisions);

const LIMITED: &str =
    "[[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
    secret = \"test-only-sandbox-secret\"\nallow_sandbox = true\npriority = 10\nmax_amount = 1000\n\
    [[channels]]\nid = \"big\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
    secret = \"test-only-sandbox-secret\"\nallow_sandbox = true\npriority = 5\n\
    min_amount = 1500\ndaily_limit = 3000\n";

/// `max_amount` sends a large order to the next channel; `daily_limit` counts what the
/// channel was paid today; with no channel left the order is refused with nothing reserved.
async fn amount_and_daily_limits_skip_a_channel(backend: Backend) {
    let app = TestApp::spawn_with(backend, LIMITED).await;
    app.stocked_product("lim", 800, 10).await;
    let order = |q: u32| order_body("lim", q);
    let (s, small) = app.try_order(order(1)).await;
    assert_eq!(
        (s, small["payment"]["channel"].as_str()),
        (201, Some("sandbox")),
        "{small}"
    );
    let (s, large) = app.try_order(order(2)).await;
    assert_eq!(
        (s, large["payment"]["channel"].as_str()),
        (201, Some("big")),
        "1600 > 1000: {large}"
    );
    app.pay(&large).await;
    assert_eq!(app.wait_settled(&large).await["status"], "delivered");
    let big = app.admin_get("/api/v1/admin/channels").await["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "big")
        .cloned()
        .unwrap();
    assert_eq!(
        (big["daily_limit"].as_i64(), big["paid_today"].as_i64()),
        (Some(3000), Some(1600))
    );

    // 1,600 more would take `big` past its 3,000 today; `sandbox` takes at most 1,000.
    let stock = app.stock("lim").await;
    let orders_before = scalar(&app.db_url, "SELECT COUNT(*) FROM orders").await;
    let (s, refused) = app.try_order(order(2)).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (422, Some("unknown_method")),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("16.00") || message.contains("1600"),
        "{message}"
    );
    assert_eq!(app.stock("lim").await, stock, "nothing reserved");
    assert_eq!(
        scalar(&app.db_url, "SELECT COUNT(*) FROM orders").await,
        orders_before
    );
    // The small order still goes through.
    let (s, _) = app.try_order(order(1)).await;
    assert_eq!(s, 201);
}
both_backends!(amount_and_daily_limits_skip_a_channel);

/// The primary refused to create (so the order failed over), but the buyer paid the
/// primary's trade anyway, late: its notification is recognised by the attempt's trade
/// number and delivers the order once; the backup's payment that follows is flagged, not
/// delivered again.
async fn late_payment_of_an_abandoned_attempt_is_delivered_once(backend: Backend) {
    let (primary, backup) = failing_primary(11);
    let app = spawn_selling(
        backend,
        "",
        primary_and_backup(&primary, &backup),
        ("late", 700, 5),
    )
    .await;
    let (s, order, _) = buy(&app, "late").await;
    assert_eq!(
        (s, order["payment"]["channel"].as_str()),
        (201, Some("backup"))
    );
    let no = order["order_no"].as_str().unwrap();
    // The first attempt's trade number is the order number, at the primary.
    let params = app.notification(no, "7.00", "CNY", "GW-LATE-1");
    let (s, body) = app.send_notification_to("primary", &params).await;
    assert_eq!((s, body.as_str()), (200, "success"));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    // The same notification again: nothing more.
    let (s, _) = app.send_notification_to("primary", &params).await;
    assert_eq!(s, 200);
    // The buyer also pays the backup's trade: recorded as a conflict for the seller.
    app.pay(&order).await;
    let conflicts = format!(
        "SELECT COUNT(*) FROM outbox x JOIN orders o ON o.id = x.order_id \
         WHERE x.kind = 'payment.conflict' AND o.order_no = '{no}'"
    );
    eventually!(
        10,
        "the second payment flagged",
        scalar(&app.db_url, &conflicts).await == 1
    );
    assert_eq!(
        alert_signals(&app.db_url, "duplicate_payment", no, true).await,
        1,
        "the seller is alerted to the second payment"
    );
    let v = app.wait_settled(&order).await;
    assert_eq!(
        v["cards"].as_array().unwrap().len(),
        1,
        "delivered once: {v}"
    );
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(app.stock("late").await, json!(4));
}
both_backends!(late_payment_of_an_abandoned_attempt_is_delivered_once);

async fn switch(app: &TestApp, order: &Value, method: &str) -> (u16, Value) {
    let no = order["order_no"].as_str().unwrap();
    let r = app
        .http
        .post(app.url(&format!("/api/v1/orders/{no}/switch")))
        .bearer_auth(order["access_token"].as_str().unwrap())
        .json(&json!({"method": method, "device": "pc"}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// A server with every gateway simulator, product `slug` at 9.90 with 5 keys, and a buyer's
/// pending order of it on the sandbox method (the method the switch tests switch from).
async fn a_sandbox_order_to_switch(backend: Backend, slug: &str) -> (TestApp, Value) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.stocked_product(slug, 990, 5).await;
    let order = app.order_via(slug, "sandbox", "pc").await;
    (app, order)
}

/// The buyer switches from the sandbox to Alipay: the sandbox trade is closed first, the
/// Alipay attempt has its own trade number, and paying it delivers the order.
async fn the_buyer_switches_method(backend: Backend) {
    let (app, order) = a_sandbox_order_to_switch(backend, "sw").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let (s, v) = switch(&app, &order, "sandbox").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("same_method")),
        "{v}"
    );
    let mut stranger = order.clone();
    stranger["access_token"] = json!("not-the-token");
    assert_eq!(switch(&app, &stranger, "alipay").await.0, 404);

    let (s, v) = switch(&app, &order, "alipay").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["method"].as_str(), v["payment"]["channel"].as_str()),
        (Some("alipay"), Some("alipay-sim"))
    );
    assert_eq!(v["payment"]["action"], "qr");
    let trades = format!(
        "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE o.order_no = '{no}' AND ((p.trade_no = '{no}' AND p.status = 'closed') \
           OR (p.trade_no = '{no}A2' AND p.status = 'created' AND p.channel_id = 'alipay-sim'))"
    );
    assert_eq!(
        scalar(&app.db_url, &trades).await,
        2,
        "old closed, new open with its own number"
    );
    let admin = app.admin_order(&no).await;
    assert_eq!(
        (admin["method"].as_str(), admin["channel"].as_str()),
        (Some("alipay"), Some("alipay-sim")),
        "{admin}"
    );

    // The old sandbox trade can no longer be paid at its page (closed at the channel).
    let (s, _) = app.pay_with(&order, "normal").await;
    assert_ne!(s, 200, "the closed sandbox trade is not payable");

    let mut paying = order.clone();
    paying["payment"] = v["payment"].clone();
    let (s, body) = app.pay_in_browser(&paying, "normal").await;
    assert_eq!(s, 200, "{body}");
    let done = app.wait_settled(&order).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert_eq!(done["cards"].as_array().unwrap().len(), 1);
    let (s, v) = switch(&app, &order, "wxpay").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("order_not_pending"))
    );
}
both_backends!(the_buyer_switches_method);

/// The buyer paid the sandbox trade (its notification lost) and then asks to switch: closing
/// it finds it paid, the payment is applied once and nothing is switched.
async fn a_switch_that_finds_the_trade_paid_delivers_once(backend: Backend) {
    let (app, order) = a_sandbox_order_to_switch(backend, "swp").await;
    let no = order["order_no"].as_str().unwrap().to_owned();
    let (s, body) = app.pay_with(&order, "drop").await;
    assert_eq!(s, 200, "{body}");
    let (s, v) = switch(&app, &order, "alipay").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("order_paid")),
        "{v}"
    );
    let done = app.wait_settled(&order).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert_eq!(done["cards"].as_array().unwrap().len(), 1);
    assert_eq!(attempts(&app, &no).await, 1, "no new attempt");
    assert_eq!(app.admin_order(&no).await["method"], "sandbox");
    assert_eq!(app.stock("swp").await, json!(4));
}
both_backends!(a_switch_that_finds_the_trade_paid_delivers_once);

/// Switching is rate-limited per order.
async fn switching_is_rate_limited(backend: Backend) {
    let (app, order) = a_sandbox_order_to_switch(backend, "swr").await;
    for method in ["alipay", "wxpay", "alipay"] {
        let (s, v) = switch(&app, &order, method).await;
        assert_eq!(s, 200, "{method}: {v}");
    }
    let (s, v) = switch(&app, &order, "wxpay").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("too_many_switches")),
        "{v}"
    );
    let no = order["order_no"].as_str().unwrap();
    assert_eq!(attempts(&app, no).await, 4);
    let open = format!(
        "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE o.order_no = '{no}' AND p.status = 'created'"
    );
    assert_eq!(
        scalar(&app.db_url, &open).await,
        1,
        "only the newest trade is open"
    );
}
both_backends!(switching_is_rate_limited);

/// A stored channel's limits, through the admin API: shown, applied at once, removable with
/// `null`, and refused precisely when inconsistent.
async fn stored_channel_limits_through_the_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.stocked_product("cheap", 300, 3).await;
    app.stocked_product("dear", 800, 3).await;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/channels",
            json!({"id": "st", "kind": "sandbox", "methods": ["sandbox"], "priority": 20,
                   "max_amount": 500, "secret": SANDBOX_SECRET, "allow_sandbox": true}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["max_amount"].as_i64(), v["min_amount"].as_i64()),
        (Some(500), None)
    );
    let via = |slug: &'static str| {
        let app = &app;
        async move {
            let (s, v) = app.try_order(order_body(slug, 1)).await;
            assert_eq!(s, 201, "{v}");
            v["payment"]["channel"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(via("cheap").await, "st");
    assert_eq!(via("dear").await, "sandbox", "800 > max_amount 500");

    let patch = |body: Value| app.admin_patch("/api/v1/admin/channels/st", body);
    let (s, v) = patch(json!({"min_amount": 600, "max_amount": 100})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_channel")),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_amount") && message.contains("min_amount (600)"),
        "{message}"
    );
    let (s, v) = patch(json!({"daily_limit": 0})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_channel")),
        "{v}"
    );
    let (s, v) = patch(json!({"max_amount": null, "daily_limit": 100000})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["max_amount"].as_i64(), v["daily_limit"].as_i64()),
        (None, Some(100_000))
    );
    assert_eq!(via("dear").await, "st", "no maximum any more");
}
both_backends!(stored_channel_limits_through_the_api);

/// The order page offers the other methods; its form switches (closing the old trade) and
/// the page then shows the new method's QR code.
async fn the_order_page_switches_method(backend: Backend) {
    let (app, order) = a_sandbox_order_to_switch(backend, "pg").await;
    let no = order["order_no"].as_str().unwrap();
    let token = order["access_token"].as_str().unwrap();
    let page = |extra: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url(&format!("/orders/{no}?t={token}{extra}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    // Switch through the form, as a browser does (redirects not followed).
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .post(app.url(&format!("/orders/{no}/switch")))
        .form(&[("t", token), ("method", "wxpay")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/orders/{no}?t=")) && !location.contains("failed"),
        "{location}"
    );
    let html = page("").await;
    assert!(
        html.contains("data-testid=\"qr\""),
        "the WeChat QR code is shown"
    );
    assert!(
        html.contains("data-testid=\"switch-alipay\""),
        "other methods are offered"
    );
    assert!(
        !html.contains("data-testid=\"switch-wxpay\""),
        "not the current one"
    );
    assert_eq!(app.admin_order(no).await["method"], "wxpay");
    // A method no channel serves fails without changing anything.
    let r = no_redirect
        .post(app.url(&format!("/orders/{no}/switch")))
        .form(&[("t", token), ("method", "bitcoin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("&switch=failed"));
    assert!(page("&switch=failed")
        .await
        .contains("data-testid=\"switch-result\""));
    assert_eq!(app.admin_order(no).await["method"], "wxpay");
    // Without the token: not found.
    let r = no_redirect
        .post(app.url(&format!("/orders/{no}/switch")))
        .form(&[("t", "wrong"), ("method", "alipay")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
both_backends!(the_order_page_switches_method);
