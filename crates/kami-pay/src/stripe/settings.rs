//! `kind = "stripe"` settings (DESIGN 4.2) and building a [`StripeChannel`] from them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{StripeChannel, StripeConfig, DEFAULT_API_BASE};
use crate::common::settings::{
    self as s, one_key, BuildContext, KeyMaterial, Secret, SettingsError, SetupError,
};

/// A `stripe` channel's keys. Each secret is given as a file (`*_file`) or as its text (the
/// name without `_file`: what the admin API stores, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StripeSettings {
    /// Default `https://api.stripe.com`.
    #[serde(default = "default_api_base", deserialize_with = "s::http_url")]
    pub api_base: String,
    /// The secret API key (`sk_live_…`, `sk_test_…`, or a restricted `rk_…`).
    #[serde(default, deserialize_with = "s::opt_path")]
    pub secret_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub secret_key: Option<Secret>,
    /// The webhook endpoint's signing secret (`whsec_…`).
    #[serde(default, deserialize_with = "s::opt_path")]
    pub webhook_secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "s::opt_secret")]
    pub webhook_secret: Option<Secret>,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

impl StripeSettings {
    fn secret_key(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "secret_key",
            "secret_key_file",
            &self.secret_key,
            &self.secret_key_file,
        )
    }

    fn webhook_secret(&self) -> KeyMaterial<'_> {
        KeyMaterial::new(
            "webhook_secret",
            "webhook_secret_file",
            &self.webhook_secret,
            &self.webhook_secret_file,
        )
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        one_key(self.secret_key(), "the Stripe secret API key")?;
        one_key(
            self.webhook_secret(),
            "the webhook endpoint's signing secret (whsec_…)",
        )
    }

    pub fn resolve_files(&mut self, base_dir: &Path) {
        for p in [&mut self.secret_key_file, &mut self.webhook_secret_file]
            .into_iter()
            .flatten()
        {
            s::resolve(base_dir, p);
        }
    }

    /// Reads the keys (text or files) and builds the channel.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<StripeChannel, SetupError> {
        let (key, name) = cx.material(self.secret_key())?;
        let secret_key = key.trim().to_owned();
        if secret_key.is_empty()
            || !secret_key.bytes().all(|b| b.is_ascii_graphic())
            || !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_"))
        {
            return Err(cx.err(
                name,
                "not a Stripe secret key (sk_live_…, sk_test_… or rk_…); never the publishable pk_ key",
            ));
        }
        let (secret, name) = cx.material(self.webhook_secret())?;
        let webhook_secret = secret.trim().to_owned();
        if !webhook_secret.starts_with("whsec_") || webhook_secret.len() < 10 {
            return Err(cx.err(
                name,
                "not a webhook signing secret (whsec_…, from the endpoint's page in the Stripe dashboard)",
            ));
        }
        let cfg = StripeConfig {
            id: cx.id.clone(),
            methods: cx.methods.to_vec(),
            priority: cx.priority,
            api_base: self.api_base.clone(),
            secret_key,
            webhook_secret,
        };
        Ok(StripeChannel::new(cfg, cx.http.clone()))
    }
}
