//! Queries on the adapter's own tables (`win_`). Written once against `DbConnection`;
//! they run unchanged on PostgreSQL and SQLite.

use diesel::prelude::*;
use mdm_domain::{ActionId, DeviceId, EnrollmentId, TenantId};
use mdm_store::models::windows::{WinCertificateRow, WinCommandRow, WinEnrollmentRow};
use mdm_store::schema::{win_certificates, win_commands, win_enrollments};
use mdm_store::{DbConnection, StoreError};

/// Enrollment states.
pub mod state {
    pub const ACTIVE: &str = "active";
    pub const UNENROLLED: &str = "unenrolled";
    pub const RETIRED: &str = "retired";
    pub const WIPED: &str = "wiped";
    pub const REMOVED: &str = "removed";
    pub const REPLACED: &str = "replaced";
}

/// Command states.
pub mod command_state {
    pub const QUEUED: &str = "queued";
    pub const DELIVERED: &str = "delivered";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const NOT_SUPPORTED: &str = "notSupported";
    pub const CANCELED: &str = "canceled";
    pub const EXPIRED: &str = "expired";
    /// States in which a command is still open.
    pub const OPEN: [&str; 2] = [QUEUED, DELIVERED];

    /// Whether a stored state is open.
    pub fn is_open(state: &str) -> bool {
        OPEN.contains(&state)
    }
}

/// A device's enrollment with everything the session needs.
#[derive(Debug, Clone)]
pub struct LoadedDevice {
    pub enrollment: WinEnrollmentRow,
    pub certificates: Vec<WinCertificateRow>,
    pub commands: Vec<WinCommandRow>,
}

pub fn insert_enrollment(c: &mut DbConnection, row: &WinEnrollmentRow) -> Result<(), StoreError> {
    diesel::insert_into(win_enrollments::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

pub fn insert_certificate(c: &mut DbConnection, row: &WinCertificateRow) -> Result<(), StoreError> {
    diesel::insert_into(win_certificates::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

/// The active enrollment of a device.
pub fn active_enrollment(
    c: &mut DbConnection,
    device: DeviceId,
) -> Result<Option<WinEnrollmentRow>, StoreError> {
    Ok(win_enrollments::table
        .filter(win_enrollments::device_id.eq(device))
        .filter(win_enrollments::state.eq(state::ACTIVE))
        .select(WinEnrollmentRow::as_select())
        .order(win_enrollments::enrolled_at.desc())
        .first(c)
        .optional()?)
}

/// The most recent enrollment of the Windows DeviceID in a tenant, whatever its state.
pub fn latest_by_windows_device(
    c: &mut DbConnection,
    tenant: TenantId,
    windows_device_id: &str,
) -> Result<Option<WinEnrollmentRow>, StoreError> {
    Ok(win_enrollments::table
        .filter(win_enrollments::tenant_id.eq(tenant))
        .filter(win_enrollments::windows_device_id.eq(windows_device_id))
        .select(WinEnrollmentRow::as_select())
        .order(win_enrollments::enrolled_at.desc())
        .first(c)
        .optional()?)
}

pub fn enrollment(
    c: &mut DbConnection,
    id: EnrollmentId,
) -> Result<Option<WinEnrollmentRow>, StoreError> {
    Ok(win_enrollments::table
        .find(id)
        .select(WinEnrollmentRow::as_select())
        .first(c)
        .optional()?)
}

/// Ends an enrollment: its state, and its certificates stop working.
pub fn end_enrollment(
    c: &mut DbConnection,
    id: EnrollmentId,
    new_state: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        win_enrollments::table
            .find(id)
            .filter(win_enrollments::state.eq(state::ACTIVE)),
    )
    .set((
        win_enrollments::state.eq(new_state),
        win_enrollments::ended_at.eq(now),
    ))
    .execute(c)?;
    diesel::update(
        win_certificates::table
            .filter(win_certificates::enrollment_id.eq(id))
            .filter(win_certificates::revoked_at.is_null()),
    )
    .set(win_certificates::revoked_at.eq(now))
    .execute(c)?;
    Ok(updated == 1)
}

/// The enrollment a certificate belongs to, when both are still valid.
pub fn by_certificate(
    c: &mut DbConnection,
    sha256: &[u8],
) -> Result<Option<(WinCertificateRow, WinEnrollmentRow)>, StoreError> {
    Ok(win_certificates::table
        .inner_join(win_enrollments::table)
        .filter(win_certificates::sha256.eq(sha256))
        .filter(win_certificates::revoked_at.is_null())
        .filter(win_enrollments::state.eq(state::ACTIVE))
        .select((
            WinCertificateRow::as_select(),
            WinEnrollmentRow::as_select(),
        ))
        .first(c)
        .optional()?)
}

/// Everything about a device's active enrollment.
pub fn load_device(
    c: &mut DbConnection,
    device: DeviceId,
) -> Result<Option<LoadedDevice>, StoreError> {
    let Some(enrollment) = active_enrollment(c, device)? else {
        return Ok(None);
    };
    let certificates = win_certificates::table
        .filter(win_certificates::enrollment_id.eq(enrollment.id))
        .filter(win_certificates::revoked_at.is_null())
        .select(WinCertificateRow::as_select())
        .load(c)?;
    let commands = open_commands(c, device)?;
    Ok(Some(LoadedDevice {
        enrollment,
        certificates,
        commands,
    }))
}

pub fn open_commands(
    c: &mut DbConnection,
    device: DeviceId,
) -> Result<Vec<WinCommandRow>, StoreError> {
    Ok(win_commands::table
        .filter(win_commands::device_id.eq(device))
        .filter(win_commands::state.eq_any(command_state::OPEN))
        .select(WinCommandRow::as_select())
        .order(win_commands::id)
        .load(c)?)
}

/// Queued commands created since `since` (milliseconds), for replicas catching up.
pub fn queued_since(
    c: &mut DbConnection,
    since: i64,
    limit: i64,
) -> Result<Vec<WinCommandRow>, StoreError> {
    Ok(win_commands::table
        .filter(win_commands::created_at.ge(since))
        .filter(win_commands::state.eq(command_state::QUEUED))
        .select(WinCommandRow::as_select())
        .order(win_commands::created_at)
        .limit(limit)
        .load(c)?)
}

pub fn insert_commands(c: &mut DbConnection, rows: &[WinCommandRow]) -> Result<(), StoreError> {
    for row in rows {
        diesel::insert_into(win_commands::table)
            .values(row)
            .execute(c)?;
    }
    Ok(())
}

/// Marks commands delivered in the answer to the device message `message`
/// (`<SessionID>/<MsgID>`), in one statement per 500; answers the ids that were still
/// queued, or delivered already in an answer to this same message: the device sent it
/// again because that answer never reached it. The others were canceled, expired, or
/// delivered by another replica meanwhile.
pub fn mark_delivered(
    c: &mut DbConnection,
    ids: &[Vec<u8>],
    message: &str,
    now: i64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut delivered = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        delivered.extend(
            diesel::update(
                win_commands::table
                    .filter(win_commands::id.eq_any(chunk))
                    .filter(
                        win_commands::state
                            .eq(command_state::QUEUED)
                            .or(win_commands::state
                                .eq(command_state::DELIVERED)
                                .and(win_commands::delivered_in.eq(message))),
                    ),
            )
            .set((
                win_commands::state.eq(command_state::DELIVERED),
                win_commands::delivered_at.eq(now),
                win_commands::delivered_in.eq(message),
            ))
            .returning(win_commands::id)
            .get_results::<Vec<u8>>(c)?,
        );
    }
    Ok(delivered)
}

/// [`complete`] for many commands with the same outcome and no result.
pub fn complete_many(
    c: &mut DbConnection,
    ids: &[Vec<u8>],
    new_state: &str,
    code: &str,
    now: i64,
) -> Result<Vec<WinCommandRow>, StoreError> {
    let mut done = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        done.extend(
            diesel::update(
                win_commands::table
                    .filter(win_commands::id.eq_any(chunk))
                    .filter(win_commands::state.eq_any(command_state::OPEN)),
            )
            .set((
                win_commands::state.eq(new_state),
                win_commands::status_code.eq(code),
                win_commands::completed_at.eq(now),
            ))
            .returning(win_commands::all_columns)
            .get_results::<WinCommandRow>(c)?,
        );
    }
    Ok(done)
}

/// Records an open command's outcome; answers the command when it was still open.
pub fn complete(
    c: &mut DbConnection,
    id: &[u8],
    new_state: &str,
    code: Option<&str>,
    sealed_result: Option<&[u8]>,
    now: i64,
) -> Result<Option<WinCommandRow>, StoreError> {
    Ok(diesel::update(
        win_commands::table
            .find(id)
            .filter(win_commands::state.eq_any(command_state::OPEN)),
    )
    .set((
        win_commands::state.eq(new_state),
        win_commands::status_code.eq(code),
        win_commands::sealed_result.eq(sealed_result),
        win_commands::completed_at.eq(now),
    ))
    .returning(win_commands::all_columns)
    .get_result::<WinCommandRow>(c)
    .optional()?)
}

/// Ends the open later steps of an action (after an earlier step failed).
pub fn end_later_steps(
    c: &mut DbConnection,
    action: ActionId,
    after_step: i32,
    new_state: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        win_commands::table
            .filter(win_commands::action_id.eq(action))
            .filter(win_commands::step.gt(after_step))
            .filter(win_commands::state.eq_any(command_state::OPEN)),
    )
    .set((
        win_commands::state.eq(new_state),
        win_commands::completed_at.eq(now),
    ))
    .execute(c)?)
}

pub fn commands_of_action(
    c: &mut DbConnection,
    action: ActionId,
) -> Result<Vec<WinCommandRow>, StoreError> {
    Ok(win_commands::table
        .filter(win_commands::action_id.eq(action))
        .select(WinCommandRow::as_select())
        .order(win_commands::step)
        .load(c)?)
}

/// Ends every open command of a device; answers the commands ended.
pub fn end_open_commands(
    c: &mut DbConnection,
    device: DeviceId,
    new_state: &str,
    now: i64,
) -> Result<Vec<WinCommandRow>, StoreError> {
    let open = open_commands(c, device)?;
    diesel::update(
        win_commands::table
            .filter(win_commands::device_id.eq(device))
            .filter(win_commands::state.eq_any(command_state::OPEN)),
    )
    .set((
        win_commands::state.eq(new_state),
        win_commands::completed_at.eq(now),
    ))
    .execute(c)?;
    Ok(open)
}

/// Open commands whose lifetime is over.
pub fn expired_commands(
    c: &mut DbConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<WinCommandRow>, StoreError> {
    Ok(win_commands::table
        .filter(win_commands::state.eq_any(command_state::OPEN))
        .filter(win_commands::expires_at.le(now))
        .select(WinCommandRow::as_select())
        .order(win_commands::expires_at)
        .limit(limit)
        .load(c)?)
}

pub fn set_channel(
    c: &mut DbConnection,
    enrollment: EnrollmentId,
    uri: Option<&str>,
    channel_state: &str,
) -> Result<(), StoreError> {
    diesel::update(win_enrollments::table.find(enrollment))
        .set((
            win_enrollments::channel_uri.eq(uri),
            win_enrollments::channel_state.eq(channel_state),
        ))
        .execute(c)?;
    Ok(())
}

/// Marks the channel expired, unless the device reported a new one meanwhile.
pub fn expire_channel(
    c: &mut DbConnection,
    enrollment: EnrollmentId,
    uri: &str,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        win_enrollments::table
            .find(enrollment)
            .filter(win_enrollments::channel_uri.eq(uri)),
    )
    .set(win_enrollments::channel_state.eq("expired"))
    .execute(c)?;
    Ok(updated == 1)
}

/// The facts columns that change together (absent fields stay as they are).
#[derive(diesel::AsChangeset)]
#[diesel(table_name = win_enrollments)]
struct FactsChange<'a> {
    last_facts: &'a str,
    os_version: Option<&'a str>,
    inventory_at: Option<i64>,
}

pub fn set_facts(
    c: &mut DbConnection,
    enrollment: EnrollmentId,
    facts_json: &str,
    os_version: Option<&str>,
    inventory_at: Option<i64>,
) -> Result<(), StoreError> {
    diesel::update(win_enrollments::table.find(enrollment))
        .set(&FactsChange {
            last_facts: facts_json,
            os_version,
            inventory_at,
        })
        .execute(c)?;
    Ok(())
}

/// Once a device uses a renewed certificate, its older ones stop working.
pub fn revoke_other_certificates(
    c: &mut DbConnection,
    enrollment: EnrollmentId,
    keep: &[u8],
    now: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        win_certificates::table
            .filter(win_certificates::enrollment_id.eq(enrollment))
            .filter(win_certificates::sha256.ne(keep))
            .filter(win_certificates::revoked_at.is_null()),
    )
    .set(win_certificates::revoked_at.eq(now))
    .execute(c)?)
}

/// Forgets finished commands older than `before` (their results were reported long ago).
pub fn prune_commands(c: &mut DbConnection, before: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        win_commands::table
            .filter(win_commands::created_at.lt(before))
            .filter(
                win_commands::state
                    .ne(command_state::QUEUED)
                    .and(win_commands::state.ne(command_state::DELIVERED)),
            ),
    )
    .execute(c)?)
}
