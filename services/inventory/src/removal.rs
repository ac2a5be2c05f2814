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
/// memberships, and forgets them in Autopilot registrations. Answers the devices this
/// transaction removed: the rows come from the `DELETE` itself, so when two transactions
/// remove one device at once (a clean-up whose lease changed hands, or a completed delete
/// meeting a clean-up) only the one whose delete took the row counts it and tells the
/// others; the second finds nothing to do.
pub fn remove_records(
    conn: &mut DbConnection,
    ids: &[DeviceId],
) -> Result<Vec<DeviceRow>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        rows.extend(
            diesel::delete(inv_devices::table.filter(inv_devices::id.eq_any(chunk)))
                .returning(inv_devices::all_columns)
                .get_results::<DeviceRow>(conn)?,
        );
    }
    let found: Vec<DeviceId> = rows.iter().map(|r| r.id).collect();
    groups::remove_devices_everywhere(conn, &found)?;
    directory::remove_for_devices(conn, &found)?;
    autopilot::unlink(conn, &found)?;
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

#[cfg(test)]
mod tests {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    use diesel::{Connection, PgConnection};
    use mdm_domain::{EnrollmentId, ManagementState, Ownership, Platform};
    use mdm_store::testing::{TestBackend, TestDatabase};

    use super::*;

    fn device(id: DeviceId) -> DeviceRow {
        DeviceRow {
            id,
            tenant_id: TenantId::new(),
            enrollment_id: EnrollmentId::new(),
            platform: Platform::Ios,
            os_version: None,
            ownership: Ownership::Company,
            management_mode: None,
            management_state: ManagementState::Managed,
            user_id: None,
            user_principal_name: None,
            device_name: None,
            model: None,
            manufacturer: None,
            serial_number: None,
            imei: None,
            is_passcode_present: None,
            is_supervised: None,
            is_encrypted: None,
            directory_joined: false,
            identity_certificate_expires_at: None,
            enrolled_at: 0,
            last_sync_at: None,
            state_changed_at: 0,
            updated_at: 0,
        }
    }

    /// Two transactions remove one device at once on PostgreSQL (SQLite has one writer):
    /// the second reads the row before the first commits, then waits on its lock. Only
    /// the first may count the removal (and tell the device's adapter).
    #[tokio::test]
    async fn a_device_removed_by_two_transactions_at_once_is_removed_by_one() {
        let Some(db) = TestDatabase::new(TestBackend::Postgres).await else {
            return;
        };
        let url = db.url().to_owned();
        let id = DeviceId::new();
        let (first, second) = tokio::task::spawn_blocking(move || {
            let connect = |url: &str| {
                DbConnection::Pg(
                    PgConnection::establish(url).unwrap_or_else(|e| panic!("connect: {e}")),
                )
            };
            let mut conn = connect(&url);
            diesel::insert_into(inv_devices::table)
                .values(&device(id))
                .execute(&mut conn)
                .unwrap();
            let mut watcher = PgConnection::establish(&url).unwrap();
            conn.transaction(|c| {
                let first = remove_records(c, &[id])?;
                let other = url.clone();
                let second = std::thread::spawn(move || {
                    connect(&other)
                        .transaction(|c| remove_records(c, &[id]))
                        .unwrap()
                });
                // Commit only once the second transaction waits for this one's row lock.
                let waiting = "SELECT count(*) FROM pg_stat_activity \
                               WHERE datname = current_database() AND wait_event_type = 'Lock'";
                while diesel::select(sql::<BigInt>(&format!("({waiting})")))
                    .get_result::<i64>(&mut watcher)?
                    == 0
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Ok::<_, StoreError>((first, second))
            })
            .map(|(first, second)| (first, second.join().unwrap()))
            .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(first.len(), 1, "the first transaction removed the device");
        assert!(second.is_empty(), "the second found nothing left to remove");
        drop(db);
    }
}
