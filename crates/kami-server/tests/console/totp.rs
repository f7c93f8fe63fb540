//! The TOTP second factor: enrolment (QR and key, confirmed by a code), sign-in with a code
//! (valid, wrong, replayed), recovery codes (once each), and reset from the CLI's service.

use data_encoding::BASE32_NOPAD;
use kami_server::services::totp::{code_at, step_at};
use kami_testkit::{both_backends, Backend, TestApp};

use crate::support::{audit, spawn, Browser, Page, PASSWORD, USER};

fn code(secret: &[u8], now_ms: i64) -> String {
    code_at(secret, step_at(now_ms.div_euclid(1000)))
}

/// Enrol through the security page; returns the secret and the recovery codes.
async fn enrol(app: &TestApp, b: &mut Browser) -> (Vec<u8>, Vec<String>) {
    let page = b.get("/admin/security").await;
    assert!(page.testid("totp-off").is_some());
    let enrol = b
        .post("/admin/security/totp/begin", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(enrol.body.contains("<svg"), "the QR code is inline SVG");
    let secret_text = enrol.testid("totp-secret").unwrap();
    let secret = BASE32_NOPAD.decode(secret_text.as_bytes()).unwrap();

    let wrong = b
        .post(
            "/admin/security/totp/confirm",
            &[("csrf", &enrol.csrf()), ("code", "000000")],
        )
        .await;
    if code(&secret, app.state.now_ms()) != "000000" {
        assert_eq!(wrong.status, 422);
        assert!(b.get("/admin/security").await.testid("totp-off").is_some());
    }
    let done = b
        .post(
            "/admin/security/totp/confirm",
            &[
                ("csrf", &enrol.csrf()),
                ("code", &code(&secret, app.state.now_ms())),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = recovery_codes(&done);
    assert_eq!(codes.len(), 10);
    let after = b.get("/admin/security").await;
    assert!(after.testid("totp-on").unwrap().contains("10"));
    assert!(
        !after.body.contains(&secret_text),
        "the secret is never shown after enrolment"
    );
    assert_eq!(audit(app, "2fa.enable").await.len(), 1);
    (secret, codes)
}

fn recovery_codes(p: &Page) -> Vec<String> {
    p.body
        .match_indices("data-testid=\"recovery-code\">")
        .map(|(i, m)| {
            let rest = &p.body[i + m.len()..];
            rest[..rest.find('<').unwrap()].to_owned()
        })
        .collect()
}

/// Password accepted, code still to come: the pending cookie opens nothing else.
async fn password_step(app: &TestApp) -> (Browser, String) {
    let mut b = Browser::new(app);
    let p = b.sign_in(USER, PASSWORD).await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/login/code?next=%2Fadmin")
    );
    let form = b.get("/admin/login/code").await;
    assert_eq!(form.status, 200);
    let csrf = form.csrf();
    assert!(!b.is_signed_in().await, "no console before the code");
    (b, csrf)
}

async fn send_code(b: &mut Browser, csrf: &str, code: &str) -> Page {
    b.post(
        "/admin/login/code",
        &[("csrf", csrf), ("code", code), ("next", "/admin")],
    )
    .await
}

async fn totp_sign_in(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    let mut owner = Browser::signed_in(&app).await;
    let (secret, codes) = enrol(&app, &mut owner).await;
    let enrol_code = code(&secret, app.state.now_ms());

    let (mut b, csrf) = password_step(&app).await;
    let replay = send_code(&mut b, &csrf, &enrol_code).await;
    assert_eq!(replay.status, 401, "the enrolment's time step is used");
    assert!(replay.testid("code-error").is_some());
    let mut wrong = if enrol_code == "123456" {
        "654321"
    } else {
        "123456"
    }
    .to_owned();
    for d in [-1, 1] {
        if wrong == code_at(&secret, step_at(app.state.now_ms() / 1000) + d) {
            wrong = "999999".into();
        }
    }
    assert_eq!(send_code(&mut b, &csrf, &wrong).await.status, 401);
    assert!(!b.is_signed_in().await);

    clock.advance(30_000);
    let fresh = code(&secret, app.state.now_ms());
    let ok = send_code(&mut b, &csrf, &fresh).await;
    assert_eq!((ok.status, ok.location()), (303, "/admin"), "{}", ok.body);
    assert!(b.is_signed_in().await);

    // The same code again, in another sign-in within its step: refused.
    let (mut again, csrf2) = password_step(&app).await;
    assert_eq!(send_code(&mut again, &csrf2, &fresh).await.status, 401);

    // A recovery code instead, once.
    let used = codes[3].to_lowercase().replace('-', " ");
    let ok = send_code(&mut again, &csrf2, &used).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(again.is_signed_in().await);
    assert_eq!(audit(&app, "recovery_code.use").await.len(), 1);
    let (mut third, csrf3) = password_step(&app).await;
    assert_eq!(send_code(&mut third, &csrf3, &codes[3]).await.status, 401);
    assert!(!third.is_signed_in().await);
    let page = b.get("/admin/security").await;
    assert!(
        page.testid("totp-on").unwrap().contains('9'),
        "{}",
        page.body
    );
    let failures = audit(&app, "session.second_factor_failed").await;
    assert_eq!(
        failures.len(),
        4,
        "replayed, wrong, replayed, recovery reused"
    );

    // `kami admin user reset-2fa` (its service): the password alone signs in again.
    kami_server::services::two_factor::reset_from_cli(&app.state.store, USER, app.state.now_ms())
        .await
        .unwrap();
    let resets = audit(&app, "2fa.reset").await;
    assert_eq!(
        (
            resets[0].entry.actor.as_str(),
            resets[0].entry.target.as_str()
        ),
        ("cli", "user:owner")
    );
    let mut plain = Browser::new(&app);
    let p = plain.sign_in(USER, PASSWORD).await;
    assert_eq!((p.status, p.location()), (303, "/admin"));
}
both_backends!(totp_sign_in);

async fn disable_needs_a_code(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    let mut b = Browser::signed_in(&app).await;
    let (secret, _) = enrol(&app, &mut b).await;
    let page = b.get("/admin/security").await;
    let p = b
        .post(
            "/admin/security/totp/disable",
            &[("csrf", &page.csrf()), ("code", "12")],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(b.get("/admin/security").await.testid("totp-on").is_some());
    clock.advance(30_000);
    let p = b
        .post(
            "/admin/security/totp/disable",
            &[
                ("csrf", &page.csrf()),
                ("code", &code(&secret, app.state.now_ms())),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(b.get("/admin/security").await.testid("totp-off").is_some());
    assert_eq!(audit(&app, "2fa.disable").await.len(), 1);
}
both_backends!(disable_needs_a_code);
