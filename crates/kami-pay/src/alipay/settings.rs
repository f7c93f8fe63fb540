//! `kind = "alipay"` settings (DESIGN 4.2) and building an [`AlipayChannel`] from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use crate::common::settings::{
    self as s, one_key, BuildContext, KeyMaterial, Secret, SettingsError, SetupError,
};

/// Where Alipay's open platform answers when `gateway` is not set.
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// An `alipay` channel's keys; `*_file` paths are resolved against the configuration's
/// directory once loaded. Each key is given either as a file (`*_file`, a configuration) or
/// as its text (the name without `_file`: what the admin API stores, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AlipaySettings {
    #[serde(default = "default_gateway", deserialize_with = "s::http_url")]
    pub gateway: String,
    #[serde(deserialize_with = "s::required_text")]
    pub app_id: String,
    /// PKCS#1 or PKCS#8, PEM or bare base64.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub app_private_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub app_private_key: Option<Secret>,
    /// SPKI, PEM or bare base64.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub alipay_public_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub alipay_public_key: Option<Secret>,
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
    fn app_private_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "app_private_key",
            "app_private_key_file",
            &self.app_private_key,
            &self.app_private_key_file,
        )
    }

    fn alipay_public_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "alipay_public_key",
            "alipay_public_key_file",
            &self.alipay_public_key,
            &self.alipay_public_key_file,
        )
    }

    /// Each key given once, as text or as a file.
    pub fn validate(&self) -> Result<(), SettingsError> {
        one_key(self.app_private_key(), "required for kind `alipay`")?;
        one_key(self.alipay_public_key(), "required for kind `alipay`")
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        for p in [
            &mut self.app_private_key_file,
            &mut self.alipay_public_key_file,
        ]
        .into_iter()
        .flatten()
        {
            s::resolve(base_dir, p);
        }
    }

    /// Reads the keys (text or files) and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<AlipayChannel, SetupError> {
        let cfg = AlipayConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            gateway: self.gateway.clone(),
            app_id: self.app_id.clone(),
            app_private_key: cx.signer(self.app_private_key())?,
            alipay_public_key: cx.verifier(self.alipay_public_key())?,
            sign_type: self.sign_type,
            mode: self.mode,
            seller_id: self.seller_id.clone(),
            app_auth_token: self.app_auth_token.clone(),
            sys_service_provider_id: self.sys_service_provider_id.clone(),
        };
        Ok(AlipayChannel::new(cfg, cx.http.clone()))
    }
}
