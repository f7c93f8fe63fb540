//! Channels added through the admin API (DESIGN 4.3 `/api/v1/admin/channels`), on both
//! backends: one added while the shop runs takes orders at once and is paid through its
//! simulator; editing its priority re-routes; disabling it stops new orders while a pending
//! order on it is still paid and delivered; deleting it archives it while payments point at
//! it. Key material goes in as text, is stored sealed, and never comes back out (responses,
//! audit rows, the database's bytes). Bad input changes nothing; the configuration file's
//! channels are read-only; the test button tells good credentials from bad ones; a second
//! process on the database follows the changes.

use std::time::Duration;

use kami_store::{AuditFilter, AuditRecord};
use kami_testkit::kami_sim::gateways::{ALIPAY_APP_ID, ALIPAY_SELLER_ID, EPAY_PID};
use kami_testkit::{both_backends, inspect, Backend, TestApp, SANDBOX_SECRET};
use reqwest::Method as Http;
use serde_json::{json, Value};

/// An admin API call: (status, raw body text, body as JSON or `null`).
async fn call(
    app: &TestApp,
    method: Http,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, json)
}

async fn add(app: &TestApp, body: Value) -> Value {
    let (s, text, v) = call(app, Http::POST, "/api/v1/admin/channels", Some(body)).await;
    assert_eq!(s, 201, "{text}");
    v
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let (s, _, v) = call(
        app,
        Http::PATCH,
        &format!("/api/v1/admin/channels/{id}"),
        Some(body),
    )
    .await;
    (s, v)
}

async fn channel(app: &TestApp, id: &str) -> Value {
    let (s, text, v) = call(
        app,
        Http::GET,
        &format!("/api/v1/admin/channels/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    v
}

async fn test_button(app: &TestApp, id: &str) -> Value {
    let (s, text, v) = call(
        app,
        Http::POST,
        &format!("/api/v1/admin/channels/{id}/test"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    v
}

async fn audit(app: &TestApp, target: &str) -> Vec<AuditRecord> {
    let mut rows = app
        .state
        .store
        .audit_log(AuditFilter {
            target: Some(target.into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

/// The stored channels whose sealed column holds `text` as plain bytes (0 when sealed), and
/// those whose column does not start with the sealed format's byte.
async fn plain_in_db(app: &TestApp, text: &str) -> (i64, i64) {
    let (find, unsealed) = match app.backend {
        Backend::Sqlite => (
            format!("SELECT COUNT(*) FROM channels WHERE instr(secrets, CAST('{text}' AS BLOB)) > 0"),
            "SELECT COUNT(*) FROM channels WHERE hex(substr(secrets, 1, 1)) <> 'F8'".to_owned(),
        ),
        Backend::Postgres => (
            format!(
                "SELECT COUNT(*) FROM channels WHERE position(convert_to('{text}', 'UTF8') in secrets) > 0"
            ),
            "SELECT COUNT(*) FROM channels WHERE get_byte(secrets, 0) <> 248".to_owned(),
        ),
    };
    (
        inspect::scalar(&app.db_url, &find).await,
        inspect::scalar(&app.db_url, &unsealed).await,
    )
}

/// Pay an order through its simulator's page and wait until it is delivered.
async fn pay_and_deliver(app: &TestApp, order: &Value) -> Value {
    let (s, body) = app.pay_in_browser(order, "normal").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    v
}

async fn a_channel_added_through_the_api_takes_orders_without_a_restart(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    let keys = gw.merchant_keys().unwrap();
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 20).await;

    // Epay (v1) and Alipay channels beside the simulators' own, at a higher priority.
    let epay = add(
        &app,
        json!({
            "id": "epay-db", "kind": "epay", "methods": ["qqpay"], "priority": 20,
            "gateway": format!("{}/sim/epay/", gw.base_url()), "pid": EPAY_PID,
            "key": keys.epay_key, "version": 1
        }),
    )
    .await;
    assert_eq!(epay["source"], "stored");
    assert_eq!(epay["keys_set"], json!(["key"]));
    assert_eq!(epay["state"], "enabled");
    assert_eq!(epay["read_only"], false);
    let ali = add(
        &app,
        json!({
            "id": "ali-db", "kind": "alipay", "methods": ["alipay"], "priority": 20,
            "gateway": format!("{}/sim/alipay/gateway.do", gw.base_url()),
            "app_id": ALIPAY_APP_ID, "seller_id": ALIPAY_SELLER_ID,
            "app_private_key": keys.alipay_app_private_key,
            "alipay_public_key": keys.alipay_public_key,
        }),
    )
    .await;
    assert_eq!(
        ali["keys_set"],
        json!(["alipay_public_key", "app_private_key"])
    );

    // Orders go to them at once and are delivered when the simulator pays.
    let q = app.order_via("vip", "qqpay", "pc").await;
    assert_eq!(q["payment"]["channel"], "epay-db", "{q}");
    pay_and_deliver(&app, &q).await;
    let a = app.order_via("vip", "alipay", "pc").await;
    assert_eq!(a["payment"]["channel"], "ali-db", "{a}");
    pay_and_deliver(&app, &a).await;

    // Never shown again, not in the database's bytes, not in the audit log.
    kami_server::services::channel_calls::flush(&app.state).await;
    let (s, list_text, list) = call(&app, Http::GET, "/api/v1/admin/channels", None).await;
    assert_eq!(s, 200);
    let pem_body = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .take(2)
            .collect::<String>()
    };
    for secret in [
        keys.epay_key.clone(),
        pem_body(&keys.alipay_app_private_key),
        pem_body(&keys.alipay_public_key),
    ] {
        assert!(!list_text.contains(&secret), "the list shows key material");
        assert_eq!(
            plain_in_db(&app, &secret).await.0,
            0,
            "sealed in the database"
        );
        for row in audit(&app, "channel:epay-db")
            .await
            .into_iter()
            .chain(audit(&app, "channel:ali-db").await)
        {
            assert!(
                !format!("{:?}", row.entry).contains(&secret),
                "{:?}",
                row.entry
            );
        }
    }
    assert!(!list_text.contains("PRIVATE KEY"));
    assert_eq!(
        plain_in_db(&app, "x").await.1,
        0,
        "every row in the sealed format"
    );
    let ids: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "sandbox",
            "alipay-sim",
            "wechat-sim",
            "epay-sim",
            "usdt-sim",
            "tokenpay-sim",
            "paypal-sim",
            "stripe-sim",
            "epay-db",
            "ali-db"
        ]
    );
    let sim = &list["channels"][3];
    assert_eq!(
        (sim["source"].as_str(), sim["read_only"].as_bool()),
        (Some("extension"), Some(true))
    );
    let db = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "epay-db")
        .unwrap();
    assert_eq!(db["health"]["created"], 1, "{db}");
    assert_eq!(db["health"]["paid"], 1, "{db}");
    assert_eq!(db["health"]["calls"], 1, "{db}");
    assert_eq!(db["health"]["success_rate"], 1.0, "{db}");
    assert_eq!(db["health"]["resting_until"], Value::Null);

    // A lower priority: the next order goes to the simulators' own channel.
    let (s, v) = patch(&app, "epay-db", json!({"priority": 5})).await;
    assert_eq!((s, v["priority"].as_i64()), (200, Some(5)), "{v}");
    let q2 = app.order_via("vip", "qqpay", "pc").await;
    assert_eq!(q2["payment"]["channel"], "epay-sim", "{q2}");
    let (s, _) = patch(&app, "epay-db", json!({"priority": 20, "weight": 3})).await;
    assert_eq!(s, 200);

    // Disabled: no new orders, but an order placed on it before is still paid and delivered.
    let pending = app.order_via("vip", "qqpay", "pc").await;
    assert_eq!(pending["payment"]["channel"], "epay-db");
    let (s, v) = patch(&app, "epay-db", json!({"enabled": false})).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("disabled")), "{v}");
    for _ in 0..3 {
        let o = app.order_via("vip", "qqpay", "pc").await;
        assert_eq!(o["payment"]["channel"], "epay-sim", "{o}");
    }
    pay_and_deliver(&app, &pending).await;

    // Deleted while payments point at it: archived, read-only, still known.
    let (s, _, v) = call(&app, Http::DELETE, "/api/v1/admin/channels/epay-db", None).await;
    assert_eq!((s, v), (200, json!({"deleted": false, "archived": true})));
    let c = channel(&app, "epay-db").await;
    assert_eq!(
        (c["state"].as_str(), c["read_only"].as_bool()),
        (Some("archived"), Some(true))
    );
    let (s, v) = patch(&app, "epay-db", json!({"enabled": true})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("channel_archived")),
        "{v}"
    );
    assert!(
        app.state.channels.get("epay-db").is_some(),
        "still resolvable"
    );

    // A channel no payment points at is deleted.
    add(
        &app,
        json!({"id": "spare", "kind": "sandbox", "methods": ["sandbox"], "priority": -5,
               "allow_sandbox": true}),
    )
    .await;
    let (s, _, v) = call(&app, Http::DELETE, "/api/v1/admin/channels/spare", None).await;
    assert_eq!((s, v), (200, json!({"deleted": true, "archived": false})));
    let (s, _, _) = call(&app, Http::GET, "/api/v1/admin/channels/spare", None).await;
    assert_eq!(s, 404);
    assert!(app.state.channels.get("spare").is_none());

    // One audit row per change, with what changed, key material named only.
    let actions: Vec<String> = audit(&app, "channel:epay-db")
        .await
        .iter()
        .map(|r| r.entry.action.clone())
        .collect();
    assert_eq!(
        actions,
        [
            "channel.create",
            "channel.update",
            "channel.update",
            "channel.update",
            "channel.archive"
        ]
    );
    let rows = audit(&app, "channel:epay-db").await;
    assert_eq!(rows[0].entry.actor, "token:test");
    assert_eq!(rows[0].entry.after.as_ref().unwrap()["key"], "stored");
    assert_eq!(rows[1].entry.before, Some(json!({"priority": 20})));
    assert_eq!(rows[1].entry.after, Some(json!({"priority": 5})));
    assert_eq!(rows[3].entry.after, Some(json!({"enabled": false})));
    let spare: Vec<String> = audit(&app, "channel:spare")
        .await
        .iter()
        .map(|r| r.entry.action.clone())
        .collect();
    assert_eq!(spare, ["channel.create", "channel.delete"]);
}
both_backends!(a_channel_added_through_the_api_takes_orders_without_a_restart);

async fn bad_channels_are_refused_precisely_and_change_nothing(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    let keys = gw.merchant_keys().unwrap();
    let alipay = |extra: Value| {
        let mut body = json!({
            "id": "ali-db", "kind": "alipay", "methods": ["alipay"],
            "gateway": format!("{}/sim/alipay/gateway.do", gw.base_url()),
            "app_id": ALIPAY_APP_ID,
            "app_private_key": keys.alipay_app_private_key,
            "alipay_public_key": keys.alipay_public_key,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let refused = [
        (
            alipay(json!({"app_private_key":
                "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"})),
            422,
            "`app_private_key`: not an RSA private key",
        ),
        (
            alipay(json!({"alipay_public_key": "not base64 at all!"})),
            422,
            "`alipay_public_key`: not PEM or base64",
        ),
        (
            alipay(json!({"alipay_public_key": null})),
            422,
            "`alipay_public_key`: missing",
        ),
        (
            alipay(json!({"app_private_key_file": "/etc/passwd"})),
            422,
            "`app_private_key_file`: give the key material itself as text in `app_private_key`",
        ),
        (
            alipay(json!({"mode": "h5"})),
            422,
            "`mode`: `h5` is not one of",
        ),
        (
            alipay(json!({"colour": "red"})),
            422,
            "`colour`: unknown key",
        ),
        (
            alipay(json!({"pid": "1"})),
            422,
            "`pid`: does not apply to kind `alipay`",
        ),
        (
            alipay(json!({"methods": ["bitcoin"]})),
            422,
            "`methods`: unknown payment method",
        ),
        (
            alipay(json!({"weight": 0})),
            422,
            "`weight`: a whole number from 1",
        ),
        (alipay(json!({"id": "Bad Id"})), 422, "`id`:"),
        (
            alipay(json!({"kind": "paypal2"})),
            422,
            "`kind`: unknown channel kind",
        ),
        (alipay(json!({"id": "sandbox"})), 409, "configuration file"),
        (
            json!({"id": "sb", "kind": "sandbox", "methods": ["sandbox"]}),
            422,
            "`allow_sandbox`",
        ),
        (
            json!({"id": "sb", "kind": "sandbox", "methods": ["alipay"], "allow_sandbox": true}),
            422,
            "`methods`: a sandbox channel cannot serve `alipay`",
        ),
    ];
    for (body, status, message) in refused {
        let (s, text, v) = call(&app, Http::POST, "/api/v1/admin/channels", Some(body)).await;
        assert_eq!(s, status, "{message}: {text}");
        let got = v["error"]["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "expected {message:?} in {got:?}");
        assert!(!text.contains("BEGIN"), "key material echoed: {text}");
    }
    let (s, _, v) = call(&app, Http::POST, "/api/v1/admin/channels", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{v}"
    );
    assert!(
        app.state.store.stored_channels().await.unwrap().is_empty(),
        "nothing stored"
    );
    assert!(
        audit(&app, "channel:ali-db").await.is_empty(),
        "nothing audited"
    );

    // The configuration file's (and the simulators') channels are read-only.
    for id in ["sandbox", "alipay-sim"] {
        let (s, v) = patch(&app, id, json!({"priority": 99})).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("channel_read_only")),
            "{v}"
        );
        let (s, _, v) = call(
            &app,
            Http::DELETE,
            &format!("/api/v1/admin/channels/{id}"),
            None,
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("channel_read_only")),
            "{v}"
        );
    }
    let (s, v) = patch(&app, "nope", json!({"priority": 1})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("channel_not_found"))
    );

    // A good one, then a taken id and a bad edit, which leaves it as it was.
    add(&app, alipay(json!({}))).await;
    let (s, _, v) = call(
        &app,
        Http::POST,
        "/api/v1/admin/channels",
        Some(alipay(json!({}))),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("channel_exists")),
        "{v}"
    );
    let before = app.state.store.stored_channels().await.unwrap();
    let (s, v) = patch(
        &app,
        "ali-db",
        json!({"app_private_key": "garbage", "priority": 3}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`app_private_key`"));
    let (s, v) = patch(&app, "ali-db", json!({"kind": "epay"})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(app.state.store.stored_channels().await.unwrap(), before);
    assert_eq!(
        audit(&app, "channel:ali-db").await.len(),
        1,
        "only the creation"
    );
    // Key material left out of an edit is kept; `null` removes an optional key.
    let (s, v) = patch(&app, "ali-db", json!({"seller_id": ALIPAY_SELLER_ID})).await;
    assert_eq!(
        (s, v["keys_set"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );
    let (s, v) = patch(&app, "ali-db", json!({"seller_id": null})).await;
    assert_eq!((s, v["settings"].get("seller_id")), (200, None), "{v}");
    assert_eq!(test_button(&app, "ali-db").await["ok"], true);
}
both_backends!(bad_channels_are_refused_precisely_and_change_nothing);

async fn the_test_button_tells_good_credentials_from_bad(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    let keys = gw.merchant_keys().unwrap();
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 5).await;
    let epay = |id: &str, key: &str| {
        json!({"id": id, "kind": "epay", "methods": ["qqpay"], "enabled": false,
               "gateway": format!("{}/sim/epay/", gw.base_url()), "pid": EPAY_PID, "key": key})
    };
    add(&app, epay("ep-good", &keys.epay_key)).await;
    add(&app, epay("ep-bad", "a-wrong-merchant-key-0000000000")).await;
    let stranger = kami_pay::crypto::RsaSigner::generate()
        .unwrap()
        .private_key_pem()
        .unwrap();
    let alipay = |id: &str, private: &str| {
        json!({"id": id, "kind": "alipay", "methods": ["alipay"], "enabled": false,
               "gateway": format!("{}/sim/alipay/gateway.do", gw.base_url()),
               "app_id": ALIPAY_APP_ID, "app_private_key": private,
               "alipay_public_key": keys.alipay_public_key})
    };
    add(&app, alipay("ali-good", &keys.alipay_app_private_key)).await;
    add(&app, alipay("ali-bad", &stranger)).await;

    for id in [
        "ep-good",
        "ali-good",
        "alipay-sim",
        "wechat-sim",
        "epay-sim",
        "sandbox",
    ] {
        let t = test_button(&app, id).await;
        assert_eq!(t["ok"], true, "{id}: {t}");
        assert!(
            t["message"].as_str().unwrap().contains("does not exist"),
            "{id}: {t}"
        );
    }
    for id in ["ep-bad", "ali-bad"] {
        let t = test_button(&app, id).await;
        assert_eq!(t["ok"], false, "{id}: {t}");
        assert!(
            t["message"].as_str().unwrap().contains("gateway refused"),
            "{id}: {t}"
        );
    }
    let (s, _, _) = call(&app, Http::POST, "/api/v1/admin/channels/nope/test", None).await;
    assert_eq!(s, 404);
    // Disabled channels take no orders (the simulators' own ones do).
    let q = app.order_via("vip", "qqpay", "pc").await;
    assert_eq!(q["payment"]["channel"], "epay-sim");
}
both_backends!(the_test_button_tells_good_credentials_from_bad);

async fn another_process_follows_the_stored_channels(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.another_instance("").await;
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 5).await;
    add(
        &app,
        json!({"id": "sb2", "kind": "sandbox", "methods": ["sandbox"], "priority": 10,
               "secret": SANDBOX_SECRET, "allow_sandbox": true}),
    )
    .await;
    let seen = |present: bool| {
        let other = &other;
        async move {
            for _ in 0..100 {
                if other.state.channels.get("sb2").is_some() == present {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(seen(true).await, "the other process loads the new channel");
    let o = other.order("vip", 1).await;
    assert_eq!(o["payment"]["channel"], "sb2", "{o}");
    let (s, _, v) = call(&app, Http::DELETE, "/api/v1/admin/channels/sb2", None).await;
    assert_eq!((s, v["archived"].as_bool()), (200, Some(true)), "{v}");
    // Archived: the other process stops routing to it but still knows it.
    for _ in 0..100 {
        if other
            .state
            .channels
            .entry("sb2")
            .is_some_and(|e| !e.enabled)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = other.order("vip", 1).await;
    assert_eq!(o["payment"]["channel"], "sandbox", "{o}");
    other.pay(&o).await;
    assert_eq!(other.wait_settled(&o).await["status"], "delivered");
}
both_backends!(another_process_follows_the_stored_channels);

/// An order routed to a stored channel that another process deleted meanwhile is refused by
/// the store (the channel's row is required under its key lock), never created orphaned.
async fn an_order_on_a_deleted_channel_is_refused(backend: Backend) {
    use kami_core::{ChannelId, Email, Method, OrderNo, Quantity, Slug};
    use kami_store::{NewOrder, StoreError};

    let app = TestApp::spawn(backend).await;
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 5).await;
    add(
        &app,
        json!({"id": "gone", "kind": "sandbox", "methods": ["sandbox"], "allow_sandbox": true}),
    )
    .await;
    let (s, _, v) = call(&app, Http::DELETE, "/api/v1/admin/channels/gone", None).await;
    assert_eq!((s, v["deleted"].as_bool()), (200, Some(true)));
    let order = |channel: &str, stored: bool| NewOrder {
        fx: Default::default(),
        order_no: OrderNo::generate("20260101000000"),
        product: Slug::parse("vip").unwrap(),
        quantity: Quantity::new(1).unwrap(),
        email: Email::parse("b@example.com").unwrap(),
        method: Method::Sandbox,
        channel_id: ChannelId::parse(channel).unwrap(),
        access_token_hash: "h".into(),
        query_password_hash: None,
        locale: "en".into(),
        now: 1,
        expires_at: i64::MAX / 2,
        first_check_at: i64::MAX / 2,
        client_ip: None,
        pending_caps: Default::default(),
        fields: Default::default(),
        coupon: None,
        stored_channel: stored,
        route: Vec::new(),
    };
    let r = app.state.store.create_order(order("gone", true)).await;
    assert!(matches!(r, Err(StoreError::ChannelGone)), "{r:?}");
    assert_eq!(app.stock("vip").await, json!(5), "nothing reserved");
    assert!(app
        .state
        .store
        .create_order(order("sandbox", false))
        .await
        .is_ok());
}
both_backends!(an_order_on_a_deleted_channel_is_refused);
