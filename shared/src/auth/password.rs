//! argon2id hashing with OWASP parameters, run on the blocking pool and bounded so a burst of logins
//! can neither stall the async runtime nor allocate unbounded memory (19 MiB per hash).

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, FieldError, Result};

/// At most one hash per core at a time.
static PERMITS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)));

/// A hash of a random password, verified against when the email is unknown so both paths take as long.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_sync("dummy-password-for-timing-1!").unwrap_or_default());

fn argon2() -> Argon2<'static> {
    // OWASP: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_sync(password: &str) -> Result<String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("hash: {e}")))
}

fn verify_sync(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// Hashes a password (argon2id, PHC string).
pub async fn hash(password: &str) -> Result<String> {
    let _permit = PERMITS.acquire().await.map_err(Error::internal)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_sync(&password)).await.map_err(Error::internal)?
}

/// Verifies a password; `None` as the stored hash still spends the same time.
pub async fn verify(password: &str, phc: Option<&str>) -> Result<bool> {
    let _permit = PERMITS.acquire().await.map_err(Error::internal)?;
    let password = password.to_owned();
    let known = phc.is_some();
    let phc = phc.map(str::to_owned);
    let ok = tokio::task::spawn_blocking(move || {
        let target = phc.as_deref().unwrap_or(DUMMY_HASH.as_str());
        verify_sync(&password, target)
    })
    .await
    .map_err(Error::internal)?;
    Ok(ok && known)
}

/// The password rule of API.md: at least 8 characters, one digit and one special character.
pub fn check_strength(password: &str) -> Result<()> {
    let fail = |msg: &str| Err(Error::invalid("weak_password", FieldError::body("password", msg, "value_error")));
    if password.chars().count() < 8 {
        return fail("Password must be at least 8 characters long");
    }
    if password.len() > 256 {
        return fail("Password must be at most 256 bytes long");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return fail("Password must contain at least one digit");
    }
    if !password.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        return fail("Password must contain at least one special character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("Seguro123!").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("Seguro123!", Some(&h)).await.unwrap());
        assert!(!verify("Seguro123?", Some(&h)).await.unwrap());
        assert!(!verify("Seguro123!", None).await.unwrap());
        assert!(!verify("x", Some("not a phc string")).await.unwrap());
    }

    #[test]
    fn strength_rule_needs_length_digit_and_special() {
        assert!(check_strength("Seguro123!").is_ok());
        for weak in ["Se1!", "Seguro!!!", "Seguro123", "seguro 123"] {
            let err = check_strength(weak).unwrap_err();
            assert_eq!(err.code(), "weak_password", "{weak}");
        }
    }
}
