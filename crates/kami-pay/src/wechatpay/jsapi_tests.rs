//! JSAPI: the W5 vector through [`jsapi::jsapi_params`], paySign with a key made at run time
//! checked against an independent computation, the OAuth `state` (forgery, other trades and
//! channels, expiry), the return query and the access_token answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::jsapi::*;
use super::tests::jsapi_config;
use super::vectors::*;
use super::*;
use crate::common::settings::Secret;
use crate::crypto::RsaHash;
use kami_core::{ManualClock, Money, OrderNo, TradeNo};
use std::sync::Arc;

const W5_APPID: &str = "wxd678efh567hg6787";
const W5_PREPAY: &str = "wx201410272009395522657a690389285100";

fn k2_signer() -> RsaSigner {
    RsaSigner::from_text(&K2_TESTING_KEY.replace("TESTING KEY", "PRIVATE KEY")).unwrap()
}

#[test]
fn w5_vector_through_jsapi_params() {
    let p = jsapi_params(
        &k2_signer(),
        W5_APPID,
        W5_PREPAY,
        1414561699,
        "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    .unwrap();
    assert_eq!(p.app_id, W5_APPID);
    assert_eq!(p.time_stamp, "1414561699");
    assert_eq!(p.package, format!("prepay_id={W5_PREPAY}"));
    assert_eq!(p.sign_type, "RSA");
    assert_eq!(p.pay_sign, W5_SIG);
    // The bridge's own names, exactly.
    let v = serde_json::to_value(&p).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "appId",
            "nonceStr",
            "package",
            "paySign",
            "signType",
            "timeStamp"
        ]
    );
}

#[test]
fn pay_sign_with_a_fresh_key_verifies_independently() {
    let key = RsaSigner::generate().unwrap();
    let p = jsapi_params(
        &key,
        "wx0123456789abcdef",
        "wx2024PREPAY",
        1_767_225_600,
        "N0NCE",
    )
    .unwrap();
    // Built by hand, not with `jsapi_message`.
    let message = "wx0123456789abcdef\n1767225600\nN0NCE\nprepay_id=wx2024PREPAY\n";
    let verifier = key.verifier().unwrap();
    assert!(verifier.verify_base64(RsaHash::Sha256, message.as_bytes(), &p.pay_sign));
    // PKCS#1 v1.5 is deterministic: the same message signs the same.
    assert_eq!(
        key.sign_base64(RsaHash::Sha256, message.as_bytes())
            .unwrap(),
        p.pay_sign
    );
    // Any other field breaks it.
    for other in [
        "wx0123456789abcdeX\n1767225600\nN0NCE\nprepay_id=wx2024PREPAY\n",
        "wx0123456789abcdef\n1767225601\nN0NCE\nprepay_id=wx2024PREPAY\n",
        "wx0123456789abcdef\n1767225600\nN0NCE\nprepay_id=wx2024PREPAX\n",
        "wx0123456789abcdef\n1767225600\nN0NCE\nprepay_id=wx2024PREPAY",
    ] {
        assert!(!verifier.verify_base64(RsaHash::Sha256, other.as_bytes(), &p.pay_sign));
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const TRADE: &str = "K20260101000000123456789012A2";

#[test]
fn state_round_trip_and_shape() {
    let s = Secret::new(SECRET);
    let state = make_state(&s, "wx-main", TRADE, 1_767_226_500).unwrap();
    assert!(state.len() <= 128);
    assert!(state.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(state.ends_with(&format!("1767226500{TRADE}")));
    assert_eq!(
        verify_state(&s, "wx-main", &state, 1_767_226_500).as_deref(),
        Ok(TRADE)
    );
}

#[test]
fn forged_altered_and_expired_states_are_refused() {
    let s = Secret::new(SECRET);
    let now = 1_767_225_600;
    let state = make_state(&s, "wx-main", TRADE, now + 900).unwrap();
    // Another appsecret (a forger's), another channel.
    let forger = Secret::new("ffffffffffffffffffffffffffffffff");
    assert_eq!(
        verify_state(&forger, "wx-main", &state, now),
        Err(StateRefusal::Forged)
    );
    assert_eq!(
        verify_state(&s, "wx-other", &state, now),
        Err(StateRefusal::Forged)
    );
    // Moved to another trade, or given more time: the MAC no longer matches.
    let other_trade = state.replace(TRADE, "K20260101000000123456789012A3");
    assert_eq!(
        verify_state(&s, "wx-main", &other_trade, now),
        Err(StateRefusal::Forged)
    );
    let later = state.replace(&(now + 900).to_string(), &(now + 90_000).to_string());
    assert_eq!(
        verify_state(&s, "wx-main", &later, now),
        Err(StateRefusal::Forged)
    );
    // One flipped MAC character.
    let mut flipped = state.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        verify_state(&s, "wx-main", &String::from_utf8(flipped).unwrap(), now),
        Err(StateRefusal::Forged)
    );
    // Past the trade's expiry.
    assert_eq!(
        verify_state(&s, "wx-main", &state, now + 901),
        Err(StateRefusal::Expired)
    );
    for bad in [
        "",
        "abc",
        &"a".repeat(200),
        &format!("{state}!"),
        &state[..42],
    ] {
        assert_eq!(
            verify_state(&s, "wx-main", bad, now),
            Err(StateRefusal::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn the_authorize_url_has_wechats_parameter_order() {
    let u = authorize_url(
        "https://open.weixin.qq.com/",
        "wx0123456789abcdef",
        "https://shop.example/pay/return/wx?order_no=K1",
        "STATE123",
    );
    assert_eq!(
        u,
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx0123456789abcdef\
         &redirect_uri=https%3A%2F%2Fshop.example%2Fpay%2Freturn%2Fwx%3Forder_no%3DK1\
         &response_type=code&scope=snsapi_base&state=STATE123#wechat_redirect"
    );
}

#[test]
fn the_return_query() {
    let s = Secret::new(SECRET);
    let now = 1_767_225_600;
    let state = make_state(&s, "wx-main", TRADE, now + 60).unwrap();
    // An ordinary return (no state).
    assert_eq!(
        read_return(&s, "wx-main", "order_no=K1", now).unwrap(),
        None
    );
    let ok = read_return(
        &s,
        "wx-main",
        &format!("order_no=K1&code=CODE1&state={state}"),
        now,
    )
    .unwrap()
    .unwrap();
    assert_eq!(ok.trade_no, TRADE);
    assert_eq!(ok.code, "CODE1");
    // The code never shows in Debug (logs).
    assert!(!format!("{ok:?}").contains("CODE1"));
    let r = read_return(&s, "wx-main", &format!("state={state}"), now);
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
    let r = read_return(
        &s,
        "wx-main",
        &format!("code=C&state={state}&state={state}"),
        now,
    );
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
    let r = read_return(&s, "wx-main", "code=C&state=0000", now);
    assert!(matches!(r, Err(PayError::BadSignature)), "{r:?}");
    let r = read_return(&s, "wx-main", &format!("code=C&state={state}"), now + 61);
    assert!(matches!(r, Err(PayError::Stale)), "{r:?}");
}

#[test]
fn access_token_answers() {
    assert_eq!(
        openid_of(br#"{"access_token":"T","expires_in":7200,"refresh_token":"R","openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","scope":"snsapi_base"}"#).unwrap(),
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    );
    let r = openid_of(br#"{"errcode":40163,"errmsg":"code been used"}"#);
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "40163"),
        "{r:?}"
    );
    let r = openid_of(br#"{"openid":"o1","is_snapshotuser":1}"#);
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "SNAPSHOT_USER"),
        "{r:?}"
    );
    for bad in [
        &b"{}"[..],
        b"nope",
        br#"{"openid":"o/../x"}"#,
        br#"{"openid":""}"#,
    ] {
        assert!(matches!(openid_of(bad), Err(PayError::Malformed(_))));
    }
    // The secret travels only in the URL's query.
    let u = access_token_url(
        "https://api.weixin.qq.com",
        "wx1",
        &Secret::new(SECRET),
        "C D",
    )
    .unwrap();
    assert_eq!(
        u.as_str(),
        format!("https://api.weixin.qq.com/sns/oauth2/access_token?appid=wx1&secret={SECRET}&code=C+D&grant_type=authorization_code")
    );
}

fn jsapi_channel() -> WechatPayChannel {
    let mut cfg_ch = WechatPayChannel::new(
        WechatPayConfig {
            id: kami_core::ChannelId::parse("wx-main").unwrap(),
            methods: vec![Method::Wxpay],
            priority: 0,
            api_base: "http://127.0.0.1:9".into(),
            mchid: "1230000109".into(),
            appid: W5_APPID.into(),
            merchant_serial_no: "D7CE59D1F522D701".into(),
            merchant_private_key: k2_signer(),
            apiv3_key: b"wechatpay-apiv3-test-key-32bytes".to_vec(),
            platform: PlatformKeys::PublicKey {
                id: "PUB_KEY_ID_01".into(),
                key: k2_signer().verifier().unwrap(),
            },
            mode: WechatMode::Auto,
            jsapi: Some(jsapi_config()),
        },
        reqwest::Client::new(),
    );
    cfg_ch = cfg_ch.with_clock(Arc::new(ManualClock::new(1_700_000_000_000)));
    cfg_ch
}

#[tokio::test]
async fn inside_wechat_the_first_create_is_the_oauth_hop() {
    let ch = jsapi_channel();
    let trade = TradeNo::first(&OrderNo::generate("20231114221320"));
    let req = CreatePayment {
        trade_no: trade.clone(),
        amount: Money::new(1230, Currency::Cny).unwrap(),
        subject: "x".into(),
        method: Method::Wxpay,
        device: Device::Mobile,
        notify_url: "https://shop/pay/notify/wx-main".into(),
        return_url: "https://shop/pay/return/wx-main?order_no=K1".into(),
        expires_at_ms: 1_700_000_900_000,
        user_agent: Some("Mozilla/5.0 (iPhone) MicroMessenger/8.0.44".into()),
        client_ip: None,
        payer_openid: None,
    };
    // No network: the OAuth URL is built locally.
    let PaymentAction::Authorize { url } = ch.create(&req).await.unwrap().action else {
        panic!("expected the OAuth hop");
    };
    let prefix = "https://open.example/connect/oauth2/authorize?appid=wxd678efh567hg6787&redirect_uri=https%3A%2F%2Fshop%2Fpay%2Freturn%2Fwx-main%3Forder_no%3DK1&response_type=code&scope=snsapi_base&state=";
    assert!(url.starts_with(prefix), "{url}");
    let state = url[prefix.len()..]
        .strip_suffix("#wechat_redirect")
        .unwrap();
    // What comes back names this trade.
    let back = ch
        .payer_return(&format!("order_no=K1&code=abc&state={state}"))
        .unwrap()
        .unwrap();
    assert_eq!(back.trade_no, trade.as_str());
    // With the openid: the JSAPI order (here unreachable, so a transport error).
    let mut with = req.clone();
    with.payer_openid = Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into());
    assert!(matches!(
        ch.create(&with).await,
        Err(PayError::Transport(_))
    ));
    with.payer_openid = Some("bad openid".into());
    assert!(matches!(
        ch.create(&with).await,
        Err(PayError::Malformed(_))
    ));
    // A channel without an appsecret ignores returns.
    let mut plain = jsapi_channel();
    plain.cfg.jsapi = None;
    assert_eq!(
        plain
            .payer_return(&format!("code=abc&state={state}"))
            .unwrap(),
        None
    );
}
