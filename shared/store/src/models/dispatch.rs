//! Rows of mdm-dispatch's tables.

use diesel::prelude::*;
use mdm_domain::{ActionId, ActionKind, ActionState, BulkJobId, DeviceId, Platform, TenantId};

use crate::schema::{dsp_actions, dsp_audit_events, dsp_bulk_jobs, dsp_bulk_targets};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dsp_actions, treat_none_as_default_value = false)]
pub struct ActionRow {
    pub id: ActionId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub device_name: Option<String>,
    pub platform: Platform,
    pub kind: ActionKind,
    pub state: ActionState,
    /// `ActionParams` as JSON, without the PIN.
    pub params: String,
    pub priority: bool,
    pub requested_by: String,
    pub self_service: bool,
    pub bulk_job_id: Option<BulkJobId>,
    pub sealed_unlock_pin: Option<Vec<u8>>,
    pub pin_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dsp_bulk_jobs, treat_none_as_default_value = false)]
pub struct BulkJobRow {
    pub id: BulkJobId,
    pub tenant_id: TenantId,
    pub kind: ActionKind,
    pub params: String,
    pub filter: Option<String>,
    pub requested_by: String,
    pub actor_role: Option<String>,
    pub state: String,
    pub total: i32,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dsp_bulk_targets, treat_none_as_default_value = false)]
pub struct BulkTargetRow {
    pub job_id: BulkJobId,
    pub device_id: DeviceId,
    pub outcome: String,
    pub refusal_code: Option<String>,
    pub refusal_detail: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dsp_audit_events, treat_none_as_default_value = false)]
pub struct AuditEventRow {
    pub id: Vec<u8>,
    pub tenant_id: Option<TenantId>,
    pub actor: String,
    pub actor_role: Option<String>,
    pub activity: String,
    pub target_type: String,
    pub target_id: String,
    pub device_id: Option<DeviceId>,
    pub outcome: String,
    pub detail: String,
    pub remote_addr: Option<String>,
    pub at: i64,
}
