//! Order search through the admin API (every filter, paging, bad input) and the index each
//! filter is answered from (the plan text of both backends, with 3,000 seeded orders).

use kami_core::{ChannelId, Clock, Email, Method, OrderNo, Quantity, Slug};
use kami_server::time::rfc3339;
use kami_store::{NewOrder, OrderFilter, OrderQuery};
use kami_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

use crate::support::spawn;

const DAY: i64 = 86_400_000;

/// `GET /api/v1/admin/orders?{query}` → (status, body).
async fn search(app: &TestApp, query: &str) -> (u16, Value) {
    let r = app
        .shop
        .http
        .get(app.shop.url(&format!("/api/v1/admin/orders?{query}")))
        .bearer_auth(&app.shop.admin_token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn numbers(app: &TestApp, query: &str) -> Vec<String> {
    let (status, body) = search(app, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn order_as(app: &TestApp, slug: &str, email: &str) -> Value {
    let (status, body) = app
        .shop
        .try_order(json!({"product": slug, "quantity": 1, "email": email, "method": "sandbox"}))
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// The gateway's trade number of an order's (first) payment.
pub async fn gateway_trade_no(app: &TestApp, order_no: &str) -> String {
    let no = OrderNo::parse(order_no).unwrap();
    let payments = app.state.store.order_payments(&no).await.unwrap().unwrap();
    payments[0]
        .gateway_trade_no
        .clone()
        .expect("paid: the gateway named the trade")
}

async fn api_filters_find_exactly(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    app.create_product("find-auto", 500, "auto").await;
    app.import_keys("find-auto", 3).await;
    app.create_product("find-manual", 900, "manual").await;

    let alice = order_as(&app, "find-auto", "alice@example.com").await;
    app.pay(&alice).await;
    app.wait_settled(&alice).await;
    let alice_no = alice["order_no"].as_str().unwrap().to_owned();
    let day_one = rfc3339(clock.now_ms())[..10].to_owned();
    clock.advance(2 * DAY);
    let bob = order_as(&app, "find-manual", "Bob@Example.com").await;
    let bob_no = bob["order_no"].as_str().unwrap().to_owned();
    let day_three = rfc3339(clock.now_ms())[..10].to_owned();
    let trade = gateway_trade_no(&app, &alice_no).await;

    let both = vec![bob_no.clone(), alice_no.clone()];
    assert_eq!(numbers(&app, "").await, both, "newest first");
    assert_eq!(
        numbers(&app, &format!("q={alice_no}")).await,
        [alice_no.as_str()]
    );
    assert_eq!(
        numbers(&app, "q=bob%40example.com").await,
        [bob_no.as_str()]
    );
    assert_eq!(
        numbers(&app, "q=BOB%40example.com").await,
        [bob_no.as_str()],
        "emails are case-free"
    );
    assert!(numbers(&app, "q=nobody%40example.com").await.is_empty());
    assert_eq!(
        numbers(&app, &format!("q={trade}")).await,
        [alice_no.as_str()]
    );
    assert!(numbers(&app, "q=NO-SUCH-TRADE").await.is_empty());
    assert_eq!(numbers(&app, "status=delivered").await, [alice_no.as_str()]);
    assert_eq!(numbers(&app, "status=pending").await, [bob_no.as_str()]);
    assert!(numbers(&app, "status=exception").await.is_empty());
    assert_eq!(numbers(&app, "channel=sandbox").await, both);
    assert!(numbers(&app, "channel=alipay-main").await.is_empty());
    assert_eq!(numbers(&app, "method=sandbox").await, both);
    assert!(numbers(&app, "method=alipay").await.is_empty());
    assert_eq!(
        numbers(&app, "product=find-manual").await,
        [bob_no.as_str()]
    );
    assert!(numbers(&app, "product=no-such-product").await.is_empty());
    assert_eq!(
        numbers(&app, &format!("from={day_one}&to={day_one}")).await,
        [alice_no.as_str()]
    );
    assert_eq!(
        numbers(&app, &format!("from={day_three}")).await,
        [bob_no.as_str()]
    );
    assert_eq!(
        numbers(&app, &format!("to={day_one}")).await,
        [alice_no.as_str()]
    );
    assert_eq!(
        numbers(&app, &format!("status=pending&from={day_one}&to={day_one}")).await,
        Vec::<String>::new(),
        "filters combine"
    );

    // Paging: a full page names the next cursor; the last page names none.
    let (_, first) = search(&app, "limit=1").await;
    assert_eq!(first["orders"][0]["order_no"], bob_no.as_str());
    let next = first["next_before"].as_str().unwrap();
    let (_, second) = search(&app, &format!("limit=1&before={next}")).await;
    assert_eq!(second["orders"][0]["order_no"], alice_no.as_str());
    let (_, third) = search(&app, &format!("limit=1&before={alice_no}")).await;
    assert_eq!(third["orders"], json!([]));
    assert_eq!(third["next_before"], Value::Null);

    for (bad, code) in [
        ("status=bogus", "invalid_status"),
        ("from=2024-13-01", "invalid_date"),
        ("from=2024-02-02&to=2024-02-01", "invalid_date"),
        ("limit=501", "invalid_limit"),
        ("limit=0", "invalid_limit"),
        ("q=not%20an%40email", "invalid_query"),
        ("method=bitcoin", "invalid_method"),
        ("before=x", "invalid_cursor"),
    ] {
        let (status, body) = search(&app, bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }
}
both_backends!(api_filters_find_exactly);

/// 3,000 orders over 3 products, 5 channels, 4 methods, 300 emails, a day apart in groups.
async fn seed(app: &TestApp) -> (OrderNo, i64) {
    for p in ["seed-a", "seed-b", "seed-c"] {
        app.create_product(p, 100, "manual").await;
    }
    let start = 1_700_000_000_000;
    let mut first = None;
    for i in 0..3_000i64 {
        let no = OrderNo::generate(&kami_server::time::stamp(start + i * 60_000));
        first.get_or_insert(no.clone());
        app.state
            .store
            .create_order(NewOrder {
                fx: Default::default(),
                order_no: no,
                product: Slug::parse(["seed-a", "seed-b", "seed-c"][(i % 3) as usize]).unwrap(),
                quantity: Quantity::new(1).unwrap(),
                email: Email::parse(&format!("buyer{}@example.com", i % 300)).unwrap(),
                method: Method::ALL[(i % 4) as usize],
                channel_id: ChannelId::parse(&format!("ch-{}", i % 5)).unwrap(),
                access_token_hash: "h".into(),
                query_password_hash: None,
                locale: "en".into(),
                now: start + i * 60_000,
                expires_at: start + i * 60_000 + 900_000,
                first_check_at: i64::MAX / 2,
                client_ip: None,
                pending_caps: Default::default(),
                fields: Default::default(),
                coupon: None,
                stored_channel: false,
                route: Vec::new(),
            })
            .await
            .unwrap();
    }
    (first.unwrap(), start)
}

async fn each_filter_is_answered_from_an_index(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let (some_order, start) = seed(&app).await;
    let page = |f: OrderFilter| OrderFilter { limit: 50, ..f };
    let cases: Vec<(&str, OrderFilter, &[&str])> = vec![
        (
            "order no",
            page(OrderFilter {
                query: Some(OrderQuery::OrderNo(some_order)),
                ..Default::default()
            }),
            &["orders_order_no_key", "sqlite_autoindex_orders_1"],
        ),
        (
            "email",
            page(OrderFilter {
                query: Some(OrderQuery::Email(
                    Email::parse("buyer7@example.com").unwrap(),
                )),
                ..Default::default()
            }),
            &["orders_email"],
        ),
        (
            "gateway trade no",
            page(OrderFilter {
                query: Some(OrderQuery::GatewayTradeNo("420000123".into())),
                ..Default::default()
            }),
            &["payments_gateway_trade"],
        ),
        (
            "status",
            page(OrderFilter {
                status: Some(kami_core::OrderStatus::Exception),
                ..Default::default()
            }),
            &["orders_status_id"],
        ),
        (
            "channel",
            page(OrderFilter {
                channel: Some(ChannelId::parse("ch-3").unwrap()),
                ..Default::default()
            }),
            &["orders_channel_id"],
        ),
        (
            "method",
            page(OrderFilter {
                method: Some(Method::Alipay),
                ..Default::default()
            }),
            &["orders_method_id"],
        ),
        (
            "product",
            page(OrderFilter {
                product: Some(Slug::parse("seed-b").unwrap()),
                ..Default::default()
            }),
            &["orders_product_id"],
        ),
        (
            "date range",
            page(OrderFilter {
                created_from: Some(start + 100 * 60_000),
                created_before: Some(start + 200 * 60_000),
                ..Default::default()
            }),
            &["orders_created"],
        ),
    ];
    for (what, filter, indexes) in cases {
        let plan = app.state.store.explain_order_search(filter).await.unwrap();
        let text = plan.join("\n");
        assert!(
            indexes.iter().any(|i| text.contains(i)),
            "{what}: expected one of {indexes:?} in the plan:\n{text}"
        );
        assert!(
            !text.contains("Seq Scan on orders")
                && !plan
                    .iter()
                    .any(|l| l.trim() == "SCAN o" || l.starts_with("SCAN o ")),
            "{what}: a full scan of orders:\n{text}"
        );
    }
}
both_backends!(each_filter_is_answered_from_an_index);
