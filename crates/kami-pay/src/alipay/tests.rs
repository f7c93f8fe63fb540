//! Unit tests: the recorded vectors of protocols.md A.7 (K1/K3 keys of the appendix), every
//! checked notification field, response-substring verification, key forms, hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::wire::*;
use super::*;
use crate::common::ack::assert_plain_text_ack;
use crate::common::form::parse_form;
use crate::common::test_support::{bad_signature, encode, malformed};
use crate::crypto::RsaHash;
use crate::PaymentConfirmation;
use crate::TradeRef;
use kami_core::{Money, OrderNo, TradeNo};

fn k1_signer() -> RsaSigner {
    RsaSigner::from_text(K1_TEST_ONLY_PRIVATE_KEY_PKCS1_PEM).unwrap()
}

fn config(app_id: &str, pubkey: &str, sign_type: AlipaySignType) -> AlipayConfig {
    AlipayConfig {
        id: ChannelId::parse("ali").unwrap(),
        methods: vec![Method::Alipay],
        priority: 10,
        gateway: "http://127.0.0.1:9/gateway.do".into(),
        app_id: app_id.into(),
        app_private_key: k1_signer(),
        alipay_public_key: RsaVerifier::from_text(pubkey).unwrap(),
        sign_type,
        mode: AlipayMode::Auto,
        seller_id: None,
        app_auth_token: None,
        sys_service_provider_id: None,
    }
}

/// The V3 notify's channel: app 2021000122671080, "Alipay" key = K1, seller checked.
fn v3_channel() -> AlipayChannel {
    let mut cfg = config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa2);
    cfg.seller_id = Some("2088102177840000".into());
    AlipayChannel::new(cfg, reqwest::Client::new())
}

/// `k=v&k=v` sign content (values without `&`) back into pairs.
fn pairs(content: &str) -> Vec<(String, String)> {
    content
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn with(mut params: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        params.push(((*k).into(), (*v).into()));
    }
    params
}
fn post(body: impl Into<Vec<u8>>) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: vec![],
        body: body.into(),
    }
}

/// The V3 notification as the gateway posts it (sign and sign_type added).
fn v3_params() -> Vec<(String, String)> {
    with(
        pairs(V3_CONTENT),
        &[("sign", V3_SIGN), ("sign_type", "RSA2")],
    )
}

/// V3's fields with some replaced/removed, re-signed with K1 (the test "gateway").
fn v3_resigned(
    changes: &[(&str, Option<&str>)],
    sign_type: AlipaySignType,
) -> Vec<(String, String)> {
    let mut params = pairs(V3_CONTENT);
    for (k, v) in changes {
        params.retain(|(pk, _)| pk != k);
        if let Some(v) = v {
            params.push(((*k).into(), (*v).into()));
        }
    }
    signed_notify(&k1_signer(), sign_type, params).unwrap()
}
fn v1_params(sign_type: &str) -> Vec<(String, String)> {
    vec![
        ("app_id".into(), "2021000122671080".into()),
        ("method".into(), "alipay.trade.precreate".into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), sign_type.into()),
        ("timestamp".into(), "2024-01-01 12:00:00".into()),
        ("version".into(), "1.0".into()),
        (
            "notify_url".into(),
            "https://example.com/alipay/notify".into(),
        ),
        ("app_auth_token".into(), "".into()),
        (
            "biz_content".into(),
            r#"{"out_trade_no":"T20240101000001","total_amount":"88.88","subject":"测试商品"}"#
                .into(),
        ),
    ]
}

// ---- A.2 request signing ----------------------------------------------------------------

#[test]
fn v1_request_sign_string_and_signature_rsa2() {
    let params = v1_params("RSA2");
    assert_eq!(request_sign_content(&params), V1_CONTENT);
    let signed = signed_request(&k1_signer(), AlipaySignType::Rsa2, params).unwrap();
    assert_eq!(field(&signed, "sign"), Some(V1_SIGN));
    // The empty app_auth_token is not sent at all.
    assert_eq!(field(&signed, "app_auth_token"), None);
    let v = RsaVerifier::from_text(K1_PUBLIC_KEY).unwrap();
    assert!(verify_params(
        &v,
        AlipaySignType::Rsa2,
        &signed,
        REQUEST_UNSIGNED
    ));
    // The request rule signs sign_type: the notify rule does not verify it.
    assert!(!verify_params(
        &v,
        AlipaySignType::Rsa2,
        &signed,
        NOTIFY_UNSIGNED
    ));
    assert!(!verify_params(
        &v,
        AlipaySignType::Rsa,
        &signed,
        REQUEST_UNSIGNED
    ));
}

#[test]
fn v2_request_signature_legacy_rsa_sha1() {
    let params = v1_params("RSA");
    assert_eq!(
        request_sign_content(&params),
        V1_CONTENT.replace("sign_type=RSA2", "sign_type=RSA")
    );
    let signed = signed_request(&k1_signer(), AlipaySignType::Rsa, params).unwrap();
    assert_eq!(field(&signed, "sign"), Some(V2_SIGN));
    let v = RsaVerifier::from_text(K1_PUBLIC_KEY).unwrap();
    assert!(verify_params(
        &v,
        AlipaySignType::Rsa,
        &signed,
        REQUEST_UNSIGNED
    ));
    assert!(!verify_params(
        &v,
        AlipaySignType::Rsa2,
        &signed,
        REQUEST_UNSIGNED
    ));
}

#[test]
fn k1_loads_in_every_key_form_and_signs_the_same() {
    let pkcs1_pem = K1_TEST_ONLY_PRIVATE_KEY_PKCS1_PEM;
    let pkcs1_bare: String = pkcs1_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let pkcs8_pem = k1_signer().private_key_pem().unwrap();
    assert!(pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let pkcs8_bare: String = pkcs8_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(pkcs8_bare.starts_with("MIIEv"), "{}", &pkcs8_bare[..8]);
    assert!(pkcs1_bare.starts_with("MIIEo"));
    // PKCS#1 PEM wrapped at 64 columns, as openssl writes it.
    let wrapped = pem::encode(&pem::Pem::new(
        "RSA PRIVATE KEY",
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &pkcs1_bare).unwrap(),
    ));
    for text in [pkcs1_pem, &pkcs1_bare, &pkcs8_pem, &pkcs8_bare, &wrapped] {
        let s = RsaSigner::from_text(text).unwrap();
        let signed = signed_request(&s, AlipaySignType::Rsa2, v1_params("RSA2")).unwrap();
        assert_eq!(field(&signed, "sign"), Some(V1_SIGN));
        let signed = signed_request(&s, AlipaySignType::Rsa, v1_params("RSA")).unwrap();
        assert_eq!(field(&signed, "sign"), Some(V2_SIGN));
    }
    // Public key: bare SPKI (the console form) and PEM.
    let pem_pub = k1_signer().public_key_pem().unwrap();
    for text in [K1_PUBLIC_KEY, pem_pub.as_str()] {
        let v = RsaVerifier::from_text(text).unwrap();
        assert!(v.verify_base64(RsaHash::Sha256, V1_CONTENT.as_bytes(), V1_SIGN));
    }
    assert!(pem_pub.contains(&K1_PUBLIC_KEY[..60]));
}

#[test]
fn sign_string_rules() {
    let p = [
        ("b", "2"),
        ("sign", "zzz"),
        ("sign_type", "RSA2"),
        ("a", "x y&z"),
        ("empty", ""),
        ("B", "upper"),
        ("biz_content", r#"{"a":"b c"}"#),
    ];
    assert_eq!(
        request_sign_content(&p),
        r#"B=upper&a=x y&z&b=2&biz_content={"a":"b c"}&sign_type=RSA2"#
    );
    assert_eq!(
        notify_sign_content(&p),
        r#"B=upper&a=x y&z&b=2&biz_content={"a":"b c"}"#
    );
}

#[test]
fn config_values_parse() {
    assert_eq!(AlipayMode::parse("qr"), Some(AlipayMode::Qr));
    assert_eq!(AlipayMode::parse("page"), Some(AlipayMode::Page));
    assert_eq!(AlipayMode::parse("wap"), Some(AlipayMode::Wap));
    assert_eq!(AlipayMode::parse("auto"), Some(AlipayMode::Auto));
    assert_eq!(AlipayMode::parse("QR"), None);
    assert_eq!(AlipaySignType::parse("RSA2"), Some(AlipaySignType::Rsa2));
    assert_eq!(AlipaySignType::parse("RSA"), Some(AlipaySignType::Rsa));
    assert_eq!(AlipaySignType::parse("rsa2"), None);
}

#[test]
fn beijing_time_format() {
    assert_eq!(beijing_time(0).unwrap(), "1970-01-01 08:00:00");
    assert_eq!(
        beijing_time(1_704_081_600_000).unwrap(),
        "2024-01-01 12:00:00"
    );
    assert_eq!(
        beijing_time(1_704_081_600_999).unwrap(),
        "2024-01-01 12:00:00"
    );
    assert_eq!(beijing_time(-1).unwrap(), "1970-01-01 07:59:59");
    assert_eq!(
        parse_beijing_time("2024-01-01 12:00:00"),
        Some(1_704_081_600_000)
    );
    assert_eq!(parse_beijing_time("2024-01-01T12:00:00"), None);
    assert_eq!(parse_beijing_time("2024-13-01 12:00:00"), None);
    assert_eq!(beijing_time(i64::MAX), None);
    assert_eq!(beijing_time(i64::MIN), None);
}

// ---- A.3 synchronous responses ----------------------------------------------------------

#[test]
fn v4_response_verifies_over_the_raw_node() {
    let ch = v3_channel();
    let map = ch
        .verify_response_body("alipay.trade.precreate", V4_BODY.as_bytes())
        .unwrap();
    assert_eq!(
        map["qr_code"].as_str(),
        Some("https://qr.alipay.com/bax08431ljhokirwl38f00a7")
    );
    let parts = split_response(V4_BODY, "alipay_trade_precreate_response").unwrap();
    assert!(parts.node_raw.contains(r"https:\/\/qr.alipay.com"));
    assert!(parts.node_raw.starts_with('{') && parts.node_raw.ends_with('}'));
    // The simulator's builder reproduces V4 byte for byte.
    let built = build_response(
        &k1_signer(),
        AlipaySignType::Rsa2,
        "alipay_trade_precreate_response",
        &[
            ("code", "10000".into()),
            ("msg", "Success".into()),
            ("out_trade_no", "T20240101000001".into()),
            (
                "qr_code",
                "https://qr.alipay.com/bax08431ljhokirwl38f00a7".into(),
            ),
        ],
    )
    .unwrap();
    assert_eq!(built, V4_BODY);
}

#[test]
fn v5_signed_error_response() {
    let ch = v3_channel();
    let r = ch.verify_response_body("alipay.trade.precreate", V5_BODY.as_bytes());
    match r {
        Err(PayError::Gateway { code, message }) => {
            assert_eq!(code, "isv.invalid-signature");
            assert_eq!(message, "验签出错");
        }
        other => panic!("{other:?}"),
    }
    let built = build_response(
        &k1_signer(),
        AlipaySignType::Rsa2,
        ERROR_NODE,
        &[
            ("code", "40002".into()),
            ("msg", "Invalid Arguments".into()),
            ("sub_code", "isv.invalid-signature".into()),
            ("sub_msg", "验签出错".into()),
        ],
    )
    .unwrap();
    assert_eq!(built, V5_BODY);
    // Tampered signed error: the signature is checked for errors too.
    let forged = V5_BODY.replace("验签出错", "ok");
    assert!(matches!(
        ch.verify_response_body("alipay.trade.precreate", forged.as_bytes()),
        Err(PayError::BadResponseSignature)
    ));
}

#[test]
fn v0b_real_alipay_response_with_k3() {
    let ch = AlipayChannel::new(
        config("2021000000000000", K3_PUBLIC_KEY, AlipaySignType::Rsa2),
        reqwest::Client::new(),
    );
    let map = ch
        .verify_response_body("alipay.open.file.upload", V0B_BODY.as_bytes())
        .unwrap();
    assert_eq!(map["file_id"], "CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr");
    let parts = split_response(V0B_BODY, "alipay_open_file_upload_response").unwrap();
    assert_eq!(
        parts.node_raw,
        r#"{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}"#
    );
    // Not the K1 key.
    assert!(matches!(
        v3_channel().verify_response_body("alipay.open.file.upload", V0B_BODY.as_bytes()),
        Err(PayError::BadResponseSignature)
    ));
}

#[test]
fn response_tampering_and_shapes() {
    let ch = v3_channel();
    let m = "alipay.trade.precreate";
    let bad = |body: &str| ch.verify_response_body(m, body.as_bytes());
    // Changed content, changed sign, missing sign, empty sign: success needs a signature.
    let r = bad(&V4_BODY.replace("bax08431", "bax08432"));
    assert!(matches!(r, Err(PayError::BadResponseSignature)), "{r:?}");
    let r = bad(&V4_BODY.replace("\"sign\":\"g6ov", "\"sign\":\"g6oV"));
    assert!(matches!(r, Err(PayError::BadResponseSignature)), "{r:?}");
    let node = split_response(V4_BODY, "alipay_trade_precreate_response")
        .unwrap()
        .node_raw;
    let unsigned = format!("{{\"alipay_trade_precreate_response\":{node}}}");
    assert!(matches!(
        bad(&unsigned),
        Err(PayError::BadResponseSignature)
    ));
    let empty = format!("{{\"alipay_trade_precreate_response\":{node},\"sign\":\"\"}}");
    assert!(matches!(bad(&empty), Err(PayError::BadResponseSignature)));
    // A success signed for another method's node name is still a valid node signature, but
    // the node must be the called method's: a query response is not a precreate response.
    let r = ch.verify_response_body("alipay.trade.query", V4_BODY.as_bytes());
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
    // Siblings (cert mode) between node and sign, whitespace around: the raw node still
    // verifies.
    let sig = split_response(V4_BODY, "alipay_trade_precreate_response")
        .unwrap()
        .sign
        .unwrap();
    let spaced = format!(
        "  {{ \"alipay_trade_precreate_response\" : {node} ,\n \"alipay_cert_sn\":\"a5b5\", \"sign\" : \"{sig}\" }}\n"
    );
    assert!(bad(&spaced).is_ok());
    // Sign first.
    let first = format!("{{\"sign\":\"{sig}\",\"alipay_trade_precreate_response\":{node}}}");
    assert!(bad(&first).is_ok());
    // Repeated keys are refused (which one would be signed?).
    let dup = format!(
        "{{\"alipay_trade_precreate_response\":{node},\"alipay_trade_precreate_response\":{node},\"sign\":\"{sig}\"}}"
    );
    assert!(matches!(bad(&dup), Err(PayError::Malformed(_))));
    // Unsigned errors are errors, never successes.
    let r = bad(
        r#"{"alipay_trade_precreate_response":{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_SUCCESS","sub_msg":"交易已被支付"}}"#,
    );
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "ACQ.TRADE_HAS_SUCCESS"),
        "{r:?}"
    );
    let r = bad(
        r#"{"error_response":{"code":"20000","msg":"Service Currently Unavailable"},"sign":""}"#,
    );
    assert!(
        matches!(&r, Err(PayError::Gateway { code, .. }) if code == "20000"),
        "{r:?}"
    );
    // A "success" under error_response is not believed even when signed.
    let body = build_response(
        &k1_signer(),
        AlipaySignType::Rsa2,
        ERROR_NODE,
        &[("code", "10000".into()), ("msg", "Success".into())],
    )
    .unwrap();
    assert!(matches!(bad(&body), Err(PayError::Malformed(_))));
    // Not JSON / not an object / node not an object / no code.
    for body in [
        "",
        "<html>",
        "[1,2]",
        "{\"alipay_trade_precreate_response\":\"x\",\"sign\":\"\"}",
        "{\"alipay_trade_precreate_response\":{\"msg\":\"x\"}}",
        "{\"sign\":\"abc\"}",
        "{\"alipay_trade_precreate_response\":{\"code\":\"10000\"},\"sign\":1}",
    ] {
        let r = bad(body);
        assert!(matches!(r, Err(PayError::Malformed(_))), "{body}: {r:?}");
    }
    assert!(matches!(
        ch.verify_response_body(m, b"{\"a\":\"\xff\"}"),
        Err(PayError::Malformed(_))
    ));
}

#[test]
fn node_values_that_look_like_sign_do_not_confuse_extraction() {
    // Strings containing braces, quotes, `"sign"` and backslashes inside the node.
    let fields: Vec<(&str, Value)> = vec![
        ("code", "10000".into()),
        ("msg", "Success".into()),
        ("out_trade_no", "T1".into()),
        ("qr_code", r#"x},"sign":"AAAA"}{\"#.into()),
        ("nested", json!({"a": [1, {"b": "}"}], "sign": "nope"})),
    ];
    let body = build_response(
        &k1_signer(),
        AlipaySignType::Rsa2,
        "alipay_trade_precreate_response",
        &fields,
    )
    .unwrap();
    let map = v3_channel()
        .verify_response_body("alipay.trade.precreate", body.as_bytes())
        .unwrap();
    assert_eq!(map["qr_code"], r#"x},"sign":"AAAA"}{\"#);
}

#[test]
fn legacy_rsa_response_and_unescaped_slash_fallback() {
    let ch = AlipayChannel::new(
        config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa),
        reqwest::Client::new(),
    );
    let body = build_response(
        &k1_signer(),
        AlipaySignType::Rsa,
        "alipay_trade_query_response",
        &[("code", "10000".into()), ("msg", "Success".into())],
    )
    .unwrap();
    assert!(ch
        .verify_response_body("alipay.trade.query", body.as_bytes())
        .is_ok());
    // RSA2 channel rejects the SHA1 signature.
    assert!(matches!(
        v3_channel().verify_response_body("alipay.trade.query", body.as_bytes()),
        Err(PayError::BadResponseSignature)
    ));
    // A gateway that signed `/` but sent `\/` (the Java SDK's fallback).
    let node = r#"{"code":"10000","msg":"Success","qr_code":"https://qr/x"}"#;
    let sig = k1_signer()
        .sign_base64(RsaHash::Sha256, node.as_bytes())
        .unwrap();
    let body = format!(
        "{{\"alipay_trade_precreate_response\":{},\"sign\":\"{sig}\"}}",
        node.replace('/', "\\/")
    );
    assert!(v3_channel()
        .verify_response_body("alipay.trade.precreate", body.as_bytes())
        .is_ok());
}

#[test]
fn split_response_never_panics() {
    let mut seeds: Vec<Vec<u8>> = vec![V4_BODY.as_bytes().to_vec(), V5_BODY.as_bytes().to_vec()];
    for seed in 0u32..3000 {
        let base = &seeds[(seed % 2) as usize];
        let mut b = base.clone();
        let n = b.len();
        let pos = (seed.wrapping_mul(2654435761) as usize) % n;
        b.truncate(n - (seed as usize % 7));
        if pos < b.len() {
            b[pos] = b"{}[]\",:\\ax"[(seed % 10) as usize];
        }
        let _ = v3_channel().verify_response_body("alipay.trade.precreate", &b);
        if seed % 1000 == 0 {
            seeds.push(b);
        }
    }
    for body in [
        "{",
        "{\"",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":{",
        "{\"a\":\"\\",
        "\"\\",
    ] {
        let _ = split_response(body, "a");
    }
}

// ---- A.4 notifications ------------------------------------------------------------------

#[test]
fn v3_notify_sign_string_signature_and_verdict() {
    let params = v3_params();
    assert_eq!(notify_sign_content(&params), V3_CONTENT);
    let resigned = signed_notify(&k1_signer(), AlipaySignType::Rsa2, pairs(V3_CONTENT)).unwrap();
    assert_eq!(field(&resigned, "sign"), Some(V3_SIGN));
    let v = v3_channel()
        .verify_notification(&post(encode(&params)))
        .unwrap();
    assert_eq!(
        v,
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "T20240101000001".into(),
            gateway_trade_no: "2024010122001400001234567890".into(),
            amount: Money::new(8888, Currency::Cny).unwrap(),
            // gmt_payment 2024-01-01 12:00:09, Beijing time
            paid_at: Some(1_704_081_609_000),
            coin_amount: None,
        })
    );
    // The same as a GET query string.
    let raw = RawNotification {
        method: "GET".into(),
        query: encode(&params),
        headers: vec![],
        body: vec![],
    };
    assert_eq!(v3_channel().verify_notification(&raw).unwrap(), v);
    // Order of fields on the wire does not matter.
    let mut reversed = params.clone();
    reversed.reverse();
    assert_eq!(
        v3_channel()
            .verify_notification(&post(encode(&reversed)))
            .unwrap(),
        v
    );
}

#[test]
fn v0_real_alipay_notify() {
    let params = with(
        pairs(V0_CONTENT),
        &[("sign", V0_SIGN), ("sign_type", "RSA2")],
    );
    let ch = AlipayChannel::new(
        config(
            "2019073166072302",
            V0_ALIPAY_PUBLIC_KEY,
            AlipaySignType::Rsa2,
        ),
        reqwest::Client::new(),
    );
    let v = ch.verify_notification(&post(encode(&params))).unwrap();
    assert_eq!(
        v,
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "20190815155618536-564-57".into(),
            gateway_trade_no: "2019081522001468450512505578".into(),
            amount: Money::new(10, Currency::Cny).unwrap(),
            // gmt_payment 2019-08-15 15:56:24, Beijing time
            paid_at: Some(1_565_855_784_000),
            coin_amount: None,
        })
    );
    // Verifying with sign_type kept (the request rule) must fail, as with the real gateway.
    let verifier = RsaVerifier::from_text(V0_ALIPAY_PUBLIC_KEY).unwrap();
    assert!(!verify_params(
        &verifier,
        AlipaySignType::Rsa2,
        &params,
        REQUEST_UNSIGNED
    ));
    // Spaces in the form: `+` and `%20` both decode to the signed space.
    let body = encode(&params);
    assert!(body.contains("subject=%E8%AF%AD%E9%9B%80%E7%A9%BA%E9%97%B4+500"));
    let body20 = body.replace("%E9%97%B4+500", "%E9%97%B4%20500");
    assert!(ch.verify_notification(&post(body20)).is_ok());
    // Seller check with the real seller id.
    let mut cfg = config(
        "2019073166072302",
        V0_ALIPAY_PUBLIC_KEY,
        AlipaySignType::Rsa2,
    );
    cfg.seller_id = Some("2088531891668739".into());
    let ch = AlipayChannel::new(cfg, reqwest::Client::new());
    assert!(ch.verify_notification(&post(encode(&params))).is_ok());
}

#[test]
fn every_tampered_field_is_a_bad_signature() {
    let ch = v3_channel();
    let good = v3_params();
    for i in 0..good.len() {
        if good[i].0 == "sign_type" {
            continue;
        }
        let mut bad = good.clone();
        bad[i].1.push('0');
        let r = ch.verify_notification(&post(encode(&bad)));
        assert!(
            matches!(r, Err(PayError::BadSignature)),
            "tampering {} gave {r:?}",
            good[i].0
        );
    }
    // Added or removed (optional) fields are tampering too.
    let extra = with(good.clone(), &[("refund_fee", "88.88")]);
    bad_signature(ch.verify_notification(&post(encode(&extra))));
    let fewer: Vec<_> = good
        .iter()
        .filter(|(k, _)| k != "buyer_id")
        .cloned()
        .collect();
    bad_signature(ch.verify_notification(&post(encode(&fewer))));
    // sign_type other than the configured one.
    let mut rsa = good.clone();
    for (k, v) in rsa.iter_mut() {
        if k == "sign_type" {
            *v = "RSA".into();
        }
    }
    bad_signature(ch.verify_notification(&post(encode(&rsa))));
    // Signed by another key.
    let other = RsaSigner::generate().unwrap();
    let forged = signed_notify(&other, AlipaySignType::Rsa2, pairs(V3_CONTENT)).unwrap();
    bad_signature(ch.verify_notification(&post(encode(&forged))));
    // Garbage signature.
    let mut junk = good.clone();
    for (k, v) in junk.iter_mut() {
        if k == "sign" {
            *v = "!!notbase64".into();
        }
    }
    bad_signature(ch.verify_notification(&post(encode(&junk))));
}

#[test]
fn wrong_app_or_seller_is_wrong_merchant() {
    let ch = v3_channel();
    for changes in [
        vec![("app_id", Some("2021000122671081"))],
        vec![("seller_id", Some("2088102177849999"))],
        vec![("seller_id", None)],
    ] {
        let params = v3_resigned(&changes, AlipaySignType::Rsa2);
        let r = ch.verify_notification(&post(encode(&params)));
        assert!(
            matches!(r, Err(PayError::WrongMerchant)),
            "{changes:?}: {r:?}"
        );
    }
    // Without a configured seller_id, any seller passes.
    let ch = AlipayChannel::new(
        config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa2),
        reqwest::Client::new(),
    );
    let params = v3_resigned(
        &[("seller_id", Some("2088000000000001"))],
        AlipaySignType::Rsa2,
    );
    assert!(matches!(
        ch.verify_notification(&post(encode(&params))),
        Ok(NotifyVerdict::Paid(_))
    ));
}

#[test]
fn statuses_other_than_paid() {
    let ch = v3_channel();
    for (changes, status) in [
        (vec![("trade_status", Some("TRADE_CLOSED"))], "TRADE_CLOSED"),
        (
            vec![("trade_status", Some("WAIT_BUYER_PAY"))],
            "WAIT_BUYER_PAY",
        ),
        (
            vec![("trade_status", Some("trade_success"))],
            "trade_success",
        ),
        (
            vec![
                ("refund_fee", Some("10.00")),
                ("gmt_refund", Some("2024-01-02 10:00:00.123")),
                ("out_biz_no", Some("R1")),
            ],
            "PARTIAL_REFUND",
        ),
        (vec![("notify_type", Some("trade_refund"))], "trade_refund"),
    ] {
        let params = v3_resigned(&changes, AlipaySignType::Rsa2);
        assert_eq!(
            ch.verify_notification(&post(encode(&params))).unwrap(),
            NotifyVerdict::NotPaid {
                trade_no: "T20240101000001".into(),
                status: status.into()
            },
            "{changes:?}"
        );
    }
    let finished = v3_resigned(
        &[("trade_status", Some("TRADE_FINISHED"))],
        AlipaySignType::Rsa2,
    );
    assert!(matches!(
        ch.verify_notification(&post(encode(&finished))),
        Ok(NotifyVerdict::Paid(c)) if c.amount.minor() == 8888
    ));
}

#[test]
fn legacy_rsa_notify() {
    let ch = AlipayChannel::new(
        {
            let mut c = config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa);
            c.seller_id = Some("2088102177840000".into());
            c
        },
        reqwest::Client::new(),
    );
    let params = v3_resigned(&[], AlipaySignType::Rsa);
    assert_eq!(field(&params, "sign_type"), Some("RSA"));
    assert!(matches!(
        ch.verify_notification(&post(encode(&params))),
        Ok(NotifyVerdict::Paid(_))
    ));
    // RSA2 channel, RSA notify (and vice versa) fail.
    bad_signature(v3_channel().verify_notification(&post(encode(&params))));
    bad_signature(ch.verify_notification(&post(encode(&v3_params()))));
}

#[test]
fn malformed_notifications() {
    let ch = v3_channel();
    let good = encode(&v3_params());
    // Missing required fields (each).
    for key in NOTIFY_REQUIRED {
        let without: Vec<_> = v3_params().into_iter().filter(|(k, _)| k != key).collect();
        let m = malformed(ch.verify_notification(&post(encode(&without))));
        assert_eq!(m, format!("missing field {key}"));
    }
    // Bad amounts, correctly signed.
    for amount in [
        "88.888",
        "-1.00",
        "1e2",
        "88,88",
        " 88.88",
        "８８.88",
        "99999999999999.00",
    ] {
        let params = v3_resigned(&[("total_amount", Some(amount))], AlipaySignType::Rsa2);
        malformed(ch.verify_notification(&post(encode(&params))));
    }
    // "88.8" and "88" are exact yuan amounts.
    for (amount, fen) in [("88.8", 8880), ("88", 8800), ("0.01", 1)] {
        let params = v3_resigned(&[("total_amount", Some(amount))], AlipaySignType::Rsa2);
        assert!(matches!(
            ch.verify_notification(&post(encode(&params))),
            Ok(NotifyVerdict::Paid(c)) if c.amount.minor() == fen
        ));
    }
    // Duplicated keys, either order, same or different value.
    malformed(ch.verify_notification(&post(format!("{good}&trade_status=TRADE_SUCCESS"))));
    malformed(ch.verify_notification(&post(format!("total_amount=0.01&{good}"))));
    malformed(ch.verify_notification(&post(format!("{good}&sign=x"))));
    // Bad UTF-8 / percent-encoding.
    malformed(ch.verify_notification(&post(format!("{good}&x=%FF"))));
    malformed(ch.verify_notification(&post(b"app_id=\xff\xfe".to_vec())));
    malformed(ch.verify_notification(&post(format!("{good}&x=%G0"))));
    malformed(ch.verify_notification(&post(Vec::new())));
    let mut put = post(good.clone());
    put.method = "PUT".into();
    malformed(ch.verify_notification(&put));
    // A POST's query string is not the message.
    let raw = RawNotification {
        method: "POST".into(),
        query: good.clone(),
        headers: vec![],
        body: vec![],
    };
    malformed(ch.verify_notification(&raw));
    // Huge / many fields.
    malformed(ch.verify_notification(&post(format!("{good}&pad={}", "a".repeat(70_000)))));
    let many: String = (0..200).map(|i| format!("k{i}=v&")).collect();
    malformed(ch.verify_notification(&post(many)));
}

#[test]
fn hostile_bytes_never_panic() {
    let ch = v3_channel();
    let good = encode(&v3_params()).into_bytes();
    for seed in 0u32..3000 {
        let mut b: Vec<u8> = if seed % 2 == 0 {
            good.clone()
        } else {
            (0..(seed % 211))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
                .collect()
        };
        if !b.is_empty() {
            let pos = (seed as usize * 7919) % b.len();
            b[pos] = (seed >> 3) as u8;
        }
        let _ = ch.verify_notification(&post(b));
    }
}

#[test]
fn ack_bytes_and_debug_redaction() {
    let mut cfg = config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa2);
    cfg.app_auth_token = Some("202401BBsecret-token".into());
    let ch = AlipayChannel::new(cfg, reqwest::Client::new());
    assert_plain_text_ack(&ch);
    let fail = ch.ack(Ack::Failure);
    assert_eq!(fail.status, 400);
    assert_ne!(fail.body, "success");
    assert_eq!(ch.kind(), "alipay");
    assert_eq!(ch.priority(), 10);
    assert_eq!(ch.methods(), &[Method::Alipay]);
    let dbg = format!("{ch:?}");
    assert!(!dbg.contains("secret-token"), "{dbg}");
    assert!(!dbg.contains("MII"), "{dbg}");
}

// ---- create -------------------------------------------------------------------------------

fn create_req(device: Device, ua: Option<&str>) -> CreatePayment {
    CreatePayment {
        trade_no: TradeNo::first(&OrderNo::parse("K20240101120000123456789012").unwrap()),
        amount: Money::new(1230, Currency::Cny).unwrap(),
        subject: "Steam 10 & more + 月卡\n<b>".into(),
        method: Method::Alipay,
        device,
        notify_url: "https://shop.example/pay/notify/ali".into(),
        return_url: "https://shop.example/pay/return/ali?o=K1".into(),
        expires_at_ms: 1_704_082_500_500,
        user_agent: ua.map(str::to_owned),
        client_ip: None,
        payer_openid: None,
    }
}

#[tokio::test]
async fn page_and_wap_redirects_are_signed_get_urls() {
    let mut cfg = config("2021000122671080", K1_PUBLIC_KEY, AlipaySignType::Rsa2);
    cfg.gateway = "https://openapi.alipay.com/gateway.do?charset=utf-8".into();
    cfg.app_auth_token = Some("tok".into());
    cfg.sys_service_provider_id = Some("2088511833207846".into());
    cfg.mode = AlipayMode::Page;
    // Requests are stamped with the channel's clock.
    let now = 1_704_081_600_750;
    let page = AlipayChannel::new(cfg, reqwest::Client::new())
        .with_clock(std::sync::Arc::new(kami_core::ManualClock::new(now)));
    let verifier = RsaVerifier::from_text(K1_PUBLIC_KEY).unwrap();
    let PaymentAction::Redirect { url } = page
        .create(&create_req(Device::Mobile, None))
        .await
        .unwrap()
        .action
    else {
        panic!("expected a redirect");
    };
    let prefix = "https://openapi.alipay.com/gateway.do?";
    assert!(url.starts_with(prefix), "{url}");
    // `+` in sign and subject travel percent-encoded.
    let raw_sign = url
        .split("&sign=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(
        !raw_sign.contains('+') && raw_sign.contains('%'),
        "{raw_sign}"
    );
    assert!(url.contains("+%2B+"), "{url}");
    let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
    assert!(verify_params(
        &verifier,
        AlipaySignType::Rsa2,
        &params,
        REQUEST_UNSIGNED
    ));
    assert_eq!(field(&params, "method"), Some("alipay.trade.page.pay"));
    assert_eq!(field(&params, "app_id"), Some("2021000122671080"));
    assert_eq!(field(&params, "charset"), Some("utf-8"));
    assert_eq!(field(&params, "format"), Some("JSON"));
    assert_eq!(field(&params, "version"), Some("1.0"));
    assert_eq!(field(&params, "sign_type"), Some("RSA2"));
    assert_eq!(field(&params, "app_auth_token"), Some("tok"));
    assert_eq!(
        field(&params, "notify_url"),
        Some("https://shop.example/pay/notify/ali")
    );
    assert_eq!(
        field(&params, "return_url"),
        Some("https://shop.example/pay/return/ali?o=K1")
    );
    let ts = field(&params, "timestamp").unwrap();
    let ts_ms = parse_beijing_time(ts).unwrap();
    assert_eq!(ts, "2024-01-01 12:00:00");
    assert_eq!(ts_ms, now - 750, "{ts}");
    let biz: Value = serde_json::from_str(field(&params, "biz_content").unwrap()).unwrap();
    assert_eq!(
        biz,
        json!({
            "out_trade_no": "K20240101120000123456789012",
            "total_amount": "12.30",
            "subject": "Steam 10 & more + 月卡<b>",
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "time_expire": "2024-01-01 12:15:00",
            "extend_params": {"sys_service_provider_id": "2088511833207846"},
        })
    );
    assert!(params.iter().all(|(_, v)| !v.is_empty()));

    // Auto: mobile device → wap; PC with a phone's UA → wap; PC → QR.
    let auto = v3_channel();
    assert_eq!(
        auto.flavour(&create_req(Device::Mobile, None)),
        AlipayMode::Wap
    );
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
    assert_eq!(
        auto.flavour(&create_req(Device::Pc, Some(iphone))),
        AlipayMode::Wap
    );
    assert_eq!(
        auto.flavour(&create_req(
            Device::Pc,
            Some("Mozilla/5.0 (X11; Linux x86_64)")
        )),
        AlipayMode::Qr
    );
    let PaymentAction::Redirect { url } = auto
        .create(&create_req(Device::Mobile, None))
        .await
        .unwrap()
        .action
    else {
        panic!("expected a redirect");
    };
    let q = url.split_once('?').unwrap().1;
    let params = parse_form(q.as_bytes()).unwrap();
    assert!(verify_params(
        &verifier,
        AlipaySignType::Rsa2,
        &params,
        REQUEST_UNSIGNED
    ));
    assert_eq!(field(&params, "method"), Some("alipay.trade.wap.pay"));
    assert_eq!(field(&params, "app_auth_token"), None);
    let biz: Value = serde_json::from_str(field(&params, "biz_content").unwrap()).unwrap();
    assert_eq!(biz["product_code"], "QUICK_WAP_WAY");
    assert_eq!(biz["quit_url"], "https://shop.example/pay/return/ali?o=K1");
    assert!(biz.get("extend_params").is_none());

    // Non-CNY is refused before anything is sent.
    let mut usd = create_req(Device::Mobile, None);
    usd.amount = Money::new(100, Currency::Usd).unwrap();
    assert!(matches!(
        auto.create(&usd).await,
        Err(PayError::Unsupported(_))
    ));
}

#[tokio::test]
async fn unreachable_gateway_is_a_transport_error() {
    let ch = v3_channel();
    let r = ch
        .query(&TradeRef::from("K20240101120000123456789012"))
        .await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
    let r = ch.create(&create_req(Device::Pc, None)).await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
}

const V0_ALIPAY_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";
const V0_SIGN: &str = "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4ELNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0YjCh4x7wVSov+lrmOQ==";
const V0_CONTENT: &str = r#"app_id=2019073166072302&auth_app_id=2019073166072302&buyer_id=2088102534368455&buyer_logon_id=xud***@126.com&buyer_pay_amount=0.10&charset=utf-8&fund_bill_list=[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]&gmt_create=2019-08-15 15:56:22&gmt_payment=2019-08-15 15:56:24&invoice_amount=0.10&notify_id=2019081500222155624068450559358070&notify_time=2019-08-15 15:56:25&notify_type=trade_status_sync&out_trade_no=20190815155618536-564-57&point_amount=0.00&receipt_amount=0.10&seller_email=z97-yuquerevenue@service.aliyun.com&seller_id=2088531891668739&subject=语雀空间 500人规模&total_amount=0.10&trade_no=2019081522001468450512505578&trade_status=TRADE_SUCCESS&version=1.0"#;
const V0B_BODY: &str = r#"{"alipay_open_file_upload_response":{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"},"sign":"F+LDzpTNiavn7xVZPGuPCSSVRSmWzJGgtuji6tVELGEaqMaNj0jRKXUEr5nloZJBBmwEnddOyCjjepMmrTKTvoOqQ0Efxpr/R1iEeHTHVbb/Q8TTh6Up5gHJDkILdaWS2q1cWeQ6VT+HQY9P3WRXS7uhILHuDODIhpAyCu5KhWGt0rMCIG+Im6NODJP2oohtSCtmTFXg58HH587Z2y2bdbjzOxLvzD9IrU1imghXQ2S/Q+wMIvRk9on6cWnBLkrNvJKapA2ReNGWOwyuASvB9zDVzhMPbR+3mfRGkVDxsq5HYLjBKGskJMXHw0HuugZij6ScRuaLPODhmHwr/pJ9yw=="}"#;
const V1_CONTENT: &str = r#"app_id=2021000122671080&biz_content={"out_trade_no":"T20240101000001","total_amount":"88.88","subject":"测试商品"}&charset=utf-8&format=JSON&method=alipay.trade.precreate&notify_url=https://example.com/alipay/notify&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"#;
const V1_SIGN: &str = "M6+WCM6QGFNwQt0fuNnSKcmPGEt8F0j8dVoIMCV0nmZJCyQ2xUfnKM1V1ecqzK/CDzLJLoJzhmscLhyDsjtfGq6zfgY2FDBwW71evZCquNoubkyNjt6lEg9KhQIsJyi/WOaM7pd2S349o3ZDUyLPADvMMElmg0iC3p+jqDeW4zKaXdF7j219oB1ZhHu5g882oB55r99lTbCTLJxuZmMNgGldIfXQgmrp3r+cexN2iywGpY2ETGTy0pcjVtcClTp1Ifj3RVUxWb+gjF6ljYo4Z+3yoL5thhJ8y0K43id9MNEdesIlw69V/X6jXJc+RKRMy3+tvXxb4/ahJQVAiH8BMw==";
const V2_SIGN: &str = "GbkTDa8CFLwnl72PDH5q8ktbgAbCyjAZclNg7S4tPzQ2FRmy8XAqUNmmdmumjETuGmJTOMK5ITVWOGn3U7vkmbQsCUSJH+dkXRPqBWs7ixpQLZ2w9l2z4Xnl6+9b591TrS7iuv1hh9A+B4q2rQqKHZID1z76cvv7DTxcOdErOvtEqYWDTu+9Sdbn7Np964XDJpWhl60QNghdpC0YxAEe4pGThS5RZXnUJDeqlrEj6A8bcvJs7p3FjAeO/nofPPYpPGzUJg3HX+LyC9VVI5ex9x0q/nOGzJdI3k1pmmuoImKAnbfm/VgV63w93iqVb3DpwRi1i4h7ApMm6GR2E3gKdA==";
const V3_CONTENT: &str = r#"app_id=2021000122671080&auth_app_id=2021000122671080&buyer_id=2088102177846880&buyer_logon_id=158****1234&buyer_pay_amount=88.88&charset=utf-8&fund_bill_list=[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]&gmt_create=2024-01-01 12:00:00&gmt_payment=2024-01-01 12:00:09&invoice_amount=88.88&notify_id=2024010100222120010012345678901234&notify_time=2024-01-01 12:00:10&notify_type=trade_status_sync&out_trade_no=T20240101000001&point_amount=0.00&receipt_amount=88.88&seller_email=shop@example.com&seller_id=2088102177840000&subject=测试商品&total_amount=88.88&trade_no=2024010122001400001234567890&trade_status=TRADE_SUCCESS&version=1.0"#;
const V3_SIGN: &str = "I4ifOW13WdUxcHdU1PVjq26iRgHyAag+n6lysW5aLVeO82QXLqFYXLHmAvRHhU0VhZm20Qaa/mSD+eEgjS+K9P+NW5bR9KfxG22iCLeXq2negeiCyOjnlAJm47RctY9Xlwb2boQrxv6s1TPDWcVDiAswsg7WGCKhFpfbDpHD7Jsd+nrE+luWN2Xfc5tK0XbZNO68USduHlduO1J27M2AKEUvRB3EcFQBgK201ns1sY4Tzh7O+6mTEilrIvSZEQa/YdKaj24b0rJm2a1NdCtAjy2eaLMOs6+yeel9KMmzVVU6CA/EXC2mXKJqUKHVNFMnm1nEKNgpod3ghBT4Gl+GTg==";
const V4_BODY: &str = r#"{"alipay_trade_precreate_response":{"code":"10000","msg":"Success","out_trade_no":"T20240101000001","qr_code":"https:\/\/qr.alipay.com\/bax08431ljhokirwl38f00a7"},"sign":"g6ov7TuyL9K+to+D5qu+qVavChUVlUgJQjgfu3xNXcjWuxgXnInmmJZuSLQHOhFhKTNkXlkoiMUXeE6Gn93OcYd8SwknIEF0D0yrEJz23yQQU4Usl5ovWh7ZqApv8f9IPTTHOWzAKhoeoC00oHm+/8K4hDWqy88t14JdBwf36LzKoEWYMtAQxfPecikHqRxMZ+VQoAmtDOANRPJDHAcT5upLr4DqT6K2AKm0ulCAcD4XIkRTDdmfzPR6zOOF3HFJsJ8PzVf3XjLPMfDDaCa0Etloe1N+IsU9pqgsXt86M0ridDW57UjHOpldQg2vtqSc+fboMjtDCFzuJfZwl+WD8w=="}"#;
const V5_BODY: &str = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"},"sign":"K45eUcyXIZtY8df1F9kpCNi8Y9nvWgkMIWiHPkt4zB5vTkzsBIb1U5hEsg6sxL8dAqfCnG/0R9bEtgn9LmUIPFh7FNhewkTMbLzsR5OhHs1Rvn5I18U5KHjNXBH8smfJOKXvfkA9TfaQBPmMzobuy6A7v8B7Gr7sYzVqrPshZU1udUsO2aD+xwu3486THqUjaxQfUDTDH8nTmZRBt11cxdW8N+IpS8GuelACrHgx1/tZUl46arBXRa2mo35Rc2t1YgG3vu1QpSUX0alHl7znf4SAf7T8NKffqXdjaq5HQVV5ZSxqXQTbwCoCZhc1dR1OCqZsWR9uB1zYyQ/2c58dXw=="}"#;
const K1_TEST_ONLY_PRIVATE_KEY_PKCS1_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAhL3pWP55B1fFkvYOOtcfOEUhvBodHpLnc9KmuAU4H8V+ocyKTckacBhJrwIT8ILMzpflfqpzl+dvpJIsx3IbNB1Pmy0V949+vCoiBEa0Maw1dgJfIwghrsKL41wqzeaFqC6CehiefvwTKrS8zxIK1gDHipsimNsDbqCYmojDxhyorO4CC0iXld+1+LQxajf9ZdG1nLDd9dgVGiMkEDUSGXKCt6NpoDHp/6ptAcYSvnn5W4YUNWdy+wVxT0jyrbP1gNUDG1DVtFLrZXNQ9vY5wRyaix8vUccQ3s5o186tPgpup++lU3v2NgzybF9JzJWPdanDv5cJcJyFe43LNdD9mwIDAQABAoIBAE6ohsUgjjFmtoIeYlJFtY9Pj+z6AHVkkdiVZAu5tAdHrYFNRktPtuXjzo3xCkXEDH8DjY+gi7zg/Mwlfnl1SV95WvnWHqVDF9OCmAO2rgKdTFSwlRWaNPNs/x3sOMUoK918Kf8V5Z3T27u7vAJsa5VigtvEkBzJ81+ztJomHvSemrMGoQNPSWenaRHsxbkTtvHWOHLLYjzahFDUbzVx2QdVeBPXPOnG4Nkk1uIbYasqSJNUAlaSCshpgIJQ3M7I1Cef7hcLcOUn9OamkUXipEQRKNu6XhZ32yZbhkcvM7irtWtLRaPOj98U7/Ful0W1qM2/C1jTJ3qYP1CBrZKsW8ECgYEA3b/hneLaseoE6ATFWhjrdQY9VPjJjz7VQGuDzy3lLDiRL2/9KrhU1HyAYQFaC03+dZj9Nr2GDua88vrdwPtOZoe5REn+U+YyAHhNsqKYGoVL/RbyHagmDDEJfhPOv3tMElI9hZlfsF5QRsqS9CnhLej7GJNA5wEhXBKeJL54JTsCgYEAmT6b5F2wy2jBi7o9q6Io+AFOcqEzsf0cpoeAJQU3YRThkQZoCDmcvfh21jl7A5538YulVo8xnPcSeq3SzmW9p34HW7UNZaI4ZeH9flecimNuEmWAM6pJ3jnuJwFSZSs8rQOdRh5EkLDHkswssQ0jrUaSJPzKrc4Vpvt9RadlgyECgYEAgOMic+6DRp3KtEDxpGiPkrlJtLXWEZhnwsW7GxSF+6n1WSkycT4qsEadJ8TtXVy75gZCRyrpXIfokyIU+jIXY6jHmlWXqZRGw9co8gdneSK5BCXuHCa71qI57jn9FXbIxG1grOJ0p8Jpznu35orhAxpDuAj+1EXn6eg4WwsKMjkCgYBaAzOQdRPmtvaQu2mECjEkU6gfnt59mt4cVxUHKcQ4qwo/pFKxGh4eW/Z5qLPAEXIEmHEaoeuTdnENTFK513sKCfYKgROIcjvMZG0ArDeP9g1ukt41+r1+4eooURdzw2zVd30G9bpyftQLPxC1QrGFEyG+xhnK83U2axxPMJ9o4QKBgAcDHoC8boYYJ7fk72RbJv4G6uGKkdPTeu1TzwMHeTB6uEa0jTKHwxc83O0rYVgBVjh2WckEU18zhsAT/YjpNyq5wl2ZXzoeHrAANTZmtVxBCEDmkwy535hjzo4NIvDJoUoAysfxR8+/e9MGDJxYoHsOVnXx5JUWRO0XbB5F2o1Y\n-----END RSA PRIVATE KEY-----\n";
const K1_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhL3pWP55B1fFkvYOOtcfOEUhvBodHpLnc9KmuAU4H8V+ocyKTckacBhJrwIT8ILMzpflfqpzl+dvpJIsx3IbNB1Pmy0V949+vCoiBEa0Maw1dgJfIwghrsKL41wqzeaFqC6CehiefvwTKrS8zxIK1gDHipsimNsDbqCYmojDxhyorO4CC0iXld+1+LQxajf9ZdG1nLDd9dgVGiMkEDUSGXKCt6NpoDHp/6ptAcYSvnn5W4YUNWdy+wVxT0jyrbP1gNUDG1DVtFLrZXNQ9vY5wRyaix8vUccQ3s5o186tPgpup++lU3v2NgzybF9JzJWPdanDv5cJcJyFe43LNdD9mwIDAQAB";
const K3_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk7LzhmMa2c4qQd4fqAqenfbuFoA7stPKvoS1LrZEsVnOOGUUjwoa1oU9xsSPjcOWhIerU/VAN4J95GIAXx59ipcleIyfLn2FhHXPgLJpvo+b2jJFyn/1/DbeJDh+0yDVAOf50Z7HhI0mdUhFMkXlT7BU0ZMtJf/TmISFEfhDU/w6qFd6D42L97byAkq0K6LroglSVF24GqJEa7hSeUIkZWj7RasykXrc2uVJ1+ejkXE0LyPxa2AHykMGbJLf5SiZvaNzUZgnKIR36mLOHpQ/2JCXxhXZYUWHzy0kMH54JcUEeksFWBYLGvLjV1phbcUIc3Q76tIuqApY6E222OoZZQIDAQAB";
