//! Sessions: idle and absolute expiry on the app's clock, the list and revocation.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser};

const MIN: i64 = 60_000;

async fn idle_expiry(backend: Backend) {
    let (app, clock) = spawn(backend, "").await;
    let mut b = Browser::signed_in(&app).await;
    clock.advance(29 * MIN);
    assert!(b.is_signed_in().await);
    clock.advance(29 * MIN);
    assert!(
        b.is_signed_in().await,
        "each request restarts the idle clock"
    );
    clock.advance(31 * MIN);
    assert!(!b.is_signed_in().await, "31 minutes idle");
}
both_backends!(idle_expiry);

async fn absolute_expiry(backend: Backend) {
    let (app, clock) = spawn(
        backend,
        "[console]\nidle_minutes = 600\nabsolute_hours = 1\n",
    )
    .await;
    let mut b = Browser::signed_in(&app).await;
    clock.advance(59 * MIN);
    assert!(b.is_signed_in().await);
    clock.advance(2 * MIN);
    assert!(
        !b.is_signed_in().await,
        "past the absolute expiry, however active"
    );
}
both_backends!(absolute_expiry);

/// The ids of the session rows' revoke buttons, and the current one's.
fn session_ids(body: &str) -> Vec<i64> {
    body.match_indices("data-testid=\"revoke-")
        .filter_map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

async fn revoke_one_and_all_others(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut a = Browser::signed_in(&app).await;
    let mut b = Browser::signed_in(&app).await;
    let mut c = Browser::signed_in(&app).await;

    let page = a.get("/admin/security").await;
    assert_eq!(page.status, 200);
    let ids = session_ids(&page.body);
    assert_eq!(ids.len(), 3, "{}", page.body);
    assert_eq!(
        page.body.matches("data-testid=\"session-current\"").count(),
        1
    );
    assert!(page.body.contains("console-test"), "user agent shown");
    // Newest first: c, b, a.
    let b_id = ids[1].to_string();
    let p = a
        .post(
            "/admin/security/sessions/revoke",
            &[("csrf", &page.csrf()), ("session", &b_id)],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/admin/security"));
    assert!(!b.is_signed_in().await, "the revoked cookie opens nothing");
    assert!(c.is_signed_in().await && a.is_signed_in().await);
    let revokes = audit(&app, "session.revoke").await;
    assert_eq!(revokes[0].entry.target, format!("session:{b_id}"));

    let page = a.get("/admin/security").await;
    let p = a
        .post(
            "/admin/security/sessions/revoke-others",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(!c.is_signed_in().await);
    assert!(a.is_signed_in().await, "the current session stays");
    assert_eq!(session_ids(&a.get("/admin/security").await.body).len(), 1);
}
both_backends!(revoke_one_and_all_others);
