//! `/admin/alerts`: the configuration's targets read-only, adding a stored webhook through the
//! form (a refused form keeps what was typed but never the secret), editing it (a blank secret
//! keeps the stored one), the test button reaching a local sink, deleting; both languages, in
//! the navigation, every change audited as the signed-in user.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use bytes::Bytes;
use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser};

const SECRET: &str = "console-alert-secret-93ab";

/// Each request a sink received: its signature header and body.
type Hits = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1:0 keeping each request's signature header and body.
async fn sink() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let kept = hits.clone();
    let router = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let kept = kept.clone();
        async move {
            let sig = headers
                .get("x-kami-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            kept.lock().unwrap().push((sig, body.to_vec()));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, hits)
}

async fn alerts_page_adds_edits_tests_and_deletes(backend: Backend) {
    let (url, hits) = sink().await;
    let extra = "[[alerts]]\nkind = \"email\"\nto = \"ops@example.com\"\n\
                 [alerting]\nevaluate_seconds = 3600\n";
    let (app, _clock) = spawn(backend, extra).await;
    let mut b = Browser::signed_in(&app).await;

    let p = b.get("/admin/alerts?lang=en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("data-testid=\"nav-alerts\""),
        "in the navigation"
    );
    assert!(
        p.body.contains("data-testid=\"read-only-config-0\""),
        "{}",
        p.body
    );
    assert!(!p.body.contains("data-testid=\"delete-config-0\""));
    assert!(p.body.contains("Nothing is wrong right now."));
    let zh = b.get("/admin/alerts?lang=zh-CN").await;
    assert!(zh.body.contains("告警接收方") && zh.body.contains("只读"));
    let token = p.csrf();

    // Refused: the error names the key, the form keeps the URL, never the secret.
    let bad = b
        .post(
            "/admin/alerts/targets?lang=en",
            &[
                ("csrf", &token),
                ("name", "ops-hook"),
                ("kind", "webhook"),
                ("url", "not a url"),
                ("secret", SECRET),
                ("events", "channel_down"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.testid("alert-error").unwrap().contains("`url`"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("value=\"not a url\""));
    assert!(!bad.body.contains(SECRET));

    let ok = b
        .post(
            "/admin/alerts/targets",
            &[
                ("csrf", &token),
                ("name", "ops-hook"),
                ("kind", "webhook"),
                ("url", &url),
                ("secret", SECRET),
                ("events", "channel_down"),
                ("events", "low_stock"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(
        (ok.status, ok.location()),
        (303, "/admin/alerts"),
        "{}",
        ok.body
    );
    let created = audit(&app, "alert_target.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].entry.actor,
        format!("user:{}", crate::support::USER)
    );
    assert!(!format!("{:?}", created[0].entry).contains(SECRET));

    // The edit form: values back, the secret only as "stored"; a blank secret keeps it.
    let e = b.get("/admin/alerts?edit=ops-hook&lang=en").await;
    assert_eq!(e.status, 200);
    assert!(e.body.contains("data-testid=\"secret-stored\"") && !e.body.contains(SECRET));
    // (The page escapes `/` as `&#x2f;`.)
    let shown = e.body.replace("&#x2f;", "/");
    assert!(shown.contains(&format!("value=\"{url}\"")), "{shown}");
    let saved = b
        .post(
            "/admin/alerts/targets/ops-hook",
            &[
                ("csrf", &token),
                ("kind", "webhook"),
                ("url", &url),
                ("secret", ""),
                ("events", "low_stock"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let p = b.get("/admin/alerts?lang=en").await;
    assert_eq!(p.testid("target-state-ops-hook").as_deref(), Some("off"));
    assert_eq!(audit(&app, "alert_target.update").await.len(), 1);

    // The test button: signed with the kept secret.
    let t = b
        .post(
            "/admin/alerts/targets/ops-hook/test?lang=en",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert!(t.body.contains("data-ok=\"true\""), "{}", t.body);
    let got = hits.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = hex::decode(got[0].0.strip_prefix("sha256=").unwrap()).unwrap();
    assert!(aws_lc_rs::hmac::verify(&key, &got[0].1, &sig).is_ok());

    // Without the form token nothing changes; unknown targets are 404.
    let r = b.post("/admin/alerts/targets/ops-hook/delete", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(b.get("/admin/alerts?edit=nobody").await.status, 404);
    assert_eq!(b.get("/admin/alerts?edit=config-0").await.status, 404);
    let r = b
        .post(
            "/admin/alerts/targets/config-0/delete?lang=en",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = b
        .post("/admin/alerts/targets/ops-hook/delete", &[("csrf", &token)])
        .await;
    assert_eq!((r.status, r.location()), (303, "/admin/alerts"));
    assert_eq!(audit(&app, "alert_target.delete").await.len(), 1);
    let p = b.get("/admin/alerts").await;
    assert!(!p.body.contains("target-ops-hook"));
}
both_backends!(alerts_page_adds_edits_tests_and_deletes);
