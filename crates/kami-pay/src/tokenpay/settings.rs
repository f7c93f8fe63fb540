//! `kind = "tokenpay"` settings (DESIGN 4.2): `gateway`, `secret_file` (or `secret`, the text
//! the admin API stores sealed: TokenPay's `ApiToken`, the "notify secret"), `currency`
//! (`USDT_TRC20`, `TRX`, `EVM_BSC_USDT_BEP20`, ...), and building a [`TokenPayChannel`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CoinCurrency, TokenPayChannel, TokenPayConfig};
use crate::common::settings::{
    self as s, at_most_one_key, one_key, BuildContext, KeyMaterial, Secret, SettingsError,
    SetupError,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenPaySettings {
    /// The gateway's base URL, e.g. `https://tokenpay.example.com`.
    #[serde(deserialize_with = "s::http_url")]
    pub gateway: String,
    #[serde(default, deserialize_with = "s::opt_path")]
    pub secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub secret: Option<Secret>,
    /// The coin and chain buyers pay in (`USDT_TRC20`).
    #[serde(deserialize_with = "s::required_text")]
    pub currency: String,
}

impl TokenPaySettings {
    fn secret(&self) -> KeyMaterial<'_> {
        KeyMaterial::new("secret", "secret_file", &self.secret, &self.secret_file)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        at_most_one_key(self.secret())?;
        one_key(self.secret(), "TokenPay's ApiToken")?;
        CoinCurrency::parse(&self.currency).map_err(|message| SettingsError::Invalid {
            key: "currency",
            message,
        })?;
        Ok(())
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        if let Some(p) = &mut self.secret_file {
            s::resolve(base_dir, p);
        }
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<TokenPayChannel, SetupError> {
        let (text, name) = cx.material(self.secret())?;
        let secret = text.trim().to_owned();
        if secret.is_empty() {
            return Err(cx.err(name, "the secret is empty"));
        }
        let currency = CoinCurrency::parse(&self.currency).map_err(|m| cx.err("currency", &m))?;
        Ok(TokenPayChannel::new(
            TokenPayConfig {
                id: cx.id.clone(),
                methods: cx.methods.to_vec(),
                priority: cx.priority,
                gateway: self.gateway.clone(),
                secret,
                currency,
            },
            cx.http.clone(),
        ))
    }
}
