//! The users page (add a user: password shown once, can sign in, audited) and the audit log
//! page (filters, before/after, export), with their JSON API twins.

use kami_testkit::{both_backends, Backend};
use serde_json::json;

use crate::support::{audit, spawn, Browser, USER};

async fn a_user_added_in_the_console_can_sign_in(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut owner = Browser::signed_in(&app).await;
    let page = owner.get("/admin/users").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("<td>{USER}</td>")),
        "{}",
        page.body
    );
    let csrf = page.csrf();

    // No token: refused, nobody added.
    let p = owner.post("/admin/users", &[("name", "helper")]).await;
    assert_eq!(p.status, 403);
    assert!(app
        .state
        .store
        .admin_user("helper")
        .await
        .unwrap()
        .is_none());

    let p = owner
        .post("/admin/users", &[("csrf", &csrf), ("name", "  helper ")])
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let password = p.testid("new-password").expect("the password is shown");
    assert_eq!(password.len(), 20);
    let mut helper = Browser::new(&app);
    let signed = helper.sign_in("helper", &password).await;
    assert_eq!(
        (signed.status, signed.location()),
        (303, "/admin"),
        "{}",
        signed.body
    );

    // Shown once: the list has no password in it.
    let list = owner.get("/admin/users").await;
    assert!(!list.body.contains(&password));
    assert!(list.body.contains("<td>helper</td>"));

    // A taken or empty name: a clear error, nothing added.
    for (name, code_text) in [("helper", "already exists"), ("   ", "1 to 64")] {
        let p = owner
            .post("/admin/users", &[("csrf", &csrf), ("name", name)])
            .await;
        assert_eq!(p.status, 422, "{name:?}");
        assert!(
            p.testid("users-error")
                .is_some_and(|e| e.contains(code_text)),
            "{name:?}: {}",
            p.body
        );
    }
    let added = audit(&app, "user.create").await;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].entry.actor, format!("user:{USER}"));
    assert_eq!(added[0].entry.target, "user:helper");
    assert!(
        !serde_json::to_string(&added[0].entry.after)
            .unwrap()
            .contains(&password),
        "no secret in the audit log"
    );

    // The API twin: list without secrets, add with the token.
    let users = app.admin_get("/api/v1/admin/users").await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    let mut expected = vec![USER, "helper"];
    expected.sort_unstable();
    assert_eq!(names, expected, "by name");
    assert!(users.to_string().find("password").is_none(), "{users}");
    let (s, v) = app
        .admin_post("/api/v1/admin/users", json!({"name": "bot"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["password"].as_str().map(str::len), Some(20));
    let (s, v) = app
        .admin_post("/api/v1/admin/users", json!({"name": "bot"}))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("user_exists")));
    assert_eq!(
        audit(&app, "user.create").await[0].entry.actor,
        "token:test"
    );
}
both_backends!(a_user_added_in_the_console_can_sign_in);

async fn the_audit_log_page_filters_shows_changes_and_exports(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("vip", 1230, "auto").await;
    let r = app
        .http
        .patch(app.url("/api/v1/admin/products/vip"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"price": 990, "title": "VIP <b>gold</b>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut owner = Browser::signed_in(&app).await;

    let page = owner.get("/admin/audit?target=product%3Avip").await;
    assert_eq!(page.status, 200, "{}", page.body);
    // The creation (audited too) and the change.
    assert_eq!(
        page.body.matches("data-testid=\"audit-row\"").count(),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains("product.update"));
    assert!(page.body.contains("product.create"));
    let before = page.testid("audit-before").unwrap();
    let after = page.testid("audit-after").unwrap();
    assert!(before.contains("1230"), "{before}");
    assert!(after.contains("990"), "{after}");
    assert!(
        page.body.contains("VIP &lt;b&gt;gold&lt;&#x2f;b&gt;")
            || page.body.contains("VIP &lt;b&gt;gold&lt;/b&gt;"),
        "escaped: {}",
        page.body
    );
    assert!(!page.body.contains("VIP <b>gold</b>"));

    // Sign-ins are there too; a filter by actor narrows to them.
    let mine = owner
        .get(&format!("/admin/audit?actor=user%3A{USER}"))
        .await;
    assert!(mine.body.contains("session.login"), "{}", mine.body);
    assert!(!mine.body.contains("product.update"));

    // A bad day: a clear error, no rows.
    let bad = owner.get("/admin/audit?from=2026-13-01").await;
    assert_eq!(bad.status, 422);
    assert!(bad
        .testid("audit-error")
        .is_some_and(|e| e.contains("YYYY-MM-DD")));

    // Export: CSV of the filter, itself audited.
    let csv = owner.get("/admin/audit.csv?target=product%3Avip").await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "id,at,actor,action,target,ip,before,after");
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(
        lines[2].contains(",product.create,product:vip,"),
        "{}",
        lines[2]
    );
    assert!(
        lines[1].contains(",token:test,product.update,product:vip,"),
        "{}",
        lines[1]
    );
    let exports = audit(&app, "audit.export").await;
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].entry.after.as_ref().unwrap()["rows"], 2);

    // The API twin pages newest first and refuses a bad day.
    let v = app
        .admin_get("/api/v1/admin/audit?target=product:vip")
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["entries"][0]["before"]["price"], 1230);
    assert_eq!(v["entries"][1]["action"], "product.create");
    assert_eq!(v["entries"][0]["after"]["price"], 990);
    assert!(v["next_before"].is_null());
    let r = app
        .http
        .get(app.url("/api/v1/admin/audit?to=yesterday"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .http
        .get(app.url("/api/v1/admin/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Signed out: the page sends you to sign in.
    let mut stranger = Browser::new(&app);
    let p = stranger.get("/admin/audit").await;
    assert_eq!(p.status, 303);
    assert!(p.location().starts_with("/admin/login?next="));
}
both_backends!(the_audit_log_page_filters_shows_changes_and_exports);
