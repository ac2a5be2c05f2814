//! The `dsp_actions` table: one row per action on a device.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::public::{DeviceAction, DeviceActionResult};
use mdm_domain::{ActionId, ActionKind, ActionState, DeviceId, TenantId};
use mdm_store::models::dispatch::ActionRow;
use mdm_store::schema::dsp_actions;
use mdm_store::{DbConnection, from_millis, on_backend, to_millis};

use crate::error::{Error, Result};

/// States in which an action has not ended.
pub const OPEN: [ActionState; 3] = [ActionState::Pending, ActionState::Sent, ActionState::Active];

pub fn insert(conn: &mut DbConnection, rows: &[ActionRow]) -> Result<()> {
    // Bounded so that SQLite's limit on bound values is never reached.
    for chunk in rows.chunks(500) {
        on_backend!(conn, c => diesel::insert_into(dsp_actions::table).values(chunk).execute(c))?;
    }
    Ok(())
}

pub fn get(conn: &mut DbConnection, id: ActionId) -> Result<Option<ActionRow>> {
    Ok(dsp_actions::table
        .find(id)
        .select(ActionRow::as_select())
        .first(conn)
        .optional()?)
}

/// An action of the tenant's device; another tenant's, or another device's, is not found.
pub fn get_on_device(
    conn: &mut DbConnection,
    tenant: TenantId,
    device: DeviceId,
    id: ActionId,
) -> Result<ActionRow> {
    get(conn, id)?
        .filter(|a| a.tenant_id == tenant && a.device_id == device)
        .ok_or(Error::NotFound("action"))
}

pub fn open_for_devices(conn: &mut DbConnection, devices: &[DeviceId]) -> Result<Vec<ActionRow>> {
    let mut open = Vec::new();
    for chunk in devices.chunks(500) {
        open.extend(
            dsp_actions::table
                .filter(dsp_actions::device_id.eq_any(chunk))
                .filter(dsp_actions::state.eq_any(OPEN))
                .select(ActionRow::as_select())
                .load(conn)?,
        );
    }
    Ok(open)
}

/// Devices among `devices` with a PIN still shown.
pub fn devices_with_live_pin(
    conn: &mut DbConnection,
    devices: &[DeviceId],
    now: DateTime<Utc>,
) -> Result<Vec<DeviceId>> {
    let mut found = Vec::new();
    for chunk in devices.chunks(500) {
        found.extend(
            dsp_actions::table
                .filter(dsp_actions::device_id.eq_any(chunk))
                .filter(dsp_actions::sealed_unlock_pin.is_not_null())
                .filter(dsp_actions::pin_expires_at.gt(to_millis(now)))
                .select(dsp_actions::device_id)
                .load::<DeviceId>(conn)?,
        );
    }
    Ok(found)
}

/// The device's current unlock PIN, if one is shown.
pub fn live_pin(
    conn: &mut DbConnection,
    device: DeviceId,
    now: DateTime<Utc>,
) -> Result<Option<ActionRow>> {
    Ok(dsp_actions::table
        .filter(dsp_actions::device_id.eq(device))
        .filter(dsp_actions::sealed_unlock_pin.is_not_null())
        .filter(dsp_actions::pin_expires_at.gt(to_millis(now)))
        .order(dsp_actions::id.desc())
        .select(ActionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Forgets the devices' PINs: another action was sent to them.
pub fn clear_pins(conn: &mut DbConnection, devices: &[DeviceId]) -> Result<()> {
    for chunk in devices.chunks(500) {
        diesel::update(
            dsp_actions::table
                .filter(dsp_actions::device_id.eq_any(chunk))
                .filter(dsp_actions::sealed_unlock_pin.is_not_null()),
        )
        .set((
            dsp_actions::sealed_unlock_pin.eq(None::<Vec<u8>>),
            dsp_actions::pin_expires_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    }
    Ok(())
}

/// Purges PINs shown long enough; answers how many.
pub fn purge_pins(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize> {
    Ok(diesel::update(
        dsp_actions::table
            .filter(dsp_actions::sealed_unlock_pin.is_not_null())
            .filter(dsp_actions::pin_expires_at.le(to_millis(now))),
    )
    .set((
        dsp_actions::sealed_unlock_pin.eq(None::<Vec<u8>>),
        dsp_actions::pin_expires_at.eq(None::<i64>),
    ))
    .execute(conn)?)
}

pub fn set_state(
    conn: &mut DbConnection,
    id: ActionId,
    state: ActionState,
    error_code: Option<&str>,
    error_detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(dsp_actions::table.find(id))
        .set((
            dsp_actions::state.eq(state),
            dsp_actions::error_code.eq(error_code),
            dsp_actions::error_detail.eq(error_detail),
            dsp_actions::updated_at.eq(to_millis(now)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn mark_cancel_requested(
    conn: &mut DbConnection,
    id: ActionId,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(dsp_actions::table.find(id))
        .set((
            dsp_actions::cancel_requested.eq(true),
            dsp_actions::updated_at.eq(to_millis(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The device's actions, newest first.
pub fn for_device(
    conn: &mut DbConnection,
    tenant: TenantId,
    device: DeviceId,
    limit: i64,
) -> Result<Vec<ActionRow>> {
    Ok(dsp_actions::table
        .filter(dsp_actions::device_id.eq(device))
        .filter(dsp_actions::tenant_id.eq(tenant))
        .order(dsp_actions::id.desc())
        .limit(limit)
        .select(ActionRow::as_select())
        .load(conn)?)
}

/// A page of the tenant's actions, newest first, older than `before`.
pub fn for_tenant(
    conn: &mut DbConnection,
    tenant: TenantId,
    state: Option<ActionState>,
    kind: Option<ActionKind>,
    before: Option<ActionId>,
    top: i64,
) -> Result<Vec<ActionRow>> {
    let mut query = dsp_actions::table
        .filter(dsp_actions::tenant_id.eq(tenant))
        .order(dsp_actions::id.desc())
        .limit(top)
        .select(ActionRow::as_select())
        .into_boxed();
    if let Some(state) = state {
        query = query.filter(dsp_actions::state.eq(state));
    }
    if let Some(kind) = kind {
        query = query.filter(dsp_actions::kind.eq(kind));
    }
    if let Some(before) = before {
        query = query.filter(dsp_actions::id.lt(before));
    }
    Ok(query.load(conn)?)
}

/// Open actions past their expiry: pending ones at once (they never reached an adapter),
/// delivered ones only `grace` later (their adapter reports expiry itself).
pub fn due_for_expiry(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<Vec<ActionRow>> {
    let now_ms = to_millis(now);
    let late_ms = to_millis(now - grace);
    Ok(dsp_actions::table
        .filter(dsp_actions::state.eq_any(OPEN))
        .filter(
            dsp_actions::state
                .eq(ActionState::Pending)
                .and(dsp_actions::expires_at.le(now_ms))
                .or(dsp_actions::expires_at.le(late_ms)),
        )
        .limit(1000)
        .select(ActionRow::as_select())
        .load(conn)?)
}

pub fn result(row: &ActionRow) -> DeviceActionResult {
    DeviceActionResult {
        id: row.id,
        action_name: row.kind,
        action_state: row.state,
        start_date_time: from_millis(row.created_at),
        last_updated_date_time: from_millis(row.updated_at),
        error_code: row.error_code.clone(),
        error_detail: row.error_detail.clone(),
    }
}

pub fn view(row: &ActionRow, lock_pin: Option<String>) -> DeviceAction {
    DeviceAction {
        result: result(row),
        device_id: row.device_id,
        device_name: row.device_name.clone(),
        operating_system: row.platform,
        requested_by: row.requested_by.clone(),
        bulk_action_id: row.bulk_job_id,
        lock_pin,
    }
}
