//! Forged-notification flood (attack 4): every rejected notification used to be stored whole
//! and forever. Now rejected ones are stored truncated (≤ 4 KiB), a few per minute per client
//! and channel, and deleted after `retention.rejected_events_days`; verified ones stay whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kami_store::{RawEvent, Verdict};
use kami_testkit::inspect::{database_bytes, scalar};
use kami_testkit::{both_backends, notification_params, Backend, TestApp};

const FLOOD: Duration = Duration::from_secs(10);
const SENDERS: usize = 4;

/// A forged `paid` notification for `trade_no` (signed with a wrong secret), padded to ~60 KiB
/// of body and ~3 KiB of query, as a flood would send it.
fn forged(trade_no: &str) -> (String, String) {
    let mut params = notification_params(trade_no, "1.00", "CNY", "forged-gw", b"not the secret");
    params.push(("padding".into(), "x".repeat(60_000)));
    let query = format!("q={}", "y".repeat(3_000));
    (query, serde_urlencoded::to_string(params).unwrap())
}

async fn flood_grows_the_database_little(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("flood", 100, "auto").await;
    app.import_keys("flood", 2).await;
    let order = app.order("flood", 1).await;
    let trade_no = order["order_no"].as_str().unwrap().to_owned();
    let before = database_bytes(&app.db_url).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (http, url, sent) = (
                app.http.clone(),
                app.url("/pay/notify/sandbox"),
                sent.clone(),
            );
            let (query, body) = forged(&trade_no);
            tokio::spawn(async move {
                while started.elapsed() < FLOOD {
                    let r = http
                        .post(format!("{url}?{query}"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_ne!(r.status().as_u16(), 200, "a forgery was acknowledged");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);

    let grew = database_bytes(&app.db_url).await.saturating_sub(before);
    let stored = scalar(
        &app.db_url,
        "SELECT COUNT(*) FROM payment_events WHERE verified = 0",
    )
    .await;
    let largest = scalar(
        &app.db_url,
        "SELECT CAST(COALESCE(MAX(octet_length(query) + octet_length(headers) + \
         octet_length(body)), 0) AS BIGINT) FROM payment_events WHERE verified = 0",
    )
    .await;
    eprintln!(
        "{backend:?}: {sent} forgeries in {FLOOD:?}, {stored} stored, database +{grew} bytes"
    );
    assert!(
        sent > 100,
        "the flood was too small to prove anything: {sent}"
    );
    assert!(
        grew < 10 << 20,
        "database grew {grew} bytes from {sent} forgeries"
    );
    // The default 30 a minute per client and channel, plus what refills during the flood.
    assert!(
        (1..=40).contains(&stored),
        "{stored} of {sent} forgeries stored"
    );
    assert!(largest <= 4096, "a rejected event kept {largest} bytes");

    // Nothing changed, and the real payment still goes through.
    let o = app.admin_order(&trade_no).await;
    assert_eq!(o["status"], "pending", "{o}");
    app.pay(&order).await;
    let settled = app.wait_settled(&order).await;
    assert_eq!(settled["status"], "delivered", "{settled}");
    let verified = scalar(
        &app.db_url,
        "SELECT COUNT(*) FROM payment_events WHERE verified = 1",
    )
    .await;
    assert_eq!(verified, 1);
}
both_backends!(flood_grows_the_database_little);

async fn rejected_events_expire_and_verified_ones_stay(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[retention]\nrejected_events_days = 7\n").await;
    let now = app.state.now_ms();
    let day = 86_400_000;
    let event = |age_days: i64, body: &str| RawEvent {
        channel_id: "sandbox".into(),
        http_method: "POST".into(),
        query: String::new(),
        headers: "{}".into(),
        body: body.as_bytes().to_vec(),
        received_at: now - age_days * day,
    };
    let store = &app.state.store;
    let rejected = || Verdict::Rejected {
        reason: "bad signature".into(),
    };
    let not_paid = || Verdict::NotPaid {
        trade_no: "no-such-order".into(),
        status: "WAIT_BUYER_PAY".into(),
    };
    for (age, verdict) in [
        (30, rejected()),
        (8, rejected()),
        (6, rejected()),
        (0, rejected()),
    ] {
        store
            .record_notification(event(age, "forged"), verdict)
            .await
            .unwrap();
    }
    // A verified event is the proof of a payment: kept whatever its age.
    store
        .record_notification(event(400, "verified"), not_paid())
        .await
        .unwrap();

    // The retention job also runs once at start, and may have taken some already.
    let deleted = kami_server::services::retention::purge_rejected_events(&app.state)
        .await
        .unwrap();
    assert!(deleted <= 2, "{deleted}");
    let left = |sql| scalar(&app.db_url, sql);
    assert_eq!(
        left("SELECT COUNT(*) FROM payment_events WHERE verified = 0").await,
        2
    );
    assert_eq!(
        left("SELECT COUNT(*) FROM payment_events WHERE verified = 1").await,
        1
    );
    let oldest = left("SELECT MIN(received_at) FROM payment_events WHERE verified = 0").await;
    assert_eq!(oldest, now - 6 * day);
    // Running again finds nothing more.
    let again = kami_server::services::retention::purge_rejected_events(&app.state)
        .await
        .unwrap();
    assert_eq!(again, 0);
}
both_backends!(rejected_events_expire_and_verified_ones_stay);
