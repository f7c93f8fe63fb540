//! Every page rendered in both languages, as snapshots (SQLite; the database does not change
//! the HTML). Volatile parts are redacted by `support::snapshot`.

use serde_json::json;

use crate::support::*;
use kami_testkit::{Backend, TestApp};

const LANGS: [&str; 2] = ["zh-CN", "en"];

const SHOP: &str = "[shop]\nname = \"Test Shop\"\n\
    notice = \"**Welcome!** Keys arrive *instantly* after payment.\"\n\
    footer = \"Questions? [Write to us](https://example.com/support).\"\n";

async fn shop() -> TestApp {
    shop_with(SHOP).await
}

async fn shop_with(config: &str) -> TestApp {
    let app = TestApp::spawn_with(Backend::Sqlite, config).await;
    catalogue(&app).await;
    app
}

/// A fixed catalogue: categories, tiers, low stock, sold out, a manual product.
async fn catalogue(app: &TestApp) {
    add_product(
        app,
        "game",
        "Game Key",
        1230,
        json!({
            "category": "Games", "sort_order": 1,
            "description": "Redeem on **Steam**.\n\n- Global\n- Instant",
            "tiers": [{"min_quantity": 5, "price": 1100}, {"min_quantity": 10, "price": 990}],
        }),
    )
    .await;
    let keys: Vec<String> = (1..=20).map(|i| format!("GAME-KEY-{i:04}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    add_keys(app, "game", &keys).await;

    add_product(
        app,
        "vip",
        "VIP Month",
        3000,
        json!({"category": "Memberships", "sort_order": 2, "min_quantity": 1, "max_quantity": 3}),
    )
    .await;
    add_keys(app, "vip", &["VIP-0001", "VIP-0002", "VIP-0003"]).await;

    add_product(
        app,
        "old",
        "Old Edition",
        500,
        json!({"category": "Games", "sort_order": 3}),
    )
    .await;

    add_product(
        app,
        "custom",
        "Custom Service",
        9900,
        json!({"delivery": "manual", "sort_order": 4}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_page() {
    let app = shop().await;
    for lang in LANGS {
        let p = get_in(&app, "/", lang).await;
        assert_eq!(p.status, 200);
        assert_eq!(p.lang(), lang);
        snapshot(&format!("catalogue-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_catalogue_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for lang in LANGS {
        let p = get_in(&app, "/", lang).await;
        assert_eq!(p.status, 200);
        assert!(p.has("catalogue-empty"));
        snapshot(&format!("catalogue-empty-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_page_with_tiers() {
    let app = shop().await;
    for lang in LANGS {
        let p = get_in(&app, "/p/game", lang).await;
        assert_eq!(p.status, 200);
        assert!(p.has("tiers") && p.has("order-form"));
        snapshot(&format!("product-tiers-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_page_sold_out_and_limited() {
    let app = shop().await;
    for lang in LANGS {
        let p = get_in(&app, "/p/old", lang).await;
        assert!(p.has("sold-out") && !p.has("order-form"));
        snapshot(&format!("product-sold-out-{lang}"), &p);
        let p = get_in(&app, "/p/vip", lang).await;
        snapshot(&format!("product-limits-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_page_with_validation_error() {
    let app = shop().await;
    for lang in LANGS {
        let p = post(
            &app,
            "/p/game",
            &order_form("5", "not-an-email", "sandbox", ""),
            &[("accept-language", lang)],
        )
        .await;
        assert_eq!(p.status, 422);
        assert!(p.has("form-error"));
        snapshot(&format!("product-error-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_with_qr_code() {
    let app = TestApp::spawn_gateways(Backend::Sqlite, SHOP).await;
    catalogue(&app).await;
    let placed = buy(
        &app,
        "game",
        &order_form("2", "buyer@example.com", "wxpay", ""),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    assert_eq!(pay_action(&app, &placed.no).await.0, "qr");
    for lang in LANGS {
        let p = get_in(&app, &placed.location, lang).await;
        assert_eq!(p.status, 200);
        assert!(p.has("qr") && p.body.contains("<svg"), "{}", p.body);
        snapshot(&format!("checkout-qr-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_with_redirect() {
    let app = shop().await;
    let placed = buy_simple(&app, "game", 1, "").await;
    for lang in LANGS {
        let p = get_in(&app, &placed.location, lang).await;
        assert_eq!(p.status, 200);
        assert!(p.has("pay-link") && p.has("countdown"));
        snapshot(&format!("checkout-redirect-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivered_order_and_status_only_view() {
    let app = shop().await;
    let placed = buy_simple(&app, "game", 2, "").await;
    assert_eq!(pay_and_settle(&app, &placed).await["status"], "delivered");
    for lang in LANGS {
        let p = get_in(&app, &placed.location, lang).await;
        assert_eq!(p.keys(), ["GAME-KEY-0001", "GAME-KEY-0002"]);
        snapshot(&format!("order-delivered-{lang}"), &p);
        let p = get_in(&app, &format!("/orders/{}", placed.no), lang).await;
        assert!(p.keys().is_empty() && p.has("status-only"));
        snapshot(&format!("order-status-only-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_order() {
    let app = shop().await;
    let placed = buy_simple(&app, "game", 1, "").await;
    app.state.store.expire_due(FAR_FUTURE, 10).await.unwrap();
    for lang in LANGS {
        let p = get_in(&app, &placed.location, lang).await;
        assert!(p.has("order-again"));
        snapshot(&format!("order-expired-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_pages() {
    let app = shop().await;
    let placed = buy_simple(&app, "game", 1, "secret-pw").await;
    pay_and_settle(&app, &placed).await;
    for lang in LANGS {
        let p = get_in(&app, "/lookup", lang).await;
        assert!(p.has("lookup-form") && !p.has("recent"));
        snapshot(&format!("lookup-form-{lang}"), &p);

        let p = post(
            &app,
            "/lookup",
            &[("q", &placed.no), ("password", "secret-pw")],
            &[("accept-language", lang), ("cookie", &placed.cookie())],
        )
        .await;
        assert!(p.has("lookup-result") && p.has("recent"), "{}", p.body);
        snapshot(&format!("lookup-found-{lang}"), &p);

        let p = post(
            &app,
            "/lookup",
            &[("q", "nobody@example.com"), ("password", "secret-pw")],
            &[("accept-language", lang)],
        )
        .await;
        assert!(p.has("lookup-empty"));
        snapshot(&format!("lookup-empty-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_found_page() {
    let app = shop().await;
    for lang in LANGS {
        let p = get_in(&app, "/no/such/page", lang).await;
        assert_eq!(p.status, 404);
        snapshot(&format!("not-found-{lang}"), &p);
    }
}

const UA_QQ: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Mobile/15E148 QQ/9.0.0.0 V1_IPH_SQ_9.0.0_1_APP_A Pixel/1170";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_app_browser_guide() {
    let app = TestApp::spawn_gateways(Backend::Sqlite, SHOP).await;
    catalogue(&app).await;
    for lang in LANGS {
        let p = get(
            &app,
            "/p/vip",
            &[("accept-language", lang), ("user-agent", UA_WECHAT)],
        )
        .await;
        assert!(p.body.contains("class=\"method blocked\""), "{}", p.body);
        // The guide comes before the form, naming what WeChat's browser cannot open.
        let guide = p
            .body
            .find("data-testid=\"inapp-guide\"")
            .expect("the in-app guide");
        let form = p.body.find("data-testid=\"order-form\"").expect("the form");
        assert!(guide < form, "the guide shows before the form");
        assert!(p.body.contains("data-app=\"wechat\""));
        snapshot(&format!("product-in-wechat-{lang}"), &p);

        // QQ's browser: Alipay and WeChat Pay both need the real browser.
        let p = get(
            &app,
            "/p/vip",
            &[("accept-language", lang), ("user-agent", UA_QQ)],
        )
        .await;
        assert!(p.body.contains("data-app=\"qq\""), "{}", p.body);
        snapshot(&format!("product-in-qq-{lang}"), &p);
        let p = post(
            &app,
            "/p/vip",
            &order_form("1", "buyer@example.com", "wxpay", ""),
            &[("accept-language", lang), ("user-agent", UA_QQ)],
        )
        .await;
        assert!(p.has("message-open_in_browser"));

        // A plain phone browser: no guide.
        let p = get(&app, "/p/vip", &[("accept-language", lang)]).await;
        assert!(!p.body.contains("inapp-guide"));

        let p = post(
            &app,
            "/p/vip",
            &order_form("1", "buyer@example.com", "alipay", ""),
            &[("accept-language", lang), ("user-agent", UA_WECHAT)],
        )
        .await;
        assert!(p.has("message-open_in_browser"));
        snapshot(&format!("open-in-browser-{lang}"), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limited_page() {
    let app = shop_with(&format!("{SHOP}lookup_per_minute = 1\n")).await;
    let first = post(&app, "/lookup", &[("q", "x"), ("password", "yyyy")], &[]).await;
    assert_eq!(first.status, 200);
    for lang in LANGS {
        let p = post(
            &app,
            "/lookup",
            &[("q", "x"), ("password", "yyyy")],
            &[("accept-language", lang)],
        )
        .await;
        assert_eq!(p.status, 429);
        snapshot(&format!("rate-limited-{lang}"), &p);
    }
}
