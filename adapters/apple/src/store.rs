//! Queries on the adapter's own tables (`apl_*`). Everything that differs between the
//! backends (upserts) is in one function each, run through `on_backend!`.

use diesel::prelude::*;
use mdm_domain::{ActionId, DeviceId, EnrollmentId};
use mdm_store::models::apple::{
    ActionRow, CommandResultRow, CommandRow, DeviceInfoRow, EnrollmentProfileRow, EnrollmentRow,
    IdentityRow, NewCommandRow, ScepRaRow,
};
use mdm_store::schema::{
    apl_actions, apl_command_results, apl_commands, apl_device_info, apl_enrollment_profiles,
    apl_enrollments, apl_identities, apl_scep_ra,
};
use mdm_store::{DbConnection, StoreError, on_backend};

/// Command states in `apl_commands`.
pub const QUEUED: &str = "queued";
pub const SENT: &str = "sent";

/// Rows of the bigger `IN (...)` lists are split into chunks of this many.
const CHUNK: usize = 400;

// ---- enrollments ------------------------------------------------------------------

pub fn enrollment_by_cert(
    c: &mut DbConnection,
    cert_hash: &[u8],
) -> Result<Option<EnrollmentRow>, StoreError> {
    Ok(apl_enrollments::table
        .filter(apl_enrollments::cert_hash.eq(cert_hash))
        .select(EnrollmentRow::as_select())
        .first(c)
        .optional()?)
}

pub fn enrollment(
    c: &mut DbConnection,
    channel_id: &str,
) -> Result<Option<EnrollmentRow>, StoreError> {
    Ok(apl_enrollments::table
        .find(channel_id)
        .select(EnrollmentRow::as_select())
        .first(c)
        .optional()?)
}

/// Every channel of a device (its device channel and user channels).
pub fn enrollments_of_device(
    c: &mut DbConnection,
    device_id: DeviceId,
) -> Result<Vec<EnrollmentRow>, StoreError> {
    Ok(apl_enrollments::table
        .filter(apl_enrollments::device_id.eq(device_id))
        .select(EnrollmentRow::as_select())
        .load(c)?)
}

/// The channels of a device channel (itself and its users).
pub fn channels_of(
    c: &mut DbConnection,
    device_channel: &str,
) -> Result<Vec<EnrollmentRow>, StoreError> {
    Ok(apl_enrollments::table
        .filter(apl_enrollments::device_channel.eq(device_channel))
        .select(EnrollmentRow::as_select())
        .load(c)?)
}

/// Inserts or replaces a channel's row.
pub fn upsert_enrollment(c: &mut DbConnection, row: &EnrollmentRow) -> Result<(), StoreError> {
    on_backend!(c, cc => diesel::insert_into(apl_enrollments::table)
        .values(row)
        .on_conflict(apl_enrollments::channel_id)
        .do_update()
        .set(row)
        .execute(cc))?;
    Ok(())
}

/// Inserts or replaces what a device reported about itself.
pub fn upsert_device_info(c: &mut DbConnection, row: &DeviceInfoRow) -> Result<(), StoreError> {
    on_backend!(c, cc => diesel::insert_into(apl_device_info::table)
        .values(row)
        .on_conflict(apl_device_info::channel_id)
        .do_update()
        .set(row)
        .execute(cc))?;
    Ok(())
}

pub fn device_info(
    c: &mut DbConnection,
    channel_id: &str,
) -> Result<Option<DeviceInfoRow>, StoreError> {
    Ok(apl_device_info::table
        .find(channel_id)
        .select(DeviceInfoRow::as_select())
        .first(c)
        .optional()?)
}

/// Unbinds a certificate from whatever channel holds it (before binding it elsewhere
/// would break the unique index).
pub fn clear_cert(c: &mut DbConnection, cert_hash: &[u8], except: &str) -> Result<(), StoreError> {
    diesel::update(
        apl_enrollments::table
            .filter(apl_enrollments::cert_hash.eq(cert_hash))
            .filter(apl_enrollments::channel_id.ne(except)),
    )
    .set(apl_enrollments::cert_hash.eq(None::<Vec<u8>>))
    .execute(c)?;
    Ok(())
}

/// Device channels enrolled at least `before` ago whose inventory is older than
/// `before` (or never ran).
pub fn due_for_inventory(
    c: &mut DbConnection,
    before: i64,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(apl_enrollments::table
        .filter(apl_enrollments::state.eq("enrolled"))
        .filter(apl_enrollments::channel_id.eq(apl_enrollments::device_channel))
        .filter(
            apl_enrollments::inventory_at
                .is_null()
                .or(apl_enrollments::inventory_at.lt(before)),
        )
        .select(apl_enrollments::channel_id)
        .limit(limit)
        .load(c)?)
}

pub fn set_inventory_at(
    c: &mut DbConnection,
    channel_ids: &[String],
    at: i64,
) -> Result<(), StoreError> {
    for chunk in channel_ids.chunks(CHUNK) {
        diesel::update(apl_enrollments::table.filter(apl_enrollments::channel_id.eq_any(chunk)))
            .set(apl_enrollments::inventory_at.eq(at))
            .execute(c)?;
    }
    Ok(())
}

/// Records a push outcome on the channel.
pub fn set_push_state(
    c: &mut DbConnection,
    channel_id: &str,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(apl_enrollments::table.find(channel_id))
        .set((
            apl_enrollments::push_state.eq(state),
            apl_enrollments::push_error.eq(error),
            apl_enrollments::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

// ---- commands ---------------------------------------------------------------------

/// A channel's commands in queue order (priority first, then by id).
pub fn commands_of(c: &mut DbConnection, channel_id: &str) -> Result<Vec<CommandRow>, StoreError> {
    Ok(apl_commands::table
        .filter(apl_commands::channel_id.eq(channel_id))
        .order((apl_commands::priority.desc(), apl_commands::id.asc()))
        .select(CommandRow::as_select())
        .load(c)?)
}

/// Inserts commands; answers their rows (with ids). A CommandUUID seen before is left
/// alone and not answered.
pub fn insert_commands(
    c: &mut DbConnection,
    rows: &[NewCommandRow],
) -> Result<Vec<CommandRow>, StoreError> {
    let mut inserted = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(100) {
        let uuids: Vec<&str> = chunk.iter().map(|r| r.command_uuid.as_str()).collect();
        let existing: Vec<String> = apl_commands::table
            .filter(apl_commands::command_uuid.eq_any(&uuids))
            .select(apl_commands::command_uuid)
            .load(c)?;
        let done: Vec<String> = apl_command_results::table
            .filter(apl_command_results::command_uuid.eq_any(&uuids))
            .select(apl_command_results::command_uuid)
            .load(c)?;
        let fresh: Vec<&NewCommandRow> = chunk
            .iter()
            .filter(|r| !existing.contains(&r.command_uuid) && !done.contains(&r.command_uuid))
            .collect();
        for row in fresh {
            let row: CommandRow = diesel::insert_into(apl_commands::table)
                .values(row)
                .returning(apl_commands::all_columns)
                .get_result(c)?;
            inserted.push(row);
        }
    }
    Ok(inserted)
}

/// Marks commands delivered; answers those that were still waiting (the others were
/// canceled or expired meanwhile).
pub fn mark_sent(
    c: &mut DbConnection,
    uuids: &[&str],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut marked = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(CHUNK) {
        let rows: Vec<String> =
            diesel::update(apl_commands::table.filter(apl_commands::command_uuid.eq_any(chunk)))
                .set((
                    apl_commands::state.eq(SENT),
                    apl_commands::sent_at.eq(now),
                    apl_commands::attempts.eq(apl_commands::attempts + 1),
                ))
                .returning(apl_commands::command_uuid)
                .get_results(c)?;
        marked.extend(rows);
    }
    Ok(marked)
}

/// Puts commands the device answered NotNow back in the queue.
pub fn requeue(c: &mut DbConnection, uuids: &[&str]) -> Result<(), StoreError> {
    for chunk in uuids.chunks(CHUNK) {
        diesel::update(apl_commands::table.filter(apl_commands::command_uuid.eq_any(chunk)))
            .set(apl_commands::state.eq(QUEUED))
            .execute(c)?;
    }
    Ok(())
}

/// Removes answered commands from the queue; answers the rows that were still there
/// (a repeated answer finds nothing).
pub fn take_commands(c: &mut DbConnection, uuids: &[&str]) -> Result<Vec<CommandRow>, StoreError> {
    let mut taken = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(CHUNK) {
        let rows: Vec<CommandRow> =
            diesel::delete(apl_commands::table.filter(apl_commands::command_uuid.eq_any(chunk)))
                .returning(apl_commands::all_columns)
                .get_results(c)?;
        taken.extend(rows);
    }
    Ok(taken)
}

/// Removes the queued (not yet delivered) commands of an action; answers them.
pub fn take_queued_of_action(
    c: &mut DbConnection,
    action_id: ActionId,
) -> Result<Vec<CommandRow>, StoreError> {
    Ok(diesel::delete(
        apl_commands::table
            .filter(apl_commands::action_id.eq(action_id))
            .filter(apl_commands::state.eq(QUEUED)),
    )
    .returning(apl_commands::all_columns)
    .get_results(c)?)
}

/// Any command of the action still in the queue (queued or sent).
pub fn commands_of_action(
    c: &mut DbConnection,
    action_id: ActionId,
) -> Result<Vec<CommandRow>, StoreError> {
    Ok(apl_commands::table
        .filter(apl_commands::action_id.eq(action_id))
        .select(CommandRow::as_select())
        .load(c)?)
}

/// Removes every command of the given channels; answers them.
pub fn take_all_of(
    c: &mut DbConnection,
    channel_ids: &[String],
) -> Result<Vec<CommandRow>, StoreError> {
    Ok(
        diesel::delete(apl_commands::table.filter(apl_commands::channel_id.eq_any(channel_ids)))
            .returning(apl_commands::all_columns)
            .get_results(c)?,
    )
}

/// Removes commands whose time ran out; answers them.
pub fn take_expired(
    c: &mut DbConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<CommandRow>, StoreError> {
    let ids: Vec<i64> = apl_commands::table
        .filter(apl_commands::expires_at.le(now))
        .select(apl_commands::id)
        .limit(limit)
        .load(c)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        diesel::delete(apl_commands::table.filter(apl_commands::id.eq_any(ids)))
            .returning(apl_commands::all_columns)
            .get_results(c)?,
    )
}

/// Channels with commands waiting, for the periodic re-push.
pub fn channels_with_queued(c: &mut DbConnection, limit: i64) -> Result<Vec<String>, StoreError> {
    Ok(apl_commands::table
        .select(apl_commands::channel_id)
        .distinct()
        .limit(limit)
        .load(c)?)
}

pub fn insert_results(c: &mut DbConnection, rows: &[CommandResultRow]) -> Result<(), StoreError> {
    for row in rows {
        on_backend!(c, cc => diesel::insert_into(apl_command_results::table)
            .values(row)
            .on_conflict(apl_command_results::command_uuid)
            .do_nothing()
            .execute(cc))?;
    }
    Ok(())
}

pub fn results_of(
    c: &mut DbConnection,
    channel_id: &str,
    limit: i64,
) -> Result<Vec<CommandResultRow>, StoreError> {
    Ok(apl_command_results::table
        .filter(apl_command_results::channel_id.eq(channel_id))
        .order(apl_command_results::completed_at.desc())
        .limit(limit)
        .select(CommandResultRow::as_select())
        .load(c)?)
}

pub fn result(c: &mut DbConnection, uuid: &str) -> Result<Option<CommandResultRow>, StoreError> {
    Ok(apl_command_results::table
        .find(uuid)
        .select(CommandResultRow::as_select())
        .first(c)
        .optional()?)
}

/// Forgets results and ended actions older than `before`; answers how many rows went.
pub fn prune(c: &mut DbConnection, before: i64) -> Result<usize, StoreError> {
    let results = diesel::delete(
        apl_command_results::table.filter(apl_command_results::completed_at.lt(before)),
    )
    .execute(c)?;
    let actions = diesel::delete(
        apl_actions::table
            .filter(apl_actions::updated_at.lt(before))
            .filter(apl_actions::state.ne_all(["queued", "active"])),
    )
    .execute(c)?;
    Ok(results + actions)
}

// ---- actions ----------------------------------------------------------------------

pub fn insert_action(c: &mut DbConnection, row: &ActionRow) -> Result<bool, StoreError> {
    let inserted = on_backend!(c, cc => diesel::insert_into(apl_actions::table)
        .values(row)
        .on_conflict(apl_actions::action_id)
        .do_nothing()
        .execute(cc))?;
    Ok(inserted == 1)
}

pub fn action(c: &mut DbConnection, id: ActionId) -> Result<Option<ActionRow>, StoreError> {
    Ok(apl_actions::table
        .find(id)
        .select(ActionRow::as_select())
        .first(c)
        .optional()?)
}

/// Moves an open action to `state`; false when it had already ended.
pub fn set_action_state(
    c: &mut DbConnection,
    id: ActionId,
    state: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        apl_actions::table
            .find(id)
            .filter(apl_actions::state.eq_any(["queued", "active"])),
    )
    .set((
        apl_actions::state.eq(state),
        apl_actions::updated_at.eq(now),
    ))
    .execute(c)?;
    Ok(updated == 1)
}

/// Open actions of a channel of a given kind (a retire in progress).
pub fn open_actions_of(
    c: &mut DbConnection,
    channel_id: &str,
) -> Result<Vec<ActionRow>, StoreError> {
    Ok(apl_actions::table
        .filter(apl_actions::channel_id.eq(channel_id))
        .filter(apl_actions::state.eq_any(["queued", "active"]))
        .select(ActionRow::as_select())
        .load(c)?)
}

pub fn expired_actions(
    c: &mut DbConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<ActionRow>, StoreError> {
    Ok(apl_actions::table
        .filter(apl_actions::state.eq_any(["queued", "active"]))
        .filter(apl_actions::expires_at.le(now))
        .limit(limit)
        .select(ActionRow::as_select())
        .load(c)?)
}

// ---- profiles and identities -------------------------------------------------------

pub fn insert_profile(c: &mut DbConnection, row: &EnrollmentProfileRow) -> Result<(), StoreError> {
    diesel::insert_into(apl_enrollment_profiles::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

pub fn profile(
    c: &mut DbConnection,
    id: EnrollmentId,
) -> Result<Option<EnrollmentProfileRow>, StoreError> {
    Ok(apl_enrollment_profiles::table
        .find(id)
        .select(EnrollmentProfileRow::as_select())
        .first(c)
        .optional()?)
}

/// A profile by its URL token, while it can still be downloaded.
pub fn downloadable_profile(
    c: &mut DbConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<EnrollmentProfileRow>, StoreError> {
    Ok(apl_enrollment_profiles::table
        .filter(apl_enrollment_profiles::token_hash.eq(token_hash))
        .filter(apl_enrollment_profiles::downloaded_at.is_null())
        .filter(apl_enrollment_profiles::expires_at.gt(now))
        .select(EnrollmentProfileRow::as_select())
        .first(c)
        .optional()?)
}

/// Claims the download of a profile by its URL token: once, before it expires.
pub fn claim_download(
    c: &mut DbConnection,
    token_hash: &[u8],
    challenge_hash: Option<Vec<u8>>,
    now: i64,
) -> Result<Option<EnrollmentProfileRow>, StoreError> {
    let claimed: Option<EnrollmentProfileRow> = diesel::update(
        apl_enrollment_profiles::table
            .filter(apl_enrollment_profiles::token_hash.eq(token_hash))
            .filter(apl_enrollment_profiles::downloaded_at.is_null())
            .filter(apl_enrollment_profiles::expires_at.gt(now)),
    )
    .set((
        apl_enrollment_profiles::downloaded_at.eq(now),
        apl_enrollment_profiles::challenge_hash.eq(challenge_hash),
    ))
    .returning(apl_enrollment_profiles::all_columns)
    .get_result(c)
    .optional()?;
    Ok(claimed)
}

/// Claims a SCEP challenge: once, before the profile expires.
pub fn claim_challenge(
    c: &mut DbConnection,
    challenge_hash: &[u8],
    now: i64,
) -> Result<Option<EnrollmentProfileRow>, StoreError> {
    Ok(diesel::update(
        apl_enrollment_profiles::table
            .filter(apl_enrollment_profiles::challenge_hash.eq(challenge_hash))
            .filter(apl_enrollment_profiles::challenge_used_at.is_null())
            .filter(apl_enrollment_profiles::expires_at.gt(now)),
    )
    .set(apl_enrollment_profiles::challenge_used_at.eq(now))
    .returning(apl_enrollment_profiles::all_columns)
    .get_result(c)
    .optional()?)
}

pub fn insert_identity(c: &mut DbConnection, row: &IdentityRow) -> Result<(), StoreError> {
    on_backend!(c, cc => diesel::insert_into(apl_identities::table)
        .values(row)
        .on_conflict(apl_identities::cert_hash)
        .do_nothing()
        .execute(cc))?;
    Ok(())
}

pub fn identity(c: &mut DbConnection, cert_hash: &[u8]) -> Result<Option<IdentityRow>, StoreError> {
    Ok(apl_identities::table
        .find(cert_hash)
        .select(IdentityRow::as_select())
        .first(c)
        .optional()?)
}

// ---- SCEP RA ----------------------------------------------------------------------

pub fn scep_ra(c: &mut DbConnection) -> Result<Option<ScepRaRow>, StoreError> {
    Ok(apl_scep_ra::table
        .find("ra")
        .select(ScepRaRow::as_select())
        .first(c)
        .optional()?)
}

/// Stores the RA unless another process stored one first; answers the one stored.
pub fn store_scep_ra(c: &mut DbConnection, row: &ScepRaRow) -> Result<ScepRaRow, StoreError> {
    on_backend!(c, cc => diesel::insert_into(apl_scep_ra::table)
        .values(row)
        .on_conflict(apl_scep_ra::name)
        .do_nothing()
        .execute(cc))?;
    Ok(apl_scep_ra::table
        .find(&row.name)
        .select(ScepRaRow::as_select())
        .first(c)?)
}
