#![no_main]
//! The sandbox notification parser must never panic, whatever arrives.

use std::sync::OnceLock;

use kami_core::{ChannelId, Method};
use kami_pay::sandbox::SandboxChannel;
use kami_pay::PaymentChannel;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn channel() -> &'static SandboxChannel {
    static C: OnceLock<SandboxChannel> = OnceLock::new();
    C.get_or_init(|| {
        SandboxChannel::new(
            ChannelId::parse("sandbox").unwrap(),
            vec![Method::Sandbox],
            0,
            b"fuzz-test-only-secret".to_vec(),
            "http://127.0.0.1:9".into(),
            reqwest::Client::new(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = channel().verify_notification(&common::raw(data, &[]));
});
