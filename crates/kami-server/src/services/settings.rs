//! The shop's settings as the seller edits them in the console and through
//! `/api/v1/admin/settings`: shop name, notice, contact, logo, order expiry, SMTP, risk
//! rules. The configuration file's values are the defaults; a saved value wins (and says so),
//! and resetting it returns the key to the file's value. A save is checked whole (each value
//! by the rules of the file's key, SMTP together, the mail transport set up) before anything
//! is written, checked again inside the store's transaction, audited there with before/after
//! (the SMTP password only as "(set)"), and put in effect at once in this process; other
//! processes on the same database pick it up within seconds (`jobs`, [`reload_if_changed`]).

use std::sync::Arc;

use kami_core::Email;
use kami_store::{Actor, SettingsChanges, SettingsCheck, StoreError};
use lettre::message::{Mailbox, Message};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::{ServiceError, ServiceResult};
use crate::config::overlay::{self, Kind, KEYS};
use crate::i18n::Locale;
use crate::mailer::Mailer;
use crate::settings::Settings;
use crate::state::AppState;

/// One setting as the seller sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SettingView {
    pub key: &'static str,
    pub group: &'static str,
    /// `text`, `markdown`, `int`, `choice`, `list`, `secret`.
    pub kind: &'static str,
    /// In effect now (secrets: "set" / "not set").
    pub value: Json,
    /// `console` (saved, wins) or `config` (the file, the environment or the default).
    pub source: &'static str,
    /// The configuration's value: what a reset returns to.
    pub config_value: Json,
    /// When and by whom it was saved (console only).
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
    /// For `choice`: the words allowed.
    pub choices: &'static [&'static str],
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Text => "text",
        Kind::Markdown => "markdown",
        Kind::Int { .. } => "int",
        Kind::Choice(_) => "choice",
        Kind::List => "list",
        Kind::Secret => "secret",
    }
}

/// Every setting, in the console's order, from the snapshot in effect.
pub fn view(state: &AppState) -> Vec<SettingView> {
    let s = state.settings();
    KEYS.iter()
        .map(|k| {
            let row = s.saved.rows.get(k.key);
            SettingView {
                key: k.key,
                group: k.group,
                kind: kind_name(k.kind),
                value: overlay::value_of(
                    &s.shop,
                    &s.orders,
                    s.smtp.as_ref(),
                    &s.risk,
                    &s.fx,
                    k.key,
                ),
                source: s.source(k.key),
                config_value: state.config.setting_value(k.key),
                updated_at: row.map(|r| r.updated_at),
                updated_by: row.map(|r| r.updated_by.clone()),
                choices: match k.kind {
                    Kind::Choice(c) => c,
                    _ => &[],
                },
            }
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_settings", message)
}

/// A change request (`{"shop.name": "…", "risk.blocked_ips": [...], "smtp.port": null}`):
/// each key checked on its own; `null` returns a key to the configuration's value. The first
/// problem is the error, naming its key.
pub fn parse_changes(body: &Map<String, Json>) -> ServiceResult<SettingsChanges> {
    if body.is_empty() {
        return Err(invalid("no settings given"));
    }
    let mut out = Vec::with_capacity(body.len());
    for (name, v) in body {
        let k = overlay::key(name).ok_or_else(|| {
            invalid(format!(
                "unknown setting `{name}`; the settings are: {}",
                KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let value = match v {
            Json::Null => None,
            v => Some(overlay::parse(k, v).map_err(invalid)?),
        };
        out.push((k.key.to_owned(), value));
    }
    Ok(out)
}

/// Save `changes` and put them in effect; returns the settings in effect afterwards. Nothing
/// is saved when any value, or the whole they make, is refused (`422 invalid_settings`).
#[tracing::instrument(level = "debug", skip_all, fields(keys = changes.len()))]
pub async fn update(
    state: &AppState,
    changes: SettingsChanges,
    actor: &Actor,
) -> ServiceResult<Arc<Settings>> {
    let current = state.settings();
    // Checked before the write, with the mail transport set up, so a refusal is precise.
    let mut values = current.saved.values();
    for (k, v) in &changes {
        match v {
            Some(v) => values.insert(k.clone(), v.clone()),
            None => values.remove(k),
        };
    }
    let planned = overlay::overlay(&state.config, &values).map_err(invalid)?;
    if planned.smtp != current.smtp {
        if let Some(smtp) = &planned.smtp {
            Mailer::new(smtp).map_err(|e| invalid(format!("smtp: {e}")))?;
        }
    }
    // And again inside the transaction, over what is saved then (another process may have
    // saved meanwhile).
    let config = Arc::new(state.config.clone());
    let check: SettingsCheck =
        Arc::new(move |values| overlay::overlay(&config, values).map(|_| ()));
    let saved = state
        .store
        .save_settings(changes, check, actor, state.now_ms())
        .await
        .map_err(|e| match e {
            StoreError::InvalidInput(m) => invalid(m),
            other => other.into(),
        })?;
    let version = saved.version;
    let next = Settings::build(&state.config, saved, Some(&current)).map_err(|e| {
        ServiceError::internal(format!(
            "settings version {version} were saved but cannot be put in effect: {e}"
        ))
    })?;
    if state.install_settings(next) {
        tracing::info!(actor = %actor.actor, version, "settings saved and in effect");
    }
    Ok(state.settings())
}

/// Another process saved settings: put them in effect here. Cheap when nothing changed (one
/// read of the version). Returns whether new settings were put in effect.
pub async fn reload_if_changed(state: &AppState) -> ServiceResult<bool> {
    let current = state.settings();
    if state.store.settings_version().await? == current.saved.version {
        return Ok(false);
    }
    let saved = state.store.settings().await?;
    let version = saved.version;
    match Settings::build(&state.config, saved, Some(&current)) {
        Ok(next) => {
            let installed = state.install_settings(next);
            if installed {
                tracing::info!(version, "settings saved elsewhere are in effect here now");
            }
            Ok(installed)
        }
        Err(e) => Err(ServiceError::internal(format!(
            "the settings saved at version {version} cannot be put in effect: {e}"
        ))),
    }
}

/// What sending a test mail did.
#[derive(Debug, Clone, Serialize)]
pub struct TestMail {
    pub ok: bool,
    /// Success: which server accepted it; failure: the SMTP server's (or the connection's)
    /// error, precisely.
    pub message: String,
}

/// Send a test mail to `to` through the SMTP settings in effect, in `locale`. Mail off →
/// `409 mail_off`; a bad address → `422 invalid_email`; what the server said either way is
/// in the answer.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn test_mail(state: &AppState, to: &str, locale: Locale) -> ServiceResult<TestMail> {
    let email = Email::parse(to.trim())
        .map_err(|e| ServiceError::invalid("invalid_email", format!("to: {e}")))?;
    let settings = state.settings();
    let (Some(mailer), Some(smtp)) = (settings.mailer.clone(), settings.smtp.as_ref()) else {
        return Err(ServiceError::Conflict {
            code: "mail_off",
            message: "this shop sends no mail: set up SMTP (smtp.host and smtp.from) first".into(),
        });
    };
    let to: Mailbox = email
        .as_str()
        .parse::<lettre::Address>()
        .map(|a| Mailbox::new(None, a))
        .map_err(|e| ServiceError::invalid("invalid_email", format!("to: {e}")))?;
    let shop = settings.shop.name.clone();
    let text = |key: &str| {
        state.theme.text(
            locale,
            key,
            &[("shop", shop.clone()), ("server", smtp.host.clone())],
        )
    };
    let message = Message::builder()
        .from(mailer.from().clone())
        .to(to)
        .subject(text("mail.test.subject"))
        .body(text("mail.test.body"))
        .map_err(|e| ServiceError::internal(format!("building the test mail: {e}")))?;
    let server = format!("{}:{} ({})", smtp.host, smtp.port, smtp.tls.as_str());
    Ok(match mailer.send(message).await {
        Ok(()) => {
            tracing::info!(server = %server, "test mail accepted");
            TestMail {
                ok: true,
                message: format!("accepted by {server}"),
            }
        }
        Err(e) => {
            tracing::warn!(server = %server, "test mail not sent: {e}");
            TestMail {
                ok: false,
                message: format!("{server}: {e}"),
            }
        }
    })
}
