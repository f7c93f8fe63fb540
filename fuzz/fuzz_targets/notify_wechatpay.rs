#![no_main]
//! The WeChat Pay v3 notification parser (signed headers, JSON envelope, AES-256-GCM resource)
//! and the Authorization header parser must never panic. A fixed clock lets fuzzed timestamps
//! pass the 300 s window so the envelope parsing is reached.

use std::sync::OnceLock;

use kami_core::{ChannelId, Method};
use kami_pay::crypto::RsaSigner;
use kami_pay::wechatpay::{AuthorizationParams, PlatformKeys, WechatMode, WechatPayChannel, WechatPayConfig};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const NOW: i64 = 1_700_000_000;

fn channel() -> &'static WechatPayChannel {
    static C: OnceLock<WechatPayChannel> = OnceLock::new();
    C.get_or_init(|| {
        WechatPayChannel::new(
            WechatPayConfig {
                id: ChannelId::parse("wx").unwrap(),
                methods: vec![Method::Wxpay],
                priority: 0,
                api_base: "http://127.0.0.1:9".into(),
                mchid: "1900000001".into(),
                appid: "wx0000000000000001".into(),
                merchant_serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
                merchant_private_key: RsaSigner::generate().unwrap(),
                apiv3_key: b"fuzz-test-only-apiv3-key-32bytes".to_vec(),
                platform: PlatformKeys::PublicKey {
                    id: "PUB_KEY_ID_0000000000000000000000000001".into(),
                    key: RsaSigner::generate().unwrap().verifier().unwrap(),
                },
                mode: WechatMode::Auto,
                jsapi: None,
            },
            reqwest::Client::new(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = common::raw(
        data,
        &["wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial", "wechatpay-signature-type"],
    );
    let _ = channel().verify_notification_at(&raw, NOW);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = AuthorizationParams::parse(s);
    }
});
