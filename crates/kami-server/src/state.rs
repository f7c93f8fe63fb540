//! What every handler, service and job shares: the store, the channels, the configuration and
//! the process-wide helpers. A leaf: it names only the building blocks below the services, so
//! http, jobs and services can all depend on it without depending on each other.

use std::sync::Arc;

use kami_core::SharedClock;
use kami_store::Store;

use crate::call_log::CallLog;
use crate::catalog::CatalogCache;
use crate::channels::Channels;
use crate::config::Config;
use crate::limits::Limits;
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::notify_limits::RejectedEventLimits;
use crate::settings::{Settings, SettingsCell};
use crate::stats_cache::StatsCache;
use crate::theme::Theme;
use crate::watch::OrderWatch;

/// Turns a QR code's text into a link to a simulator's payment page (demo pages only).
pub type QrLink = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Shared by every handler, service and job.
pub struct AppState {
    pub store: Store,
    pub channels: Channels,
    /// The configuration as loaded: the defaults of the settings the console can save (read
    /// those through [`AppState::settings`]) and everything else.
    pub config: Config,
    /// Base URL the gateways and buyers reach this server at (no trailing slash).
    pub public_url: String,
    pub clock: SharedClock,
    pub watch: OrderWatch,
    pub metrics: Metrics,
    /// Storefront templates, assets and message catalogues.
    pub theme: Theme,
    /// The catalogue as pages show it, cached for a moment.
    pub catalog: CatalogCache,
    /// Per-client and per-target request limits.
    pub limits: Limits,
    /// How many rejected notifications are stored per client and channel.
    pub notify_limits: RejectedEventLimits,
    /// Demo: links from QR codes to the simulator's payment page.
    pub qr_link: Option<QrLink>,
    /// Demo and tests: the stand-in `WeixinJSBridge` script a JSAPI checkout page loads
    /// (WeChat's browser has the real one; production never sets this).
    pub jsapi_bridge: Option<String>,
    /// The stats of closed days, for the dashboard and the stats API.
    pub stats_cache: StatsCache,
    /// Channel calls not yet written (`services/channel_calls.rs`).
    pub call_log: CallLog,
    /// The settings in effect (the configuration with the console's saved values over it):
    /// shop name, notice, contact, logo, order expiry, SMTP and its transport, risk rules.
    pub settings: SettingsCell,
    /// Wakes the mail worker (an order was just delivered, or mail was just set up).
    pub mail_wake: tokio::sync::Notify,
}

impl AppState {
    /// Milliseconds since the epoch, from the state's clock.
    pub fn now_ms(&self) -> kami_core::Millis {
        self.clock.now_ms()
    }

    /// The settings in effect now: one snapshot, to read every value of one use from.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.get()
    }

    /// Whether the shop mails buyers at all (SMTP set up in the file or the console).
    pub fn mail_enabled(&self) -> bool {
        self.settings().mailer.is_some()
    }

    /// The SMTP transport in effect, if mail is on.
    pub fn mailer(&self) -> Option<Arc<Mailer>> {
        self.settings().mailer.clone()
    }

    /// An order was just delivered: let the mail worker look now instead of at its next poll.
    pub fn wake_mail(&self) {
        self.mail_wake.notify_one();
    }

    /// Put `s` in effect (unless a later version already is): the limiters take its risk
    /// rules, and the mail worker looks at once if mail is on. Returns whether it was put in
    /// effect.
    pub fn install_settings(&self, s: Settings) -> bool {
        let risk = s.risk.clone();
        let mail = s.mailer.is_some();
        if !self.settings.set_if_newer(s) {
            return false;
        }
        self.limits.apply_risk(&risk);
        if mail {
            self.wake_mail();
        }
        true
    }
}
