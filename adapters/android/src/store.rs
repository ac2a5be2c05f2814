//! Queries on the adapter's tables (`and_*`), written once for both backends.

use diesel::prelude::*;
use mdm_domain::{ActionId, DeviceId, TenantId};
use mdm_store::models::android::{
    ActionRow, DeviceRow, EarlyOperationRow, EnrollmentTokenRow, EnterpriseRow, PubsubReceiptRow,
};
use mdm_store::schema::{
    and_actions, and_devices, and_early_operations, and_enrollment_tokens, and_enterprises,
    and_pubsub_receipts,
};
use mdm_store::{DbConnection, StoreError, on_backend};

/// Where a device stands with this adapter.
pub mod device_state {
    /// Enrolled at Google; the enrollment gate has not answered yet.
    pub const ENROLLING: &str = "enrolling";
    pub const MANAGED: &str = "managed";
    /// To be deleted at Google (`devices.delete`), then `removed`.
    pub const DELETING: &str = "deleting";
    /// Gone: deleted, wiped, retired, or vanished at Google.
    pub const REMOVED: &str = "removed";
    /// Refused by the gate and deleted at Google.
    pub const REFUSED: &str = "refused";
}

/// Where an action stands with AMAPI (the outcomes are `ActionState` wire names).
pub mod phase {
    pub const QUEUED: &str = "queued";
    pub const ISSUED: &str = "issued";
    pub const CANCEL_REQUESTED: &str = "cancelRequested";

    pub fn is_terminal(phase: &str) -> bool {
        !matches!(phase, QUEUED | ISSUED | CANCEL_REQUESTED)
    }
}

// ---- enterprises -----------------------------------------------------------------------

pub fn enterprise_of_tenant(
    c: &mut DbConnection,
    tenant: TenantId,
) -> Result<Option<EnterpriseRow>, StoreError> {
    Ok(and_enterprises::table
        .find(tenant)
        .select(EnterpriseRow::as_select())
        .first(c)
        .optional()?)
}

pub fn enterprise_by_name(
    c: &mut DbConnection,
    name: &str,
) -> Result<Option<EnterpriseRow>, StoreError> {
    Ok(and_enterprises::table
        .filter(and_enterprises::enterprise_name.eq(name))
        .select(EnterpriseRow::as_select())
        .first(c)
        .optional()?)
}

pub fn enterprises(c: &mut DbConnection) -> Result<Vec<EnterpriseRow>, StoreError> {
    Ok(and_enterprises::table
        .select(EnterpriseRow::as_select())
        .load(c)?)
}

/// Records a binding, replacing the tenant's earlier one.
pub fn save_enterprise(c: &mut DbConnection, row: &EnterpriseRow) -> Result<(), StoreError> {
    diesel::delete(and_enterprises::table.find(row.tenant_id)).execute(c)?;
    diesel::insert_into(and_enterprises::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

pub fn mark_upgraded(c: &mut DbConnection, name: &str, at: i64) -> Result<usize, StoreError> {
    Ok(
        diesel::update(and_enterprises::table.filter(and_enterprises::enterprise_name.eq(name)))
            .set((
                and_enterprises::upgraded_at.eq(at),
                and_enterprises::updated_at.eq(at),
            ))
            .execute(c)?,
    )
}

// ---- enrollment tokens -----------------------------------------------------------------

pub fn insert_token(c: &mut DbConnection, row: &EnrollmentTokenRow) -> Result<(), StoreError> {
    diesel::insert_into(and_enrollment_tokens::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

pub fn token_by_name(
    c: &mut DbConnection,
    name: &str,
) -> Result<Option<EnrollmentTokenRow>, StoreError> {
    Ok(and_enrollment_tokens::table
        .filter(and_enrollment_tokens::name.eq(name))
        .select(EnrollmentTokenRow::as_select())
        .first(c)
        .optional()?)
}

pub fn token_by_id(
    c: &mut DbConnection,
    tenant: TenantId,
    id: &[u8],
) -> Result<Option<EnrollmentTokenRow>, StoreError> {
    Ok(and_enrollment_tokens::table
        .find(id)
        .filter(and_enrollment_tokens::tenant_id.eq(tenant))
        .select(EnrollmentTokenRow::as_select())
        .first(c)
        .optional()?)
}

pub fn tokens_of_tenant(
    c: &mut DbConnection,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<EnrollmentTokenRow>, StoreError> {
    Ok(and_enrollment_tokens::table
        .filter(and_enrollment_tokens::tenant_id.eq(tenant))
        .order(and_enrollment_tokens::created_at.desc())
        .limit(limit)
        .select(EnrollmentTokenRow::as_select())
        .load(c)?)
}

pub fn revoke_token(c: &mut DbConnection, id: &[u8], at: i64) -> Result<(), StoreError> {
    diesel::update(and_enrollment_tokens::table.find(id))
        .set(and_enrollment_tokens::revoked_at.eq(at))
        .execute(c)?;
    Ok(())
}

// ---- devices ---------------------------------------------------------------------------

pub fn device(c: &mut DbConnection, id: DeviceId) -> Result<Option<DeviceRow>, StoreError> {
    Ok(and_devices::table
        .find(id)
        .select(DeviceRow::as_select())
        .first(c)
        .optional()?)
}

pub fn device_by_name(c: &mut DbConnection, name: &str) -> Result<Option<DeviceRow>, StoreError> {
    Ok(and_devices::table
        .filter(and_devices::amapi_name.eq(name))
        .select(DeviceRow::as_select())
        .first(c)
        .optional()?)
}

/// Locks a device's row until the transaction ends (PostgreSQL; SQLite's single writer
/// serializes anyway), so that the answer of issueCommand and a COMMAND notification for
/// the same device are recorded one after the other, never past each other.
pub fn lock_device(c: &mut DbConnection, name: &str) -> Result<(), StoreError> {
    match c {
        DbConnection::Pg(pg) => {
            and_devices::table
                .filter(and_devices::amapi_name.eq(name))
                .select(and_devices::device_id)
                .for_update()
                .load::<DeviceId>(pg)?;
        }
        DbConnection::Sqlite(_) => {}
    }
    Ok(())
}

pub fn insert_device(c: &mut DbConnection, row: &DeviceRow) -> Result<(), StoreError> {
    diesel::insert_into(and_devices::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

/// Devices in `state` whose work is due, oldest first.
pub fn due_devices(
    c: &mut DbConnection,
    state: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<DeviceRow>, StoreError> {
    Ok(and_devices::table
        .filter(and_devices::state.eq(state))
        .filter(and_devices::next_attempt_at.le(now))
        .filter(
            and_devices::lease_until
                .is_null()
                .or(and_devices::lease_until.le(now)),
        )
        .order(and_devices::next_attempt_at.asc())
        .limit(limit)
        .select(DeviceRow::as_select())
        .load(c)?)
}

/// Takes a device's pending work for `lease` milliseconds; false when another worker
/// holds it or the work is gone.
pub fn claim_device(
    c: &mut DbConnection,
    id: DeviceId,
    state: &str,
    now: i64,
    lease: i64,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        and_devices::table
            .find(id)
            .filter(and_devices::state.eq(state))
            .filter(
                and_devices::lease_until
                    .is_null()
                    .or(and_devices::lease_until.le(now)),
            ),
    )
    .set(and_devices::lease_until.eq(now + lease))
    .execute(c)?;
    Ok(updated == 1)
}

pub fn set_device_state(
    c: &mut DbConnection,
    id: DeviceId,
    state: &str,
    next_attempt_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_devices::table.find(id))
        .set((
            and_devices::state.eq(state),
            and_devices::next_attempt_at.eq(next_attempt_at),
            and_devices::lease_until.eq(None::<i64>),
            and_devices::attempts.eq(0),
            and_devices::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

/// A device's work failed for now: try again at `next`.
pub fn retry_device(
    c: &mut DbConnection,
    id: DeviceId,
    next: i64,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_devices::table.find(id))
        .set((
            and_devices::attempts.eq(and_devices::attempts + 1),
            and_devices::next_attempt_at.eq(next),
            and_devices::lease_until.eq(None::<i64>),
            and_devices::last_error.eq(error),
            and_devices::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

pub fn update_facts(
    c: &mut DbConnection,
    id: DeviceId,
    facts: &str,
    hash: &str,
    api_level: Option<i32>,
    report_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_devices::table.find(id))
        .set((
            and_devices::facts.eq(facts),
            and_devices::facts_hash.eq(hash),
            and_devices::api_level.eq(api_level),
            and_devices::last_report_at.eq(report_at),
            and_devices::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

/// Notes that a device was heard from at `at` (never moves back).
pub fn mark_seen(c: &mut DbConnection, id: DeviceId, at: i64) -> Result<(), StoreError> {
    diesel::update(
        and_devices::table.find(id).filter(
            and_devices::seen_at
                .is_null()
                .or(and_devices::seen_at.lt(at)),
        ),
    )
    .set(and_devices::seen_at.eq(at))
    .execute(c)?;
    Ok(())
}

/// Managed devices heard from since they were last reported to inventory.
pub fn unreported_seen(c: &mut DbConnection, limit: i64) -> Result<Vec<DeviceRow>, StoreError> {
    Ok(and_devices::table
        .filter(and_devices::state.eq(device_state::MANAGED))
        .filter(and_devices::seen_at.is_not_null())
        .filter(
            and_devices::seen_sent_at
                .is_null()
                .or(and_devices::seen_sent_at.lt(and_devices::seen_at)),
        )
        .limit(limit)
        .select(DeviceRow::as_select())
        .load(c)?)
}

pub fn mark_seen_sent(c: &mut DbConnection, id: DeviceId, at: i64) -> Result<(), StoreError> {
    diesel::update(and_devices::table.find(id))
        .set(and_devices::seen_sent_at.eq(at))
        .execute(c)?;
    Ok(())
}

pub fn managed_devices_of(
    c: &mut DbConnection,
    tenant: TenantId,
) -> Result<Vec<DeviceRow>, StoreError> {
    Ok(and_devices::table
        .filter(and_devices::tenant_id.eq(tenant))
        .filter(and_devices::state.eq(device_state::MANAGED))
        .select(DeviceRow::as_select())
        .load(c)?)
}

// ---- actions ---------------------------------------------------------------------------

pub fn action(c: &mut DbConnection, id: ActionId) -> Result<Option<ActionRow>, StoreError> {
    Ok(and_actions::table
        .find(id)
        .select(ActionRow::as_select())
        .first(c)
        .optional()?)
}

pub fn action_by_operation(
    c: &mut DbConnection,
    operation: &str,
) -> Result<Option<ActionRow>, StoreError> {
    Ok(and_actions::table
        .filter(and_actions::operation_name.eq(operation))
        .select(ActionRow::as_select())
        .first(c)
        .optional()?)
}

/// Inserts an action unless one with its id exists; true when inserted.
pub fn insert_action(c: &mut DbConnection, row: &ActionRow) -> Result<bool, StoreError> {
    let inserted = on_backend!(c, cc => diesel::insert_into(and_actions::table)
        .values(row)
        .on_conflict(and_actions::action_id)
        .do_nothing()
        .execute(cc))?;
    Ok(inserted == 1)
}

/// Actions in `phase` that are due, priority first, then oldest.
pub fn due_actions(
    c: &mut DbConnection,
    phase: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<ActionRow>, StoreError> {
    Ok(and_actions::table
        .filter(and_actions::phase.eq(phase))
        .filter(and_actions::next_attempt_at.le(now))
        .filter(
            and_actions::lease_until
                .is_null()
                .or(and_actions::lease_until.le(now)),
        )
        .order((
            and_actions::priority.desc(),
            and_actions::requested_at.asc(),
        ))
        .limit(limit)
        .select(ActionRow::as_select())
        .load(c)?)
}

pub fn claim_action(
    c: &mut DbConnection,
    id: ActionId,
    phase: &str,
    now: i64,
    lease: i64,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        and_actions::table
            .find(id)
            .filter(and_actions::phase.eq(phase))
            .filter(
                and_actions::lease_until
                    .is_null()
                    .or(and_actions::lease_until.le(now)),
            ),
    )
    .set(and_actions::lease_until.eq(now + lease))
    .execute(c)?;
    // The first attempt whose outcome is not yet known began now; an earlier one that
    // never recorded its outcome (a crash, a lost write, a timeout) keeps its start.
    diesel::update(
        and_actions::table
            .find(id)
            .filter(and_actions::attempt_started_at.is_null()),
    )
    .set(and_actions::attempt_started_at.eq(now))
    .execute(c)?;
    Ok(updated == 1)
}

/// Which of these operation names an action has recorded already.
pub fn recorded_operations(
    c: &mut DbConnection,
    names: &[String],
) -> Result<Vec<String>, StoreError> {
    Ok(and_actions::table
        .filter(and_actions::operation_name.eq_any(names))
        .select(and_actions::operation_name.assume_not_null())
        .load(c)?)
}

/// Open actions of a device.
pub fn open_actions_of(
    c: &mut DbConnection,
    device: DeviceId,
) -> Result<Vec<ActionRow>, StoreError> {
    Ok(and_actions::table
        .filter(and_actions::device_id.eq(device))
        .filter(and_actions::phase.eq_any([phase::QUEUED, phase::ISSUED, phase::CANCEL_REQUESTED]))
        .select(ActionRow::as_select())
        .load(c)?)
}

pub fn set_phase(
    c: &mut DbConnection,
    id: ActionId,
    phase: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_actions::table.find(id))
        .set((
            and_actions::phase.eq(phase),
            and_actions::lease_until.eq(None::<i64>),
            and_actions::attempt_started_at.eq(None::<i64>),
            and_actions::last_error.eq(error),
            and_actions::next_attempt_at.eq(now),
            and_actions::news_at.eq(now),
            and_actions::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

pub fn set_issued(
    c: &mut DbConnection,
    id: ActionId,
    operation: &str,
    sealed_passcode: Option<Vec<u8>>,
    next_poll: i64,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_actions::table.find(id))
        .set((
            and_actions::phase.eq(phase::ISSUED),
            and_actions::operation_name.eq(operation),
            and_actions::sealed_passcode.eq(sealed_passcode),
            and_actions::issued_at.eq(now),
            and_actions::news_at.eq(now),
            and_actions::lease_until.eq(None::<i64>),
            and_actions::attempt_started_at.eq(None::<i64>),
            and_actions::next_attempt_at.eq(next_poll),
            and_actions::last_error.eq(None::<String>),
            and_actions::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

/// A failed attempt, tried again at `next`. Unless its `outcome` is unknown (the call may
/// have reached Google), the attempt is over: the next one need not look for it.
pub fn retry_action(
    c: &mut DbConnection,
    id: ActionId,
    next: i64,
    error: &str,
    outcome: Outcome,
    now: i64,
) -> Result<(), StoreError> {
    if outcome == Outcome::Known {
        diesel::update(and_actions::table.find(id))
            .set(and_actions::attempt_started_at.eq(None::<i64>))
            .execute(c)?;
    }
    diesel::update(and_actions::table.find(id))
        .set((
            and_actions::attempts.eq(and_actions::attempts + 1),
            and_actions::next_attempt_at.eq(next),
            and_actions::lease_until.eq(None::<i64>),
            and_actions::last_error.eq(error),
            and_actions::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

/// Whether a failed attempt's call may have taken effect at Google.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Google answered (or nothing was sent): the command was not issued.
    Known,
    /// No answer was heard (a timeout, a broken connection) or the lookup of an earlier
    /// such attempt failed: the next attempt asks Google first.
    Unknown,
}

/// An issued action still in progress: look again at `next`.
pub fn set_next_poll(
    c: &mut DbConnection,
    id: ActionId,
    next: i64,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(and_actions::table.find(id))
        .set((
            and_actions::next_attempt_at.eq(next),
            and_actions::lease_until.eq(None::<i64>),
            and_actions::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

/// The most recent completed passcode reset of a device.
pub fn last_passcode_reset(
    c: &mut DbConnection,
    device: DeviceId,
) -> Result<Option<ActionRow>, StoreError> {
    Ok(and_actions::table
        .filter(and_actions::device_id.eq(device))
        .filter(and_actions::kind.eq(mdm_domain::ActionKind::ResetPasscode))
        .filter(and_actions::sealed_passcode.is_not_null())
        .order(and_actions::created_at.desc())
        .select(ActionRow::as_select())
        .first(c)
        .optional()?)
}

// ---- Pub/Sub receipts ------------------------------------------------------------------

/// Records a message id; false when it was handled before.
pub fn insert_receipt(c: &mut DbConnection, row: &PubsubReceiptRow) -> Result<bool, StoreError> {
    let inserted = on_backend!(c, cc => diesel::insert_into(and_pubsub_receipts::table)
        .values(row)
        .on_conflict(and_pubsub_receipts::message_id)
        .do_nothing()
        .execute(cc))?;
    Ok(inserted == 1)
}

pub fn set_receipt_outcome(
    c: &mut DbConnection,
    message_id: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    diesel::update(and_pubsub_receipts::table.find(message_id))
        .set(and_pubsub_receipts::outcome.eq(outcome))
        .execute(c)?;
    Ok(())
}

pub fn prune_receipts(c: &mut DbConnection, before: i64) -> Result<usize, StoreError> {
    let early = diesel::delete(
        and_early_operations::table.filter(and_early_operations::received_at.lt(before)),
    )
    .execute(c)?;
    Ok(early
        + diesel::delete(
            and_pubsub_receipts::table.filter(and_pubsub_receipts::received_at.lt(before)),
        )
        .execute(c)?)
}

/// Keeps a COMMAND notification that came before its operation was recorded.
pub fn keep_early_operation(
    c: &mut DbConnection,
    row: &EarlyOperationRow,
) -> Result<(), StoreError> {
    on_backend!(c, cc => diesel::insert_into(and_early_operations::table)
        .values(row)
        .on_conflict(and_early_operations::operation_name)
        .do_nothing()
        .execute(cc))?;
    Ok(())
}

/// Takes the early COMMAND notification of an operation, if one came.
pub fn take_early_operation(
    c: &mut DbConnection,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let found: Option<EarlyOperationRow> = and_early_operations::table
        .find(name)
        .select(EarlyOperationRow::as_select())
        .first(c)
        .optional()?;
    if found.is_some() {
        diesel::delete(and_early_operations::table.find(name)).execute(c)?;
    }
    Ok(found.map(|row| row.payload))
}
