//! The inventory service's internal API (`/internal/v1/inventory`) and the messages it
//! receives from the adapters and from dispatch.

use chrono::{DateTime, Utc};
use mdm_domain::{
    ActionId, DeviceId, EnrollmentId, ManagementMode, ManagementState, OsVersion, Ownership,
    Platform, TenantId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::service::Service;

/// A managed device as the registry holds it: what dispatch needs for the capability
/// check and what enrollment needs for the device limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub enrollment_id: EnrollmentId,
    pub platform: Platform,
    pub os_version: Option<OsVersion>,
    pub ownership: Ownership,
    pub management_mode: Option<ManagementMode>,
    pub management_state: ManagementState,
    pub user_id: Option<UserId>,
    pub user_principal_name: Option<String>,
    pub is_passcode_present: Option<bool>,
    /// A Windows 10 device joined to the directory (retire is not offered for those).
    pub directory_joined: bool,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub device_name: Option<String>,
    pub serial_number: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
}

/// `POST /devices/lookup`: several devices of one tenant. Devices that do not exist (or
/// belong to another tenant) are left out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesLookup {
    pub tenant_id: TenantId,
    pub device_ids: Vec<DeviceId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesLookupResponse {
    pub devices: Vec<DeviceRecord>,
}

/// `POST /devices/select`: the ids of a tenant's devices that match a filter (bulk actions).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesSelect {
    pub tenant_id: TenantId,
    pub filter: DeviceFilter,
}

/// The list filters of `GET /api/v1/deviceManagement/managedDevices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_type: Option<Ownership>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_state: Option<ManagementState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesSelectResponse {
    pub device_ids: Vec<DeviceId>,
}

/// `POST /users/deviceCounts`: how many device-limit slots each user holds (their
/// directory records), leaving out `exclude` (a device enrolling again).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCounts {
    pub tenant_id: TenantId,
    pub user_ids: Vec<UserId>,
    #[serde(default)]
    pub exclude: Vec<DeviceId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCountsResponse {
    pub counts: Vec<UserDeviceCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDeviceCount {
    pub user_id: UserId,
    pub count: u32,
}

/// What an adapter knows about a device; every field is optional, and an absent field
/// leaves the registry's value as it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<OsVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_passcode_present: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_supervised: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_encrypted: Option<bool>,
    /// When the device's MDM identity certificate expires (for the certificate clean-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_certificate_expires_at: Option<DateTime<Utc>>,
}

/// From an adapter: a device has enrolled (or enrolled again).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEnrolled {
    pub device_id: DeviceId,
    pub tenant_id: TenantId,
    pub enrollment_id: EnrollmentId,
    pub platform: Platform,
    pub ownership: Ownership,
    #[serde(default)]
    pub management_mode: Option<ManagementMode>,
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub directory_joined: bool,
    #[serde(default)]
    pub facts: DeviceFacts,
    pub enrolled_at: DateTime<Utc>,
}

/// From an adapter: new facts about a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFactsReported {
    pub device_id: DeviceId,
    pub facts: DeviceFacts,
    pub at: DateTime<Utc>,
}

/// From an adapter: devices checked in. Adapters collect check-ins in memory and send
/// them in batches, so that a check-in costs no write of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesSeen {
    pub seen: Vec<Seen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    pub device_id: DeviceId,
    pub at: DateTime<Utc>,
}

/// From an adapter: management ended from the device's side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceUnenrolled {
    pub device_id: DeviceId,
    pub reason: UnenrollReason,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnenrollReason {
    /// The user removed management on the device (Apple CheckOut, Windows Alert 1226).
    RemovedOnDevice,
    /// The vendor no longer knows the device (AMAPI 404, APNs Unregistered after a reset).
    Vanished,
    /// The gate refused the device after the vendor had enrolled it (Android).
    Refused,
}

/// From dispatch: an action changed the device's management state. `remove_record`
/// asks inventory to delete the record (a completed delete).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementStateChanged {
    pub device_id: DeviceId,
    pub state: ManagementState,
    #[serde(default)]
    pub action_id: Option<ActionId>,
    #[serde(default)]
    pub remove_record: bool,
    pub at: DateTime<Utc>,
}

crate::message!(
    DeviceEnrolled,
    "inventory.device_enrolled",
    Service::Inventory
);
crate::message!(
    DeviceFactsReported,
    "inventory.device_facts",
    Service::Inventory
);
crate::message!(DevicesSeen, "inventory.devices_seen", Service::Inventory);
crate::message!(
    DeviceUnenrolled,
    "inventory.device_unenrolled",
    Service::Inventory
);
crate::message!(
    ManagementStateChanged,
    "inventory.management_state",
    Service::Inventory
);
