//! Builds the configured payment channels and routes a buyer's method to one of them.

use std::sync::Arc;

use kami_core::Method;
use kami_pay::alipay::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use kami_pay::crypto::{Certificate, RsaSigner, RsaVerifier};
use kami_pay::epay::{EpayChannel, EpayConfig, EpayCredentials, EpayFlow};
use kami_pay::sandbox::SandboxChannel;
use kami_pay::wechatpay::{PlatformKeys, WechatMode, WechatPayChannel, WechatPayConfig};
use kami_pay::PaymentChannel;

use crate::config::{ChannelConfig, ChannelKind, Config};

/// A sandbox channel whose gateway is this very server: its simulator must be mounted here.
pub struct LocalSandbox {
    pub secret: Vec<u8>,
}

pub struct Channels {
    list: Vec<Arc<dyn PaymentChannel>>,
    /// Ids of channels that take no new orders.
    disabled: Vec<String>,
    /// Recent payment-creation failures per channel id (a circuit breaker).
    health: std::sync::Mutex<std::collections::HashMap<String, Health>>,
}

/// After this many creation failures in a row a channel rests (takes no new orders) for
/// [`REST_MS`]; then it is tried again, and one success clears it.
const FAILURES_TO_REST: u32 = 3;
const REST_MS: i64 = 60_000;

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    resting_until: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("channel `{id}`: cannot read `{key}` file {path}: {err}")]
    File {
        id: String,
        key: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("channel `{id}`: `{key}`: {message}")]
    Key {
        id: String,
        key: &'static str,
        message: String,
    },
}

/// Reads the kind-specific files of one channel, with errors naming the channel and key.
struct Files<'a> {
    c: &'a ChannelConfig,
    config: &'a Config,
}

impl Files<'_> {
    fn text(&self, key: &'static str, path: Option<&String>) -> Result<String, ChannelSetupError> {
        let path = path.ok_or_else(|| self.err(key, "missing"))?;
        let full = self.config.base_dir.join(path);
        std::fs::read_to_string(&full).map_err(|err| ChannelSetupError::File {
            id: self.c.id.to_string(),
            key,
            path: full.display().to_string(),
            err,
        })
    }
    fn signer(
        &self,
        key: &'static str,
        path: Option<&String>,
    ) -> Result<RsaSigner, ChannelSetupError> {
        RsaSigner::from_text(&self.text(key, path)?).map_err(|e| self.err(key, &e.to_string()))
    }
    fn verifier(
        &self,
        key: &'static str,
        path: Option<&String>,
    ) -> Result<RsaVerifier, ChannelSetupError> {
        RsaVerifier::from_text(&self.text(key, path)?).map_err(|e| self.err(key, &e.to_string()))
    }
    fn required(&self, key: &'static str, v: Option<&String>) -> Result<String, ChannelSetupError> {
        v.cloned().ok_or_else(|| self.err(key, "missing"))
    }
    fn err(&self, key: &'static str, message: &str) -> ChannelSetupError {
        ChannelSetupError::Key {
            id: self.c.id.to_string(),
            key,
            message: message.to_owned(),
        }
    }
}

fn sandbox_secret(c: &ChannelConfig, config: &Config) -> Result<Vec<u8>, ChannelSetupError> {
    if let Some(s) = &c.secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    if let Some(p) = &c.secret_file {
        let path = config.base_dir.join(p);
        return std::fs::read_to_string(&path)
            .map(|s| s.trim().as_bytes().to_vec())
            .map_err(|err| ChannelSetupError::File {
                id: c.id.to_string(),
                key: "secret_file",
                path: path.display().to_string(),
                err,
            });
    }
    // No secret configured: a fresh one per start, shared only with the in-process simulator.
    Ok(hex::encode(rand::random::<[u8; 32]>()).into_bytes())
}

impl Channels {
    /// Build every enabled channel. `public_url` is this server's base URL (no trailing slash).
    pub fn build(
        config: &Config,
        public_url: &str,
        http: &reqwest::Client,
    ) -> Result<(Channels, Option<LocalSandbox>), ChannelSetupError> {
        let mut list: Vec<Arc<dyn PaymentChannel>> = Vec::new();
        let mut local = None;
        // Disabled channels are built too: orders already sent to them must still be notified,
        // queried, closed and refunded; they just take no new orders (see `route`).
        for c in &config.channels {
            match c.kind {
                ChannelKind::Sandbox => {
                    let secret = sandbox_secret(c, config)?;
                    let gateway = c.gateway.clone().unwrap_or_else(|| public_url.to_owned());
                    if gateway.trim_end_matches('/') == public_url && local.is_none() {
                        local = Some(LocalSandbox {
                            secret: secret.clone(),
                        });
                    }
                    list.push(Arc::new(SandboxChannel::new(
                        c.id.clone(),
                        c.methods.clone(),
                        c.priority,
                        secret,
                        gateway,
                        http.clone(),
                    )));
                }
                ChannelKind::Alipay => list.push(Arc::new(build_alipay(c, config, http)?)),
                ChannelKind::Wechatpay => list.push(Arc::new(build_wechatpay(c, config, http)?)),
                ChannelKind::Epay => list.push(Arc::new(build_epay(c, config, http)?)),
            }
        }
        let disabled = config
            .channels
            .iter()
            .filter(|c| !c.enabled)
            .map(|c| c.id.to_string())
            .collect();
        Ok((
            Channels {
                list,
                disabled,
                health: Default::default(),
            },
            local,
        ))
    }

    /// Add a channel built elsewhere (the demo's simulator-wired channels).
    pub fn push(&mut self, channel: Arc<dyn PaymentChannel>) {
        self.list.push(channel);
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn PaymentChannel>> {
        self.list.iter().find(|c| c.id().as_str() == id)
    }

    /// The preferred healthy channel for a buyer-facing method (highest priority first).
    pub fn route(&self, method: Method) -> Option<&Arc<dyn PaymentChannel>> {
        let now = crate::time::now_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.list
            .iter()
            .filter(|c| {
                c.methods().contains(&method)
                    && !self.disabled.iter().any(|d| d == c.id().as_str())
                    && health
                        .get(c.id().as_str())
                        .is_none_or(|h| h.resting_until <= now)
            })
            .max_by_key(|c| c.priority())
    }

    /// Record how a payment creation went: repeated failures rest the channel.
    pub fn record_create(&self, channel_id: &str, ok: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            health.remove(channel_id);
            return;
        }
        let h = health.entry(channel_id.to_owned()).or_default();
        h.failures += 1;
        if h.failures >= FAILURES_TO_REST {
            h.resting_until = crate::time::now_ms() + REST_MS;
            h.failures = 0;
            tracing::warn!(
                channel = channel_id,
                "payment creation failed {FAILURES_TO_REST} times in a row; channel rests for {} s",
                REST_MS / 1000
            );
        }
    }

    /// Methods some channel serves, for the catalogue.
    pub fn methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.route(*m).is_some())
            .collect()
    }
}

const ALIPAY_DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

fn build_alipay(
    c: &ChannelConfig,
    config: &Config,
    http: &reqwest::Client,
) -> Result<AlipayChannel, ChannelSetupError> {
    let f = Files { c, config };
    let cfg = AlipayConfig {
        id: c.id.clone(),
        methods: c.methods.clone(),
        priority: c.priority,
        gateway: c
            .gateway
            .clone()
            .unwrap_or_else(|| ALIPAY_DEFAULT_GATEWAY.to_owned()),
        app_id: f.required("app_id", c.app_id.as_ref())?,
        app_private_key: f.signer("app_private_key_file", c.app_private_key_file.as_ref())?,
        alipay_public_key: f
            .verifier("alipay_public_key_file", c.alipay_public_key_file.as_ref())?,
        sign_type: match c.sign_type.as_deref() {
            Some("RSA") => AlipaySignType::Rsa,
            _ => AlipaySignType::Rsa2,
        },
        mode: match c.mode.as_deref() {
            Some("qr") => AlipayMode::Qr,
            Some("page") => AlipayMode::Page,
            Some("wap") => AlipayMode::Wap,
            _ => AlipayMode::Auto,
        },
        seller_id: c.seller_id.clone(),
        app_auth_token: c.app_auth_token.clone(),
        sys_service_provider_id: c.sys_service_provider_id.clone(),
    };
    Ok(AlipayChannel::new(cfg, http.clone()))
}

fn build_wechatpay(
    c: &ChannelConfig,
    config: &Config,
    http: &reqwest::Client,
) -> Result<WechatPayChannel, ChannelSetupError> {
    let f = Files { c, config };
    let apiv3_key = f
        .text("apiv3_key_file", c.apiv3_key_file.as_ref())?
        .trim()
        .as_bytes()
        .to_vec();
    if apiv3_key.len() != 32 {
        return Err(f.err(
            "apiv3_key_file",
            "the APIv3 key must be exactly 32 characters",
        ));
    }
    let platform_text = f.text(
        "wechatpay_public_key_file",
        c.wechatpay_public_key_file.as_ref(),
    )?;
    // A certificate file (one or more PEM certificates) selects platform-certificate mode;
    // a public key selects the WeChat Pay public-key mode and needs its `PUB_KEY_ID_...`.
    let platform = if platform_text.contains("BEGIN CERTIFICATE") {
        let certs = split_pem_certificates(&platform_text)
            .iter()
            .map(|pem| Certificate::from_text(pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| f.err("wechatpay_public_key_file", &e.to_string()))?;
        PlatformKeys::Certificates(certs)
    } else {
        let id = f.required(
            "wechatpay_public_key_id",
            c.wechatpay_public_key_id.as_ref(),
        )?;
        if !id.starts_with("PUB_KEY_ID_") {
            return Err(f.err("wechatpay_public_key_id", "must start with PUB_KEY_ID_"));
        }
        let key = RsaVerifier::from_text(&platform_text)
            .map_err(|e| f.err("wechatpay_public_key_file", &e.to_string()))?;
        PlatformKeys::PublicKey { id, key }
    };
    let cfg = WechatPayConfig {
        id: c.id.clone(),
        methods: c.methods.clone(),
        priority: c.priority,
        api_base: c
            .api_base
            .clone()
            .unwrap_or_else(|| "https://api.mch.weixin.qq.com".to_owned()),
        mchid: f.required("mchid", c.mchid.as_ref())?,
        appid: f.required("appid", c.appid.as_ref())?,
        merchant_serial_no: f.required("merchant_serial_no", c.merchant_serial_no.as_ref())?,
        merchant_private_key: f.signer(
            "merchant_private_key_file",
            c.merchant_private_key_file.as_ref(),
        )?,
        apiv3_key,
        platform,
        mode: match c.mode.as_deref() {
            Some("native") => WechatMode::Native,
            Some("h5") => WechatMode::H5,
            _ => WechatMode::Auto,
        },
    };
    Ok(WechatPayChannel::new(cfg, http.clone()))
}

fn split_pem_certificates(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END CERTIFICATE") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

fn build_epay(
    c: &ChannelConfig,
    config: &Config,
    http: &reqwest::Client,
) -> Result<EpayChannel, ChannelSetupError> {
    let f = Files { c, config };
    let credentials = match c.version {
        Some(2) => EpayCredentials::V2 {
            merchant_private_key: f.signer(
                "merchant_private_key_file",
                c.merchant_private_key_file.as_ref(),
            )?,
            platform_public_key: f.verifier(
                "platform_public_key_file",
                c.platform_public_key_file.as_ref(),
            )?,
        },
        _ => {
            let key = f.text("key_file", c.key_file.as_ref())?.trim().to_owned();
            if key.is_empty() {
                return Err(f.err("key_file", "the merchant key file is empty"));
            }
            EpayCredentials::V1 { key }
        }
    };
    let cfg = EpayConfig {
        id: c.id.clone(),
        methods: c.methods.clone(),
        priority: c.priority,
        gateway: f.required("gateway", c.gateway.as_ref())?,
        pid: f.required("pid", c.pid.as_ref())?,
        credentials,
        flow: match c.mode.as_deref() {
            Some("api") => EpayFlow::Api,
            // The page jump works on every Epay host; `mapi.php` is not everywhere.
            _ => EpayFlow::Submit,
        },
    };
    Ok(EpayChannel::new(cfg, http.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sandboxes() -> Channels {
        let toml = "[[channels]]\nid = \"a\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 20\n\
                    [[channels]]\nid = \"b\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 10\n";
        let config = Config::from_toml_str(toml).unwrap().config;
        Channels::build(&config, "http://127.0.0.1:9", &reqwest::Client::new())
            .unwrap()
            .0
    }

    #[test]
    fn repeated_creation_failures_rest_a_channel_and_a_success_clears_it() {
        let ch = two_sandboxes();
        let routed = |ch: &Channels| ch.route(Method::Sandbox).map(|c| c.id().to_string());
        assert_eq!(routed(&ch).as_deref(), Some("a"));
        ch.record_create("a", false);
        ch.record_create("a", false);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("a"),
            "two failures: still trusted"
        );
        ch.record_create("a", false);
        assert_eq!(routed(&ch).as_deref(), Some("b"), "third failure: a rests");
        ch.record_create("b", false);
        ch.record_create("b", true);
        ch.record_create("b", false);
        ch.record_create("b", false);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("b"),
            "a success resets the count"
        );
        ch.record_create("b", false);
        assert_eq!(routed(&ch), None, "both resting: the method is not offered");
        assert!(ch.methods().is_empty());
        ch.record_create("a", true);
        assert_eq!(routed(&ch).as_deref(), Some("a"));
    }
}
