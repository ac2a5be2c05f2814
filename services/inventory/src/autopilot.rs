//! Windows Autopilot registrations (hardware hashes uploaded by an admin or an OEM).
//!
//! A registration is `pending` while the service processes it and `registered` from
//! `registered_at` on; the state is computed from the clock, so nothing has to flip it.
//! It names the Windows managed device with the same serial number: found when it is
//! uploaded, and set when such a device enrols or reports its serial number later.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::public::{AutopilotDeviceIdentity, CreateAutopilotDeviceIdentity};
use mdm_domain::{DeviceId, TenantId};
use mdm_store::models::inventory::AutopilotRow;
use mdm_store::schema::inv_autopilot_registrations;
use mdm_store::{DbConnection, StoreError, from_millis, to_millis};
use uuid::Uuid;

use crate::devices::{self, IDS_PER_QUERY};
use crate::error::{Error, Result};
use crate::ids::{new_id, to_uuid};

const MAX_SERIAL_CHARS: usize = 128;
const MAX_GROUP_TAG_CHARS: usize = 128;
/// A hardware hash is about 4 KB of base64; anything far larger is not one.
const MAX_HARDWARE_IDENTIFIER_CHARS: usize = 16 * 1024;

pub const PENDING: &str = "pending";
pub const REGISTERED: &str = "registered";

pub fn is_pending(row: &AutopilotRow, now: DateTime<Utc>) -> bool {
    to_millis(now) < row.registered_at
}

pub fn state(row: &AutopilotRow, now: DateTime<Utc>) -> &'static str {
    if is_pending(row, now) {
        PENDING
    } else {
        REGISTERED
    }
}

pub fn to_wire(row: AutopilotRow, now: DateTime<Utc>) -> AutopilotDeviceIdentity {
    AutopilotDeviceIdentity {
        id: to_uuid(&row.id),
        state: state(&row, now).to_owned(),
        serial_number: row.serial_number,
        hardware_identifier: row.hardware_identifier,
        group_tag: row.group_tag,
        managed_device_id: row.device_id,
        created_date_time: from_millis(row.created_at),
    }
}

/// Registers a device; refused when the tenant has a registration with this serial
/// number already.
pub fn create(
    conn: &mut DbConnection,
    tenant: TenantId,
    request: &CreateAutopilotDeviceIdentity,
    processing: Duration,
    now: DateTime<Utc>,
) -> Result<AutopilotRow> {
    let serial = request.serial_number.trim();
    if serial.is_empty()
        || serial.chars().count() > MAX_SERIAL_CHARS
        || serial.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "serialNumber must be 1 to 128 printable characters",
        ));
    }
    let hash = request.hardware_identifier.trim();
    let decodes = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .is_ok_and(|bytes| !bytes.is_empty());
    if hash.len() > MAX_HARDWARE_IDENTIFIER_CHARS || !decodes {
        return Err(Error::invalid(
            "hardwareIdentifier must be the device's hardware hash in base64 (at most 16 KiB)",
        ));
    }
    let group_tag = request
        .group_tag
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if group_tag.is_some_and(|t| t.chars().count() > MAX_GROUP_TAG_CHARS) {
        return Err(Error::invalid("groupTag must be at most 128 characters"));
    }
    let row = AutopilotRow {
        id: new_id(),
        tenant_id: tenant,
        serial_number: serial.to_owned(),
        hardware_identifier: hash.to_owned(),
        group_tag: group_tag.map(str::to_owned),
        device_id: devices::windows_device_with_serial(conn, tenant, serial)?,
        created_at: to_millis(now),
        registered_at: to_millis(now + processing),
    };
    match diesel::insert_into(inv_autopilot_registrations::table)
        .values(&row)
        .execute(conn)
        .map_err(StoreError::from)
    {
        Ok(_) => Ok(row),
        Err(e) if e.is_unique_violation() => Err(Error::refused(
            ErrorCode::SerialNumberRegistered,
            format!("a device with serial number {serial} is already registered"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub fn get(conn: &mut DbConnection, tenant: TenantId, id: Uuid) -> Result<AutopilotRow> {
    inv_autopilot_registrations::table
        .find(id.as_bytes().to_vec())
        .filter(inv_autopilot_registrations::tenant_id.eq(tenant))
        .select(AutopilotRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("Autopilot registration"))
}

/// A page of the tenant's registrations in id order.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AutopilotRow>> {
    let mut query = inv_autopilot_registrations::table
        .filter(inv_autopilot_registrations::tenant_id.eq(tenant))
        .select(AutopilotRow::as_select())
        .order(inv_autopilot_registrations::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(inv_autopilot_registrations::id.gt(after.as_bytes().to_vec()));
    }
    Ok(query.load(conn)?)
}

/// Deletes a registration of the tenant; refused while it is pending.
pub fn delete(
    conn: &mut DbConnection,
    tenant: TenantId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<AutopilotRow> {
    let row = get(conn, tenant, id)?;
    refuse_pending(&row, now)?;
    remove(conn, &row)?;
    Ok(row)
}

/// Deletes the registration.
pub fn remove(conn: &mut DbConnection, row: &AutopilotRow) -> Result<(), StoreError> {
    diesel::delete(inv_autopilot_registrations::table.find(&row.id)).execute(conn)?;
    Ok(())
}

/// `registration_pending` while the registration is being processed.
pub fn refuse_pending(row: &AutopilotRow, now: DateTime<Utc>) -> Result<()> {
    if is_pending(row, now) {
        return Err(Error::refused(
            ErrorCode::RegistrationPending,
            format!(
                "the registration of serial number {} is still pending until {}",
                row.serial_number,
                from_millis(row.registered_at).to_rfc3339()
            ),
        ));
    }
    Ok(())
}

/// Names `device` in the tenant's registration with this serial number, if there is one.
pub fn link(
    conn: &mut DbConnection,
    tenant: TenantId,
    device: DeviceId,
    serial: &str,
) -> Result<(), StoreError> {
    diesel::update(
        inv_autopilot_registrations::table
            .filter(inv_autopilot_registrations::tenant_id.eq(tenant))
            .filter(inv_autopilot_registrations::serial_number.eq(serial.trim())),
    )
    .set(inv_autopilot_registrations::device_id.eq(device))
    .execute(conn)?;
    Ok(())
}

/// Forgets removed devices in the registrations that named them (the hardware stays
/// registered).
pub fn unlink(conn: &mut DbConnection, devices: &[DeviceId]) -> Result<(), StoreError> {
    for chunk in devices.chunks(IDS_PER_QUERY) {
        diesel::update(
            inv_autopilot_registrations::table
                .filter(inv_autopilot_registrations::device_id.eq_any(chunk)),
        )
        .set(inv_autopilot_registrations::device_id.eq(None::<DeviceId>))
        .execute(conn)?;
    }
    Ok(())
}
