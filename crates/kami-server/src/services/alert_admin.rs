//! The seller's alert targets, conditions and deliveries (`/admin/alerts`,
//! `/api/v1/admin/alerts`): the configuration's `[[alerts]]` are listed read-only as
//! `config-N`; stored targets are added, edited and deleted here (audited by the store), their
//! secret (webhook secret, bot token) never shown again: a view says only whether it is set.
//! Every target's keys are checked by the configuration's own rules (`AlertTarget::parse`)
//! before anything is written.

use kami_store::{
    Actor, AlertCondition, AlertDelivery, AlertEvent, AlertTargetSpec, DeliveryRecord, StoreError,
    StoredAlertTarget, TargetSecret,
};
use serde_json::{json, Map, Value};

use super::alerts::{self, CONFIG_PREFIX};
use super::{ServiceError, ServiceResult};
use crate::config::{AlertSink, AlertTarget, TargetFields};
use crate::state::AppState;

/// Longest target name.
const MAX_NAME: usize = 32;
/// Conditions and deliveries listed.
pub const LIST_LIMIT: u32 = 100;

/// A target as the console and the API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    /// `config-N` or the stored name.
    pub id: String,
    pub read_only: bool,
    pub kind: String,
    pub events: Vec<AlertEvent>,
    pub enabled: bool,
    pub url: Option<String>,
    pub chat_id: Option<String>,
    pub api_base: Option<String>,
    pub to: Vec<String>,
    /// A webhook secret or bot token is set (never its value).
    pub secret_set: bool,
    /// A stored target that no longer passes the checks (written by an older kami).
    pub problem: Option<String>,
}

/// What the seller sends for a target; `None` keeps the current value on an edit.
#[derive(Debug, Clone, Default)]
pub struct TargetInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub bot_token: Option<String>,
    pub chat_id: Option<String>,
    pub api_base: Option<String>,
    pub to: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_alert_target", message)
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("alert_target_not_found", format!("no alert target `{id}`"))
}

fn read_only(id: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "alert_target_read_only",
        message: format!("`{id}` comes from the configuration file's [[alerts]]; change it there"),
    }
}

/// The API's JSON body as a [`TargetInput`]: unknown keys and wrong types are refused by name,
/// never echoing a value (it may be a secret).
pub fn input_from_json(map: Map<String, Value>) -> ServiceResult<TargetInput> {
    let mut input = TargetInput::default();
    for (key, value) in map {
        let text = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) if key == "chat_id" => Ok(n.to_string()),
            _ => Err(invalid(format!("`{key}` must be a string"))),
        };
        let list = |v: &Value| match v {
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(format!("`{key}` must be a list of strings")))
                })
                .collect::<ServiceResult<Vec<_>>>(),
            Value::String(s) if key == "to" => Ok(vec![s.clone()]),
            _ => Err(invalid(format!("`{key}` must be a list of strings"))),
        };
        match key.as_str() {
            "name" => input.name = Some(text(&value)?),
            "kind" => input.kind = Some(text(&value)?),
            "url" => input.url = Some(text(&value)?),
            "secret" => input.secret = Some(text(&value)?),
            "bot_token" => input.bot_token = Some(text(&value)?),
            "chat_id" => input.chat_id = Some(text(&value)?),
            "api_base" => input.api_base = Some(text(&value)?),
            "to" => input.to = Some(list(&value)?),
            "events" => input.events = Some(list(&value)?),
            "enabled" => {
                input.enabled = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| invalid("`enabled` must be true or false"))?,
                )
            }
            other => {
                return Err(invalid(format!(
                    "unknown key `{other}` (expected name, kind, url, secret, bot_token, chat_id, api_base, to, events, enabled)"
                )))
            }
        }
    }
    Ok(input)
}

fn check_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(invalid(format!(
            "`name`: `{name}` must be 1 to {MAX_NAME} lowercase letters, digits, - or _, starting with a letter or digit"
        )));
    }
    if name.starts_with(CONFIG_PREFIX) {
        return Err(invalid(format!(
            "`name`: names starting with `{CONFIG_PREFIX}` are the configuration file's"
        )));
    }
    Ok(name.to_owned())
}

/// Empty text is "not set".
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Check `input` (over `current` on an edit) and make the store's spec of it.
fn spec_of(
    name: String,
    input: TargetInput,
    current: Option<&StoredAlertTarget>,
) -> ServiceResult<AlertTargetSpec> {
    let cur = current.map(|c| &c.spec);
    let kind = match (given(input.kind), cur) {
        (Some(k), Some(c)) if k != c.kind => {
            return Err(invalid("`kind`: a target's kind cannot change"))
        }
        (Some(k), _) => k,
        (None, Some(c)) => c.kind.clone(),
        (None, None) => return Err(invalid("`kind`: required (webhook, telegram or email)")),
    };
    let setting = |key: &str, new: Option<String>| -> Option<String> {
        match new {
            Some(v) => given(Some(v)),
            None => cur
                .and_then(|c| c.settings.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    };
    let url = setting("url", input.url);
    let chat_id = setting("chat_id", input.chat_id);
    let api_base = setting("api_base", input.api_base);
    let to = match input.to {
        Some(v) => v,
        None => cur
            .map(|c| alerts::stored_to(&c.settings))
            .unwrap_or_default(),
    };
    // The secret is replaced when one is given, kept otherwise.
    let kept = cur
        .and_then(|c| c.secret.as_ref())
        .map(|s| s.expose().to_owned());
    let (secret, bot_token) = if kind == "telegram" {
        (given(input.secret), given(input.bot_token).or(kept))
    } else {
        (
            given(input.secret).or(if kind == "webhook" { kept } else { None }),
            given(input.bot_token),
        )
    };
    let events = match input.events {
        Some(e) => Some(e),
        None => cur.map(|c| c.events.iter().map(|e| e.as_str().to_owned()).collect()),
    };
    let target = AlertTarget::parse(TargetFields {
        kind: Some(kind.clone()),
        url,
        secret,
        bot_token,
        chat_id,
        api_base,
        to,
        events,
    })
    .map_err(|e| invalid(format!("`{}`: {}", e.key, e.message)))?;
    let mut settings = Map::new();
    let secret = match target.sink {
        AlertSink::Webhook { url, secret } => {
            settings.insert("url".into(), json!(url.as_str()));
            Some(secret)
        }
        AlertSink::Telegram {
            api_base,
            bot_token,
            chat_id,
        } => {
            settings.insert("chat_id".into(), json!(chat_id));
            settings.insert("api_base".into(), json!(api_base.as_str()));
            Some(bot_token)
        }
        AlertSink::Email { to } => {
            settings.insert(
                "to".into(),
                json!(to.iter().map(ToString::to_string).collect::<Vec<_>>()),
            );
            None
        }
    };
    Ok(AlertTargetSpec {
        name,
        kind,
        events: target.events,
        settings,
        secret: secret.map(|s| TargetSecret::new(s.expose().to_owned())),
        enabled: input.enabled.or(cur.map(|c| c.enabled)).unwrap_or(true),
    })
}

fn config_view(i: usize, t: &AlertTarget) -> TargetView {
    let mut v = TargetView {
        id: format!("{CONFIG_PREFIX}{i}"),
        read_only: true,
        kind: t.sink.kind().to_owned(),
        events: t.events.clone(),
        enabled: true,
        url: None,
        chat_id: None,
        api_base: None,
        to: Vec::new(),
        secret_set: false,
        problem: None,
    };
    match &t.sink {
        AlertSink::Webhook { url, .. } => {
            v.url = Some(url.to_string());
            v.secret_set = true;
        }
        AlertSink::Telegram {
            api_base, chat_id, ..
        } => {
            v.api_base = Some(api_base.to_string());
            v.chat_id = Some(chat_id.clone());
            v.secret_set = true;
        }
        AlertSink::Email { to } => v.to = to.iter().map(ToString::to_string).collect(),
    }
    v
}

fn stored_view(t: &StoredAlertTarget) -> TargetView {
    let s = &t.spec;
    let text = |k: &str| s.settings.get(k).and_then(Value::as_str).map(str::to_owned);
    TargetView {
        id: s.name.clone(),
        read_only: false,
        kind: s.kind.clone(),
        events: s.events.clone(),
        enabled: s.enabled,
        url: text("url"),
        chat_id: text("chat_id"),
        api_base: text("api_base"),
        to: alerts::stored_to(&s.settings),
        secret_set: s.secret.is_some(),
        problem: alerts::stored_target(t).err(),
    }
}

/// The configuration's targets, then the stored ones (oldest first).
pub async fn list(state: &AppState) -> ServiceResult<Vec<TargetView>> {
    let mut out: Vec<TargetView> = state
        .config
        .alerts
        .iter()
        .enumerate()
        .map(|(i, t)| config_view(i, t))
        .collect();
    out.extend(state.store.alert_targets().await?.iter().map(stored_view));
    Ok(out)
}

/// One target by id.
pub async fn get(state: &AppState, id: &str) -> ServiceResult<TargetView> {
    if let Some(v) = list(state).await?.into_iter().find(|v| v.id == id) {
        return Ok(v);
    }
    Err(not_found(id))
}

fn is_config(state: &AppState, id: &str) -> bool {
    id.strip_prefix(CONFIG_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n < state.config.alerts.len())
}

/// A new stored target (`409 alert_target_exists` when the name is taken).
pub async fn create(
    state: &AppState,
    input: TargetInput,
    actor: &Actor,
) -> ServiceResult<TargetView> {
    let name = check_name(input.name.as_deref().unwrap_or_default())?;
    let spec = spec_of(name, input, None)?;
    match state
        .store
        .create_alert_target(spec, actor, state.now_ms())
        .await
    {
        Ok(t) => Ok(stored_view(&t)),
        Err(StoreError::AlertTargetExists) => Err(ServiceError::Conflict {
            code: "alert_target_exists",
            message: "an alert target with this name already exists".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Change a stored target; what `input` leaves out stays (the secret too).
pub async fn update(
    state: &AppState,
    id: &str,
    mut input: TargetInput,
    actor: &Actor,
) -> ServiceResult<TargetView> {
    if is_config(state, id) {
        return Err(read_only(id));
    }
    if input.name.as_deref().is_some_and(|n| n.trim() != id) {
        return Err(invalid("`name`: a target's name cannot change"));
    }
    input.name = None;
    let current = match state.store.alert_target(id).await {
        Ok(t) => t,
        Err(StoreError::AlertTargetNotFound) => return Err(not_found(id)),
        Err(e) => return Err(e.into()),
    };
    let spec = spec_of(id.to_owned(), input, Some(&current))?;
    match state
        .store
        .update_alert_target(spec, actor, state.now_ms())
        .await
    {
        Ok(t) => Ok(stored_view(&t)),
        Err(StoreError::AlertTargetNotFound) => Err(not_found(id)),
        Err(e) => Err(e.into()),
    }
}

/// Delete a stored target (its pending deliveries are given up when their turn comes).
pub async fn remove(state: &AppState, id: &str, actor: &Actor) -> ServiceResult<()> {
    if is_config(state, id) {
        return Err(read_only(id));
    }
    match state
        .store
        .remove_alert_target(id, actor, state.now_ms())
        .await
    {
        Err(StoreError::AlertTargetNotFound) => Err(not_found(id)),
        other => Ok(other?),
    }
}

/// The outcome of a test alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub ok: bool,
    pub message: String,
}

/// Send a test alert (event `test`) to one target now, enabled or not.
pub async fn test(state: &AppState, id: &str) -> ServiceResult<TestOutcome> {
    let target = if is_config(state, id) {
        let n = id
            .strip_prefix(CONFIG_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_default();
        state
            .config
            .alerts
            .get(n)
            .cloned()
            .ok_or_else(|| not_found(id))?
    } else {
        let t = match state.store.alert_target(id).await {
            Ok(t) => t,
            Err(StoreError::AlertTargetNotFound) => return Err(not_found(id)),
            Err(e) => return Err(e.into()),
        };
        match alerts::stored_target(&t) {
            Ok(t) => t,
            Err(message) => return Ok(TestOutcome { ok: false, message }),
        }
    };
    let alert = AlertDelivery {
        target: id.to_owned(),
        event: AlertEvent::ChannelDown,
        subject: "test".into(),
        firing: true,
        details: json!({ "message": "a test alert from the console; nothing is wrong" }),
        at: state.now_ms(),
    };
    Ok(
        match alerts::send(state, &target.sink, "test", &alert).await {
            Ok(()) => TestOutcome {
                ok: true,
                message: "delivered".into(),
            },
            Err(message) => TestOutcome { ok: false, message },
        },
    )
}

/// The conditions firing now, newest first.
pub async fn conditions(state: &AppState) -> ServiceResult<Vec<AlertCondition>> {
    Ok(state.store.open_alert_conditions(LIST_LIMIT).await?)
}

/// The newest deliveries and where each stands.
pub async fn deliveries(state: &AppState) -> ServiceResult<Vec<DeliveryRecord>> {
    Ok(state.store.alert_deliveries(LIST_LIMIT).await?)
}

/// `delivered`, `pending` or `failed`.
pub fn delivery_state(d: &DeliveryRecord) -> &'static str {
    match (d.done_at, d.gave_up) {
        (Some(_), false) => "delivered",
        (Some(_), true) => "failed",
        (None, _) => "pending",
    }
}
