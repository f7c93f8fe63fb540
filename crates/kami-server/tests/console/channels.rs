//! `/admin/channels`: the list (configuration channels read-only), adding a channel of a kind
//! through its form, editing it (key material never put back into a page: blank keeps it),
//! turning it off, the test button, deleting; both languages, every POST behind the form
//! token, audited as the signed-in user.

use kami_testkit::{both_backends, Backend, SANDBOX_SECRET};

use crate::support::{audit, spawn, Browser};

const WRONG_SECRET: &str = "console-wrong-secret-7f2e9a";

async fn post(b: &mut Browser, path: &str, fields: &[(String, String)]) -> crate::support::Page {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post(path, &refs).await
}

async fn channels_page_adds_edits_tests_and_deletes(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::signed_in(&app).await;

    let p = b.get("/admin/channels?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("data-testid=\"nav-channels\""),
        "in the navigation"
    );
    assert!(p.body.contains("Payment channels"));
    assert!(
        p.body.contains("data-testid=\"read-only-sandbox\""),
        "the configuration's channel is read-only: {}",
        p.body
    );
    assert!(!p.body.contains("data-testid=\"delete-sandbox\""));
    let zh = b.get("/admin/channels?lang=zh-CN").await;
    assert!(zh.body.contains("支付通道") && zh.body.contains("只读"));
    let token = p.csrf();

    // The form of a kind: its keys, key material in text areas.
    let f = b.get("/admin/channels/new?kind=epay&lang=en").await;
    assert_eq!(f.status, 200);
    for key in [
        "gateway",
        "pid",
        "key",
        "merchant_private_key",
        "platform_public_key",
    ] {
        assert!(
            f.body.contains(&format!("name=\"{key}\"")),
            "{key}: {}",
            f.body
        );
    }
    assert!(f.body.contains("<textarea name=\"key\""));
    assert!(!f.body.contains("key_file"), "no file paths on the form");
    assert_eq!(b.get("/admin/channels/new?kind=nope").await.status, 404);
    let r = b.get("/admin/channels/sandbox/edit?lang=en").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("data-testid=\"read-only\"")
            && !r
                .body
                .contains("<form method=\"post\" action=\"/admin/channels/sandbox/edit\"")
    );

    let form = |token: &str, secret: &str| -> Vec<(String, String)> {
        [
            ("csrf", token),
            ("kind", "sandbox"),
            ("id", "sb-console"),
            ("methods", "sandbox"),
            ("priority", "5"),
            ("weight", "2"),
            ("enabled", "on"),
            ("allow_sandbox", "on"),
            ("secret", secret),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };

    // Without the form token: refused, nothing stored.
    let mut no_token = form("", WRONG_SECRET);
    no_token.retain(|(k, _)| k != "csrf");
    let p = post(&mut b, "/admin/channels", &no_token).await;
    assert_eq!(p.status, 403);
    assert!(app.state.store.stored_channels().await.unwrap().is_empty());

    // Refused (no allow_sandbox): the message, the id kept, the key material not echoed.
    let mut refused = form(&token, WRONG_SECRET);
    refused.retain(|(k, _)| k != "allow_sandbox");
    let p = post(&mut b, "/admin/channels?lang=en", &refused).await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("channel-error").unwrap().contains("allow_sandbox"),
        "{}",
        p.body
    );
    assert!(p.body.contains("value=\"sb-console\""));
    assert!(!p.body.contains(WRONG_SECRET), "key material echoed");
    assert!(app.state.store.stored_channels().await.unwrap().is_empty());

    // Added; it takes orders at once.
    let p = post(&mut b, "/admin/channels", &form(&token, WRONG_SECRET)).await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/channels"),
        "{}",
        p.body
    );
    let row = &app.state.store.stored_channels().await.unwrap()[0];
    assert_eq!((row.spec.priority, row.spec.weight), (5, 2));
    assert!(app.state.channels.get("sb-console").is_some());
    let list = b.get("/admin/channels?lang=en").await;
    assert!(list.body.contains("data-testid=\"channel-sb-console\""));
    assert!(list.body.contains("data-testid=\"delete-sb-console\""));
    assert!(!list.body.contains(WRONG_SECRET));

    // The test button: the simulator does not know this secret.
    let t = b
        .post(
            "/admin/channels/sb-console/test?lang=en",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(t.status, 200);
    assert!(t.body.contains("data-ok=\"false\""), "{}", t.body);
    assert!(t.body.contains("sb-console: test failed."), "{}", t.body);
    assert!(t.body.contains("BAD_SIGNATURE"), "the gateway's own words");
    let ok = b
        .post("/admin/channels/sandbox/test?lang=en", &[("csrf", &token)])
        .await;
    assert!(ok.body.contains("data-ok=\"true\""), "{}", ok.body);

    // The edit form: key material stored, never shown; blank keeps it.
    let e = b.get("/admin/channels/sb-console/edit?lang=en").await;
    assert_eq!(e.status, 200);
    assert!(
        e.body.contains("stored — leave blank to keep"),
        "{}",
        e.body
    );
    assert!(e.body.contains("data-testid=\"stored-secret\""));
    assert!(
        !e.body.contains(WRONG_SECRET),
        "key material in the edit form"
    );
    assert!(e.body.contains("value=\"5\""), "the priority is filled in");
    let mut keep = form(&token, "");
    keep.retain(|(k, _)| k != "id");
    keep.iter_mut().for_each(|(k, v)| {
        if k == "priority" {
            *v = "7".into();
        }
    });
    let p = post(&mut b, "/admin/channels/sb-console/edit", &keep).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let row = &app.state.store.stored_channels().await.unwrap()[0];
    assert_eq!(row.spec.priority, 7);
    assert_eq!(row.spec.secrets.get("secret"), Some(WRONG_SECRET), "kept");
    // A new secret replaces it: now the simulator answers.
    let mut replace = form(&token, SANDBOX_SECRET);
    replace.retain(|(k, _)| k != "id");
    let p = post(&mut b, "/admin/channels/sb-console/edit", &replace).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let t = b
        .post("/admin/channels/sb-console/test", &[("csrf", &token)])
        .await;
    assert!(t.body.contains("data-ok=\"true\""), "{}", t.body);

    // Off, then deleted (no payment points at it).
    let p = b
        .post(
            "/admin/channels/sb-console/enabled",
            &[("csrf", &token), ("enabled", "0")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(!app.state.channels.entry("sb-console").unwrap().enabled);
    assert_eq!(
        b.post("/admin/channels/sb-console/delete", &[("csrf", "wrong")])
            .await
            .status,
        403
    );
    let p = b
        .post("/admin/channels/sb-console/delete", &[("csrf", &token)])
        .await;
    assert_eq!(p.status, 303);
    assert!(app.state.store.stored_channels().await.unwrap().is_empty());
    assert!(app.state.channels.get("sb-console").is_none());
    // The configuration's channel cannot be changed from here either.
    let p = b
        .post(
            "/admin/channels/sandbox/delete?lang=en",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(p.status, 409);
    assert!(p.testid("channel-error").unwrap().contains("read-only"));

    for (action, n) in [
        ("channel.create", 1),
        ("channel.update", 3),
        ("channel.delete", 1),
    ] {
        let rows = audit(&app, action).await;
        assert_eq!(rows.len(), n, "{action}");
        assert!(
            rows.iter().all(|r| r.entry.actor == "user:owner"),
            "{action}"
        );
        for r in &rows {
            let text = format!("{:?}", r.entry);
            assert!(
                !text.contains(WRONG_SECRET) && !text.contains(SANDBOX_SECRET),
                "{text}"
            );
        }
    }
    let replaced = audit(&app, "channel.update").await;
    assert!(
        replaced.iter().any(|r| r
            .entry
            .after
            .as_ref()
            .is_some_and(|a| a["secret"] == "replaced")),
        "{replaced:?}"
    );
}
both_backends!(channels_page_adds_edits_tests_and_deletes);

/// The routing panel (its own partial): each channel's state per method and the mode; the
/// channel form's amount limits, refused precisely when inconsistent.
async fn channels_page_shows_routing_and_takes_limits(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::signed_in(&app).await;
    app.create_product("rt", 100, "auto").await;
    app.import_keys("rt", 1).await;
    app.order("rt", 1).await;
    let p = b.get("/admin/channels?lang=en").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("data-testid=\"routing\""), "{}", p.body);
    assert!(p.body.contains("Mode: priority"), "{}", p.body);
    assert!(
        p.body
            .contains("data-testid=\"lane-sandbox-sandbox\" data-state=\"healthy\""),
        "{}",
        p.body
    );
    assert!(p.body.contains("1 calls, 0 failed"), "{}", p.body);
    let token = p.csrf();
    let f = b.get("/admin/channels/new?kind=sandbox&lang=en").await;
    for key in ["min_amount", "max_amount", "daily_limit"] {
        assert!(f.body.contains(&format!("name=\"{key}\"")), "{key}");
    }
    let form = |max: &str| -> Vec<(String, String)> {
        [
            ("csrf", token.as_str()),
            ("kind", "sandbox"),
            ("id", "sb-limits"),
            ("methods", "sandbox"),
            ("priority", "0"),
            ("weight", "1"),
            ("enabled", "on"),
            ("allow_sandbox", "on"),
            ("secret", SANDBOX_SECRET),
            ("min_amount", "500"),
            ("max_amount", max),
            ("daily_limit", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let p = post(&mut b, "/admin/channels?lang=en", &form("100")).await;
    assert_eq!(p.status, 422, "{}", p.body);
    let error = p.testid("channel-error").unwrap();
    assert!(
        error.contains("max_amount") && error.contains("min_amount (500)"),
        "{error}"
    );
    let p = post(&mut b, "/admin/channels", &form("5000")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let row = &app.state.store.stored_channels().await.unwrap()[0];
    assert_eq!(
        (
            row.spec.limits.min_amount(),
            row.spec.limits.max_amount(),
            row.spec.limits.daily_limit()
        ),
        (Some(500), Some(5000), None)
    );
    let edit = b.get("/admin/channels/sb-limits/edit?lang=en").await;
    assert!(edit
        .body
        .contains("name=\"max_amount\" inputmode=\"numeric\" value=\"5000\""));
}
both_backends!(channels_page_shows_routing_and_takes_limits);

/// The kinds added for issue 12 have forms of their own keys (key material in text areas,
/// never a file path), and a PayPal channel added on the console takes orders at once; one
/// that would charge CNY is refused naming `currency`, nothing stored.
async fn new_kinds_have_their_forms_and_paypal_is_added(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::signed_in(&app).await;
    let token = b.get("/admin/channels?lang=en").await.csrf();
    for (kind, keys, secrets) in [
        (
            "epusdt",
            &["gateway", "token", "trade_type"][..],
            &["token"][..],
        ),
        (
            "tokenpay",
            &["gateway", "secret", "currency"][..],
            &["secret"][..],
        ),
        (
            "stripe",
            &["api_base", "secret_key", "webhook_secret"][..],
            &["secret_key", "webhook_secret"][..],
        ),
        (
            "paypal",
            &[
                "api_base",
                "client_id",
                "client_secret",
                "webhook_id",
                "currency",
            ][..],
            &["client_secret"][..],
        ),
        ("wechatpay", &["mode", "appsecret"][..], &["appsecret"][..]),
    ] {
        let f = b
            .get(&format!("/admin/channels/new?kind={kind}&lang=en"))
            .await;
        assert_eq!(f.status, 200, "{kind}: {}", f.body);
        for key in keys {
            assert!(
                f.body.contains(&format!("name=\"{key}\"")),
                "{kind} {key}: {}",
                f.body
            );
        }
        for key in secrets {
            assert!(
                f.body.contains(&format!("<textarea name=\"{key}\"")),
                "{kind} {key}"
            );
        }
        assert!(
            !f.body.contains("_file\""),
            "{kind}: no file paths on the form"
        );
    }

    let form = |currency: &str| -> Vec<(String, String)> {
        [
            ("csrf", token.as_str()),
            ("kind", "paypal"),
            ("id", "pp-console"),
            ("methods", "paypal"),
            ("priority", "5"),
            ("weight", "1"),
            ("enabled", "on"),
            ("api_base", "https://api-m.sandbox.paypal.com"),
            ("client_id", "console-client"),
            ("client_secret", WRONG_SECRET),
            ("webhook_id", "WH-CONSOLE-1"),
            ("currency", currency),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let p = post(&mut b, "/admin/channels?lang=en", &form("CNY")).await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("channel-error").unwrap().contains("currency"),
        "{}",
        p.body
    );
    assert!(!p.body.contains(WRONG_SECRET), "key material echoed");
    assert!(app.state.store.stored_channels().await.unwrap().is_empty());

    let p = post(&mut b, "/admin/channels", &form("EUR")).await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/channels"),
        "{}",
        p.body
    );
    let ch = app
        .state
        .channels
        .get("pp-console")
        .expect("routable at once");
    assert_eq!(ch.kind(), "paypal");
    // A CNY order is charged in the channel's currency.
    assert_eq!(
        ch.charge_currency(kami_core::Currency::Cny),
        kami_core::Currency::Eur
    );
    assert_eq!(
        ch.charge_currency(kami_core::Currency::Usd),
        kami_core::Currency::Usd
    );
    let list = b.get("/admin/channels?lang=en").await;
    assert!(list.body.contains("data-testid=\"channel-pp-console\""));
    assert!(!list.body.contains(WRONG_SECRET));
}
both_backends!(new_kinds_have_their_forms_and_paypal_is_added);
