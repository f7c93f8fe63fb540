//! Console logins: the password hash and failed-attempt lock of each admin user, and their
//! TOTP second factor (secret sealed at rest, the last accepted time step, recovery codes).
//! Every change writes its audit row in its own transaction.

use kami_core::Millis;

use crate::audit;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::AuditEntry;
use crate::params;
use crate::sealed;
use crate::Store;

/// An admin user as the sign-in needs it (no secret but the password hash).
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    /// Sign-ins are refused until then (0: not locked).
    pub locked_until: Millis,
    /// A confirmed second factor is on.
    pub totp_enabled: bool,
    /// Disabled by an admin: cannot sign in.
    pub disabled: bool,
}

/// How the failed-attempt lock works: `max_failures` in a row lock the user for `lock_ms`.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub max_failures: i64,
    pub lock_ms: Millis,
}

/// What a second-factor code (or recovery code) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorCheck {
    Accepted,
    /// The time step was already used (or an older one was): refused.
    Replayed,
    /// The recovery code is unknown or was used before.
    UnknownCode,
}

fn place(user_id: i64) -> Vec<u8> {
    sealed::place("admin_users.totp_secret", user_id)
}

fn user_from_row(r: &crate::db::Row) -> Result<AdminUser> {
    Ok(AdminUser {
        id: r.get("id")?,
        name: r.get("name")?,
        password_hash: r.get("password_hash")?,
        locked_until: r.get("locked_until")?,
        totp_enabled: r.get::<Option<Vec<u8>>>("totp_secret")?.is_some(),
        disabled: r.get::<Option<i64>>("disabled_at")?.is_some(),
    })
}

fn user_by_name(tx: &mut dyn Tx, name: &str) -> Result<Option<AdminUser>> {
    tx.query_opt(
        "SELECT id, name, password_hash, locked_until, totp_secret, disabled_at FROM admin_users \
         WHERE name = $1",
        params![name],
    )?
    .map(|r| user_from_row(&r))
    .transpose()
}

/// Count a failed attempt (wrong password or code); the one that reaches the policy's limit
/// locks the user and starts the count again. Returns the lock's end when this locked.
fn failed(
    tx: &mut dyn Tx,
    user_id: i64,
    policy: LockPolicy,
    audit_entry: &AuditEntry,
    now: Millis,
) -> Result<Option<Millis>> {
    let row = tx.query_one(
        "UPDATE admin_users SET failed_logins = failed_logins + 1 WHERE id = $1 \
         RETURNING failed_logins",
        params![user_id],
    )?;
    let n: i64 = row.get("failed_logins")?;
    audit::record(tx, audit_entry, now)?;
    if n < policy.max_failures {
        return Ok(None);
    }
    let until = now + policy.lock_ms;
    tx.exec(
        "UPDATE admin_users SET failed_logins = 0, locked_until = $2 WHERE id = $1",
        params![user_id, until],
    )?;
    Ok(Some(until))
}

fn set_steps_and_codes(tx: &mut dyn Tx, user_id: i64, recovery_hashes: &[String]) -> Result<()> {
    tx.exec(
        "DELETE FROM admin_recovery_codes WHERE user_id = $1",
        params![user_id],
    )?;
    for h in recovery_hashes {
        tx.exec(
            "INSERT INTO admin_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
            params![user_id, h.as_str()],
        )?;
    }
    Ok(())
}

/// Accept a TOTP code of time step `step` for the user, once: the step must be later than
/// the last accepted one (compare-and-set), and the failed-attempt count starts again.
pub(crate) fn use_totp_step(tx: &mut dyn Tx, user_id: i64, step: i64) -> Result<FactorCheck> {
    let n = tx.exec(
        "UPDATE admin_users SET totp_last_step = $2, failed_logins = 0 \
         WHERE id = $1 AND totp_last_step < $2",
        params![user_id, step],
    )?;
    Ok(if n == 1 {
        FactorCheck::Accepted
    } else {
        FactorCheck::Replayed
    })
}

/// Use one of the user's recovery codes (by hash), once.
pub(crate) fn use_recovery_code(
    tx: &mut dyn Tx,
    user_id: i64,
    code_hash: &str,
    now: Millis,
) -> Result<FactorCheck> {
    let n = tx.exec(
        "UPDATE admin_recovery_codes SET used_at = $3 \
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        params![user_id, code_hash, now],
    )?;
    if n == 1 {
        tx.exec(
            "UPDATE admin_users SET failed_logins = 0 WHERE id = $1",
            params![user_id],
        )?;
        Ok(FactorCheck::Accepted)
    } else {
        Ok(FactorCheck::UnknownCode)
    }
}

impl Store {
    /// The admin user named `name`, if any.
    pub async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>> {
        let name = name.to_owned();
        self.read(move |tx| user_by_name(tx, &name)).await
    }

    /// A wrong password or code for `user_id`: counted, audited, and the user locked once
    /// the policy's limit is reached (returns the lock's end then).
    pub async fn admin_login_failed(
        &self,
        user_id: i64,
        policy: LockPolicy,
        entry: AuditEntry,
        now: Millis,
    ) -> Result<Option<Millis>> {
        self.write(move |tx| failed(tx, user_id, policy, &entry, now))
            .await
    }

    /// Replace a user's password hash (the demo's login at each start); false: no such user.
    pub async fn set_admin_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |tx| {
            Ok(tx.exec(
                "UPDATE admin_users SET password_hash = $2, failed_logins = 0, locked_until = 0 \
                 WHERE name = $1",
                params![name.as_str(), hash.as_str()],
            )? == 1)
        })
        .await
    }

    /// The user's confirmed TOTP secret, opened (`None`: no second factor).
    pub async fn admin_totp_secret(&self, user_id: i64) -> Result<Option<Vec<u8>>> {
        self.totp_column(user_id, "totp_secret").await
    }

    /// The secret of an enrolment awaiting its first code, opened.
    pub async fn admin_totp_pending(&self, user_id: i64) -> Result<Option<Vec<u8>>> {
        self.totp_column(user_id, "totp_pending").await
    }

    async fn totp_column(&self, user_id: i64, column: &'static str) -> Result<Option<Vec<u8>>> {
        let ring = self.ring()?;
        let sealed: Option<Vec<u8>> = self
            .read(move |tx| {
                let sql = if column == "totp_secret" {
                    "SELECT totp_secret AS s FROM admin_users WHERE id = $1"
                } else {
                    "SELECT totp_pending AS s FROM admin_users WHERE id = $1"
                };
                Ok(tx
                    .query_opt(sql, params![user_id])?
                    .map(|r| r.get::<Option<Vec<u8>>>("s"))
                    .transpose()?
                    .flatten())
            })
            .await?;
        sealed.map(|s| ring.open(&place(user_id), &s)).transpose()
    }

    /// Start (or restart) an enrolment: `secret` is kept sealed until confirmed. Refused when
    /// a second factor is already on.
    pub async fn begin_admin_totp(&self, user_id: i64, secret: Vec<u8>) -> Result<()> {
        let ring = self.ring()?;
        let sealed = ring.seal(&place(user_id), &secret)?;
        let n = self
            .write(move |tx| {
                tx.exec(
                    "UPDATE admin_users SET totp_pending = $2 WHERE id = $1 AND totp_secret IS NULL",
                    params![user_id, sealed.clone()],
                )
            })
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::InvalidStatus(
                "the second factor is already on".into(),
            ))
        }
    }

    /// Confirm the pending enrolment with a code of time step `step`: the factor is on, the
    /// step used, the recovery codes replaced, audited — one commit. False when there was no
    /// pending enrolment (or a factor is on already).
    pub async fn enable_admin_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_hashes: Vec<String>,
        entry: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        self.write(move |tx| {
            let n = tx.exec(
                "UPDATE admin_users SET totp_secret = totp_pending, totp_pending = NULL, \
                 totp_last_step = $2 WHERE id = $1 AND totp_pending IS NOT NULL \
                 AND totp_secret IS NULL",
                params![user_id, step],
            )?;
            if n != 1 {
                return Ok(false);
            }
            set_steps_and_codes(tx, user_id, &recovery_hashes)?;
            audit::record(tx, &entry, now)?;
            Ok(true)
        })
        .await
    }

    /// Turn the user's second factor off (and forget its recovery codes), audited. False
    /// when there is no such user.
    pub async fn disable_admin_totp(
        &self,
        name: &str,
        entry: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |tx| {
            let Some(user) = user_by_name(tx, &name)? else {
                return Ok(false);
            };
            tx.exec(
                "UPDATE admin_users SET totp_secret = NULL, totp_pending = NULL, \
                 totp_last_step = 0, failed_logins = 0, locked_until = 0 WHERE id = $1",
                params![user.id],
            )?;
            set_steps_and_codes(tx, user.id, &[])?;
            audit::record(tx, &entry, now)?;
            Ok(true)
        })
        .await
    }

    /// How many unused recovery codes the user has left.
    pub async fn admin_recovery_codes_left(&self, user_id: i64) -> Result<i64> {
        self.read(move |tx| {
            tx.query_one(
                "SELECT COUNT(*) AS n FROM admin_recovery_codes \
                 WHERE user_id = $1 AND used_at IS NULL",
                params![user_id],
            )?
            .get("n")
        })
        .await
    }
}
