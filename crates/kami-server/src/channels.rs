//! The channel registry: the configured payment channels (each built by its protocol from
//! its settings, `kami_pay::<protocol>::settings`), looked up by id, and routing a buyer's
//! method to a healthy one (a circuit breaker rests a channel that keeps failing).

use std::sync::Arc;

use kami_core::Method;
use kami_pay::settings::BuildContext;
use kami_pay::{ChannelSettings, PaymentChannel};

use crate::config::Config;

/// Why a channel could not be built: names the channel and the key.
pub use kami_pay::settings::SetupError as ChannelSetupError;

/// A sandbox channel whose gateway is this very server: its simulator must be mounted here.
pub struct LocalSandbox {
    pub secret: Vec<u8>,
}

pub struct Channels {
    list: Vec<Arc<dyn PaymentChannel>>,
    /// Ids of channels that take no new orders.
    disabled: Vec<String>,
    /// Recent payment-creation failures per channel id (a circuit breaker).
    health: std::sync::Mutex<std::collections::HashMap<String, Health>>,
}

/// After this many creation failures in a row a channel rests (takes no new orders) for
/// [`REST_MS`]; then it is tried again, and one success clears it.
const FAILURES_TO_REST: u32 = 3;
const REST_MS: i64 = 60_000;

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    resting_until: i64,
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
        // Disabled channels are built too: orders already sent to them must still be notified,
        // queried, closed and refunded; they just take no new orders (see `route`).
        for c in &config.channels {
            let cx = BuildContext {
                id: &c.id,
                methods: &c.methods,
                priority: c.priority,
                http,
            };
            let channel: Arc<dyn PaymentChannel> = match &c.settings {
                ChannelSettings::Sandbox(s) => {
                    let secret = s.secret_bytes();
                    let channel = s.build(&cx, secret.clone(), public_url);
                    if channel.gateway() == public_url && local.is_none() {
                        local = Some(LocalSandbox { secret });
                    }
                    Arc::new(channel)
                }
                ChannelSettings::Alipay(s) => Arc::new(s.build(&cx)?),
                ChannelSettings::Wechatpay(s) => Arc::new(s.build(&cx)?),
                ChannelSettings::Epay(s) => Arc::new(s.build(&cx)?),
            };
            list.push(channel);
        }
        let disabled = config
            .channels
            .iter()
            .filter(|c| !c.enabled)
            .map(|c| c.id.to_string())
            .collect();
        Ok((
            Channels {
                list,
                disabled,
                health: Default::default(),
            },
            local,
        ))
    }

    /// Add a channel built elsewhere (the demo's simulator-wired channels).
    pub fn push(&mut self, channel: Arc<dyn PaymentChannel>) {
        self.list.push(channel);
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn PaymentChannel>> {
        self.list.iter().find(|c| c.id().as_str() == id)
    }

    /// The preferred healthy channel for a buyer-facing method (highest priority first).
    pub fn route(&self, method: Method) -> Option<&Arc<dyn PaymentChannel>> {
        let now = crate::time::now_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.list
            .iter()
            .filter(|c| {
                c.methods().contains(&method)
                    && !self.disabled.iter().any(|d| d == c.id().as_str())
                    && health
                        .get(c.id().as_str())
                        .is_none_or(|h| h.resting_until <= now)
            })
            .max_by_key(|c| c.priority())
    }

    /// Record how a payment creation went: repeated failures rest the channel.
    pub fn record_create(&self, channel_id: &str, ok: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            health.remove(channel_id);
            return;
        }
        let h = health.entry(channel_id.to_owned()).or_default();
        h.failures += 1;
        if h.failures >= FAILURES_TO_REST {
            h.resting_until = crate::time::now_ms() + REST_MS;
            h.failures = 0;
            tracing::warn!(
                channel = channel_id,
                "payment creation failed {FAILURES_TO_REST} times in a row; channel rests for {} s",
                REST_MS / 1000
            );
        }
    }

    /// Methods some channel serves, for the catalogue.
    pub fn methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.route(*m).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sandboxes() -> Channels {
        let toml = "[[channels]]\nid = \"a\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 20\n\
                    [[channels]]\nid = \"b\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 10\n";
        let config = Config::from_toml_str(toml).unwrap().config;
        Channels::build(&config, "http://127.0.0.1:9", &reqwest::Client::new())
            .unwrap()
            .0
    }

    #[test]
    fn repeated_creation_failures_rest_a_channel_and_a_success_clears_it() {
        let ch = two_sandboxes();
        let routed = |ch: &Channels| ch.route(Method::Sandbox).map(|c| c.id().to_string());
        assert_eq!(routed(&ch).as_deref(), Some("a"));
        ch.record_create("a", false);
        ch.record_create("a", false);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("a"),
            "two failures: still trusted"
        );
        ch.record_create("a", false);
        assert_eq!(routed(&ch).as_deref(), Some("b"), "third failure: a rests");
        ch.record_create("b", false);
        ch.record_create("b", true);
        ch.record_create("b", false);
        ch.record_create("b", false);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("b"),
            "a success resets the count"
        );
        ch.record_create("b", false);
        assert_eq!(routed(&ch), None, "both resting: the method is not offered");
        assert!(ch.methods().is_empty());
        ch.record_create("a", true);
        assert_eq!(routed(&ch).as_deref(), Some("a"));
    }
}
