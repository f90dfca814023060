//! argon2id password hashing shared by submission users and store accounts.
//! Runs on the blocking pool: argon2 is deliberately slow.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::RecordError;

pub(crate) async fn hash(password: &str) -> Result<String, RecordError> {
    if password.is_empty() {
        return Err(RecordError::Invalid("the password is empty".into()));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| RecordError::Hash(e.to_string()))?
}

/// Checks `password` against a stored PHC hash. With no stored hash, a hash
/// is computed anyway so timing does not reveal which names exist.
pub(crate) async fn verify(stored: Option<String>, password: &str) -> Result<bool, RecordError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match stored {
        Some(hash) => PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false),
        None => {
            let _ = hash_now(&password);
            false
        }
    })
    .await
    .map_err(|e| RecordError::Hash(e.to_string()))
}

fn hash_now(password: &str) -> Result<String, RecordError> {
    let hash: Result<PasswordHash, _> = Argon2::default().hash_password(password.as_bytes());
    hash.map(|h| h.to_string()).map_err(|e| RecordError::Hash(e.to_string()))
}

/// Names of users and accounts: 1-255 characters, no spaces or controls.
pub(crate) fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RecordError::Invalid("names are 1-255 characters without spaces".into()));
    }
    Ok(())
}
