//! Epay channel tests: the G.4 vectors, v1 and v2 notifications (every tampered field,
//! tolerance, hostile input), the v2 timestamp window on a fixed clock, signed submit URLs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::TradeRef;
use std::sync::Arc;

use super::notify::NOTIFY_REQUIRED;
use super::wire::{flatten_json, is_not_found, is_safe_redirect, truncate_name};
use super::*;
use crate::common::ack::assert_plain_text_ack;
use crate::common::test_support::{bad_signature, encode, form_post as post, malformed};
use crate::common::text::owned;
use crate::{Device, PaymentConfirmation};
use kami_core::{Currency, ManualClock, Money};
use kami_core::{OrderNo, TradeNo};

/// The fixed time of the v2 channels' clock (2024-06-01T00:00:00Z).
const NOW: i64 = 1_717_200_000;

/// protocols.md G.4 test key.
const KEY: &str = "K3yExample";

fn v1_channel(flow: EpayFlow) -> EpayChannel {
    EpayChannel::new(
        EpayConfig {
            id: ChannelId::parse("ep").unwrap(),
            methods: vec![Method::Alipay, Method::Wxpay],
            priority: 3,
            gateway: "http://127.0.0.1:9".into(),
            pid: "1001".into(),
            credentials: EpayCredentials::V1 { key: KEY.into() },
            flow,
        },
        reqwest::Client::new(),
    )
}

struct V2Keys {
    merchant: RsaSigner,
    platform: RsaSigner,
}

fn v2_keys() -> V2Keys {
    V2Keys {
        merchant: RsaSigner::generate().unwrap(),
        platform: RsaSigner::generate().unwrap(),
    }
}

fn v2_channel(keys: &V2Keys, flow: EpayFlow) -> EpayChannel {
    let merchant_private_key =
        RsaSigner::from_text(&keys.merchant.private_key_pem().unwrap()).unwrap();
    EpayChannel::new(
        EpayConfig {
            id: ChannelId::parse("ep2").unwrap(),
            methods: vec![Method::Alipay],
            priority: 0,
            gateway: "http://127.0.0.1:9/".into(),
            pid: "1001".into(),
            credentials: EpayCredentials::V2 {
                merchant_private_key,
                platform_public_key: keys.platform.verifier().unwrap(),
            },
            flow,
        },
        reqwest::Client::new(),
    )
    .with_clock(Arc::new(ManualClock::new(NOW * 1000)))
}

/// The G.4 notification, unsigned.
fn notify_fields(status: &str) -> Vec<(String, String)> {
    owned(&[
        ("pid", "1001"),
        ("trade_no", "2024010112000001"),
        ("out_trade_no", "ORD20240101001"),
        ("type", "alipay"),
        ("name", "VIP 月卡"),
        ("money", "1.00"),
        ("trade_status", status),
    ])
}

fn v1_notify(status: &str) -> Vec<(String, String)> {
    signed_md5(KEY, notify_fields(status))
}

fn v2_notify(keys: &V2Keys, status: &str, timestamp: i64) -> Vec<(String, String)> {
    let mut p = notify_fields(status);
    p.push(("timestamp".into(), timestamp.to_string()));
    signed_rsa(&keys.platform, p).unwrap()
}
fn get(query: impl Into<String>) -> RawNotification {
    RawNotification {
        method: "GET".into(),
        query: query.into(),
        headers: vec![],
        body: vec![],
    }
}
fn paid(amount_fen: i64) -> NotifyVerdict {
    NotifyVerdict::Paid(PaymentConfirmation {
        trade_no: "ORD20240101001".into(),
        gateway_trade_no: "2024010112000001".into(),
        amount: Money::new(amount_fen, Currency::Cny).unwrap(),
        paid_at: None,
        coin_amount: None,
    })
}
#[test]
fn md5_vectors_from_protocols_g4() {
    // Pinned: computed once with Python's hashlib (md5((canonical + key).encode()).hexdigest()).
    let request = owned(&[
        ("pid", "1001"),
        ("type", "alipay"),
        ("out_trade_no", "ORD20240101001"),
        ("notify_url", "https://shop.example/pay/epay/notify"),
        ("return_url", "https://shop.example/pay/epay/return"),
        ("name", "VIP 月卡"),
        ("money", "1.00"),
        ("param", ""),
    ]);
    assert_eq!(
        canonical(&request),
        "money=1.00&name=VIP 月卡&notify_url=https://shop.example/pay/epay/notify\
         &out_trade_no=ORD20240101001&pid=1001&return_url=https://shop.example/pay/epay/return\
         &type=alipay"
    );
    assert_eq!(md5_sign(KEY, &request), "06240e357ae9b2c0bb5ca2f451bc9e54");
    assert_eq!(
        md5_sign(KEY, &notify_fields("TRADE_SUCCESS")),
        "ab6c613e0a751cfd0f4b8abef6260b47"
    );
    // sign and sign_type never take part; order of input is irrelevant.
    let mut shuffled = notify_fields("TRADE_SUCCESS");
    shuffled.reverse();
    shuffled.push(("sign_type".into(), "MD5".into()));
    shuffled.push(("sign".into(), "whatever".into()));
    assert_eq!(md5_sign(KEY, &shuffled), "ab6c613e0a751cfd0f4b8abef6260b47");
    // Same Python check with param="0" (the exact rule keeps it).
    let mut zero = notify_fields("TRADE_SUCCESS");
    zero.push(("param".into(), "0".into()));
    assert_eq!(md5_sign(KEY, &zero), "b6d340d7c562a46f9f881f3bc14f2978");
}

#[test]
fn md5_verify_rules() {
    let good = v1_notify("TRADE_SUCCESS");
    assert!(md5_verify(KEY, &good));
    assert!(!md5_verify("other", &good));
    // Upper-case hex is accepted (some hosts), other lengths are not.
    let upper: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| {
            let v = if k == "sign" {
                v.to_uppercase()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert!(md5_verify(KEY, &upper));
    let mut short = good.clone();
    for (k, v) in &mut short {
        if k == "sign" {
            v.pop();
        }
    }
    assert!(!md5_verify(KEY, &short));
    // Duplicated keys and a missing sign fail.
    let mut dup = good.clone();
    dup.push(("money".into(), "1.00".into()));
    assert!(!md5_verify(KEY, &dup));
    let no_sign: Vec<(String, String)> =
        good.iter().filter(|(k, _)| k != "sign").cloned().collect();
    assert!(!md5_verify(KEY, &no_sign));
    // G.6: a host that drops "0" values signed without `param=0`; accepted on retry.
    let mut zero = notify_fields("TRADE_SUCCESS");
    zero.push(("param".into(), "0".into()));
    zero.push(("sign".into(), "ab6c613e0a751cfd0f4b8abef6260b47".into()));
    assert!(md5_verify(KEY, &zero));
    // ...but the retry still needs the key.
    assert!(!md5_verify("other", &zero));
}

#[test]
fn v1_get_and_post_notifications_are_paid() {
    let ch = v1_channel(EpayFlow::Api);
    let q = encode(&v1_notify("TRADE_SUCCESS"));
    assert_eq!(ch.verify_notification(&get(q.clone())).unwrap(), paid(100));
    assert_eq!(ch.verify_notification(&post(q.clone())).unwrap(), paid(100));
    // A POST whose parameters are in the URL.
    let mut raw = post(Vec::new());
    raw.query = q.clone();
    assert_eq!(ch.verify_notification(&raw).unwrap(), paid(100));
    // POST without content type is read as a form too.
    let mut raw = post(q.clone());
    raw.headers.clear();
    assert_eq!(ch.verify_notification(&raw).unwrap(), paid(100));
    // A JSON body is not an Epay notification.
    let mut raw = post(q);
    raw.headers = vec![("content-type".into(), "application/json".into())];
    malformed(ch.verify_notification(&raw));
}

#[test]
fn v1_sign_type_tolerance() {
    let ch = v1_channel(EpayFlow::Api);
    let base = notify_fields("TRADE_SUCCESS");
    let sign = md5_sign(KEY, &base);
    for sign_type in [None, Some("MD5"), Some("md5"), Some("")] {
        let mut p = base.clone();
        p.push(("sign".into(), sign.clone()));
        if let Some(t) = sign_type {
            p.push(("sign_type".into(), t.into()));
        }
        assert_eq!(
            ch.verify_notification(&get(encode(&p))).unwrap(),
            paid(100),
            "{sign_type:?}"
        );
    }
    for sign_type in ["RSA", "HMAC-SHA256", "SHA1"] {
        let mut p = base.clone();
        p.push(("sign".into(), sign.clone()));
        p.push(("sign_type".into(), sign_type.into()));
        bad_signature(ch.verify_notification(&get(encode(&p))));
    }
}

#[test]
fn every_tampered_field_is_rejected() {
    let ch = v1_channel(EpayFlow::Api);
    let good = v1_notify("TRADE_SUCCESS");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i].1.push('0');
        let r = ch.verify_notification(&get(encode(&bad)));
        assert!(
            matches!(r, Err(PayError::BadSignature)),
            "tampering {} gave {r:?}",
            good[i].0
        );
    }
    // Money changed to another valid amount: still the signature that fails.
    let bad: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| {
            let v = if k == "money" {
                "0.01".into()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    bad_signature(ch.verify_notification(&get(encode(&bad))));
    // An added field and a removed optional field are tampering too.
    let mut extra = good.clone();
    extra.push(("param".into(), "x".into()));
    bad_signature(ch.verify_notification(&get(encode(&extra))));
    for key in ["type", "name"] {
        let without: Vec<(String, String)> =
            good.iter().filter(|(k, _)| k != key).cloned().collect();
        bad_signature(ch.verify_notification(&get(encode(&without))));
    }
    // Required fields missing: malformed, named.
    for key in NOTIFY_REQUIRED {
        let without: Vec<(String, String)> =
            good.iter().filter(|(k, _)| k != key).cloned().collect();
        assert_eq!(
            malformed(ch.verify_notification(&get(encode(&without)))),
            format!("missing field {key}")
        );
    }
}

#[test]
fn merchant_status_and_money_checks() {
    let ch = v1_channel(EpayFlow::Api);
    // Validly signed for another merchant.
    let mut other = notify_fields("TRADE_SUCCESS");
    other[0].1 = "1002".into();
    let r = ch.verify_notification(&get(encode(&signed_md5(KEY, other))));
    assert!(matches!(r, Err(PayError::WrongMerchant)), "{r:?}");
    // Only TRADE_SUCCESS pays; case matters.
    for status in [
        "WAIT_BUYER_PAY",
        "TRADE_CLOSED",
        "TRADE_FINISHED",
        "trade_success",
    ] {
        assert_eq!(
            ch.verify_notification(&get(encode(&v1_notify(status))))
                .unwrap(),
            NotifyVerdict::NotPaid {
                trade_no: "ORD20240101001".into(),
                status: status.into()
            }
        );
    }
    // Money is exact to the fen; PHP-style "10" and "12.3" are fine, the rest is not.
    for (money, fen) in [("10", 1000), ("12.3", 1230), ("0.01", 1)] {
        let mut p = notify_fields("TRADE_SUCCESS");
        p[5].1 = money.into();
        let v = ch
            .verify_notification(&get(encode(&signed_md5(KEY, p))))
            .unwrap();
        assert_eq!(v, paid(fen));
    }
    for money in [
        "1.001", "-1.00", "1e2", " 1.00", "1,00", "0x10", "NaN", "１.00",
    ] {
        let mut p = notify_fields("TRADE_SUCCESS");
        p[5].1 = money.into();
        malformed(ch.verify_notification(&get(encode(&signed_md5(KEY, p)))));
    }
}

#[test]
fn duplicated_keys_and_hostile_input_are_malformed() {
    let ch = v1_channel(EpayFlow::Api);
    let good = encode(&v1_notify("TRADE_SUCCESS"));
    for dup in [
        format!("{good}&money=1.00"),
        format!("money=100.00&{good}"),
        format!("{good}&sign=00000000000000000000000000000000"),
        format!("{good}&pid=1001"),
    ] {
        let m = malformed(ch.verify_notification(&get(dup.clone())));
        assert!(m.contains("duplicate"), "{m}");
        malformed(ch.verify_notification(&post(dup)));
    }
    malformed(ch.verify_notification(&get("")));
    malformed(ch.verify_notification(&post(b"\xff\xfe\x00garbage".to_vec())));
    malformed(ch.verify_notification(&get(format!("{good}&x=%FF"))));
    malformed(ch.verify_notification(&get(format!("{good}&x=%G1"))));
    malformed(ch.verify_notification(&get(format!("{good}&x=%4"))));
    malformed(ch.verify_notification(&get(format!("{good}&=v"))));
    malformed(ch.verify_notification(&post(format!("{good}&pad={}", "a".repeat(MAX_FORM_BYTES)))));
    let many: String = (0..1000).map(|i| format!("k{i}=v&")).collect();
    malformed(ch.verify_notification(&get(many)));
    let mut put = post(good);
    put.method = "PUT".into();
    malformed(ch.verify_notification(&put));
}

#[test]
fn random_bytes_never_panic() {
    let keys = v2_keys();
    let channels = [v1_channel(EpayFlow::Api), v2_channel(&keys, EpayFlow::Api)];
    let good = encode(&v1_notify("TRADE_SUCCESS"));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..4000u32 {
        let len = (next() % 160) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 4 == 0 {
            // Mostly-valid forms with random corruption reach deeper code.
            bytes = good.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
        }
        for ch in &channels {
            let _ = ch.verify_notification(&post(bytes.clone()));
            let _ = ch.verify_notification(&get(String::from_utf8_lossy(&bytes)));
        }
        let _ = flatten_json(&bytes);
    }
}

#[test]
fn v2_rsa_sign_verify_and_timestamp_window() {
    let keys = v2_keys();
    let ch = v2_channel(&keys, EpayFlow::Api);
    let now = NOW;
    let p = v2_notify(&keys, "TRADE_SUCCESS", now);
    assert_eq!(field(&p, "sign_type"), Some("RSA"));
    assert_eq!(field(&p, "sign").map(str::len), Some(344));
    assert!(rsa_verify(&keys.platform.verifier().unwrap(), &p));
    assert!(!rsa_verify(&keys.merchant.verifier().unwrap(), &p));
    assert_eq!(ch.verify_notification(&get(encode(&p))).unwrap(), paid(100));
    assert_eq!(
        ch.verify_notification(&post(encode(&p))).unwrap(),
        paid(100)
    );

    // Window: inside at both edges, stale outside.
    for (offset, ok) in [(-300, true), (300, true), (-301, false), (301, false)] {
        let p = v2_notify(&keys, "TRADE_SUCCESS", now + offset);
        let r = ch.verify_params(&p, now);
        if ok {
            assert_eq!(r.unwrap(), paid(100), "{offset}");
        } else {
            assert!(matches!(r, Err(PayError::Stale)), "{offset}: {r:?}");
        }
    }
    // A stale timestamp that was tampered to look fresh breaks the signature.
    let mut p = v2_notify(&keys, "TRADE_SUCCESS", now - 3600);
    for (k, v) in &mut p {
        if k == "timestamp" {
            *v = now.to_string();
        }
    }
    bad_signature(ch.verify_params(&p, now));
    // Missing or non-numeric timestamp, when otherwise validly signed.
    let unsigned_ts = signed_rsa(&keys.platform, notify_fields("TRADE_SUCCESS")).unwrap();
    malformed(ch.verify_params(&unsigned_ts, now));
    let mut odd = notify_fields("TRADE_SUCCESS");
    odd.push(("timestamp".into(), "-5".into()));
    malformed(ch.verify_params(&signed_rsa(&keys.platform, odd).unwrap(), now));

    // Signed by the merchant key (or anyone else): bad signature.
    let mut forged = notify_fields("TRADE_SUCCESS");
    forged.push(("timestamp".into(), now.to_string()));
    let forged = signed_rsa(&keys.merchant, forged).unwrap();
    bad_signature(ch.verify_notification(&get(encode(&forged))));
    // No downgrade: a v2 channel refuses MD5, even with a valid RSA signature present.
    let relabelled: Vec<(String, String)> = v2_notify(&keys, "TRADE_SUCCESS", now)
        .into_iter()
        .map(|(k, v)| {
            if k == "sign_type" {
                (k, "MD5".into())
            } else {
                (k, v)
            }
        })
        .collect();
    bad_signature(ch.verify_notification(&get(encode(&relabelled))));
    assert!(matches!(
        ch.verify_notification(&get(encode(&v1_notify("TRADE_SUCCESS")))),
        Err(PayError::Malformed(_)) | Err(PayError::BadSignature)
    ));
    // Every tampered field fails.
    let good = v2_notify(&keys, "TRADE_SUCCESS", now);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i].1.push('1');
        let r = ch.verify_params(&bad, now);
        assert!(
            matches!(r, Err(PayError::BadSignature)),
            "tampering {} gave {r:?}",
            good[i].0
        );
    }
    // Wrong merchant, validly signed.
    let mut other = notify_fields("TRADE_SUCCESS");
    other[0].1 = "7".into();
    other.push(("timestamp".into(), now.to_string()));
    let other = signed_rsa(&keys.platform, other).unwrap();
    assert!(matches!(
        ch.verify_params(&other, now),
        Err(PayError::WrongMerchant)
    ));
}

#[test]
fn ack_bytes_kind_and_redaction() {
    let ch = v1_channel(EpayFlow::Api);
    assert_plain_text_ack(&ch);
    assert_eq!(ch.kind(), "epay");
    assert_eq!(ch.priority(), 3);
    assert_eq!(ch.methods(), &[Method::Alipay, Method::Wxpay]);
    assert_eq!(ch.gateway(), "http://127.0.0.1:9/");
    assert!(!format!("{ch:?}").contains(KEY));
}

fn create_req(subject: &str, device: Device) -> CreatePayment {
    CreatePayment {
        trade_no: TradeNo::first(&OrderNo::generate("20240101120000")),
        amount: Money::new(1230, Currency::Cny).unwrap(),
        subject: subject.into(),
        method: Method::Wxpay,
        device,
        notify_url: "https://shop.example/pay/notify/ep".into(),
        return_url: "https://shop.example/pay/return/ep?o=1".into(),
        expires_at_ms: 0,
        user_agent: None,
        client_ip: None,
        payer_openid: None,
    }
}

#[tokio::test]
async fn submit_flow_builds_signed_urls() {
    let ch = v1_channel(EpayFlow::Submit);
    let req = create_req("Steam 10 & more <b>", Device::Pc);
    let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap().action else {
        panic!("expected redirect");
    };
    let prefix = "http://127.0.0.1:9/submit.php?";
    assert!(url.starts_with(prefix), "{url}");
    let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
    assert!(md5_verify(KEY, &params));
    assert_eq!(field(&params, "pid"), Some("1001"));
    assert_eq!(field(&params, "type"), Some("wxpay"));
    assert_eq!(field(&params, "money"), Some("12.30"));
    assert_eq!(field(&params, "name"), Some("Steam 10 & more <b>"));
    assert_eq!(field(&params, "sign_type"), Some("MD5"));
    assert_eq!(field(&params, "out_trade_no"), Some(req.trade_no.as_str()));
    assert_eq!(
        field(&params, "return_url"),
        Some("https://shop.example/pay/return/ep?o=1")
    );
    assert_eq!(params.len(), 9);

    let keys = v2_keys();
    let ch = v2_channel(&keys, EpayFlow::Submit);
    let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap().action else {
        panic!("expected redirect");
    };
    let prefix = "http://127.0.0.1:9/api/pay/submit?";
    assert!(url.starts_with(prefix), "{url}");
    let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
    assert!(rsa_verify(&keys.merchant.verifier().unwrap(), &params));
    assert_eq!(field(&params, "sign_type"), Some("RSA"));
    check_timestamp(field(&params, "timestamp"), NOW).unwrap();
    assert_eq!(field(&params, "timestamp"), Some("1717200000"));

    // Other currencies and the sandbox method are refused.
    let mut usd = create_req("x", Device::Pc);
    usd.amount = Money::new(100, Currency::Usd).unwrap();
    assert!(matches!(
        ch.create(&usd).await,
        Err(PayError::Unsupported(_))
    ));
    let mut sbx = create_req("x", Device::Pc);
    sbx.method = Method::Sandbox;
    assert!(matches!(
        ch.create(&sbx).await,
        Err(PayError::Unsupported(_))
    ));
}

#[tokio::test]
async fn unreachable_gateway_is_transport_error_without_the_key() {
    let ch = v1_channel(EpayFlow::Api);
    for r in [
        ch.query(&TradeRef::from("ORD1")).await,
        ch.close(&TradeRef::from("ORD1")).await,
    ] {
        match r {
            Err(PayError::Transport(m)) => assert!(!m.contains(KEY), "{m}"),
            other => panic!("expected Transport, got {other:?}"),
        }
    }
    let r = ch
        .refund(&RefundRequest {
            gateway_ref: None,
            gateway_trade_no: None,
            trade_no: "ORD1".into(),
            refund_no: "R1".into(),
            amount: Money::new(100, Currency::Cny).unwrap(),
            total: Money::new(100, Currency::Cny).unwrap(),
            reason: None,
        })
        .await;
    assert!(matches!(r, Err(PayError::Transport(m)) if !m.contains(KEY)));
    let r = ch.create(&create_req("x", Device::Pc)).await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
}

#[test]
fn helpers() {
    assert_eq!(normalize_gateway("https://p.example"), "https://p.example/");
    assert_eq!(
        normalize_gateway(" https://p.example/ "),
        "https://p.example/"
    );
    assert_eq!(
        normalize_gateway("https://p.example/x/submit.php"),
        "https://p.example/x/"
    );
    assert_eq!(
        normalize_gateway("https://p.example/mapi.php"),
        "https://p.example/"
    );

    assert_eq!(device_param(Device::Pc, Some("MicroMessenger")), "pc");
    assert_eq!(device_param(Device::Mobile, None), "mobile");
    assert_eq!(
        device_param(Device::Mobile, Some("Mozilla/5.0 MicroMessenger/8.0")),
        "wechat"
    );
    assert_eq!(
        device_param(Device::Mobile, Some("x AlipayClient/10")),
        "alipay"
    );
    assert_eq!(device_param(Device::Mobile, Some("x QQ/8.9 y")), "qq");

    let long = "月".repeat(100);
    let t = truncate_name(&long);
    assert!(t.len() <= MAX_NAME_BYTES && long.starts_with(&t) && t.len() == 120);

    assert!(is_safe_redirect("https://qr.alipay.com/x", true));
    assert!(!is_safe_redirect("weixin://wxpay/x", true));
    assert!(is_safe_redirect("weixin://dl/business/?t=x", false));
    assert!(is_safe_redirect("alipays://platformapi/startapp", false));
    for bad in [
        "javascript:alert(1)",
        " JavaScript:x",
        "data:text/html,x",
        "noscheme",
        "",
    ] {
        assert!(!is_safe_redirect(bad, false), "{bad}");
    }

    let f = flatten_json(
        "\u{feff}{\"code\":1,\"ok\":true,\"no\":false,\"n\":null,\"a\":[1],\"s\":\"x\"}".as_bytes(),
    )
    .unwrap();
    assert_eq!(
        f,
        owned(&[
            ("code", "1"),
            ("n", ""),
            ("no", ""),
            ("ok", "1"),
            ("s", "x")
        ])
    );
    assert!(flatten_json(b"[1]").is_none());
    assert!(flatten_json(b"<html>").is_none());

    assert!(is_not_found("订单号不存在"));
    assert!(is_not_found("Order Not Found"));
    assert!(!is_not_found("KEY校验失败"));
}
