//! Rows of mdm-windows's tables.

use diesel::prelude::*;
use mdm_domain::{ActionId, DeviceId, EnrollmentId, ManagementMode, Ownership, TenantId, UserId};

use crate::schema::{win_certificates, win_commands, win_enrollments};

/// One enrollment of a Windows device.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = win_enrollments)]
pub struct WinEnrollmentRow {
    pub id: EnrollmentId,
    pub device_id: DeviceId,
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
    pub user_principal_name: Option<String>,
    pub windows_device_id: String,
    pub hw_device_id: Option<String>,
    pub device_type: String,
    pub os_edition: Option<i32>,
    pub os_version: Option<String>,
    pub management_mode: ManagementMode,
    pub ownership: Ownership,
    pub enrollment_type: String,
    pub directory_joined: bool,
    pub auth_method: String,
    pub state: String,
    pub channel_uri: Option<String>,
    pub channel_state: Option<String>,
    pub last_facts: Option<String>,
    pub inventory_at: Option<i64>,
    pub enrolled_at: i64,
    pub ended_at: Option<i64>,
}

/// A client certificate issued to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = win_certificates)]
pub struct WinCertificateRow {
    pub sha256: Vec<u8>,
    pub enrollment_id: EnrollmentId,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
}

/// An OMA-DM command queued for a device; `id` is the CmdID it is sent with.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = win_commands)]
pub struct WinCommandRow {
    pub id: Vec<u8>,
    pub device_id: DeviceId,
    pub action_id: Option<ActionId>,
    pub kind: String,
    pub step: i32,
    pub last_step: bool,
    pub verb: String,
    pub loc_uri: String,
    pub data: Option<String>,
    pub meta_format: Option<String>,
    pub priority: bool,
    pub state: String,
    pub status_code: Option<String>,
    pub sealed_result: Option<Vec<u8>>,
    pub expires_at: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// The device message (`<SessionID>/<MsgID>`) whose answer carried it.
    pub delivered_in: Option<String>,
}
