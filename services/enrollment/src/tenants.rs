//! Tenants: the organisations using the server.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::public::{EnrollmentRestrictions, PlatformRestrictionBody, Tenant};
use mdm_domain::{MdmAuthority, TenantId};
use mdm_store::models::enrollment::{PlatformRestrictionRow, TenantRow};
use mdm_store::schema::{enr_platform_restrictions, enr_tenants};
use mdm_store::{DbConnection, from_millis, to_millis};

use crate::error::{Error, Result};

/// A new tenant's device limit per user.
pub const DEFAULT_DEVICE_LIMIT: i32 = 5;
/// The device limit admins may set.
pub const DEVICE_LIMIT_RANGE: std::ops::RangeInclusive<u8> = 1..=15;

/// Creates a tenant. Names are unique regardless of case. A new tenant's MDM authority is
/// `none`: nothing can enrol until an admin sets it.
pub fn create(conn: &mut DbConnection, name: &str, now: DateTime<Utc>) -> Result<Tenant> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("displayName must be 1 to 200 characters"));
    }
    let row = TenantRow {
        id: TenantId::new(),
        name: name.to_owned(),
        mdm_authority: MdmAuthority::None,
        authority_changed_at: None,
        created_at: to_millis(now),
        device_limit_per_user: DEFAULT_DEVICE_LIMIT,
    };
    match diesel::insert_into(enr_tenants::table)
        .values(&row)
        .execute(conn)
    {
        Ok(_) => Ok(to_wire(row)),
        Err(e) => {
            let e = mdm_store::StoreError::from(e);
            if e.is_unique_violation() {
                Err(Error::refused(
                    ErrorCode::TenantNameTaken,
                    format!("a tenant named `{name}` exists"),
                ))
            } else {
                Err(e.into())
            }
        }
    }
}

pub fn get(conn: &mut DbConnection, id: TenantId) -> Result<Tenant> {
    find(conn, id)?
        .map(to_wire)
        .ok_or(Error::NotFound("tenant"))
}

pub fn find(conn: &mut DbConnection, id: TenantId) -> Result<Option<TenantRow>> {
    Ok(enr_tenants::table
        .find(id)
        .select(TenantRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Tenant>> {
    let rows = enr_tenants::table
        .order(enr_tenants::created_at)
        .select(TenantRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(to_wire).collect())
}

fn to_wire(row: TenantRow) -> Tenant {
    Tenant {
        id: row.id,
        display_name: row.name,
        mobile_device_management_authority: row.mdm_authority,
        created_date_time: from_millis(row.created_at),
    }
}

/// Sets the MDM authority; answers the previous one. Enrollments are untouched: devices
/// keep their enrollment and the new capability set applies at once.
pub fn set_authority(
    conn: &mut DbConnection,
    id: TenantId,
    authority: MdmAuthority,
    now: DateTime<Utc>,
) -> Result<MdmAuthority> {
    let tenant = find(conn, id)?.ok_or(Error::NotFound("tenant"))?;
    if tenant.mdm_authority != authority {
        diesel::update(enr_tenants::table.find(id))
            .set((
                enr_tenants::mdm_authority.eq(authority),
                enr_tenants::authority_changed_at.eq(to_millis(now)),
            ))
            .execute(conn)?;
    }
    Ok(tenant.mdm_authority)
}

pub fn restrictions(conn: &mut DbConnection, id: TenantId) -> Result<EnrollmentRestrictions> {
    let tenant = find(conn, id)?.ok_or(Error::NotFound("tenant"))?;
    Ok(EnrollmentRestrictions {
        device_limit_per_user: u8::try_from(tenant.device_limit_per_user).unwrap_or(5),
        platforms: crate::policy::restrictions(conn, &tenant)?
            .into_iter()
            .map(|r| PlatformRestrictionBody {
                platform: r.platform,
                allowed: r.allowed,
                personal_devices_allowed: r.personal_allowed,
            })
            .collect(),
    })
}

/// Replaces the restrictions. Platforms the body does not name keep their setting.
pub fn set_restrictions(
    conn: &mut DbConnection,
    id: TenantId,
    body: &EnrollmentRestrictions,
) -> Result<EnrollmentRestrictions> {
    if !DEVICE_LIMIT_RANGE.contains(&body.device_limit_per_user) {
        return Err(Error::invalid(
            "deviceLimitPerUser must be between 1 and 15",
        ));
    }
    find(conn, id)?.ok_or(Error::NotFound("tenant"))?;
    diesel::update(enr_tenants::table.find(id))
        .set(enr_tenants::device_limit_per_user.eq(i32::from(body.device_limit_per_user)))
        .execute(conn)?;
    for platform in &body.platforms {
        diesel::delete(
            enr_platform_restrictions::table
                .filter(enr_platform_restrictions::tenant_id.eq(id))
                .filter(enr_platform_restrictions::platform.eq(platform.platform)),
        )
        .execute(conn)?;
        diesel::insert_into(enr_platform_restrictions::table)
            .values(PlatformRestrictionRow {
                tenant_id: id,
                platform: platform.platform,
                allowed: platform.allowed,
                personal_allowed: platform.personal_devices_allowed,
            })
            .execute(conn)?;
    }
    restrictions(conn, id)
}
