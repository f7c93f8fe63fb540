//! Builds the configured payment channels and routes a buyer's method to one of them.

use std::sync::Arc;

use kami_core::Method;
use kami_pay::sandbox::SandboxChannel;
use kami_pay::PaymentChannel;

use crate::config::{ChannelConfig, ChannelKind, Config};

/// A sandbox channel whose gateway is this very server: its simulator must be mounted here.
pub struct LocalSandbox {
    pub secret: Vec<u8>,
}

pub struct Channels {
    list: Vec<Arc<dyn PaymentChannel>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("channel `{id}`: kind `{kind}` is not available in this build yet")]
    NotImplemented { id: String, kind: &'static str },
    #[error("channel `{id}`: cannot read `{key}` file {path}: {err}")]
    File {
        id: String,
        key: &'static str,
        path: String,
        err: std::io::Error,
    },
}

fn sandbox_secret(c: &ChannelConfig, config: &Config) -> Result<Vec<u8>, ChannelSetupError> {
    if let Some(s) = &c.secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    if let Some(p) = &c.secret_file {
        let path = config.base_dir.join(p);
        return std::fs::read_to_string(&path)
            .map(|s| s.trim().as_bytes().to_vec())
            .map_err(|err| ChannelSetupError::File {
                id: c.id.to_string(),
                key: "secret_file",
                path: path.display().to_string(),
                err,
            });
    }
    // No secret configured: a fresh one per start, shared only with the in-process simulator.
    Ok(hex::encode(rand::random::<[u8; 32]>()).into_bytes())
}

impl Channels {
    /// Build every enabled channel. `public_url` is this server's base URL (no trailing slash).
    pub fn build(
        config: &Config,
        public_url: &str,
        http: &reqwest::Client,
    ) -> Result<(Channels, Option<LocalSandbox>), ChannelSetupError> {
        let mut list: Vec<Arc<dyn PaymentChannel>> = Vec::new();
        let mut local = None;
        for c in config.channels.iter().filter(|c| c.enabled) {
            match c.kind {
                ChannelKind::Sandbox => {
                    let secret = sandbox_secret(c, config)?;
                    let gateway = c.gateway.clone().unwrap_or_else(|| public_url.to_owned());
                    if gateway.trim_end_matches('/') == public_url && local.is_none() {
                        local = Some(LocalSandbox {
                            secret: secret.clone(),
                        });
                    }
                    list.push(Arc::new(SandboxChannel::new(
                        c.id.clone(),
                        c.methods.clone(),
                        c.priority,
                        secret,
                        gateway,
                        http.clone(),
                    )));
                }
                kind => {
                    return Err(ChannelSetupError::NotImplemented {
                        id: c.id.to_string(),
                        kind: kind.as_str(),
                    })
                }
            }
        }
        Ok((Channels { list }, local))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn PaymentChannel>> {
        self.list.iter().find(|c| c.id().as_str() == id)
    }

    /// The preferred channel for a buyer-facing method (highest priority first).
    pub fn route(&self, method: Method) -> Option<&Arc<dyn PaymentChannel>> {
        self.list
            .iter()
            .filter(|c| c.methods().contains(&method))
            .max_by_key(|c| c.priority())
    }

    /// Methods some channel serves, for the catalogue.
    pub fn methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.list.iter().any(|c| c.methods().contains(m)))
            .collect()
    }
}
