//! WeChat inside WeChat, simulated: the Official Account OAuth hop and the wallet's
//! `WeixinJSBridge` (module doc of [`kami_pay::wechatpay::jsapi`] has the protocol).
//!
//! - `GET /sim/wechatpay/open/connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope=snsapi_base&state`
//!   (WeChat's browser only): silently redirects to `redirect_uri` with `code` (single use,
//!   five minutes) and `state`. The WeChat user is the browser's `sim_wx_user` cookie (made
//!   on first visit), so two browsers are two users; the openid is per (user, appid).
//! - `GET /sim/wechatpay/sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`:
//!   `{"access_token","expires_in","refresh_token","openid","scope"}`, or WeChat's errors
//!   with HTTP 200: 40013 invalid appid, 40125 invalid appsecret, 40029 invalid code, 40163
//!   code been used, 40002 invalid grant_type.
//! - `GET /sim/wechatpay/jsapi/bridge.js`: a stand-in `WeixinJSBridge` for pages the shop
//!   serves in the demo and tests only. `invoke('getBrandWCPayRequest', params, cb)` shows a
//!   small sheet (Pay / Cancel); Pay posts the parameters to
//! - `POST /sim/wechatpay/jsapi/pay[?notify=duplicate|drop|...]`: the wallet's checks — the
//!   `appId` is this account's, `signType` is `RSA`, the `package` names a prepay id, the
//!   `paySign` verifies with the merchant's public key over `appId\ntimeStamp\nnonceStr\npackage\n`,
//!   and the browser's WeChat user is the trade's `payer.openid` — then pays the trade (the
//!   signed notification follows) and answers `{"err_msg":"get_brand_wcpay_request:ok"}`;
//!   any refusal is `{"err_msg":"get_brand_wcpay_request:fail","err_desc":…}`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kami_pay::crypto::RsaHash;
use kami_pay::wechatpay::jsapi::jsapi_message;
use kami_pay::JsApiParams;
use serde_json::json;

use super::{random_alnum, NotifyMode, PayOptions, WechatSim, PREFIX};
use crate::common::html::{self, web_url, Look};

const LOOK: Look = Look {
    site: "WeChat simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}",
    footer: "kami WeChat simulator — test sign-in only.",
};

/// The browser's simulated WeChat user.
pub const USER_COOKIE: &str = "sim_wx_user";
/// How long an OAuth code works (seconds).
const CODE_TTL_SECS: i64 = 300;

#[derive(Debug)]
struct Code {
    openid: String,
    issued_at: i64,
    used: bool,
}

/// The OAuth side's memory: codes handed out and the openids of this account's users.
#[derive(Debug, Default)]
pub(super) struct OAuthState {
    codes: HashMap<String, Code>,
    openids: HashSet<String>,
    exchanges: u32,
}

impl OAuthState {
    /// Whether `openid` is a user of this account (seen by the authorize page).
    pub(super) fn issued(&self, openid: &str) -> bool {
        self.openids.contains(openid)
    }
}

pub(super) fn routes() -> Router<Arc<WechatSim>> {
    let p = |s: &str| format!("{PREFIX}{s}");
    Router::new()
        .route(&p("/open/connect/oauth2/authorize"), get(authorize))
        .route(&p("/sns/oauth2/access_token"), get(access_token))
        .route(&p("/jsapi/bridge.js"), get(bridge_js))
        .route(&p("/jsapi/pay"), post(bridge_pay))
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl WechatSim {
    /// The openid of simulated WeChat user `user` for this account: 28 characters, stable.
    pub fn openid_for_user(&self, user: &str) -> String {
        // Any stable derivation will do: md5 here is a name, not a protection.
        let h = kami_pay::crypto::md5_hex(format!("{}/{user}", self.cfg.appid).as_bytes());
        format!("o{}", &h[..27])
    }

    /// What the authorize page does for `user`: a fresh code for `redirect_uri` (tests drive
    /// it without a browser too).
    pub fn oauth_code_for(&self, user: &str) -> String {
        let openid = self.openid_for_user(user);
        let code = random_alnum(32);
        let mut inner = self.lock();
        inner.oauth.openids.insert(openid.clone());
        inner.oauth.codes.insert(
            code.clone(),
            Code {
                openid,
                issued_at: self.clock.now_secs(),
                used: false,
            },
        );
        code
    }

    /// How many access_token calls came in (accepted or not).
    pub fn oauth_exchanges(&self) -> u32 {
        self.lock().oauth.exchanges
    }

    /// The `payer.openid` of a JSAPI trade.
    pub fn trade_openid(&self, out_trade_no: &str) -> Option<String> {
        self.lock()
            .trades
            .get(out_trade_no)
            .and_then(|t| t.payer_openid.clone())
    }

    fn exchange(&self, q: &HashMap<String, String>) -> serde_json::Value {
        let err = |code: i64, msg: &str| json!({"errcode": code, "errmsg": msg});
        let mut inner = self.lock();
        inner.oauth.exchanges += 1;
        if q.get("appid").map(String::as_str) != Some(self.cfg.appid.as_str()) {
            return err(40013, "invalid appid");
        }
        let secret_ok = q
            .get("secret")
            .is_some_and(|s| kami_pay::crypto::ct_eq(s.as_bytes(), self.cfg.appsecret.as_bytes()));
        if !secret_ok {
            return err(40125, "invalid appsecret");
        }
        if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return err(40002, "invalid grant_type");
        }
        let now = self.clock.now_secs();
        let Some(c) = q.get("code").and_then(|c| inner.oauth.codes.get_mut(c)) else {
            return err(40029, "invalid code");
        };
        if c.used {
            return err(40163, "code been used");
        }
        if now - c.issued_at > CODE_TTL_SECS {
            return err(40029, "invalid code");
        }
        c.used = true;
        json!({
            "access_token": random_alnum(64),
            "expires_in": 7200,
            "refresh_token": random_alnum(64),
            "openid": c.openid,
            "scope": "snsapi_base",
        })
    }

    /// The wallet's checks of `getBrandWCPayRequest` for WeChat user `user`, then the
    /// payment. Returns the `transaction_id`.
    pub fn jsapi_pay(
        self: &Arc<Self>,
        params: &JsApiParams,
        user: &str,
        notify: NotifyMode,
    ) -> Result<String, String> {
        if params.app_id != self.cfg.appid {
            return Err("appId is not this account's".into());
        }
        if params.sign_type != "RSA" {
            return Err("signType must be RSA".into());
        }
        let message = jsapi_message(
            &params.app_id,
            &params.time_stamp,
            &params.nonce_str,
            &params.package,
        );
        if !self.cfg.merchant_public_key.verify_base64(
            RsaHash::Sha256,
            message.as_bytes(),
            &params.pay_sign,
        ) {
            return Err("支付验证签名失败 (paySign does not verify)".into());
        }
        let prepay = params
            .package
            .strip_prefix("prepay_id=")
            .ok_or("package must be prepay_id=…")?;
        let (trade_no, openid) = {
            let inner = self.lock();
            let no = inner.tokens.get(prepay).ok_or("unknown prepay_id")?.clone();
            let openid = inner
                .trades
                .get(&no)
                .and_then(|t| t.payer_openid.clone())
                .ok_or("not a JSAPI trade")?;
            (no, openid)
        };
        if openid != self.openid_for_user(user) {
            return Err(
                "当前微信用户与下单用户不一致 (another WeChat user placed this order)".into(),
            );
        }
        let opts = PayOptions {
            notify,
            ..PayOptions::default()
        };
        self.pay(&trade_no, opts).map_err(|e| e.to_string())
    }
}

async fn authorize(
    State(sim): State<Arc<WechatSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let refuse = |m: &str| html::message(StatusCode::BAD_REQUEST, &LOOK, "OAuth refused", m, None);
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ua.contains("MicroMessenger") {
        return refuse("请在微信客户端打开链接 (open this link inside WeChat)");
    }
    let q = query_map(q.as_deref());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appid") != sim.cfg.appid {
        return refuse("appid 参数错误 (10002: unknown appid)");
    }
    if get("response_type") != "code" {
        return refuse("response_type must be code");
    }
    if !matches!(get("scope"), "snsapi_base" | "snsapi_userinfo") {
        return refuse("scope 参数错误 (10005)");
    }
    let Some(redirect) = web_url(get("redirect_uri")) else {
        return refuse("redirect_uri 参数错误 (10003)");
    };
    let (user, new_user) = match cookie(&headers, USER_COOKIE) {
        Some(u) => (u, false),
        None => (random_alnum(16), true),
    };
    let code = sim.oauth_code_for(&user);
    let mut back = format!(
        "{redirect}{}code={code}",
        if redirect.contains('?') { '&' } else { '?' }
    );
    if q.contains_key("state") {
        if let Ok(pair) = serde_urlencoded::to_string([("state", get("state"))]) {
            back.push('&');
            back.push_str(&pair);
        }
    }
    let mut resp = (StatusCode::FOUND, [(header::LOCATION, back)]).into_response();
    if new_user {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{USER_COOKIE}={user}; Path=/; Max-Age=31536000; SameSite=Lax"
        )) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn access_token(State(sim): State<Arc<WechatSim>>, RawQuery(q): RawQuery) -> Response {
    Json(sim.exchange(&query_map(q.as_deref()))).into_response()
}

async fn bridge_pay(
    State(sim): State<Arc<WechatSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let fail = |m: &str| {
        Json(json!({"err_msg": "get_brand_wcpay_request:fail", "err_desc": m})).into_response()
    };
    let Ok(params) = serde_json::from_slice::<JsApiParams>(&body) else {
        return fail("the parameters are incomplete");
    };
    let Some(user) = cookie(&headers, USER_COOKIE) else {
        return fail("no WeChat user in this browser");
    };
    let q = query_map(q.as_deref());
    let notify = q
        .get("notify")
        .and_then(|m| {
            NotifyMode::parse(
                m,
                std::time::Duration::ZERO,
                &["normal", "drop", "duplicate", "hold"],
            )
        })
        .unwrap_or(NotifyMode::Normal);
    match sim.jsapi_pay(&params, &user, notify) {
        Ok(_) => Json(json!({"err_msg": "get_brand_wcpay_request:ok"})).into_response(),
        Err(m) => fail(&m),
    }
}

async fn bridge_js() -> Response {
    let mut resp = BRIDGE_JS.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The stand-in bridge (served on the shop's own origin in the demo, so `script-src 'self'`
/// and `connect-src 'self'` allow it).
const BRIDGE_JS: &str = r#"// kami WeChat simulator: a stand-in for WeChat's WeixinJSBridge (demo and tests only).
(function () {
  'use strict';
  if (window.WeixinJSBridge) return;
  var PAY_URL = '/sim/wechatpay/jsapi/pay';
  function sheet(params, cb) {
    var old = document.querySelector('[data-testid="wx-bridge"]');
    if (old) old.remove();
    var box = document.createElement('div');
    box.setAttribute('data-testid', 'wx-bridge');
    box.setAttribute('role', 'dialog');
    box.className = 'wx-bridge';
    var title = document.createElement('p');
    title.textContent = 'WeChat Pay (simulator): confirm the payment';
    var pay = document.createElement('button');
    pay.type = 'button';
    pay.textContent = 'Pay';
    var cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.textContent = 'Cancel';
    var done = function (res) { box.remove(); if (cb) cb(res); };
    pay.addEventListener('click', function () {
      pay.disabled = true;
      fetch(PAY_URL, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(params),
      })
        .then(function (r) { return r.json(); })
        .then(done, function (e) {
          done({ err_msg: 'get_brand_wcpay_request:fail', err_desc: String(e) });
        });
    });
    cancel.addEventListener('click', function () {
      done({ err_msg: 'get_brand_wcpay_request:cancel' });
    });
    box.appendChild(title);
    box.appendChild(pay);
    box.appendChild(cancel);
    document.body.appendChild(box);
  }
  window.WeixinJSBridge = {
    invoke: function (name, params, cb) {
      if (name !== 'getBrandWCPayRequest') {
        if (cb) cb({ err_msg: name + ':fail', err_desc: 'not simulated' });
        return;
      }
      sheet(params || {}, cb);
    },
  };
  var ready = function () { document.dispatchEvent(new Event('WeixinJSBridgeReady')); };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', ready);
  } else {
    ready();
  }
})();
"#;
