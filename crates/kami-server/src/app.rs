//! The application builder: everything a `kami serve` process runs, startable on port 0 with
//! a fresh database by tests (`Application::build` then `run`). The composition root: the one
//! module that wires state, HTTP and jobs together.
//!
//! The production server links no simulator. What the demo (and tests) add — channels wired
//! to in-process gateway simulators and the simulators' routes — comes in through
//! [`BuildOptions::extension`], supplied by the `kami` binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kami_pay::PaymentChannel;
use kami_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::CatalogCache;
use crate::channels::{ChannelSetupError, Channels};
use crate::config::{ChannelSettings, Config};
use crate::limits::Limits;
use crate::mailer::MailSetupError;
use crate::metrics::Metrics;
use crate::notify_limits::RejectedEventLimits;
use crate::settings::{Settings, SettingsCell};
use crate::state::AppState;
use crate::theme::{Theme, ThemeError};
use crate::watch::OrderWatch;
use crate::{http, jobs};

/// How to build the application beyond its configuration.
#[derive(Default)]
pub struct BuildOptions {
    /// `kami serve --demo`: sandbox channels need no `allow_sandbox`.
    pub demo: bool,
    /// Extra channels and routes (the demo's simulators; tests).
    pub extension: Option<Extension>,
    /// Where "now" comes from; `None`: the wall clock (tests move a manual one).
    pub clock: Option<kami_core::SharedClock>,
}

/// Called once the public URL is known, before the server starts.
pub type Extension = Box<dyn FnOnce(&ExtensionContext<'_>) -> Result<Extra, String> + Send>;

/// What an [`Extension`] may build on.
pub struct ExtensionContext<'a> {
    /// Base URL the gateways and buyers reach this server at (no trailing slash).
    pub public_url: &'a str,
    pub http: &'a reqwest::Client,
    pub config: &'a Config,
    /// Sandbox channels without a `gateway`: their pay page must be mounted by the extension.
    pub local_sandboxes: &'a [LocalSandbox],
}

/// A sandbox channel whose gateway is this very server.
pub struct LocalSandbox {
    pub channel_id: String,
    pub secret: Vec<u8>,
}

pub use crate::state::QrLink;

/// What an [`Extension`] adds.
#[derive(Default)]
pub struct Extra {
    pub channels: Vec<Arc<dyn PaymentChannel>>,
    pub routes: Router,
    /// Demo: beside each QR code, a link to the simulator's payment page.
    pub qr_link: Option<QrLink>,
    /// Demo: the stand-in `WeixinJSBridge` script (a path on this server) JSAPI pages load.
    pub jsapi_bridge: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {err}")]
    Listen {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] kami_store::StoreError),
    #[error(transparent)]
    Channel(#[from] ChannelSetupError),
    #[error("channel `{0}` is a sandbox (payments are simulated): outside `kami serve --demo` its block must set `allow_sandbox = true`")]
    SandboxNotAllowed(String),
    #[error("http client: {0}")]
    Http(String),
    #[error("theme: {0}")]
    Theme(#[from] ThemeError),
    #[error("extension: {0}")]
    Extension(String),
    #[error("mail: {0}")]
    Mail(#[from] MailSetupError),
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
    addr: SocketAddr,
}

impl Application {
    /// Open and migrate the database, bind the listener, wire the channels.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Application::build_with(config, BuildOptions::default()).await
    }

    pub async fn build_with(config: Config, opts: BuildOptions) -> Result<Application, StartError> {
        let keys = kami_store::KeyFiles::new(config.security.master_key_path(&config.server));
        let store =
            Store::connect(&config.database.url, config.database.max_connections, &keys).await?;
        Application::build_with_store(config, store, opts).await
    }

    pub async fn build_with_store(
        config: Config,
        store: Store,
        opts: BuildOptions,
    ) -> Result<Application, StartError> {
        let theme = Theme::load(config.shop.theme_dir.as_deref())?;
        Application::build_with_theme(config, store, theme, opts).await
    }

    /// As [`Application::build_with_store`], with the theme already loaded: compiling every
    /// template is most of a start, which the simulation (thousands of starts) pays once.
    pub async fn build_with_theme(
        config: Config,
        store: Store,
        theme: Theme,
        opts: BuildOptions,
    ) -> Result<Application, StartError> {
        check_sandboxes(&config, opts.demo)?;
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|err| StartError::Listen { addr: listen, err })?;
        let addr = listener
            .local_addr()
            .map_err(|err| StartError::Listen { addr: listen, err })?;
        let public_url = match &config.server.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{addr}"),
        };
        let http_client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let (mut channels, local) = Channels::build(&config, &public_url, &http_client, opts.demo)?;
        let local_sandboxes: Vec<LocalSandbox> = local
            .into_iter()
            .map(|l| LocalSandbox {
                channel_id: local_sandbox_id(&config),
                secret: l.secret,
            })
            .collect();
        let extra = match opts.extension {
            Some(extend) => extend(&ExtensionContext {
                public_url: &public_url,
                http: &http_client,
                config: &config,
                local_sandboxes: &local_sandboxes,
            })
            .map_err(StartError::Extension)?,
            None => {
                for l in &local_sandboxes {
                    tracing::warn!(channel = %l.channel_id, "sandbox channel has no `gateway` and no simulator is mounted here: its payments cannot complete");
                }
                Extra::default()
            }
        };
        for channel in extra.channels {
            channels.push(channel);
        }
        let settings = load_settings(&config, &store).await?;
        let state = Arc::new(AppState {
            store,
            channels,
            public_url,
            clock: opts.clock.unwrap_or_else(kami_core::clock::system),
            watch: OrderWatch::default(),
            metrics: Metrics::default(),
            theme,
            catalog: CatalogCache::default(),
            limits: Limits::new(&settings.shop, &settings.risk),
            notify_limits: RejectedEventLimits::new(config.retention.rejected_events_per_minute),
            qr_link: extra.qr_link,
            jsapi_bridge: extra.jsapi_bridge,
            stats_cache: Default::default(),
            call_log: Default::default(),
            settings: SettingsCell::new(settings),
            mail_wake: tokio::sync::Notify::new(),
            config,
        });
        // The channels stored through the admin API (a broken one is logged and listed, not
        // fatal: the seller fixes it in the console).
        crate::services::channel_admin::reload(&state).await?;
        let router = http::router(state.clone()).merge(extra.routes);
        Ok(Application {
            listener,
            router,
            state,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serve until `shutdown` turns true (or forever), running the background jobs.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let jobs = jobs::spawn(self.state.clone(), shutdown.clone());
        let result = http::serve::serve(
            self.listener,
            self.router,
            &self.state.config.server,
            shutdown,
        )
        .await;
        jobs.abort();
        result
    }
}

/// The settings in effect at start: the configuration with what the console saved over it.
/// Saved settings that no longer fit the configuration (a file changed since) are logged and
/// left out until saved again; a bad `[smtp]` of the file stops the start, as before.
async fn load_settings(config: &Config, store: &Store) -> Result<Settings, StartError> {
    let saved = store.settings().await?;
    let version = saved.version;
    match Settings::build(config, saved, None) {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::error!(
                "the settings saved in the console cannot be used ({e}); the configuration \
                 file's values are in effect until the settings are saved again"
            );
            Ok(Settings::from_config(config, version)?)
        }
    }
}

/// A sandbox channel simulates payments: outside the demo it must be asked for explicitly,
/// and then it is announced loudly at every start.
fn check_sandboxes(config: &Config, demo: bool) -> Result<(), StartError> {
    for c in &config.channels {
        let ChannelSettings::Sandbox(sandbox) = &c.settings else {
            continue;
        };
        if demo {
            continue;
        }
        if !sandbox.allow_sandbox {
            return Err(StartError::SandboxNotAllowed(c.id.to_string()));
        }
        tracing::warn!(channel = %c.id, "SANDBOX CHANNEL ENABLED (allow_sandbox = true): its payments are simulated, not real money");
    }
    Ok(())
}

/// The id of the sandbox channel served by this very server (the first without a gateway).
fn local_sandbox_id(config: &Config) -> String {
    config
        .channels
        .iter()
        .find(|c| matches!(&c.settings, ChannelSettings::Sandbox(s) if s.gateway.is_none()))
        .map(|c| c.id.to_string())
        .unwrap_or_else(|| "sandbox".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config(extra: &str) -> Config {
        let toml = format!(
            "[[channels]]\nid = \"play\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n{extra}"
        );
        Config::from_toml_str(&toml).unwrap().config
    }

    #[test]
    fn a_sandbox_channel_outside_the_demo_needs_allow_sandbox() {
        match check_sandboxes(&config(""), false) {
            Err(e @ StartError::SandboxNotAllowed(_)) => {
                let text = e.to_string();
                assert!(
                    text.contains("`play`") && text.contains("allow_sandbox = true"),
                    "{text}"
                );
            }
            other => panic!("a sandbox channel started outside the demo: {other:?}"),
        }
        assert!(
            check_sandboxes(&config(""), true).is_ok(),
            "the demo needs no opt-in"
        );
        assert!(check_sandboxes(&config("allow_sandbox = true\n"), false).is_ok());
        assert!(
            check_sandboxes(&Config::default(), false).is_ok(),
            "no sandbox, no refusal"
        );
    }
}
