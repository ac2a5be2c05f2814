//! Messages the dispatch service receives.

use chrono::{DateTime, Utc};
use mdm_domain::{ActionId, ActionState, DeviceId, TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::service::Service;

/// From an adapter: an action moved on (`sent`: queued for the device; `active`:
/// delivered; then an outcome).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    pub action_id: ActionId,
    pub device_id: DeviceId,
    pub state: ActionState,
    /// The device's or vendor's error code (an OMA-DM status, an Apple error code, a
    /// google.rpc status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// From inventory: an admin deleted a device; dispatch issues the retire that removes
/// company data at its next check-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRequested {
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    /// Who asked (a token id or `system`), for the audit trail.
    pub requested_by: String,
    pub at: DateTime<Utc>,
}

/// From inventory: records removed without the device's help (clean-up rules); their
/// open actions end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesRemoved {
    pub tenant_id: TenantId,
    pub device_ids: Vec<DeviceId>,
    pub at: DateTime<Utc>,
}

/// From enrollment: a user lost their licence; every device of theirs is unenrolled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnenrollUser {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
}

crate::message!(ActionReport, "dispatch.action_report", Service::Dispatch);
crate::message!(
    DeleteRequested,
    "dispatch.delete_requested",
    Service::Dispatch
);
crate::message!(
    DevicesRemoved,
    "dispatch.devices_removed",
    Service::Dispatch
);
crate::message!(UnenrollUser, "dispatch.unenroll_user", Service::Dispatch);

/// From any service: something changed through the API. Dispatch keeps the tenant's
/// audit trail (`GET /api/v1/auditEvents`); every service sends its events through its
/// outbox, in the transaction of the change itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Also the message key's base: one event per id.
    pub id: uuid::Uuid,
    pub tenant_id: Option<TenantId>,
    /// The token id of the caller, or `system`.
    pub actor: String,
    pub actor_role: Option<String>,
    /// What happened, `<noun>.<verb>`: `authority.changed`, `device.wipe`, `user.deleted`.
    pub activity: String,
    /// The kind and id of the object acted on.
    pub target_type: String,
    pub target_id: String,
    #[serde(default)]
    pub device_id: Option<DeviceId>,
    /// `success` or `refused`, with the refusal code in `detail`.
    pub outcome: String,
    #[serde(default)]
    pub detail: serde_json::Value,
    /// The caller's address.
    #[serde(default)]
    pub remote_addr: Option<String>,
    pub at: DateTime<Utc>,
}

crate::message!(AuditEvent, "dispatch.audit_event", Service::Dispatch);

/// `GET /internal/v1/dispatch/devices/{deviceId}/summary?tenantId=`: the device's actions
/// and its current unlock PIN, for inventory's device view.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceActionsSummary {
    pub device_action_results: Vec<crate::public::DeviceActionResult>,
    #[serde(default)]
    pub lock_pin: Option<crate::public::LockPin>,
}
