//! argon2id hashing with OWASP parameters, run on the blocking pool and bounded so a burst of logins
//! can neither stall the async runtime nor allocate unbounded memory. Each hash needs 19 MiB of
//! work memory: those buffers are pooled (one per permit) instead of allocated per hash, which kept
//! the allocator from growing a 19 MiB arena per blocking thread.

use std::sync::{LazyLock, Mutex};

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::error::{Error, FieldError, Result};

/// OWASP: m = 19 MiB, t = 2, p = 1.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// The PHC prefix of hashes made with the parameters above.
const PHC_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// At most this many hashes at a time (and so at most this many pooled buffers).
fn permits() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4)
}

static PERMITS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(permits()));
static BUFFERS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Runs argon2id over `password` and `salt` in a pooled work buffer.
fn derive(password: &[u8], salt: &[u8]) -> Result<[u8; OUTPUT_LEN]> {
    let mut blocks =
        BUFFERS.lock().ok().and_then(|mut b| b.pop()).unwrap_or_else(|| vec![Block::default(); M_COST as usize]);
    let mut out = [0u8; OUTPUT_LEN];
    let result = argon2().hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..]);
    if let Ok(mut pool) = BUFFERS.lock() {
        pool.push(blocks);
    }
    result.map_err(|e| Error::internal(anyhow::anyhow!("argon2: {e}")))?;
    Ok(out)
}

fn hash_sync(password: &str) -> Result<String> {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let out = derive(password.as_bytes(), &salt)?;
    Ok(format!("{PHC_PREFIX}{}${}", B64.encode(salt), B64.encode(out)))
}

fn verify_sync(password: &str, phc: &str) -> bool {
    let Some((salt, hash)) = phc.strip_prefix(PHC_PREFIX).and_then(|rest| rest.split_once('$')) else {
        // Other parameters (an older hash): the library's own verification.
        return PasswordHash::new(phc)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
    };
    match (B64.decode(salt), B64.decode(hash)) {
        (Ok(salt), Ok(expected)) => derive(password.as_bytes(), &salt).is_ok_and(|out| out.ct_eq(&expected[..]).into()),
        _ => false,
    }
}

/// A hash of a random password, verified against when the email is unknown so both paths take as long.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_sync("dummy-password-for-timing-1!").unwrap_or_default());

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
        assert!(!verify("x", Some("$argon2id$v=19$m=19456,t=2,p=1$!!$??")).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_by_the_library_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let lib = Argon2::default().hash_password(b"Seguro123!").unwrap().to_string();
        assert!(verify("Seguro123!", Some(&lib)).await.unwrap());
        let ours = hash("Seguro123!").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"Seguro123!", &parsed).is_ok(), "our PHC strings are standard");
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
