//! `kind = "wechatpay"` settings (DESIGN 4.2, API v3) and building a [`WechatPayChannel`]
//! from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::jsapi::{JsapiConfig, DEFAULT_OAUTH_BASE, DEFAULT_SNS_API_BASE};
use super::{PlatformKeys, WechatMode, WechatPayChannel, WechatPayConfig, DEFAULT_API_BASE};
use crate::common::settings::{
    self as s, at_most_one_key, one_key, BuildContext, KeyMaterial, Secret, SettingsError,
    SetupError,
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
    /// The Official Account's AppSecret (JSAPI inside WeChat: OAuth `snsapi_base` for the
    /// buyer's openid). Without it WeChat's browser gets Native.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub appsecret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub appsecret: Option<Secret>,
    /// Default `https://open.weixin.qq.com` (the OAuth authorize page).
    #[serde(default = "default_oauth_base", deserialize_with = "s::http_url")]
    pub oauth_base: String,
    /// Default `https://api.weixin.qq.com` (`sns/oauth2/access_token`).
    #[serde(default = "default_sns_api_base", deserialize_with = "s::http_url")]
    pub sns_api_base: String,
}

fn default_oauth_base() -> String {
    DEFAULT_OAUTH_BASE.to_owned()
}

fn default_sns_api_base() -> String {
    DEFAULT_SNS_API_BASE.to_owned()
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

    fn appsecret(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "appsecret",
            "appsecret_file",
            &self.appsecret,
            &self.appsecret_file,
        )
    }

    /// Each key given once, as text or as a file.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let required = "required for kind `wechatpay`";
        one_key(self.merchant_private_key(), required)?;
        one_key(self.apiv3_key(), required)?;
        one_key(self.wechatpay_public_key(), required)?;
        at_most_one_key(self.appsecret())
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        for p in [
            &mut self.merchant_private_key_file,
            &mut self.apiv3_key_file,
            &mut self.wechatpay_public_key_file,
            &mut self.appsecret_file,
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
            jsapi: self.jsapi(cx)?,
        };
        Ok(WechatPayChannel::new(cfg, cx.http.clone()))
    }
}

impl WechatPaySettings {
    /// JSAPI when an appsecret is given (32 hex characters, as WeChat issues them).
    fn jsapi(&self, cx: &BuildContext<'_>) -> Result<Option<JsapiConfig>, SetupError> {
        let m = self.appsecret();
        if m.text.is_none() && m.file.is_none() {
            return Ok(None);
        }
        let (text, name) = cx.material(m)?;
        let secret = text.trim();
        if secret.is_empty()
            || secret.len() > 128
            || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(cx.err(name, "the AppSecret must be letters and digits"));
        }
        Ok(Some(JsapiConfig {
            appsecret: Secret::new(secret),
            oauth_base: self.oauth_base.clone(),
            sns_api_base: self.sns_api_base.clone(),
        }))
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
