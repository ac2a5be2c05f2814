//! A Mac's unlock PIN: six digits from a CSPRNG, sealed at rest with the shared secret key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::internal::adapter::UNLOCK_PIN_PURPOSE;
use mdm_runtime::crypto::{CryptoError, SecretBox, random_bytes};

/// A uniformly random 6-digit PIN.
pub fn generate() -> String {
    // Rejection sampling keeps every PIN equally likely.
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let value = u32::from_le_bytes(random_bytes::<4>());
        if value < LIMIT {
            return format!("{:06}", value % 1_000_000);
        }
    }
}

/// Whether `pin` is six digits.
pub fn is_valid(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}

pub fn seal(secrets: &SecretBox, pin: &str) -> Result<Vec<u8>, CryptoError> {
    secrets.seal(UNLOCK_PIN_PURPOSE, pin.as_bytes())
}

pub fn open(secrets: &SecretBox, sealed: &[u8]) -> Option<String> {
    secrets
        .open(UNLOCK_PIN_PURPOSE, sealed)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The sealed PIN as the adapter receives it (base64).
pub fn for_adapter(sealed: &[u8]) -> String {
    STANDARD.encode(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_six_digits_and_vary() {
        let pins: std::collections::HashSet<String> = (0..200).map(|_| generate()).collect();
        assert!(pins.iter().all(|p| is_valid(p)));
        assert!(pins.len() > 190, "random, not repeated");
        assert!(!is_valid("12345") && !is_valid("12345a") && !is_valid("1234567"));
    }

    #[test]
    fn sealed_pins_open_only_with_their_key() {
        let key = SecretBox::new(random_bytes());
        let sealed = seal(&key, "123456").unwrap();
        assert_eq!(open(&key, &sealed).as_deref(), Some("123456"));
        assert_eq!(open(&SecretBox::new(random_bytes()), &sealed), None);
    }
}
