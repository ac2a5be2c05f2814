//! A tenant's policy as other services read it: authority, restrictions, prerequisites.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::enrollment::{PlatformRestriction, TenantPolicy};
use mdm_domain::{Platform, TenantId};
use mdm_store::models::enrollment::{PlatformRestrictionRow, TenantRow};
use mdm_store::schema::{
    enr_android_bindings, enr_apple_push_certificates, enr_platform_restrictions,
    enr_windows_settings,
};
use mdm_store::{DbConnection, to_millis};

use crate::error::{Error, Result};
use crate::tenants;

/// Windows enrollment is on until an admin turns it off.
pub const WINDOWS_ENROLLMENT_DEFAULT: bool = true;

pub fn tenant_policy(
    conn: &mut DbConnection,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> Result<TenantPolicy> {
    let tenant = tenants::find(conn, tenant_id)?.ok_or(Error::NotFound("tenant"))?;
    Ok(TenantPolicy {
        tenant_id,
        authority: tenant.mdm_authority,
        device_limit_per_user: u8::try_from(tenant.device_limit_per_user).unwrap_or(5),
        platforms: restrictions(conn, &tenant)?,
        apple_push_topic: valid_push_topic(conn, tenant_id, now)?,
        android_enterprise: bound_enterprise(conn, tenant_id)?,
        windows_enrollment_enabled: windows_enrollment_enabled(conn, tenant_id)?,
    })
}

/// Every platform's restriction: the stored one, or allowed with personal devices.
pub fn restrictions(
    conn: &mut DbConnection,
    tenant: &TenantRow,
) -> Result<Vec<PlatformRestriction>> {
    let rows: Vec<PlatformRestrictionRow> = enr_platform_restrictions::table
        .filter(enr_platform_restrictions::tenant_id.eq(tenant.id))
        .select(PlatformRestrictionRow::as_select())
        .load(conn)?;
    Ok(Platform::ALL
        .iter()
        .map(
            |&platform| match rows.iter().find(|r| r.platform == platform) {
                Some(row) => PlatformRestriction {
                    platform,
                    allowed: row.allowed,
                    personal_allowed: row.personal_allowed,
                },
                None => PlatformRestriction {
                    platform,
                    allowed: true,
                    personal_allowed: true,
                },
            },
        )
        .collect())
}

/// The topic of the tenant's push certificate, while it is valid.
pub fn valid_push_topic(
    conn: &mut DbConnection,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    Ok(enr_apple_push_certificates::table
        .find(tenant_id)
        .filter(enr_apple_push_certificates::not_after.gt(to_millis(now)))
        .select(enr_apple_push_certificates::topic)
        .first(conn)
        .optional()?)
}

pub fn bound_enterprise(conn: &mut DbConnection, tenant_id: TenantId) -> Result<Option<String>> {
    Ok(enr_android_bindings::table
        .find(tenant_id)
        .filter(enr_android_bindings::state.eq("bound"))
        .select(enr_android_bindings::enterprise_name)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

pub fn windows_enrollment_enabled(conn: &mut DbConnection, tenant_id: TenantId) -> Result<bool> {
    Ok(enr_windows_settings::table
        .find(tenant_id)
        .select(enr_windows_settings::automatic_enrollment)
        .first(conn)
        .optional()?
        .unwrap_or(WINDOWS_ENROLLMENT_DEFAULT))
}

/// Whether bulk enrollment credentials (a provisioning secret or certificate
/// thumbprints) are set up for the tenant.
pub fn windows_bulk_configured(conn: &mut DbConnection, tenant_id: TenantId) -> Result<bool> {
    let row: Option<(Option<Vec<u8>>, String)> = enr_windows_settings::table
        .find(tenant_id)
        .select((
            enr_windows_settings::bulk_secret_hash,
            enr_windows_settings::bulk_thumbprints,
        ))
        .first(conn)
        .optional()?;
    Ok(row.is_some_and(|(secret, thumbprints)| {
        secret.is_some()
            || serde_json::from_str::<Vec<String>>(&thumbprints).is_ok_and(|t| !t.is_empty())
    }))
}
