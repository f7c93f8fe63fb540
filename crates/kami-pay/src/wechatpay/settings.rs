//! `kind = "wechatpay"` settings (DESIGN 4.2, API v3) and building a [`WechatPayChannel`]
//! from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::{PlatformKeys, WechatMode, WechatPayChannel, WechatPayConfig, DEFAULT_API_BASE};
use crate::common::settings::{
    self as s, one_key, BuildContext, KeyMaterial, Secret, SettingsError, SetupError,
};
use crate::crypto::{Certificate, RsaVerifier};

/// A `wechatpay` channel's keys; `*_file` paths are resolved against the configuration's
/// directory once loaded. Each key is given either as a file (`*_file`) or as its text (the
/// name without `_file`: what the admin API stores, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WechatPaySettings {
    /// Default [`DEFAULT_API_BASE`].
    #[serde(default = "default_api_base", deserialize_with = "s::http_url")]
    pub api_base: String,
    #[serde(deserialize_with = "s::required_text")]
    pub mchid: String,
    #[serde(deserialize_with = "s::required_text")]
    pub appid: String,
    #[serde(deserialize_with = "s::required_text")]
    pub merchant_serial_no: String,
    #[serde(default, deserialize_with = "s::opt_path")]
    pub merchant_private_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub merchant_private_key: Option<Secret>,
    /// The 32-character APIv3 key.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub apiv3_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub apiv3_key: Option<Secret>,
    /// A WeChat Pay public key (then `wechatpay_public_key_id` is needed) or platform
    /// certificate(s).
    #[serde(default, deserialize_with = "s::opt_path")]
    pub wechatpay_public_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub wechatpay_public_key: Option<Secret>,
    #[serde(default, deserialize_with = "s::opt_text")]
    pub wechatpay_public_key_id: Option<String>,
    /// `native` | `h5` | `auto` (default).
    #[serde(default = "default_mode", deserialize_with = "mode")]
    pub mode: WechatMode,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_mode() -> WechatMode {
    WechatMode::Auto
}

fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<WechatMode, D::Error> {
    s::one_of(
        d,
        &[
            ("native", WechatMode::Native),
            ("h5", WechatMode::H5),
            ("auto", WechatMode::Auto),
        ],
    )
}

impl WechatPaySettings {
    fn merchant_private_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "merchant_private_key",
            "merchant_private_key_file",
            &self.merchant_private_key,
            &self.merchant_private_key_file,
        )
    }

    fn apiv3_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "apiv3_key",
            "apiv3_key_file",
            &self.apiv3_key,
            &self.apiv3_key_file,
        )
    }

    fn wechatpay_public_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "wechatpay_public_key",
            "wechatpay_public_key_file",
            &self.wechatpay_public_key,
            &self.wechatpay_public_key_file,
        )
    }

    /// Each key given once, as text or as a file.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let required = "required for kind `wechatpay`";
        one_key(self.merchant_private_key(), required)?;
        one_key(self.apiv3_key(), required)?;
        one_key(self.wechatpay_public_key(), required)
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        for p in [
            &mut self.merchant_private_key_file,
            &mut self.apiv3_key_file,
            &mut self.wechatpay_public_key_file,
        ]
        .into_iter()
        .flatten()
        {
            s::resolve(base_dir, p);
        }
    }

    /// Reads the keys (text or files) and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<WechatPayChannel, SetupError> {
        let (apiv3_text, apiv3_name) = cx.material(self.apiv3_key())?;
        let apiv3_key = apiv3_text.trim().as_bytes().to_vec();
        if apiv3_key.len() != 32 {
            return Err(cx.err(apiv3_name, "the APIv3 key must be exactly 32 characters"));
        }
        let (platform_text, platform_name) = cx.material(self.wechatpay_public_key())?;
        // A certificate file (one or more PEM certificates) selects platform-certificate mode;
        // a public key selects the WeChat Pay public-key mode and needs its `PUB_KEY_ID_...`.
        let platform = if platform_text.contains("BEGIN CERTIFICATE") {
            let certs = split_pem_certificates(&platform_text)
                .iter()
                .map(|pem| Certificate::from_text(pem))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cx.err(platform_name, &e.to_string()))?;
            PlatformKeys::Certificates(certs)
        } else {
            let id = self
                .wechatpay_public_key_id
                .clone()
                .ok_or_else(|| cx.err("wechatpay_public_key_id", "missing"))?;
            if !id.starts_with("PUB_KEY_ID_") {
                return Err(cx.err("wechatpay_public_key_id", "must start with PUB_KEY_ID_"));
            }
            let key = RsaVerifier::from_text(&platform_text)
                .map_err(|e| cx.err(platform_name, &e.to_string()))?;
            PlatformKeys::PublicKey { id, key }
        };
        let cfg = WechatPayConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            api_base: self.api_base.clone(),
            mchid: self.mchid.clone(),
            appid: self.appid.clone(),
            merchant_serial_no: self.merchant_serial_no.clone(),
            merchant_private_key: cx.signer(self.merchant_private_key())?,
            apiv3_key,
            platform,
            mode: self.mode,
        };
        Ok(WechatPayChannel::new(cfg, cx.http.clone()))
    }
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
