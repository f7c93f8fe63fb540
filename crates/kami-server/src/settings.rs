//! The settings in effect: the configuration's `[shop]` (name, notice, contact, logo),
//! `[orders]` expiry, `[smtp]`, `[risk]` and `[fx]` with the values saved in the console over them
//! (`config::overlay`), plus what is derived from them once (the notice and footer as HTML,
//! the SMTP transport). Handlers, services and jobs read one snapshot per use
//! (`AppState::settings`); a save or a reload swaps in a new one, so a saved
//! change holds from the next request on, without a restart.

use std::sync::{Arc, RwLock};

use kami_core::FxTable;
use kami_store::SavedSettings;

use crate::config::overlay::{self, Overlaid};
use crate::config::{Config, OrdersConfig, RiskConfig, ShopConfig, SmtpConfig};
use crate::mailer::{MailSetupError, Mailer};
use crate::markup::markdown;

/// One snapshot of the settings in effect.
pub struct Settings {
    pub shop: ShopConfig,
    pub orders: OrdersConfig,
    /// `None`: no mail is sent (neither the file nor the console set up SMTP).
    pub smtp: Option<SmtpConfig>,
    pub risk: RiskConfig,
    /// `[fx]`: the rate table checkout converts with (shared with each order that needs it).
    pub fx: Arc<FxTable>,
    /// `shop.notice` and `shop.footer` rendered from Markdown.
    pub notice_html: String,
    pub footer_html: String,
    /// The SMTP transport of `smtp`; rebuilt only when `smtp` changes.
    pub mailer: Option<Arc<Mailer>>,
    /// What the console saved (values, who and when), at its version.
    pub saved: SavedSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("version", &self.saved.version)
            .field("saved", &self.saved.rows.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why settings could not be put in effect: the key's problem, or the mail transport's.
pub type SettingsError = String;

impl Settings {
    /// The settings `saved` makes over `config`. The mail transport of `previous` is kept
    /// when the SMTP settings did not change (its open connections with it); otherwise a new
    /// one is set up (needs a Tokio runtime).
    pub fn build(
        config: &Config,
        saved: SavedSettings,
        previous: Option<&Settings>,
    ) -> Result<Settings, SettingsError> {
        let Overlaid {
            shop,
            orders,
            smtp,
            risk,
            fx,
        } = overlay::overlay(config, &saved.values())?;
        let mailer = match (&smtp, previous) {
            (None, _) => None,
            (Some(s), Some(p)) if p.smtp.as_ref() == Some(s) => p.mailer.clone(),
            (Some(s), _) => Some(Arc::new(Mailer::new(s).map_err(|e| e.to_string())?)),
        };
        let (notice_html, footer_html) = match previous {
            Some(p) if p.shop.notice == shop.notice && p.shop.footer == shop.footer => {
                (p.notice_html.clone(), p.footer_html.clone())
            }
            _ => (markdown(&shop.notice), markdown(&shop.footer)),
        };
        Ok(Settings {
            shop,
            orders,
            smtp,
            risk,
            fx: Arc::new(fx),
            notice_html,
            footer_html,
            mailer,
            saved,
        })
    }

    /// The configuration's values alone, as if nothing were saved (at start, when what was
    /// saved cannot be used); `version` is the saved settings' version they stand in for.
    pub fn from_config(config: &Config, version: i64) -> Result<Settings, MailSetupError> {
        let mailer = match &config.smtp {
            Some(s) => Some(Arc::new(Mailer::new(s)?)),
            None => None,
        };
        Ok(Settings {
            shop: config.shop.clone(),
            orders: config.orders.clone(),
            smtp: config.smtp.clone(),
            risk: config.risk.clone(),
            fx: Arc::new(config.fx.clone()),
            notice_html: markdown(&config.shop.notice),
            footer_html: markdown(&config.shop.footer),
            mailer,
            saved: SavedSettings {
                version,
                rows: Default::default(),
            },
        })
    }

    /// Where `key`'s value comes from: `console` (saved) or `config` (the file, the
    /// environment or the default).
    pub fn source(&self, key: &str) -> &'static str {
        if self.saved.rows.contains_key(key) {
            "console"
        } else {
            "config"
        }
    }
}

/// The snapshot in effect, swapped whole.
pub struct SettingsCell(RwLock<Arc<Settings>>);

impl SettingsCell {
    pub fn new(s: Settings) -> SettingsCell {
        SettingsCell(RwLock::new(Arc::new(s)))
    }

    pub fn get(&self) -> Arc<Settings> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `s` in effect unless a snapshot of a later version already is (two saves finishing
    /// out of order, or a reload racing a save). Returns whether it was put in effect.
    pub fn set_if_newer(&self, s: Settings) -> bool {
        let mut cur = self.0.write().unwrap_or_else(|p| p.into_inner());
        if s.saved.version < cur.saved.version {
            return false;
        }
        *cur = Arc::new(s);
        true
    }
}
