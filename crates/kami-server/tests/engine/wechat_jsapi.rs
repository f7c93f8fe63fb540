//! WeChat Pay JSAPI inside WeChat, through the simulator and the real server: the order's
//! payment is first the OAuth hop, the return exchanges the code for the buyer's openid and
//! creates the JSAPI payment, the wallet (the simulator's bridge checks) pays, the signed
//! notification delivers — once, however often it comes. Forged or replayed returns, another
//! WeChat user, tampered bridge parameters and expiry change nothing.

use std::sync::Arc;

use kami_pay::JsApiParams;
use kami_testkit::both_backends;
use kami_testkit::kami_sim::gateways::Gateways;
use kami_testkit::kami_sim::wechatpay::NotifyMode;
use kami_testkit::{Backend, TestApp};
use serde_json::Value;

const UA_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN";

/// A WeChat browser: WeChat's user agent, no automatic redirects, the simulated WeChat user.
struct Buyer {
    http: reqwest::Client,
    user: &'static str,
}

impl Buyer {
    fn new(user: &'static str) -> Buyer {
        Buyer {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(UA_WECHAT)
                .build()
                .unwrap(),
            user,
        }
    }

    /// GET `url` with the WeChat user's cookie: (status, Location).
    async fn get(&self, url: &str) -> (u16, String) {
        self.send(self.http.get(url)).await
    }

    /// POST the form `body` to `url` with the WeChat user's cookie: (status, Location).
    async fn post_form(&self, url: &str, body: String) -> (u16, String) {
        let req = self.http.post(url);
        let req = req.header("content-type", "application/x-www-form-urlencoded");
        self.send(req.body(body)).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, String) {
        let cookie = format!("sim_wx_user={}", self.user);
        let r = req.header("cookie", cookie).send().await.unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status().as_u16(), loc)
    }
}

/// An order placed from WeChat's browser: its `payment` is the OAuth hop.
async fn order_in_wechat(app: &TestApp, slug: &str) -> Value {
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("user-agent", UA_WECHAT)
        .json(&serde_json::json!({"product": slug, "quantity": 1,
                                   "email": "buyer@example.com", "method": "wxpay"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["payment"]["action"], "redirect", "{v}");
    assert_eq!(v["payment"]["channel"], "wechat-sim", "{v}");
    let url = v["payment"]["url"].as_str().unwrap();
    assert!(
        url.contains("/sim/wechatpay/open/connect/oauth2/authorize?appid=")
            && url.contains("&scope=snsapi_base&state=")
            && url.ends_with("#wechat_redirect"),
        "{url}"
    );
    v
}

/// Authorize page → the shop's return URL (with `code` and `state`).
async fn sign_in(buyer: &Buyer, order: &Value) -> String {
    let url = order["payment"]["url"].as_str().unwrap();
    let (s, back) = buyer.get(url.split('#').next().unwrap()).await;
    assert_eq!(s, 302, "authorize: {back}");
    assert!(back.contains("/pay/return/wechat-sim?order_no="), "{back}");
    assert!(
        back.contains("&code=") && back.contains("&state="),
        "{back}"
    );
    back
}

/// The bridge parameters the order carries once prepared.
async fn jsapi_params(app: &TestApp, order: &Value) -> Option<JsApiParams> {
    let (s, v) = app
        .read_order(
            order["order_no"].as_str().unwrap(),
            order["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    (v["payment"]["action"] == "jsapi")
        .then(|| serde_json::from_value(v["payment"]["jsapi"].clone()).unwrap())
}

async fn prepared(app: &TestApp, gw: &Arc<Gateways>, buyer: &Buyer, order: &Value) -> JsApiParams {
    let back = sign_in(buyer, order).await;
    let before = gw.wechatpay.oauth_exchanges();
    let (s, loc) = buyer.get(&back).await;
    assert_eq!(s, 303, "return: {loc}");
    assert_eq!(
        loc,
        format!("/orders/{}", order["order_no"].as_str().unwrap())
    );
    assert_eq!(gw.wechatpay.oauth_exchanges(), before + 1);
    jsapi_params(app, order).await.expect("the JSAPI payment")
}

async fn jsapi_purchase_inside_wechat(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("wx", 1230, "auto").await;
    app.import_keys("wx", 5).await;
    let alice = Buyer::new("alice");
    let order = order_in_wechat(&app, "wx").await;
    let no = order["order_no"].as_str().unwrap();
    let back = sign_in(&alice, &order).await;
    // Before the return nothing exists at WeChat yet.
    assert_eq!(gw.wechatpay.trade_state(no), "NOT_FOUND");
    let (s, _) = alice.get(&back).await;
    assert_eq!(s, 303);
    let params = jsapi_params(&app, &order).await.expect("prepared");
    assert_eq!(params.sign_type, "RSA");
    assert!(params.package.starts_with("prepay_id=wx"), "{params:?}");
    // The trade is alice's, and its paySign verifies against the merchant key.
    assert_eq!(
        gw.wechatpay.trade_openid(no),
        Some(gw.wechatpay.openid_for_user("alice"))
    );

    // Replays of the return: the same code and state, then a fresh code (another user) with
    // the same state: refused before any exchange, the payment unchanged.
    let exchanges = gw.wechatpay.oauth_exchanges();
    let (s, loc) = alice.get(&back).await;
    assert_eq!((s, loc.as_str()), (303, format!("/orders/{no}").as_str()));
    let state = back.split("&state=").nth(1).unwrap().to_owned();
    let fresh = gw.wechatpay.oauth_code_for("bob");
    let replay = format!(
        "{}/pay/return/wechat-sim?order_no={no}&code={fresh}&state={state}",
        app.base
    );
    let (s, _) = Buyer::new("bob").get(&replay).await;
    assert_eq!(s, 303);
    assert_eq!(gw.wechatpay.oauth_exchanges(), exchanges);
    assert_eq!(jsapi_params(&app, &order).await, Some(params.clone()));

    // The wallet refuses another WeChat user and tampered parameters.
    let pay = |p: &JsApiParams, user: &str| gw.wechatpay.jsapi_pay(p, user, NotifyMode::Duplicate);
    assert!(pay(&params, "mallory")
        .unwrap_err()
        .contains("another WeChat user"));
    let mut t = params.clone();
    t.time_stamp = (t.time_stamp.parse::<i64>().unwrap() + 1).to_string();
    assert!(pay(&t, "alice").unwrap_err().contains("paySign"));
    let mut t = params.clone();
    t.app_id = "wx0000000000000009".into();
    assert!(pay(&t, "alice").unwrap_err().contains("appId"));
    let mut t = params.clone();
    t.sign_type = "MD5".into();
    assert!(pay(&t, "alice").is_err());
    assert_eq!(gw.wechatpay.trade_state(no), "NOTPAY");

    // Alice pays; the notification comes twice at once: delivered exactly once.
    pay(&params, "alice").unwrap();
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    assert!(v.get("payment").is_none(), "{v}");
    // The simulator records its delivery once kami's answers are in.
    let mut stats = gw.wechatpay.notify_stats(no).unwrap();
    for _ in 0..100 {
        if stats.delivered && stats.attempts >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stats = gw.wechatpay.notify_stats(no).unwrap();
    }
    assert!(stats.delivered && stats.attempts >= 2, "{stats:?}");
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(app.stock("wx").await, serde_json::json!(4));
    // Paying again is idempotent at the wallet; nothing more is delivered.
    pay(&params, "alice").unwrap();
    let admin = app.admin_order(no).await;
    assert_eq!(admin["status"], "delivered");

    // A return after the order was paid changes nothing.
    let (s, _) = alice.get(&back).await;
    assert_eq!(s, 303);
    assert_eq!(gw.wechatpay.oauth_exchanges(), exchanges);
}
both_backends!(jsapi_purchase_inside_wechat);

/// A state the shop did not make (altered, or another order's) is refused before WeChat is
/// asked; so is a return naming an order the state is not for.
async fn forged_oauth_returns_are_refused(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("wx", 500, "auto").await;
    app.import_keys("wx", 5).await;
    let alice = Buyer::new("alice");
    let a = order_in_wechat(&app, "wx").await;
    let b = order_in_wechat(&app, "wx").await;
    let back_a = sign_in(&alice, &a).await;
    let exchanges = gw.wechatpay.oauth_exchanges();
    let no_a = a["order_no"].as_str().unwrap();
    let no_b = b["order_no"].as_str().unwrap();
    // One MAC character flipped.
    let (head, state) = back_a.split_once("&state=").unwrap();
    let flipped = format!(
        "{}{}",
        if state.starts_with('0') { '1' } else { '0' },
        &state[1..]
    );
    let (s, _) = alice.get(&format!("{head}&state={flipped}")).await;
    assert_eq!(s, 422);
    // A's state presented as B's return: bound to A's trade, refused for B.
    let (s, _) = alice.get(&back_a.replace(no_a, no_b)).await;
    assert_eq!(s, 422);
    // An unknown code with A's real state: WeChat refuses it (40029), nothing is created.
    let (s, _) = alice
        .get(&format!(
            "{}/pay/return/wechat-sim?order_no={no_a}&code=NOPE&state={state}",
            app.base
        ))
        .await;
    assert_eq!(s, 422);
    assert_eq!(gw.wechatpay.oauth_exchanges(), exchanges + 1);
    assert_eq!(jsapi_params(&app, &a).await, None);
    assert_eq!(jsapi_params(&app, &b).await, None);
    assert_eq!(gw.wechatpay.trade_state(no_a), "NOT_FOUND");
    // The real return still works once.
    let (s, _) = alice.get(&back_a).await;
    assert_eq!(s, 303);
    assert!(jsapi_params(&app, &a).await.is_some());
    // And its code cannot be used again even for a fresh prepare (40163 at WeChat).
    let (s, _) = alice.get(&back_a).await;
    assert_eq!(s, 303, "a reload of the return shows the order");
    // A plain return (no state) is the ordinary browser return.
    let (s, loc) = alice
        .get(&format!(
            "{}/pay/return/wechat-sim?order_no={no_b}",
            app.base
        ))
        .await;
    assert_eq!((s, loc), (303, format!("/orders/{no_b}")));
}
both_backends!(forged_oauth_returns_are_refused);

/// Unpaid JSAPI orders expire like any other (closed at WeChat first), prepared or not; the
/// wallet cannot pay a closed trade, and a sign-in after the deadline is refused.
async fn jsapi_orders_expire(backend: Backend) {
    let (app, gw) =
        TestApp::spawn_gateways_keeping(backend, "[orders]\nexpire_seconds = 6\n").await;
    app.create_product("wx", 500, "auto").await;
    app.import_keys("wx", 5).await;
    let alice = Buyer::new("alice");
    let prepared_order = order_in_wechat(&app, "wx").await;
    let params = prepared(&app, &gw, &alice, &prepared_order).await;
    let never_back = order_in_wechat(&app, "wx").await;
    let late = order_in_wechat(&app, "wx").await;
    let late_back = sign_in(&alice, &late).await;
    for o in [&prepared_order, &never_back, &late] {
        assert_eq!(app.wait_settled_for(o, 40).await["status"], "expired");
    }
    let no = prepared_order["order_no"].as_str().unwrap();
    assert_eq!(gw.wechatpay.trade_state(no), "CLOSED");
    assert!(gw
        .wechatpay
        .jsapi_pay(&params, "alice", NotifyMode::Normal)
        .is_err());
    let exchanges = gw.wechatpay.oauth_exchanges();
    let (s, _) = alice.get(&late_back).await;
    assert!(s == 303 || s == 422, "{s}");
    assert_eq!(gw.wechatpay.oauth_exchanges(), exchanges);
    assert_eq!(jsapi_params(&app, &late).await, None);
    assert_eq!(app.stock("wx").await, serde_json::json!(5));
}
both_backends!(jsapi_orders_expire);

/// Inside WeChat, switching a pending order to WeChat Pay goes straight to the sign-in (as a
/// new order does), and its return prepares the JSAPI payment of the new attempt.
async fn switching_to_wechat_pay_inside_wechat_goes_to_sign_in(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("wx-switch", 1230, "auto").await;
    app.import_keys("wx-switch", 5).await;
    let first = app.order_via("wx-switch", "alipay", "mobile").await;
    let no = first["order_no"].as_str().unwrap();
    let token = first["access_token"].as_str().unwrap();
    let alice = Buyer::new("alice");
    let (status, location) = alice
        .post_form(
            &app.url(&format!("/orders/{no}/switch")),
            format!("t={token}&method=wxpay"),
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        location.contains("/sim/wechatpay/open/connect/oauth2/authorize?appid=")
            && location.contains("&scope=snsapi_base&state="),
        "straight to the sign-in, not the order page: {location}"
    );
    let order = serde_json::json!({"order_no": no, "access_token": token,
                                   "payment": {"url": location}});
    let params = prepared(&app, &gw, &alice, &order).await;
    assert!(params.package.starts_with("prepay_id=wx"), "{params:?}");
    // The JSAPI trade is the switch's attempt, alice's.
    let trade = format!("{no}A2");
    assert_eq!(
        gw.wechatpay.trade_openid(&trade),
        Some(gw.wechatpay.openid_for_user("alice"))
    );
}
both_backends!(switching_to_wechat_pay_inside_wechat_goes_to_sign_in);
