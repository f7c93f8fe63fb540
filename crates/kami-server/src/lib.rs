//! kami's server: the services (the shop's use cases), the HTTP edge and the background jobs
//! on top of them, and the building blocks they share. See ARCHITECTURE.md for the map.
//!
//! Layers depend inward: `app` (composition root) → `http`, `jobs` → `services` → `state`
//! and the building blocks (`config`, `channels`, `catalog`, `limits`, `notify_limits`, `mailer`, `metrics`,
//! `theme`, `i18n`, `markup`, `watch`, `time`, `settings`) → kami-store / kami-pay → kami-core.

pub mod app;
pub mod call_log;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod demo;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod limits;
pub mod mailer;
pub mod markup;
pub mod media;
pub mod metrics;
pub mod notify_limits;
pub mod services;
pub mod settings;
pub mod state;
pub mod stats_cache;
pub mod theme;
pub mod time;
pub mod watch;

pub use app::{
    Application, BuildOptions, Extension, ExtensionContext, Extra, LocalSandbox, QrLink, StartError,
};
pub use config::Config;
pub use state::AppState;
