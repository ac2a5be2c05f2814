//! Taking devices out of the registry: the delete an admin asks for (through dispatch's
//! retire), and removing records with everything attached to them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::adapter::DeviceRemoved;
use mdm_api::internal::dispatch::DeleteRequested;
use mdm_domain::capability::check;
use mdm_domain::{
    ActionKind, ActionOptions, CallerContext, DeviceId, MdmAuthority, Refusal, RefusalReason,
    TenantId,
};
use mdm_runtime::outbox::Outbox;
use mdm_runtime::{Caller, audit};
use mdm_store::models::inventory::DeviceRow;
use mdm_store::schema::inv_devices;
use mdm_store::{DbConnection, StoreError};

use crate::devices::{self, IDS_PER_QUERY};
use crate::error::{Error, Result};
use crate::{autopilot, directory, groups};

/// An admin's delete: after the capability check (the tenant's `authority`, the caller's
/// role, the device's state), the device goes to `deletePending` and dispatch is asked,
/// in the same transaction, to issue the retire that removes company data at the next
/// check-in; dispatch answers with `ManagementStateChanged { remove_record: true }` once
/// it is done. Answers the device as it now is.
pub fn request_delete(
    conn: &mut DbConnection,
    outbox: &Outbox,
    caller: &Caller,
    authority: MdmAuthority,
    tenant: TenantId,
    id: DeviceId,
    now: DateTime<Utc>,
) -> Result<DeviceRow> {
    let row = devices::get(conn, tenant, id)?;
    let who = CallerContext {
        authority,
        role: caller.role,
        self_service: false,
    };
    check(
        ActionKind::Delete,
        &ActionOptions::default(),
        &devices::capability_context(&row),
        &who,
    )?;
    if !devices::mark_delete_pending(conn, id, now)? {
        // Another delete got there between the read and the update.
        return Err(Error::Capability(Refusal {
            reason: RefusalReason::DeviceRemovalPending,
            detail: format!("Device {id} is waiting to be deleted already."),
        }));
    }
    let message = DeleteRequested {
        tenant_id: tenant,
        device_id: id,
        requested_by: caller.token_id.to_string(),
        at: now,
    };
    outbox.enqueue(
        conn,
        &format!("inventory:delete-requested:{id}:{}", uuid::Uuid::now_v7()),
        Some(&id.to_string()),
        &message,
    )?;
    let event = audit::on_device(
        audit::event(caller, now, "device.delete", "managedDevice", id),
        id,
    );
    audit::record(outbox, conn, &event)?;
    devices::get(conn, tenant, id)
}

/// Deletes the records of these devices with their directory records and group
/// memberships, and forgets them in Autopilot registrations. Answers the devices that
/// were there.
pub fn remove_records(
    conn: &mut DbConnection,
    ids: &[DeviceId],
) -> Result<Vec<DeviceRow>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        rows.extend(
            inv_devices::table
                .filter(inv_devices::id.eq_any(chunk))
                .select(DeviceRow::as_select())
                .load(conn)?,
        );
    }
    let found: Vec<DeviceId> = rows.iter().map(|r| r.id).collect();
    groups::remove_devices_everywhere(conn, &found)?;
    directory::remove_for_devices(conn, &found)?;
    autopilot::unlink(conn, &found)?;
    for chunk in found.chunks(IDS_PER_QUERY) {
        diesel::delete(inv_devices::table.filter(inv_devices::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(rows)
}

/// Tells each removed device's adapter, which stops pushing to it and answers a later
/// check-in as from a removed device.
pub fn tell_adapters(
    conn: &mut DbConnection,
    outbox: &Outbox,
    rows: &[DeviceRow],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for row in rows {
        let message = DeviceRemoved {
            device_id: row.id,
            family: row.platform.family(),
            at: now,
        };
        outbox.enqueue(
            conn,
            &format!(
                "inventory:device-removed:{}:{}",
                row.id,
                uuid::Uuid::now_v7()
            ),
            Some(&row.id.to_string()),
            &message,
        )?;
    }
    Ok(())
}
