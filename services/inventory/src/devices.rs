//! The managed-device registry: the rows, their wire forms, and the queries on them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFacts, DeviceFilter, DeviceRecord, Seen};
use mdm_api::public::ManagedDevice;
use mdm_domain::{DeviceContext, DeviceId, ManagementState, Platform, TenantId, UserId};
use mdm_store::models::inventory::{DeviceFactsChanges, DeviceRow};
use mdm_store::schema::inv_devices;
use mdm_store::{DbConnection, MultiBackend, StoreError, from_millis, to_millis};

use crate::error::{Error, Result};

diesel::define_sql_function! {
    /// SQL `lower()` of a nullable text column (the principal-name index is on it).
    #[sql_name = "lower"]
    fn lower_nullable(text: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Devices per page when the caller does not say.
pub const DEFAULT_PAGE: i64 = 100;
/// Devices per page at most.
pub const MAX_PAGE: i64 = 1000;
/// The longest text fact kept (names, models, serial numbers); longer ones are cut.
const MAX_FACT_CHARS: usize = 256;
/// Ids bound in one `IN (...)` list (SQLite allows 32,766 parameters per statement).
pub const IDS_PER_QUERY: usize = 10_000;

/// The device as the registry's internal API answers it.
pub fn to_record(row: &DeviceRow) -> DeviceRecord {
    DeviceRecord {
        id: row.id,
        tenant_id: row.tenant_id,
        enrollment_id: row.enrollment_id,
        platform: row.platform,
        os_version: row.os_version.as_deref().and_then(|v| v.parse().ok()),
        ownership: row.ownership,
        management_mode: row.management_mode,
        management_state: row.management_state,
        user_id: row.user_id,
        user_principal_name: row.user_principal_name.clone(),
        is_passcode_present: row.is_passcode_present,
        directory_joined: row.directory_joined,
        manufacturer: row.manufacturer.clone(),
        model: row.model.clone(),
        device_name: row.device_name.clone(),
        serial_number: row.serial_number.clone(),
        enrolled_at: from_millis(row.enrolled_at),
        last_sync_at: row.last_sync_at.map(from_millis),
    }
}

/// The device as the public API lists it (without its actions and unlock PIN).
pub fn to_wire(row: DeviceRow) -> ManagedDevice {
    ManagedDevice {
        id: row.id,
        device_name: row.device_name,
        operating_system: row.platform,
        os_version: row.os_version,
        model: row.model,
        manufacturer: row.manufacturer,
        serial_number: row.serial_number,
        imei: row.imei,
        managed_device_owner_type: row.ownership,
        management_mode: row.management_mode,
        management_state: row.management_state,
        enrolled_date_time: from_millis(row.enrolled_at),
        last_sync_date_time: row.last_sync_at.map(from_millis),
        user_id: row.user_id,
        user_principal_name: row.user_principal_name,
        is_passcode_present: row.is_passcode_present,
        is_supervised: row.is_supervised,
        is_encrypted: row.is_encrypted,
        directory_joined: row.directory_joined,
        device_action_results: None,
        lock_pin: None,
    }
}

/// What the capability check needs to know of the device. The licence of its user does
/// not matter to the actions inventory checks (delete), so it is left unknown.
pub fn capability_context(row: &DeviceRow) -> DeviceContext {
    DeviceContext {
        platform: row.platform,
        os_version: row.os_version.as_deref().and_then(|v| v.parse().ok()),
        ownership: row.ownership,
        management_mode: row.management_mode,
        management_state: row.management_state,
        directory_joined: row.directory_joined,
        is_passcode_present: row.is_passcode_present,
        user_licensed: None,
    }
}

/// The device, in whichever tenant.
pub fn find_any(conn: &mut DbConnection, id: DeviceId) -> Result<Option<DeviceRow>, StoreError> {
    Ok(inv_devices::table
        .find(id)
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()?)
}

/// The device if it belongs to `tenant`.
pub fn find(conn: &mut DbConnection, tenant: TenantId, id: DeviceId) -> Result<Option<DeviceRow>> {
    Ok(inv_devices::table
        .find(id)
        .filter(inv_devices::tenant_id.eq(tenant))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()?)
}

/// The device of `tenant`, or `NotFound`.
pub fn get(conn: &mut DbConnection, tenant: TenantId, id: DeviceId) -> Result<DeviceRow> {
    find(conn, tenant, id)?.ok_or(Error::NotFound("managed device"))
}

/// The tenant's devices matching `filter`, in id order, after `after`, at most `limit`.
/// Every filter has an index that keeps id order, so a deep page costs what the first
/// does.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    filter: &DeviceFilter,
    after: Option<DeviceId>,
    limit: i64,
) -> Result<Vec<DeviceRow>> {
    let mut query = matching(tenant, filter)
        .select(DeviceRow::as_select())
        .order(inv_devices::id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(inv_devices::id.gt(after));
    }
    Ok(query.load(conn)?)
}

/// Every id of the tenant's devices matching `filter`, in id order (bulk actions).
pub fn select_ids(
    conn: &mut DbConnection,
    tenant: TenantId,
    filter: &DeviceFilter,
) -> Result<Vec<DeviceId>> {
    Ok(matching(tenant, filter)
        .select(inv_devices::id)
        .order(inv_devices::id)
        .load(conn)?)
}

/// The tenant's devices that match `filter`.
fn matching(
    tenant: TenantId,
    filter: &DeviceFilter,
) -> inv_devices::BoxedQuery<'static, MultiBackend> {
    let mut query = inv_devices::table
        .filter(inv_devices::tenant_id.eq(tenant))
        .into_boxed();
    if let Some(platform) = filter.operating_system {
        query = query.filter(inv_devices::platform.eq(platform));
    }
    if let Some(ownership) = filter.owner_type {
        query = query.filter(inv_devices::ownership.eq(ownership));
    }
    if let Some(state) = filter.management_state {
        query = query.filter(inv_devices::management_state.eq(state));
    }
    if let Some(upn) = &filter.user_principal_name {
        // As the index: principal names compare without regard to case.
        query = query
            .filter(lower_nullable(inv_devices::user_principal_name).eq(upn.trim().to_lowercase()));
    }
    if let Some(user) = filter.user_id {
        query = query.filter(inv_devices::user_id.eq(user));
    }
    if let Some(before) = filter.last_sync_before {
        query = query.filter(inv_devices::last_sync_at.lt(to_millis(before)));
    }
    query
}

/// Those of `ids` that are devices of `tenant`.
pub fn lookup(
    conn: &mut DbConnection,
    tenant: TenantId,
    ids: &[DeviceId],
) -> Result<Vec<DeviceRow>> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        rows.extend(
            inv_devices::table
                .filter(inv_devices::tenant_id.eq(tenant))
                .filter(inv_devices::id.eq_any(chunk))
                .select(DeviceRow::as_select())
                .load(conn)?,
        );
    }
    Ok(rows)
}

/// The Windows device of the tenant with this serial number, the latest enrolled first.
pub fn windows_device_with_serial(
    conn: &mut DbConnection,
    tenant: TenantId,
    serial: &str,
) -> Result<Option<DeviceId>> {
    Ok(inv_devices::table
        .filter(inv_devices::tenant_id.eq(tenant))
        .filter(inv_devices::serial_number.eq(serial))
        .filter(inv_devices::platform.eq(Platform::Windows))
        .order(inv_devices::enrolled_at.desc())
        .select(inv_devices::id)
        .first(conn)
        .optional()?)
}

/// Why an enrollment message cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("device {0} is registered to another tenant")]
    OtherTenant(DeviceId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for EnrollError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Creates the device, or brings a known one back under management (a re-enrollment):
/// it is `managed` again with the enrollment's owner, user and mode, and keeps the facts
/// the message does not carry. Enrolling counts as contact with the device.
pub fn enroll(
    conn: &mut DbConnection,
    message: &DeviceEnrolled,
    now: DateTime<Utc>,
) -> Result<DeviceRow, EnrollError> {
    let existing = find_any(conn, message.device_id)?;
    if existing
        .as_ref()
        .is_some_and(|row| row.tenant_id != message.tenant_id)
    {
        return Err(EnrollError::OtherTenant(message.device_id));
    }
    let now_ms = to_millis(now);
    let enrolled_at = to_millis(message.enrolled_at);
    let known = existing.is_some();
    let mut row = existing.unwrap_or(DeviceRow {
        id: message.device_id,
        tenant_id: message.tenant_id,
        enrollment_id: message.enrollment_id,
        platform: message.platform,
        os_version: None,
        ownership: message.ownership,
        management_mode: message.management_mode,
        management_state: ManagementState::Managed,
        user_id: None,
        user_principal_name: None,
        device_name: None,
        model: None,
        manufacturer: None,
        serial_number: None,
        imei: None,
        is_passcode_present: None,
        is_supervised: None,
        is_encrypted: None,
        directory_joined: false,
        identity_certificate_expires_at: None,
        enrolled_at,
        last_sync_at: None,
        state_changed_at: now_ms,
        updated_at: now_ms,
    });
    if row.management_state != ManagementState::Managed {
        row.state_changed_at = now_ms;
    }
    row.enrollment_id = message.enrollment_id;
    row.platform = message.platform;
    row.ownership = message.ownership;
    row.management_mode = message.management_mode;
    row.management_state = ManagementState::Managed;
    row.user_id = message.user_id;
    row.user_principal_name = message.user_principal_name.as_deref().and_then(clean);
    row.directory_joined = message.directory_joined;
    row.enrolled_at = enrolled_at;
    row.last_sync_at = Some(row.last_sync_at.unwrap_or(enrolled_at).max(enrolled_at));
    row.updated_at = now_ms;
    apply_facts(&mut row, &message.facts);
    if known {
        diesel::update(inv_devices::table.find(row.id))
            .set(&full_changes(&row))
            .execute(conn)?;
    } else {
        diesel::insert_into(inv_devices::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(row)
}

/// Every column but the id, for rewriting a whole row (NULLs included).
#[derive(AsChangeset)]
#[diesel(table_name = inv_devices, treat_none_as_null = true)]
struct FullChanges<'a> {
    tenant_id: TenantId,
    enrollment_id: mdm_domain::EnrollmentId,
    platform: Platform,
    os_version: Option<&'a str>,
    ownership: mdm_domain::Ownership,
    management_mode: Option<mdm_domain::ManagementMode>,
    management_state: ManagementState,
    user_id: Option<UserId>,
    user_principal_name: Option<&'a str>,
    device_name: Option<&'a str>,
    model: Option<&'a str>,
    manufacturer: Option<&'a str>,
    serial_number: Option<&'a str>,
    imei: Option<&'a str>,
    is_passcode_present: Option<bool>,
    is_supervised: Option<bool>,
    is_encrypted: Option<bool>,
    directory_joined: bool,
    identity_certificate_expires_at: Option<i64>,
    enrolled_at: i64,
    last_sync_at: Option<i64>,
    state_changed_at: i64,
    updated_at: i64,
}

fn full_changes(row: &DeviceRow) -> FullChanges<'_> {
    FullChanges {
        tenant_id: row.tenant_id,
        enrollment_id: row.enrollment_id,
        platform: row.platform,
        os_version: row.os_version.as_deref(),
        ownership: row.ownership,
        management_mode: row.management_mode,
        management_state: row.management_state,
        user_id: row.user_id,
        user_principal_name: row.user_principal_name.as_deref(),
        device_name: row.device_name.as_deref(),
        model: row.model.as_deref(),
        manufacturer: row.manufacturer.as_deref(),
        serial_number: row.serial_number.as_deref(),
        imei: row.imei.as_deref(),
        is_passcode_present: row.is_passcode_present,
        is_supervised: row.is_supervised,
        is_encrypted: row.is_encrypted,
        directory_joined: row.directory_joined,
        identity_certificate_expires_at: row.identity_certificate_expires_at,
        enrolled_at: row.enrolled_at,
        last_sync_at: row.last_sync_at,
        state_changed_at: row.state_changed_at,
        updated_at: row.updated_at,
    }
}

/// Overwrites the facts that `facts` carries.
fn apply_facts(row: &mut DeviceRow, facts: &DeviceFacts) {
    let changes = facts_changes(facts, row.updated_at);
    let keep = |new: Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            *old = new;
        }
    };
    keep(changes.os_version, &mut row.os_version);
    keep(changes.device_name, &mut row.device_name);
    keep(changes.model, &mut row.model);
    keep(changes.manufacturer, &mut row.manufacturer);
    keep(changes.serial_number, &mut row.serial_number);
    keep(changes.imei, &mut row.imei);
    row.is_passcode_present = changes.is_passcode_present.or(row.is_passcode_present);
    row.is_supervised = changes.is_supervised.or(row.is_supervised);
    row.is_encrypted = changes.is_encrypted.or(row.is_encrypted);
    row.identity_certificate_expires_at = changes
        .identity_certificate_expires_at
        .or(row.identity_certificate_expires_at);
}

fn facts_changes(facts: &DeviceFacts, now_ms: i64) -> DeviceFactsChanges {
    DeviceFactsChanges {
        os_version: facts.os_version.map(|v| v.to_string()),
        device_name: facts.device_name.as_deref().and_then(clean),
        model: facts.model.as_deref().and_then(clean),
        manufacturer: facts.manufacturer.as_deref().and_then(clean),
        serial_number: facts.serial_number.as_deref().and_then(clean),
        imei: facts.imei.as_deref().and_then(clean),
        is_passcode_present: facts.is_passcode_present,
        is_supervised: facts.is_supervised,
        is_encrypted: facts.is_encrypted,
        identity_certificate_expires_at: facts.identity_certificate_expires_at.map(to_millis),
        updated_at: now_ms,
    }
}

/// A reported text without surrounding white space, cut to a sane length; nothing when
/// empty.
fn clean(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_FACT_CHARS).collect())
}

/// Stores the facts present in `facts`; answers the device, or `None` when it is not
/// (or no longer) registered.
pub fn report_facts(
    conn: &mut DbConnection,
    id: DeviceId,
    facts: &DeviceFacts,
    now: DateTime<Utc>,
) -> Result<Option<DeviceRow>, StoreError> {
    let updated = diesel::update(inv_devices::table.find(id))
        .set(&facts_changes(facts, to_millis(now)))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    find_any(conn, id)
}

/// Records check-ins: each device's `last_sync_at` becomes the later of its own and the
/// reported time. One statement on PostgreSQL; on SQLite (in process, no round trips) one
/// cached statement per device, all inside the caller's transaction. Answers how many
/// devices moved forward.
pub fn mark_seen(conn: &mut DbConnection, seen: &[Seen]) -> Result<usize, StoreError> {
    // The latest time per device, so that one device appears once.
    let mut latest: Vec<(DeviceId, i64)> = seen
        .iter()
        .map(|s| (s.device_id, to_millis(s.at)))
        .collect();
    latest.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    latest.dedup_by_key(|(id, _)| *id);
    if latest.is_empty() {
        return Ok(0);
    }
    match conn {
        DbConnection::Pg(c) => {
            use diesel::sql_types::{Array, BigInt, Binary};
            let (ids, ats): (Vec<DeviceId>, Vec<i64>) = latest.into_iter().unzip();
            Ok(diesel::sql_query(
                "UPDATE inv_devices AS d SET last_sync_at = s.at \
                 FROM unnest($1::bytea[], $2::bigint[]) AS s(id, at) \
                 WHERE d.id = s.id AND (d.last_sync_at IS NULL OR d.last_sync_at < s.at)",
            )
            .bind::<Array<Binary>, _>(ids)
            .bind::<Array<BigInt>, _>(ats)
            .execute(c)?)
        }
        DbConnection::Sqlite(c) => {
            let mut moved = 0;
            for (id, at) in latest {
                moved += diesel::update(inv_devices::table.find(id))
                    .filter(
                        inv_devices::last_sync_at
                            .is_null()
                            .or(inv_devices::last_sync_at.lt(at)),
                    )
                    .set(inv_devices::last_sync_at.eq(at))
                    .execute(c)?;
            }
            Ok(moved)
        }
    }
}

/// Sets the device's management state; answers the device, or `None` when it is not
/// registered.
pub fn set_state(
    conn: &mut DbConnection,
    id: DeviceId,
    state: ManagementState,
    now: DateTime<Utc>,
) -> Result<Option<DeviceRow>, StoreError> {
    let now_ms = to_millis(now);
    let updated = diesel::update(inv_devices::table.find(id))
        .set((
            inv_devices::management_state.eq(state),
            inv_devices::state_changed_at.eq(now_ms),
            inv_devices::updated_at.eq(now_ms),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    find_any(conn, id)
}

/// Moves the device to `deletePending` unless it is there already; answers whether it
/// moved. The condition makes two concurrent deletes safe: only one of them moves it.
pub fn mark_delete_pending(
    conn: &mut DbConnection,
    id: DeviceId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let now_ms = to_millis(now);
    let updated = diesel::update(inv_devices::table.find(id))
        .filter(inv_devices::management_state.ne(ManagementState::DeletePending))
        .set((
            inv_devices::management_state.eq(ManagementState::DeletePending),
            inv_devices::state_changed_at.eq(now_ms),
            inv_devices::updated_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}
