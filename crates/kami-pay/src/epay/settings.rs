//! `kind = "epay"` settings (DESIGN 4.2, versions 1 and 2) and building an [`EpayChannel`]
//! from them.

use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{EpayChannel, EpayConfig, EpayCredentials, EpayFlow};
use crate::common::settings::{self as s, BuildContext, SettingsError, SetupError};

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
/// directory once loaded.
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
    /// 1 (default) or 2.
    #[serde(default, deserialize_with = "version")]
    pub version: EpayVersion,
    /// Version 2: signs requests.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub merchant_private_key_file: Option<PathBuf>,
    /// Version 2: verifies replies and notifications.
    #[serde(default, deserialize_with = "s::opt_path")]
    pub platform_public_key_file: Option<PathBuf>,
    /// kami extension: `submit` (page jump, every host; default) or `api` (`mapi.php`).
    #[serde(default = "default_mode", deserialize_with = "mode")]
    pub mode: EpayFlow,
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
    /// The keys each version needs.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let needs = |key: &'static str, v: &Option<PathBuf>, requirement: &str| match v {
            Some(_) => Ok(()),
            None => Err(SettingsError::Missing {
                key,
                requirement: requirement.to_owned(),
            }),
        };
        match self.version {
            EpayVersion::V1 => needs("key_file", &self.key_file, "required for epay version 1"),
            EpayVersion::V2 => {
                let v2 = "required for epay version 2";
                needs(
                    "merchant_private_key_file",
                    &self.merchant_private_key_file,
                    v2,
                )?;
                needs(
                    "platform_public_key_file",
                    &self.platform_public_key_file,
                    v2,
                )
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

    /// Reads the key files and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<EpayChannel, SetupError> {
        let file = |key: &'static str, p: &Option<PathBuf>| {
            p.clone().ok_or_else(|| cx.err(key, "missing"))
        };
        let credentials = match self.version {
            EpayVersion::V2 => {
                let private = file("merchant_private_key_file", &self.merchant_private_key_file)?;
                let public = file("platform_public_key_file", &self.platform_public_key_file)?;
                EpayCredentials::V2 {
                    merchant_private_key: cx.signer("merchant_private_key_file", &private)?,
                    platform_public_key: cx.verifier("platform_public_key_file", &public)?,
                }
            }
            EpayVersion::V1 => {
                let path = file("key_file", &self.key_file)?;
                let key = cx.read("key_file", &path)?.trim().to_owned();
                if key.is_empty() {
                    return Err(cx.err("key_file", "the merchant key file is empty"));
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
        Ok(EpayChannel::new(cfg, cx.http.clone()))
    }
}
