//! The three checked vectors of `shared/protocols.md` A.5 (TokenPay `Wiki/docs.md`, secret
//! `666`) and the notification rules.

use kami_core::{ChannelId, CoinAmount, Currency, Method, Money};
use serde_json::{json, Map, Value};

use super::*;
use crate::common::test_support::{bad_signature, malformed};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn channel(currency: &str) -> TokenPayChannel {
    TokenPayChannel::new(
        TokenPayConfig {
            id: ChannelId::parse("tokenpay").unwrap(),
            methods: vec![Method::Usdt],
            priority: 1,
            gateway: "https://tokenpay.example.com".into(),
            secret: "666".into(),
            currency: CoinCurrency::parse(currency).unwrap(),
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

#[test]
fn create_vector() {
    let fields = [
        ("OutOrderId", "AJIHK72N34BR2CWG"),
        ("OrderUserKey", "admin@qq.com"),
        ("ActualAmount", "15"),
        ("Currency", "TRX"),
        ("NotifyUrl", "http://localhost:1011/pay/tokenpay/notify_url"),
        (
            "RedirectUrl",
            "http://localhost:1011/pay/tokenpay/return_url?order_id=AJIHK72N34BR2CWG",
        ),
    ];
    assert_eq!(
        sign_string(&fields),
        "ActualAmount=15&Currency=TRX&NotifyUrl=http://localhost:1011/pay/tokenpay/notify_url\
         &OrderUserKey=admin@qq.com&OutOrderId=AJIHK72N34BR2CWG\
         &RedirectUrl=http://localhost:1011/pay/tokenpay/return_url?order_id=AJIHK72N34BR2CWG"
    );
    assert_eq!(
        signature(&fields, "666"),
        "e9765880db6081496456283678e70152"
    );
    // The same request as its JSON body (the number as written) verifies.
    let body = r#"{"OutOrderId":"AJIHK72N34BR2CWG","OrderUserKey":"admin@qq.com","ActualAmount":15,"Currency":"TRX","NotifyUrl":"http://localhost:1011/pay/tokenpay/notify_url","RedirectUrl":"http://localhost:1011/pay/tokenpay/return_url?order_id=AJIHK72N34BR2CWG","Signature":"e9765880db6081496456283678e70152"}"#;
    assert!(verify(&obj(serde_json::from_str(body).unwrap()), "666"));
}

fn doc_notify() -> Value {
    json!({
        "ActualAmount": "15",
        "Amount": "34.91",
        "BaseCurrency": "CNY",
        "BlockChainName": "TRON",
        "BlockTransactionId": "375859c36dc5f5d227b10912b5ec70d36dd34446028064956cb60cdbb74432f5",
        "Currency": "TRX",
        "CurrencyName": "TRX",
        "FromAddress": "TYYjzt6AWhe9hAg9DrhiYXEWKDksyohgQa",
        "Id": "63234df7-55bf-93fc-0010-67be493c0c27",
        "OutOrderId": "E6COE6FGZMO5AXSK",
        "PayTime": "2022-09-15 16:08:39",
        "Status": 1,
        "ToAddress": "TKGTx4pCKiKQbk8evXHTborfZn754TGViP",
        "Signature": "e5eaa888cd9e80b5c09a0698981757c8"
    })
}

#[test]
fn notify_vector() {
    let body = doc_notify();
    let pairs = json_pairs(&obj(body.clone())).unwrap();
    assert_eq!(
        sign_string(&pairs),
        "ActualAmount=15&Amount=34.91&BaseCurrency=CNY&BlockChainName=TRON\
         &BlockTransactionId=375859c36dc5f5d227b10912b5ec70d36dd34446028064956cb60cdbb74432f5\
         &Currency=TRX&CurrencyName=TRX&FromAddress=TYYjzt6AWhe9hAg9DrhiYXEWKDksyohgQa\
         &Id=63234df7-55bf-93fc-0010-67be493c0c27&OutOrderId=E6COE6FGZMO5AXSK\
         &PayTime=2022-09-15 16:08:39&Status=1&ToAddress=TKGTx4pCKiKQbk8evXHTborfZn754TGViP"
    );
    assert_eq!(signature(&pairs, "666"), "e5eaa888cd9e80b5c09a0698981757c8");
    let v = channel("TRX").verify_notification(&post(&body)).unwrap();
    assert_eq!(
        v,
        NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: "E6COE6FGZMO5AXSK".into(),
            gateway_trade_no: "63234df7-55bf-93fc-0010-67be493c0c27".into(),
            amount: Money::new(1500, Currency::Cny).unwrap(),
            paid_at: crate::common::pay_time::parse_china_time("2022-09-15 16:08:39"),
            coin_amount: Some(CoinAmount::parse("34.91", "TRX").unwrap()),
        })
    );
}

#[test]
fn query_vector() {
    assert_eq!(
        sign_string(&[("Id", "66f9d5a8-d9c7-0224-004f-a16a1c068e08")]),
        "Id=66f9d5a8-d9c7-0224-004f-a16a1c068e08"
    );
    assert_eq!(
        signature(&[("Id", "66f9d5a8-d9c7-0224-004f-a16a1c068e08")], "666"),
        "baa261cc6af3f5efbed15e17a285f653"
    );
}

#[test]
fn tampering_any_field_is_refused() {
    let ch = channel("TRX");
    let good = doc_notify();
    for (k, v) in [
        ("ActualAmount", json!("16")),
        ("Amount", json!("34.90")),
        ("Id", json!("63234df7-55bf-93fc-0010-67be493c0c28")),
        ("OutOrderId", json!("E6COE6FGZMO5AXSL")),
        ("Status", json!(2)),
        ("ToAddress", json!("TKGTx4pCKiKQbk8evXHTborfZn754TGViQ")),
        ("Signature", json!("e5eaa888cd9e80b5c09a0698981757c9")),
        ("PassThroughInfo", json!("added")),
    ] {
        let mut body = good.clone();
        body[k] = v;
        bad_signature(ch.verify_notification(&post(&body)));
    }
    let mut get = post(&good);
    get.method = "GET".into();
    malformed(ch.verify_notification(&get));
}

fn resign(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("Signature");
    let pairs = json_pairs(&obj(body.clone())).unwrap();
    body["Signature"] = json!(signature(&pairs, "666"));
    body
}

#[test]
fn only_status_1_pays_and_empty_values_are_not_signed() {
    let ch = channel("TRX");
    let mut body = doc_notify();
    body["Status"] = json!(2);
    assert_eq!(
        ch.verify_notification(&post(&resign(body))).unwrap(),
        NotifyVerdict::NotPaid {
            trade_no: "E6COE6FGZMO5AXSK".into(),
            status: "2".into()
        }
    );
    // An empty field is left out of the signature, as TokenPay leaves it out.
    let mut body = doc_notify();
    body["PassThroughInfo"] = json!("");
    assert!(matches!(
        ch.verify_notification(&post(&body)),
        Ok(NotifyVerdict::Paid(_))
    ));
    // Integers sign as their digits; newer fields are signed like the others.
    let mut body = doc_notify();
    body["IsDynamicAmount"] = json!(0);
    body["PayAmount"] = json!("34.91");
    assert!(matches!(
        ch.verify_notification(&post(&resign(body))),
        Ok(NotifyVerdict::Paid(_))
    ));
}

#[test]
fn create_body_carries_the_signed_amount_text() {
    let ch = channel("USDT_TRC20");
    let req = CreatePayment {
        payer_openid: None,
        trade_no: kami_core::TradeNo::first(&kami_core::OrderNo::generate("20260101120000")),
        amount: Money::new(2880, Currency::Cny).unwrap(),
        subject: "x".into(),
        method: Method::Usdt,
        device: crate::Device::Mobile,
        notify_url: "https://shop/pay/notify/tokenpay".into(),
        return_url: "https://shop/pay/return/tokenpay".into(),
        expires_at_ms: 0,
        user_agent: None,
        client_ip: None,
    };
    let body = ch.create_body(&req);
    assert!(body.contains(r#""ActualAmount":28.80,"#), "{body}");
    let parsed = obj(serde_json::from_str(&body).unwrap());
    assert_eq!(parsed["Currency"], json!("USDT_TRC20"));
    // Signed over `ActualAmount=28.80`, the text .NET's decimal keeps.
    let fields = create_fields(
        req.trade_no.as_str(),
        req.amount,
        &CoinCurrency::parse("USDT_TRC20").unwrap(),
        &req.notify_url,
        &req.return_url,
    );
    assert!(sign_string(&fields).starts_with("ActualAmount=28.80&Currency=USDT_TRC20&"));
    assert_eq!(parsed["Signature"], json!(signature(&fields, "666")));
}

#[test]
fn create_answers_are_checked() {
    let ok = |info: Value| {
        serde_json::to_vec(&json!({"success": true, "message": "创建订单成功！", "data": "http://127.0.0.1:5000/Pay?Id=644bc479-df0c-3f1c-00fe-9cb3012b148b", "info": info})).unwrap()
    };
    let info = json!({"ActualAmount": "15", "Amount": "227.34", "BaseCurrency": "CNY", "Id": "644bc479-df0c-3f1c-00fe-9cb3012b148b", "OutOrderId": "AJIHK72N34BR2CWG", "CurrencyName": "TRX"});
    let fifteen = Money::new(1500, Currency::Cny).unwrap();
    let a =
        wire::create_answer(200, &ok(info.clone()), "AJIHK72N34BR2CWG", fifteen, "TRX").unwrap();
    assert_eq!(a.coin.to_string(), "227.34 TRX");
    assert_eq!(a.id, "644bc479-df0c-3f1c-00fe-9cb3012b148b");
    assert!(wire::create_answer(200, &ok(info.clone()), "OTHER", fifteen, "TRX").is_err());
    assert!(wire::create_answer(
        200,
        &ok(info),
        "AJIHK72N34BR2CWG",
        Money::new(1501, Currency::Cny).unwrap(),
        "TRX"
    )
    .is_err());
    let refused =
        serde_json::to_vec(&json!({"success": false, "message": "签名验证失败！"})).unwrap();
    assert!(matches!(
        wire::create_answer(200, &refused, "A", fifteen, "TRX"),
        Err(PayError::Gateway { .. })
    ));
}

#[test]
fn currencies_name_their_coin_and_acks_are_ok() {
    for (c, unit) in [
        ("USDT_TRC20", "USDT"),
        ("TRX", "TRX"),
        ("EVM_BSC_USDT_BEP20", "USDT"),
        ("EVM_ETH_ETH", "ETH"),
    ] {
        assert_eq!(CoinCurrency::parse(c).unwrap().unit(), unit);
    }
    assert!(CoinCurrency::parse("usdt_trc20").is_err());
    assert!(CoinCurrency::parse("").is_err());
    let ch = channel("TRX");
    assert_eq!(ch.ack(Ack::Success).body, "ok");
    assert_eq!(ch.ack(Ack::Success).status, 200);
    assert_eq!(ch.ack(Ack::Failure).status, 500);
    assert!(ch.confirm_by_query());
}
