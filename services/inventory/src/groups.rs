//! Device groups and their members.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::public::DeviceGroup;
use mdm_domain::{DeviceId, TenantId};
use mdm_store::models::inventory::{GroupMemberRow, GroupRow};
use mdm_store::schema::{inv_group_members, inv_groups};
use mdm_store::{DbConnection, StoreError, from_millis, to_millis};
use uuid::Uuid;

use crate::devices::{self, IDS_PER_QUERY};
use crate::error::{Error, Result};
use crate::ids::{new_id, to_uuid};

const MAX_NAME_CHARS: usize = 256;

fn to_wire(row: GroupRow, member_count: u32) -> DeviceGroup {
    DeviceGroup {
        id: to_uuid(&row.id),
        display_name: row.display_name,
        member_count,
        created_date_time: from_millis(row.created_at),
    }
}

pub fn create(
    conn: &mut DbConnection,
    tenant: TenantId,
    display_name: &str,
    now: DateTime<Utc>,
) -> Result<DeviceGroup> {
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid("displayName must be 1 to 256 characters"));
    }
    let row = GroupRow {
        id: new_id(),
        tenant_id: tenant,
        display_name: name.to_owned(),
        created_at: to_millis(now),
    };
    diesel::insert_into(inv_groups::table)
        .values(&row)
        .execute(conn)?;
    Ok(to_wire(row, 0))
}

fn find(conn: &mut DbConnection, tenant: TenantId, id: Uuid) -> Result<GroupRow> {
    inv_groups::table
        .find(id.as_bytes().to_vec())
        .filter(inv_groups::tenant_id.eq(tenant))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("group"))
}

pub fn get(conn: &mut DbConnection, tenant: TenantId, id: Uuid) -> Result<DeviceGroup> {
    let row = find(conn, tenant, id)?;
    let counts = member_counts(conn, std::slice::from_ref(&row.id))?;
    let count = counts.get(&row.id).copied().unwrap_or(0);
    Ok(to_wire(row, count))
}

/// A page of the tenant's groups in id order.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeviceGroup>> {
    let mut query = inv_groups::table
        .filter(inv_groups::tenant_id.eq(tenant))
        .select(GroupRow::as_select())
        .order(inv_groups::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(inv_groups::id.gt(after.as_bytes().to_vec()));
    }
    let rows = query.load(conn)?;
    let ids: Vec<Vec<u8>> = rows.iter().map(|r| r.id.clone()).collect();
    let counts = member_counts(conn, &ids)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let count = counts.get(&row.id).copied().unwrap_or(0);
            to_wire(row, count)
        })
        .collect())
}

fn member_counts(conn: &mut DbConnection, groups: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, u32>> {
    let rows: Vec<(Vec<u8>, i64)> = inv_group_members::table
        .filter(inv_group_members::group_id.eq_any(groups))
        .group_by(inv_group_members::group_id)
        .select((inv_group_members::group_id, count_star()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, count)| (id, u32::try_from(count).unwrap_or(u32::MAX)))
        .collect())
}

/// Deletes the group and its memberships; answers it.
pub fn delete(conn: &mut DbConnection, tenant: TenantId, id: Uuid) -> Result<GroupRow> {
    let row = find(conn, tenant, id)?;
    diesel::delete(inv_group_members::table.filter(inv_group_members::group_id.eq(&row.id)))
        .execute(conn)?;
    diesel::delete(inv_groups::table.find(&row.id)).execute(conn)?;
    Ok(row)
}

/// Adds a device of the tenant to the group.
pub fn add_member(
    conn: &mut DbConnection,
    tenant: TenantId,
    group: Uuid,
    device: DeviceId,
    now: DateTime<Utc>,
) -> Result<()> {
    let group = find(conn, tenant, group)?;
    devices::get(conn, tenant, device)?;
    let row = GroupMemberRow {
        group_id: group.id,
        device_id: device,
        added_at: to_millis(now),
    };
    match diesel::insert_into(inv_group_members::table)
        .values(&row)
        .execute(conn)
        .map_err(StoreError::from)
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => Err(Error::refused(
            ErrorCode::AlreadyAGroupMember,
            format!("device {device} is already a member of the group"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Takes a device out of the group; `NotFound` when it was not a member.
pub fn remove_member(
    conn: &mut DbConnection,
    tenant: TenantId,
    group: Uuid,
    device: DeviceId,
) -> Result<()> {
    let group = find(conn, tenant, group)?;
    let removed = diesel::delete(
        inv_group_members::table
            .filter(inv_group_members::group_id.eq(&group.id))
            .filter(inv_group_members::device_id.eq(device)),
    )
    .execute(conn)?;
    if removed == 0 {
        return Err(Error::NotFound("group member"));
    }
    Ok(())
}

/// A page of the group's member devices in id order.
pub fn members(
    conn: &mut DbConnection,
    tenant: TenantId,
    group: Uuid,
    after: Option<DeviceId>,
    limit: i64,
) -> Result<Vec<mdm_store::models::inventory::DeviceRow>> {
    let group = find(conn, tenant, group)?;
    let mut query = inv_group_members::table
        .filter(inv_group_members::group_id.eq(&group.id))
        .select(inv_group_members::device_id)
        .order(inv_group_members::device_id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(inv_group_members::device_id.gt(after));
    }
    let ids: Vec<DeviceId> = query.load(conn)?;
    let mut rows = devices::lookup(conn, tenant, &ids)?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Removes these devices from every group; answers how many memberships there were.
pub fn remove_devices_everywhere(
    conn: &mut DbConnection,
    devices: &[DeviceId],
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for chunk in devices.chunks(IDS_PER_QUERY) {
        removed += diesel::delete(
            inv_group_members::table.filter(inv_group_members::device_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}
