//! `/admin/settings`: sections with each value's source and a reset, saving only what
//! changed (through the API's service: checked, all or nothing, audited as the signed-in
//! user), the SMTP password never echoed, "send test mail" with the server's error, both
//! languages, every POST behind the form token.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser};

async fn home(app: &kami_testkit::TestApp) -> String {
    app.http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn settings_page_saves_resets_and_shows_sources(backend: Backend) {
    let (app, _clock) = spawn(
        backend,
        "[shop]\nname = \"File Shop\"\nnotice = \"Welcome\"\n[orders]\nexpire_minutes = 15\n",
    )
    .await;
    let mut b = Browser::signed_in(&app).await;

    let p = b.get("/admin/settings?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("data-testid=\"nav-settings\""));
    for group in ["shop", "orders", "smtp", "risk"] {
        assert!(
            p.body
                .contains(&format!("data-testid=\"settings-{group}\"")),
            "{group}"
        );
    }
    assert_eq!(
        p.testid("source-shop.name").as_deref(),
        Some("From the configuration file")
    );
    assert!(p.body.contains("value=\"File Shop\""));
    assert!(p.testid("mail-state").unwrap().starts_with("Mail is off"));
    let zh = b.get("/admin/settings?lang=zh-CN").await;
    assert_eq!(zh.status, 200);
    assert!(zh.body.contains("店铺名称") && zh.body.contains("来自配置文件"));
    assert!(zh.body.contains("风控规则"));
    let token = p.csrf();

    // Without the form token, or from another site: refused, nothing saved.
    let fields = [
        ("group", "shop"),
        ("shop.name", "Console Shop"),
        ("shop.notice", "Welcome"),
    ];
    let p = b.post("/admin/settings", &fields).await;
    assert_eq!(p.status, 403);
    let mut with_token = vec![("csrf", token.as_str())];
    with_token.extend(fields);
    let p = b
        .post_with(
            "/admin/settings",
            &with_token,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(app.state.store.settings().await.unwrap().rows.is_empty());
    assert!(home(&app).await.contains("File Shop"));

    // Saved: only the field that changed (the notice was sent as it is, CR LF or not).
    let p = b
        .post(
            "/admin/settings",
            &[
                ("csrf", &token),
                ("group", "shop"),
                ("shop.name", "Console Shop"),
                ("shop.notice", "Welcome"),
                ("shop.contact", ""),
                ("shop.logo", ""),
            ],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/settings?saved=1"),
        "{}",
        p.body
    );
    let saved = app.state.store.settings().await.unwrap();
    assert_eq!(saved.rows.keys().collect::<Vec<_>>(), ["shop.name"]);
    assert!(
        home(&app).await.contains("Console Shop"),
        "in effect at once"
    );
    let p = b.get("/admin/settings?saved=1&lang=en").await;
    assert!(p.testid("settings-saved").is_some());
    assert_eq!(p.testid("source-shop.name").as_deref(), Some("Saved here"));
    assert!(p.body.contains("by user:owner"), "{}", p.body);
    assert!(p
        .body
        .contains("data-testid=\"config-shop.name\">File Shop<"));
    assert!(p.body.contains("data-testid=\"reset-shop.name\""));
    let rows = audit(&app, "settings.update").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.actor, "user:owner");
    assert_eq!(
        rows[0].entry.after,
        Some(serde_json::json!({"shop.name": "Console Shop"}))
    );

    // A refused value: 422, the message, what was typed kept, nothing saved.
    let p = b
        .post(
            "/admin/settings?lang=en",
            &[
                ("csrf", &token),
                ("group", "orders"),
                ("orders.expire_minutes", "0"),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("settings-error")
            .unwrap()
            .contains("orders.expire_minutes: must be between 1 and 1440, got 0"),
        "{}",
        p.body
    );
    assert!(p
        .body
        .contains("name=\"orders.expire_minutes\" value=\"0\""));
    let p = b
        .post(
            "/admin/settings?lang=en",
            &[
                ("csrf", &token),
                ("group", "risk"),
                ("risk.blocked_ips", "10.0.0.0/8\r\nnot an address"),
            ],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p
        .testid("settings-error")
        .unwrap()
        .contains("risk.blocked_ips"));
    assert_eq!(
        app.state.store.settings().await.unwrap().version,
        saved.version
    );

    // Lists one per line; the password never comes back into the page.
    let p = b
        .post(
            "/admin/settings",
            &[
                ("csrf", &token),
                ("group", "risk"),
                ("risk.blocked_ips", "10.0.0.0/8\r\n192.0.2.7"),
                ("risk.blocked_emails", "*@spam.example"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        app.state.settings().risk.blocked_emails,
        vec!["*@spam.example".to_owned()]
    );
    let p = b
        .post(
            "/admin/settings",
            &[
                ("csrf", &token),
                ("group", "smtp"),
                ("smtp.host", "127.0.0.1"),
                ("smtp.port", "1"),
                ("smtp.tls", "none"),
                ("smtp.username", "shop"),
                ("smtp.password", "console-Secret-42"),
                ("smtp.from", "Shop <shop@example.com>"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = b.get("/admin/settings?lang=en").await;
    assert!(!p.body.contains("console-Secret-42"));
    assert!(p.body.contains("placeholder=\"set\""), "{}", p.body);
    assert!(p.testid("mail-state").unwrap().starts_with("Mail is on"));
    // Saving the section again with the password left blank keeps it.
    let p = b
        .post(
            "/admin/settings",
            &[
                ("csrf", &token),
                ("group", "smtp"),
                ("smtp.host", "127.0.0.1"),
                ("smtp.port", "1"),
                ("smtp.tls", "none"),
                ("smtp.username", "shop"),
                ("smtp.password", ""),
                ("smtp.from", "Shop <shop@example.com>"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let s = app.state.settings();
    let smtp = s.smtp.as_ref().unwrap();
    assert_eq!(
        smtp.password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .as_deref(),
        Some("console-Secret-42")
    );

    // Test mail: the server's refusal is shown (port 1: nothing listens).
    let p = b
        .post(
            "/admin/settings/test-mail?lang=en",
            &[("csrf", &token), ("to", "owner@example.com")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let result = p.testid("test-mail-result").unwrap();
    assert!(result.starts_with("Not sent:"), "{result}");
    assert!(p.body.contains("Connection refused"), "{}", p.body);
    let p = b
        .post("/admin/settings/test-mail", &[("to", "owner@example.com")])
        .await;
    assert_eq!(p.status, 403, "the test mail needs the token too");

    // Reset to the file's value.
    let p = b
        .post(
            "/admin/settings/reset",
            &[("csrf", &token), ("key", "shop.name")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(home(&app).await.contains("File Shop"));
    let p = b.get("/admin/settings?lang=en").await;
    assert_eq!(
        p.testid("source-shop.name").as_deref(),
        Some("From the configuration file")
    );
    let p = b
        .post(
            "/admin/settings/reset",
            &[("csrf", &token), ("key", "server.listen")],
        )
        .await;
    assert_eq!(p.status, 422);
    let rows = audit(&app, "settings.update").await;
    assert_eq!(
        rows[0].entry.after,
        Some(serde_json::json!({"shop.name": null}))
    );
    assert!(rows
        .iter()
        .all(|r| !format!("{:?}", r.entry).contains("console-Secret-42")));
}
both_backends!(settings_page_saves_resets_and_shows_sources);

async fn exchange_rates_are_edited_on_the_settings_page(backend: Backend) {
    let (app, _clock) = spawn(backend, "[fx]\n[fx.rates]\nUSD = \"7.245\"\n").await;
    let mut b = Browser::signed_in(&app).await;
    let p = b.get("/admin/settings?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("data-testid=\"settings-fx\""), "{}", p.body);
    assert!(p.body.contains("USD 7.245"), "{}", p.body);
    assert_eq!(
        p.testid("source-fx.rates").as_deref(),
        Some("From the configuration file")
    );
    let token = p.csrf();
    // A bad line is refused whole, naming the key; the rates in effect stay.
    let p = b
        .post(
            "/admin/settings?lang=en",
            &[
                ("csrf", &token),
                ("group", "fx"),
                ("fx.rates", "USD 7\r\nJPY abc"),
                ("fx.rounding", "up"),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(p.testid("settings-error").unwrap().contains("fx.rates"));
    assert_eq!(
        app.state
            .settings()
            .fx
            .rates()
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["7.245".to_owned()]
    );
    // Codes in any case, stored upper-case.
    let p = b
        .post(
            "/admin/settings",
            &[
                ("csrf", &token),
                ("group", "fx"),
                ("fx.rates", "USD 7\r\njpy 0.05"),
                ("fx.rounding", "down"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let fx = app.state.settings().fx.clone();
    assert_eq!(fx.rounding().as_str(), "down");
    assert_eq!(
        fx.rates()
            .iter()
            .map(|(c, r)| format!("{c} {r}"))
            .collect::<Vec<_>>(),
        vec!["USD 7".to_owned(), "JPY 0.05".to_owned()]
    );
    let p = b.get("/admin/settings?lang=zh-CN").await;
    assert!(
        p.body.contains("汇率") && p.body.contains("JPY 0.05"),
        "{}",
        p.body
    );
    assert_eq!(p.testid("source-fx.rates").as_deref(), Some("在此保存"));
}
both_backends!(exchange_rates_are_edited_on_the_settings_page);
