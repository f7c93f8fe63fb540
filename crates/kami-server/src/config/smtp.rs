//! `[smtp]`: the mail server buyer mail goes through; the password may come from a file
//! (`password_file`).

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::Deserialize;

use super::secrets::{string_or_int, value_or_file, Secret};
use super::{check_range, invalid, ConfigError, Origins};

const DEFAULT_SMTP_TIMEOUT_SECONDS: u32 = 15;
const SMTP_TIMEOUT_RANGE: (u32, u32) = (1, 300);
const DEFAULT_SMTP_RETRY_BASE_SECONDS: u32 = 30;
const SMTP_RETRY_BASE_RANGE: (u32, u32) = (1, 3600);

/// How the SMTP connection is secured (`smtp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (default; port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption (a local relay only; port 25).
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `[smtp]`: where buyer mail (the delivered keys) is sent through.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// Server host name (or IP address); also the name its TLS certificate must carry.
    pub host: String,
    /// Default by `tls`: 587 (starttls), 465 (tls), 25 (none).
    pub port: u16,
    pub tls: SmtpTls,
    /// Login, with `password`; both or neither.
    pub username: Option<String>,
    /// From `password` or `password_file`.
    pub password: Option<Secret>,
    /// The sender, e.g. `Shop <shop@example.com>`.
    pub from: Mailbox,
    /// Extra PEM certificate(s) to trust besides the public roots (self-hosted servers);
    /// resolved against [`Config::base_dir`], read when the mailer starts.
    pub ca_file: Option<PathBuf>,
    /// Per connection / command, 1..=300 seconds, default 15.
    pub timeout_seconds: u32,
    /// Retry backoff: base · 2^(attempt-1), at most an hour; 1..=3600 seconds, default 30.
    pub retry_base_seconds: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSmtp {
    pub(super) host: Option<String>,
    pub(super) port: Option<u32>,
    pub(super) tls: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    pub(super) username: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) from: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) timeout_seconds: Option<u32>,
    pub(super) retry_base_seconds: Option<u32>,
}

pub(super) fn build_smtp(
    raw: RawSmtp,
    base_dir: &Path,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<SmtpConfig, ConfigError> {
    let host = raw.host.as_deref().map(str::trim).unwrap_or_default();
    if host.is_empty() {
        return Err(invalid(
            origins,
            "smtp.host",
            "required when [smtp] is present (the mail server's host name)".into(),
        ));
    }
    let port_in_host = host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err();
    if port_in_host || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(invalid(
            origins,
            "smtp.host",
            format!(
                "`{host}` is not a host name (write e.g. smtp.example.com, without scheme; the port goes in `smtp.port`)"
            ),
        ));
    }
    let tls = match raw.tls.as_deref().map(str::trim) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            return Err(invalid(
                origins,
                "smtp.tls",
                format!("`{other}` is not one of: starttls, tls, none"),
            ))
        }
    };
    let port = match raw.port {
        None => tls.default_port(),
        Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            invalid(
                origins,
                "smtp.port",
                format!("must be between 1 and 65535, got {p}"),
            )
        })?,
    };
    let password = value_or_file(
        origins,
        ("smtp.password", "smtp.password_file"),
        raw.password,
        raw.password_file,
        base_dir,
    )?
    .map(Secret::new);
    let username = raw
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    match (&username, &password) {
        (Some(_), None) => {
            return Err(invalid(
                origins,
                "smtp.password",
                "`smtp.username` is set, so a password (`password` or `password_file`) is required"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                origins,
                "smtp.username",
                "a password is set, so `smtp.username` is required".into(),
            ))
        }
        _ => {}
    }
    if tls == SmtpTls::None && password.is_some() {
        warnings.push(format!(
            "smtp: tls = \"none\" sends the password to `{host}` unencrypted; use \"starttls\" or \"tls\" unless it is a local relay"
        ));
    }
    let from_raw = raw.from.as_deref().map(str::trim).unwrap_or_default();
    if from_raw.is_empty() {
        return Err(invalid(
            origins,
            "smtp.from",
            "required when [smtp] is present (the sender, e.g. \"Shop <shop@example.com>\")".into(),
        ));
    }
    let from = from_raw.parse::<Mailbox>().map_err(|e| {
        invalid(
            origins,
            "smtp.from",
            format!(
                "`{from_raw}` is not a mail address ({}); expected e.g. \"Shop <shop@example.com>\" or \"shop@example.com\"",
                e.to_string().to_lowercase()
            ),
        )
    })?;
    let ca_file = match raw.ca_file {
        None => None,
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid(origins, "smtp.ca_file", "must not be empty".into()))
        }
        Some(p) => Some(base_dir.join(p)),
    };
    if ca_file.is_some() && tls == SmtpTls::None {
        warnings
            .push("smtp: `ca_file` has no effect with tls = \"none\" (no TLS is used)".to_owned());
    }
    Ok(SmtpConfig {
        host: host.to_owned(),
        port,
        tls,
        username,
        password,
        from,
        ca_file,
        timeout_seconds: check_range(
            origins,
            "smtp.timeout_seconds",
            raw.timeout_seconds.unwrap_or(DEFAULT_SMTP_TIMEOUT_SECONDS),
            SMTP_TIMEOUT_RANGE,
        )?,
        retry_base_seconds: check_range(
            origins,
            "smtp.retry_base_seconds",
            raw.retry_base_seconds
                .unwrap_or(DEFAULT_SMTP_RETRY_BASE_SECONDS),
            SMTP_RETRY_BASE_RANGE,
        )?,
    })
}
