//! WeChat Pay inside WeChat (JSAPI): the OAuth `snsapi_base` hop that names the buyer
//! (`openid`), the `state` that binds that hop to one trade, and the `paySign` of the
//! parameters the page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', …)` (B.4).
//!
//! OAuth (WeChat Official Accounts, 网页授权):
//! `GET {oauth_base}/connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=code&scope=snsapi_base&state=…#wechat_redirect`
//! (WeChat insists on this parameter order) sends the browser back to `redirect_uri` with
//! `code` and `state`; `GET {sns_api_base}/sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`
//! answers `{"access_token","expires_in","refresh_token","openid","scope"}` or, still with
//! HTTP 200, `{"errcode":40029,"errmsg":"invalid code"}`. A code works once, for five
//! minutes. `is_snapshotuser: 1` is WeChat's "snapshot page" visitor, who cannot pay.
//!
//! `state` (WeChat allows `[a-zA-Z0-9]`, at most 128 bytes) is
//! `HEX32(mac) ‖ expiry (10 digits, unix seconds) ‖ trade_no`, where `mac` is the first
//! 16 bytes of HMAC-SHA256 keyed by HMAC-SHA256(appsecret, [`STATE_KEY_LABEL`]) over
//! `channel_id \n expiry \n trade_no`: nobody without the appsecret can make one, and one
//! names one trade of one channel until that trade's expiry.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::wire::clip;
use crate::common::settings::Secret;
use crate::crypto::{ct_eq, KeyError, RsaHash, RsaSigner};
use crate::{JsApiParams, PayError, PayerReturn};

type HmacSha256 = Hmac<Sha256>;

/// Production host of the OAuth authorize page.
pub const DEFAULT_OAUTH_BASE: &str = "https://open.weixin.qq.com";
/// Production host of the `sns` API (code → openid).
pub const DEFAULT_SNS_API_BASE: &str = "https://api.weixin.qq.com";
/// What derives the `state` key from the appsecret (so the key is not the secret itself).
pub const STATE_KEY_LABEL: &[u8] = b"kami/wechatpay/oauth-state/v1";
/// `signType` of API v3 JSAPI payments.
pub const JSAPI_SIGN_TYPE: &str = "RSA";
/// Hex characters of the `state` MAC (16 bytes).
const MAC_HEX: usize = 32;
/// Digits of the `state` expiry.
const EXP_DIGITS: usize = 10;

/// What a channel needs for JSAPI: the Official Account's appsecret (DESIGN 4.2
/// `appsecret_file`) and where WeChat's OAuth lives (the simulator in the demo).
#[derive(Clone)]
pub struct JsapiConfig {
    pub appsecret: Secret,
    /// Default [`DEFAULT_OAUTH_BASE`].
    pub oauth_base: String,
    /// Default [`DEFAULT_SNS_API_BASE`].
    pub sns_api_base: String,
}

impl std::fmt::Debug for JsapiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsapiConfig")
            .field("appsecret", &"<redacted>")
            .field("oauth_base", &self.oauth_base)
            .field("sns_api_base", &self.sns_api_base)
            .finish()
    }
}

/// The JSAPI `paySign` message: `appId\ntimeStamp\nnonceStr\npackage\n` (B.4).
pub fn jsapi_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// The bridge parameters of a prepay id, `paySign` signed with the merchant key.
pub fn jsapi_params(
    signer: &RsaSigner,
    app_id: &str,
    prepay_id: &str,
    time_stamp: i64,
    nonce_str: &str,
) -> Result<JsApiParams, KeyError> {
    let time_stamp = time_stamp.to_string();
    let package = format!("prepay_id={prepay_id}");
    let message = jsapi_message(app_id, &time_stamp, nonce_str, &package);
    let pay_sign = signer.sign_base64(RsaHash::Sha256, message.as_bytes())?;
    Ok(JsApiParams {
        app_id: app_id.to_owned(),
        time_stamp,
        nonce_str: nonce_str.to_owned(),
        package,
        sign_type: JSAPI_SIGN_TYPE.to_owned(),
        pay_sign,
    })
}

/// The key `state` MACs are made with.
fn state_key(appsecret: &Secret) -> Option<HmacSha256> {
    let mut derive = <HmacSha256 as Mac>::new_from_slice(appsecret.expose().as_bytes()).ok()?;
    derive.update(STATE_KEY_LABEL);
    let key = derive.finalize().into_bytes();
    <HmacSha256 as Mac>::new_from_slice(&key).ok()
}

fn state_mac(appsecret: &Secret, channel_id: &str, expiry: &str, trade_no: &str) -> Option<String> {
    let mut mac = state_key(appsecret)?;
    mac.update(channel_id.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    mac.update(b"\n");
    mac.update(trade_no.as_bytes());
    let tag = mac.finalize().into_bytes();
    Some(hex::encode(&tag[..MAC_HEX / 2]))
}

/// The `state` of one trade's OAuth hop, valid until `expiry` (unix seconds).
pub fn make_state(
    appsecret: &Secret,
    channel_id: &str,
    trade_no: &str,
    expiry: i64,
) -> Result<String, PayError> {
    let bad = || PayError::Malformed("cannot make the OAuth state".into());
    if !(0..10_000_000_000).contains(&expiry)
        || trade_no.is_empty()
        || !trade_no.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(bad());
    }
    let expiry = format!("{expiry:0EXP_DIGITS$}");
    let mac = state_mac(appsecret, channel_id, &expiry, trade_no).ok_or_else(bad)?;
    let state = format!("{mac}{expiry}{trade_no}");
    if state.len() > 128 {
        return Err(bad());
    }
    Ok(state)
}

/// Why a `state` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Not of the form kami makes.
    Malformed,
    /// The MAC does not match: forged, altered, or another channel's.
    Forged,
    /// Authentic but past its trade's expiry.
    Expired,
}

/// The trade a `state` names, if it is authentic and `now` (unix seconds) is not past it.
pub fn verify_state(
    appsecret: &Secret,
    channel_id: &str,
    state: &str,
    now: i64,
) -> Result<String, StateRefusal> {
    if state.len() <= MAC_HEX + EXP_DIGITS
        || state.len() > 128
        || !state.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(StateRefusal::Malformed);
    }
    let (mac, rest) = state.split_at(MAC_HEX);
    let (expiry, trade_no) = rest.split_at(EXP_DIGITS);
    if !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StateRefusal::Malformed);
    }
    let want = state_mac(appsecret, channel_id, expiry, trade_no).ok_or(StateRefusal::Forged)?;
    if !ct_eq(want.as_bytes(), mac.as_bytes()) {
        return Err(StateRefusal::Forged);
    }
    let expiry: i64 = expiry.parse().map_err(|_| StateRefusal::Malformed)?;
    if now > expiry {
        return Err(StateRefusal::Expired);
    }
    Ok(trade_no.to_owned())
}

/// The OAuth authorize URL (parameters in the order WeChat requires).
pub fn authorize_url(oauth_base: &str, appid: &str, redirect_uri: &str, state: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
        oauth_base.trim_end_matches('/'),
        enc(appid),
        enc(redirect_uri),
        enc(state),
    )
}

/// Read a return query: `None` without `state` (an ordinary return); otherwise the verified
/// trade and its code.
pub fn read_return(
    appsecret: &Secret,
    channel_id: &str,
    query: &str,
    now: i64,
) -> Result<Option<PayerReturn>, PayError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| PayError::Malformed("return query is not a form".into()))?;
    let one = |name: &str| -> Result<Option<&str>, PayError> {
        let mut it = params.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(PayError::Malformed(format!("duplicate {name}")));
        }
        Ok(first)
    };
    let Some(state) = one("state")? else {
        return Ok(None);
    };
    let trade_no = match verify_state(appsecret, channel_id, state, now) {
        Ok(t) => t,
        Err(StateRefusal::Expired) => return Err(PayError::Stale),
        Err(StateRefusal::Forged | StateRefusal::Malformed) => return Err(PayError::BadSignature),
    };
    // snsapi_base asks nothing, but a buyer can still back out: then there is no code.
    let code = one("code")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| PayError::Malformed("WeChat sent no code back".into()))?;
    if code.len() > 512 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PayError::Malformed(
            "the OAuth code is not plain text".into(),
        ));
    }
    Ok(Some(PayerReturn {
        trade_no,
        code: code.to_owned(),
    }))
}

/// The answer of `sns/oauth2/access_token` (errors keep HTTP 200 and carry `errcode`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    is_snapshotuser: Option<i64>,
}

/// `openid` rule: WeChat's are 28 characters of `[A-Za-z0-9_-]`; allow up to 128.
pub fn valid_openid(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The openid of a token answer; the access token itself is not kept.
pub fn openid_of(body: &[u8]) -> Result<String, PayError> {
    let a: TokenAnswer = serde_json::from_slice(body)
        .map_err(|_| PayError::Malformed("access_token answer is not JSON".into()))?;
    if let Some(code) = a.errcode.filter(|c| *c != 0) {
        return Err(PayError::Gateway {
            code: code.to_string(),
            message: clip(a.errmsg.as_deref().unwrap_or("")),
        });
    }
    if a.is_snapshotuser == Some(1) {
        return Err(PayError::Gateway {
            code: "SNAPSHOT_USER".into(),
            message: "the buyer views a snapshot page and cannot pay there".into(),
        });
    }
    a.openid
        .filter(|o| valid_openid(o))
        .ok_or_else(|| PayError::Malformed("access_token answer has no valid openid".into()))
}

/// The access_token URL of a code (it holds the appsecret: never logged, never in errors).
pub fn access_token_url(
    sns_api_base: &str,
    appid: &str,
    appsecret: &Secret,
    code: &str,
) -> Result<url::Url, PayError> {
    let mut u = url::Url::parse(&format!(
        "{}/sns/oauth2/access_token",
        sns_api_base.trim_end_matches('/')
    ))
    .map_err(|_| PayError::Config("wechatpay: sns_api_base is not a URL".into()))?;
    u.query_pairs_mut()
        .append_pair("appid", appid)
        .append_pair("secret", appsecret.expose())
        .append_pair("code", code)
        .append_pair("grant_type", "authorization_code");
    Ok(u)
}
