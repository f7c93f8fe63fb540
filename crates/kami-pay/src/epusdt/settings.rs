//! `kind = "epusdt"` settings (DESIGN 4.2): `gateway`, `token_file` (or `token`, the text the
//! admin API stores sealed), optional `trade_type` (BEpusdt: `usdt.trc20`, `tron.trx`, ...;
//! setting it also selects BEpusdt's query, close and `%v` signing), and building an
//! [`EpusdtChannel`] from them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{EpusdtChannel, EpusdtConfig, TradeType};
use crate::common::settings::{
    self as s, at_most_one_key, one_key, BuildContext, KeyMaterial, Secret, SettingsError,
    SetupError,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EpusdtSettings {
    /// The gateway's base URL, e.g. `https://usdt.example.com`.
    #[serde(deserialize_with = "s::http_url")]
    pub gateway: String,
    /// The API token (`api_auth_token` / BEpusdt 对接令牌).
    #[serde(default, deserialize_with = "s::opt_path")]
    pub token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub token: Option<Secret>,
    /// BEpusdt only: the coin and network (`usdt.trc20`, `usdt.bep20`, `tron.trx`, ...).
    #[serde(default, deserialize_with = "s::opt_text")]
    pub trade_type: Option<String>,
}

impl EpusdtSettings {
    fn token(&self) -> KeyMaterial<'_> {
        KeyMaterial::new("token", "token_file", &self.token, &self.token_file)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        at_most_one_key(self.token())?;
        one_key(self.token(), "the gateway's API token")?;
        if let Some(t) = &self.trade_type {
            TradeType::parse(t).map_err(|message| SettingsError::Invalid {
                key: "trade_type",
                message,
            })?;
        }
        Ok(())
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        if let Some(p) = &mut self.token_file {
            s::resolve(base_dir, p);
        }
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<EpusdtChannel, SetupError> {
        let (text, name) = cx.material(self.token())?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(cx.err(name, "the API token is empty"));
        }
        let trade_type = match &self.trade_type {
            Some(t) => Some(TradeType::parse(t).map_err(|m| cx.err("trade_type", &m))?),
            None => None,
        };
        Ok(EpusdtChannel::new(
            EpusdtConfig {
                id: cx.id.clone(),
                methods: cx.methods.to_vec(),
                priority: cx.priority,
                gateway: self.gateway.clone(),
                token,
                trade_type,
            },
            cx.http.clone(),
        ))
    }
}
