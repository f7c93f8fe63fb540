//! Stripe: the checked vector of appendix A.1, the `Stripe-Signature` rules as stripe-python
//! applies them, the webhook verdicts, the order binding, the create form and expiry window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kami_core::{ChannelId, Currency, Method, Money};
use serde_json::json;

use super::*;
use crate::common::test_support::{bad_signature, malformed};

const SECRET: &str = "whsec_test_secret";
const NOW: i64 = 1_700_000_000;

/// Appendix A.1's checked vector (stripe-python `WebhookSignature` agrees).
#[test]
fn checked_vector_from_protocols_a1() {
    let body = br#"{"id":"evt_test","object":"event","type":"checkout.session.completed"}"#;
    assert_eq!(
        v1_signature(SECRET, 1_700_000_000, body),
        "9b19c30bb5f6198a9128346b4849a56c6c32857a47889eed5b47c5f30823e7dc"
    );
    let header = signature_header(&[SECRET], 1_700_000_000, body);
    assert_eq!(
        header,
        "t=1700000000,v1=9b19c30bb5f6198a9128346b4849a56c6c32857a47889eed5b47c5f30823e7dc"
    );
    assert_eq!(verify_header(&header, body, SECRET, NOW, 300), Ok(NOW));
}

#[test]
fn the_secret_is_the_whole_whsec_string_not_base64() {
    let body = b"{}";
    let whole = v1_signature(SECRET, NOW, body);
    let without_prefix = v1_signature("test_secret", NOW, body);
    assert_ne!(whole, without_prefix);
    let h = format!("t={NOW},v1={without_prefix}");
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::NoMatch)
    );
}

#[test]
fn any_v1_may_match_and_other_schemes_are_ignored() {
    let body = b"{\"a\":1}";
    let good = v1_signature(SECRET, NOW, body);
    let other = v1_signature("whsec_old_secret", NOW, body);
    // Rolling a secret: one v1 per live secret, ours in either place.
    for h in [
        format!("t={NOW},v1={other},v1={good}"),
        format!("t={NOW},v1={good},v1={other}"),
        format!("v0={good},t={NOW},v1={good}"),
    ] {
        assert_eq!(verify_header(&h, body, SECRET, NOW, 300), Ok(NOW), "{h}");
    }
    // Items are not trimmed (stripe-python): ` v1` is another scheme.
    let h = format!("t={NOW}, v1={good}");
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::Unparsable)
    );
    // A v0 (or any other scheme) never counts, even with the right value.
    let h = format!("t={NOW},v0={good}");
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::Unparsable)
    );
    let h = format!("t={NOW},v1={other}");
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::NoMatch)
    );
    // stripe-python compares hex strings: upper case matches nothing.
    let h = format!("t={NOW},v1={}", good.to_uppercase());
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::NoMatch)
    );
}

#[test]
fn only_old_timestamps_are_refused_after_the_signature() {
    let body = b"{}";
    let at = |t: i64| signature_header(&[SECRET], t, body);
    assert_eq!(
        verify_header(&at(NOW - 300), body, SECRET, NOW, 300),
        Ok(NOW - 300)
    );
    assert_eq!(
        verify_header(&at(NOW - 301), body, SECRET, NOW, 300),
        Err(SignatureFailure::TooOld)
    );
    // A future timestamp passes, as in stripe-python.
    assert_eq!(
        verify_header(&at(NOW + 3600), body, SECRET, NOW, 300),
        Ok(NOW + 3600)
    );
    // A forged old message is a bad signature, not a stale one.
    let h = format!("t={},v1={}", NOW - 999, "0".repeat(64));
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::NoMatch)
    );
    // The signed timestamp is the header's: moving it breaks the signature.
    let h = at(NOW).replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
    assert_eq!(
        verify_header(&h, body, SECRET, NOW, 300),
        Err(SignatureFailure::NoMatch)
    );
}

#[test]
fn headers_without_timestamp_or_v1_do_not_parse() {
    for h in [
        "",
        "v1=abc",
        "t=",
        "t=12a,v1=ab",
        "t=-5,v1=ab",
        "garbage",
        "t=1",
    ] {
        assert_eq!(parse_header(h), Err(SignatureFailure::Unparsable), "{h}");
    }
    assert_eq!(parse_header("t=5,v1=a,v1=b"), Ok((5, vec!["a", "b"])));
    // The first `t` counts; a value ends at the next `=`.
    assert_eq!(parse_header("t=5,t=6,v1=a=b"), Ok((5, vec!["a"])));
}

fn channel() -> StripeChannel {
    StripeChannel::new(
        StripeConfig {
            id: ChannelId::parse("stripe-main").unwrap(),
            methods: vec![Method::Card],
            priority: 10,
            api_base: DEFAULT_API_BASE.into(),
            secret_key: "sk_test_123".into(),
            webhook_secret: SECRET.into(),
        },
        reqwest::Client::new(),
    )
}

fn session(trade: &str) -> serde_json::Value {
    json!({
        "id": "cs_test_a1", "object": "checkout.session", "amount_total": 1230,
        "currency": "cny", "client_reference_id": trade, "metadata": {"trade_no": trade},
        "payment_intent": "pi_3Abc", "payment_status": "paid", "status": "complete",
        "mode": "payment", "url": null, "created": NOW - 60, "expires_at": NOW + 1800,
    })
}

fn event(kind: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1", "object": "event", "type": kind, "created": NOW,
        "api_version": "2024-06-20", "livemode": false, "pending_webhooks": 1,
        "data": {"object": object},
    }))
    .unwrap()
}

fn webhook(body: &[u8], header: &str) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (SIGNATURE_HEADER.into(), header.into()),
        ],
        body: body.to_vec(),
    }
}

fn signed(body: &[u8]) -> RawNotification {
    webhook(body, &signature_header(&[SECRET], NOW, body))
}

#[test]
fn a_paid_completed_session_is_a_payment() {
    let ch = channel();
    let body = event("checkout.session.completed", session("K1A1"));
    let v = ch.verify_notification_at(&signed(&body), NOW).unwrap();
    assert_eq!(
        v,
        NotifyVerdict::Paid(crate::PaymentConfirmation {
            coin_amount: None,
            trade_no: "K1A1".into(),
            gateway_trade_no: "pi_3Abc".into(),
            amount: Money::new(1230, Currency::Cny).unwrap(),
            paid_at: Some(NOW * 1000),
        })
    );
    let mut s = session("K1A1");
    s["payment_status"] = json!("paid");
    let body = event("checkout.session.async_payment_succeeded", s);
    assert!(matches!(
        ch.verify_notification_at(&signed(&body), NOW),
        Ok(NotifyVerdict::Paid(_))
    ));
}

#[test]
fn zero_decimal_currencies_are_whole_units() {
    let ch = channel();
    let mut s = session("K2A1");
    s["currency"] = json!("jpy");
    s["amount_total"] = json!(500);
    let body = event("checkout.session.completed", s);
    match ch.verify_notification_at(&signed(&body), NOW) {
        Ok(NotifyVerdict::Paid(c)) => assert_eq!(c.amount, Money::new(500, Currency::Jpy).unwrap()),
        other => panic!("{other:?}"),
    }
    assert_eq!(currency_param(Currency::Jpy), "jpy");
    assert!(parse_currency("JPY").is_err(), "Stripe writes lower case");
    assert!(parse_currency("xyz").is_err());
}

#[test]
fn unpaid_failed_and_expired_sessions_are_not_payments() {
    let ch = channel();
    let cases = [
        ("checkout.session.completed", "unpaid", "complete"),
        (
            "checkout.session.async_payment_failed",
            "unpaid",
            "complete",
        ),
        ("checkout.session.expired", "unpaid", "expired"),
        // A paid-looking body under an event that does not mean payment.
        ("checkout.session.expired", "paid", "complete"),
    ];
    for (kind, payment_status, status) in cases {
        let mut s = session("K3A1");
        s["payment_status"] = json!(payment_status);
        s["status"] = json!(status);
        let body = event(kind, s);
        match ch.verify_notification_at(&signed(&body), NOW) {
            Ok(NotifyVerdict::NotPaid { trade_no, status }) => {
                assert_eq!(trade_no, "K3A1");
                assert!(status.starts_with(kind), "{status}");
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    // Other events are authentic but not kami's business: acknowledged, no trade.
    let body = event("charge.refunded", json!({"id": "ch_1", "object": "charge"}));
    assert_eq!(
        ch.verify_notification_at(&signed(&body), NOW).unwrap(),
        NotifyVerdict::NotPaid {
            trade_no: String::new(),
            status: "charge.refunded".into()
        }
    );
    // A session another integration created (no binding at all) is not refused either.
    let mut s = session("x");
    s["client_reference_id"] = json!(null);
    s["metadata"] = json!({});
    let body = event("checkout.session.completed", s);
    assert!(matches!(
        ch.verify_notification_at(&signed(&body), NOW),
        Ok(NotifyVerdict::NotPaid { trade_no, .. }) if trade_no.is_empty()
    ));
}

#[test]
fn binding_that_disagrees_is_refused() {
    let ch = channel();
    let mut s = session("K4A1");
    s["client_reference_id"] = json!("K9A1");
    let m =
        malformed(ch.verify_notification_at(&signed(&event("checkout.session.completed", s)), NOW));
    assert!(m.contains("disagree"), "{m}");
    let mut s = session("K4A1");
    s["metadata"] = json!({});
    malformed(ch.verify_notification_at(&signed(&event("checkout.session.completed", s)), NOW));
    // A paid session needs its payment intent, amount and currency.
    for field in ["payment_intent", "amount_total", "currency"] {
        let mut s = session("K4A1");
        s[field] = json!(null);
        let m = malformed(
            ch.verify_notification_at(&signed(&event("checkout.session.completed", s)), NOW),
        );
        assert!(m.contains(field), "{field}: {m}");
    }
}

#[test]
fn tampered_or_stale_webhooks_are_refused() {
    let ch = channel();
    let body = event("checkout.session.completed", session("K5A1"));
    let header = signature_header(&[SECRET], NOW, &body);
    // Every checked field changed after signing.
    for (from, to) in [
        ("\"amount_total\":1230", "\"amount_total\":1"),
        ("\"currency\":\"cny\"", "\"currency\":\"usd\""),
        (
            "\"client_reference_id\":\"K5A1\"",
            "\"client_reference_id\":\"K6A1\"",
        ),
        (
            "\"payment_status\":\"paid\"",
            "\"payment_status\":\"unpaid\"",
        ),
    ] {
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains(from), "{from} in {text}");
        let tampered = text.replace(from, to);
        bad_signature(ch.verify_notification_at(&webhook(tampered.as_bytes(), &header), NOW));
    }
    // Another secret.
    let h = signature_header(&["whsec_other"], NOW, &body);
    bad_signature(ch.verify_notification_at(&webhook(&body, &h), NOW));
    // Too old.
    let h = signature_header(&[SECRET], NOW - 301, &body);
    assert!(matches!(
        ch.verify_notification_at(&webhook(&body, &h), NOW),
        Err(PayError::Stale)
    ));
    // No header, two headers, a GET.
    let mut raw = signed(&body);
    raw.headers.retain(|(k, _)| k != SIGNATURE_HEADER);
    malformed(ch.verify_notification_at(&raw, NOW));
    let mut raw = signed(&body);
    raw.headers.push((SIGNATURE_HEADER.into(), header.clone()));
    malformed(ch.verify_notification_at(&raw, NOW));
    let mut raw = signed(&body);
    raw.method = "GET".into();
    malformed(ch.verify_notification_at(&raw, NOW));
    // Signed, but not an event.
    let not_event = br#"{"id":"x","object":"charge","type":"t","data":{"object":{}}}"#;
    malformed(ch.verify_notification_at(&signed(not_event), NOW));
}

#[test]
fn acks_are_what_stripe_expects() {
    let ch = channel();
    let ok = ch.ack(Ack::Success);
    assert_eq!((ok.status, ok.body.as_str()), (200, r#"{"received":true}"#));
    let fail = ch.ack(Ack::Failure);
    assert!(
        !(200..300).contains(&fail.status),
        "any non-2xx makes Stripe resend"
    );
}

#[test]
fn expiry_is_moved_into_stripes_window() {
    let now = 1_800_000_000; // a whole minute
                             // A 15-minute order: the earliest Stripe takes, with the margin, rounded up.
    let t = expires_at(now, now + 15 * 60);
    assert!(
        t >= now + MIN_EXPIRY_SECS + EXPIRY_MARGIN_SECS && t < now + 34 * 60,
        "{t}"
    );
    assert_eq!(t % 60, 0);
    // Inside the window: the deadline itself (to the minute).
    assert_eq!(expires_at(now, now + 3 * 3600), now + 3 * 3600);
    // Beyond a day: the latest Stripe takes.
    let t = expires_at(now, now + 3 * 86400);
    assert!(
        t <= now + MAX_EXPIRY_SECS - EXPIRY_MARGIN_SECS && t > now + 23 * 3600,
        "{t}"
    );
    // The same minute gives the same value (a retried create sends the same form).
    assert_eq!(
        expires_at(now + 1, now + 60),
        expires_at(now + 30, now + 60)
    );
}

#[test]
fn the_create_form_binds_the_trade_and_prices_in_minor_units() {
    let form = session_form(
        "K20260101A1",
        Money::new(1230, Currency::Usd).unwrap(),
        "VIP 月卡",
        "https://shop.example/pay/return/s",
        "https://shop.example/pay/return/s",
        1_800_002_000,
    );
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("mode"), Some("payment"));
    assert_eq!(get("payment_method_types[0]"), Some("card"));
    assert_eq!(get("line_items[0][price_data][currency]"), Some("usd"));
    assert_eq!(get("line_items[0][price_data][unit_amount]"), Some("1230"));
    assert_eq!(
        get("line_items[0][price_data][product_data][name]"),
        Some("VIP 月卡")
    );
    assert_eq!(get("line_items[0][quantity]"), Some("1"));
    assert_eq!(get("client_reference_id"), Some("K20260101A1"));
    assert_eq!(get("metadata[trade_no]"), Some("K20260101A1"));
    assert_eq!(
        get("payment_intent_data[metadata][trade_no]"),
        Some("K20260101A1")
    );
    assert_eq!(get("expires_at"), Some("1800002000"));
    assert_eq!(checkout_idempotency_key("K1A1"), "kami-checkout-K1A1");
    let refund = refund_form(
        "pi_1",
        Money::new(230, Currency::Usd).unwrap(),
        "K1A1",
        "R1",
        Some(" buyer asked "),
    );
    assert_eq!(
        refund,
        [
            ("payment_intent", "pi_1"),
            ("amount", "230"),
            ("metadata[trade_no]", "K1A1"),
            ("metadata[refund_no]", "R1"),
            ("metadata[reason]", "buyer asked"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn sessions_read_as_trade_states() {
    let read = |v: serde_json::Value| serde_json::from_value::<Session>(v).unwrap();
    let s = read(session("K7A1"));
    assert!(
        matches!(s.state_for("K7A1"), Ok(TradeState::Paid(c)) if c.gateway_trade_no == "pi_3Abc")
    );
    assert!(s.state_for("K8A1").is_err(), "bound to another trade");
    let mut open = session("K7A1");
    open["status"] = json!("open");
    open["payment_status"] = json!("unpaid");
    open["payment_intent"] = json!(null);
    assert_eq!(read(open).state_for("K7A1").unwrap(), TradeState::Waiting);
    let mut expired = session("K7A1");
    expired["status"] = json!("expired");
    expired["payment_status"] = json!("unpaid");
    assert_eq!(read(expired).state_for("K7A1").unwrap(), TradeState::Closed);
    let mut processing = session("K7A1");
    processing["payment_status"] = json!("unpaid");
    assert_eq!(
        read(processing).state_for("K7A1").unwrap(),
        TradeState::Waiting
    );
    let mut expanded = session("K7A1");
    expanded["payment_intent"] = json!({"id": "pi_9", "object": "payment_intent"});
    assert_eq!(read(expanded).payment_intent_id(), Some("pi_9"));
}

#[test]
fn object_ids_are_checked_before_they_reach_a_path() {
    assert!(valid_object_id("cs_test_a1B2", "cs_"));
    for bad in [
        "cs_",
        "pi_1",
        "cs_../../v1/refunds",
        "cs_a?x=1",
        "cs_a/expire",
        "",
    ] {
        assert!(!valid_object_id(bad, "cs_"), "{bad}");
    }
}

#[test]
fn api_errors_name_stripes_code() {
    let e = wire::api_error(
        400,
        br#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters they were first used with."}}"#,
    );
    assert!(
        matches!(e, PayError::Gateway { ref code, .. } if code == "idempotency_error"),
        "{e:?}"
    );
    let e = wire::api_error(
        404,
        br#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such checkout.session: 'cs_x'"}}"#,
    );
    assert!(matches!(e, PayError::Gateway { ref code, .. } if code == "resource_missing"));
    let e = wire::api_error(502, b"<html>");
    assert!(matches!(e, PayError::Gateway { ref code, .. } if code == "http_502"));
}

#[test]
fn debug_never_shows_the_keys() {
    let ch = channel();
    let d = format!("{ch:?}");
    assert!(!d.contains("sk_test_123") && !d.contains(SECRET), "{d}");
}
