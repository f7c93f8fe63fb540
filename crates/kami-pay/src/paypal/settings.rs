//! `kind = "paypal"` settings (DESIGN 4.2) and building a [`PaypalChannel`] from them.

use std::path::{Path, PathBuf};

use kami_core::Currency;
use serde::Deserialize;

use super::{CertPolicy, PaypalChannel, PaypalConfig, DEFAULT_API_BASE};
use crate::common::settings::{
    self as s, one_key, BuildContext, KeyMaterial, Secret, SettingsError, SetupError,
};

/// A `paypal` channel's keys. The client secret is given as a file (`client_secret_file`) or
/// as its text (`client_secret`: what the admin API stores, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaypalSettings {
    /// Default [`DEFAULT_API_BASE`] (sandbox: `https://api-m.sandbox.paypal.com`).
    #[serde(default = "default_api_base", deserialize_with = "s::http_url")]
    pub api_base: String,
    #[serde(deserialize_with = "s::required_text")]
    pub client_id: String,
    #[serde(default, deserialize_with = "s::opt_path")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub client_secret: Option<Secret>,
    /// The id PayPal gave the webhook pointing at `/pay/notify/<channel id>`.
    #[serde(deserialize_with = "s::required_text")]
    pub webhook_id: String,
    /// What orders priced in CNY are charged in (PayPal never takes CNY): `USD` unless set.
    #[serde(default)]
    pub currency: Option<String>,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

impl PaypalSettings {
    fn client_secret(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "client_secret",
            "client_secret_file",
            &self.client_secret,
            &self.client_secret_file,
        )
    }

    /// The `currency` key: a currency kami prices in, other than CNY.
    fn charge_currency(&self) -> Result<Currency, SettingsError> {
        let Some(code) = self.currency.as_deref() else {
            return Ok(Currency::Usd);
        };
        match Currency::parse(code.trim()) {
            Ok(Currency::Cny) | Err(_) => Err(SettingsError::Invalid {
                key: "currency",
                message: format!(
                    "must be one of {} (PayPal never takes CNY)",
                    Currency::ALL
                        .iter()
                        .filter(|c| **c != Currency::Cny)
                        .map(|c| c.code())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Ok(c) => Ok(c),
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        one_key(self.client_secret(), "required for kind `paypal`")?;
        self.charge_currency()?;
        if self.webhook_id.contains('|') {
            return Err(SettingsError::Invalid {
                key: "webhook_id",
                message: "must not contain `|`".into(),
            });
        }
        Ok(())
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        if let Some(p) = self.client_secret_file.as_mut() {
            s::resolve(base_dir, p);
        }
    }

    /// Reads the secret (text or file) and builds the channel, verifying webhooks against
    /// PayPal's certificate hosts and the public roots.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<PaypalChannel, SetupError> {
        let (secret, name) = cx.material(self.client_secret())?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(cx.err(name, "is empty"));
        }
        let cfg = PaypalConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            api_base: self.api_base.clone(),
            client_id: self.client_id.trim().to_owned(),
            client_secret: Secret::new(secret),
            webhook_id: self.webhook_id.trim().to_owned(),
            certs: CertPolicy::paypal(),
            currency: self.charge_currency().map_err(|e| match e {
                SettingsError::Invalid { key, message } => cx.err(key, &message),
                other => cx.err("currency", &other.to_string()),
            })?,
        };
        Ok(PaypalChannel::new(cfg, cx.http.clone()))
    }
}
