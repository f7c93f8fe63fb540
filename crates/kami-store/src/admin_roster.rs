//! The shop's admin users as the seller manages them: who can sign in (listed without any
//! secret) and adding one, with its audit row in the same commit.

use kami_core::Millis;

use crate::audit;
use crate::db::Tx;
use crate::error::Result;
use crate::model::{Actor, AuditEntry};
use crate::{params, Store};

/// An admin user as the users page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserSummary {
    pub name: String,
    pub created_at: Millis,
    pub totp_enabled: bool,
    /// Sign-ins are refused until then (0: not locked).
    pub locked_until: Millis,
    /// Sessions that have not ended (signed in on some device).
    pub live_sessions: i64,
    /// Can sign in (not disabled by an admin).
    pub enabled: bool,
}

/// What a change to an admin user did, or why it did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// Done; this many of the user's sessions ended with it.
    Done {
        sessions_ended: u64,
    },
    /// The user already was so (nothing written, nothing audited).
    Unchanged,
    NotFound,
    /// The user is the last enabled one: the console would be locked for everyone.
    LastEnabled,
}

/// `idle_ms`: a session unused this long has ended (`console.idle_minutes`).
fn list(tx: &mut dyn Tx, now: Millis, idle_ms: Millis) -> Result<Vec<AdminUserSummary>> {
    tx.query(
        "SELECT u.name, u.created_at, u.totp_secret IS NOT NULL AS totp, u.locked_until, \
           u.disabled_at, \
           (SELECT COUNT(*) FROM admin_sessions s WHERE s.user_id = u.id AND s.mfa_pending = 0 \
              AND s.expires_at > $1 AND s.last_seen_at > $2) AS live \
         FROM admin_users u ORDER BY u.name",
        params![now, now - idle_ms],
    )?
    .iter()
    .map(|r| {
        Ok(AdminUserSummary {
            name: r.get("name")?,
            created_at: r.get("created_at")?,
            totp_enabled: r.get("totp")?,
            locked_until: r.get("locked_until")?,
            live_sessions: r.get("live")?,
            enabled: r.get::<Option<i64>>("disabled_at")?.is_none(),
        })
    })
    .collect()
}

/// The enabled users, locked (PostgreSQL: row locks, so two admins disabling each other at
/// once are serialised and one of them is refused).
fn enabled_users(tx: &mut dyn Tx) -> Result<Vec<(i64, String)>> {
    tx.query(
        "SELECT id, name FROM admin_users WHERE disabled_at IS NULL ORDER BY id FOR UPDATE",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.get("id")?, r.get("name")?)))
    .collect()
}

/// The user's id and whether it is disabled, locked.
fn lock_user(tx: &mut dyn Tx, name: &str) -> Result<Option<(i64, bool)>> {
    tx.query_opt(
        "SELECT id, disabled_at FROM admin_users WHERE name = $1 FOR UPDATE",
        params![name],
    )?
    .map(|r| Ok((r.get("id")?, r.get::<Option<i64>>("disabled_at")?.is_some())))
    .transpose()
}

/// Disabling or removing `name` would leave no enabled user.
fn is_last_enabled(tx: &mut dyn Tx, name: &str) -> Result<bool> {
    let enabled = enabled_users(tx)?;
    Ok(enabled.len() == 1 && enabled.iter().all(|(_, n)| n == name))
}

fn set_enabled(
    tx: &mut dyn Tx,
    name: &str,
    enabled: bool,
    actor: &Actor,
    now: Millis,
) -> Result<UserChange> {
    if !enabled && is_last_enabled(tx, name)? {
        return Ok(UserChange::LastEnabled);
    }
    let Some((id, disabled)) = lock_user(tx, name)? else {
        return Ok(UserChange::NotFound);
    };
    if disabled != enabled {
        return Ok(UserChange::Unchanged);
    }
    let mut ended = 0;
    if enabled {
        tx.exec(
            "UPDATE admin_users SET disabled_at = NULL, failed_logins = 0, locked_until = 0 \
             WHERE id = $1",
            params![id],
        )?;
    } else {
        tx.exec(
            "UPDATE admin_users SET disabled_at = $2 WHERE id = $1",
            params![id, now],
        )?;
        // Signed out everywhere, at once.
        ended = tx.exec("DELETE FROM admin_sessions WHERE user_id = $1", params![id])?;
    }
    let entry = actor.entry(
        if enabled {
            "user.enable"
        } else {
            "user.disable"
        },
        format!("user:{name}"),
        Some(serde_json::json!({ "enabled": !enabled })),
        Some(serde_json::json!({ "enabled": enabled, "sessions_ended": ended })),
    );
    audit::record(tx, &entry, now)?;
    Ok(UserChange::Done {
        sessions_ended: ended,
    })
}

fn remove(tx: &mut dyn Tx, name: &str, actor: &Actor, now: Millis) -> Result<UserChange> {
    if is_last_enabled(tx, name)? {
        return Ok(UserChange::LastEnabled);
    }
    let Some((id, disabled)) = lock_user(tx, name)? else {
        return Ok(UserChange::NotFound);
    };
    let totp = tx.query_one(
        "SELECT totp_secret IS NOT NULL AS totp, created_at FROM admin_users WHERE id = $1",
        params![id],
    )?;
    let (totp, created_at): (bool, i64) = (totp.get("totp")?, totp.get("created_at")?);
    let ended = tx.exec("DELETE FROM admin_sessions WHERE user_id = $1", params![id])?;
    tx.exec(
        "DELETE FROM admin_recovery_codes WHERE user_id = $1",
        params![id],
    )?;
    tx.exec("DELETE FROM admin_users WHERE id = $1", params![id])?;
    let entry = actor.entry(
        "user.remove",
        format!("user:{name}"),
        Some(serde_json::json!({
            "name": name,
            "enabled": !disabled,
            "totp_enabled": totp,
            "created_at": created_at,
        })),
        Some(serde_json::json!({ "sessions_ended": ended })),
    );
    audit::record(tx, &entry, now)?;
    Ok(UserChange::Done {
        sessions_ended: ended,
    })
}

impl Store {
    /// Enable or disable an admin user, audited. Disabling ends every session of theirs in
    /// the same commit and is refused for the last enabled user.
    pub async fn set_admin_user_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &Actor,
        now: Millis,
    ) -> Result<UserChange> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| set_enabled(tx, &name, enabled, &actor, now))
            .await
    }

    /// Remove an admin user (sessions and recovery codes with it), audited; refused for the
    /// last enabled user. Their audit rows stay.
    pub async fn remove_admin_user(
        &self,
        name: &str,
        actor: &Actor,
        now: Millis,
    ) -> Result<UserChange> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.write(move |tx| remove(tx, &name, &actor, now)).await
    }

    /// Every admin user, by name; sessions unused for `idle_ms` count as ended.
    pub async fn admin_users(&self, now: Millis, idle_ms: Millis) -> Result<Vec<AdminUserSummary>> {
        self.read(move |tx| list(tx, now, idle_ms)).await
    }

    /// Add an admin user with this password hash and its audit row; false (nothing written)
    /// when the name is taken.
    pub async fn add_admin_user(
        &self,
        name: &str,
        password_hash: &str,
        audit: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |tx| {
            let added = tx.exec(
                "INSERT INTO admin_users (name, password_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), hash.as_str(), now],
            )? == 1;
            if added {
                audit::record(tx, &audit, now)?;
            }
            Ok(added)
        })
        .await
    }
}
