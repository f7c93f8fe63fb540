//! Alerts: from signals to messages.
//!
//! Any part of kami records an `alert.signal` outbox row when it sees a condition hold or stop
//! holding (`kami_store::alert_signal`). [`apply_signals_once`] claims those rows and has the
//! store apply each to its condition (`kami-store/src/alert_conditions.rs`: once when it
//! fires, once when it resolves, never twice), writing one `alert.delivery` outbox row per
//! target wanting the event in the same commit. [`deliver_due_once`] claims due deliveries
//! and sends each: a webhook POST of the JSON alert signed with HMAC-SHA256
//! (`X-Kami-Signature: sha256=HEX`), a Telegram `sendMessage`, or a mail through the shop's
//! SMTP settings. A failure (no answer within `alerting.timeout_seconds`, a non-2xx answer,
//! mail not set up) is retried with a backoff like buyer mail; a delivery still failing a day
//! later is given up with its last error kept.
//!
//! Targets are the configuration's `[[alerts]]` (`config-N`, N counted from 0) and the stored
//! ones (by name). Logs name the delivery and the cause, never a secret: the Telegram URL
//! holds the bot token, so its errors are reported without the URL.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::hmac;
use kami_store::{
    AlertDelivery, AlertSignal, Applied, OutboxItem, StoreError, StoredAlertTarget, TargetEvents,
    ALERT_DELIVERY, ALERT_SIGNAL,
};
use lettre::message::header::ContentType;
use lettre::Message;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::config::{AlertSink, AlertTarget, TargetFields};
use crate::i18n::Locale;
use crate::state::AppState;
use crate::time::rfc3339;

/// Rows claimed per round.
pub const BATCH: u32 = 32;
/// How long a claimed signal row is this process's.
const SIGNAL_LEASE_MS: i64 = 60_000;
/// Longest wait between two tries of one delivery.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// A delivery still failing this long after it was written is given up.
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;
/// The prefix of the configuration's targets' ids.
pub const CONFIG_PREFIX: &str = "config-";

/// The configuration's targets as the consumer matches them.
fn config_targets(state: &AppState) -> Vec<TargetEvents> {
    state
        .config
        .alerts
        .iter()
        .enumerate()
        .map(|(i, t)| TargetEvents {
            target: format!("{CONFIG_PREFIX}{i}"),
            events: t.events.clone(),
        })
        .collect()
}

/// Claim due signals (one batch) and apply each to its condition; returns how many rows.
pub async fn apply_signals_once(state: &AppState) -> Result<usize, StoreError> {
    let now = state.now_ms();
    let items = state
        .store
        .claim_outbox(&[ALERT_SIGNAL], now, now + SIGNAL_LEASE_MS, BATCH)
        .await?;
    let targets = config_targets(state);
    for item in &items {
        let signal: AlertSignal = match serde_json::from_str(&item.payload) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("unreadable alert signal: {e}");
                tracing::warn!(outbox = item.id, "{why}");
                state.store.give_up_outbox(item.id, now, &why).await?;
                continue;
            }
        };
        let (event, subject) = (signal.event.as_str(), signal.subject.clone());
        match state
            .store
            .apply_alert_signal(item.id, signal, targets.clone(), state.now_ms())
            .await?
        {
            Applied::Fired { deliveries } => {
                tracing::warn!(event, subject = %subject, deliveries, "alert firing");
            }
            Applied::Resolved { deliveries } => {
                tracing::info!(event, subject = %subject, deliveries, "alert resolved");
            }
            Applied::Unchanged | Applied::Stale => {}
        }
    }
    Ok(items.len())
}

/// The wait after failed try number `attempts` (1, 2, …): base · 2^(attempts-1), at most an hour.
fn backoff_ms(base_ms: i64, attempts: i64) -> i64 {
    base_ms
        .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
        .min(MAX_BACKOFF_MS)
}

fn timeout(state: &AppState) -> Duration {
    Duration::from_secs(u64::from(state.config.alerting.timeout_seconds))
}

/// Claim the due deliveries (one batch) and send them concurrently; returns how many.
pub async fn deliver_due_once(state: &Arc<AppState>) -> Result<usize, StoreError> {
    let now = state.now_ms();
    // Longer than any send (a mail's own bound is four SMTP timeouts).
    let lease = (timeout(state).as_millis() as i64).max(60_000) * 4;
    let due = state
        .store
        .claim_outbox(&[ALERT_DELIVERY], now, now + lease, BATCH)
        .await?;
    let n = due.len();
    let mut tasks = JoinSet::new();
    for item in due {
        let state = state.clone();
        tasks.spawn(async move {
            let id = item.id;
            if let Err(e) = deliver_one(&state, item).await {
                // The lease runs out and the row is claimed again.
                tracing::warn!(outbox = id, "alert delivery: {e}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n)
}

/// Why a delivery did not happen.
enum Failure {
    Retry(String),
    GiveUp(String),
}

async fn deliver_one(state: &AppState, item: OutboxItem) -> Result<(), StoreError> {
    if state.now_ms() - item.created_at >= GIVE_UP_AFTER_MS {
        let why = format!(
            "undelivered a day after the alert; last error: {}",
            item.last_error.as_deref().unwrap_or("none")
        );
        tracing::warn!(outbox = item.id, "alert delivery given up: {why}");
        state
            .store
            .give_up_outbox(item.id, state.now_ms(), &why)
            .await?;
        return Ok(());
    }
    let outcome = match serde_json::from_str::<AlertDelivery>(&item.payload) {
        Err(e) => Err(Failure::GiveUp(format!("unreadable alert delivery: {e}"))),
        Ok(alert) => match resolve_target(state, &alert.target).await {
            Ok(target) => send(state, &target.sink, &alert.name(), &alert)
                .await
                .map_err(Failure::Retry),
            Err(f) => Err(f),
        },
    };
    let now = state.now_ms();
    match outcome {
        Ok(()) => {
            state.store.complete_outbox(item.id, now).await?;
            tracing::info!(outbox = item.id, attempt = item.attempts, "alert delivered");
        }
        Err(Failure::Retry(cause)) => {
            let base = i64::from(state.config.alerting.retry_base_seconds) * 1000;
            let wait = backoff_ms(base, item.attempts);
            tracing::warn!(
                outbox = item.id,
                attempt = item.attempts,
                retry_in_s = wait / 1000,
                "alert not delivered, will retry: {cause}"
            );
            state
                .store
                .reschedule_outbox(item.id, item.attempts, now + wait, &cause)
                .await?;
        }
        Err(Failure::GiveUp(cause)) => {
            tracing::warn!(outbox = item.id, "alert cannot be delivered: {cause}");
            state.store.give_up_outbox(item.id, now, &cause).await?;
        }
    }
    Ok(())
}

/// A stored target's `to` addresses (a list; one address as text is read too).
pub fn stored_to(settings: &serde_json::Map<String, Value>) -> Vec<String> {
    match settings.get("to") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(a)) => vec![a.clone()],
        _ => Vec::new(),
    }
}

/// A stored target as a target of the configuration's shape (its keys are checked again: a
/// row written by an older kami must not be sent to blindly).
pub fn stored_target(t: &StoredAlertTarget) -> Result<AlertTarget, String> {
    let s = &t.spec;
    let text = |k: &str| s.settings.get(k).and_then(Value::as_str).map(str::to_owned);
    let secret = s.secret.as_ref().map(|x| x.expose().to_owned());
    let (secret, bot_token) = match s.kind.as_str() {
        "telegram" => (None, secret),
        _ => (secret, None),
    };
    let to = stored_to(&s.settings);
    AlertTarget::parse(TargetFields {
        kind: Some(s.kind.clone()),
        url: text("url"),
        secret,
        bot_token,
        chat_id: text("chat_id"),
        api_base: text("api_base"),
        to,
        events: Some(s.events.iter().map(|e| e.as_str().to_owned()).collect()),
    })
    .map_err(|e| format!("stored target `{}`: `{}` {}", s.name, e.key, e.message))
}

/// The target with this id (`config-N` or a stored name); `Err` says why it cannot be sent to
/// (and whether trying later may help).
async fn resolve_target(state: &AppState, id: &str) -> Result<AlertTarget, Failure> {
    if let Some(n) = id.strip_prefix(CONFIG_PREFIX) {
        return n
            .parse::<usize>()
            .ok()
            .and_then(|n| state.config.alerts.get(n))
            .cloned()
            .ok_or_else(|| {
                Failure::GiveUp(format!(
                    "target {id} is no longer in the configuration's [[alerts]]"
                ))
            });
    }
    match state.store.alert_target(id).await {
        Ok(t) if !t.spec.enabled => Err(Failure::GiveUp(format!("target {id} is disabled"))),
        Ok(t) => stored_target(&t).map_err(Failure::GiveUp),
        Err(StoreError::AlertTargetNotFound) => {
            Err(Failure::GiveUp(format!("target {id} was deleted")))
        }
        Err(e) => Err(Failure::Retry(format!("reading target {id}: {e}"))),
    }
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// The JSON a webhook receives.
fn webhook_body(shop: &str, name: &str, alert: &AlertDelivery) -> Value {
    json!({
        "event": name,
        "subject": alert.subject,
        "firing": alert.firing,
        "details": alert.details,
        "shop": shop,
        "at": rfc3339(alert.at),
    })
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Send one alert to one sink as `name` (its [`AlertDelivery::name`], or `test`); the error
/// is for the log and the console (no secrets).
pub async fn send(
    state: &AppState,
    sink: &AlertSink,
    name: &str,
    alert: &AlertDelivery,
) -> Result<(), String> {
    let settings = state.settings();
    let shop = settings.shop.name.as_str();
    match sink {
        AlertSink::Webhook { url, secret } => {
            let body = webhook_body(shop, name, alert).to_string();
            let resp = http()
                .post(url.clone())
                .timeout(timeout(state))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    "X-Kami-Signature",
                    signature(secret.expose(), body.as_bytes()),
                )
                .header("X-Kami-Event", name)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("webhook: {}", e.without_url()))?;
            answered("webhook", resp).await
        }
        AlertSink::Telegram {
            api_base,
            bot_token,
            chat_id,
        } => {
            let url = format!(
                "{}/bot{}/sendMessage",
                api_base.as_str().trim_end_matches('/'),
                bot_token.expose()
            );
            let text = readable(state, shop, name, alert);
            let resp = http()
                .post(url)
                .timeout(timeout(state))
                .json(&json!({
                    "chat_id": chat_id,
                    "text": format!("{}\n{}", text.0, text.1),
                    "disable_web_page_preview": true,
                }))
                .send()
                .await
                // The URL holds the bot token: never in an error.
                .map_err(|e| format!("telegram: {}", e.without_url()))?;
            answered("telegram", resp).await
        }
        AlertSink::Email { to } => {
            let Some(mailer) = state.mailer() else {
                return Err("email: mail is not set up ([smtp] or the console's settings)".into());
            };
            let (subject, body) = readable(state, shop, name, alert);
            let mut builder = Message::builder()
                .from(mailer.from().clone())
                .subject(subject)
                .header(ContentType::TEXT_PLAIN);
            for m in to {
                builder = builder.to(m.clone());
            }
            let message = builder
                .body(body)
                .map_err(|e| format!("email: building the message: {e}"))?;
            mailer
                .send(message)
                .await
                .map_err(|e| format!("email: {e}"))
        }
    }
}

/// `Ok` for a 2xx answer; otherwise its status and the start of its body.
async fn answered(what: &str, resp: reqwest::Response) -> Result<(), String> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(format!("{what} answered {status}: {body}"))
}

/// A subject line and a body a person reads, in the shop's language.
fn readable(state: &AppState, shop: &str, name: &str, alert: &AlertDelivery) -> (String, String) {
    let settings = state.settings();
    let locale = Locale::parse(&settings.shop.default_locale).unwrap_or(Locale::ZhCn);
    let t = |key: &str| state.theme.text(locale, key, &[]);
    let title = t(&format!("alerts.event.{name}"));
    let subject = format!("[{shop}] {title}: {}", alert.subject);
    let mut body = format!("{title}\n{}: {}\n", t("alerts.text.subject"), alert.subject);
    if let Value::Object(map) = &alert.details {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            body.push_str(&format!("{k}: {v}\n"));
        }
    }
    body.push_str(&format!("{}: {}\n", t("alerts.text.at"), rfc3339(alert.at)));
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(1000, 1), 1000);
        assert_eq!(backoff_ms(1000, 3), 4000);
        assert_eq!(backoff_ms(30_000, 30), MAX_BACKOFF_MS);
    }
}
