//! The shop's settings through `/api/v1/admin/settings` (issue 10 part 8): a saved value wins
//! over the configuration at once (the shop's name on `/`, the next order's expiry, a risk
//! limit), a reset returns to the file's value, a refused change changes nothing, every
//! change is audited with before/after, the SMTP password is sealed and never shown, a test
//! mail tells the SMTP server's error precisely, and another kami process on the same database
//! follows within seconds.

use std::time::{Duration, Instant};

use kami_store::{AuditFilter, AuditRecord};
use kami_testkit::inspect::{scalar, sqlite_path};
use kami_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

const PASSWORD: &str = "smtp-Secret-7f3a9c";

/// `PATCH /api/v1/admin/settings` with a raw body.
async fn patch_raw(app: &TestApp, body: &str) -> (u16, Value) {
    let r = app
        .http
        .patch(app.url("/api/v1/admin/settings"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
    )
}

async fn patch(app: &TestApp, body: Value) -> (u16, Value) {
    patch_raw(app, &body.to_string()).await
}

async fn settings_audit(app: &TestApp) -> Vec<AuditRecord> {
    app.state
        .store
        .audit_log(AuditFilter {
            target: Some("settings".into()),
            limit: 50,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

async fn home(app: &TestApp) -> String {
    app.http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Minutes between an order's creation (now) and its `expires_at`, rounded.
async fn expiry_minutes(app: &TestApp, email: &str) -> i64 {
    let before = kami_core::clock::now_ms();
    let (s, v) = app
        .try_order(json!({"product": "item", "email": email, "method": "sandbox"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let t = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64 - before;
    (ms as f64 / 60_000.0).round() as i64
}

async fn saved_settings_win_at_once_and_reset_to_the_file(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        "[shop]\nname = \"File Shop\"\n[orders]\nexpire_minutes = 15\n",
    )
    .await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 20).await;

    let v = app.admin_get("/api/v1/admin/settings").await;
    let s = &v["settings"];
    assert_eq!(s["shop.name"]["value"], "File Shop");
    assert_eq!(s["shop.name"]["source"], "config");
    assert_eq!(s["orders.expire_minutes"]["value"], 15);
    assert_eq!(s["smtp.password"]["value"], "not set");
    assert_eq!(s["smtp.host"]["value"], Value::Null);
    assert_eq!(s["smtp.tls"]["choices"], json!(["starttls", "tls", "none"]));
    assert_eq!(v["mail_enabled"], false);
    assert!(home(&app).await.contains("File Shop"));
    assert_eq!(expiry_minutes(&app, "a@example.com").await, 15);

    let (st, v) = patch(
        &app,
        json!({"shop.name": "  Console Shop ", "orders.expire_minutes": 30,
               "risk.max_pending_orders_per_email": 1, "shop.contact": "QQ 123456"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let s = &v["settings"];
    assert_eq!(s["shop.name"]["value"], "Console Shop", "trimmed");
    assert_eq!(s["shop.name"]["source"], "console");
    assert_eq!(s["shop.name"]["config_value"], "File Shop");
    assert!(s["shop.name"]["updated_by"]
        .as_str()
        .unwrap()
        .starts_with("token:"));
    assert!(s["shop.name"]["updated_at"].is_string());
    assert_eq!(s["risk.max_pending_orders_per_email"]["value"], 1);
    assert_eq!(s["risk.max_pending_orders_per_ip"]["source"], "config");

    // In effect on the next request, no restart.
    let page = home(&app).await;
    assert!(page.contains("Console Shop") && !page.contains("File Shop"));
    assert_eq!(expiry_minutes(&app, "b@example.com").await, 30);
    let (st, v) = app
        .try_order(json!({"product": "item", "email": "b@example.com", "method": "sandbox"}))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("too_many_pending_orders"))
    );

    // Back to the file's values.
    let (st, v) = patch(
        &app,
        json!({"shop.name": null, "orders.expire_minutes": null,
               "risk.max_pending_orders_per_email": null}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["settings"]["shop.name"]["source"], "config");
    assert_eq!(v["settings"]["shop.name"]["value"], "File Shop");
    assert!(v["settings"]["shop.name"].get("updated_by").is_none());
    assert_eq!(
        v["settings"]["shop.contact"]["source"], "console",
        "untouched"
    );
    assert!(home(&app).await.contains("File Shop"));
    assert_eq!(expiry_minutes(&app, "b@example.com").await, 15);

    // Audited, newest first, with before/after of what changed only.
    let log = settings_audit(&app).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].entry.action, "settings.update");
    assert!(log[0].entry.actor.starts_with("token:"));
    assert_eq!(
        log[0].entry.before,
        Some(
            json!({"shop.name": "Console Shop", "orders.expire_minutes": 30,
                    "risk.max_pending_orders_per_email": 1})
        )
    );
    assert_eq!(
        log[0].entry.after,
        Some(json!({"shop.name": null, "orders.expire_minutes": null,
                    "risk.max_pending_orders_per_email": null}))
    );
    assert_eq!(
        log[1].entry.before.as_ref().unwrap()["shop.contact"],
        Value::Null
    );
    assert_eq!(
        log[1].entry.after.as_ref().unwrap()["shop.contact"],
        "QQ 123456"
    );
}
both_backends!(saved_settings_win_at_once_and_reset_to_the_file);

async fn refused_settings_change_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[shop]\nname = \"File Shop\"\n").await;
    let (st, _) = patch(&app, json!({"shop.name": "Kept"})).await;
    assert_eq!(st, 200);
    let before = app.admin_get("/api/v1/admin/settings").await;
    let version = app.state.store.settings_version().await.unwrap();

    for (body, needle) in [
        (
            json!({"shop.name": "New", "orders.expire_minutes": 0}),
            "orders.expire_minutes: must be between 1 and 1440, got 0",
        ),
        (
            json!({"orders.expire_minutes": "15"}),
            "expected a whole number",
        ),
        (
            json!({"risk.blocked_ips": ["10.0.0.0/8", "not-an-ip"]}),
            "`not-an-ip` is not an IP address or CIDR",
        ),
        (
            json!({"risk.blocked_emails": ["nobody"]}),
            "risk.blocked_emails",
        ),
        (
            json!({"risk.orders_per_minute_per_ip": 0}),
            "between 1 and 1000000",
        ),
        (
            json!({"smtp.from": "shop at example"}),
            "is not a mail address",
        ),
        (json!({"smtp.port": 25}), "smtp.host: required"),
        (
            json!({"smtp.host": "mail.example.com", "smtp.from": "a@example.com",
                   "smtp.username": "shop"}),
            "smtp.password",
        ),
        (
            json!({"shop.logo": "https://cdn.example/logo.png"}),
            "not a path on this shop",
        ),
        (
            json!({"server.listen": "0.0.0.0:80"}),
            "unknown setting `server.listen`",
        ),
        (json!({}), "no settings given"),
    ] {
        let (st, v) = patch(&app, body.clone()).await;
        assert_eq!(st, 422, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_settings", "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (st, v) = patch_raw(&app, "{\"shop.name\": ").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (st, v) = patch_raw(&app, "[1]").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let r = app
        .http
        .patch(app.url("/api/v1/admin/settings"))
        .json(&json!({"shop.name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is required");

    assert_eq!(app.admin_get("/api/v1/admin/settings").await, before);
    assert_eq!(app.state.store.settings_version().await.unwrap(), version);
    assert_eq!(settings_audit(&app).await.len(), 1, "only the first change");
    assert!(home(&app).await.contains("Kept"));
}
both_backends!(refused_settings_change_nothing);

async fn the_smtp_password_is_sealed_and_never_shown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (st, v) = patch(
        &app,
        json!({"smtp.host": "127.0.0.1", "smtp.port": closed, "smtp.tls": "none",
               "smtp.from": "Shop <shop@example.com>", "smtp.username": "shop",
               "smtp.password": PASSWORD}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(!v.to_string().contains(PASSWORD));
    assert_eq!(v["settings"]["smtp.password"]["value"], "set");
    assert_eq!(v["settings"]["smtp.password"]["source"], "console");
    assert_eq!(v["settings"]["smtp.password"]["config_value"], "not set");
    assert_eq!(v["mail_enabled"], true);
    assert!(app.state.mail_enabled(), "mail on without a restart");
    let got = app.admin_get("/api/v1/admin/settings").await;
    assert!(!got.to_string().contains(PASSWORD));

    // A test mail through it: the connection's error, precisely.
    let (st, v) = app
        .admin_post(
            "/api/v1/admin/settings/test-mail",
            json!({"to": "owner@example.com"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], false);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("127.0.0.1:{closed}")) && msg.contains("Connection refused"),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD));
    let (st, v) = app
        .admin_post("/api/v1/admin/settings/test-mail", json!({"to": "nobody"}))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("invalid_email"))
    );

    // A new password replaces it; the same again changes nothing.
    let (st, _) = patch(&app, json!({"smtp.password": format!("{PASSWORD}-2")})).await;
    assert_eq!(st, 200);
    let (st, _) = patch(&app, json!({"smtp.password": format!("{PASSWORD}-2")})).await;
    assert_eq!(st, 200);
    let log = settings_audit(&app).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].entry.before, Some(json!({"smtp.password": "(set)"})));
    assert_eq!(log[0].entry.after, Some(json!({"smtp.password": "(set)"})));
    assert_eq!(
        log[1].entry.after.as_ref().unwrap()["smtp.password"],
        "(set)"
    );

    // At rest: sealed, in no JSON column, in no audit row.
    let pattern = |col: &str| match backend {
        Backend::Sqlite => format!("instr({col}, CAST('{PASSWORD}' AS BLOB)) > 0"),
        Backend::Postgres => format!("position(convert_to('{PASSWORD}', 'UTF8') in {col}) > 0"),
    };
    let url = &app.db_url;
    assert_eq!(
        scalar(
            url,
            "SELECT COUNT(*) FROM settings WHERE secret IS NOT NULL AND value IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            url,
            &format!(
                "SELECT COUNT(*) FROM settings WHERE {} OR value LIKE '%{PASSWORD}%'",
                pattern("secret")
            )
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            url,
            &format!(
                "SELECT COUNT(*) FROM audit_log WHERE before LIKE '%{PASSWORD}%' \
                 OR after LIKE '%{PASSWORD}%'"
            )
        )
        .await,
        0
    );
    if let Some(db) = sqlite_path(url) {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            bytes.extend(std::fs::read(p).unwrap_or_default());
        }
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password is in the database files"
        );
    }

    // Reset: mail is off again (no [smtp] in the file), the row is gone.
    let (st, v) = patch(
        &app,
        json!({"smtp.host": null, "smtp.port": null, "smtp.tls": null, "smtp.from": null,
               "smtp.username": null, "smtp.password": null}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["mail_enabled"], false);
    assert_eq!(v["settings"]["smtp.password"]["value"], "not set");
    assert_eq!(scalar(url, "SELECT COUNT(*) FROM settings").await, 0);
    let (st, v) = app
        .admin_post(
            "/api/v1/admin/settings/test-mail",
            json!({"to": "owner@example.com"}),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("mail_off")));
}
both_backends!(the_smtp_password_is_sealed_and_never_shown);

async fn another_instance_follows_saved_settings(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[shop]\nname = \"File Shop\"\n").await;
    let other = app.another_instance("[shop]\nname = \"File Shop\"\n").await;
    assert!(home(&other).await.contains("File Shop"));
    let (st, v) = patch(
        &app,
        json!({"shop.name": "Shared Shop", "risk.orders_per_minute_per_ip": 2}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // The other process reads the version every few seconds.
    let started = Instant::now();
    while !home(&other).await.contains("Shared Shop") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the other instance still shows the old name"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(other.state.settings().risk.orders_per_minute_per_ip, 2);
    assert_eq!(
        other.state.settings().saved.version,
        app.state.settings().saved.version
    );
}
both_backends!(another_instance_follows_saved_settings);
