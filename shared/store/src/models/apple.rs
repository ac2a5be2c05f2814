//! Rows of mdm-apple's tables.

use diesel::prelude::*;
use mdm_domain::{
    ActionId, ActionKind, DeviceId, EnrollmentId, Ownership, Platform, TenantId, UserId,
};

use crate::schema::{
    apl_actions, apl_command_results, apl_commands, apl_device_info, apl_enrollment_profiles,
    apl_enrollments, apl_identities, apl_scep_ra,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apl_enrollment_profiles)]
pub struct EnrollmentProfileRow {
    pub id: EnrollmentId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub ownership: Ownership,
    pub user_id: Option<UserId>,
    pub platform: Option<Platform>,
    /// `scep` or `pkcs12`.
    pub identity: String,
    pub token_hash: Vec<u8>,
    pub challenge_hash: Option<Vec<u8>>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub downloaded_at: Option<i64>,
    pub challenge_used_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apl_identities)]
pub struct IdentityRow {
    pub cert_hash: Vec<u8>,
    pub profile_id: EnrollmentId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub serial: String,
    pub not_after: i64,
    pub issued_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = apl_enrollments, treat_none_as_null = true)]
pub struct EnrollmentRow {
    pub channel_id: String,
    pub device_channel: String,
    pub user_enrollment: bool,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub enrollment_id: EnrollmentId,
    pub profile_id: Option<EnrollmentId>,
    pub platform: Platform,
    pub ownership: Ownership,
    pub user_id: Option<UserId>,
    pub user_principal_name: Option<String>,
    pub state: String,
    pub cert_hash: Option<Vec<u8>>,
    pub cert_subject: Option<String>,
    pub cert_not_after: Option<i64>,
    pub topic: String,
    pub push_token: Option<Vec<u8>>,
    pub push_magic: Option<String>,
    pub push_state: String,
    pub push_error: Option<String>,
    pub sealed_unlock_token: Option<Vec<u8>>,
    pub sealed_bootstrap_token: Option<Vec<u8>>,
    pub user_guid: Option<String>,
    pub user_short_name: Option<String>,
    pub awaiting_configuration: bool,
    pub authenticated_at: i64,
    pub enrolled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub inventory_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = apl_device_info)]
pub struct DeviceInfoRow {
    pub channel_id: String,
    pub udid: Option<String>,
    pub serial_number: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub device_name: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub is_supervised: Option<bool>,
    pub passcode_present: Option<bool>,
    pub profiles: Option<String>,
    pub managed_apps: Option<String>,
    pub installed_app_count: Option<i32>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apl_commands)]
pub struct CommandRow {
    pub id: i64,
    pub command_uuid: String,
    pub channel_id: String,
    pub request_type: String,
    pub payload: Vec<u8>,
    pub priority: bool,
    pub purpose: String,
    pub action_id: Option<ActionId>,
    pub state: String,
    pub attempts: i32,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = apl_commands)]
pub struct NewCommandRow {
    pub command_uuid: String,
    pub channel_id: String,
    pub request_type: String,
    pub payload: Vec<u8>,
    pub priority: bool,
    pub purpose: String,
    pub action_id: Option<ActionId>,
    pub state: String,
    pub attempts: i32,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apl_command_results)]
pub struct CommandResultRow {
    pub command_uuid: String,
    pub channel_id: String,
    pub request_type: String,
    pub action_id: Option<ActionId>,
    pub status: String,
    pub error_chain: Option<String>,
    pub result: Option<Vec<u8>>,
    pub completed_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apl_actions)]
pub struct ActionRow {
    pub action_id: ActionId,
    pub channel_id: String,
    pub device_id: DeviceId,
    pub kind: ActionKind,
    pub state: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apl_scep_ra)]
pub struct ScepRaRow {
    pub name: String,
    pub certificate: Vec<u8>,
    pub sealed_key: Vec<u8>,
    pub created_at: i64,
}
