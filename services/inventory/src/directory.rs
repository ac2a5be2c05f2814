//! Directory records: a device's entry in the directory, separate from its management.
//!
//! A device has one from enrollment on. Deleting it leaves management alone but gives
//! its user's device-limit slot back at once (the limit counts directory records). A
//! retire, a factory reset, an unenrollment and the removal of the device take it away
//! too.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::{count_star, not};
use diesel::prelude::*;
use mdm_api::internal::inventory::UserDeviceCount;
use mdm_api::public::DirectoryDevice;
use mdm_domain::{DeviceId, TenantId, UserId};
use mdm_store::models::inventory::{DeviceRow, DirectoryRecordRow};
use mdm_store::schema::inv_directory_records;
use mdm_store::{DbConnection, StoreError, from_millis, to_millis};
use uuid::Uuid;

use crate::devices::IDS_PER_QUERY;
use crate::error::{Error, Result};
use crate::ids::to_uuid;

pub fn to_wire(row: DirectoryRecordRow) -> DirectoryDevice {
    DirectoryDevice {
        id: to_uuid(&row.id),
        display_name: row.display_name,
        operating_system: row.platform,
        user_id: row.user_id,
        managed_device_id: row.device_id,
        registration_date_time: from_millis(row.created_at),
    }
}

/// Gives the device a directory record if it has none; keeps an existing one's user,
/// name and platform current.
pub fn ensure_for_device(
    conn: &mut DbConnection,
    device: &DeviceRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let updated = diesel::update(
        inv_directory_records::table.filter(inv_directory_records::device_id.eq(device.id)),
    )
    .set((
        inv_directory_records::user_id.eq(device.user_id),
        inv_directory_records::display_name.eq(&device.device_name),
        inv_directory_records::platform.eq(device.platform),
    ))
    .execute(conn)?;
    if updated == 0 {
        let row = DirectoryRecordRow {
            id: crate::ids::new_id(),
            tenant_id: device.tenant_id,
            device_id: Some(device.id),
            user_id: device.user_id,
            display_name: device.device_name.clone(),
            platform: device.platform,
            created_at: to_millis(now),
        };
        diesel::insert_into(inv_directory_records::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(())
}

/// Follows a device's new name.
pub fn rename(conn: &mut DbConnection, device: DeviceId, name: &str) -> Result<(), StoreError> {
    diesel::update(
        inv_directory_records::table.filter(inv_directory_records::device_id.eq(device)),
    )
    .set(inv_directory_records::display_name.eq(name))
    .execute(conn)?;
    Ok(())
}

/// Removes the directory records of these devices; answers how many there were.
pub fn remove_for_devices(
    conn: &mut DbConnection,
    devices: &[DeviceId],
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for chunk in devices.chunks(IDS_PER_QUERY) {
        removed += diesel::delete(
            inv_directory_records::table.filter(inv_directory_records::device_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}

/// Deletes one record of the tenant; answers it.
pub fn delete(conn: &mut DbConnection, tenant: TenantId, id: Uuid) -> Result<DirectoryRecordRow> {
    let row = inv_directory_records::table
        .find(id.as_bytes().to_vec())
        .filter(inv_directory_records::tenant_id.eq(tenant))
        .select(DirectoryRecordRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("directory device"))?;
    diesel::delete(inv_directory_records::table.find(&row.id)).execute(conn)?;
    Ok(row)
}

/// A page of the tenant's records in id order, optionally of one user.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    user: Option<UserId>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DirectoryRecordRow>> {
    let mut query = inv_directory_records::table
        .filter(inv_directory_records::tenant_id.eq(tenant))
        .select(DirectoryRecordRow::as_select())
        .order(inv_directory_records::id)
        .limit(limit)
        .into_boxed();
    if let Some(user) = user {
        query = query.filter(inv_directory_records::user_id.eq(user));
    }
    if let Some(after) = after {
        query = query.filter(inv_directory_records::id.gt(after.as_bytes().to_vec()));
    }
    Ok(query.load(conn)?)
}

/// The device-limit slots each user holds: their directory records, leaving out those of
/// `exclude` (a device enrolling again keeps its own slot).
pub fn slots(
    conn: &mut DbConnection,
    tenant: TenantId,
    users: &[UserId],
    exclude: &[DeviceId],
) -> Result<Vec<UserDeviceCount>> {
    let mut counts: HashMap<UserId, u32> = HashMap::new();
    for chunk in users.chunks(IDS_PER_QUERY / 2) {
        let mut query = inv_directory_records::table
            .filter(inv_directory_records::tenant_id.eq(tenant))
            .filter(inv_directory_records::user_id.eq_any(chunk))
            .group_by(inv_directory_records::user_id)
            .select((inv_directory_records::user_id, count_star()))
            .into_boxed();
        if !exclude.is_empty() {
            let excluded: Vec<DeviceId> = exclude.iter().take(IDS_PER_QUERY / 2).copied().collect();
            query = query.filter(
                inv_directory_records::device_id
                    .is_null()
                    .or(not(inv_directory_records::device_id.eq_any(excluded))),
            );
        }
        for (user, count) in query.load::<(Option<UserId>, i64)>(conn)? {
            if let Some(user) = user {
                counts.insert(user, u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
    }
    Ok(users
        .iter()
        .map(|&user_id| UserDeviceCount {
            user_id,
            count: counts.get(&user_id).copied().unwrap_or(0),
        })
        .collect())
}
