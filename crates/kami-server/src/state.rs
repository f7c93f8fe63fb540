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
use crate::stats_cache::StatsCache;
use crate::theme::Theme;
use crate::watch::OrderWatch;

/// Turns a QR code's text into a link to a simulator's payment page (demo pages only).
pub type QrLink = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Shared by every handler, service and job.
pub struct AppState {
    pub store: Store,
    pub channels: Channels,
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
    /// The shop's notice and footer, rendered from Markdown once.
    pub notice_html: String,
    pub footer_html: String,
    /// Demo: links from QR codes to the simulator's payment page.
    pub qr_link: Option<QrLink>,
    /// Buyer mail through `[smtp]`; `None` when it is not configured (no mail is attempted).
    pub mailer: Option<Arc<Mailer>>,
    /// The stats of closed days, for the dashboard and the stats API.
    pub stats_cache: StatsCache,
    /// Channel calls not yet written (`services/channel_calls.rs`).
    pub call_log: CallLog,
}

impl AppState {
    /// Milliseconds since the epoch, from the state's clock.
    pub fn now_ms(&self) -> kami_core::Millis {
        self.clock.now_ms()
    }

    /// Whether the shop mails buyers at all (`[smtp]` configured).
    pub fn mail_enabled(&self) -> bool {
        self.mailer.is_some()
    }

    /// An order was just delivered: let the mail worker look now instead of at its next poll.
    pub fn wake_mail(&self) {
        if let Some(m) = &self.mailer {
            m.wake();
        }
    }
}
