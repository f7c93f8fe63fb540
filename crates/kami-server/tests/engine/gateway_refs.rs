//! Channels that know a trade by their own id (Stripe's Checkout Session, PayPal's order), on
//! both backends: the reference a create call returns is kept on the payment and named back
//! to the channel by every later call — the seller's check (query), cancel (close) and a
//! refund, which also names the gateway's payment id. The channel here refuses any call that
//! does not name it (`Faults::name_refs`).

use serde_json::json;

use kami_testkit::both_backends;
use kami_testkit::faulty::{faulty_sandboxes, Faults, FaultySpec};
use kami_testkit::{Backend, TestApp};

fn no(order: &serde_json::Value) -> &str {
    order["order_no"].as_str().unwrap()
}

async fn a_gateway_reference_is_kept_and_named_back(backend: Backend) {
    let faults = Faults::new(7);
    faults.name_refs();
    let spec = FaultySpec {
        id: "byref",
        priority: 1,
        faults: faults.clone(),
    };
    let app = TestApp::spawn_opts(backend, "", faulty_sandboxes(vec![spec])).await;
    app.stocked_product("refd", 500, 3).await;

    let unpaid = app.order("refd", 1).await;
    let (s, v) = app
        .admin_post(
            &format!("/api/v1/admin/orders/{}/check-payment", no(&unpaid)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Named by its reference (else the channel refuses the query): not paid yet.
    assert_eq!(v["checked"][0]["answer"], "not_found", "{v}");
    let (s, v) = app
        .admin_post(
            &format!("/api/v1/admin/orders/{}/cancel", no(&unpaid)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "expired", "{v}");

    let paid = app.order("refd", 1).await;
    app.pay(&paid).await;
    assert_eq!(app.wait_settled(&paid).await["status"], "delivered");
    let (s, v) = app
        .refund(no(&paid), json!({"amount": 200, "refund_no": "R-REF1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");

    let seen = faults.refs_seen();
    let unpaid_ref = format!("gw-{}", no(&unpaid));
    for call in [
        format!("query {unpaid_ref}"),
        format!("close {unpaid_ref}"),
        format!("refund gw-{}", no(&paid)),
    ] {
        assert!(seen.contains(&call), "{call} not in {seen:?}");
    }
}
both_backends!(a_gateway_reference_is_kept_and_named_back);
