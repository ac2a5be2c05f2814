//! The tenant's audit trail: events from every service, kept by dispatch.

use diesel::prelude::*;
use mdm_api::internal::dispatch::AuditEvent;
use mdm_api::public::AuditEventView;
use mdm_domain::{DeviceId, TenantId};
use mdm_store::models::dispatch::AuditEventRow;
use mdm_store::schema::dsp_audit_events;
use mdm_store::{DbConnection, from_millis, on_backend, to_millis};

use crate::error::Result;

/// Records events; an event seen before (the same id) is kept once.
pub fn insert(conn: &mut DbConnection, events: &[AuditEvent]) -> Result<()> {
    let rows: Vec<AuditEventRow> = events
        .iter()
        .map(|e| AuditEventRow {
            id: e.id.as_bytes().to_vec(),
            tenant_id: e.tenant_id,
            actor: e.actor.clone(),
            actor_role: e.actor_role.clone(),
            activity: e.activity.clone(),
            target_type: e.target_type.clone(),
            target_id: e.target_id.clone(),
            device_id: e.device_id,
            outcome: e.outcome.clone(),
            detail: e.detail.to_string(),
            remote_addr: e.remote_addr.clone(),
            at: to_millis(e.at),
        })
        .collect();
    for chunk in rows.chunks(500) {
        on_backend!(conn, c => diesel::insert_into(dsp_audit_events::table)
            .values(chunk)
            .on_conflict(dsp_audit_events::id)
            .do_nothing()
            .execute(c))?;
    }
    Ok(())
}

/// A page of the tenant's events, newest first, older than `before`.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    activity: Option<&str>,
    device: Option<DeviceId>,
    before: Option<uuid::Uuid>,
    top: i64,
) -> Result<Vec<AuditEventView>> {
    let mut query = dsp_audit_events::table
        .filter(dsp_audit_events::tenant_id.eq(tenant))
        .order(dsp_audit_events::id.desc())
        .limit(top)
        .select(AuditEventRow::as_select())
        .into_boxed();
    if let Some(activity) = activity {
        query = query.filter(dsp_audit_events::activity.eq(activity.to_owned()));
    }
    if let Some(device) = device {
        query = query.filter(dsp_audit_events::device_id.eq(device));
    }
    if let Some(before) = before {
        query = query.filter(dsp_audit_events::id.lt(before.as_bytes().to_vec()));
    }
    Ok(query
        .load(conn)?
        .into_iter()
        .map(|row| AuditEventView {
            id: uuid::Uuid::from_slice(&row.id).unwrap_or_default(),
            activity: row.activity,
            activity_date_time: from_millis(row.at),
            actor: row.actor,
            actor_role: row.actor_role,
            target_type: row.target_type,
            target_id: row.target_id,
            device_id: row.device_id,
            outcome: row.outcome,
            detail: serde_json::from_str(&row.detail).unwrap_or_default(),
            remote_address: row.remote_addr,
        })
        .collect())
}
