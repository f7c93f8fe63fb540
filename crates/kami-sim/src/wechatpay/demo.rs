//! Demo and test wiring of the WeChat Pay simulator: a matching simulator and channel
//! configuration with fresh keys ([`demo_pair`]), and the browser page of a `code_url`
//! ([`scan_page_url`]).

use std::time::Duration;

use kami_core::{ChannelId, Method};
use kami_pay::crypto::{KeyError, RsaSigner};
use kami_pay::wechatpay::{PlatformKeys, WechatMode, WechatPayConfig};

use super::{random_alnum, random_digits, WechatSimConfig, CODE_URL_PREFIX, PREFIX};

/// A matching simulator and channel configuration with freshly generated keys (demo, tests).
pub struct DemoPair {
    pub sim: WechatSimConfig,
    pub channel: WechatPayConfig,
}

/// Generate a [`DemoPair`]: `api_base` is where the simulator is mounted, e.g.
/// `http://127.0.0.1:8080/sim/wechatpay`. Public-key mode, default retry schedule.
pub fn demo_pair(
    id: ChannelId,
    methods: Vec<Method>,
    api_base: &str,
    mode: WechatMode,
) -> Result<DemoPair, KeyError> {
    let merchant = RsaSigner::generate()?;
    let platform = RsaSigner::generate()?;
    let platform_verifier = platform.verifier()?;
    let mchid = format!("19{}", random_digits(8));
    let appid = format!("wx{}", random_alnum(16).to_ascii_lowercase());
    let serial = hex::encode_upper(rand::random::<[u8; 20]>());
    let key_id = format!("PUB_KEY_ID_01{}{}", mchid, random_digits(22));
    let apiv3_key = random_alnum(32).into_bytes();
    Ok(DemoPair {
        sim: WechatSimConfig {
            mchid: mchid.clone(),
            appid: appid.clone(),
            merchant_serial_no: serial.clone(),
            merchant_public_key: merchant.verifier()?,
            platform_key_id: key_id.clone(),
            apiv3_key: apiv3_key.clone(),
            retry_schedule: WechatSimConfig::default_retry_schedule(),
            notify_timeout: Duration::from_secs(5),
            platform_key: platform,
            appsecret: random_alnum(32).to_ascii_lowercase(),
        },
        channel: WechatPayConfig {
            id,
            methods,
            priority: 0,
            api_base: api_base.to_owned(),
            mchid,
            appid,
            merchant_serial_no: serial,
            merchant_private_key: merchant,
            apiv3_key,
            platform: PlatformKeys::PublicKey {
                id: key_id,
                key: platform_verifier,
            },
            mode,
            jsapi: None,
        },
    })
}

/// The scan page of a `code_url` the simulator issued: `{sim_base}/sim/wechatpay/scan/TOKEN`
/// (`sim_base` without trailing slash, `""` for a root-relative link). `None` for other URLs.
pub fn scan_page_url(sim_base: &str, code_url: &str) -> Option<String> {
    let token = code_url.strip_prefix(CODE_URL_PREFIX)?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(format!(
        "{}{PREFIX}/scan/{token}",
        sim_base.trim_end_matches('/')
    ))
}
