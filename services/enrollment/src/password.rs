//! Users' enrollment passwords: PBKDF2-HMAC-SHA256 with a random salt, stored as
//! `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64), compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use mdm_runtime::crypto::{constant_time_eq, random_bytes};
use openssl::hash::MessageDigest;
use openssl::pkcs5::pbkdf2_hmac;

const SCHEME: &str = "pbkdf2-sha256";

pub fn hash(password: &str, iterations: u32) -> Result<String, openssl::error::ErrorStack> {
    let salt = random_bytes::<16>();
    let derived = derive(password, &salt, iterations)?;
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(derived)
    ))
}

/// Whether `password` matches `stored`; false for anything malformed.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(expected),
    ) else {
        return false;
    };
    derive(password, &salt, iterations).is_ok_and(|derived| constant_time_eq(&derived, &expected))
}

fn derive(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<[u8; 32], openssl::error::ErrorStack> {
    let mut out = [0u8; 32];
    pbkdf2_hmac(
        password.as_bytes(),
        salt,
        iterations.max(1) as usize,
        MessageDigest::sha256(),
        &mut out,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password() {
        let stored = hash("correct horse", 1000).unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsE", &stored));
        assert!(!verify("correct horse", "pbkdf2-sha256$1000$abc"));
        assert!(!verify("correct horse", "md5$1$x$y"));
        assert_ne!(
            hash("same", 1000).unwrap(),
            hash("same", 1000).unwrap(),
            "salted"
        );
    }
}
