//! Secrets at rest, hashing and randomness, all through openssl.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secret key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("the sealed value is damaged or was sealed with another key")]
    Unsealable,
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// Encrypts secrets for storage with AES-256-GCM under the key from configuration.
///
/// A sealed value is `version ‖ nonce ‖ ciphertext ‖ tag`. The caller names what the
/// value is (`purpose`, authenticated but not stored), so that a sealed value cannot be
/// moved to another column and opened as something else.
#[derive(Clone)]
pub struct SecretBox {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// From the base64 text of configuration.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self::new(key))
    }

    /// A new random key, as base64, for `secret_key`.
    pub fn generate_key() -> String {
        STANDARD.encode(random_bytes::<32>())
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            purpose.as_bytes(),
            plaintext,
            &mut tag,
        )?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len() + TAG_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Unsealable)?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Unsealable);
        }
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(nonce),
            purpose.as_bytes(),
            ciphertext,
            tag,
        )
        .map_err(|_| CryptoError::Unsealable)
    }
}

/// Bytes from openssl's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // openssl's RAND_bytes only fails when the generator cannot be seeded, which makes
    // every secret this server would create unsafe; stopping is the only right answer.
    #[allow(clippy::expect_used)]
    openssl::rand::rand_bytes(&mut bytes).expect("the system random number generator failed");
    bytes
}

/// A random URL-safe text of `N` random bytes (for secrets handed to people).
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let secret_box = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let sealed = secret_box
            .seal("apns-key", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert_ne!(&sealed[13..40], b"-----BEGIN PRIVATE KEY-----");
        assert_eq!(
            secret_box.open("apns-key", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
    }

    #[test]
    fn refuses_the_wrong_key_purpose_or_damage() {
        let a = SecretBox::new(random_bytes());
        let b = SecretBox::new(random_bytes());
        let sealed = a.seal("pin", b"123456").unwrap();
        assert!(b.open("pin", &sealed).is_err());
        assert!(a.open("ca-key", &sealed).is_err());
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(a.open("pin", &damaged).is_err());
        assert!(a.open("pin", &[]).is_err());
        assert!(a.open("pin", &sealed[..10]).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
        assert!(SecretBox::from_base64("not base64!").is_err());
    }

    #[test]
    fn equality_checks_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
