//! `kind = "sandbox"` settings and building a [`SandboxChannel`] from them.
//!
//! A sandbox channel confirms payments that move no money, so it may never serve a real
//! wallet's method (`alipay`, `wxpay`, `qqpay`), and outside the demo it starts only with
//! `allow_sandbox = true` (the server decides that at start-up).

use std::path::{Path, PathBuf};

use kami_core::Method;
use serde::Deserialize;

use super::SandboxChannel;
use crate::common::settings::{self as s, BuildContext, Secret, SettingsError};

/// Methods a sandbox channel must never serve: buyers would believe they paid for real.
const REAL_METHODS: [Method; 3] = [Method::Alipay, Method::Wxpay, Method::Qqpay];

/// A `sandbox` channel's keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SandboxSettings {
    /// Where the sandbox simulator runs; default: this server itself.
    #[serde(default, deserialize_with = "s::opt_http_url")]
    pub gateway: Option<String>,
    /// The HMAC secret shared with the simulator; when neither it nor `secret_file` is set, a
    /// random one is picked at every start.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Where `secret` is read from (at load time).
    #[serde(default, deserialize_with = "s::opt_path")]
    pub secret_file: Option<PathBuf>,
    /// Lets this channel start outside `--demo` (default false).
    #[serde(default)]
    pub allow_sandbox: bool,
}

impl SandboxSettings {
    pub fn validate(&self, methods: &[Method]) -> Result<(), SettingsError> {
        match methods.iter().find(|m| REAL_METHODS.contains(m)) {
            None => Ok(()),
            Some(m) => Err(SettingsError::Invalid {
                key: "methods",
                message: format!(
                    "a sandbox channel cannot serve `{m}`: it confirms payments that move no \
                     money, so it may serve only `sandbox`"
                ),
            }),
        }
    }

    /// Resolves `secret_file` and reads it into `secret`.
    pub fn resolve_files(&mut self, base_dir: &Path) -> Result<(), SettingsError> {
        let Some(file) = &mut self.secret_file else {
            return Ok(());
        };
        if self.secret.is_some() {
            return Err(SettingsError::SecretConflict { key: "secret" });
        }
        s::resolve(base_dir, file);
        self.secret = Some(Secret::new(s::read_secret_file(
            "secret_file",
            file.clone(),
        )?));
        Ok(())
    }

    /// The HMAC secret: the configured one, or a fresh random one (to share with an
    /// in-process simulator).
    pub fn secret_bytes(&self) -> Vec<u8> {
        match &self.secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => hex::encode(rand::random::<[u8; 32]>()).into_bytes(),
        }
    }

    /// Builds the channel with `secret` (see [`SandboxSettings::secret_bytes`]), talking to
    /// `gateway` or, when none is set, `default_gateway`.
    pub fn build(
        &self,
        cx: &BuildContext<'_>,
        secret: Vec<u8>,
        default_gateway: &str,
    ) -> SandboxChannel {
        SandboxChannel::new(
            cx.id.clone(),
            cx.methods.to_vec(),
            cx.priority,
            secret,
            self.gateway
                .clone()
                .unwrap_or_else(|| default_gateway.to_owned()),
            cx.http.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SandboxSettings {
        SandboxSettings {
            gateway: None,
            secret: None,
            secret_file: None,
            allow_sandbox: false,
        }
    }

    #[test]
    fn never_serves_a_real_wallet() {
        assert!(settings().validate(&[Method::Sandbox]).is_ok());
        for m in REAL_METHODS {
            let err = settings()
                .validate(&[Method::Sandbox, m])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("invalid `methods`: a sandbox channel cannot serve"),
                "{err}"
            );
            assert!(err.contains(&format!("`{m}`")), "{err}");
        }
    }
}
