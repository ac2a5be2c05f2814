//! Rows of mdm-inventory's tables.
//!
//! Ids of objects only inventory knows (directory records, Autopilot registrations,
//! groups) are 16-byte UUIDs held as bytes; the service converts them.

use diesel::prelude::*;
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementMode, ManagementState, Ownership, Platform, TenantId, UserId,
};

use crate::schema::{
    inv_autopilot_registrations, inv_cleanup_settings, inv_devices, inv_directory_records,
    inv_group_members, inv_groups,
};

/// A managed device.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_devices)]
pub struct DeviceRow {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub enrollment_id: EnrollmentId,
    pub platform: Platform,
    /// As the device reported it (`17.4.1`, `10.0.22631.2861`).
    pub os_version: Option<String>,
    pub ownership: Ownership,
    pub management_mode: Option<ManagementMode>,
    pub management_state: ManagementState,
    pub user_id: Option<UserId>,
    pub user_principal_name: Option<String>,
    pub device_name: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub serial_number: Option<String>,
    pub imei: Option<String>,
    pub is_passcode_present: Option<bool>,
    pub is_supervised: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub directory_joined: bool,
    pub identity_certificate_expires_at: Option<i64>,
    pub enrolled_at: i64,
    pub last_sync_at: Option<i64>,
    pub state_changed_at: i64,
    pub updated_at: i64,
}

/// New facts about a device: `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = inv_devices)]
pub struct DeviceFactsChanges {
    pub os_version: Option<String>,
    pub device_name: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub serial_number: Option<String>,
    pub imei: Option<String>,
    pub is_passcode_present: Option<bool>,
    pub is_supervised: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub identity_certificate_expires_at: Option<i64>,
    pub updated_at: i64,
}

/// A device's directory record.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_directory_records)]
pub struct DirectoryRecordRow {
    pub id: Vec<u8>,
    pub tenant_id: TenantId,
    pub device_id: Option<DeviceId>,
    pub user_id: Option<UserId>,
    pub display_name: Option<String>,
    pub platform: Platform,
    pub created_at: i64,
}

/// A tenant's inactivity clean-up rule.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_cleanup_settings)]
pub struct CleanupSettingsRow {
    pub tenant_id: TenantId,
    /// `None`: the rule is off.
    pub inactivity_days: Option<i32>,
    pub updated_at: i64,
}

/// A Windows Autopilot registration.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_autopilot_registrations)]
pub struct AutopilotRow {
    pub id: Vec<u8>,
    pub tenant_id: TenantId,
    pub serial_number: String,
    pub hardware_identifier: String,
    pub group_tag: Option<String>,
    pub device_id: Option<DeviceId>,
    pub created_at: i64,
    /// The registration is pending before this time, registered from then on.
    pub registered_at: i64,
}

/// A device group.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_groups)]
pub struct GroupRow {
    pub id: Vec<u8>,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub created_at: i64,
}

/// A device's membership of a group.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = inv_group_members)]
pub struct GroupMemberRow {
    pub group_id: Vec<u8>,
    pub device_id: DeviceId,
    pub added_at: i64,
}
