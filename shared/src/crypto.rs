//! AES-256-GCM encryption of secrets and sensitive lead fields at rest.
//! Ciphertexts are strings `enc:v1:<base64(nonce ‖ ciphertext)>`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";

/// Development-only key derivation from `SECRET_KEY` (SPEC §15).
pub fn derive_key(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"corredor-encryption-key:");
    h.update(secret.as_bytes());
    h.finalize().into()
}

#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a fresh nonce cannot fail for inputs of this size.
        let ct = self.0.encrypt(&Nonce::from(nonce), plaintext.as_bytes()).unwrap_or_default();
        let mut buf = nonce.to_vec();
        buf.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(buf))
    }

    /// Decrypts a value written by [`Cipher::encrypt`]; plain strings pass through unchanged.
    pub fn decrypt(&self, value: &str) -> Option<String> {
        let Some(b64) = value.strip_prefix(PREFIX) else {
            return Some(value.to_string());
        };
        let buf = STANDARD.decode(b64).ok()?;
        if buf.len() < 12 {
            return None;
        }
        let (nonce, ct) = buf.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let pt = self.0.decrypt(&Nonce::from(nonce), ct).ok()?;
        String::from_utf8(pt).ok()
    }

    pub fn is_encrypted(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_fresh_nonces() {
        let c = Cipher::new(&derive_key("k"));
        let a = c.encrypt("1500000");
        let b = c.encrypt("1500000");
        assert_ne!(a, b);
        assert!(Cipher::is_encrypted(&a));
        assert_eq!(c.decrypt(&a).as_deref(), Some("1500000"));
        assert_eq!(c.decrypt("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn a_different_key_cannot_decrypt() {
        let a = Cipher::new(&derive_key("a")).encrypt("secret");
        assert_eq!(Cipher::new(&derive_key("b")).decrypt(&a), None);
    }
}
