//! Query passwords and admin passwords: argon2id, hashed off the async threads.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use super::ServiceError;

pub const MIN_LEN: usize = 4;
pub const MAX_LEN: usize = 128;

pub fn hash_blocking(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Argon2 takes ~19 MiB and tens of milliseconds per hash: at most this many run at once,
/// so a burst of orders or lookups queues instead of exhausting memory.
const CONCURRENT_HASHES: usize = 4;

fn hashing() -> &'static tokio::sync::Semaphore {
    static SEM: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);
    &SEM
}

/// At most this many wait for a turn; beyond, `429` at once (each client has at most
/// `risk.password_hashes_at_once_per_ip` running or waiting, so this takes a crowd of
/// addresses).
const MAX_WAITING: usize = 64;

/// Wait for a turn to hash (order creation, lookups); `429 rate_limited` when too many wait.
pub async fn permit() -> Result<tokio::sync::SemaphorePermit<'static>, ServiceError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WAITING: AtomicUsize = AtomicUsize::new(0);
    if let Ok(p) = hashing().try_acquire() {
        return Ok(p);
    }
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _waiting = Waiting;
    if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
        return Err(ServiceError::Limited {
            code: "rate_limited",
            message: "the server is busy checking passwords; try again in a moment".into(),
            retry_after: 1,
        });
    }
    hashing().acquire().await.map_err(ServiceError::internal)
}

/// A hash of a random password, checked when a lookup has nothing to check, so that "no such
/// order" costs as much time as "wrong password".
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_blocking(&hex::encode(rand::random::<[u8; 16]>())).unwrap_or_default())
}

pub fn verify_blocking(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Validate and hash a buyer's query password.
pub async fn hash(password: String) -> Result<String, ServiceError> {
    let len = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(ServiceError::invalid(
            "invalid_password",
            format!("query password must be {MIN_LEN} to {MAX_LEN} characters"),
        ));
    }
    let _permit = permit().await?;
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(ServiceError::internal)?
        .map_err(ServiceError::internal)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_and_verifies() {
        let h = super::hash_blocking("0").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify_blocking("0", &h));
        assert!(!super::verify_blocking("", &h));
        assert!(!super::verify_blocking("0", "not a hash"));
    }
}
