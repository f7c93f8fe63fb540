//! The shop's admin users as the seller manages them from the console or the API: the list
//! (no secret in it) and adding a user, whose generated password is shown once. The CLI's
//! `kami admin user create` checks names the same way.

use kami_core::SecretToken;
use kami_store::{Actor, AdminUserSummary, UserChange};

use super::{passwords, ServiceError, ServiceResult};
use crate::state::AppState;

/// Characters of a generated password (from a 256-bit random token's text).
const PASSWORD_CHARS: usize = 20;

/// A user name: 1 to 64 printable characters, trimmed.
pub fn parse_name(name: &str) -> ServiceResult<&str> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_name",
            "a user name is 1 to 64 printable characters",
        ));
    }
    Ok(n)
}

/// Every admin user, by name, with whether their second factor is on and their live sessions.
pub async fn list(state: &AppState) -> ServiceResult<Vec<AdminUserSummary>> {
    let idle_ms = i64::from(state.config.console.idle_minutes) * 60_000;
    Ok(state.store.admin_users(state.now_ms(), idle_ms).await?)
}

/// Add an admin user; returns the generated password (shown once, never stored in clear).
/// `409 user_exists` when the name is taken.
pub async fn add(state: &AppState, name: &str, actor: &Actor) -> ServiceResult<String> {
    let name = parse_name(name)?;
    let password = SecretToken::generate().expose()[..PASSWORD_CHARS].to_owned();
    let hash = passwords::hash(password.clone()).await?;
    let audit = actor.entry(
        "user.create",
        format!("user:{name}"),
        None,
        Some(serde_json::json!({ "name": name })),
    );
    if !state
        .store
        .add_admin_user(name, &hash, audit, state.now_ms())
        .await?
    {
        return Err(ServiceError::Conflict {
            code: "user_exists",
            message: format!("an admin user named {name:?} already exists"),
        });
    }
    tracing::info!(user = %name, actor = %actor.actor, "admin user added");
    Ok(password)
}

/// Who asks to disable or remove a user, as far as the lock-out rule cares.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The console user acting (`None`: an admin token or the CLI).
    pub user: Option<&'a str>,
    /// They confirmed that they are locking themselves out.
    pub confirmed_self: bool,
}

fn user_change(name: &str, verb: &str, c: UserChange) -> ServiceResult<u64> {
    match c {
        UserChange::Done { sessions_ended } => Ok(sessions_ended),
        UserChange::Unchanged => Ok(0),
        UserChange::NotFound => Err(ServiceError::not_found(
            "user_not_found",
            format!("no admin user named {name:?}"),
        )),
        UserChange::LastEnabled => Err(ServiceError::Conflict {
            code: "last_admin",
            message: format!(
                "{name:?} is the last enabled admin user: {verb} it would lock everyone out \
                 of the console; add or enable another user first"
            ),
        }),
    }
}

fn check_self(name: &str, by: Requester<'_>, verb: &str) -> ServiceResult<()> {
    if by.user == Some(name) && !by.confirmed_self {
        return Err(ServiceError::invalid(
            "confirm_self",
            format!(
                "you are {verb} your own user: you will be signed out and cannot sign in again \
                 until another admin enables you; confirm to go on"
            ),
        ));
    }
    Ok(())
}

/// Enable or disable an admin user. Disabling ends all their sessions at once and is refused
/// for the last enabled user (`409 last_admin`), and for oneself without confirmation.
/// Returns how many sessions ended.
pub async fn set_enabled(
    state: &AppState,
    name: &str,
    enabled: bool,
    by: Requester<'_>,
    actor: &Actor,
) -> ServiceResult<u64> {
    if !enabled {
        check_self(name, by, "disabling")?;
    }
    let c = state
        .store
        .set_admin_user_enabled(name, enabled, actor, state.now_ms())
        .await?;
    tracing::info!(user = %name, enabled, actor = %actor.actor, "admin user changed");
    user_change(name, "disabling", c)
}

/// Remove an admin user (their sessions end at once); refused for the last enabled user and
/// for oneself without confirmation. Their audit rows stay.
pub async fn remove(
    state: &AppState,
    name: &str,
    by: Requester<'_>,
    actor: &Actor,
) -> ServiceResult<u64> {
    check_self(name, by, "removing")?;
    let c = state
        .store
        .remove_admin_user(name, actor, state.now_ms())
        .await?;
    tracing::info!(user = %name, actor = %actor.actor, "admin user removed");
    user_change(name, "removing", c)
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names_are_trimmed_printable_and_bounded() {
        assert_eq!(parse_name("  owner ").ok(), Some("owner"));
        assert_eq!(parse_name("店主").ok(), Some("店主"));
        assert!(parse_name("").is_err());
        assert!(parse_name("   ").is_err());
        assert!(parse_name("a\nb").is_err());
        assert!(parse_name(&"x".repeat(65)).is_err());
        assert!(parse_name(&"字".repeat(64)).is_ok());
    }
}
