//! `[inventory]`: settings of the inventory service.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Milliseconds between two runs of each clean-up rule (the inactivity rule with its
    /// `deletePending` fallback, and the certificate rule). One replica runs each rule at
    /// a time.
    pub cleanup_period_ms: u64,
    /// Devices removed per transaction by a clean-up run (a run continues until no device
    /// is left to remove).
    pub cleanup_batch_size: u32,
    /// Seconds an uploaded Autopilot registration stays `pending` before it counts as
    /// `registered`.
    pub autopilot_processing_secs: u64,
    /// Seconds a tenant's policy (its MDM authority) fetched from the enrollment service
    /// is reused.
    pub policy_cache_secs: u64,
    /// Milliseconds to wait for dispatch's action summary when one device is read; past
    /// that, the device is answered without `deviceActionResults` and `lockPin`.
    pub dispatch_summary_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cleanup_period_ms: 3_600_000,
            cleanup_batch_size: 500,
            autopilot_processing_secs: 300,
            policy_cache_secs: 30,
            dispatch_summary_timeout_ms: 2000,
        }
    }
}

impl Config {
    pub fn cleanup_period(&self) -> Duration {
        Duration::from_millis(self.cleanup_period_ms.max(1))
    }

    pub fn dispatch_summary_timeout(&self) -> Duration {
        Duration::from_millis(self.dispatch_summary_timeout_ms.max(1))
    }

    pub fn batch_size(&self) -> i64 {
        i64::from(self.cleanup_batch_size.clamp(1, 10_000))
    }
}
