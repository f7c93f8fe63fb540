//! The shop's admin users as the seller manages them: who can sign in (listed without any
//! secret) and adding one, with its audit row in the same commit.

use kami_core::Millis;

use crate::audit;
use crate::db::Tx;
use crate::error::Result;
use crate::model::AuditEntry;
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
}

/// `idle_ms`: a session unused this long has ended (`console.idle_minutes`).
fn list(tx: &mut dyn Tx, now: Millis, idle_ms: Millis) -> Result<Vec<AdminUserSummary>> {
    tx.query(
        "SELECT u.name, u.created_at, u.totp_secret IS NOT NULL AS totp, u.locked_until, \
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
        })
    })
    .collect()
}

impl Store {
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
