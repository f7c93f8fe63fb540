//! PayPal: the A.2 CRC32 vector, amounts, request bodies, webhook verification against
//! certificates made here with a CA generated at run time.

use kami_core::{ChannelId, Currency, Method, Money, TradeNo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::certs::{CertCache, CertError, CertPolicy};
use super::sign::{self, expected_message};
use super::wire::{self, Order, OrderState};
use super::*;
use crate::crypto::RsaSigner;

const T0: i64 = 1_795_312_800; // 2026-11-22T02:00:00Z

/// The checked vector of appendix A.2.
#[test]
fn crc32_vector_of_a2() {
    let body = br#"{"id":"WH-TEST","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
    assert_eq!(sign::crc32_decimal(body), "3391999205");
    assert_eq!(
        expected_message("tid-1", "2026-11-22T02:00:00Z", "WH-ID", body),
        "tid-1|2026-11-22T02:00:00Z|WH-ID|3391999205"
    );
    // Unsigned: a CRC with the top bit set is not written negative.
    assert!(sign::crc32_decimal(body).parse::<u32>().unwrap() > i32::MAX as u32);
}

#[test]
fn amounts_are_exact_in_both_directions() {
    let usd = Money::new(1230, Currency::Usd).unwrap();
    let jpy = Money::new(1230, Currency::Jpy).unwrap();
    assert_eq!(wire::value_of(usd), "12.30");
    assert_eq!(wire::value_of(jpy), "1230");
    assert_eq!(
        wire::amount_json(Money::new(5, Currency::Eur).unwrap()).to_string(),
        r#"{"currency_code":"EUR","value":"0.05"}"#
    );
    let a = |c: &str, v: &str| wire::Amount {
        currency_code: c.into(),
        value: v.into(),
    };
    assert_eq!(wire::parse_amount(&a("USD", "12.30")).unwrap(), usd);
    assert_eq!(wire::parse_amount(&a("USD", "12.3")).unwrap(), usd);
    assert_eq!(wire::parse_amount(&a("JPY", "1230")).unwrap(), jpy);
    assert!(wire::parse_amount(&a("JPY", "12.30")).is_err());
    assert!(wire::parse_amount(&a("USD", "12.305")).is_err());
    assert!(wire::parse_amount(&a("USD", "-1.00")).is_err());
    assert!(wire::parse_amount(&a("XXX", "1.00")).is_err());
}

fn create_req(minor: i64, currency: Currency) -> CreatePayment {
    CreatePayment {
        trade_no: TradeNo::first(
            &kami_core::OrderNo::parse("K20261122010203123456789012").unwrap(),
        ),
        amount: Money::new(minor, currency).unwrap(),
        subject: "Demo game key".into(),
        method: Method::Sandbox,
        device: crate::Device::Pc,
        notify_url: "https://shop.example.com/pay/notify/pp".into(),
        return_url: "https://shop.example.com/pay/return/pp?order_no=K20261122010203123456789012"
            .into(),
        expires_at_ms: 0,
        user_agent: None,
        client_ip: None,
        payer_openid: None,
    }
}

#[test]
fn order_body_binds_the_trade_and_the_amount() {
    let body = wire::order_body(&create_req(1230, Currency::Jpy)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["intent"], "CAPTURE");
    let unit = &v["purchase_units"][0];
    assert_eq!(unit["custom_id"], "K20261122010203123456789012");
    assert_eq!(unit["invoice_id"], "K20261122010203123456789012");
    assert_eq!(
        unit["amount"],
        serde_json::json!({"currency_code": "JPY", "value": "1230"})
    );
    let ctx = &v["payment_source"]["paypal"]["experience_context"];
    assert_eq!(ctx["user_action"], "PAY_NOW");
    assert!(ctx["return_url"]
        .as_str()
        .unwrap()
        .ends_with("order_no=K20261122010203123456789012"));
    assert_eq!(
        wire::create_request_id("K1"),
        "kami-create-K1",
        "the same trade always sends the same PayPal-Request-Id"
    );
    assert!(wire::checked_trade_no("K1|x").is_err());
}

fn channel(policy: CertPolicy) -> PaypalChannel {
    PaypalChannel::new(
        PaypalConfig {
            id: ChannelId::parse("pp").unwrap(),
            methods: vec![Method::Sandbox],
            priority: 1,
            // Nothing listens here: a test that reached the network would fail.
            api_base: "http://127.0.0.1:9".into(),
            client_id: "client".into(),
            client_secret: Secret::new("secret"),
            webhook_id: "WH-ID-1".into(),
            certs: policy,
            currency: kami_core::Currency::Usd,
        },
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn cny_is_refused_before_any_call() {
    let ch = channel(CertPolicy::paypal());
    match ch.create_order(&create_req(1230, Currency::Cny)).await {
        Err(PayError::Unsupported(m)) => assert!(m.contains("CNY"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(format!("{:?}", ch.config()).contains("***"));
    assert!(!format!("{:?}", ch.config()).contains("secret\""));
}

#[test]
fn certificate_urls_are_pinned_to_paypal() {
    let p = CertPolicy::paypal();
    for ok in [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
    ] {
        assert!(p.check_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.com/v1/notifications/certs/CERT-1",
        "https://evil.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.com/v1/notifications/certs/CERT-1",
        "https://x@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/",
        "https://api.paypal.com/v1/other/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/C?x=1",
        "https://www.paypal.com/v1/notifications/certs/CERT-1",
        "file:///etc/passwd",
        "not a url",
    ] {
        assert_eq!(
            p.check_url(bad).err(),
            Some(CertError::UrlNotAllowed),
            "{bad}"
        );
    }
}

/// A CA and PayPal-like signing certificates, generated here.
struct TestPki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

fn params(cn: &str, ca: bool, from: i64, to: i64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    p
}

impl TestPki {
    fn new(name: &str) -> TestPki {
        let key = KeyPair::generate().unwrap();
        let p = params(name, true, T0 - 86_400, T0 + 365 * 86_400);
        let ca_pem = p.self_signed(&key).unwrap().pem();
        TestPki {
            ca_pem,
            ca: Issuer::new(p, key),
        }
    }

    /// A signing certificate for `signer`'s key (and the PEM served at the URL).
    fn leaf(&self, signer: &RsaSigner, cn: &str, from: i64, to: i64) -> String {
        let key = KeyPair::from_pem(&signer.private_key_pem().unwrap()).unwrap();
        params(cn, false, from, to)
            .signed_by(&key, &self.ca)
            .unwrap()
            .pem()
    }

    fn policy(&self) -> CertPolicy {
        CertPolicy::custom(
            &["http://127.0.0.1:1/sim/paypal/v1/notifications/certs/".to_owned()],
            &self.ca_pem,
        )
        .unwrap()
    }
}

const CN: &str = "messageverificationcerts.paypal.com";

#[test]
fn certificates_must_chain_be_current_and_name_paypal() {
    let pki = TestPki::new("Test Root CA");
    let signer = RsaSigner::generate().unwrap();
    let policy = pki.policy();
    let good = pki.leaf(&signer, CN, T0 - 3600, T0 + 86_400);
    let cert = policy.validate(&good, T0).unwrap();
    let msg = b"m";
    assert!(cert.key.verify(
        crate::crypto::RsaHash::Sha256,
        msg,
        &signer.sign(crate::crypto::RsaHash::Sha256, msg).unwrap()
    ));
    assert_eq!(
        policy.validate(&good, T0 + 2 * 86_400).err(),
        Some(CertError::Expired)
    );
    assert_eq!(
        policy.validate(&good, T0 - 7200).err(),
        Some(CertError::Expired)
    );
    let wrong_name = pki.leaf(
        &signer,
        "messageverificationcerts.paypal.com.evil.com",
        T0 - 1,
        T0 + 60,
    );
    assert_eq!(
        policy.validate(&wrong_name, T0).err(),
        Some(CertError::WrongName)
    );
    // The same name from another CA.
    let other = TestPki::new("Test Root CA");
    let foreign = other.leaf(&signer, CN, T0 - 1, T0 + 60);
    assert_eq!(
        policy.validate(&foreign, T0).err(),
        Some(CertError::Untrusted)
    );
    // Through an intermediate served after the leaf.
    let ikey = KeyPair::generate().unwrap();
    let iparams = params("Test Intermediate", true, T0 - 60, T0 + 86_400);
    let inter_pem = iparams.signed_by(&ikey, &pki.ca).unwrap().pem();
    let inter = Issuer::new(iparams, ikey);
    let lkey = KeyPair::from_pem(&signer.private_key_pem().unwrap()).unwrap();
    let leaf = params(CN, false, T0 - 60, T0 + 60)
        .signed_by(&lkey, &inter)
        .unwrap()
        .pem();
    assert!(policy.validate(&format!("{leaf}{inter_pem}"), T0).is_ok());
    assert_eq!(policy.validate(&leaf, T0).err(), Some(CertError::Untrusted));
    // An intermediate that is not a CA does not vouch.
    let nkey = KeyPair::generate().unwrap();
    let nparams = params("Not a CA", false, T0 - 60, T0 + 86_400);
    let n_pem = nparams.signed_by(&nkey, &pki.ca).unwrap().pem();
    let n = Issuer::new(nparams, nkey);
    let leaf2 = params(CN, false, T0 - 60, T0 + 60)
        .signed_by(&lkey, &n)
        .unwrap()
        .pem();
    assert_eq!(
        policy.validate(&format!("{leaf2}{n_pem}"), T0).err(),
        Some(CertError::Untrusted)
    );
    assert_eq!(
        policy.validate("hello", T0).err(),
        Some(CertError::NoCertificate)
    );
    // The CA's own certificate is not a PayPal signing certificate.
    assert_eq!(
        policy.validate(&pki.ca_pem, T0).err(),
        Some(CertError::WrongName)
    );
}

const CERT_URL: &str = "http://127.0.0.1:1/sim/paypal/v1/notifications/certs/CERT-1";

fn capture_event(custom: &str, invoice: &str, value: &str, currency: &str) -> Vec<u8> {
    serde_json::json!({
        "id": "WH-1", "event_version": "1.0", "resource_type": "capture",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {"id": "3C679366HH908993F", "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": value},
            "custom_id": custom, "invoice_id": invoice,
            "create_time": "2026-11-22T02:00:00Z", "update_time": "2026-11-22T02:00:01Z"}
    })
    .to_string()
    .into_bytes()
}

fn raw(headers: Vec<(&'static str, String)>, body: Vec<u8>) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body,
    }
}

#[test]
fn webhooks_verify_offline_and_refuse_every_tampering() {
    let pki = TestPki::new("Test Root CA");
    let signer = RsaSigner::generate().unwrap();
    let ch = channel(pki.policy());
    let pem = pki.leaf(&signer, CN, T0 - 3600, T0 + 86_400);
    let cert = ch.config().certs.validate(&pem, T0).unwrap();
    let body = capture_event("K1", "K1", "12.30", "USD");
    let signed = |body: &[u8], webhook_id: &str, url: &str| {
        sign::sign_headers(
            &signer,
            "tid-1",
            "2026-11-22T02:00:00Z",
            webhook_id,
            url,
            body,
        )
        .unwrap()
    };
    // Not fetched yet: refused, no I/O here.
    let r = raw(signed(&body, "WH-ID-1", CERT_URL), body.clone());
    assert!(matches!(
        ch.verify_notification_at(&r, T0),
        Err(PayError::Transport(_))
    ));
    ch.certs.insert(CERT_URL, cert, T0);
    match ch.verify_notification_at(&r, T0).unwrap() {
        NotifyVerdict::Paid(c) => {
            assert_eq!(c.trade_no, "K1");
            assert_eq!(c.gateway_trade_no, "3C679366HH908993F");
            assert_eq!(c.amount, Money::new(1230, Currency::Usd).unwrap());
            assert_eq!(c.paid_at, Some(1_795_312_801_000));
        }
        other => panic!("{other:?}"),
    }
    // Expired certificate at verification time.
    assert!(ch.verify_notification_at(&r, T0 + 2 * 86_400).is_err());
    // Body changed after signing (amount, currency, custom_id).
    for tampered in [
        capture_event("K1", "K1", "0.01", "USD"),
        capture_event("K1", "K1", "12.30", "EUR"),
        capture_event("K2", "K1", "12.30", "USD"),
    ] {
        let r = raw(signed(&body, "WH-ID-1", CERT_URL), tampered);
        assert!(matches!(
            ch.verify_notification_at(&r, T0),
            Err(PayError::BadSignature)
        ));
    }
    // Signed for another webhook.
    let r = raw(signed(&body, "WH-OTHER", CERT_URL), body.clone());
    assert!(matches!(
        ch.verify_notification_at(&r, T0),
        Err(PayError::BadSignature)
    ));
    // A cert URL off the pinned hosts, even if something is cached under it.
    let evil = "http://evil.example/sim/paypal/v1/notifications/certs/CERT-1";
    let r = raw(signed(&body, "WH-ID-1", evil), body.clone());
    assert!(matches!(
        ch.verify_notification_at(&r, T0),
        Err(PayError::Malformed(_))
    ));
    // Signature of another key.
    let other = RsaSigner::generate().unwrap();
    let h = sign::sign_headers(
        &other,
        "tid-1",
        "2026-11-22T02:00:00Z",
        "WH-ID-1",
        CERT_URL,
        &body,
    )
    .unwrap();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, body.clone()), T0),
        Err(PayError::BadSignature)
    ));
    // Missing header, other algorithm.
    let mut h = signed(&body, "WH-ID-1", CERT_URL);
    h.retain(|(k, _)| *k != sign::H_TRANSMISSION_SIG);
    assert!(matches!(
        ch.verify_notification_at(&raw(h, body.clone()), T0),
        Err(PayError::Malformed(_))
    ));
    let mut h = signed(&body, "WH-ID-1", CERT_URL);
    h.iter_mut()
        .find(|(k, _)| *k == sign::H_AUTH_ALGO)
        .unwrap()
        .1 = "SHA1withRSA".into();
    assert!(matches!(
        ch.verify_notification_at(&raw(h, body.clone()), T0),
        Err(PayError::Malformed(_))
    ));
    // Signed by PayPal, but invoice_id and custom_id disagree: refused.
    let odd = capture_event("K1", "K9", "12.30", "USD");
    let r = raw(signed(&odd, "WH-ID-1", CERT_URL), odd);
    assert!(matches!(
        ch.verify_notification_at(&r, T0),
        Err(PayError::Malformed(_))
    ));
}

#[test]
fn events_other_than_a_completed_capture_do_not_pay() {
    let approved = serde_json::json!({"id": "WH-2", "event_type": "CHECKOUT.ORDER.APPROVED",
        "resource": {"id": "5O190127TN364715T", "status": "APPROVED",
          "purchase_units": [{"custom_id": "K1", "invoice_id": "K1",
            "amount": {"currency_code": "USD", "value": "12.30"}}]}});
    assert_eq!(
        notify::verdict(approved.to_string().as_bytes()).unwrap(),
        NotifyVerdict::NotPaid {
            trade_no: "K1".into(),
            status: "CHECKOUT.ORDER.APPROVED".into()
        }
    );
    let pending = serde_json::json!({"id": "WH-3", "event_type": "PAYMENT.CAPTURE.PENDING",
        "resource": {"id": "C1", "status": "PENDING", "custom_id": "K1",
          "amount": {"currency_code": "USD", "value": "12.30"}}});
    assert!(matches!(
        notify::verdict(pending.to_string().as_bytes()).unwrap(),
        NotifyVerdict::NotPaid { trade_no, .. } if trade_no == "K1"
    ));
    // A "completed" event whose capture is not completed.
    let odd = serde_json::json!({"id": "WH-4", "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {"id": "C1", "status": "PENDING", "custom_id": "K1",
          "amount": {"currency_code": "USD", "value": "12.30"}}});
    assert!(notify::verdict(odd.to_string().as_bytes()).is_err());
    assert!(notify::verdict(b"not json").is_err());
    assert_eq!(notify::ack(Ack::Success).status, 200);
    assert_eq!(notify::ack(Ack::Failure).status, 400);
}

fn order(status: &str, capture: Option<&str>) -> Order {
    let mut unit = serde_json::json!({"custom_id": "K1", "invoice_id": "K1",
        "amount": {"currency_code": "USD", "value": "12.30"}});
    if let Some(s) = capture {
        unit["payments"] = serde_json::json!({"captures": [{"id": "C1", "status": s,
            "custom_id": "K1", "invoice_id": "K1",
            "amount": {"currency_code": "USD", "value": "12.30"}}]});
    }
    serde_json::from_value(serde_json::json!({"id": "O1", "status": status,
        "purchase_units": [unit], "links": [{"rel": "payer-action", "href": "https://x/approve"}]}))
    .unwrap()
}

#[test]
fn order_states_translate() {
    use crate::TradeState as T;
    let st = |o: &Order| wire::order_state(o, "K1").unwrap();
    assert_eq!(
        st(&order("PAYER_ACTION_REQUIRED", None)),
        OrderState::Trade(T::Waiting)
    );
    assert_eq!(st(&order("APPROVED", None)), OrderState::Approved);
    assert_eq!(st(&order("VOIDED", None)), OrderState::Trade(T::Closed));
    assert!(matches!(
        st(&order("COMPLETED", Some("COMPLETED"))),
        OrderState::Trade(T::Paid(_))
    ));
    assert_eq!(
        st(&order("COMPLETED", Some("PENDING"))),
        OrderState::CapturePending
    );
    assert_eq!(
        st(&order("COMPLETED", Some("DECLINED"))),
        OrderState::Trade(T::Closed)
    );
    assert_eq!(
        st(&order("COMPLETED", Some("REFUNDED"))),
        OrderState::Trade(T::Refunded)
    );
    // Bound to the trade asked about.
    assert!(wire::order_state(&order("APPROVED", None), "K2").is_err());
    assert_eq!(
        wire::approve_link(&order("CREATED", None)),
        Some("https://x/approve")
    );
    let cache = CertCache::default();
    assert!(cache.get(CERT_URL, T0).is_none());
}
