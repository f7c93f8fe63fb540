//! Sandbox channel tests: the sign string and a known vector, notification checks, hostile
//! input, ack bytes, the signed redirect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::notify::NOTIFY_REQUIRED;
use super::sign::canonical;
use super::*;
use crate::common::ack::assert_plain_text_ack;
use crate::common::test_support::{bad_signature, encode, form_post as post, malformed};
use crate::common::text::owned;
use crate::TradeRef;
use crate::{NotifyVerdict, PaymentAction, PaymentChannel, PaymentConfirmation, RawNotification};
use kami_core::OrderNo;
use kami_core::{Currency, Money};

const SECRET: &[u8] = b"sandbox-test-secret";

fn channel() -> SandboxChannel {
    SandboxChannel::new(
        ChannelId::parse("sbx").unwrap(),
        vec![Method::Sandbox],
        5,
        SECRET.to_vec(),
        "http://127.0.0.1:9/".to_owned(),
        reqwest::Client::new(),
    )
}

fn notification_params(status: &str) -> Vec<(String, String)> {
    signed(
        SECRET,
        owned(&[
            ("trade_no", "K2024010112000012345678"),
            ("gateway_trade_no", "SBX12345678901234567890"),
            ("amount", "12.30"),
            ("currency", "CNY"),
            ("status", status),
            ("paid_at", "1700000000000"),
            ("notify_id", "abcdef"),
        ]),
    )
}
#[test]
fn canonical_string_rules() {
    let c = canonical(&[
        ("b", "2"),
        ("sign", "zzz"),
        ("a", "x y&z"),
        ("empty", ""),
        ("B", "upper"),
    ]);
    assert_eq!(c, "B=upper&a=x y&z&b=2");
}

#[test]
fn known_vector() {
    let params = [
        ("trade_no", "K2024010112000012345678"),
        ("amount", "12.30"),
        ("currency", "CNY"),
        ("status", "paid"),
    ];
    assert_eq!(
        canonical(&params),
        "amount=12.30&currency=CNY&status=paid&trade_no=K2024010112000012345678"
    );
    // Cross-checked with Python's hmac module.
    let s = sign(b"kami-sandbox-secret", &params);
    assert_eq!(
        s,
        "a165327af5d1144d0660490a799efcbad9249bf1e178e46e06dbda302c813f15"
    );
    let mut with_sign: Vec<(&str, &str)> = params.to_vec();
    with_sign.push(("sign", &s));
    assert!(verify(b"kami-sandbox-secret", &with_sign));
    assert!(!verify(b"other-secret", &with_sign));
}

#[test]
fn verify_rejects_uppercase_duplicates_and_missing_sign() {
    let params = notification_params("paid");
    assert!(verify(SECRET, &params));
    let upper: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            if k == "sign" {
                (k.clone(), v.to_uppercase())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    assert!(!verify(SECRET, &upper));
    let mut dup = params.clone();
    dup.push(("status".into(), "paid".into()));
    assert!(!verify(SECRET, &dup));
    let no_sign: Vec<_> = params.iter().filter(|(k, _)| k != "sign").collect();
    let no_sign: Vec<(String, String)> = no_sign.into_iter().cloned().collect();
    assert!(!verify(SECRET, &no_sign));
}

#[test]
fn valid_notification_is_paid() {
    let ch = channel();
    let v = ch
        .verify_notification(&post(encode(&notification_params("paid"))))
        .unwrap();
    assert_eq!(
        v,
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "K2024010112000012345678".into(),
            gateway_trade_no: "SBX12345678901234567890".into(),
            amount: Money::new(1230, Currency::Cny).unwrap(),
            paid_at: Some(1_700_000_000_000),
            coin_amount: None,
        })
    );
}

#[test]
fn get_query_string_is_accepted() {
    let ch = channel();
    let raw = RawNotification {
        method: "GET".into(),
        query: encode(&notification_params("paid")),
        headers: vec![],
        body: vec![],
    };
    assert!(matches!(
        ch.verify_notification(&raw),
        Ok(NotifyVerdict::Paid(_))
    ));
    // A POST's query string is not the message.
    let raw = RawNotification {
        method: "POST".into(),
        query: encode(&notification_params("paid")),
        headers: vec![],
        body: vec![],
    };
    malformed(ch.verify_notification(&raw));
}

#[test]
fn other_status_is_not_paid() {
    let ch = channel();
    for status in ["closed", "waiting", "PAID", "refunded"] {
        let v = ch
            .verify_notification(&post(encode(&notification_params(status))))
            .unwrap();
        assert_eq!(
            v,
            NotifyVerdict::NotPaid {
                trade_no: "K2024010112000012345678".into(),
                status: status.into()
            }
        );
    }
}

#[test]
fn every_tampered_field_fails() {
    let ch = channel();
    let good = notification_params("paid");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i].1.push('0');
        let r = ch.verify_notification(&post(encode(&bad)));
        assert!(
            matches!(r, Err(PayError::BadSignature)),
            "tampering {} gave {r:?}",
            good[i].0
        );
    }
    // An added field is also tampering.
    let mut extra = good.clone();
    extra.push(("seller".into(), "x".into()));
    bad_signature(ch.verify_notification(&post(encode(&extra))));
    // Wrong secret.
    let other = SandboxChannel::new(
        ChannelId::parse("sbx").unwrap(),
        vec![Method::Sandbox],
        5,
        b"another".to_vec(),
        "http://x".into(),
        reqwest::Client::new(),
    );
    bad_signature(other.verify_notification(&post(encode(&good))));
}

#[test]
fn missing_fields_are_malformed() {
    let ch = channel();
    let good = notification_params("paid");
    for key in NOTIFY_REQUIRED {
        let without: Vec<(String, String)> =
            good.iter().filter(|(k, _)| k != key).cloned().collect();
        let m = malformed(ch.verify_notification(&post(encode(&without))));
        assert_eq!(m, format!("missing field {key}"));
    }
}

#[test]
fn hostile_bodies_are_malformed_not_panics() {
    let ch = channel();
    let good = encode(&notification_params("paid"));
    malformed(ch.verify_notification(&post(Vec::new())));
    malformed(ch.verify_notification(&post(b"\xff\xfe\x00garbage".to_vec())));
    malformed(ch.verify_notification(&post(format!("{good}&trade_no=%FF"))));
    malformed(ch.verify_notification(&post(format!("{good}&x=%G1"))));
    malformed(ch.verify_notification(&post(format!("{good}&x=%4"))));
    malformed(ch.verify_notification(&post(format!("{good}&=v"))));
    // Duplicated keys are rejected, whatever the order or value.
    let m = malformed(ch.verify_notification(&post(format!("{good}&status=paid"))));
    assert!(m.contains("duplicate"), "{m}");
    let m = malformed(ch.verify_notification(&post(format!("status=closed&{good}"))));
    assert!(m.contains("duplicate"), "{m}");
    // Huge.
    let huge = format!("{good}&pad={}", "a".repeat(MAX_FORM_BYTES));
    malformed(ch.verify_notification(&post(huge)));
    let many: String = (0..1000).map(|i| format!("k{i}=v&")).collect();
    malformed(ch.verify_notification(&post(many)));
    // Wrong method.
    let mut raw = post(good);
    raw.method = "PUT".into();
    malformed(ch.verify_notification(&raw));
    // Arbitrary bytes never panic.
    for seed in 0u32..2000 {
        let bytes: Vec<u8> = (0..(seed % 97))
            .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
            .collect();
        let _ = ch.verify_notification(&post(bytes));
    }
}

#[test]
fn bad_amount_or_currency_is_malformed() {
    let ch = channel();
    for (amount, currency) in [
        ("12.345", "CNY"),
        ("-1.00", "CNY"),
        ("1.00", "XXX"),
        ("", "CNY"),
    ] {
        let params = signed(
            SECRET,
            owned(&[
                ("trade_no", "K2024010112000012345678"),
                ("gateway_trade_no", "SBX1"),
                ("amount", amount),
                ("currency", currency),
                ("status", "paid"),
            ]),
        );
        let r = ch.verify_notification(&post(encode(&params)));
        if amount.is_empty() {
            // An empty amount is present but excluded from the canonical string.
            assert!(matches!(r, Err(PayError::Malformed(_))), "{r:?}");
        } else {
            malformed(r);
        }
    }
}

#[test]
fn ack_bytes() {
    let ch = channel();
    assert_plain_text_ack(&ch);
    assert_eq!(ch.kind(), "sandbox");
    assert_eq!(ch.gateway(), "http://127.0.0.1:9");
    assert!(!format!("{ch:?}").contains("sandbox-test-secret"));
}

#[tokio::test]
async fn create_builds_signed_redirect() {
    let ch = channel();
    let trade_no = OrderNo::generate("20240101120000");
    let req = CreatePayment {
        trade_no: kami_core::TradeNo::first(&trade_no),
        amount: Money::new(1230, Currency::Cny).unwrap(),
        subject: "Steam 10 & more <b>".into(),
        method: Method::Sandbox,
        device: crate::Device::Pc,
        notify_url: "http://shop/pay/notify/sbx".into(),
        return_url: "http://shop/pay/return/sbx?x=1".into(),
        expires_at_ms: 1_700_000_000_000,
        user_agent: None,
        client_ip: None,
        payer_openid: None,
    };
    let PaymentAction::Redirect { url } = ch.create(&req).await.unwrap().action else {
        panic!("expected redirect");
    };
    let prefix = format!("http://127.0.0.1:9/sim/sandbox/pay/{trade_no}?");
    assert!(url.starts_with(&prefix), "{url}");
    let params = parse_form(&url.as_bytes()[prefix.len()..]).unwrap();
    assert!(verify(SECRET, &params));
    assert_eq!(field(&params, "amount"), Some("12.30"));
    assert_eq!(field(&params, "currency"), Some("CNY"));
    assert_eq!(field(&params, "subject"), Some("Steam 10 & more <b>"));
    assert_eq!(
        field(&params, "return_url"),
        Some("http://shop/pay/return/sbx?x=1")
    );
    assert_eq!(field(&params, "expires_at"), Some("1700000000000"));
    assert_eq!(field(&params, "trade_no"), Some(trade_no.as_str()));
}

#[tokio::test]
async fn unreachable_gateway_is_transport_error() {
    let ch = channel();
    let r = ch.query(&TradeRef::from("K2024010112000012345678")).await;
    assert!(matches!(r, Err(PayError::Transport(_))), "{r:?}");
}
