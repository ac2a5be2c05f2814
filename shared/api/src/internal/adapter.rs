//! Messages every platform adapter receives. The destination is the adapter of the
//! device's platform family.

use chrono::{DateTime, Utc};
use mdm_domain::{ActionId, ActionKind, DeviceId, PlatformFamily, TenantId};
use serde::{Deserialize, Serialize};

use crate::internal::Message;
use crate::service::Service;

/// The adapter that owns a platform family's transport.
pub const fn adapter_of(family: PlatformFamily) -> Service {
    match family {
        PlatformFamily::Apple => Service::Apple,
        PlatformFamily::Android => Service::Android,
        PlatformFamily::Windows => Service::Windows,
    }
}

/// From dispatch: carry out an action on a device. The adapter queues it for the device
/// (priority actions first), reports `sent`, turns it into its protocol's commands, pushes,
/// and reports the outcome with [`super::dispatch::ActionReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverAction {
    pub action_id: ActionId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub family: PlatformFamily,
    pub kind: ActionKind,
    #[serde(default)]
    pub params: ActionParams,
    /// Lock and wipe go ahead of everything else queued for the device.
    pub priority: bool,
    /// Not delivered or not answered by then: the adapter reports `expired`.
    pub expires_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
}

/// The parameters of an action, as the admin gave them (and the macOS PIN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionParams {
    /// The lock screen message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// A Mac's 6-digit unlock PIN, sealed with the shared secret key (purpose
    /// [`UNLOCK_PIN_PURPOSE`]), base64: it never sits in an outbox in the clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_unlock_pin: Option<String>,
    #[serde(default)]
    pub keep_enrollment_data: bool,
    #[serde(default)]
    pub keep_user_data: bool,
    #[serde(default)]
    pub persist_esim_data_plan: bool,
    #[serde(default)]
    pub use_protected_wipe: bool,
}

/// The `SecretBox` purpose of sealed unlock PINs.
pub const UNLOCK_PIN_PURPOSE: &str = "macos-unlock-pin";

/// From dispatch: cancel an action the device has not received yet. The adapter answers
/// with an `ActionReport`: `canceled`, or nothing when it was already delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAction {
    pub action_id: ActionId,
    pub device_id: DeviceId,
    pub family: PlatformFamily,
}

/// From inventory: the device's record is gone (deleted, cleaned up). The adapter stops
/// pushing to it, drops its queue, and answers a later check-in as from a removed device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRemoved {
    pub device_id: DeviceId,
    pub family: PlatformFamily,
    pub at: DateTime<Utc>,
}

impl Message for DeliverAction {
    const KIND: &'static str = "adapter.deliver_action";
    fn destination(&self) -> Service {
        adapter_of(self.family)
    }
}

impl Message for CancelAction {
    const KIND: &'static str = "adapter.cancel_action";
    fn destination(&self) -> Service {
        adapter_of(self.family)
    }
}

impl Message for DeviceRemoved {
    const KIND: &'static str = "adapter.device_removed";
    fn destination(&self) -> Service {
        adapter_of(self.family)
    }
}
