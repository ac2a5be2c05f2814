//! Clean-up rules, run as background jobs that one replica at a time runs (the runtime
//! holds a lease per job in the database):
//!
//! - **inactivity**: a tenant's `managedDeviceCleanupSettings` (off, or 90 to 270 days):
//!   devices whose last check-in is older are deleted from management. The same job
//!   removes devices stuck in `deletePending` whose last check-in is older than the
//!   tenant's window, or 90 days when the tenant's rule is off (a deleted device that
//!   never checks in again cannot complete its retire).
//! - **certificate**: a device whose MDM identity certificate expired 180 days ago and
//!   that has not checked in for 180 days since.
//!
//! A removal deletes the record with its directory record and group memberships, tells
//! dispatch (`DevicesRemoved`: the devices' open actions end) and each device's adapter
//! (`DeviceRemoved`), and leaves a system audit event per device, all in the transaction
//! that removes it. Times come from the injected clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::dsl::{not, sql};
use diesel::prelude::*;
use mdm_api::internal::dispatch::DevicesRemoved;
use mdm_api::public::ManagedDeviceCleanupSettings;
use mdm_domain::{DeviceId, TenantId};
use mdm_runtime::audit;
use mdm_runtime::jobs::Job;
use mdm_runtime::outbox::Outbox;
use mdm_store::models::inventory::CleanupSettingsRow;
use mdm_store::schema::{inv_cleanup_settings, inv_devices};
use mdm_store::{DbConnection, StoreError, from_millis, on_backend, to_millis};
use serde_json::json;

use crate::error::{Error, Result};
use crate::removal;
use crate::routes::State;

/// The lease and metric name of the inactivity rule's job.
pub const INACTIVITY_JOB: &str = "inventory-inactivity-cleanup";
/// The lease and metric name of the certificate rule's job.
pub const CERTIFICATE_JOB: &str = "inventory-certificate-cleanup";

/// The shortest and longest inactivity windows a tenant may choose.
pub const MIN_INACTIVITY_DAYS: u16 = 90;
pub const MAX_INACTIVITY_DAYS: u16 = 270;
/// How long a `deletePending` device may stay silent when the tenant's rule is off.
pub const DELETE_PENDING_DAYS: i64 = 90;
/// Days after its identity certificate expired (without a check-in since) that a device
/// is removed.
pub const CERTIFICATE_DAYS: i64 = 180;

/// Why a record was removed, as metrics and the audit trail name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Inactivity,
    DeletePending,
    Certificate,
}

impl Rule {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inactivity => "inactivity",
            Self::DeletePending => "deletePending",
            Self::Certificate => "certificate",
        }
    }
}

// ---- settings ------------------------------------------------------------------------

pub fn settings(conn: &mut DbConnection, tenant: TenantId) -> Result<ManagedDeviceCleanupSettings> {
    let days: Option<Option<i32>> = inv_cleanup_settings::table
        .find(tenant)
        .select(inv_cleanup_settings::inactivity_days)
        .first(conn)
        .optional()?;
    Ok(ManagedDeviceCleanupSettings {
        device_inactivity_before_retirement_in_days: days
            .flatten()
            .and_then(|d| u16::try_from(d).ok()),
    })
}

/// Turns the tenant's rule off (`None`) or sets its window, 90 to 270 days.
pub fn set_settings(
    conn: &mut DbConnection,
    tenant: TenantId,
    settings: &ManagedDeviceCleanupSettings,
    now: DateTime<Utc>,
) -> Result<()> {
    let days = settings.device_inactivity_before_retirement_in_days;
    if days.is_some_and(|d| !(MIN_INACTIVITY_DAYS..=MAX_INACTIVITY_DAYS).contains(&d)) {
        return Err(Error::invalid(format!(
            "deviceInactivityBeforeRetirementInDays must be null (off) or {MIN_INACTIVITY_DAYS} to {MAX_INACTIVITY_DAYS}"
        )));
    }
    let row = CleanupSettingsRow {
        tenant_id: tenant,
        inactivity_days: days.map(i32::from),
        updated_at: to_millis(now),
    };
    on_backend!(conn, c => diesel::insert_into(inv_cleanup_settings::table)
        .values(&row)
        .on_conflict(inv_cleanup_settings::tenant_id)
        .do_update()
        .set((
            inv_cleanup_settings::inactivity_days.eq(row.inactivity_days),
            inv_cleanup_settings::updated_at.eq(row.updated_at),
        ))
        .execute(c))?;
    Ok(())
}

// ---- the jobs ------------------------------------------------------------------------

pub fn inactivity_job(state: Arc<State>) -> Job {
    let every = state.config.cleanup_period();
    Job::new(INACTIVITY_JOB, every, move || {
        let state = state.clone();
        async move { run_inactivity(&state).await }
    })
}

pub fn certificate_job(state: Arc<State>) -> Job {
    let every = state.config.cleanup_period();
    Job::new(CERTIFICATE_JOB, every, move || {
        let state = state.clone();
        async move { run_certificate(&state).await }
    })
}

/// The inactivity rule of every tenant that has one, then the `deletePending` fallback.
async fn run_inactivity(state: &State) -> anyhow::Result<String> {
    let now = state.clock.now();
    let rules: Vec<(TenantId, i32)> = state
        .store
        .read(|c| {
            inv_cleanup_settings::table
                .filter(inv_cleanup_settings::inactivity_days.is_not_null())
                .select((
                    inv_cleanup_settings::tenant_id,
                    inv_cleanup_settings::inactivity_days.assume_not_null(),
                ))
                .load(c)
                .map_err(StoreError::from)
        })
        .await?;
    let mut inactive = 0;
    for (tenant, days) in &rules {
        let cutoff = to_millis(now - Duration::days(i64::from(*days)));
        let tenant = *tenant;
        inactive += sweep(state, Rule::Inactivity, now, move |c, limit| {
            inactive_devices(c, tenant, cutoff, limit)
        })
        .await?;
    }
    let cutoff = to_millis(now - Duration::days(DELETE_PENDING_DAYS));
    let abandoned = sweep(state, Rule::DeletePending, now, move |c, limit| {
        abandoned_deletes(c, cutoff, limit)
    })
    .await?;
    Ok(format!(
        "{} tenants with an inactivity rule: {inactive} inactive devices removed; \
         {abandoned} devices removed whose delete was never completed",
        rules.len()
    ))
}

async fn run_certificate(state: &State) -> anyhow::Result<String> {
    let now = state.clock.now();
    let cutoff = to_millis(now - Duration::days(CERTIFICATE_DAYS));
    let removed = sweep(state, Rule::Certificate, now, move |c, limit| {
        expired_certificates(c, cutoff, limit)
    })
    .await?;
    Ok(format!(
        "{removed} devices removed whose identity certificate expired more than \
         {CERTIFICATE_DAYS} days ago without a check-in since"
    ))
}

/// Removes what `select` finds, a batch per transaction, until it finds nothing more.
async fn sweep<F>(
    state: &State,
    rule: Rule,
    now: DateTime<Utc>,
    select: F,
) -> Result<usize, StoreError>
where
    F: Fn(&mut DbConnection, i64) -> Result<Vec<DeviceId>, StoreError> + Clone + Send + 'static,
{
    let limit = state.config.batch_size();
    let mut total = 0;
    loop {
        let (select, outbox) = (select.clone(), state.outbox.clone());
        let removed = state
            .store
            .write(move |c| {
                let ids = select(c, limit)?;
                remove(c, &outbox, &ids, rule, now)
            })
            .await?;
        total += removed;
        state
            .metrics
            .devices_removed
            .with_label_values(&[rule.as_str()])
            .inc_by(removed as u64);
        if removed < usize::try_from(limit).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Devices whose last contact (the last check-in, or the enrollment) is before `cutoff`.
fn silent_since(
    cutoff: i64,
) -> Box<
    dyn BoxableExpression<
            inv_devices::table,
            mdm_store::MultiBackend,
            SqlType = diesel::sql_types::Bool,
        >,
> {
    Box::new(
        inv_devices::last_sync_at
            .lt(cutoff)
            .or(inv_devices::last_sync_at
                .is_null()
                .and(inv_devices::enrolled_at.lt(cutoff)))
            .assume_not_null(),
    )
}

fn inactive_devices(
    conn: &mut DbConnection,
    tenant: TenantId,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<DeviceId>, StoreError> {
    Ok(inv_devices::table
        .filter(inv_devices::tenant_id.eq(tenant))
        .filter(silent_since(cutoff))
        .select(inv_devices::id)
        .limit(limit)
        .load(conn)?)
}

/// `deletePending` devices of tenants without an inactivity rule, silent since `cutoff`
/// (tenants with a rule have theirs removed by it, at their own window).
fn abandoned_deletes(
    conn: &mut DbConnection,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<DeviceId>, StoreError> {
    let with_rule = inv_cleanup_settings::table
        .filter(inv_cleanup_settings::inactivity_days.is_not_null())
        .select(inv_cleanup_settings::tenant_id);
    Ok(inv_devices::table
        // A literal, so that the planner can use the partial index on this state.
        .filter(sql::<diesel::sql_types::Bool>(
            "management_state = 'deletePending'",
        ))
        .filter(silent_since(cutoff))
        .filter(not(inv_devices::tenant_id.eq_any(with_rule)))
        .select(inv_devices::id)
        .limit(limit)
        .load(conn)?)
}

fn expired_certificates(
    conn: &mut DbConnection,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<DeviceId>, StoreError> {
    Ok(inv_devices::table
        .filter(inv_devices::identity_certificate_expires_at.le(cutoff))
        .filter(
            inv_devices::last_sync_at
                .is_null()
                .or(inv_devices::last_sync_at.le(cutoff)),
        )
        .select(inv_devices::id)
        .limit(limit)
        .load(conn)?)
}

/// Removes the devices and tells dispatch, the adapters and the audit trail.
fn remove(
    conn: &mut DbConnection,
    outbox: &Outbox,
    ids: &[DeviceId],
    rule: Rule,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = removal::remove_records(conn, ids)?;
    let mut by_tenant: BTreeMap<TenantId, Vec<DeviceId>> = BTreeMap::new();
    for row in &rows {
        by_tenant.entry(row.tenant_id).or_default().push(row.id);
    }
    for (tenant, device_ids) in by_tenant {
        let message = DevicesRemoved {
            tenant_id: tenant,
            device_ids,
            at: now,
        };
        outbox.enqueue(
            conn,
            &format!("inventory:devices-removed:{}", uuid::Uuid::now_v7()),
            None,
            &message,
        )?;
    }
    removal::tell_adapters(conn, outbox, &rows, now)?;
    for row in &rows {
        let event = audit::with_detail(
            audit::on_device(
                audit::system_event(
                    row.tenant_id,
                    now,
                    "device.cleanedUp",
                    "managedDevice",
                    row.id,
                ),
                row.id,
            ),
            json!({
                "rule": rule.as_str(),
                "lastSyncDateTime": row.last_sync_at.map(from_millis),
                "identityCertificateExpirationDateTime":
                    row.identity_certificate_expires_at.map(from_millis),
            }),
        );
        audit::record(outbox, conn, &event)?;
    }
    tracing::info!(
        rule = rule.as_str(),
        removed = rows.len(),
        "devices cleaned up"
    );
    Ok(rows.len())
}
