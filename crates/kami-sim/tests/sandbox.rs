//! End-to-end tests of the sandbox protocol: kami's `SandboxChannel` against the simulator,
//! with a tiny merchant endpoint that verifies notifications like kami's server does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kami_pay::TradeRef;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kami_core::{ChannelId, Currency, Method, Money, OrderNo};
use kami_pay::sandbox::{sign, SandboxChannel};
use kami_pay::{
    CreatePayment, Device, NotifyVerdict, PayError, PaymentAction, PaymentChannel, RefundRequest,
    TradeState,
};
use kami_sim::sandbox::{NotifyStats, SandboxSim, SimOptions};
use support::{
    cny, eventually, fast_schedule, get_page, listen, merchant_app, new_trade_no, now_ms,
    post_form, serve, settled_refund, Merchant,
};

const SECRET: &[u8] = b"sandbox-e2e-secret";

/// A fake gateway whose query answer carries a forged signature.
async fn forged_query(RawQuery(_q): RawQuery) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "trade_no": "K2024010112000000000001",
        "status": "PAID",
        "gateway_trade_no": "SBX1",
        "amount": "999.00",
        "currency": "CNY",
        "sign": "0".repeat(64),
    }))
}

struct Env {
    base: String,
    sim: Arc<SandboxSim>,
    channel: Arc<SandboxChannel>,
    merchant: Arc<Merchant>,
    http: reqwest::Client,
}

fn fast_options(attempts: usize) -> SimOptions {
    SimOptions {
        retry_schedule: fast_schedule(attempts),
        notify_timeout: Duration::from_secs(2),
    }
}

fn channel_for(base: &str, secret: &[u8]) -> SandboxChannel {
    SandboxChannel::new(
        ChannelId::parse("sbx").unwrap(),
        vec![Method::Sandbox],
        1,
        secret.to_vec(),
        format!("{base}/"),
        reqwest::Client::new(),
    )
}

async fn start(opts: SimOptions) -> Env {
    let (listener, base) = listen().await;
    let sim = SandboxSim::new(SECRET.to_vec(), opts);
    let channel = Arc::new(channel_for(&base, SECRET));
    let (merchant, merchant_routes) = merchant_app(
        "/pay/notify/sbx",
        &channel,
        Router::new().route("/fake/sim/sandbox/api/query", get(forged_query)),
    );
    serve(listener, sim.router().merge(merchant_routes));
    Env {
        base,
        sim,
        channel,
        merchant,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn create_with(&self, trade_no: &OrderNo, amount: Money, expires_at_ms: i64) -> String {
        let req = CreatePayment {
            trade_no: trade_no.into(),
            amount,
            subject: "Steam <b>10</b> & \"more\"".into(),
            method: Method::Sandbox,
            device: Device::Pc,
            notify_url: format!("{}/pay/notify/sbx", self.base),
            return_url: format!("{}/pay/return/sbx?o={trade_no}", self.base),
            expires_at_ms,
            user_agent: None,
            client_ip: None,
            payer_openid: None,
        };
        match self.channel.create(&req).await.unwrap().action {
            PaymentAction::Redirect { url } => url,
            other => panic!("expected redirect, got {other:?}"),
        }
    }

    async fn create(&self, trade_no: &OrderNo, amount: Money) -> String {
        self.create_with(trade_no, amount, now_ms() + 15 * 60_000)
            .await
    }

    async fn open(&self, url: &str) -> (StatusCode, String) {
        get_page(&self.http, url).await
    }

    async fn pay(&self, url: &str, notify: &str, json: bool) -> (StatusCode, String) {
        post_form(&self.http, url, &format!("notify={notify}"), json).await
    }

    async fn wait_stats(&self, trade_no: &str, cond: impl Fn(&NotifyStats) -> bool) -> NotifyStats {
        let stats = || self.sim.notify_stats(trade_no);
        eventually(250, || stats().filter(|s| cond(s)), stats).await
    }

    fn verdicts(&self) -> Vec<NotifyVerdict> {
        self.merchant.verdicts()
    }

    async fn refund(
        &self,
        trade_no: &OrderNo,
        refund_no: &str,
        minor: i64,
    ) -> Result<Money, PayError> {
        settled_refund(
            &*self.channel,
            trade_no.as_str(),
            refund_no,
            cny(minor),
            cny(1230),
        )
        .await
    }
}

fn paid_json_gateway_no(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "paid");
    let g = v["gateway_trade_no"].as_str().unwrap().to_owned();
    assert!(g.starts_with("SBX") && g.len() == 23 && g[3..].bytes().all(|b| b.is_ascii_digit()));
    g
}

#[tokio::test]
async fn full_flow_create_open_pay_notify() {
    let env = start(fast_options(10)).await;
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    assert!(url.starts_with(&format!("{}/sim/sandbox/pay/{trade}?", env.base)));

    let (status, page) = env.open(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Pay"), "{page}");
    assert!(page.contains("12.30") && page.contains("CNY"));
    assert!(page.contains("<form method=\"post\""));
    // Everything echoed is escaped.
    assert!(!page.contains("<b>10</b>"));
    assert!(page.contains("Steam &lt;b&gt;10&lt;/b&gt; &amp; &quot;more&quot;"));
    assert_eq!(env.sim.trade_status(trade.as_str()), "WAITING");

    let (status, done) = env.pay(&url, "normal", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("Payment done"), "{done}");
    assert!(done.contains("href=\"http://"), "return link: {done}");

    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.attempts, 1);
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 1);
    let NotifyVerdict::Paid(conf) = &verdicts[0] else {
        panic!("expected Paid, got {verdicts:?}");
    };
    assert_eq!(conf.trade_no, trade.as_str());
    assert_eq!(conf.amount, cny(1230));

    // A second POST is idempotent: same gateway trade number, no new notification.
    let (status, body) = env.pay(&url, "normal", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paid_json_gateway_no(&body), conf.gateway_trade_no);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.merchant.requests.load(Ordering::SeqCst), 1);
    assert_eq!(env.sim.notify_stats(trade.as_str()).unwrap().attempts, 1);
    assert!(env.merchant.rejected.lock().unwrap().is_empty());

    // Opening the page again shows it as paid.
    let (status, page) = env.open(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("already paid"), "{page}");
}

#[tokio::test]
async fn failing_merchant_gets_retries_until_success() {
    let env = start(fast_options(10)).await;
    env.merchant.fail_first.store(2, Ordering::SeqCst);
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    let (status, body) = env.pay(&url, "normal", true).await;
    assert_eq!(status, StatusCode::OK);
    let g = paid_json_gateway_no(&body);

    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.attempts, 3);
    assert!(stats.last_error.unwrap().contains("400"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.merchant.requests.load(Ordering::SeqCst), 3);
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 1);
    assert!(matches!(&verdicts[0], NotifyVerdict::Paid(c) if c.gateway_trade_no == g));
}

#[tokio::test]
async fn unreachable_merchant_exhausts_schedule() {
    let env = start(fast_options(4)).await;
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/notify", closed.local_addr().unwrap());
    drop(closed);
    let trade = new_trade_no();
    let req = CreatePayment {
        trade_no: (&trade).into(),
        amount: cny(100),
        subject: "x".into(),
        method: Method::Sandbox,
        device: Device::Mobile,
        notify_url: dead,
        return_url: "javascript:alert(1)".into(),
        expires_at_ms: now_ms() + 60_000,
        user_agent: None,
        client_ip: None,
        payer_openid: None,
    };
    let PaymentAction::Redirect { url } = env.channel.create(&req).await.unwrap().action else {
        panic!()
    };
    let (status, done) = env.pay(&url, "normal", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!done.contains("javascript:"), "{done}");
    let stats = env.wait_stats(trade.as_str(), |s| s.attempts == 4).await;
    assert!(!stats.delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.sim.notify_stats(trade.as_str()).unwrap().attempts, 4);
    // The payment is still found by query.
    assert!(matches!(
        env.channel.query(&TradeRef::from(trade.as_str())).await.unwrap(),
        TradeState::Paid(c) if c.amount == cny(100)
    ));
}

#[tokio::test]
async fn drop_mode_never_notifies() {
    let env = start(fast_options(3)).await;
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    let (status, body) = env.pay(&url, "drop", true).await;
    assert_eq!(status, StatusCode::OK);
    let g = paid_json_gateway_no(&body);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.merchant.requests.load(Ordering::SeqCst), 0);
    assert_eq!(
        env.sim.notify_stats(trade.as_str()),
        Some(NotifyStats {
            attempts: 0,
            delivered: false,
            last_error: None
        })
    );
    // kami finds it by query, and close reports it paid.
    match env
        .channel
        .query(&TradeRef::from(trade.as_str()))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => {
            assert_eq!(c.gateway_trade_no, g);
            assert_eq!(c.amount, cny(1230));
        }
        other => panic!("expected Paid, got {other:?}"),
    }
    assert!(matches!(
        env.channel
            .close(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Paid(_)
    ));
    assert_eq!(env.sim.trade_status(trade.as_str()), "PAID");
}

#[tokio::test]
async fn duplicate_mode_notifies_twice() {
    let env = start(fast_options(3)).await;
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    let (status, _) = env.pay(&url, "duplicate", false).await;
    assert_eq!(status, StatusCode::OK);
    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.attempts, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0], verdicts[1]);
    assert!(matches!(&verdicts[0], NotifyVerdict::Paid(c) if c.trade_no == trade.as_str()));
}

#[tokio::test]
async fn tampered_or_expired_links_are_refused() {
    let env = start(fast_options(3)).await;
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    assert!(url.contains("amount=12.30"));

    let tampered = url.replace("amount=12.30", "amount=0.01");
    let (status, page) = env.open(&tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("signature is invalid"), "{page}");
    let (status, _) = env.pay(&tampered, "normal", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another trade number in the path.
    let other = new_trade_no();
    let moved = url.replace(&format!("/pay/{trade}?"), &format!("/pay/{other}?"));
    let (status, _) = env.open(&moved).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Duplicated parameter.
    let (status, _) = env.open(&format!("{url}&amount=0.01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing above made the trade known.
    assert_eq!(env.sim.trade_status(trade.as_str()), "NOT_FOUND");
    assert_eq!(env.sim.trade_status(other.as_str()), "NOT_FOUND");

    // Bad notify control.
    let (status, _) = env.pay(&url, "sometimes", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(env.sim.notify_stats(trade.as_str()), None);

    // Expired link.
    let late = new_trade_no();
    let url = env.create_with(&late, cny(1230), now_ms() - 1).await;
    let (status, _) = env.open(&url).await;
    assert_eq!(status, StatusCode::GONE);
    let (status, body) = env.pay(&url, "normal", true).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("EXPIRED"));
    assert_eq!(env.sim.notify_stats(late.as_str()), None);
    assert_eq!(env.sim.trade_status(late.as_str()), "NOT_FOUND");
}

#[tokio::test]
async fn query_follows_the_trade() {
    let env = start(fast_options(3)).await;
    let trade = new_trade_no();
    let url = env.create(&trade, cny(1230)).await;
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::NotFound
    );
    let (status, _) = env.open(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Waiting
    );
    let (_, body) = env.pay(&url, "drop", true).await;
    let g = paid_json_gateway_no(&body);
    match env
        .channel
        .query(&TradeRef::from(trade.as_str()))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => {
            assert_eq!(c.trade_no, trade.as_str());
            assert_eq!(c.gateway_trade_no, g);
            assert_eq!(c.amount, cny(1230));
        }
        other => panic!("expected Paid, got {other:?}"),
    }
}

#[tokio::test]
async fn close_blocks_payment() {
    let env = start(fast_options(3)).await;
    // Unknown trade: recorded as closed, later payment refused.
    let trade = new_trade_no();
    assert_eq!(
        env.channel
            .close(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    let url = env.create(&trade, cny(1230)).await;
    let (status, page) = env.open(&url).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("closed"), "{page}");
    let (status, body) = env.pay(&url, "normal", true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("TRADE_CLOSED"));
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    assert_eq!(env.sim.notify_stats(trade.as_str()), None);

    // Waiting trade: closed.
    let waiting = new_trade_no();
    let url = env.create(&waiting, cny(500)).await;
    env.open(&url).await;
    assert_eq!(
        env.channel
            .close(&TradeRef::from(waiting.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    let (status, _) = env.pay(&url, "normal", false).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Closing twice is fine.
    assert_eq!(
        env.channel
            .close(&TradeRef::from(waiting.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
}

#[tokio::test]
async fn refunds_partial_full_idempotent_and_bounded() {
    let env = start(fast_options(3)).await;
    let trade = new_trade_no();

    // Not paid yet (unknown, then waiting).
    let r = env.refund(&trade, "R1", 100).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "NOT_PAID"),
        "{r:?}"
    );
    let url = env.create(&trade, cny(1230)).await;
    env.open(&url).await;
    let r = env.refund(&trade, "R1", 100).await;
    assert!(matches!(&r, Err(PayError::Gateway { code, .. }) if code == "NOT_PAID"));

    env.pay(&url, "drop", false).await;
    assert_eq!(env.refund(&trade, "R1", 500).await.unwrap(), cny(500));
    // Same refund_no again: same answer, not counted twice.
    assert_eq!(env.refund(&trade, "R1", 500).await.unwrap(), cny(500));
    assert!(matches!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Paid(_)
    ));
    // 5.00 + 8.00 > 12.30.
    let r = env.refund(&trade, "R2", 800).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "EXCEEDS_TOTAL"),
        "{r:?}"
    );
    // The rest: 7.30.
    assert_eq!(env.refund(&trade, "R3", 730).await.unwrap(), cny(730));
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Refunded
    );
    // Replays still answer; nothing more can be refunded.
    assert_eq!(env.refund(&trade, "R1", 500).await.unwrap(), cny(500));
    let r = env.refund(&trade, "R4", 1).await;
    assert!(matches!(&r, Err(PayError::Gateway { code, .. }) if code == "EXCEEDS_TOTAL"));
    // A refund in another currency is refused.
    let r = env
        .channel
        .refund(&RefundRequest {
            gateway_ref: None,
            gateway_trade_no: None,
            trade_no: trade.to_string(),
            refund_no: "R5".into(),
            amount: Money::new(1, Currency::Usd).unwrap(),
            total: cny(1230),
            reason: None,
        })
        .await;
    assert!(matches!(r, Err(PayError::Gateway { .. })), "{r:?}");
}

#[tokio::test]
async fn api_signatures_are_enforced_both_ways() {
    let env = start(fast_options(3)).await;
    // kami signs with the wrong secret: the gateway refuses, unsigned.
    let wrong = channel_for(&env.base, b"not-the-secret");
    for r in [
        wrong
            .query(&TradeRef::from("K2024010112000000000001"))
            .await,
        wrong
            .close(&TradeRef::from("K2024010112000000000001"))
            .await,
    ] {
        assert!(
            matches!(&r, Err(PayError::Gateway { code, .. }) if code == "BAD_SIGNATURE"),
            "{r:?}"
        );
    }
    // Raw unsigned request.
    let r = env
        .http
        .get(format!(
            "{}/sim/sandbox/api/query?trade_no=K1&nonce=1",
            env.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"error": "BAD_SIGNATURE"}));

    // A signed request missing nonce is refused too.
    let params = [("trade_no", "K1")];
    let s = sign(SECRET, &params);
    let r = env
        .http
        .post(format!("{}/sim/sandbox/api/close", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("trade_no=K1&sign={s}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A forged gateway answer is not believed.
    let forged = channel_for(&format!("{}/fake", env.base), SECRET);
    let r = forged
        .query(&TradeRef::from("K2024010112000000000001"))
        .await;
    assert!(matches!(r, Err(PayError::BadResponseSignature)), "{r:?}");

    // A gateway that is not there.
    let gone = channel_for(&format!("{}/nothing-here", env.base), SECRET);
    let r = gone.query(&TradeRef::from("K2024010112000000000001")).await;
    assert!(matches!(r, Err(PayError::Gateway { .. })), "{r:?}");
}

#[tokio::test]
async fn standalone_router_serves_the_sandbox() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = kami_sim::standalone_router(SECRET.to_vec());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ch = channel_for(&base, SECRET);
    assert_eq!(
        ch.query(&TradeRef::from("K2024010112000000000001"))
            .await
            .unwrap(),
        TradeState::NotFound
    );
}
