//! The shop's admin users as the seller manages them from the console or the API: the list
//! (no secret in it) and adding a user, whose generated password is shown once. The CLI's
//! `kami admin user create` checks names the same way.

use kami_core::SecretToken;
use kami_store::{Actor, AdminUserSummary};

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
