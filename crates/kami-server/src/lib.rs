//! kami's HTTP server: the JSON API, gateway endpoints, background workers, configuration.

pub mod api;
pub mod app;
pub mod channels;
pub mod config;
pub mod demo;
pub mod error;
pub mod mail;
pub mod passwords;
pub mod time;
pub mod watch;
pub mod web;
pub mod workers;

pub use app::{AppState, Application, BuildOptions, StartError};
pub use config::Config;
