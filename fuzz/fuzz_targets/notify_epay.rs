#![no_main]
//! The Epay (v1 MD5 and v2 RSA) notification parsers must never panic, whatever arrives.

use std::sync::OnceLock;

use kami_core::{ChannelId, Method};
use kami_pay::crypto::RsaSigner;
use kami_pay::epay::{EpayChannel, EpayConfig, EpayCredentials, EpayFlow};
use kami_pay::PaymentChannel;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn channels() -> &'static [EpayChannel; 2] {
    static C: OnceLock<[EpayChannel; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let make = |credentials| {
            EpayChannel::new(
                EpayConfig {
                    id: ChannelId::parse("epay").unwrap(),
                    methods: vec![Method::Alipay],
                    priority: 0,
                    gateway: "http://127.0.0.1:9/".into(),
                    pid: "1001".into(),
                    credentials,
                    flow: EpayFlow::Submit,
                },
                reqwest::Client::new(),
            )
        };
        let platform = RsaSigner::generate().unwrap();
        [
            make(EpayCredentials::V1 { key: "fuzz-test-only-key".into() }),
            make(EpayCredentials::V2 {
                merchant_private_key: RsaSigner::generate().unwrap(),
                platform_public_key: platform.verifier().unwrap(),
            }),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = common::raw(data, &[]);
    for c in channels() {
        let _ = c.verify_notification(&raw);
    }
});
