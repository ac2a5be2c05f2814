//! How Windows devices of a tenant enrol: user-driven enrollment on or off, the
//! authentication policy that discovery announces, and bulk-enrollment credentials (a
//! provisioning secret, stored as its SHA-256, or certificate thumbprints).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::enrollment::{WindowsAuthPolicy, WindowsEnrollmentSettings};
use mdm_api::public::WindowsEnrollment;
use mdm_domain::TenantId;
use mdm_runtime::crypto::{constant_time_eq, sha256};
use mdm_store::models::enrollment::WindowsSettingsRow;
use mdm_store::schema::enr_windows_settings;
use mdm_store::{DbConnection, to_millis};

use crate::error::{Error, Result};
use crate::policy::WINDOWS_ENROLLMENT_DEFAULT;

fn policy_name(policy: WindowsAuthPolicy) -> &'static str {
    match policy {
        WindowsAuthPolicy::OnPremise => "OnPremise",
        WindowsAuthPolicy::Federated => "Federated",
        WindowsAuthPolicy::Certificate => "Certificate",
    }
}

fn parse_policy(name: &str) -> WindowsAuthPolicy {
    match name {
        "Federated" => WindowsAuthPolicy::Federated,
        "Certificate" => WindowsAuthPolicy::Certificate,
        _ => WindowsAuthPolicy::OnPremise,
    }
}

fn load(conn: &mut DbConnection, tenant: TenantId) -> Result<Option<WindowsSettingsRow>> {
    Ok(enr_windows_settings::table
        .find(tenant)
        .select(WindowsSettingsRow::as_select())
        .first(conn)
        .optional()?)
}

fn thumbprints(row: &WindowsSettingsRow) -> Vec<String> {
    serde_json::from_str(&row.bulk_thumbprints).unwrap_or_default()
}

pub fn get(conn: &mut DbConnection, tenant: TenantId) -> Result<WindowsEnrollment> {
    Ok(match load(conn, tenant)? {
        Some(row) => WindowsEnrollment {
            automatic_enrollment: row.automatic_enrollment,
            authentication_policy: parse_policy(&row.auth_policy),
            bulk_enrollment_certificate_thumbprints: thumbprints(&row),
            bulk_enrollment_secret_configured: row.bulk_secret_hash.is_some(),
        },
        None => WindowsEnrollment {
            automatic_enrollment: WINDOWS_ENROLLMENT_DEFAULT,
            authentication_policy: WindowsAuthPolicy::OnPremise,
            bulk_enrollment_certificate_thumbprints: Vec::new(),
            bulk_enrollment_secret_configured: false,
        },
    })
}

/// The settings as the Windows adapter reads them.
pub fn settings(conn: &mut DbConnection, tenant: TenantId) -> Result<WindowsEnrollmentSettings> {
    let current = get(conn, tenant)?;
    Ok(WindowsEnrollmentSettings {
        automatic_enrollment: current.automatic_enrollment,
        auth_policy: current.authentication_policy,
        bulk_enrollment: current.bulk_enrollment_secret_configured
            || !current.bulk_enrollment_certificate_thumbprints.is_empty(),
    })
}

/// Replaces the settings (the bulk secret is kept; it changes only through [`set_bulk_secret`]).
pub fn put(
    conn: &mut DbConnection,
    tenant: TenantId,
    settings: &WindowsEnrollment,
    now: DateTime<Utc>,
) -> Result<WindowsEnrollment> {
    let mut normalized = Vec::new();
    for thumbprint in &settings.bulk_enrollment_certificate_thumbprints {
        let hex: String = thumbprint
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect::<String>()
            .to_lowercase();
        if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{thumbprint} is not a SHA-1 thumbprint (40 hex digits)"
            )));
        }
        normalized.push(hex);
    }
    let secret = load(conn, tenant)?.and_then(|row| row.bulk_secret_hash);
    let row = WindowsSettingsRow {
        tenant_id: tenant,
        automatic_enrollment: settings.automatic_enrollment,
        auth_policy: policy_name(settings.authentication_policy).to_owned(),
        bulk_secret_hash: secret,
        bulk_thumbprints: serde_json::to_string(&normalized).unwrap_or_else(|_| "[]".into()),
        updated_at: to_millis(now),
    };
    save(conn, &row)?;
    get(conn, tenant)
}

/// Sets a new bulk provisioning secret (only its hash is kept).
pub fn set_bulk_secret(
    conn: &mut DbConnection,
    tenant: TenantId,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let current = get(conn, tenant)?;
    let row = WindowsSettingsRow {
        tenant_id: tenant,
        automatic_enrollment: current.automatic_enrollment,
        auth_policy: policy_name(current.authentication_policy).to_owned(),
        bulk_secret_hash: Some(sha256(secret.as_bytes()).to_vec()),
        bulk_thumbprints: serde_json::to_string(&current.bulk_enrollment_certificate_thumbprints)
            .unwrap_or_else(|_| "[]".into()),
        updated_at: to_millis(now),
    };
    save(conn, &row)
}

fn save(conn: &mut DbConnection, row: &WindowsSettingsRow) -> Result<()> {
    diesel::delete(enr_windows_settings::table.find(row.tenant_id)).execute(conn)?;
    diesel::insert_into(enr_windows_settings::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The tenant whose bulk credentials these are: the provisioning secret, or a
/// certificate thumbprint.
pub fn bulk_tenant(
    conn: &mut DbConnection,
    secret: Option<&str>,
    thumbprint: Option<&str>,
) -> Result<Option<TenantId>> {
    let rows: Vec<WindowsSettingsRow> = enr_windows_settings::table
        .select(WindowsSettingsRow::as_select())
        .load(conn)?;
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let presented = sha256(secret.as_bytes());
        return Ok(rows
            .iter()
            .find(|row| {
                row.bulk_secret_hash
                    .as_deref()
                    .is_some_and(|stored| constant_time_eq(stored, &presented))
            })
            .map(|row| row.tenant_id));
    }
    if let Some(thumbprint) = thumbprint {
        let wanted = thumbprint.to_lowercase();
        return Ok(rows
            .iter()
            .find(|row| thumbprints(row).contains(&wanted))
            .map(|row| row.tenant_id));
    }
    Ok(None)
}
