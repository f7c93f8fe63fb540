//! The application builder: everything a `kami serve` process runs, startable on port 0 with
//! a fresh database by tests (`Application::build` then `run`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kami_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::channels::{ChannelSetupError, Channels};
use crate::config::Config;
use crate::watch::OrderWatch;
use crate::{api, workers};

/// Shared by every handler and worker.
pub struct AppState {
    pub store: Store,
    pub channels: Channels,
    pub config: Config,
    /// Base URL the gateways and buyers reach this server at (no trailing slash).
    pub public_url: String,
    pub watch: OrderWatch,
    pub metrics: Metrics,
    /// The in-process gateway simulators when built with `demo_gateways` (demo and tests).
    pub gateways: Option<kami_sim::gateways::Gateways>,
    /// Storefront templates, assets and message catalogues.
    pub theme: crate::web::Theme,
    pub web: crate::web::WebState,
    /// Buyer mail through `[smtp]`; `None` when it is not configured (no mail is attempted).
    pub mailer: Option<Arc<crate::mail::Mailer>>,
}

impl AppState {
    /// An order was just delivered: let the mail worker look now instead of at its next poll.
    pub fn wake_mail(&self) {
        if let Some(m) = &self.mailer {
            m.wake();
        }
    }
}

/// How to build the application beyond its configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Mount every gateway simulator on this server (generated keys) and add one channel of
    /// each kind wired to them: `alipay-sim`, `wechat-sim`, `epay-sim`.
    pub demo_gateways: bool,
    /// Simulators retry notifications every 50 ms instead of on the real schedules (tests).
    pub fast_sim_retries: bool,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub orders_created: AtomicU64,
    pub orders_out_of_stock: AtomicU64,
    /// Notifications by outcome code.
    pub notifications: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub orders_expired: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn notification(&self, outcome: &'static str) {
        let mut m = self.notifications.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(outcome).or_default() += 1;
    }
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
    #[error("http client: {0}")]
    Http(String),
    #[error("theme: {0}")]
    Theme(#[from] crate::web::ThemeError),
    #[error("gateway simulators: {0}")]
    Gateways(#[from] kami_sim::gateways::GatewayError),
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::MailSetupError),
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
        let store = Store::connect(&config.database.url, config.database.max_connections).await?;
        Application::build_with_store(config, store, opts).await
    }

    pub async fn build_with_store(
        config: Config,
        store: Store,
        opts: BuildOptions,
    ) -> Result<Application, StartError> {
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let (mut channels, local_sandbox) = Channels::build(&config, &public_url, &http)?;
        let gateways = if opts.demo_gateways {
            use kami_pay::{alipay::AlipayChannel, epay::EpayChannel, wechatpay::WechatPayChannel};
            let gw = kami_sim::gateways::Gateways::generate(
                &public_url,
                kami_sim::gateways::GatewayOptions {
                    fast_retries: opts.fast_sim_retries,
                },
            )?;
            channels.push(Arc::new(AlipayChannel::new(
                gw.alipay_config("alipay-sim")?,
                http.clone(),
            )));
            channels.push(Arc::new(WechatPayChannel::new(
                gw.wechatpay_config("wechat-sim")?,
                http.clone(),
            )));
            channels.push(Arc::new(EpayChannel::new(
                gw.epay_config("epay-sim")?,
                http.clone(),
            )));
            Some(gw)
        } else {
            None
        };
        let sim_router = gateways.as_ref().map(|g| g.router.clone());
        let theme = crate::web::Theme::load(config.shop.theme_dir.as_deref())?;
        let web = crate::web::WebState::new(&config.shop);
        let mailer = match &config.smtp {
            Some(smtp) => Some(Arc::new(crate::mail::Mailer::new(smtp)?)),
            None => None,
        };
        let state = Arc::new(AppState {
            store,
            channels,
            config,
            public_url,
            watch: OrderWatch::default(),
            metrics: Metrics::default(),
            gateways,
            web,
            theme,
            mailer,
        });
        let mut router = api::router(state.clone());
        if let Some(sims) = sim_router {
            router = router.merge(sims);
        }
        if let Some(local) = local_sandbox {
            let sim = kami_sim::sandbox::SandboxSim::new(local.secret, Default::default());
            router = router.merge(sim.router());
        }
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

    /// Serve until `shutdown` turns true (or forever), running the background workers.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let workers = workers::spawn(self.state.clone(), shutdown.clone());
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    // Sender gone: run until the process ends.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        workers.abort();
        result
    }
}
