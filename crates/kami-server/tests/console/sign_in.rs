//! Sign-in: right and wrong passwords, unknown users, the per-user lock, the per-address
//! limit, the cookie's attributes and the `next` redirect.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser, PASSWORD, USER};

async fn sign_in_and_out(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::new(&app);
    let p = b.get("/admin").await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/login?next=%2Fadmin")
    );

    let wrong = b.sign_in(USER, "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.testid("login-error").is_some(), "{}", wrong.body);
    let unknown = b.sign_in("nobody", PASSWORD).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.testid("login-error"), unknown.testid("login-error"));
    assert!(!b.cookies.contains_key("kami_session"));
    let failures = audit(&app, "session.login_failed").await;
    let targets: Vec<(&str, &str)> = failures
        .iter()
        .map(|r| (r.entry.actor.as_str(), r.entry.target.as_str()))
        .collect();
    assert_eq!(
        targets,
        [("anonymous", "user:nobody"), ("anonymous", "user:owner")]
    );

    let ok = b.sign_in(USER, PASSWORD).await;
    assert_eq!((ok.status, ok.location()), (303, "/admin"));
    let cookie = ok
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("kami_session="))
        .expect("session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let page = b.get("/admin").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.testid("console-user").as_deref(), Some(USER));
    assert!(page.testid("nav-security").is_some(), "security in the nav");
    let logins = audit(&app, "session.login").await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].entry.actor, "user:owner");

    let csrf = page.csrf();
    let stale = b.cookies.clone();
    let out = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (303, "/admin/login"));
    assert!(!b.is_signed_in().await);
    b.cookies = stale;
    assert!(!b.is_signed_in().await, "a logged-out cookie opens nothing");
    assert_eq!(audit(&app, "session.logout").await.len(), 1);
}
both_backends!(sign_in_and_out);

async fn per_user_lock(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    let mut b = Browser::new(&app);
    for _ in 0..4 {
        assert_eq!(b.sign_in(USER, "wrong").await.status, 401);
    }
    let fifth = b.sign_in(USER, "wrong").await;
    assert_eq!(fifth.status, 429);
    assert!(
        fifth.testid("login-error").unwrap().contains("15"),
        "{}",
        fifth.body
    );
    let right = b.sign_in(USER, PASSWORD).await;
    assert_eq!(right.status, 429, "locked even with the right password");
    assert!(right.headers.contains_key("retry-after"));
    assert!(!b.cookies.contains_key("kami_session"));

    clock.advance(15 * 60_000 + 1_000);
    let later = b.sign_in(USER, PASSWORD).await;
    assert_eq!((later.status, later.location()), (303, "/admin"));
}
both_backends!(per_user_lock);

async fn per_address_limit(backend: Backend) {
    let (app, _clock) = spawn(backend, "[risk]\npassword_checks_per_minute_per_ip = 3\n").await;
    let mut b = Browser::new(&app);
    for _ in 0..3 {
        assert_eq!(b.sign_in("someone", "guess").await.status, 401);
    }
    let limited = b.sign_in(USER, PASSWORD).await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(!b.cookies.contains_key("kami_session"));
}
both_backends!(per_address_limit);

async fn next_stays_in_the_console(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut b = Browser::new(&app);
    let p = b.get("/admin/security").await;
    assert_eq!(p.location(), "/admin/login?next=%2Fadmin%2Fsecurity");
    for (next, to) in [
        ("//evil.example/admin", "/admin"),
        ("https://evil.example/", "/admin"),
        ("/\\evil.example", "/admin"),
        ("/admin/security", "/admin/security"),
    ] {
        let mut b = Browser::new(&app);
        let p = b.sign_in_to(USER, PASSWORD, next).await;
        assert_eq!((p.status, p.location()), (303, to), "next = {next}");
    }
}
both_backends!(next_stays_in_the_console);
