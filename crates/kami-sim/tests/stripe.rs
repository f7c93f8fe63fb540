//! Stripe Checkout end to end: kami's `StripeChannel` against the simulator, with a merchant
//! endpoint that verifies webhooks with the channel as kami's server does; Stripe's
//! idempotency and parameter checks; and the interop check against the official `stripe`
//! package (`interop/stripe/check.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kami_core::{ChannelId, Currency, Method, Money};
use kami_pay::stripe::{StripeChannel, StripeConfig};
use kami_pay::{
    CreatePayment, Device, NotifyVerdict, PayError, PaymentAction, PaymentChannel, RefundRequest,
    TradeRef, TradeState,
};
use kami_sim::stripe::{StripeSim, StripeSimConfig};
use support::{
    eventually, fast_schedule, interop_python, listen, merchant_app, new_trade_no, now_ms, serve,
    workspace_root, Merchant,
};

const KEY: &str = "sk_test_kami_0123456789";
const WHSEC: &str = "whsec_kami_test_0123456789";

struct Env {
    base: String,
    sim: Arc<StripeSim>,
    channel: Arc<StripeChannel>,
    merchant: Arc<Merchant>,
    http: reqwest::Client,
}

fn channel(base: &str, key: &str, whsec: &str) -> StripeChannel {
    StripeChannel::new(
        StripeConfig {
            id: ChannelId::parse("stripe-test").unwrap(),
            methods: vec![Method::Card],
            priority: 10,
            api_base: format!("{base}/sim/stripe"),
            secret_key: key.into(),
            webhook_secret: whsec.into(),
        },
        reqwest::Client::new(),
    )
}

async fn start_with(secrets: &[&str], channel_secret: &str) -> Env {
    let (listener, base) = listen().await;
    let sim = StripeSim::new(StripeSimConfig {
        secret_key: KEY.into(),
        webhook_secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        webhook_url: Some(format!("{base}/notify")),
        currencies: None,
        retry_schedule: fast_schedule(4),
        notify_timeout: Duration::from_secs(5),
    });
    let channel = Arc::new(channel(&base, KEY, channel_secret));
    let (merchant, routes) = merchant_app("/notify", &channel, axum::Router::new());
    serve(listener, routes.merge(sim.router()));
    Env {
        base,
        sim,
        channel,
        merchant,
        http: reqwest::Client::new(),
    }
}

async fn start() -> Env {
    start_with(&[WHSEC], WHSEC).await
}

fn money(minor: i64, c: Currency) -> Money {
    Money::new(minor, c).unwrap()
}

impl Env {
    fn request(&self, amount: Money) -> CreatePayment {
        CreatePayment {
            trade_no: kami_core::TradeNo::first(&new_trade_no()),
            amount,
            subject: "VIP 月卡".into(),
            method: Method::Card,
            device: Device::Pc,
            notify_url: format!("{}/notify", self.base),
            return_url: format!("{}/return", self.base),
            expires_at_ms: now_ms() + 15 * 60 * 1000,
            user_agent: None,
            client_ip: None,
            payer_openid: None,
        }
    }

    /// Create a session; its page URL and id.
    async fn create(&self, req: &CreatePayment) -> (String, String) {
        let created = self.channel.create(req).await.unwrap();
        let PaymentAction::Redirect { url } = created.action else {
            panic!("{created:?}")
        };
        (url, created.gateway_ref.expect("a session id"))
    }

    async fn pay(&self, page: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(page)
            .header("accept", "application/json")
            .form(fields)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn raw_post(
        &self,
        path: &str,
        key: &str,
        idem: Option<&str>,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut rb = self
            .http
            .post(format!("{}/sim/stripe{path}", self.base))
            .bearer_auth(key)
            .form(form);
        if let Some(k) = idem {
            rb = rb.header("idempotency-key", k);
        }
        let r = rb.send().await.unwrap();
        let replayed = r.headers().contains_key("idempotent-replayed");
        let status = r.status().as_u16();
        let mut v: serde_json::Value = r.json().await.unwrap();
        v["_replayed"] = serde_json::json!(replayed);
        (status, v)
    }
}

fn trade(req: &CreatePayment, id: &str) -> TradeRef {
    TradeRef::with_ref(req.trade_no.as_str(), Some(id.to_owned()))
}

fn refund_req(
    req: &CreatePayment,
    id: &str,
    pi: Option<String>,
    no: &str,
    minor: i64,
) -> RefundRequest {
    RefundRequest {
        trade_no: req.trade_no.as_str().to_owned(),
        gateway_ref: Some(id.to_owned()),
        gateway_trade_no: pi,
        refund_no: no.into(),
        amount: money(minor, req.amount.currency()),
        total: req.amount,
        reason: Some("buyer asked".into()),
    }
}

#[tokio::test]
async fn pay_with_duplicate_webhooks_query_close_and_refund() {
    let env = start().await;
    let req = env.request(money(1230, Currency::Cny));
    let (page, id) = env.create(&req).await;
    assert!(page.ends_with(&format!("/sim/stripe/c/pay/{id}")), "{page}");
    assert_eq!(
        env.channel.query(&trade(&req, &id)).await.unwrap(),
        TradeState::Waiting
    );
    let html = env
        .http
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("12.30 CNY") && html.contains("VIP 月卡"),
        "{html}"
    );

    let (s, body) = env.pay(&page, &[("notify", "duplicate")]).await;
    assert_eq!(s, 200, "{body}");
    let pi = env.sim.payment_intent(&id).unwrap();
    let pi_meta = env.sim.payment_intent_metadata(&id).unwrap();
    assert_eq!(
        pi_meta.get("trade_no").map(String::as_str),
        Some(req.trade_no.as_str())
    );
    let verdicts = eventually(
        200,
        || (env.merchant.verdicts().len() >= 2).then(|| env.merchant.verdicts()),
        || env.merchant.rejected(),
    )
    .await;
    for v in &verdicts {
        match v {
            NotifyVerdict::Paid(c) => {
                assert_eq!(c.trade_no, req.trade_no.as_str());
                assert_eq!(c.gateway_trade_no, pi);
                assert_eq!(c.amount, req.amount);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        env.merchant.rejected().is_empty(),
        "{:?}",
        env.merchant.rejected()
    );
    assert_eq!(env.sim.notify_stats(&id).unwrap().attempts, 2);

    assert!(
        matches!(env.channel.query(&trade(&req, &id)).await.unwrap(), TradeState::Paid(c) if c.gateway_trade_no == pi)
    );
    // A paid session cannot be expired: close reports the payment.
    assert!(matches!(
        env.channel.close(&trade(&req, &id)).await.unwrap(),
        TradeState::Paid(_)
    ));
    // Paying again is refused.
    let (s, _) = env.pay(&page, &[]).await;
    assert_eq!(s, 409);

    // Partial refund, the same refund again (not twice), then the rest; more is refused.
    let o = env
        .channel
        .refund(&refund_req(&req, &id, Some(pi.clone()), "R1", 230))
        .await
        .unwrap();
    assert!(o.settled);
    let o = env
        .channel
        .refund(&refund_req(&req, &id, Some(pi.clone()), "R1", 230))
        .await
        .unwrap();
    assert!(o.settled);
    assert_eq!(
        (env.sim.refunded(&id), env.sim.refund_count(&id)),
        (Some(230), 1)
    );
    // Without the payment intent, the session names it.
    let o = env
        .channel
        .refund(&refund_req(&req, &id, None, "R2", 1000))
        .await
        .unwrap();
    assert!(o.settled);
    assert_eq!(env.sim.refunded(&id), Some(1230));
    let e = env
        .channel
        .refund(&refund_req(&req, &id, Some(pi), "R3", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PayError::Gateway { ref code, .. } if code == "charge_already_refunded"),
        "{e:?}"
    );
}

#[tokio::test]
async fn idempotency_keys_behave_like_stripes() {
    let env = start().await;
    let req = env.request(money(500, Currency::Usd));
    let (_, first) = env.create(&req).await;
    // The same request again (a retry): the same session.
    let (_, again) = env.create(&req).await;
    assert_eq!(first, again);
    // The same trade number with other parameters: refused, like Stripe.
    let mut other = req.clone();
    other.amount = money(600, Currency::Usd);
    let e = env.channel.create(&other).await.unwrap_err();
    assert!(
        matches!(e, PayError::Gateway { ref code, .. } if code == "idempotency_error"),
        "{e:?}"
    );

    let form = [
        ("mode", "payment"),
        ("success_url", "https://shop.example/r"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "100"),
        ("line_items[0][price_data][product_data][name]", "x"),
        ("line_items[0][quantity]", "1"),
    ];
    let (s, a) = env
        .raw_post("/v1/checkout/sessions", KEY, Some("k1"), &form)
        .await;
    assert_eq!(s, 200, "{a}");
    let (s, b) = env
        .raw_post("/v1/checkout/sessions", KEY, Some("k1"), &form)
        .await;
    assert_eq!(
        (s, &b["id"], &b["_replayed"]),
        (200, &a["id"], &serde_json::json!(true))
    );
    let (s, e) = env
        .raw_post(
            "/v1/refunds",
            KEY,
            Some("k1"),
            &[("payment_intent", "pi_x")],
        )
        .await;
    assert_eq!(
        (s, e["error"]["type"].as_str()),
        (400, Some("idempotency_error")),
        "{e}"
    );
    // A refused request stores nothing: the key is still free.
    let mut bad = form.to_vec();
    bad.push(("surprise", "1"));
    let (s, e) = env
        .raw_post("/v1/checkout/sessions", KEY, Some("k2"), &bad)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str(), e["error"]["param"].as_str()),
        (400, Some("parameter_unknown"), Some("surprise"))
    );
    let (s, _) = env
        .raw_post("/v1/checkout/sessions", KEY, Some("k2"), &form)
        .await;
    assert_eq!(s, 200);
    // expires_at outside 30 min..24 h.
    let soon = (support::now_secs() + 600).to_string();
    let mut early = form.to_vec();
    early.push(("expires_at", &soon));
    let (s, e) = env
        .raw_post("/v1/checkout/sessions", KEY, None, &early)
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("expires_at")),
        "{e}"
    );
    // A wrong key.
    let (s, e) = env
        .raw_post("/v1/checkout/sessions", "sk_test_wrong", None, &form)
        .await;
    assert_eq!(s, 401, "{e}");
    let wrong = channel(&env.base, "sk_test_wrong", WHSEC);
    // Even a query with nothing to look up asks Stripe (the console's test button).
    let e = wrong.query(&TradeRef::new("K1A1")).await.unwrap_err();
    assert!(matches!(e, PayError::Gateway { .. }), "{e:?}");
    let e = wrong
        .create(&env.request(money(100, Currency::Usd)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PayError::Gateway { ref message, .. } if message.contains("Invalid API Key")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_expired_session_cannot_be_paid_and_says_so() {
    let env = start().await;
    let req = env.request(money(500, Currency::Jpy));
    let (page, id) = env.create(&req).await;
    assert_eq!(
        env.channel.close(&trade(&req, &id)).await.unwrap(),
        TradeState::Closed
    );
    assert_eq!(env.sim.session_status(&id), Some("expired"));
    // Closing again: Stripe refuses, the session reads closed.
    assert_eq!(
        env.channel.close(&trade(&req, &id)).await.unwrap(),
        TradeState::Closed
    );
    let (s, _) = env.pay(&page, &[]).await;
    assert_eq!(s, 409);
    let v = eventually(
        200,
        || env.merchant.verdicts().first().cloned(),
        || env.merchant.rejected(),
    )
    .await;
    assert!(
        matches!(v, NotifyVerdict::NotPaid { ref status, .. } if status.starts_with("checkout.session.expired")),
        "{v:?}"
    );
    // Without a session id there is nothing to ask.
    let bare = TradeRef::new(req.trade_no.as_str());
    assert_eq!(
        env.channel.query(&bare).await.unwrap(),
        TradeState::NotFound
    );
}

#[tokio::test]
async fn delayed_payments_out_of_order_and_rolled_secrets() {
    // Two endpoint secrets while rolling: kami still holding the old one verifies.
    let env = start_with(&["whsec_new_secret_123", WHSEC], WHSEC).await;
    let req = env.request(money(990, Currency::Eur));
    let (page, id) = env.create(&req).await;
    let (s, body) = env
        .pay(
            &page,
            &[("outcome", "async_succeeded"), ("notify", "reorder")],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let v = eventually(
        200,
        || (env.merchant.verdicts().len() >= 2).then(|| env.merchant.verdicts()),
        || env.merchant.rejected(),
    )
    .await;
    // The success arrives first, the stale `completed` (unpaid) after it.
    assert!(
        matches!(&v[0], NotifyVerdict::Paid(c) if c.trade_no == req.trade_no.as_str()),
        "{v:?}"
    );
    assert!(
        matches!(&v[1], NotifyVerdict::NotPaid { status, .. } if status == "checkout.session.completed: unpaid"),
        "{v:?}"
    );

    let req = env.request(money(990, Currency::Eur));
    let (page, id2) = env.create(&req).await;
    env.pay(&page, &[("outcome", "async_failed")]).await;
    let v = eventually(
        200,
        || (env.merchant.verdicts().len() >= 4).then(|| env.merchant.verdicts()),
        || env.merchant.rejected(),
    )
    .await;
    assert!(
        v[2..]
            .iter()
            .all(|v| matches!(v, NotifyVerdict::NotPaid { .. })),
        "{v:?}"
    );
    assert_eq!(
        env.channel.query(&trade(&req, &id2)).await.unwrap(),
        TradeState::Waiting
    );
    assert!(env.sim.session_status(&id).is_some());
}

#[tokio::test]
async fn a_channel_with_another_secret_refuses_every_webhook() {
    let env = start_with(&[WHSEC], "whsec_someone_else_0000").await;
    let req = env.request(money(100, Currency::Usd));
    let (page, _) = env.create(&req).await;
    env.pay(&page, &[]).await;
    let r = eventually(200, || env.merchant.rejected().first().cloned(), || ()).await;
    assert!(r.contains("signature"), "{r}");
    assert!(env.merchant.verdicts().is_empty());
}

#[tokio::test]
async fn the_days_balance_transactions_are_kamis_bill() {
    let env = start().await;
    env.sim.set_page_cap(2);
    let mut paid = Vec::new();
    for minor in [1230, 500, 990] {
        let req = env.request(money(minor, Currency::Usd));
        let (page, id) = env.create(&req).await;
        let (s, body) = env.pay(&page, &[("notify", "drop")]).await;
        assert_eq!(s, 200, "{body}");
        paid.push((req, id));
    }
    let (req, id) = &paid[0];
    let pi = env.sim.payment_intent(id);
    env.channel
        .refund(&refund_req(req, id, pi.clone(), "R9", 230))
        .await
        .unwrap();
    // A payment another integration made on the account: not kami's, left out.
    let form = [
        ("mode", "payment"),
        ("success_url", "https://elsewhere.example/ok"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "7700"),
        ("line_items[0][price_data][product_data][name]", "x"),
        ("line_items[0][quantity]", "1"),
    ];
    let (_, foreign) = env
        .raw_post("/v1/checkout/sessions", KEY, None, &form)
        .await;
    let url = foreign["url"].as_str().unwrap().to_owned();
    env.pay(&url, &[("notify", "drop")]).await;

    let today = time::OffsetDateTime::now_utc()
        .to_offset(kami_pay::bill::BILL_OFFSET)
        .date();
    let bill = env.channel.bill(today).await.unwrap();
    assert_eq!(bill.totals.payments, 3, "{bill:?}");
    assert_eq!(bill.totals.paid_minor, 1230 + 500 + 990);
    assert_eq!((bill.totals.refunds, bill.totals.refunded_minor), (1, 230));
    for (req, id) in &paid {
        let row = bill
            .rows
            .iter()
            .find(|r| {
                r.trade_no == req.trade_no.as_str() && r.entry == kami_pay::BillEntry::Payment
            })
            .unwrap_or_else(|| panic!("{bill:?}"));
        assert_eq!(
            Some(row.gateway_trade_no.clone()),
            env.sim.payment_intent(id)
        );
        assert_eq!(row.amount, req.amount);
    }
    assert!(bill.rows.iter().any(|r| r.entry
        == kami_pay::BillEntry::Refund {
            refund_no: "R9".into()
        }
        && Some(r.gateway_trade_no.clone()) == pi));
    let yesterday = today.previous_day().unwrap();
    assert!(env.channel.bill(yesterday).await.unwrap().rows.is_empty());
}

// ----------------------------------------------------------------------------------------
// Interop (interop/stripe/check.py): the official `stripe` package, both ways.
// ----------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the SDK interop environment: bash interop/setup-stripe.sh"]
async fn interop_with_the_official_stripe_package() {
    let python = interop_python("stripe", "setup-stripe.sh");
    let script = workspace_root().join("interop/stripe/check.py");
    let env = start().await;
    let now = support::now_secs();

    // kami -> stripe: headers the simulator signs, and the form kami posts.
    let req = env.request(money(1230, Currency::Cny));
    let form = env.channel.session_form_for(&req, now);
    let (_, id) = env.create(&req).await;
    let body = env
        .sim
        .event_body(&id, "checkout.session.completed")
        .unwrap();
    let header = env.sim.sign(body.as_bytes(), now);
    let dir = std::env::temp_dir().join(format!("kami-stripe-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.json");
    let output = dir.join("out.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "secret": WHSEC,
            "now": now,
            "kami_signed": [{"payload": body, "header": header}],
            "kami_form": support::pairs_json(&form),
            "params": {
                "mode": "payment",
                "payment_method_types": ["card"],
                "line_items": [{"price_data": {"currency": "cny", "unit_amount": 1230,
                    "product_data": {"name": "VIP 月卡"}}, "quantity": 1}],
                "success_url": req.return_url, "cancel_url": req.return_url,
                "client_reference_id": req.trade_no.as_str(),
                "metadata": {"trade_no": req.trade_no.as_str()},
                "payment_intent_data": {"metadata": {"trade_no": req.trade_no.as_str()}},
                "expires_at": form.iter().find(|(k, _)| k == "expires_at").unwrap().1.parse::<i64>().unwrap(),
            },
            "event": body,
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // stripe -> kami: headers stripe-python generated must verify with kami's channel.
    let produced: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let signed = produced["signed"].as_array().unwrap();
    assert!(!signed.is_empty());
    for s in signed {
        let payload = s["payload"].as_str().unwrap();
        let header = s["header"].as_str().unwrap();
        let expect_ok = s["valid"].as_bool().unwrap();
        let raw = kami_pay::RawNotification {
            method: "POST".into(),
            query: String::new(),
            headers: vec![("stripe-signature".into(), header.into())],
            body: payload.as_bytes().to_vec(),
        };
        let r = env.channel.verify_notification_at(&raw, now);
        assert_eq!(r.is_ok(), expect_ok, "{} {header}: {r:?}", s["label"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
