//! `kind = "epay"` settings (DESIGN 4.2, versions 1 and 2) and building an [`EpayChannel`]
//! from them.

use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{EpayChannel, EpayConfig, EpayCredentials, EpayFlow};
use crate::common::settings::{
    self as s, at_most_one_key, one_key, BuildContext, KeyMaterial, Secret, SettingsError,
    SetupError,
};

/// Which signature scheme the Epay host speaks (`version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpayVersion {
    /// MD5 with the merchant key (`key_file`).
    #[default]
    V1,
    /// RSA (`merchant_private_key_file`, `platform_public_key_file`).
    V2,
}

/// An `epay` channel's keys; `*_file` paths are resolved against the configuration's
/// directory once loaded. Each key is given either as a file (`*_file`) or as its text (the
/// name without `_file`: what the admin API stores, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EpaySettings {
    /// Platform base URL, e.g. `https://pay.example.com/`.
    #[serde(deserialize_with = "s::http_url")]
    pub gateway: String,
    /// Merchant id (商户ID).
    #[serde(deserialize_with = "s::required_text")]
    pub pid: String,
    /// Version 1: the MD5 merchant key.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub key: Option<Secret>,
    /// 1 (default) or 2.
    #[serde(default, deserialize_with = "version")]
    pub version: EpayVersion,
    /// Version 2: signs requests.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub merchant_private_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub merchant_private_key: Option<Secret>,
    /// Version 2: verifies replies and notifications.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub platform_public_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub platform_public_key: Option<Secret>,
    /// kami extension: `submit` (page jump, every host; default) or `api` (`mapi.php`).
    #[serde(default = "default_mode", deserialize_with = "mode")]
    pub mode: EpayFlow,
    /// kami extension: apply a signed "paid" notification only once the host's own order
    /// query confirms it (same trade, paid, same amount). Default true.
    #[serde(default = "yes")]
    pub confirm_by_query: bool,
}

fn yes() -> bool {
    true
}

fn default_mode() -> EpayFlow {
    // The page jump works on every Epay host; `mapi.php` is not everywhere.
    EpayFlow::Submit
}

fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<EpayFlow, D::Error> {
    s::one_of(d, &[("submit", EpayFlow::Submit), ("api", EpayFlow::Api)])
}

fn version<'de, D: Deserializer<'de>>(d: D) -> Result<EpayVersion, D::Error> {
    match i64::deserialize(d)? {
        1 => Ok(EpayVersion::V1),
        2 => Ok(EpayVersion::V2),
        v => Err(de::Error::custom(format!("must be 1 or 2, got {v}"))),
    }
}

impl EpaySettings {
    fn key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new("key", "key_file", &self.key, &self.key_file)
    }

    fn merchant_private_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "merchant_private_key",
            "merchant_private_key_file",
            &self.merchant_private_key,
            &self.merchant_private_key_file,
        )
    }

    fn platform_public_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "platform_public_key",
            "platform_public_key_file",
            &self.platform_public_key,
            &self.platform_public_key_file,
        )
    }

    /// The keys each version needs, each given once (as text or as a file).
    pub fn validate(&self) -> Result<(), SettingsError> {
        for m in [
            self.key(),
            self.merchant_private_key(),
            self.platform_public_key(),
        ] {
            at_most_one_key(m)?;
        }
        match self.version {
            EpayVersion::V1 => one_key(self.key(), "required for epay version 1"),
            EpayVersion::V2 => {
                let v2 = "required for epay version 2";
                one_key(self.merchant_private_key(), v2)?;
                one_key(self.platform_public_key(), v2)
            }
        }
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        for p in [
            &mut self.key_file,
            &mut self.merchant_private_key_file,
            &mut self.platform_public_key_file,
        ]
        .into_iter()
        .flatten()
        {
            s::resolve(base_dir, p);
        }
    }

    /// Reads the keys (text or files) and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<EpayChannel, SetupError> {
        let credentials = match self.version {
            EpayVersion::V2 => EpayCredentials::V2 {
                merchant_private_key: cx.signer(self.merchant_private_key())?,
                platform_public_key: cx.verifier(self.platform_public_key())?,
            },
            EpayVersion::V1 => {
                let (text, name) = cx.material(self.key())?;
                let key = text.trim().to_owned();
                if key.is_empty() {
                    return Err(cx.err(name, "the merchant key is empty"));
                }
                EpayCredentials::V1 { key }
            }
        };
        let cfg = EpayConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            gateway: self.gateway.clone(),
            pid: self.pid.clone(),
            credentials,
            flow: self.mode,
        };
        Ok(EpayChannel::new(cfg, cx.http.clone()).with_confirm_by_query(self.confirm_by_query))
    }
}
