#![no_main]
//! The Alipay notification parser (form or query, RSA2 and legacy RSA) must never panic.

use std::sync::OnceLock;

use kami_core::{ChannelId, Method};
use kami_pay::alipay::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use kami_pay::crypto::RsaSigner;
use kami_pay::PaymentChannel;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn channels() -> &'static [AlipayChannel; 2] {
    static C: OnceLock<[AlipayChannel; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let gateway = RsaSigner::generate().unwrap();
        let make = |sign_type| {
            AlipayChannel::new(
                AlipayConfig {
                    id: ChannelId::parse("ali").unwrap(),
                    methods: vec![Method::Alipay],
                    priority: 0,
                    gateway: "http://127.0.0.1:9/gateway.do".into(),
                    app_id: "2021000000000001".into(),
                    app_private_key: RsaSigner::generate().unwrap(),
                    alipay_public_key: gateway.verifier().unwrap(),
                    sign_type,
                    mode: AlipayMode::Auto,
                    seller_id: Some("2088000000000001".into()),
                    app_auth_token: None,
                    sys_service_provider_id: None,
                },
                reqwest::Client::new(),
            )
        };
        [make(AlipaySignType::Rsa2), make(AlipaySignType::Rsa)]
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = common::raw(data, &[]);
    for c in channels() {
        let _ = c.verify_notification(&raw);
    }
});
