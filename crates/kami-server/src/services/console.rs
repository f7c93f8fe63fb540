//! Signing in to the seller console and its sessions: the password check (argon2id within
//! the per-client and global hashing limits, a dummy hash for unknown names, the per-user
//! lock after repeated failures), the second step when a TOTP factor is on, session lookup
//! with idle and absolute expiry, logout and revocation. Every outcome that matters is an
//! audit row.

use std::net::IpAddr;

use kami_core::SecretToken;
use kami_store::{AuditEntry, FactorCheck, LockPolicy, NewSession, SecondFactor, Session};
use serde_json::json;

use super::{passwords, totp, ServiceError, ServiceResult};
use crate::state::AppState;

/// A signed-in-with-password session waits this long for its second factor.
const PENDING_MS: i64 = 5 * 60_000;
/// Longest user name and password looked at (longer: refused before any work).
const MAX_NAME: usize = 64;

/// Where a correct password leads.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the session cookie's value.
    Done(SecretToken),
    /// The code is still to come; this cookie value names the waiting sign-in.
    NeedsCode(SecretToken),
}

/// Who asks, as the audit log and the session list show it.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
}

impl Client {
    fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_canonical().to_string())
    }
}

fn bad_credentials() -> ServiceError {
    ServiceError::invalid("bad_credentials", "wrong user name or password")
}

fn locked(until: i64, now: i64) -> ServiceError {
    let secs = u64::try_from((until - now + 999) / 1000)
        .unwrap_or(1)
        .max(1);
    ServiceError::Limited {
        code: "account_locked",
        message: format!(
            "too many failed sign-ins: this user is locked for {} more minute(s)",
            secs.div_ceil(60)
        ),
        retry_after: secs,
    }
}

fn entry(actor: &str, action: &str, target: String, client: &Client) -> AuditEntry {
    AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        ip: client.ip_text(),
        before: None,
        after: None,
    }
}

fn policy(state: &AppState) -> LockPolicy {
    LockPolicy {
        max_failures: i64::from(state.config.console.failed_logins_before_lock),
        lock_ms: state.config.console.lock_ms(),
    }
}

/// Hash `token` the way sessions are stored.
pub fn session_hash(token: &str) -> String {
    SecretToken::from_presented(token).hash()
}

/// Check a user name and password.
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: String,
    client: &Client,
) -> ServiceResult<SignIn> {
    let now = state.now_ms();
    if username.is_empty()
        || username.chars().count() > MAX_NAME
        || password.is_empty()
        || password.chars().count() > passwords::MAX_LEN
    {
        return Err(bad_credentials());
    }
    let _slot = state
        .limits
        .hash_slot(client.ip, now)
        .map_err(|r| ServiceError::Limited {
            code: "rate_limited",
            message: "too many sign-in attempts from this address; try again later".into(),
            retry_after: r.0,
        })?;
    let user = state.store.admin_user(username).await?;
    if let Some(u) = &user {
        if u.locked_until > now {
            return Err(locked(u.locked_until, now));
        }
    }
    let stored = user.as_ref().map_or_else(
        || passwords::dummy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let ok = {
        let _permit = passwords::permit().await?;
        tokio::task::spawn_blocking(move || passwords::verify_blocking(&password, &stored))
            .await
            .map_err(ServiceError::internal)?
    };
    let target = format!("user:{username}");
    let user = match user {
        Some(u) if ok => u,
        other => {
            let failure = entry("anonymous", "session.login_failed", target, client);
            match other {
                Some(u) => {
                    if let Some(until) = state
                        .store
                        .admin_login_failed(u.id, policy(state), failure, now)
                        .await?
                    {
                        return Err(locked(until, now));
                    }
                }
                None => state.store.record_audit(failure, now).await?,
            }
            return Err(bad_credentials());
        }
    };
    if user.disabled {
        // Said only to whoever knows the password: a disabled name is not revealed to guessers.
        let refused = entry("anonymous", "session.login_disabled", target, client);
        state.store.record_audit(refused, now).await?;
        return Err(ServiceError::invalid(
            "account_disabled",
            "this user is disabled; another admin can enable it on the Users page",
        ));
    }
    let token = SecretToken::generate();
    let pending = user.totp_enabled;
    let session = NewSession {
        token_hash: token.hash(),
        user_id: user.id,
        mfa_pending: pending,
        expires_at: now
            + if pending {
                PENDING_MS
            } else {
                state.config.console.absolute_ms()
            },
        ip: client.ip_text(),
        user_agent: client.user_agent.clone(),
    };
    let audit = (!pending).then(|| {
        entry(
            &format!("user:{}", user.name),
            "session.login",
            target,
            client,
        )
    });
    state
        .store
        .create_admin_session(session, audit, now)
        .await?;
    Ok(if pending {
        SignIn::NeedsCode(token)
    } else {
        SignIn::Done(token)
    })
}

/// The second step of a sign-in: a 6-digit code of the user's authenticator, or one of the
/// recovery codes. Returns the full session's cookie value (a new one).
pub async fn second_factor(
    state: &AppState,
    pending: &Session,
    code: &str,
    client: &Client,
) -> ServiceResult<SecretToken> {
    let now = state.now_ms();
    if !pending.mfa_pending {
        return Err(ServiceError::invalid("not_pending", "already signed in"));
    }
    let _slot = state
        .limits
        .hash_slot(client.ip, now)
        .map_err(|r| ServiceError::Limited {
            code: "rate_limited",
            message: "too many attempts from this address; try again later".into(),
            retry_after: r.0,
        })?;
    let user = state
        .store
        .admin_user(&pending.user_name)
        .await?
        .ok_or_else(bad_credentials)?;
    if user.locked_until > now {
        return Err(locked(user.locked_until, now));
    }
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let actor = format!("user:{}", user.name);
    let target = format!("user:{}", user.name);
    let mut audits = vec![entry(&actor, "session.login", target.clone(), client)];
    let factor = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = state
            .store
            .admin_totp_secret(user.id)
            .await?
            .ok_or_else(|| ServiceError::invalid("no_second_factor", "no second factor is on"))?;
        totp::matching_step(&secret, &code, now.div_euclid(1000))
            .map(|step| SecondFactor::Totp { step })
    } else {
        let normalized = super::recovery::normalize(&code);
        audits.push(entry(&actor, "recovery_code.use", target.clone(), client));
        (!normalized.is_empty()).then(|| SecondFactor::Recovery {
            code_hash: super::recovery::hash(&normalized),
        })
    };
    let check = match factor {
        Some(f) => {
            let token = SecretToken::generate();
            let check = state
                .store
                .complete_admin_sign_in(
                    pending.id,
                    user.id,
                    f,
                    token.hash(),
                    now + state.config.console.absolute_ms(),
                    audits,
                    now,
                )
                .await?;
            if check == FactorCheck::Accepted {
                return Ok(token);
            }
            check
        }
        None => FactorCheck::UnknownCode,
    };
    let failure = AuditEntry {
        after: Some(
            json!({ "reason": if check == FactorCheck::Replayed { "replayed" } else { "wrong" } }),
        ),
        ..entry("anonymous", "session.second_factor_failed", target, client)
    };
    if let Some(until) = state
        .store
        .admin_login_failed(user.id, policy(state), failure, now)
        .await?
    {
        return Err(locked(until, now));
    }
    Err(if check == FactorCheck::Replayed {
        ServiceError::invalid(
            "code_used",
            "this code was used already; wait for the next one",
        )
    } else {
        ServiceError::invalid("bad_code", "wrong code")
    })
}

/// The live session a cookie names (full or waiting for its code); its idle clock restarts.
pub async fn session(state: &AppState, token: &str) -> ServiceResult<Option<Session>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let now = state.now_ms();
    let found = state
        .store
        .admin_session(&session_hash(token), now, state.config.console.idle_ms())
        .await?;
    if let Some(s) = &found {
        state.store.touch_admin_session(s, now).await?;
    }
    Ok(found)
}

/// The user's live, signed-in sessions, newest first.
pub async fn sessions(state: &AppState, of: &Session) -> ServiceResult<Vec<Session>> {
    Ok(state
        .store
        .admin_sessions(of.user_id, state.now_ms(), state.config.console.idle_ms())
        .await?)
}

/// End this session (logout).
pub async fn logout(state: &AppState, s: &Session, client: &Client) -> ServiceResult<()> {
    let actor = format!("user:{}", s.user_name);
    let e = entry(
        &actor,
        "session.logout",
        format!("session:{}", s.id),
        client,
    );
    state
        .store
        .end_admin_session(s.user_id, s.id, e, state.now_ms())
        .await?;
    Ok(())
}

/// End another of the user's sessions; `404` when it is not theirs or has ended.
pub async fn revoke(
    state: &AppState,
    by: &Session,
    session_id: i64,
    client: &Client,
) -> ServiceResult<()> {
    let actor = format!("user:{}", by.user_name);
    let e = entry(
        &actor,
        "session.revoke",
        format!("session:{session_id}"),
        client,
    );
    if state
        .store
        .end_admin_session(by.user_id, session_id, e, state.now_ms())
        .await?
    {
        Ok(())
    } else {
        Err(ServiceError::not_found(
            "session_not_found",
            "no such session",
        ))
    }
}

/// End every session of the user but this one; returns how many ended.
pub async fn revoke_others(state: &AppState, by: &Session, client: &Client) -> ServiceResult<u64> {
    let actor = format!("user:{}", by.user_name);
    let e = AuditEntry {
        after: Some(json!({ "kept": by.id })),
        ..entry(
            &actor,
            "session.revoke_others",
            format!("user:{}", by.user_name),
            client,
        )
    };
    Ok(state
        .store
        .end_other_admin_sessions(by.user_id, by.id, e, state.now_ms())
        .await?)
}
