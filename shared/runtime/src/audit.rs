//! Audit events: every service records what changed through its API, in the transaction
//! of the change, by sending an [`AuditEvent`] to the service that keeps the trail.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use mdm_api::internal::dispatch::AuditEvent;
use mdm_domain::{DeviceId, TenantId};
use mdm_store::{DbConnection, StoreError};

use crate::auth::Caller;
use crate::outbox::Outbox;

/// An event done by `caller`, successful unless changed with [`refused`].
pub fn event(
    caller: &Caller,
    now: DateTime<Utc>,
    activity: &str,
    target_type: &str,
    target_id: impl Display,
) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        tenant_id: caller.tenant_opt(),
        actor: caller.token_id.to_string(),
        actor_role: Some(caller.role.to_string()),
        activity: activity.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.to_string(),
        device_id: None,
        outcome: "success".to_owned(),
        detail: serde_json::Value::Null,
        remote_addr: caller.remote_addr.clone(),
        at: now,
    }
}

/// An event the server did on its own (a clean-up rule, a licence removal's effects).
pub fn system_event(
    tenant: TenantId,
    now: DateTime<Utc>,
    activity: &str,
    target_type: &str,
    target_id: impl Display,
) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        tenant_id: Some(tenant),
        actor: "system".to_owned(),
        actor_role: None,
        activity: activity.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.to_string(),
        device_id: None,
        outcome: "success".to_owned(),
        detail: serde_json::Value::Null,
        remote_addr: None,
        at: now,
    }
}

/// Marks the event as refused with `code`.
pub fn refused(mut event: AuditEvent, code: &str) -> AuditEvent {
    event.outcome = "refused".to_owned();
    event.detail = serde_json::json!({ "code": code });
    event
}

/// Names the device the event is about.
pub fn on_device(mut event: AuditEvent, device: DeviceId) -> AuditEvent {
    event.device_id = Some(device);
    event
}

/// Adds details (never secrets).
pub fn with_detail(mut event: AuditEvent, detail: serde_json::Value) -> AuditEvent {
    event.detail = detail;
    event
}

/// Sends the event in the transaction of `conn`.
pub fn record(
    outbox: &Outbox,
    conn: &mut DbConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    outbox.enqueue(conn, &format!("audit:{}", event.id), None, event)
}
