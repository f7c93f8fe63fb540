//! Turning the TOTP second factor on and off. Enrolment is two steps: a secret is drawn and
//! kept sealed as pending (shown once, as a QR code and in base32), and only a correct code
//! from the authenticator turns it on, with ten recovery codes shown once. After that the
//! secret is never shown again.

use kami_store::{AuditEntry, Session};

use super::console::Client;
use super::{recovery, totp, ServiceError, ServiceResult};
use crate::state::AppState;

/// What the enrolment page shows.
#[derive(Debug)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

fn audit(s: &Session, action: &str, client: &Client) -> AuditEntry {
    AuditEntry {
        actor: format!("user:{}", s.user_name),
        action: action.to_owned(),
        target: format!("user:{}", s.user_name),
        ip: client.ip.map(|ip| ip.to_canonical().to_string()),
        before: None,
        after: None,
    }
}

fn enrolment(state: &AppState, s: &Session, secret: &[u8]) -> Enrolment {
    Enrolment {
        secret_base32: totp::base32(secret),
        otpauth_uri: totp::otpauth_uri(&state.settings().shop.name, &s.user_name, secret),
    }
}

/// Start an enrolment (a fresh secret each time).
pub async fn begin(state: &AppState, s: &Session) -> ServiceResult<Enrolment> {
    let secret = totp::generate_secret();
    state
        .store
        .begin_admin_totp(s.user_id, secret.clone())
        .await?;
    Ok(enrolment(state, s, &secret))
}

/// The enrolment in progress (to show its QR code again after a wrong code).
pub async fn pending(state: &AppState, s: &Session) -> ServiceResult<Option<Enrolment>> {
    Ok(state
        .store
        .admin_totp_pending(s.user_id)
        .await?
        .map(|secret| enrolment(state, s, &secret)))
}

/// Confirm the enrolment with a code: the factor is on; returns the recovery codes (shown
/// once).
pub async fn confirm(
    state: &AppState,
    s: &Session,
    code: &str,
    client: &Client,
) -> ServiceResult<Vec<String>> {
    let now = state.now_ms();
    let secret = state
        .store
        .admin_totp_pending(s.user_id)
        .await?
        .ok_or_else(|| ServiceError::invalid("no_enrolment", "start the set-up again"))?;
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let step = totp::matching_step(&secret, &code, now.div_euclid(1000))
        .ok_or_else(|| ServiceError::invalid("bad_code", "wrong code"))?;
    let codes = recovery::generate();
    let hashes = codes
        .iter()
        .map(|c| recovery::hash(&recovery::normalize(c)))
        .collect();
    if !state
        .store
        .enable_admin_totp(s.user_id, step, hashes, audit(s, "2fa.enable", client), now)
        .await?
    {
        return Err(ServiceError::invalid(
            "no_enrolment",
            "start the set-up again",
        ));
    }
    Ok(codes)
}

/// Turn the factor off from the console: a current code is required.
pub async fn disable(
    state: &AppState,
    s: &Session,
    code: &str,
    client: &Client,
) -> ServiceResult<()> {
    let now = state.now_ms();
    let secret = state
        .store
        .admin_totp_secret(s.user_id)
        .await?
        .ok_or_else(|| ServiceError::invalid("no_second_factor", "no second factor is on"))?;
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if totp::matching_step(&secret, &code, now.div_euclid(1000)).is_none() {
        return Err(ServiceError::invalid("bad_code", "wrong code"));
    }
    state
        .store
        .disable_admin_totp(&s.user_name, audit(s, "2fa.disable", client), now)
        .await?;
    Ok(())
}

/// `kami admin user reset-2fa NAME`: the factor off without a code (lost phone); `404` when
/// there is no such user.
pub async fn reset_from_cli(store: &kami_store::Store, name: &str, now: i64) -> ServiceResult<()> {
    let e = AuditEntry {
        actor: "cli".into(),
        action: "2fa.reset".into(),
        target: format!("user:{name}"),
        ip: None,
        before: None,
        after: None,
    };
    if store.disable_admin_totp(name, e, now).await? {
        Ok(())
    } else {
        Err(ServiceError::not_found(
            "user_not_found",
            format!("no admin user named {name:?}"),
        ))
    }
}
