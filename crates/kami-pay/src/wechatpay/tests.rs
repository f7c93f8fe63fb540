#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::TradeRef;
use base64::Engine;

use super::notify::Envelope;
use super::vectors::*;
use super::*;
use crate::crypto::{aes256gcm_decrypt, Certificate, RsaHash};
use crate::PaymentConfirmation;
use kami_core::{ManualClock, Money};
use std::sync::Arc;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const MCHID: &str = "1230000109";
const APPID: &str = "wxd678efh567hg6787";
const W4_KEY: &[u8] = b"wechatpay-apiv3-test-key-32bytes";
const W4_TRADE: &str = "1217752501201407033233368018";
/// The fixed time of the test channels' clock (2026-01-01T00:00:00Z).
const NOW: i64 = 1_767_225_600;
const PUB_ID: &str = "PUB_KEY_ID_0000000000000024101100397200000006";

fn k2_signer() -> RsaSigner {
    RsaSigner::from_text(&K2_TESTING_KEY.replace("TESTING KEY", "PRIVATE KEY")).unwrap()
}

fn k2_cert() -> Certificate {
    Certificate::from_text(K2_CERT).unwrap()
}

fn cert_mode() -> PlatformKeys {
    PlatformKeys::Certificates(vec![k2_cert()])
}

fn pubkey_mode() -> PlatformKeys {
    PlatformKeys::PublicKey {
        id: PUB_ID.into(),
        key: k2_signer().verifier().unwrap(),
    }
}

fn channel_with(platform: PlatformKeys, apiv3_key: &[u8], mode: WechatMode) -> WechatPayChannel {
    WechatPayChannel::new(
        WechatPayConfig {
            id: ChannelId::parse("wx-main").unwrap(),
            methods: vec![Method::Wxpay],
            priority: 3,
            api_base: "http://127.0.0.1:9/".into(),
            mchid: MCHID.into(),
            appid: APPID.into(),
            merchant_serial_no: "D7CE59D1F522D701".into(),
            merchant_private_key: k2_signer(),
            apiv3_key: apiv3_key.to_vec(),
            platform,
            mode,
            jsapi: None,
        },
        reqwest::Client::new(),
    )
    .with_clock(Arc::new(ManualClock::new(NOW * 1000)))
}

fn channel(platform: PlatformKeys) -> WechatPayChannel {
    channel_with(platform, W4_KEY, WechatMode::Auto)
}

fn w4_body() -> String {
    format!(
        r#"{{"id":"EV-2018022511223320873","create_time":"2024-01-01T12:00:10+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"{W4_CT}","associated_data":"transaction","nonce":"Z1a2b3c4d5e6"}}}}"#
    )
}

const W4_TS: i64 = 1704081610;

fn w4_headers() -> Vec<(String, String)> {
    vec![
        ("wechatpay-timestamp".into(), W4_TS.to_string()),
        (
            "wechatpay-nonce".into(),
            "0c5d8e1a7b3f4e2d9a6b5c4d3e2f1a0b".into(),
        ),
        ("wechatpay-serial".into(), "D7CE59D1F522D701".into()),
        (
            "wechatpay-signature-type".into(),
            "WECHATPAY2-SHA256-RSA2048".into(),
        ),
        ("wechatpay-signature".into(), W4_SIG.into()),
        ("content-type".into(), "application/json".into()),
    ]
}

fn raw(headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers,
        body: body.into(),
    }
}

fn w4_paid() -> NotifyVerdict {
    NotifyVerdict::Paid(PaymentConfirmation {
        trade_no: W4_TRADE.into(),
        gateway_trade_no: "4200000000202401010000000001".into(),
        amount: Money::new(100, Currency::Cny).unwrap(),
        // success_time 2024-01-01T12:00:09+08:00
        paid_at: Some(1_704_081_609_000),
        coin_amount: None,
    })
}

/// A notification signed now-ish with the K2 key, in public-key mode.
struct Built {
    headers: Vec<(String, String)>,
    body: String,
}

fn build(event_type: &str, plain: &str, ts: i64) -> Built {
    build_with(event_type, plain, ts, W4_KEY, "transaction", "n0nce1234567")
}

fn build_with(event_type: &str, plain: &str, ts: i64, key: &[u8], aad: &str, nonce: &str) -> Built {
    let ct =
        crate::crypto::aes256gcm_encrypt(key, nonce.as_bytes(), aad.as_bytes(), plain.as_bytes())
            .unwrap();
    let body = serde_json::json!({
        "id": "EV-1",
        "create_time": "2024-01-01T12:00:10+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": B64.encode(ct),
            "associated_data": aad,
            "nonce": nonce,
        }
    })
    .to_string();
    signed(body, ts)
}

fn signed(body: String, ts: i64) -> Built {
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let sig = k2_signer()
        .sign_base64(
            RsaHash::Sha256,
            &response_message(&ts.to_string(), nonce, body.as_bytes()),
        )
        .unwrap();
    Built {
        headers: vec![
            ("wechatpay-timestamp".into(), ts.to_string()),
            ("wechatpay-nonce".into(), nonce.into()),
            ("wechatpay-serial".into(), PUB_ID.into()),
            (
                "wechatpay-signature-type".into(),
                "WECHATPAY2-SHA256-RSA2048".into(),
            ),
            ("wechatpay-signature".into(), sig),
        ],
        body,
    }
}

fn tx_json(state: &str) -> serde_json::Value {
    serde_json::json!({
        "mchid": MCHID, "appid": APPID, "out_trade_no": "K20240101120000123456789012",
        "transaction_id": "4200000001202401010000000002", "trade_type": "NATIVE",
        "trade_state": state, "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
        "success_time": "2024-01-01T12:00:09+08:00", "payer": {"openid": "o1"},
        "amount": {"total": 1230, "payer_total": 1230, "currency": "CNY", "payer_currency": "CNY"}
    })
}

fn verdict(ch: &WechatPayChannel, b: &Built, now: i64) -> Result<NotifyVerdict, PayError> {
    ch.verify_notification_at(&raw(b.headers.clone(), b.body.clone()), now)
}

// ---------------------------------------------------------------------------------------
// B.9 vectors

#[test]
fn x0_signer_vector() {
    assert_eq!(
        k2_signer().sign_base64(RsaHash::Sha256, b"source").unwrap(),
        X0_SIGNER_SIG
    );
}

#[test]
fn k2_key_and_cert_match() {
    let cert = k2_cert();
    assert_eq!(cert.serial_hex, "D7CE59D1F522D701");
    assert_eq!(cert.not_before, 1619513723); // 2021-04-27T08:55:23Z
    assert_eq!(cert.not_after, 1934873723); // 2031-04-25T08:55:23Z
    assert!(cert
        .verifier
        .verify_base64(RsaHash::Sha256, b"source", X0_SIGNER_SIG));
}

#[test]
fn w1_native_request_authorization() {
    let header = authorization(
        &k2_signer(),
        MCHID,
        "D7CE59D1F522D701",
        "POST",
        "/v3/pay/transactions/native",
        "1554208460",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        W1_BODY,
    )
    .unwrap();
    assert_eq!(
        header,
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1230000109\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",signature=\"{W1_SIG}\",timestamp=\"1554208460\",serial_no=\"D7CE59D1F522D701\""
        )
    );
    let p = AuthorizationParams::parse(&header).unwrap();
    assert_eq!(p.signature, W1_SIG);
    assert_eq!(p.header_value(), header);
    // The message is the five-line form.
    let m = request_message(
        "POST",
        "/v3/pay/transactions/native",
        "1554208460",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        W1_BODY,
    );
    assert!(m.starts_with(
        "POST\n/v3/pay/transactions/native\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{"
    ));
    assert!(m.ends_with("}\n"));
}

#[test]
fn w2_get_request_signature() {
    let m = request_message(
        "GET",
        "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1230000109",
        "1554208460",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        "",
    );
    assert!(m.ends_with("593BEC0C930BF1AFEB40B4A08C8FB242\n\n"));
    assert_eq!(
        k2_signer()
            .sign_base64(RsaHash::Sha256, m.as_bytes())
            .unwrap(),
        W2_SIG
    );
}

#[test]
fn w3_response_signature() {
    let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#;
    let h = SignedHeaders {
        timestamp: "1554209980".into(),
        nonce: "c5ac7061fccab6bf3e254dcf98995b8c".into(),
        signature: W3_SIG.into(),
        serial: "F5765756002FDD77".into(),
        signature_type: Some(SIGNATURE_SCHEME.into()),
    };
    assert_eq!(
        response_message(&h.timestamp, &h.nonce, body),
        b"1554209980\nc5ac7061fccab6bf3e254dcf98995b8c\n{\"code_url\":\"weixin://wxpay/bizpayurl?pr=p4lpSuKzz\"}\n"
    );
    // wechatpay-go's public-key-mode ID for the same key.
    let keys = PlatformKeys::PublicKey {
        id: "F5765756002FDD77".into(),
        key: k2_cert().verifier,
    };
    assert_eq!(verify_signature(&keys, &h, body, 1554209980), Ok(()));
    assert_eq!(verify_signature(&keys, &h, body, 1554209980 + 300), Ok(()));
    assert_eq!(verify_signature(&keys, &h, body, 1554209980 - 300), Ok(()));
    assert_eq!(
        verify_signature(&keys, &h, body, 1554209980 + 301),
        Err(SignatureFailure::Stale)
    );
    assert_eq!(
        verify_signature(&keys, &h, body, 1554209980 - 301),
        Err(SignatureFailure::Stale)
    );
    // The raw body, not a re-serialisation: one extra space breaks it.
    let spaced = br#"{"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#;
    assert_eq!(
        verify_signature(&keys, &h, spaced, 1554209980),
        Err(SignatureFailure::Invalid)
    );
    // The certificate is not valid in 2019, so cert mode refuses it then.
    assert_eq!(
        verify_signature(
            &cert_mode(),
            &SignedHeaders {
                serial: "D7CE59D1F522D701".into(),
                ..h.clone()
            },
            body,
            1554209980
        ),
        Err(SignatureFailure::UnknownSerial)
    );
}

#[test]
fn w4_notification_is_paid_in_cert_mode() {
    let ch = channel(cert_mode());
    let body = w4_body();
    let v = ch
        .verify_notification_at(&raw(w4_headers(), body.clone()), W4_TS)
        .unwrap();
    assert_eq!(v, w4_paid());
    // Mixed-case header names are found too.
    let upper: Vec<(String, String)> = w4_headers()
        .into_iter()
        .map(|(k, v)| (k.replace("wechatpay", "Wechatpay"), v))
        .collect();
    assert_eq!(
        ch.verify_notification_at(&raw(upper, body.clone()), W4_TS + 299)
            .unwrap(),
        w4_paid()
    );
    // Decrypting the recorded resource gives the recorded plaintext.
    let env: Envelope = serde_json::from_str(&body).unwrap();
    assert_eq!(
        decrypt_resource(W4_KEY, &env.resource).unwrap(),
        W4_PLAIN.as_bytes()
    );
    // Without Signature-Type the signature still verifies (header optional).
    let no_type: Vec<_> = w4_headers()
        .into_iter()
        .filter(|(k, _)| k != "wechatpay-signature-type")
        .collect();
    assert_eq!(
        ch.verify_notification_at(&raw(no_type, body), W4_TS)
            .unwrap(),
        w4_paid()
    );
}

#[test]
fn w4_every_tampered_header_or_byte_is_rejected() {
    let ch = channel(cert_mode());
    let body = w4_body();
    for (i, (name, value)) in w4_headers().into_iter().enumerate() {
        if name == "content-type" {
            continue;
        }
        let mut changed = w4_headers();
        changed[i].1 = match name.as_str() {
            "wechatpay-timestamp" => (W4_TS + 1).to_string(),
            "wechatpay-signature" => {
                let mut s = value.clone().into_bytes();
                s[10] = if s[10] == b'A' { b'B' } else { b'A' };
                String::from_utf8(s).unwrap()
            }
            "wechatpay-signature-type" => "WECHATPAY2-SHA256-RSA4096".into(),
            _ => format!("{value}0"),
        };
        let r = ch.verify_notification_at(&raw(changed, body.clone()), W4_TS);
        assert!(
            matches!(r, Err(PayError::BadSignature)),
            "tampering {name} gave {r:?}"
        );
        // Missing header.
        let mut missing = w4_headers();
        missing.remove(i);
        let r = ch.verify_notification_at(&raw(missing, body.clone()), W4_TS);
        if name == "wechatpay-signature-type" {
            assert!(r.is_ok());
        } else {
            assert!(
                matches!(&r, Err(PayError::Malformed(m)) if m.contains(&name)),
                "missing {name} gave {r:?}"
            );
        }
        // Duplicated header (even with the same value).
        let mut dup = w4_headers();
        dup.push((name.clone(), value.clone()));
        let r = ch.verify_notification_at(&raw(dup, body.clone()), W4_TS);
        assert!(
            matches!(&r, Err(PayError::Malformed(m)) if m.contains("duplicate")),
            "duplicate {name} gave {r:?}"
        );
    }
    // Every field value in the body: flip one character inside each JSON string.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut strings = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Object(m) => m.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&v, &mut strings);
    assert!(strings.len() >= 10);
    for s in strings {
        let tampered = body.replacen(&format!("\"{s}\""), &format!("\"{s}x\""), 1);
        assert_ne!(tampered, body);
        let r = ch.verify_notification_at(&raw(w4_headers(), tampered), W4_TS);
        assert!(matches!(r, Err(PayError::BadSignature)), "{s}: {r:?}");
    }
    // Whitespace added to the body.
    let r = ch.verify_notification_at(&raw(w4_headers(), format!("{body} ")), W4_TS);
    assert!(matches!(r, Err(PayError::BadSignature)));
    // Probe signature.
    let mut probe = w4_headers();
    probe[4].1 = format!("{SIGNTEST_PREFIX}{W4_SIG}");
    let r = ch.verify_notification_at(&raw(probe, body.clone()), W4_TS);
    assert!(matches!(r, Err(PayError::BadSignature)), "{r:?}");
    // Stale both ways.
    for now in [W4_TS + 301, W4_TS - 301, W4_TS + 86_400] {
        let r = ch.verify_notification_at(&raw(w4_headers(), body.clone()), now);
        assert!(matches!(r, Err(PayError::Stale)), "{r:?}");
    }
    // The channel's own clock (2026): the vector is from 2024, long stale.
    let r = ch.verify_notification(&raw(w4_headers(), body.clone()));
    assert!(matches!(r, Err(PayError::Stale)), "{r:?}");
    // Another merchant / app configured: the same authentic notification is not ours.
    let mut other = channel(cert_mode());
    other.cfg.mchid = "1230000110".into();
    let r = other.verify_notification_at(&raw(w4_headers(), body.clone()), W4_TS);
    assert!(matches!(r, Err(PayError::WrongMerchant)), "{r:?}");
    let mut other = channel(cert_mode());
    other.cfg.appid = "wxd678efh567hg6788".into();
    let r = other.verify_notification_at(&raw(w4_headers(), body.clone()), W4_TS);
    assert!(matches!(r, Err(PayError::WrongMerchant)), "{r:?}");
    // Another APIv3 key: authentic but undecryptable.
    let other = channel_with(
        cert_mode(),
        b"wechatpay-apiv3-test-key-32bytez",
        WechatMode::Auto,
    );
    let r = other.verify_notification_at(&raw(w4_headers(), body.clone()), W4_TS);
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
    // Public-key mode with the same key but a PUB_KEY_ID: the cert serial is unknown.
    let r = channel(pubkey_mode()).verify_notification_at(&raw(w4_headers(), body), W4_TS);
    assert!(matches!(r, Err(PayError::BadSignature)), "{r:?}");
}

#[test]
fn w5_jsapi_pay_sign() {
    let m = "wxd678efh567hg6787\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n";
    assert_eq!(
        k2_signer()
            .sign_base64(RsaHash::Sha256, m.as_bytes())
            .unwrap(),
        W5_SIG
    );
}

#[test]
fn x0_notify_signature_verifies_but_aes128_key_is_refused() {
    let h = SignedHeaders {
        timestamp: "1624523846".into(),
        nonce: "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz".into(),
        signature: X0_NOTIFY_SIG.into(),
        serial: "D7CE59D1F522D701".into(),
        signature_type: None,
    };
    let body = X0_NOTIFY_BODY.as_bytes();
    assert_eq!(verify_signature(&cert_mode(), &h, body, 1624523846), Ok(()));
    // Its resource uses a 16-byte key (AES-128-GCM, Go accepts it); APIv3 keys are 32 bytes.
    let ch = channel_with(cert_mode(), b"testMchAPIv3Key0", WechatMode::Auto);
    let headers = vec![
        ("wechatpay-timestamp".into(), h.timestamp.clone()),
        ("wechatpay-nonce".into(), h.nonce.clone()),
        ("wechatpay-serial".into(), h.serial.clone()),
        ("wechatpay-signature".into(), h.signature.clone()),
    ];
    let r = ch.verify_notification_at(&raw(headers, body.to_vec()), 1624523846);
    assert!(matches!(r, Err(PayError::Config(_))), "{r:?}");
    assert!(ch.config().validate().is_err());
    // The X0 AES vector likewise does not open with AES-256.
    let ct = B64.decode("FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC").unwrap();
    assert!(aes256gcm_decrypt(
        b"testAPIv3Key0000",
        b"wCq51qZv4Yfg",
        b"Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
        &ct
    )
    .is_err());
    assert!(X0_NOTIFY_PLAIN.contains("\"mchid\":\"1234567890\""));
}

// ---------------------------------------------------------------------------------------
// Fresh notifications (public-key mode)

#[test]
fn fresh_notification_paid_and_not_paid() {
    let ch = channel(pubkey_mode());
    let now = NOW;
    let b = build("TRANSACTION.SUCCESS", &tx_json("SUCCESS").to_string(), now);
    assert_eq!(
        ch.verify_notification(&raw(b.headers.clone(), b.body.clone()))
            .unwrap(),
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "K20240101120000123456789012".into(),
            gateway_trade_no: "4200000001202401010000000002".into(),
            amount: Money::new(1230, Currency::Cny).unwrap(),
            paid_at: Some(1_704_081_609_000),
            coin_amount: None,
        })
    );
    // Other trade states / events are authentic but not payments.
    for state in ["NOTPAY", "CLOSED", "REFUND", "success"] {
        let b = build("TRANSACTION.SUCCESS", &tx_json(state).to_string(), now);
        assert_eq!(
            verdict(&ch, &b, now).unwrap(),
            NotifyVerdict::NotPaid {
                trade_no: "K20240101120000123456789012".into(),
                status: state.into()
            }
        );
    }
    let b = build("TRANSACTION.CLOSED", &tx_json("SUCCESS").to_string(), now);
    assert!(matches!(
        verdict(&ch, &b, now).unwrap(),
        NotifyVerdict::NotPaid { .. }
    ));
    // A refund notification (no appid, refund_status).
    let refund = serde_json::json!({
        "mchid": MCHID, "out_trade_no": "K20240101120000123456789012",
        "transaction_id": "4200000001202401010000000002", "out_refund_no": "R1",
        "refund_id": "50000000382019052709732678859", "refund_status": "SUCCESS",
        "amount": {"total": 1230, "refund": 100, "payer_total": 1230, "payer_refund": 100}
    });
    let b = build("REFUND.SUCCESS", &refund.to_string(), now);
    assert_eq!(
        verdict(&ch, &b, now).unwrap(),
        NotifyVerdict::NotPaid {
            trade_no: "K20240101120000123456789012".into(),
            status: "SUCCESS".into()
        }
    );
    // An unrelated event without out_trade_no.
    let b = build(
        "PAYSCORE.USER_OPEN_SERVICE",
        &format!(r#"{{"mchid":"{MCHID}","appid":"{APPID}"}}"#),
        now,
    );
    assert_eq!(
        verdict(&ch, &b, now).unwrap(),
        NotifyVerdict::NotPaid {
            trade_no: String::new(),
            status: "PAYSCORE.USER_OPEN_SERVICE".into()
        }
    );
}

#[test]
fn every_checked_resource_field_is_enforced() {
    let ch = channel(pubkey_mode());
    let now = NOW;
    let check = |tx: serde_json::Value| {
        verdict(
            &ch,
            &build("TRANSACTION.SUCCESS", &tx.to_string(), now),
            now,
        )
    };
    let with = |path: &[&str], value: serde_json::Value| {
        let mut tx = tx_json("SUCCESS");
        let mut cur = &mut tx;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur.as_object_mut()
            .unwrap()
            .insert(path[path.len() - 1].to_owned(), value);
        tx
    };
    let without = |path: &[&str]| {
        let mut tx = tx_json("SUCCESS");
        let mut cur = &mut tx;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur.as_object_mut().unwrap().remove(path[path.len() - 1]);
        tx
    };
    use serde_json::json;
    assert!(matches!(
        check(with(&["mchid"], json!("1230000110"))),
        Err(PayError::WrongMerchant)
    ));
    assert!(matches!(
        check(with(&["appid"], json!("wx0000"))),
        Err(PayError::WrongMerchant)
    ));
    assert!(matches!(
        check(without(&["mchid"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["appid"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["out_trade_no"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(with(&["out_trade_no"], json!(""))),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["transaction_id"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["amount"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["amount", "total"])),
        Err(PayError::Malformed(_))
    ));
    assert!(matches!(
        check(without(&["amount", "currency"])),
        Err(PayError::Malformed(_))
    ));
    for bad in [
        json!(-1),
        json!(12.5),
        json!("1230"),
        json!(1_000_000_000_001i64),
    ] {
        let r = check(with(&["amount", "total"], bad.clone()));
        assert!(matches!(r, Err(PayError::Malformed(_))), "{bad}: {r:?}");
    }
    for bad in [json!("XXX"), json!("cny"), json!(156)] {
        let r = check(with(&["amount", "currency"], bad.clone()));
        assert!(matches!(r, Err(PayError::Malformed(_))), "{bad}: {r:?}");
    }
    assert!(matches!(
        check(with(&["mchid"], json!(1230000109))),
        Err(PayError::Malformed(_))
    ));
    // Changed amount and trade are reported as-is for the order engine to compare.
    match check(with(&["amount", "total"], json!(1))).unwrap() {
        NotifyVerdict::Paid(c) => assert_eq!(c.amount.minor(), 1),
        v => panic!("{v:?}"),
    }
    match check(with(&["amount", "currency"], json!("USD"))).unwrap() {
        NotifyVerdict::Paid(c) => assert_eq!(c.amount.currency(), Currency::Usd),
        v => panic!("{v:?}"),
    }
    // Duplicate keys in the decrypted JSON are not guessed at.
    let dup = tx_json("SUCCESS")
        .to_string()
        .replacen('{', &format!("{{\"mchid\":\"{MCHID}\","), 1);
    let r = verdict(&ch, &build("TRANSACTION.SUCCESS", &dup, now), now);
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
}

#[test]
fn resource_and_envelope_faults_are_malformed() {
    let ch = channel(pubkey_mode());
    let now = NOW;
    let plain = tx_json("SUCCESS").to_string();
    // Wrong key, wrong AAD, wrong nonce length.
    let b = build_with(
        "TRANSACTION.SUCCESS",
        &plain,
        now,
        b"wechatpay-apiv3-test-key-32bytez",
        "transaction",
        "n0nce1234567",
    );
    assert!(matches!(verdict(&ch, &b, now), Err(PayError::Malformed(_))));
    let b = build("TRANSACTION.SUCCESS", &plain, now);
    let other_aad = signed(
        b.body.replace(
            "\"associated_data\":\"transaction\"",
            "\"associated_data\":\"certificate\"",
        ),
        now,
    );
    assert!(matches!(
        verdict(&ch, &other_aad, now),
        Err(PayError::Malformed(_))
    ));
    let no_aad = signed(
        b.body.replace("\"associated_data\":\"transaction\",", ""),
        now,
    );
    assert!(matches!(
        verdict(&ch, &no_aad, now),
        Err(PayError::Malformed(_))
    ));
    let short_nonce = signed(b.body.replace("n0nce1234567", "n0nce123456"), now);
    assert!(matches!(
        verdict(&ch, &short_nonce, now),
        Err(PayError::Malformed(_))
    ));
    let other_alg = signed(b.body.replace("AEAD_AES_256_GCM", "AEAD_SM4_GCM"), now);
    assert!(
        matches!(verdict(&ch, &other_alg, now), Err(PayError::Malformed(m)) if m.contains("algorithm"))
    );
    let other_type = signed(b.body.replace("encrypt-resource", "plain"), now);
    assert!(matches!(
        verdict(&ch, &other_type, now),
        Err(PayError::Malformed(_))
    ));
    // Ciphertext tampered and re-signed: the GCM tag catches it.
    let v: serde_json::Value = serde_json::from_str(&b.body).unwrap();
    let ct = v["resource"]["ciphertext"].as_str().unwrap();
    let mut raw_ct = B64.decode(ct).unwrap();
    raw_ct[3] ^= 0x01;
    let flipped = signed(b.body.replace(ct, &B64.encode(&raw_ct)), now);
    assert!(matches!(
        verdict(&ch, &flipped, now),
        Err(PayError::Malformed(_))
    ));
    let not_b64 = signed(b.body.replace(ct, "***"), now);
    assert!(matches!(
        verdict(&ch, &not_b64, now),
        Err(PayError::Malformed(_))
    ));
    // Not JSON, not an object, missing resource, plaintext not JSON.
    for body in [
        "",
        "null",
        "[]",
        "{\"event_type\":\"TRANSACTION.SUCCESS\"}",
        "{",
        "\u{feff}{}",
    ] {
        let r = verdict(&ch, &signed(body.to_owned(), now), now);
        assert!(matches!(r, Err(PayError::Malformed(_))), "{body:?}: {r:?}");
    }
    let b = build("TRANSACTION.SUCCESS", "not json", now);
    assert!(matches!(verdict(&ch, &b, now), Err(PayError::Malformed(_))));
    // Wrong method, oversized body.
    let b = build("TRANSACTION.SUCCESS", &plain, now);
    let mut r = raw(b.headers.clone(), b.body.clone());
    r.method = "GET".into();
    assert!(matches!(
        ch.verify_notification_at(&r, now),
        Err(PayError::Malformed(_))
    ));
    let big = signed(format!("{}{}", b.body, " ".repeat(MAX_NOTIFY_BYTES)), now);
    assert!(matches!(verdict(&ch, &big, now), Err(PayError::Malformed(m)) if m.contains("large")));
    // Timestamp not a number.
    let mut h = b.headers.clone();
    h[0].1 = "12e3".into();
    let r = ch.verify_notification_at(&raw(h, b.body.clone()), now);
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
}

#[test]
fn signature_faults_stale_and_probe() {
    let ch = channel(pubkey_mode());
    let now = NOW;
    let plain = tx_json("SUCCESS").to_string();
    // Stale and future timestamps, correctly signed.
    for ts in [now - 301, now + 301, 0] {
        let b = build("TRANSACTION.SUCCESS", &plain, ts);
        assert!(
            matches!(verdict(&ch, &b, now), Err(PayError::Stale)),
            "{ts}"
        );
    }
    for ts in [now - 299, now + 299] {
        let b = build("TRANSACTION.SUCCESS", &plain, ts);
        assert!(verdict(&ch, &b, now).is_ok());
    }
    // The trait method reads the channel's clock: fresh now, stale once it moves on.
    let clock = Arc::new(ManualClock::new(now * 1000));
    let moving = channel(pubkey_mode()).with_clock(clock.clone());
    let b = build("TRANSACTION.SUCCESS", &plain, now);
    let fresh = moving.verify_notification(&raw(b.headers.clone(), b.body.clone()));
    assert!(matches!(fresh, Ok(NotifyVerdict::Paid(_))), "{fresh:?}");
    clock.advance(300_000);
    assert!(moving
        .verify_notification(&raw(b.headers.clone(), b.body.clone()))
        .is_ok());
    clock.advance(1_000);
    assert!(matches!(
        moving.verify_notification(&raw(b.headers.clone(), b.body.clone())),
        Err(PayError::Stale)
    ));
    let b = build("TRANSACTION.SUCCESS", &plain, now);
    // Probe traffic.
    let mut h = b.headers.clone();
    h[4].1 = format!("{SIGNTEST_PREFIX}{}", h[4].1);
    assert!(matches!(
        ch.verify_notification_at(&raw(h, b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
    let mut h = b.headers.clone();
    h[4].1 = "WECHATPAY/SIGNTEST/abc".into();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
    // Unknown serial, signature not base64, signed by another key.
    let mut h = b.headers.clone();
    h[2].1 = "PUB_KEY_ID_0000000000000024101100397200000007".into();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
    let mut h = b.headers.clone();
    h[4].1 = "%%%".into();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
    let stranger = RsaSigner::generate().unwrap();
    let mut h = b.headers.clone();
    h[4].1 = stranger
        .sign_base64(
            RsaHash::Sha256,
            &response_message(&h[0].1, &h[1].1, b.body.as_bytes()),
        )
        .unwrap();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
    // Cert mode does not accept the public-key ID, nor public-key mode a cert serial.
    assert!(matches!(
        channel(cert_mode()).verify_notification_at(&raw(b.headers.clone(), b.body.clone()), now),
        Err(PayError::BadSignature)
    ));
}

#[test]
fn cert_mode_serial_lookup() {
    let cert = k2_cert();
    let now = 1704081610;
    let keys = PlatformKeys::Certificates(vec![cert.clone()]);
    for serial in ["D7CE59D1F522D701", "d7ce59d1f522d701", "00D7CE59D1F522D701"] {
        assert!(keys.find(serial, now).is_some(), "{serial}");
    }
    for serial in [
        "D7CE59D1F522D702",
        "",
        "PUB_KEY_ID_1",
        "D7CE59D1F522D701 ",
        "0x1",
    ] {
        assert!(keys.find(serial, now).is_none(), "{serial:?}");
    }
    // Outside the validity window.
    assert!(keys.find("D7CE59D1F522D701", cert.not_after + 1).is_none());
    assert!(keys.find("D7CE59D1F522D701", cert.not_before - 1).is_none());
    // Rotation: two certs, selected by serial.
    let other_key = RsaSigner::generate().unwrap();
    let rotated = Certificate {
        serial_hex: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        verifier: other_key.verifier().unwrap(),
        not_before: 0,
        not_after: i64::MAX,
    };
    let keys = PlatformKeys::Certificates(vec![rotated, cert]);
    let msg = b"m";
    let sig = other_key.sign(RsaHash::Sha256, msg).unwrap();
    assert!(keys
        .find("5157f09efdc096de15ebe81a47057a7232f1b8e1", now)
        .unwrap()
        .verify(RsaHash::Sha256, msg, &sig));
    assert!(!keys
        .find("D7CE59D1F522D701", now)
        .unwrap()
        .verify(RsaHash::Sha256, msg, &sig));
    // Public-key mode: exact ID only.
    let keys = pubkey_mode();
    assert!(keys.find(PUB_ID, now).is_some());
    assert!(keys.find(&PUB_ID.to_lowercase(), now).is_none());
    assert!(keys.find("D7CE59D1F522D701", now).is_none());
    let empty = PlatformKeys::PublicKey {
        id: String::new(),
        key: k2_cert().verifier,
    };
    assert!(empty.find("", now).is_none());
}

#[test]
fn authorization_parsing_is_order_independent_and_strict() {
    let good = AuthorizationParams {
        mchid: "1900009191".into(),
        nonce_str: "593BEC0C930BF1AFEB40B4A08C8FB242".into(),
        signature: "abc/+=".into(),
        timestamp: "1554208460".into(),
        serial_no: "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C".into(),
    };
    let h = good.header_value();
    assert_eq!(AuthorizationParams::parse(&h).unwrap(), good);
    let reordered = "WECHATPAY2-SHA256-RSA2048 serial_no=\"1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C\", timestamp=\"1554208460\" ,signature=\"abc/+=\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",mchid=\"1900009191\"";
    assert_eq!(AuthorizationParams::parse(reordered).unwrap(), good);
    for bad in [
        "",
        "WECHATPAY2-SHA256-RSA2048",
        "Bearer x",
        &h.replace("WECHATPAY2-SHA256-RSA2048 ", "WECHATPAY2-SHA256-RSA2048"),
        &h.replace("WECHATPAY2", "wechatpay2"),
        &h.replace("mchid=\"1900009191\",", ""),
        &h.replace("mchid=\"1900009191\"", "mchid=\"\""),
        &format!("{h},mchid=\"1\""),
        &format!("{h},extra=\"1\""),
        &format!("{h},"),
        &h.replace("\",nonce_str", "\" nonce_str"),
        &h.replace("mchid=\"1900009191\"", "mchid=1900009191"),
        &h.replace(
            "serial_no=\"1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C\"",
            "serial_no=\"1DDE",
        ),
    ] {
        assert!(AuthorizationParams::parse(bad).is_err(), "{bad:?}");
    }
    // Arbitrary input never panics.
    for seed in 0u32..3000 {
        let s: String = (0..(seed % 80))
            .map(|i| {
                let b = (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 9) as u8;
                [b'"', b'=', b',', b' ', b'a', 0xe4][usize::from(b % 6)] as char
            })
            .collect();
        let _ = AuthorizationParams::parse(&format!("{SIGNATURE_SCHEME} {s}"));
    }
}

#[test]
fn time_formats() {
    assert_eq!(format_cst(1528425296).unwrap(), "2018-06-08T10:34:56+08:00");
    assert_eq!(parse_rfc3339("2018-06-08T10:34:56+08:00"), Some(1528425296));
    assert_eq!(parse_rfc3339("2018-06-08T02:34:56Z"), Some(1528425296));
    assert_eq!(parse_rfc3339("2018-06-08 10:34:56"), None);
    assert_eq!(format_cst(0).unwrap(), "1970-01-01T08:00:00+08:00");
    assert!(format_cst(i64::MAX).is_none());
}

#[test]
fn ack_bytes_and_identity() {
    let ch = channel(pubkey_mode());
    assert_eq!(
        ch.ack(Ack::Success),
        AckResponse {
            status: 204,
            content_type: "text/plain; charset=utf-8",
            body: String::new()
        }
    );
    let f = ch.ack(Ack::Failure);
    assert_eq!(f.status, 400);
    assert_eq!(f.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&f.body).unwrap();
    assert_eq!(v["code"], "FAIL");
    assert!(v["message"].is_string());
    assert_eq!(ch.kind(), "wechatpay");
    assert_eq!(ch.priority(), 3);
    assert_eq!(ch.methods(), &[Method::Wxpay]);
    assert_eq!(ch.id().as_str(), "wx-main");
    assert_eq!(ch.config().api_base, "http://127.0.0.1:9");
    let dbg = format!("{ch:?}");
    assert!(!dbg.contains("wechatpay-apiv3-test-key"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn config_validation() {
    assert!(channel(pubkey_mode()).config().validate().is_ok());
    assert!(channel(cert_mode()).config().validate().is_ok());
    let mut ch = channel(pubkey_mode());
    ch.cfg.mchid = "12a".into();
    assert!(ch.config().validate().is_err());
    let mut ch = channel(pubkey_mode());
    ch.cfg.merchant_serial_no = "XYZ".into();
    assert!(ch.config().validate().is_err());
    let mut ch = channel(pubkey_mode());
    ch.cfg.api_base = "ftp://x".into();
    assert!(ch.config().validate().is_err());
    let ch = channel_with(PlatformKeys::Certificates(vec![]), W4_KEY, WechatMode::H5);
    assert!(ch.config().validate().is_err());
    let mut cfg_default = channel(pubkey_mode()).cfg;
    cfg_default.api_base = " ".into();
    let ch = WechatPayChannel::new(cfg_default, reqwest::Client::new());
    assert_eq!(ch.config().api_base, DEFAULT_API_BASE);
    assert_eq!(WechatMode::parse("auto"), Some(WechatMode::Auto));
    assert_eq!(WechatMode::parse("H5"), None);
    for m in [WechatMode::Native, WechatMode::H5, WechatMode::Auto] {
        assert_eq!(WechatMode::parse(m.as_str()), Some(m));
    }
}

#[test]
fn id_rules() {
    assert!(valid_out_trade_no("K20240101120000123456789012"));
    assert!(valid_out_trade_no("abc-_|*"));
    assert!(!valid_out_trade_no("short"));
    assert!(!valid_out_trade_no(&"1".repeat(33)));
    assert!(!valid_out_trade_no("K2024/../x"));
    assert!(!valid_out_trade_no("K2024?mchid=1"));
    assert!(valid_out_refund_no("R1@x"));
    assert!(!valid_out_refund_no(""));
    assert!(!valid_out_refund_no("a b"));
    assert_eq!(nonce_str().len(), 32);
    assert!(nonce_str()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
}

fn create_req(device: Device, ua: Option<&str>) -> CreatePayment {
    CreatePayment {
        trade_no: kami_core::TradeNo::first(&kami_core::OrderNo::generate("20240101120000")),
        amount: Money::new(1230, Currency::Cny).unwrap(),
        subject: "x".into(),
        method: Method::Wxpay,
        device,
        notify_url: "https://shop/pay/notify/wx-main".into(),
        return_url: "https://shop/pay/return/wx-main".into(),
        expires_at_ms: 1_700_000_000_000,
        user_agent: ua.map(str::to_owned),
        client_ip: None,
        payer_openid: None,
    }
}

#[test]
fn auto_mode_picks_the_flavour() {
    let ch = channel(pubkey_mode());
    let wechat = Some("Mozilla/5.0 (iPhone) MicroMessenger/8.0.44");
    assert_eq!(ch.flavour(&create_req(Device::Pc, None)), Flavour::Native);
    assert_eq!(ch.flavour(&create_req(Device::Mobile, None)), Flavour::H5);
    // Inside WeChat without an appsecret: a QR code that can be long-pressed.
    assert_eq!(
        ch.flavour(&create_req(Device::Mobile, wechat)),
        Flavour::Native
    );
    // With one: JSAPI.
    let mut cfg_ch = channel(pubkey_mode());
    cfg_ch.cfg.jsapi = Some(jsapi_config());
    assert_eq!(
        cfg_ch.flavour(&create_req(Device::Mobile, wechat)),
        Flavour::Jsapi
    );
    assert_eq!(
        cfg_ch.flavour(&create_req(Device::Mobile, None)),
        Flavour::H5
    );
    assert_eq!(
        cfg_ch.flavour(&create_req(Device::Pc, None)),
        Flavour::Native
    );
    let native = channel_with(pubkey_mode(), W4_KEY, WechatMode::Native);
    assert_eq!(
        native.flavour(&create_req(Device::Mobile, None)),
        Flavour::Native
    );
    let h5 = channel_with(pubkey_mode(), W4_KEY, WechatMode::H5);
    assert_eq!(h5.flavour(&create_req(Device::Pc, None)), Flavour::H5);
}

pub(super) fn jsapi_config() -> JsapiConfig {
    JsapiConfig {
        appsecret: crate::common::settings::Secret::new("0123456789abcdef0123456789abcdef"),
        oauth_base: "https://open.example".into(),
        sns_api_base: "http://127.0.0.1:9".into(),
    }
}

#[tokio::test]
async fn unreachable_gateway_and_local_refusals() {
    let ch = channel(pubkey_mode());
    let r = ch.create(&create_req(Device::Pc, None)).await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
    let r = ch
        .query(&TradeRef::from("K20240101120000123456789012"))
        .await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
    // Refused before any network traffic.
    let r = ch.query(&TradeRef::from("../../v3/refund")).await;
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
    let mut usd = create_req(Device::Pc, None);
    usd.amount = Money::new(100, Currency::Usd).unwrap();
    assert!(matches!(
        ch.create(&usd).await,
        Err(PayError::Unsupported(_))
    ));
    let r = ch
        .refund(&RefundRequest {
            gateway_ref: None,
            gateway_trade_no: None,
            trade_no: "K20240101120000123456789012".into(),
            refund_no: "bad refund no".into(),
            amount: Money::new(1, Currency::Cny).unwrap(),
            total: Money::new(1, Currency::Cny).unwrap(),
            reason: None,
        })
        .await;
    assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
}

#[test]
fn hostile_bytes_never_panic() {
    let ch = channel(pubkey_mode());
    let now = NOW;
    for seed in 0u32..800 {
        let bytes: Vec<u8> = (0..(seed % 131))
            .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
            .collect();
        // Unsigned garbage.
        let r = ch.verify_notification_at(&raw(vec![], bytes.clone()), now);
        assert!(matches!(r, Err(PayError::Malformed(_))));
        // Correctly signed garbage reaches the JSON parser.
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let b = signed(body, now);
        assert!(verdict(&ch, &b, now).is_err());
        // Garbage header values.
        let mut h = b.headers.clone();
        h[(seed % 5) as usize].1 = String::from_utf8_lossy(&bytes).into_owned();
        let _ = ch.verify_notification_at(&raw(h, b.body.clone()), now);
    }
    // Garbage inside an authentic, decryptable resource.
    for plain in [
        "",
        "{}",
        "[]",
        "{\"amount\":{}}",
        "{\"mchid\":null}",
        "\u{0}",
    ] {
        let b = build("TRANSACTION.SUCCESS", plain, now);
        assert!(verdict(&ch, &b, now).is_err(), "{plain:?}");
    }
}
