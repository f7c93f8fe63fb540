//! Console sessions, server-side: a row per signed-in browser, found by the SHA-256 of the
//! cookie's value (the value itself is never stored). A session ends at its absolute expiry,
//! after `idle_ms` without a request, on logout or when revoked; an ended row is never found
//! again, and is deleted the next time its user signs in.

use kami_core::Millis;

use crate::admin_users::{use_recovery_code, use_totp_step, FactorCheck};
use crate::audit;
use crate::db::{Row, Tx};
use crate::error::Result;
use crate::model::AuditEntry;
use crate::params;
use crate::Store;

/// A session about to be created.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: i64,
    /// The second factor is still to come.
    pub mfa_pending: bool,
    pub expires_at: Millis,
    pub ip: Option<String>,
    pub user_agent: String,
}

/// A live session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub user_name: String,
    pub mfa_pending: bool,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    pub ip: Option<String>,
    pub user_agent: String,
}

/// The second step of a sign-in: a TOTP code's time step or a recovery code's hash.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    Totp { step: i64 },
    Recovery { code_hash: String },
}

/// `last_seen_at` is written at most this often (a console page is not a write each time).
const TOUCH_EVERY_MS: Millis = 15_000;

fn from_row(r: &Row) -> Result<Session> {
    Ok(Session {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        user_name: r.get("name")?,
        mfa_pending: r.get::<i64>("mfa_pending")? != 0,
        created_at: r.get("created_at")?,
        last_seen_at: r.get("last_seen_at")?,
        expires_at: r.get("expires_at")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
    })
}

fn insert(tx: &mut dyn Tx, s: &NewSession, now: Millis) -> Result<()> {
    // The user's ended sessions go now: the table holds live sessions and a few ended ones.
    tx.exec(
        "DELETE FROM admin_sessions WHERE user_id = $1 AND expires_at <= $2",
        params![s.user_id, now],
    )?;
    tx.exec(
        "INSERT INTO admin_sessions (token_hash, user_id, mfa_pending, created_at, \
         last_seen_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
        params![
            s.token_hash.as_str(),
            s.user_id,
            i64::from(s.mfa_pending),
            now,
            s.expires_at,
            s.ip.as_deref(),
            s.user_agent.as_str()
        ],
    )?;
    Ok(())
}

impl Store {
    /// A right password: the failed-attempt count starts again and a session is created;
    /// `audit` (the sign-in, when no second factor follows) is written in the same commit.
    pub async fn create_admin_session(
        &self,
        session: NewSession,
        audit_entry: Option<AuditEntry>,
        now: Millis,
    ) -> Result<()> {
        self.write(move |tx| {
            tx.exec(
                "UPDATE admin_users SET failed_logins = 0 WHERE id = $1",
                params![session.user_id],
            )?;
            insert(tx, &session, now)?;
            if let Some(e) = &audit_entry {
                audit::record(tx, e, now)?;
            }
            Ok(())
        })
        .await
    }

    /// The live session with this token hash (`idle_ms`: idle expiry).
    pub async fn admin_session(
        &self,
        token_hash: &str,
        now: Millis,
        idle_ms: Millis,
    ) -> Result<Option<Session>> {
        let hash = token_hash.to_owned();
        self.read(move |tx| {
            tx.query_opt(
                "SELECT s.id, s.user_id, u.name, s.mfa_pending, s.created_at, s.last_seen_at, \
                 s.expires_at, s.ip, s.user_agent FROM admin_sessions s \
                 JOIN admin_users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $2 - $3 \
                 AND u.disabled_at IS NULL",
                params![hash.as_str(), now, idle_ms],
            )?
            .map(|r| from_row(&r))
            .transpose()
        })
        .await
    }

    /// The session was used now: its idle expiry moves (written at most every 15 s).
    pub async fn touch_admin_session(&self, s: &Session, now: Millis) -> Result<()> {
        if now - s.last_seen_at < TOUCH_EVERY_MS {
            return Ok(());
        }
        let id = s.id;
        self.write(move |tx| {
            tx.exec(
                "UPDATE admin_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
                params![id, now],
            )
            .map(|_| ())
        })
        .await
    }

    /// The user's live sessions, newest first.
    pub async fn admin_sessions(
        &self,
        user_id: i64,
        now: Millis,
        idle_ms: Millis,
    ) -> Result<Vec<Session>> {
        self.read(move |tx| {
            tx.query(
                "SELECT s.id, s.user_id, u.name, s.mfa_pending, s.created_at, s.last_seen_at, \
                 s.expires_at, s.ip, s.user_agent FROM admin_sessions s \
                 JOIN admin_users u ON u.id = s.user_id \
                 WHERE s.user_id = $1 AND s.expires_at > $2 AND s.last_seen_at > $2 - $3 \
                 AND s.mfa_pending = 0 ORDER BY s.created_at DESC, s.id DESC LIMIT 100",
                params![user_id, now, idle_ms],
            )?
            .iter()
            .map(from_row)
            .collect()
        })
        .await
    }

    /// The second factor of a pending sign-in: the code is used up (a TOTP step or a recovery
    /// code, once), the session becomes a full one under `new_token_hash` (a fresh id: the
    /// one known before the second factor is worth nothing after it), with its absolute
    /// expiry `expires_at`, audited — one commit. Anything refused changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_admin_sign_in(
        &self,
        session_id: i64,
        user_id: i64,
        factor: SecondFactor,
        new_token_hash: String,
        expires_at: Millis,
        audit_entries: Vec<AuditEntry>,
        now: Millis,
    ) -> Result<FactorCheck> {
        self.write(move |tx| {
            let check = match &factor {
                SecondFactor::Totp { step } => use_totp_step(tx, user_id, *step)?,
                SecondFactor::Recovery { code_hash } => {
                    use_recovery_code(tx, user_id, code_hash, now)?
                }
            };
            if check != FactorCheck::Accepted {
                return Ok(check);
            }
            let n = tx.exec(
                "UPDATE admin_sessions SET token_hash = $3, mfa_pending = 0, last_seen_at = $4, \
                 expires_at = $5 WHERE id = $1 AND user_id = $2 AND mfa_pending = 1",
                params![
                    session_id,
                    user_id,
                    new_token_hash.as_str(),
                    now,
                    expires_at
                ],
            )?;
            if n != 1 {
                // Another request finished this sign-in first: roll the code's use back.
                return Err(crate::StoreError::InvalidStatus(
                    "this sign-in is no longer waiting for a code".into(),
                ));
            }
            for e in &audit_entries {
                audit::record(tx, e, now)?;
            }
            Ok(FactorCheck::Accepted)
        })
        .await
    }

    /// End one of the user's sessions (logout, or revoked from the security page), audited.
    /// False when it was not the user's or had ended.
    pub async fn end_admin_session(
        &self,
        user_id: i64,
        session_id: i64,
        entry: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        self.write(move |tx| {
            let n = tx.exec(
                "DELETE FROM admin_sessions WHERE id = $1 AND user_id = $2",
                params![session_id, user_id],
            )?;
            if n == 1 {
                audit::record(tx, &entry, now)?;
            }
            Ok(n == 1)
        })
        .await
    }

    /// End every session of the user but `keep`, audited; returns how many ended.
    pub async fn end_other_admin_sessions(
        &self,
        user_id: i64,
        keep: i64,
        entry: AuditEntry,
        now: Millis,
    ) -> Result<u64> {
        self.write(move |tx| {
            let n = tx.exec(
                "DELETE FROM admin_sessions WHERE user_id = $1 AND id <> $2",
                params![user_id, keep],
            )?;
            audit::record(tx, &entry, now)?;
            Ok(n)
        })
        .await
    }
}
