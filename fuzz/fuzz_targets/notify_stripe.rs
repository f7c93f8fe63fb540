#![no_main]
//! The Stripe webhook parser must never panic: on raw input (header carved from the front),
//! and on bodies correctly signed with the channel's secret, so the event reading behind the
//! signature is reached too.

use std::sync::OnceLock;

use kami_core::{ChannelId, Method};
use kami_pay::stripe::{signature_header, StripeChannel, StripeConfig};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const SECRET: &str = "whsec_fuzz_test_only";
const NOW: i64 = 1_700_000_000;

fn channel() -> &'static StripeChannel {
    static C: OnceLock<StripeChannel> = OnceLock::new();
    C.get_or_init(|| {
        StripeChannel::new(
            StripeConfig {
                id: ChannelId::parse("stripe").unwrap(),
                methods: vec![Method::Card],
                priority: 0,
                api_base: "http://127.0.0.1:9".into(),
                secret_key: "sk_test_fuzz".into(),
                webhook_secret: SECRET.into(),
            },
            reqwest::Client::new(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = common::raw(data, &["stripe-signature"]);
    let _ = channel().verify_notification_at(&raw, NOW);
    let mut signed = raw;
    signed.method = "POST".into();
    let header = signature_header(&[SECRET], NOW, &signed.body);
    signed.headers = vec![("stripe-signature".into(), header)];
    let _ = channel().verify_notification_at(&signed, NOW);
});
