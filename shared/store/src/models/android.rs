//! Rows of mdm-android's tables.

use diesel::prelude::*;
use mdm_domain::{
    ActionId, ActionKind, DeviceId, EnrollmentId, ManagementMode, Ownership, TenantId, UserId,
};

use crate::schema::{
    and_actions, and_devices, and_enrollment_tokens, and_enterprises, and_pubsub_receipts,
};

/// A tenant's bound Android Enterprise.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = and_enterprises)]
pub struct EnterpriseRow {
    pub tenant_id: TenantId,
    pub enterprise_name: String,
    pub project_id: Option<String>,
    pub display_name: Option<String>,
    pub pubsub_topic: Option<String>,
    pub notification_types: String,
    pub default_policy: String,
    pub upgraded_at: Option<i64>,
    pub bound_at: i64,
    pub updated_at: i64,
}

/// An enrollment token created through the admin API (its value is not kept).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = and_enrollment_tokens)]
pub struct EnrollmentTokenRow {
    /// A UUID (16 bytes): the token's id in the admin API.
    pub id: Vec<u8>,
    pub name: String,
    pub tenant_id: TenantId,
    pub profile: String,
    pub user_id: Option<UserId>,
    pub policy_name: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// An AMAPI device and the ids this server gave it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = and_devices)]
pub struct DeviceRow {
    pub device_id: DeviceId,
    pub tenant_id: TenantId,
    pub enrollment_id: EnrollmentId,
    pub amapi_name: String,
    pub management_mode: ManagementMode,
    pub ownership: Ownership,
    pub user_id: Option<UserId>,
    pub enrollment_token_name: Option<String>,
    pub state: String,
    pub api_level: Option<i32>,
    pub facts: Option<String>,
    pub facts_hash: Option<String>,
    pub last_report_at: Option<i64>,
    pub seen_at: Option<i64>,
    pub seen_sent_at: Option<i64>,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub enrolled_at: i64,
    pub updated_at: i64,
}

/// An action from dispatch and where it stands with AMAPI.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = and_actions)]
pub struct ActionRow {
    pub action_id: ActionId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub kind: ActionKind,
    pub phase: String,
    pub params: String,
    pub sealed_passcode: Option<Vec<u8>>,
    pub operation_name: Option<String>,
    pub priority: bool,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub attempt_started_at: Option<i64>,
    pub last_error: Option<String>,
    pub expires_at: i64,
    pub requested_at: i64,
    pub issued_at: Option<i64>,
    pub news_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A Pub/Sub message already handled.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = and_pubsub_receipts)]
pub struct PubsubReceiptRow {
    pub message_id: String,
    pub notification_type: String,
    pub outcome: String,
    pub received_at: i64,
}

/// A COMMAND notification whose operation was not recorded yet.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::and_early_operations)]
pub struct EarlyOperationRow {
    pub operation_name: String,
    pub payload: String,
    pub received_at: i64,
}
