//! Every console POST needs the session's form token and a same-site origin; a refused POST
//! changes nothing.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser, PASSWORD, USER};

async fn refused_posts_change_nothing(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut a = Browser::signed_in(&app).await;
    let mut other = Browser::signed_in(&app).await;
    let token = a.get("/admin/security").await.csrf();
    let wrong = "0".repeat(token.len());

    for (fields, headers, why) in [
        (vec![], vec![], "no token"),
        (vec![("csrf", wrong.as_str())], vec![], "wrong token"),
        (
            vec![("csrf", token.as_str())],
            vec![("origin", "https://evil.example")],
            "another origin",
        ),
        (
            vec![("csrf", token.as_str())],
            vec![("sec-fetch-site", "cross-site")],
            "cross-site",
        ),
    ] {
        let p = a
            .post_with("/admin/security/sessions/revoke-others", &fields, &headers)
            .await;
        assert_eq!(p.status, 403, "{why}");
        assert!(p.body.contains("console-message-forbidden"), "{why}");
        assert!(other.is_signed_in().await, "{why}: nothing was revoked");
    }
    let p = a.post_with("/admin/logout", &[], &[]).await;
    assert_eq!(p.status, 403);
    assert!(
        a.is_signed_in().await,
        "a logout without the token does not log out"
    );
    assert!(audit(&app, "session.revoke_others").await.is_empty());

    // Another session's token is not this session's.
    let other_token = other.get("/admin/security").await.csrf();
    assert_ne!(other_token, token);
    let p = a
        .post(
            "/admin/security/sessions/revoke-others",
            &[("csrf", &other_token)],
        )
        .await;
    assert_eq!(p.status, 403);

    // The sign-in form carries its own token too.
    let mut fresh = Browser::new(&app);
    let p = fresh
        .post(
            "/admin/login",
            &[("username", USER), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(!fresh.cookies.contains_key("kami_session"));

    let p = a
        .post(
            "/admin/security/sessions/revoke-others",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(p.status, 303, "the right token from our page works");
    assert!(!other.is_signed_in().await);
}
both_backends!(refused_posts_change_nothing);
