//! `[enrollment]`: settings of the enrollment service.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Days a device identity certificate issued by the CA stays valid.
    pub device_certificate_days: u32,
    /// PBKDF2-HMAC-SHA256 iterations for users' enrollment passwords.
    pub password_hash_iterations: u32,
    /// Days before the APNs certificate expires from which it is flagged.
    pub push_certificate_warning_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_certificate_days: 365,
            password_hash_iterations: 600_000,
            push_certificate_warning_days: 30,
        }
    }
}
