//! `[dispatch]`: settings of the dispatch service.

use mdm_domain::ActionKind;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long an action may wait for its device before it expires, per kind.
    pub expiry: ExpiryConfig,
    /// Days a Mac's unlock PIN stays shown (unless another action is sent first).
    pub unlock_pin_days: u32,
    /// Seconds tenant policy (the MDM authority) is cached; a change is applied at once.
    pub policy_cache_secs: u64,
    /// Devices checked per step of a bulk action.
    pub bulk_chunk: usize,
    /// Seconds between runs of the expiry and PIN clean-up job.
    pub maintenance_secs: u64,
    /// Hours past its expiry before dispatch ends an action the adapter never reported on.
    pub expiry_grace_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            expiry: ExpiryConfig::default(),
            unlock_pin_days: 30,
            policy_cache_secs: 5,
            bulk_chunk: 2000,
            maintenance_secs: 60,
            expiry_grace_hours: 24,
        }
    }
}

/// `[dispatch.expiry]`: hours per action kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    pub remote_lock_hours: u64,
    pub reset_passcode_hours: u64,
    pub wipe_hours: u64,
    pub retire_hours: u64,
    pub reboot_now_hours: u64,
    pub sync_device_hours: u64,
    pub delete_hours: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            remote_lock_hours: 7 * 24,
            reset_passcode_hours: 7 * 24,
            wipe_hours: 30 * 24,
            retire_hours: 30 * 24,
            reboot_now_hours: 24,
            sync_device_hours: 24,
            delete_hours: 90 * 24,
        }
    }
}

impl ExpiryConfig {
    pub fn hours(&self, kind: ActionKind) -> u64 {
        match kind {
            ActionKind::RemoteLock => self.remote_lock_hours,
            ActionKind::ResetPasscode => self.reset_passcode_hours,
            ActionKind::Wipe => self.wipe_hours,
            ActionKind::Retire => self.retire_hours,
            ActionKind::RebootNow => self.reboot_now_hours,
            ActionKind::SyncDevice => self.sync_device_hours,
            ActionKind::Delete => self.delete_hours,
        }
    }
}
