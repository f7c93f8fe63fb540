//! Issue 10 part 9: disabling, enabling and removing admin users from the console and the
//! API — a disabled user's sessions end at once and it cannot sign in; the last enabled
//! user is never disabled or removed; oneself only with confirmation; every change audited.

use kami_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

use crate::support::{audit, spawn, Browser, PASSWORD, USER};

async fn add_user(app: &TestApp, name: &str) {
    let hash = kami_server::services::passwords::hash_blocking(PASSWORD).unwrap();
    assert!(app
        .state
        .store
        .create_admin_user(name, &hash, 0)
        .await
        .unwrap());
}

async fn user_api(app: &TestApp, method: &str, name: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app
        .http
        .request(
            method.parse().unwrap(),
            app.url(&format!("/api/v1/admin/users/{name}")),
        )
        .bearer_auth(&app.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn a_disabled_user_is_signed_out_and_refused(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    add_user(&app, "clerk").await;
    let mut owner = Browser::signed_in(&app).await;
    let mut clerk = Browser::new(&app);
    assert_eq!(clerk.sign_in("clerk", PASSWORD).await.status, 303);
    assert!(clerk.is_signed_in().await);

    for (lang, says) in [("zh-CN", "停用"), ("en", "Disable")] {
        let p = owner.get(&format!("/admin/users?lang={lang}")).await;
        assert_eq!(p.status, 200);
        assert!(p.body.contains(says), "{lang}");
    }
    let page = owner.get("/admin/users").await;
    let csrf = page.csrf();
    assert_eq!(page.testid("user-state-clerk").as_deref(), Some("Enabled"));
    // No form token: nothing happens.
    let p = owner
        .post("/admin/users/disable", &[("name", "clerk")])
        .await;
    assert_eq!(p.status, 403);
    assert!(clerk.is_signed_in().await);

    let p = owner
        .post(
            "/admin/users/disable",
            &[("csrf", &csrf), ("name", "clerk")],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/users"),
        "{}",
        p.body
    );
    assert!(!clerk.is_signed_in().await, "the session ended at once");
    let refused = clerk.sign_in("clerk", PASSWORD).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let says = refused.testid("login-error").unwrap();
    assert!(
        says.contains("disabled") || says.contains("停用"),
        "{}",
        refused.body
    );
    // A wrong password still says only that.
    let wrong = clerk.sign_in("clerk", "not the password").await;
    assert_eq!(wrong.status, 401);
    let users = app.admin_get("/api/v1/admin/users").await;
    let row = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "clerk")
        .unwrap()
        .clone();
    assert_eq!(row["enabled"], false, "{row}");

    // The last enabled user cannot be disabled or removed, by anyone.
    let (s, v) = user_api(&app, "PATCH", USER, Some(json!({"enabled": false}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("last_admin")),
        "{v}"
    );
    let (s, v) = user_api(&app, "DELETE", USER, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("last_admin")),
        "{v}"
    );
    let p = owner
        .post(
            "/admin/users/remove",
            &[("csrf", &csrf), ("name", USER), ("confirm_self", "on")],
        )
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.testid("users-error").unwrap().contains("last enabled"));
    assert!(owner.is_signed_in().await);

    // Enabled again through the API: signs in.
    let (s, v) = user_api(&app, "PATCH", "clerk", Some(json!({"enabled": true}))).await;
    assert_eq!((s, v["enabled"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(clerk.sign_in("clerk", PASSWORD).await.status, 303);
    assert!(clerk.is_signed_in().await);

    // Oneself: only with confirmation, and then signed out.
    let p = owner
        .post("/admin/users/disable", &[("csrf", &csrf), ("name", USER)])
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.testid("users-error").unwrap().contains("your own user"));
    assert!(owner.is_signed_in().await);
    let p = owner
        .post(
            "/admin/users/disable",
            &[("csrf", &csrf), ("name", USER), ("confirm_self", "on")],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/admin/login"));
    assert!(!owner.is_signed_in().await);

    // The clerk removes the owner; the owner's name is free again, its audit rows stay.
    let page = clerk.get("/admin/users").await;
    let p = clerk
        .post(
            "/admin/users/remove",
            &[("csrf", &page.csrf()), ("name", USER)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(app.state.store.admin_user(USER).await.unwrap().is_none());
    let (s, v) = user_api(&app, "DELETE", USER, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("user_not_found"))
    );

    let disables = audit(&app, "user.disable").await;
    assert_eq!(disables.len(), 2);
    assert_eq!(disables[1].entry.actor, format!("user:{USER}"));
    assert_eq!(disables[1].entry.target, "user:clerk");
    assert_eq!(disables[1].entry.before.as_ref().unwrap()["enabled"], true);
    assert_eq!(
        disables[1].entry.after.as_ref().unwrap()["sessions_ended"],
        1
    );
    let enables = audit(&app, "user.enable").await;
    assert_eq!(enables.len(), 1);
    assert!(enables[0].entry.actor.starts_with("token:"));
    let removed = audit(&app, "user.remove").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].entry.actor, "user:clerk");
    assert!(!audit(&app, "session.login_disabled").await.is_empty());
    assert!(
        !audit(&app, "session.login").await.is_empty(),
        "earlier rows of removed users stay"
    );
}
both_backends!(a_disabled_user_is_signed_out_and_refused);
