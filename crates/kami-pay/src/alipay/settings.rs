//! `kind = "alipay"` settings (DESIGN 4.2) and building an [`AlipayChannel`] from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use crate::common::settings::{self as s, BuildContext, SetupError};

/// Where Alipay's open platform answers when `gateway` is not set.
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// An `alipay` channel's keys; `*_file` paths are resolved against the configuration's
/// directory once loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AlipaySettings {
    #[serde(default = "default_gateway", deserialize_with = "s::http_url")]
    pub gateway: String,
    #[serde(deserialize_with = "s::required_text")]
    pub app_id: String,
    /// PKCS#1 or PKCS#8, PEM or bare base64.
    #[serde(deserialize_with = "s::path")]
    pub app_private_key_file: PathBuf,
    /// SPKI, PEM or bare base64.
    #[serde(deserialize_with = "s::path")]
    pub alipay_public_key_file: PathBuf,
    /// `RSA2` (default) or `RSA`.
    #[serde(default = "default_sign_type", deserialize_with = "sign_type")]
    pub sign_type: AlipaySignType,
    /// `qr` | `page` | `wap` | `auto` (default).
    #[serde(default = "default_mode", deserialize_with = "mode")]
    pub mode: AlipayMode,
    #[serde(default, deserialize_with = "s::opt_text")]
    pub seller_id: Option<String>,
    #[serde(default, deserialize_with = "s::opt_text")]
    pub app_auth_token: Option<String>,
    #[serde(default, deserialize_with = "s::opt_text")]
    pub sys_service_provider_id: Option<String>,
}

fn default_gateway() -> String {
    DEFAULT_GATEWAY.to_owned()
}

fn default_sign_type() -> AlipaySignType {
    AlipaySignType::Rsa2
}

fn default_mode() -> AlipayMode {
    AlipayMode::Auto
}

fn sign_type<'de, D: Deserializer<'de>>(d: D) -> Result<AlipaySignType, D::Error> {
    s::one_of(
        d,
        &[("RSA2", AlipaySignType::Rsa2), ("RSA", AlipaySignType::Rsa)],
    )
}

fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<AlipayMode, D::Error> {
    s::one_of(
        d,
        &[
            ("qr", AlipayMode::Qr),
            ("page", AlipayMode::Page),
            ("wap", AlipayMode::Wap),
            ("auto", AlipayMode::Auto),
        ],
    )
}

impl AlipaySettings {
    pub fn resolve_files(&mut self, base_dir: &Path) {
        s::resolve(base_dir, &mut self.app_private_key_file);
        s::resolve(base_dir, &mut self.alipay_public_key_file);
    }

    /// Reads the key files and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<AlipayChannel, SetupError> {
        let cfg = AlipayConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            gateway: self.gateway.clone(),
            app_id: self.app_id.clone(),
            app_private_key: cx.signer("app_private_key_file", &self.app_private_key_file)?,
            alipay_public_key: cx
                .verifier("alipay_public_key_file", &self.alipay_public_key_file)?,
            sign_type: self.sign_type,
            mode: self.mode,
            seller_id: self.seller_id.clone(),
            app_auth_token: self.app_auth_token.clone(),
            sys_service_provider_id: self.sys_service_provider_id.clone(),
        };
        Ok(AlipayChannel::new(cfg, cx.http.clone()))
    }
}
