//! End-to-end tests of WeChat Pay API v3: kami's `WechatPayChannel` against the simulator,
//! with a tiny merchant endpoint that verifies notifications like kami's server does, plus
//! the interop check against the PyPI SDK `wechatpayv3` (protocols.md D).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kami_pay::TradeRef;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use kami_core::{ChannelId, Currency, Method, Money, OrderNo};
use kami_pay::crypto::{Certificate, RsaHash, RsaSigner, RsaVerifier};
use kami_pay::wechatpay::{
    authorization, PlatformKeys, WechatMode, WechatPayChannel, WechatPayConfig,
};
use kami_pay::{
    CreatePayment, Device, NotifyVerdict, PayError, PaymentAction, PaymentChannel, RawNotification,
    RefundRequest, TradeState,
};
use kami_sim::wechatpay::{
    demo_pair, scan_page_url, NotifyMode, NotifyStats, PayOptions, PayRefusal, ResponseFault,
    WechatSim,
};
use support::{
    cny, eventually, fast_schedule, interop_python, listen, merchant_app, new_trade_no, now_ms,
    now_secs, post_form, serve, workspace_root, Merchant,
};

/// What a request to the capture endpoint looked like.
#[derive(Debug, Clone, Default)]
struct Captured {
    method: String,
    path_and_query: String,
    authorization: String,
    body: String,
}

async fn capture(
    State(slot): State<Arc<Mutex<Option<Captured>>>>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    *slot.lock().unwrap() = Some(Captured {
        method: method.to_string(),
        path_and_query: uri.path_and_query().unwrap().to_string(),
        authorization: headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned(),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"code": "CAPTURED", "message": "captured"})),
    )
}

struct Env {
    base: String,
    sim: Arc<WechatSim>,
    channel: Arc<WechatPayChannel>,
    merchant: Arc<Merchant>,
    /// PEM of the merchant's API private key (to build more channels).
    merchant_key_pem: String,
    captured: Arc<Mutex<Option<Captured>>>,
    http: reqwest::Client,
}

async fn start(attempts: usize) -> Env {
    let (listener, base) = listen().await;
    let mut pair = demo_pair(
        ChannelId::parse("wx").unwrap(),
        vec![Method::Wxpay],
        &format!("{base}/sim/wechatpay/"),
        WechatMode::Auto,
    )
    .unwrap();
    pair.sim.retry_schedule = fast_schedule(attempts);
    pair.sim.notify_timeout = Duration::from_secs(2);
    let merchant_key_pem = pair.channel.merchant_private_key.private_key_pem().unwrap();
    let sim = WechatSim::new(pair.sim);
    let channel = Arc::new(WechatPayChannel::new(pair.channel, reqwest::Client::new()));
    let captured = Arc::new(Mutex::new(None));
    let (merchant, merchant_routes) = merchant_app("/pay/notify/wx", &channel, Router::new());
    let capture_routes = Router::new()
        .route("/capture/{*rest}", any(capture))
        .with_state(Arc::clone(&captured));
    let app = sim
        .router()
        .merge(merchant_routes)
        .merge(capture_routes)
        // The API also at the root (`/v3/...`), as on the real host.
        .merge(sim.api_root_router());
    serve(listener, app);
    Env {
        base,
        sim,
        channel,
        merchant,
        merchant_key_pem,
        captured,
        http: reqwest::Client::new(),
    }
}

impl Env {
    /// A channel config like the env's, with another api_base / merchant key / platform keys.
    fn config_with(
        &self,
        api_base: &str,
        merchant_key: RsaSigner,
        platform: PlatformKeys,
    ) -> WechatPayConfig {
        let sc = self.sim.config();
        WechatPayConfig {
            id: ChannelId::parse("wx").unwrap(),
            methods: vec![Method::Wxpay],
            priority: 0,
            api_base: api_base.to_owned(),
            mchid: sc.mchid.clone(),
            appid: sc.appid.clone(),
            merchant_serial_no: sc.merchant_serial_no.clone(),
            merchant_private_key: merchant_key,
            apiv3_key: sc.apiv3_key.clone(),
            platform,
            mode: WechatMode::Auto,
            jsapi: None,
        }
    }

    /// The env's own channel config (to change one field).
    fn own_config(&self) -> WechatPayConfig {
        self.config_with(
            &format!("{}/sim/wechatpay", self.base),
            self.merchant_key(),
            self.platform_keys(),
        )
    }

    fn platform_keys(&self) -> PlatformKeys {
        PlatformKeys::PublicKey {
            id: self.sim.config().platform_key_id.clone(),
            key: self.sim.config().platform_key.verifier().unwrap(),
        }
    }

    fn merchant_key(&self) -> RsaSigner {
        RsaSigner::from_text(&self.merchant_key_pem).unwrap()
    }

    fn request(&self, trade_no: &OrderNo, amount: Money, device: Device) -> CreatePayment {
        CreatePayment {
            trade_no: trade_no.into(),
            amount,
            subject: "Steam <b>10</b> & \"more\"".into(),
            method: Method::Wxpay,
            device,
            notify_url: format!("{}/pay/notify/wx", self.base),
            return_url: format!("{}/pay/return/wx?o={trade_no}", self.base),
            expires_at_ms: now_ms() + 15 * 60_000,
            user_agent: None,
            client_ip: None,
            payer_openid: None,
        }
    }

    async fn create_native(&self, trade_no: &OrderNo, fen: i64) -> String {
        match self
            .channel
            .create(&self.request(trade_no, cny(fen), Device::Pc))
            .await
            .unwrap()
            .action
        {
            PaymentAction::Qr { qr_code } => qr_code,
            other => panic!("expected Qr, got {other:?}"),
        }
    }

    async fn wait_stats(&self, trade_no: &str, cond: impl Fn(&NotifyStats) -> bool) -> NotifyStats {
        let stats = || self.sim.notify_stats(trade_no);
        eventually(300, || stats().filter(|s| cond(s)), stats).await
    }

    fn verdicts(&self) -> Vec<NotifyVerdict> {
        self.merchant.verdicts()
    }

    /// Pay without notifying (kami must find the payment by query or close).
    fn pay_dropped(&self, out_trade_no: &str) -> String {
        let opts = PayOptions {
            notify: NotifyMode::Drop,
            ..Default::default()
        };
        self.sim.pay(out_trade_no, opts).unwrap()
    }

    fn rejected(&self) -> Vec<String> {
        self.merchant.rejected()
    }

    async fn refund(
        &self,
        trade_no: &OrderNo,
        refund_no: &str,
        fen: i64,
        total: i64,
    ) -> Result<kami_pay::RefundOutcome, PayError> {
        self.channel
            .refund(&RefundRequest {
                gateway_ref: None,
                gateway_trade_no: None,
                trade_no: trade_no.to_string(),
                refund_no: refund_no.into(),
                amount: cny(fen),
                total: cny(total),
                reason: Some("buyer asked".into()),
            })
            .await
    }

    async fn form(&self, url: &str, form: &[(&str, &str)], json: bool) -> (StatusCode, String) {
        let body = serde_urlencoded::to_string(form).unwrap();
        post_form(&self.http, url, &body, json).await
    }
}

/// `state` is paid by transaction `tx`, `fen` fen.
fn assert_paid(state: TradeState, tx: &str, fen: i64) {
    match state {
        TradeState::Paid(c) => {
            assert_eq!(c.gateway_trade_no, tx);
            assert_eq!(c.amount, cny(fen));
        }
        other => panic!("expected Paid, got {other:?}"),
    }
}

/// The simulator refused the request's `Authorization`.
fn assert_sign_error<T: std::fmt::Debug>(r: &Result<T, PayError>) {
    assert!(
        matches!(r, Err(PayError::Gateway { code, .. }) if code == "SIGN_ERROR"),
        "{r:?}"
    );
}

fn paid(v: &NotifyVerdict) -> &kami_pay::PaymentConfirmation {
    match v {
        NotifyVerdict::Paid(c) => c,
        other => panic!("expected Paid, got {other:?}"),
    }
}

#[tokio::test]
async fn native_purchase_end_to_end() {
    let env = start(5).await;
    let trade = new_trade_no();
    assert_eq!(env.sim.trade_state(trade.as_str()), "NOT_FOUND");
    let code_url = env.create_native(&trade, 1230).await;
    assert!(
        code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
        "{code_url}"
    );
    assert_eq!(env.sim.trade_state(trade.as_str()), "NOTPAY");
    assert_eq!(
        env.sim.trade_for_url(&code_url).as_deref(),
        Some(trade.as_str())
    );
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Waiting
    );

    // The buyer's "phone": the scan page.
    let scan = scan_page_url(&env.base, &code_url).unwrap();
    assert!(scan.starts_with(&format!("{}/sim/wechatpay/scan/", env.base)));
    assert_eq!(scan_page_url("", "https://example.com/x"), None);
    let page = env.http.get(&scan).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("¥12.30"), "{page}");
    assert!(page.contains(trade.as_str()));
    assert!(!page.contains("<b>10</b>"));
    assert!(page.contains("Steam &lt;b&gt;10&lt;/b&gt; &amp; &quot;more&quot;"));
    assert!(page.contains("name=\"notify\""));

    // Pay through the page's form (HTML answer).
    let (status, done) = env.form(&scan, &[("action", "pay")], false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("Payment done"), "{done}");
    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.attempts, 1);
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 1);
    let conf = paid(&verdicts[0]);
    assert_eq!(conf.trade_no, trade.as_str());
    assert_eq!(conf.amount, cny(1230));
    assert!(conf.gateway_trade_no.starts_with("4200") && conf.gateway_trade_no.len() == 28);
    assert!(env.rejected().is_empty());

    // Query agrees; paying again is idempotent and sends nothing new.
    match env
        .channel
        .query(&TradeRef::from(trade.as_str()))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => assert_eq!(&c, conf),
        other => panic!("{other:?}"),
    }
    let (status, body) = env.form(&scan, &[("action", "pay")], true).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["trade_state"], "SUCCESS");
    assert_eq!(v["transaction_id"], conf.gateway_trade_no.as_str());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.merchant.requests.load(Ordering::SeqCst), 1);
    // Creating the same order again now fails: it is paid.
    let r = env
        .channel
        .create(&env.request(&trade, cny(1230), Device::Pc))
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "ORDERPAID"),
        "{r:?}"
    );
}

#[tokio::test]
async fn h5_flow_with_return_link() {
    let env = start(5).await;
    let trade = new_trade_no();
    let req = env.request(&trade, cny(500), Device::Mobile);
    let PaymentAction::Redirect { url } = env.channel.create(&req).await.unwrap().action else {
        panic!("expected redirect")
    };
    assert!(
        url.starts_with(&format!("{}/sim/wechatpay/h5/", env.base)),
        "{url}"
    );
    let enc = serde_urlencoded::to_string([("redirect_url", &req.return_url)]).unwrap();
    assert!(url.ends_with(&format!("?{enc}")), "{url}");
    assert_eq!(env.sim.trade_for_url(&url).as_deref(), Some(trade.as_str()));

    let page = env
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("H5 cashier") && page.contains("¥5.00"),
        "{page}"
    );
    let (status, done) = env
        .form(&url, &[("action", "pay"), ("notify", "normal")], false)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("id=\"return\""), "{done}");
    assert!(
        done.contains(&format!("href=\"{}/pay/return/wx?o={trade}\"", env.base)),
        "{done}"
    );
    env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(paid(&env.verdicts()[0]).amount, cny(500));

    // Inside WeChat's own browser auto mode falls back to a QR code; in H5 mode a
    // non-http redirect_url is never linked.
    let t2 = new_trade_no();
    let mut req = env.request(&t2, cny(500), Device::Mobile);
    req.user_agent = Some("Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.47".into());
    assert!(matches!(
        env.channel.create(&req).await.unwrap().action,
        PaymentAction::Qr { .. }
    ));
    let t3 = new_trade_no();
    let mut req = env.request(&t3, cny(500), Device::Mobile);
    req.return_url = "javascript:alert(1)".into();
    let PaymentAction::Redirect { url } = env.channel.create(&req).await.unwrap().action else {
        panic!()
    };
    let (_, done) = env
        .form(&url, &[("action", "pay"), ("notify", "drop")], false)
        .await;
    assert!(!done.contains("javascript:"), "{done}");
}

#[tokio::test]
async fn query_reports_every_state() {
    let env = start(3).await;
    let trade = new_trade_no();
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::NotFound
    );
    env.create_native(&trade, 1230).await;
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Waiting
    );
    for (state, want) in [
        ("USERPAYING", TradeState::Waiting),
        ("PAYERROR", TradeState::Closed),
        ("REVOKED", TradeState::Closed),
        ("CLOSED", TradeState::Closed),
        ("NOTPAY", TradeState::Waiting),
    ] {
        assert!(env.sim.force_state(trade.as_str(), state));
        assert_eq!(
            env.channel
                .query(&TradeRef::from(trade.as_str()))
                .await
                .unwrap(),
            want,
            "{state}"
        );
    }
    assert!(!env.sim.force_state(trade.as_str(), "PAID"));
    let tx = env.pay_dropped(trade.as_str());
    assert_paid(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        &tx,
        1230,
    );
    assert!(env.refund(&trade, "R1", 1230, 1230).await.unwrap().settled);
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Refunded
    );
    // Malformed trade numbers never reach the wire.
    assert!(matches!(
        env.channel.query(&TradeRef::from("x")).await,
        Err(PayError::Malformed(_))
    ));
}

#[tokio::test]
async fn close_then_closed() {
    let env = start(3).await;
    let trade = new_trade_no();
    let code_url = env.create_native(&trade, 1230).await;
    assert_eq!(
        env.channel
            .close(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    assert_eq!(env.sim.trade_state(trade.as_str()), "CLOSED");
    // Closing twice is fine; paying is refused (API and page).
    assert_eq!(
        env.channel
            .close(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    assert_eq!(
        env.sim.pay(trade.as_str(), PayOptions::default()),
        Err(PayRefusal::Closed)
    );
    let scan = scan_page_url(&env.base, &code_url).unwrap();
    let (status, _) = env.form(&scan, &[("action", "pay")], true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    assert_eq!(env.sim.notify_stats(trade.as_str()), None);
    // Re-creating a closed order is refused.
    let r = env
        .channel
        .create(&env.request(&trade, cny(1230), Device::Pc))
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "ORDER_CLOSED"),
        "{r:?}"
    );
    // A trade WeChat never saw.
    let unknown = new_trade_no();
    assert_eq!(
        env.channel
            .close(&TradeRef::from(unknown.as_str()))
            .await
            .unwrap(),
        TradeState::NotFound
    );
    // Expired orders cannot be paid.
    let late = new_trade_no();
    let mut req = env.request(&late, cny(100), Device::Pc);
    req.expires_at_ms = now_ms() - 2000;
    env.channel.create(&req).await.unwrap();
    assert_eq!(
        env.sim.pay(late.as_str(), PayOptions::default()),
        Err(PayRefusal::Expired)
    );
}

#[tokio::test]
async fn pay_during_close_is_paid() {
    let env = start(3).await;
    let trade = new_trade_no();
    env.create_native(&trade, 1230).await;
    let tx = env.pay_dropped(trade.as_str());
    assert_paid(
        env.channel
            .close(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        &tx,
        1230,
    );
    assert_eq!(env.sim.trade_state(trade.as_str()), "SUCCESS");
}

#[tokio::test]
async fn refunds_partial_full_processing_and_replay() {
    let env = start(3).await;
    let trade = new_trade_no();
    // Unknown, then unpaid.
    let r = env.refund(&trade, "R1", 100, 1230).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "RESOURCE_NOT_EXISTS"),
        "{r:?}"
    );
    env.create_native(&trade, 1230).await;
    let r = env.refund(&trade, "R1", 100, 1230).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "INVALID_REQUEST"),
        "{r:?}"
    );
    env.pay_dropped(trade.as_str());

    // Partial: PROCESSING at first (default 1 look), SUCCESS on the channel's re-query.
    let o = env.refund(&trade, "R1", 500, 1230).await.unwrap();
    assert_eq!(
        (o.refund_no.as_str(), o.amount, o.settled),
        ("R1", cny(500), true)
    );
    assert_eq!(env.sim.refunded_total(trade.as_str()), 500);
    // The same refund again: same answer, not counted twice.
    let o = env.refund(&trade, "R1", 500, 1230).await.unwrap();
    assert_eq!((o.amount, o.settled), (cny(500), true));
    assert_eq!(env.sim.refunded_total(trade.as_str()), 500);
    // WeChat reports REFUND after any refund.
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Refunded
    );
    // Same refund number, other amount: refused.
    let r = env.refund(&trade, "R1", 600, 1230).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "INVALID_REQUEST"),
        "{r:?}"
    );
    // Too much.
    let r = env.refund(&trade, "R2", 800, 1230).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "INVALID_REQUEST"),
        "{r:?}"
    );
    // Wrong total.
    let r = env.refund(&trade, "R2", 100, 1000).await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "PARAM_ERROR"),
        "{r:?}"
    );
    // Settled at once, the rest.
    env.sim.set_refund_processing_polls(0);
    let o = env.refund(&trade, "R3", 730, 1230).await.unwrap();
    assert_eq!((o.amount, o.settled), (cny(730), true));
    assert_eq!(env.sim.refunded_total(trade.as_str()), 1230);
    let r = env.refund(&trade, "R4", 1, 1230).await;
    assert!(matches!(&r, Err(PayError::Gateway { .. })), "{r:?}");
    // Non-CNY refunds are refused locally.
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
    assert!(matches!(r, Err(PayError::Unsupported(_))), "{r:?}");
}

#[tokio::test]
async fn refund_left_processing_is_unsettled_then_settles() {
    let env = start(3).await;
    let trade = new_trade_no();
    env.create_native(&trade, 1000).await;
    env.pay_dropped(trade.as_str());
    // Four looks: the create answer and three polls all say PROCESSING.
    env.sim.set_refund_processing_polls(5);
    let started = Instant::now();
    let o = env.refund(&trade, "RP1", 300, 1000).await.unwrap();
    assert!(!o.settled);
    assert_eq!(o.amount, cny(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(env.sim.refunded_total(trade.as_str()), 0);
    // The refund worker asks again later with the same number: settled now.
    let o = env.refund(&trade, "RP1", 300, 1000).await.unwrap();
    assert!(o.settled, "{o:?}");
    assert_eq!(env.sim.refunded_total(trade.as_str()), 300);
}

#[tokio::test]
async fn tampered_notifications_are_rejected() {
    let env = start(3).await;
    let sim = &env.sim;
    let ch = &env.channel;
    let trade = new_trade_no();
    env.create_native(&trade, 1230).await;
    let tx = serde_json::json!({
        "appid": sim.config().appid, "mchid": sim.config().mchid,
        "out_trade_no": trade.as_str(), "transaction_id": "4200000000202401010000000009",
        "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "success_time": "2024-01-01T12:00:09+08:00", "payer": {"openid": "o1"},
        "amount": {"total": 1230, "payer_total": 1230, "currency": "CNY", "payer_currency": "CNY"}
    });
    let notify = |plain: &serde_json::Value, ts: i64, probe: bool| {
        let body = sim
            .notification_body("TRANSACTION.SUCCESS", "支付成功", plain)
            .unwrap();
        let headers: Vec<(String, String)> = sim
            .sign_headers(body.as_bytes(), ts, probe)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        (headers, body)
    };
    let check = |headers: &[(String, String)], body: &str| {
        ch.verify_notification(&RawNotification {
            method: "POST".into(),
            query: String::new(),
            headers: headers.to_vec(),
            body: body.as_bytes().to_vec(),
        })
    };
    let (h, b) = notify(&tx, now_secs(), false);
    assert_eq!(paid(&check(&h, &b).unwrap()).amount, cny(1230));

    // Each signed header tampered.
    for name in [
        "wechatpay-timestamp",
        "wechatpay-nonce",
        "wechatpay-signature",
        "wechatpay-serial",
        "wechatpay-signature-type",
    ] {
        let mut bad = h.clone();
        let slot = bad.iter_mut().find(|(k, _)| k == name).unwrap();
        slot.1 = match name {
            "wechatpay-timestamp" => (now_secs() - 1).to_string(),
            "wechatpay-signature" => slot.1.chars().rev().collect(),
            _ => format!("{}X", slot.1),
        };
        assert!(
            matches!(check(&bad, &b), Err(PayError::BadSignature)),
            "{name}"
        );
        let without: Vec<_> = h.iter().filter(|(k, _)| k != name).cloned().collect();
        let r = check(&without, &b);
        if name == "wechatpay-signature-type" {
            assert!(r.is_ok());
        } else {
            assert!(matches!(r, Err(PayError::Malformed(_))), "{name}: {r:?}");
        }
    }
    // Each body field tampered: every string value in the envelope.
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    for key in [
        "id",
        "create_time",
        "resource_type",
        "event_type",
        "summary",
    ] {
        let old = v[key].as_str().unwrap();
        let bad = b.replacen(&format!("\"{old}\""), &format!("\"{old}1\""), 1);
        assert!(
            matches!(check(&h, &bad), Err(PayError::BadSignature)),
            "{key}"
        );
    }
    for key in [
        "original_type",
        "algorithm",
        "ciphertext",
        "associated_data",
        "nonce",
    ] {
        let old = v["resource"][key].as_str().unwrap();
        let bad = b.replacen(&format!("\"{old}\""), &format!("\"{old}1\""), 1);
        assert!(
            matches!(check(&h, &bad), Err(PayError::BadSignature)),
            "{key}"
        );
    }
    // Each checked resource field changed by the "gateway" (authentic, re-signed).
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut t = tx.clone();
        f(&mut t);
        let (h, b) = notify(&t, now_secs(), false);
        check(&h, &b)
    };
    assert!(matches!(
        with(&|t| t["mchid"] = "1900000000".into()),
        Err(PayError::WrongMerchant)
    ));
    assert!(matches!(
        with(&|t| t["appid"] = "wx0".into()),
        Err(PayError::WrongMerchant)
    ));
    assert_eq!(
        paid(&with(&|t| t["amount"]["total"] = 1.into()).unwrap()).amount,
        cny(1)
    );
    assert_eq!(
        paid(&with(&|t| t["out_trade_no"] = "K20240101120000999999999999".into()).unwrap())
            .trade_no,
        "K20240101120000999999999999"
    );
    assert!(
        matches!(with(&|t| t["amount"]["currency"] = "JPY".into()).unwrap(), NotifyVerdict::Paid(c) if c.amount.currency() == Currency::Jpy)
    );
    assert!(matches!(
        with(&|t| t["trade_state"] = "NOTPAY".into()).unwrap(),
        NotifyVerdict::NotPaid { .. }
    ));
    assert!(matches!(
        with(&|t| {
            t.as_object_mut().unwrap().remove("transaction_id");
        }),
        Err(PayError::Malformed(_))
    ));
    // Probe, stale, future.
    let (h2, b2) = notify(&tx, now_secs(), true);
    assert!(matches!(check(&h2, &b2), Err(PayError::BadSignature)));
    let (h3, b3) = notify(&tx, now_secs() - 400, false);
    assert!(matches!(check(&h3, &b3), Err(PayError::Stale)));
    let (h4, b4) = notify(&tx, now_secs() + 400, false);
    assert!(matches!(check(&h4, &b4), Err(PayError::Stale)));
    // Someone else's platform key under our key ID.
    let stranger = RsaSigner::generate().unwrap();
    let mut forged = h.clone();
    let ts = forged
        .iter()
        .find(|(k, _)| k == "wechatpay-timestamp")
        .unwrap()
        .1
        .clone();
    let nonce = forged
        .iter()
        .find(|(k, _)| k == "wechatpay-nonce")
        .unwrap()
        .1
        .clone();
    forged
        .iter_mut()
        .find(|(k, _)| k == "wechatpay-signature")
        .unwrap()
        .1 = stranger
        .sign_base64(
            RsaHash::Sha256,
            &kami_pay::wechatpay::response_message(&ts, &nonce, b.as_bytes()),
        )
        .unwrap();
    assert!(matches!(check(&forged, &b), Err(PayError::BadSignature)));
}

#[tokio::test]
async fn probes_and_stale_attempts_are_refused_then_delivered() {
    let env = start(4).await;
    let trade = new_trade_no();
    let code_url = env.create_native(&trade, 1230).await;
    let scan = scan_page_url(&env.base, &code_url).unwrap();
    let (status, _) = env
        .form(
            &scan,
            &[("action", "pay"), ("signtest", "1"), ("stale", "1")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.probes, 1);
    assert!(!stats.probe_accepted);
    assert!(!stats.stale_accepted);
    assert_eq!(stats.attempts, 2, "{stats:?}");
    let rejected = env.rejected();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected[0].contains("signature"), "{rejected:?}");
    assert!(rejected[1].contains("time window"), "{rejected:?}");
    assert_eq!(env.verdicts().len(), 1);
}

#[tokio::test]
async fn forged_or_faulty_response_signatures() {
    let env = start(3).await;
    let trade = new_trade_no();
    env.create_native(&trade, 1230).await;
    for (fault, stale) in [
        (ResponseFault::BadSignature, false),
        (ResponseFault::SignTest, false),
        (ResponseFault::WrongSerial, false),
        (ResponseFault::Unsigned, false),
        (ResponseFault::Stale, true),
    ] {
        env.sim.set_response_fault(fault);
        let r = env.channel.query(&TradeRef::from(trade.as_str())).await;
        if stale {
            assert!(matches!(r, Err(PayError::Stale)), "{fault:?}: {r:?}");
        } else {
            assert!(
                matches!(r, Err(PayError::BadResponseSignature)),
                "{fault:?}: {r:?}"
            );
        }
        // The 204 of close is verified too.
        let r = env.channel.close(&TradeRef::from(trade.as_str())).await;
        assert!(r.is_err(), "{fault:?}: {r:?}");
        let r = env
            .channel
            .create(&env.request(&new_trade_no(), cny(1), Device::Pc))
            .await;
        assert!(r.is_err(), "{fault:?}: {r:?}");
    }
    env.sim.set_response_fault(ResponseFault::None);
    assert_eq!(
        env.channel
            .query(&TradeRef::from(trade.as_str()))
            .await
            .unwrap(),
        TradeState::Closed
    );
    // A channel that trusts another platform key rejects the genuine simulator.
    let other = RsaSigner::generate().unwrap();
    let cfg = env.config_with(
        &format!("{}/sim/wechatpay", env.base),
        env.merchant_key(),
        PlatformKeys::PublicKey {
            id: env.sim.config().platform_key_id.clone(),
            key: other.verifier().unwrap(),
        },
    );
    let wrong = WechatPayChannel::new(cfg, reqwest::Client::new());
    assert!(matches!(
        wrong.query(&TradeRef::from(trade.as_str())).await,
        Err(PayError::BadResponseSignature)
    ));
    // Errors are API errors, not signature failures.
    let r = wrong
        .refund(&RefundRequest {
            gateway_ref: None,
            gateway_trade_no: None,
            trade_no: new_trade_no().to_string(),
            refund_no: "X1".into(),
            amount: cny(1),
            total: cny(1),
            reason: None,
        })
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "RESOURCE_NOT_EXISTS"),
        "{r:?}"
    );
}

#[tokio::test]
async fn merchant_authorization_is_enforced() {
    let env = start(3).await;
    let sc = env.sim.config();
    let trade = new_trade_no();
    env.create_native(&trade, 1230).await;
    // Another merchant key: 401 SIGN_ERROR.
    let cfg = env.config_with(
        &format!("{}/sim/wechatpay", env.base),
        RsaSigner::generate().unwrap(),
        env.platform_keys(),
    );
    let wrong_key = WechatPayChannel::new(cfg, reqwest::Client::new());
    let r = wrong_key.query(&TradeRef::from(trade.as_str())).await;
    assert_sign_error(&r);
    // Other serial / mchid.
    let mut cfg = env.own_config();
    cfg.merchant_serial_no = "ABCDEF".into();
    let r = WechatPayChannel::new(cfg, reqwest::Client::new())
        .query(&TradeRef::from(trade.as_str()))
        .await;
    assert_sign_error(&r);
    let mut cfg = env.own_config();
    cfg.mchid = "1900000001".into();
    let r = WechatPayChannel::new(cfg, reqwest::Client::new())
        .query(&TradeRef::from(trade.as_str()))
        .await;
    assert_sign_error(&r);

    // Hand-made requests.
    let key = env.merchant_key();
    let path = format!(
        "/sim/wechatpay/v3/pay/transactions/out-trade-no/{trade}?mchid={}",
        sc.mchid
    );
    let send = |auth: Option<String>, path: String| {
        let mut req = env
            .http
            .get(format!("{}{path}", env.base))
            .header("accept", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let has_sig = r.headers().contains_key("wechatpay-signature");
            (status, has_sig, r.text().await.unwrap())
        }
    };
    let sign = |ts: i64, path: &str, body: &str| {
        authorization(
            &key,
            &sc.mchid,
            &sc.merchant_serial_no,
            "GET",
            path,
            &ts.to_string(),
            "NONCE123",
            body,
        )
        .unwrap()
    };
    let (status, signed, body) = send(Some(sign(now_secs(), &path, "")), path.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(signed);
    // Parameters in another order, spaces after commas, lower-case serial.
    let good = sign(now_secs(), &path, "");
    let p = kami_pay::wechatpay::AuthorizationParams::parse(&good).unwrap();
    let reordered = format!(
        "WECHATPAY2-SHA256-RSA2048 serial_no=\"{}\", timestamp=\"{}\", signature=\"{}\", nonce_str=\"{}\", mchid=\"{}\"",
        p.serial_no.to_lowercase(), p.timestamp, p.signature, p.nonce_str, p.mchid
    );
    assert_eq!(send(Some(reordered), path.clone()).await.0, StatusCode::OK);
    for (auth, what) in [
        (None, "missing"),
        (Some(sign(now_secs() - 301, &path, "")), "stale"),
        (Some(sign(now_secs() + 301, &path, "")), "future"),
        (
            Some(sign(now_secs(), &path.replace("?mchid", "?x=1&mchid"), "")),
            "other query",
        ),
        (Some(sign(now_secs(), &path, "{}")), "other body"),
        (
            Some(good.replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SHA256-RSA4096")),
            "scheme",
        ),
        (Some(format!("{good},mchid=\"{}\"", sc.mchid)), "duplicate"),
        (
            Some(good.replace("nonce_str=\"NONCE123\"", "nonce_str=\"NONCE124\"")),
            "nonce",
        ),
    ] {
        let (status, _, body) = send(auth, path.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "SIGN_ERROR", "{what}");
    }
    // The query's mchid must be ours.
    let other = path.replace(&format!("mchid={}", sc.mchid), "mchid=1");
    let (status, _, body) = send(Some(sign(now_secs(), &other, "")), other.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn retries_until_success() {
    let env = start(10).await;
    env.merchant.fail_first.store(2, Ordering::SeqCst);
    let trade = new_trade_no();
    env.create_native(&trade, 1230).await;
    let tx = env.sim.pay(trade.as_str(), PayOptions::default()).unwrap();
    let stats = env.wait_stats(trade.as_str(), |s| s.delivered).await;
    assert_eq!(stats.attempts, 3);
    assert!(stats.last_error.unwrap().contains("400"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.merchant.requests.load(Ordering::SeqCst), 3);
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(paid(&verdicts[0]).gateway_trade_no, tx);
}

#[tokio::test]
async fn unreachable_merchant_exhausts_schedule() {
    let env = start(4).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/notify", closed.local_addr().unwrap());
    drop(closed);
    let trade = new_trade_no();
    let mut req = env.request(&trade, cny(100), Device::Pc);
    req.notify_url = dead;
    env.channel.create(&req).await.unwrap();
    env.sim.pay(trade.as_str(), PayOptions::default()).unwrap();
    let stats = env.wait_stats(trade.as_str(), |s| s.attempts == 4).await;
    assert!(!stats.delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.sim.notify_stats(trade.as_str()).unwrap().attempts, 4);
    assert!(
        matches!(env.channel.query(&TradeRef::from(trade.as_str())).await.unwrap(), TradeState::Paid(c) if c.amount == cny(100))
    );
}

#[tokio::test]
async fn notify_modes_drop_duplicate_delay_hold_reorder() {
    let env = start(3).await;
    let mk = |n: usize| (0..n).map(|_| new_trade_no()).collect::<Vec<_>>();
    let t = mk(5);
    for tr in &t {
        env.create_native(tr, 100).await;
    }
    let pay = |i: usize, notify: NotifyMode| {
        env.sim
            .pay(
                t[i].as_str(),
                PayOptions {
                    notify,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    // Drop.
    pay(0, NotifyMode::Drop);
    // Duplicate.
    pay(1, NotifyMode::Duplicate);
    let s = env.wait_stats(t[1].as_str(), |s| s.delivered).await;
    assert_eq!(s.attempts, 2);
    // Delay.
    let started = Instant::now();
    pay(2, NotifyMode::Delay(Duration::from_millis(300)));
    env.wait_stats(t[2].as_str(), |s| s.delivered).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Hold two, release: newest first.
    pay(3, NotifyMode::Hold);
    pay(4, NotifyMode::Hold);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(env.sim.notify_stats(t[3].as_str()).unwrap().held);
    let before = env.verdicts().len();
    assert_eq!(env.sim.release_held(), 2);
    env.wait_stats(t[3].as_str(), |s| s.delivered).await;
    let after: Vec<String> = env.verdicts()[before..]
        .iter()
        .map(|v| paid(v).trade_no.clone())
        .collect();
    assert_eq!(after, vec![t[4].to_string(), t[3].to_string()]);
    assert_eq!(env.sim.release_held(), 0);
    // Dropped one never arrived; 1 duplicate pair + delay + 2 held = 5 verdicts.
    assert_eq!(env.sim.notify_stats(t[0].as_str()).unwrap().attempts, 0);
    let verdicts = env.verdicts();
    assert_eq!(verdicts.len(), 5);
    assert!(!verdicts.iter().any(|v| paid(v).trade_no == t[0].as_str()));
}

#[tokio::test]
async fn creation_faults_and_idempotency() {
    let env = start(3).await;
    let trade = new_trade_no();
    env.sim.fail_next_creates(1);
    let r = env
        .channel
        .create(&env.request(&trade, cny(100), Device::Pc))
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "SYSTEM_ERROR"),
        "{r:?}"
    );
    let first = env.create_native(&trade, 100).await;
    // Same parameters: the same code_url.
    assert_eq!(env.create_native(&trade, 100).await, first);
    // Other parameters: refused.
    let r = env
        .channel
        .create(&env.request(&trade, cny(200), Device::Pc))
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "INVALID_REQUEST"),
        "{r:?}"
    );
    // A long Chinese title is cut to WeChat's 127-byte description limit, never refused.
    let mut req = env.request(&new_trade_no(), cny(100), Device::Pc);
    req.subject = "点卡".repeat(100);
    assert!(matches!(
        env.channel.create(&req).await.unwrap().action,
        PaymentAction::Qr { .. }
    ));
    // Slow creation.
    env.sim.set_create_delay(Duration::from_millis(400));
    let started = Instant::now();
    env.create_native(&new_trade_no(), 100).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    env.sim.set_create_delay(Duration::ZERO);
    // Global controls through the page form.
    let scan = scan_page_url(&env.base, &first).unwrap();
    let (status, _) = env
        .form(
            &scan,
            &[
                ("action", "controls"),
                ("fail_creates", "2"),
                ("create_delay_ms", "0"),
                ("response_fault", "none"),
                ("refund_polls", "0"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        assert!(env
            .channel
            .create(&env.request(&new_trade_no(), cny(1), Device::Pc))
            .await
            .is_err());
    }
    env.create_native(&new_trade_no(), 1).await;
    let (status, _) = env
        .form(
            &scan,
            &[("action", "controls"), ("response_fault", "bogus")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env
        .form(&scan, &[("action", "pay"), ("notify", "sometimes")], true)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env
        .form(
            &format!("{}/sim/wechatpay/scan/nope", env.base),
            &[("action", "pay")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page = env
        .http
        .get(format!("{}/sim/wechatpay/scan/nope", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pay_a_different_amount_is_reported_as_paid() {
    let env = start(3).await;
    let trade = new_trade_no();
    let code_url = env.create_native(&trade, 1230).await;
    let scan = scan_page_url(&env.base, &code_url).unwrap();
    let (status, _) = env
        .form(&scan, &[("action", "pay"), ("amount", "1")], true)
        .await;
    assert_eq!(status, StatusCode::OK);
    env.wait_stats(trade.as_str(), |s| s.delivered).await;
    // The channel reports what WeChat says; the order engine compares with the order.
    assert_eq!(paid(&env.verdicts()[0]).amount, cny(1));
    assert!(
        matches!(env.channel.query(&TradeRef::from(trade.as_str())).await.unwrap(), TradeState::Paid(c) if c.amount == cny(1))
    );
}

#[tokio::test]
async fn demo_pair_and_standalone_root_api() {
    let env = start(3).await;
    // The root-mounted API (as the real host, no prefix) works with a matching api_base.
    let cfg = env.config_with(&env.base, env.merchant_key(), env.platform_keys());
    assert!(cfg.validate().is_ok());
    let root = WechatPayChannel::new(cfg, reqwest::Client::new());
    let trade = new_trade_no();
    let qr = root
        .create(&env.request(&trade, cny(100), Device::Pc))
        .await
        .unwrap();
    assert!(matches!(qr.action, PaymentAction::Qr { .. }));
    assert_eq!(
        root.query(&TradeRef::from(trade.as_str())).await.unwrap(),
        TradeState::Waiting
    );
    assert!(!format!("{:?}", env.sim)
        .contains(&String::from_utf8_lossy(&env.sim.config().apiv3_key).to_string()));
}

// ---------------------------------------------------------------------------------------
// Interop with the PyPI SDK wechatpayv3==2.0.4 (interop/wechatpay/check.py).

#[tokio::test]
#[ignore = "needs the SDK interop environment: bash interop/setup-wechatpay.sh"]
async fn interop_with_wechatpayv3() {
    let python = interop_python("wechatpay", "setup-wechatpay.sh");
    let root = workspace_root();
    let env = start(3).await;
    let sc = env.sim.config();
    let dir = std::env::temp_dir().join(format!("kami-wechatpay-interop-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    };

    // (1) A kami-built notification (the simulator's notification builder) and a probe.
    let trade = new_trade_no();
    let tx = serde_json::json!({
        "appid": sc.appid, "mchid": sc.mchid, "out_trade_no": trade.as_str(),
        "transaction_id": "4200000000202401010000000042", "trade_type": "NATIVE",
        "trade_state": "SUCCESS", "amount": {"total": 1230, "currency": "CNY"}
    });
    let body = env
        .sim
        .notification_body("TRANSACTION.SUCCESS", "支付成功", &tx)
        .unwrap();
    let header_map = |probe: bool| -> serde_json::Value {
        let display = |k: &str| {
            k.split('-')
                .map(|p| {
                    let mut c = p.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-")
        };
        env.sim
            .sign_headers(body.as_bytes(), now_secs(), probe)
            .into_iter()
            .map(|(k, v)| (display(k), serde_json::Value::String(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // (3) kami's Authorization as the channel sends it (captured on the wire).
    let capture_cfg = env.config_with(
        &format!("{}/capture", env.base),
        env.merchant_key(),
        env.platform_keys(),
    );
    let capture_channel = WechatPayChannel::new(capture_cfg, reqwest::Client::new());
    let r = capture_channel
        .create(&env.request(&trade, cny(1230), Device::Pc))
        .await;
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "CAPTURED"),
        "{r:?}"
    );
    let cap = env.captured.lock().unwrap().clone().unwrap();
    assert_eq!(cap.method, "POST");
    write(
        "kami.json",
        &serde_json::json!({
            "mchid": sc.mchid,
            "appid": sc.appid,
            "apiv3_key": String::from_utf8(sc.apiv3_key.clone()).unwrap(),
            "merchant_serial_no": sc.merchant_serial_no,
            "merchant_private_key": env.merchant_key_pem,
            "merchant_public_key": env.merchant_key().public_key_pem().unwrap(),
            "platform_public_key": sc.platform_key.public_key_pem().unwrap(),
            "platform_key_id": sc.platform_key_id,
            "out_trade_no": trade.as_str(),
            "notify": {"headers": header_map(false), "body": body},
            "notify_signtest": {"headers": header_map(true), "body": body},
            "request": {
                "method": cap.method,
                "path": cap.path_and_query,
                "body": cap.body,
                "authorization": cap.authorization,
            },
            // (4) the SDK as a client of the simulator (API mounted at the root).
            "sim_root": env.base,
        }),
    );
    let out = tokio::process::Command::new(&python)
        .arg(root.join("interop/wechatpay/check.py"))
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "check.py failed:\n{stdout}\n{stderr}");

    // (2) The SDK-built notifications, verified and decrypted by kami.
    let sdk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sdk.json")).unwrap()).unwrap();
    assert_eq!(sdk["callback_ok"], true);
    assert_eq!(sdk["callback_resource"]["out_trade_no"], trade.as_str());
    assert_eq!(sdk["signtest_rejected"], true);
    assert_eq!(sdk["authorization_verified"], true);
    assert_eq!(sdk["sim_client"]["code_url_ok"], true);
    for (mode, platform) in [
        (
            "pubkey",
            PlatformKeys::PublicKey {
                id: sdk["pubkey"]["key_id"].as_str().unwrap().to_owned(),
                key: RsaVerifier::from_text(sdk["pubkey"]["public_key"].as_str().unwrap()).unwrap(),
            },
        ),
        (
            "cert",
            PlatformKeys::Certificates(vec![Certificate::from_text(
                sdk["cert"]["certificate"].as_str().unwrap(),
            )
            .unwrap()]),
        ),
    ] {
        let n = &sdk[mode]["notify"];
        let cfg = env.config_with("http://127.0.0.1:9", env.merchant_key(), platform);
        let ch = WechatPayChannel::new(cfg, reqwest::Client::new());
        let headers: Vec<(String, String)> = n["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
            .collect();
        let raw = RawNotification {
            method: "POST".into(),
            query: String::new(),
            headers: headers.clone(),
            body: n["body"].as_str().unwrap().as_bytes().to_vec(),
        };
        let v = ch.verify_notification(&raw).unwrap();
        let c = paid(&v);
        assert_eq!(
            c.trade_no,
            sdk["expected"]["out_trade_no"].as_str().unwrap(),
            "{mode}"
        );
        assert_eq!(
            c.gateway_trade_no,
            sdk["expected"]["transaction_id"].as_str().unwrap()
        );
        assert_eq!(c.amount, cny(sdk["expected"]["total"].as_i64().unwrap()));
        // The SDK's probe variant is refused.
        let mut probe = raw.clone();
        for h in &mut probe.headers {
            if h.0 == "wechatpay-signature" {
                h.1 = format!("WECHATPAY/SIGNTEST/{}", h.1);
            }
        }
        assert!(matches!(
            ch.verify_notification(&probe),
            Err(PayError::BadSignature)
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_suffix() -> String {
    format!("{}-{}", std::process::id(), now_ms())
}
