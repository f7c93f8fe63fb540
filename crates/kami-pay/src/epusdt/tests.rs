//! The vectors of `shared/protocols.md` A.3 / A.4 and the notification rules.

use kami_core::{ChannelId, CoinAmount, Currency, Method, Money};
use serde_json::{json, Map, Value};

use super::sign::{go_f, go_v, sign_string, signature, verify, Flavor};
use super::*;
use crate::common::test_support::{bad_signature, malformed};

const DOC_TOKEN: &str = "epusdt_password_xasddawqe";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn channel(trade_type: Option<&str>) -> EpusdtChannel {
    EpusdtChannel::new(
        EpusdtConfig {
            id: ChannelId::parse("usdt").unwrap(),
            methods: vec![Method::Usdt],
            priority: 1,
            gateway: "https://usdt.example.com/".into(),
            token: DOC_TOKEN.into(),
            trade_type: trade_type.map(|t| TradeType::parse(t).unwrap()),
        },
        reqwest::Client::new(),
    )
}

fn post(body: &Value) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(body).unwrap(),
    }
}

/// A.3's checked vector: the create request of the epusdt API document.
#[test]
fn epusdt_create_vector() {
    let params = obj(json!({
        "order_id": "20220201030210321",
        "amount": 42,
        "notify_url": "http://example.com/notify",
        "redirect_url": "http://example.com/redirect",
    }));
    let want = "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321\
                &redirect_url=http://example.com/redirect";
    for flavor in [Flavor::Epusdt, Flavor::Bepusdt] {
        assert_eq!(sign_string(&params, flavor).as_deref(), Some(want));
        assert_eq!(
            signature(&params, DOC_TOKEN, flavor).as_deref(),
            Some("1cd4b52df5587cfb1968b0c0c6e156cd")
        );
    }
    let mut with = params.clone();
    with.insert(
        "signature".into(),
        json!("1cd4b52df5587cfb1968b0c0c6e156cd"),
    );
    assert!(verify(&with, DOC_TOKEN));
    assert!(!verify(&with, "epusdt_password_xasddawqf"));
}

fn bepusdt_doc_notify() -> Value {
    json!({
        "trade_id": "b3d2477c-d945-41da-96b7-f925bbd1b415",
        "order_id": "20250120001",
        "amount": 28.88,
        "actual_amount": "4.25",
        "token": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "block_transaction_id": "12ef6267b42e43959795cf31808d0cc72b3d0a48953ed19c61d4b6665a341d10",
        "signature": "3e5e6594fb8a65f6fd58f70c394bca3a",
        "status": 2
    })
}

/// A.4's checked vector: BEpusdt's documented notification (its `actual_amount` is a string
/// in BEpusdt's struct, a number in the document: both sign as `4.25`).
#[test]
fn bepusdt_notify_vector() {
    let body = bepusdt_doc_notify();
    let m = obj(body.clone());
    assert_eq!(
        sign_string(&m, Flavor::Bepusdt).as_deref(),
        Some(
            "actual_amount=4.25&amount=28.88&block_transaction_id=\
             12ef6267b42e43959795cf31808d0cc72b3d0a48953ed19c61d4b6665a341d10\
             &order_id=20250120001&status=2&token=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t\
             &trade_id=b3d2477c-d945-41da-96b7-f925bbd1b415"
        )
    );
    assert!(verify(&m, DOC_TOKEN));
    let mut numeric = m.clone();
    numeric.insert("actual_amount".into(), json!(4.25));
    assert!(verify(&numeric, DOC_TOKEN));

    let verdict = channel(Some("usdt.trc20")).verify_notification(&post(&body));
    assert_eq!(
        verdict.unwrap(),
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "20250120001".into(),
            gateway_trade_no: "b3d2477c-d945-41da-96b7-f925bbd1b415".into(),
            amount: Money::new(2888, Currency::Cny).unwrap(),
            paid_at: None,
            coin_amount: Some(CoinAmount::parse("4.25", "USDT").unwrap()),
        })
    );
}

#[test]
fn go_number_formatting() {
    // FormatFloat(v,'f',-1,64): shortest, no trailing zeros, never an exponent.
    assert_eq!(go_f(28.80), "28.8");
    assert_eq!(go_f(42.0), "42");
    assert_eq!(go_f(0.1 + 0.2), "0.30000000000000004");
    assert_eq!(go_f(1e21), "1000000000000000000000");
    assert_eq!(go_f(4.2500), "4.25");
    // %v: the same digits, an exponent below 1e-4 and from 1e6.
    assert_eq!(go_v(28.80), "28.8");
    assert_eq!(go_v(123456.0), "123456");
    assert_eq!(go_v(999999.99), "999999.99");
    assert_eq!(go_v(1e6), "1e+06");
    assert_eq!(go_v(1234567.5), "1.2345675e+06");
    assert_eq!(go_v(0.0001), "0.0001");
    assert_eq!(go_v(0.00001), "1e-05");
    assert_eq!(go_v(0.0), "0");
    // Where they differ, a signature in either rendering verifies.
    let m = obj(json!({"amount": 1000000.0, "order_id": "x"}));
    let f = signature(&m, "t", Flavor::Epusdt).unwrap();
    let v = signature(&m, "t", Flavor::Bepusdt).unwrap();
    assert_ne!(f, v);
    for sig in [f, v] {
        let mut s = m.clone();
        s.insert("signature".into(), json!(sig));
        assert!(verify(&s, "t"));
    }
}

#[test]
fn epusdt_signs_empty_strings_bepusdt_skips_them() {
    let m = obj(json!({"a": "", "b": "1", "c": null}));
    assert_eq!(sign_string(&m, Flavor::Epusdt).as_deref(), Some("a=&b=1"));
    assert_eq!(sign_string(&m, Flavor::Bepusdt).as_deref(), Some("b=1"));
    assert_eq!(sign_string(&obj(json!({"a": [1]})), Flavor::Epusdt), None);
    assert_eq!(sign_string(&obj(json!({"a": true})), Flavor::Epusdt), None);
}

/// Every field of a paid notification is signed: changing any one refuses it.
#[test]
fn tampering_any_field_is_refused() {
    let ch = channel(Some("usdt.trc20"));
    let good = bepusdt_doc_notify();
    assert!(matches!(
        ch.verify_notification(&post(&good)),
        Ok(NotifyVerdict::Paid(_))
    ));
    let tamper: [(&str, Value); 8] = [
        ("trade_id", json!("b3d2477c-d945-41da-96b7-f925bbd1b416")),
        ("order_id", json!("20250120002")),
        ("amount", json!(28.89)),
        ("actual_amount", json!("4.24")),
        ("token", json!("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u")),
        ("block_transaction_id", json!("00")),
        ("status", json!(3)),
        ("signature", json!("3e5e6594fb8a65f6fd58f70c394bca3b")),
    ];
    for (k, v) in tamper {
        let mut body = good.clone();
        body[k] = v;
        bad_signature(ch.verify_notification(&post(&body)));
    }
    // An added field is signed too.
    let mut body = good.clone();
    body["extra"] = json!("1");
    bad_signature(ch.verify_notification(&post(&body)));
    // Without a signature, or by GET: refused.
    let mut body = good.clone();
    body.as_object_mut().unwrap().remove("signature");
    bad_signature(ch.verify_notification(&post(&body)));
    let mut get = post(&good);
    get.method = "GET".into();
    malformed(ch.verify_notification(&get));
    malformed(ch.verify_notification(&RawNotification {
        body: b"amount=1".to_vec(),
        ..post(&good)
    }));
}

fn resigned(mut body: Value, token: &str, flavor: Flavor) -> Value {
    body.as_object_mut().unwrap().remove("signature");
    Value::Object(signed(obj(body), token, flavor))
}

/// BEpusdt's periodic status-1 updates and status 3 are acknowledged and ignored.
#[test]
fn only_status_2_pays() {
    let ch = channel(Some("usdt.trc20"));
    for (status, name) in [(1, "1 waiting"), (3, "3 expired")] {
        let mut body = bepusdt_doc_notify();
        body["status"] = json!(status);
        body["block_transaction_id"] = json!("");
        let body = resigned(body, DOC_TOKEN, Flavor::Bepusdt);
        assert_eq!(
            ch.verify_notification(&post(&body)).unwrap(),
            NotifyVerdict::NotPaid {
                trade_no: "20250120001".into(),
                status: name.into()
            }
        );
    }
    let mut body = bepusdt_doc_notify();
    body["status"] = json!(9);
    malformed(ch.verify_notification(&post(&resigned(body, DOC_TOKEN, Flavor::Bepusdt))));
    // A fiat amount with a third decimal is not an amount kami could have asked for.
    let mut body = bepusdt_doc_notify();
    body["amount"] = json!(28.881);
    malformed(ch.verify_notification(&post(&resigned(body, DOC_TOKEN, Flavor::Epusdt))));
}

/// epusdt's own notification: numbers for both amounts, signed with FormatFloat.
#[test]
fn epusdt_notification_reads_the_coin_amount() {
    let body = resigned(
        json!({"trade_id": "202203251648208648961728", "order_id": "K1A1", "amount": 100,
               "actual_amount": 15.625, "token": "TNEns8t9jbWENbStkQdVQtHMGpbsYsQjZK",
               "block_transaction_id": "123333333321232132131", "status": 2}),
        DOC_TOKEN,
        Flavor::Epusdt,
    );
    match channel(None).verify_notification(&post(&body)).unwrap() {
        NotifyVerdict::Paid(c) => {
            assert_eq!(c.amount, Money::new(10000, Currency::Cny).unwrap());
            assert_eq!(
                c.coin_amount.map(|c| c.to_string()).as_deref(),
                Some("15.625 USDT")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn acks_are_exactly_ok() {
    let ch = channel(None);
    let ok = ch.ack(Ack::Success);
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
    let fail = ch.ack(Ack::Failure);
    assert_eq!(fail.status, 500);
    assert_ne!(fail.body, "ok");
}

fn create_req(amount: i64) -> CreatePayment {
    CreatePayment {
        payer_openid: None,
        trade_no: kami_core::TradeNo::first(&kami_core::OrderNo::generate("20260101120000")),
        amount: Money::new(amount, Currency::Cny).unwrap(),
        subject: "月卡".into(),
        method: Method::Usdt,
        device: crate::Device::Pc,
        notify_url: "https://shop.example/pay/notify/usdt".into(),
        return_url: "https://shop.example/pay/return/usdt".into(),
        expires_at_ms: 1_000_000 + 900_000,
        user_agent: None,
        client_ip: None,
    }
}

#[test]
fn create_body_signs_the_amount_as_go_reads_it() {
    let body = channel(None)
        .create_body(&create_req(2880), 1_000_000)
        .unwrap();
    assert_eq!(body["amount"], json!(28.8));
    assert_eq!(serde_json::to_string(&body["amount"]).unwrap(), "28.8");
    assert!(!body.contains_key("trade_type"));
    let s = sign_string(&body, Flavor::Epusdt).unwrap();
    assert!(s.starts_with("amount=28.8&notify_url="), "{s}");
    assert!(verify(&body, DOC_TOKEN));
    // BEpusdt: trade type and the time left (at least 120 s).
    let b = channel(Some("usdt.trc20"))
        .create_body(&create_req(2880), 1_000_000)
        .unwrap();
    assert_eq!(b["trade_type"], json!("usdt.trc20"));
    assert_eq!(b["timeout"], json!(900));
    let late = channel(Some("usdt.trc20"))
        .create_body(&create_req(2880), 1_890_000)
        .unwrap();
    assert_eq!(late["timeout"], json!(120));
    let mut usd = create_req(100);
    usd.amount = Money::new(100, Currency::Usd).unwrap();
    assert!(matches!(
        channel(None).create_body(&usd, 0),
        Err(PayError::Unsupported(_))
    ));
}

#[test]
fn create_answers_are_checked() {
    let answer = |data: Value, code: i64| {
        serde_json::to_vec(
            &json!({"status_code": code, "message": "m", "data": data, "request_id": "r"}),
        )
        .unwrap()
    };
    let data = json!({"trade_id": "202203271648380592218340", "order_id": "K2026A1", "amount": 28.8,
                      "actual_amount": 4.0123, "token": "T", "expiration_time": 1648381192,
                      "payment_url": "http://example.com/pay/checkout-counter/202203271648380592218340"});
    let amount = Money::new(2880, Currency::Cny).unwrap();
    let a =
        wire::create_answer(200, &answer(data.clone(), 200), "K2026A1", amount, "USDT").unwrap();
    assert_eq!(a.coin.to_string(), "4.0123 USDT");
    assert_eq!(a.trade_id, "202203271648380592218340");
    // BEpusdt quotes its amounts.
    let mut quoted = data.clone();
    quoted["amount"] = json!("28.80");
    quoted["actual_amount"] = json!("4.0123");
    assert!(wire::create_answer(200, &answer(quoted, 200), "K2026A1", amount, "USDT").is_ok());
    let mut other = data.clone();
    other["order_id"] = json!("K2026A2");
    assert!(matches!(
        wire::create_answer(200, &answer(other, 200), "K2026A1", amount, "USDT"),
        Err(PayError::Malformed(_))
    ));
    let mut other = data.clone();
    other["amount"] = json!(28.7);
    assert!(matches!(
        wire::create_answer(200, &answer(other, 200), "K2026A1", amount, "USDT"),
        Err(PayError::Malformed(_))
    ));
    match wire::create_answer(200, &answer(Value::Null, 10002), "K2026A1", amount, "USDT") {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, "10002"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        wire::create_answer(502, b"<html>", "K2026A1", amount, "USDT"),
        Err(PayError::Gateway { .. })
    ));
}

#[test]
fn trade_types_name_their_coin() {
    assert_eq!(TradeType::parse("usdt.trc20").unwrap().unit(), "USDT");
    assert_eq!(TradeType::parse("tron.trx").unwrap().unit(), "TRX");
    assert_eq!(TradeType::parse("usdc.polygon").unwrap().unit(), "USDC");
    for bad in ["usdt", "USDT.trc20", "usdt.", ".trc20", "usdt trc20"] {
        assert!(TradeType::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(channel(None).unit(), "USDT");
}
