//! Bulk actions: accepted in one request over ids or a filter, then checked and queued
//! device by device by a worker that one replica runs at a time.
//!
//! The request only records the job and its devices, so that it answers at once however
//! many devices it names. The worker takes the devices in chunks: their facts from
//! inventory, their users' licences from enrollment, the capability check, then one
//! transaction per chunk for the actions, their deliveries and the devices' outcomes.
//! The server's own requests (a delete from inventory, a removed licence) are jobs too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::Service;
use mdm_api::internal::Grant;
use mdm_api::internal::adapter::ActionParams;
use mdm_api::internal::dispatch::AuditEvent;
use mdm_api::internal::inventory::{DeviceFilter, DevicesSelect, DevicesSelectResponse};
use mdm_api::public::{BulkAction, BulkActionDevice, BulkParameters};
use mdm_domain::{ActionKind, ActionState, BulkJobId, DeviceId, Role, TenantId, TokenId};
use mdm_runtime::jobs::Leases;
use mdm_runtime::{Caller, Shutdown, audit};
use mdm_store::models::dispatch::{BulkJobRow, BulkTargetRow};
use mdm_store::schema::{dsp_actions, dsp_bulk_jobs, dsp_bulk_targets};
use mdm_store::{DbConnection, from_millis, on_backend, to_millis};

use crate::dispatcher::{Dispatcher, Plan, Requested, Requester, check, write_plans};
use crate::error::{Error, Result};

/// At most this many devices in one bulk action.
pub const MAX_DEVICES: usize = 100_000;

pub const PENDING: &str = "pending";
pub const ACCEPTED: &str = "accepted";
pub const REFUSED: &str = "refused";

/// The devices of a job.
pub enum Targets {
    Devices(Vec<DeviceId>),
    Filter(DeviceFilter),
}

/// Records a job and (for ids) its devices.
#[allow(clippy::too_many_arguments)]
pub fn create_job(
    conn: &mut DbConnection,
    tenant: TenantId,
    kind: ActionKind,
    parameters: BulkParameters,
    targets: Targets,
    requested_by: &str,
    actor_role: Option<Role>,
    now: DateTime<Utc>,
) -> Result<BulkJobRow> {
    let (filter, devices) = match targets {
        Targets::Devices(ids) => (
            None,
            ids.into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
        ),
        Targets::Filter(filter) => (
            Some(serde_json::to_string(&filter).unwrap_or_else(|_| "{}".into())),
            Vec::new(),
        ),
    };
    let job = BulkJobRow {
        id: BulkJobId::new(),
        tenant_id: tenant,
        kind,
        params: serde_json::to_string(&parameters).unwrap_or_else(|_| "{}".into()),
        filter,
        requested_by: requested_by.to_owned(),
        actor_role: actor_role.map(|r| r.to_string()),
        state: ACCEPTED.to_owned(),
        total: i32::try_from(devices.len()).unwrap_or(i32::MAX),
        created_at: to_millis(now),
        updated_at: to_millis(now),
        completed_at: None,
    };
    diesel::insert_into(dsp_bulk_jobs::table)
        .values(&job)
        .execute(conn)?;
    insert_targets(conn, job.id, &devices)?;
    Ok(job)
}

fn insert_targets(conn: &mut DbConnection, job: BulkJobId, devices: &[DeviceId]) -> Result<()> {
    let rows: Vec<BulkTargetRow> = devices
        .iter()
        .map(|&device_id| BulkTargetRow {
            job_id: job,
            device_id,
            outcome: PENDING.to_owned(),
            refusal_code: None,
            refusal_detail: None,
        })
        .collect();
    for chunk in rows.chunks(2000) {
        on_backend!(conn, c => diesel::insert_into(dsp_bulk_targets::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// The worker: wakes when a job is created in this process, and every second, and works
/// while this process holds the bulk lease.
pub async fn run_worker(dispatcher: Arc<Dispatcher>, leases: Leases, shutdown: Shutdown) {
    const LEASE: &str = "dispatch-bulk";
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = dispatcher.bulk_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match leases.try_acquire(LEASE, Duration::from_secs(60)).await {
            Ok(true) => {
                if let Err(error) = work(&dispatcher, &shutdown).await {
                    tracing::warn!(%error, "bulk worker pass failed; retrying");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "bulk lease check failed"),
        }
    }
    let _ = leases.release(LEASE).await;
}

/// Works through every open job.
pub async fn work(dispatcher: &Dispatcher, shutdown: &Shutdown) -> Result<()> {
    let jobs: Vec<BulkJobRow> = dispatcher
        .store
        .read(|c| {
            dsp_bulk_jobs::table
                .filter(dsp_bulk_jobs::state.ne("completed"))
                .order(dsp_bulk_jobs::created_at)
                .select(BulkJobRow::as_select())
                .load(c)
                .map_err(Error::from)
        })
        .await?;
    for job in jobs {
        if shutdown.is_triggered() {
            break;
        }
        run_job(dispatcher, job).await?;
    }
    Ok(())
}

async fn run_job(d: &Dispatcher, mut job: BulkJobRow) -> Result<()> {
    if job.state == ACCEPTED
        && let Some(filter) = job.filter.as_deref()
    {
        let filter: DeviceFilter = serde_json::from_str(filter).unwrap_or_default();
        let found: DevicesSelectResponse = d
            .client
            .post(
                Service::Inventory,
                "/devices/select",
                &DevicesSelect {
                    tenant_id: job.tenant_id,
                    filter,
                },
            )
            .await?;
        let devices: Vec<DeviceId> = found.device_ids.into_iter().take(MAX_DEVICES).collect();
        let (id, now) = (job.id, d.clock.now());
        let total = i32::try_from(devices.len()).unwrap_or(i32::MAX);
        d.store
            .write(move |c| {
                insert_targets(c, id, &devices)?;
                diesel::update(dsp_bulk_jobs::table.find(id))
                    .set((
                        dsp_bulk_jobs::total.eq(total),
                        dsp_bulk_jobs::state.eq("running"),
                        dsp_bulk_jobs::updated_at.eq(to_millis(now)),
                    ))
                    .execute(c)?;
                Ok::<_, Error>(())
            })
            .await?;
        job.total = total;
    }
    let parameters: BulkParameters = serde_json::from_str(&job.params).unwrap_or_default();
    let requester = requester(&job);
    loop {
        let (id, chunk) = (
            job.id,
            i64::try_from(d.config.bulk_chunk.max(1)).unwrap_or(1000),
        );
        let pending: Vec<DeviceId> = d
            .store
            .read(move |c| {
                dsp_bulk_targets::table
                    .filter(dsp_bulk_targets::job_id.eq(id))
                    .filter(dsp_bulk_targets::outcome.eq(PENDING))
                    .limit(chunk)
                    .select(dsp_bulk_targets::device_id)
                    .load(c)
                    .map_err(Error::from)
            })
            .await?;
        if pending.is_empty() {
            let now = d.clock.now();
            let finished = job.clone();
            d.store
                .write(move |c| {
                    diesel::update(dsp_bulk_jobs::table.find(id))
                        .set((
                            dsp_bulk_jobs::state.eq("completed"),
                            dsp_bulk_jobs::updated_at.eq(to_millis(now)),
                            dsp_bulk_jobs::completed_at.eq(to_millis(now)),
                        ))
                        .execute(c)?;
                    let event = completed_event(c, &finished, now)?;
                    crate::audit_trail::insert(c, &[event])
                })
                .await?;
            tracing::info!(job = %id, kind = %job.kind, devices = job.total, "bulk action checked every device");
            return Ok(());
        }
        run_chunk(d, &job, &parameters, &requester, pending).await?;
    }
}

/// The audit event of a job that has checked every device: how many it covered, and how
/// many were accepted and refused (a filter's devices are only known by then). It is the
/// requester's, like the job.
fn completed_event(
    c: &mut DbConnection,
    job: &BulkJobRow,
    now: DateTime<Utc>,
) -> Result<AuditEvent> {
    let outcomes: Vec<String> = dsp_bulk_targets::table
        .filter(dsp_bulk_targets::job_id.eq(job.id))
        .select(dsp_bulk_targets::outcome)
        .load(c)?;
    let count = |outcome: &str| outcomes.iter().filter(|o| *o == outcome).count();
    let mut event = audit::system_event(
        job.tenant_id,
        now,
        "bulkAction.completed",
        "bulkAction",
        job.id,
    );
    event.actor.clone_from(&job.requested_by);
    event.actor_role.clone_from(&job.actor_role);
    Ok(audit::with_detail(
        event,
        serde_json::json!({
            "action": job.kind,
            "devices": outcomes.len(),
            "accepted": count(ACCEPTED),
            "refused": count(REFUSED),
        }),
    ))
}

/// Who a job acts as: the admin who asked (with the role the token had), or the server.
fn requester(job: &BulkJobRow) -> Requester {
    let role = job
        .actor_role
        .as_deref()
        .and_then(|r| r.parse::<Role>().ok());
    let token = job
        .requested_by
        .parse::<uuid::Uuid>()
        .ok()
        .map(TokenId::from_uuid);
    match (role, token) {
        (Some(role), Some(token_id)) => Requester::Caller {
            caller: Caller::from_grant(Grant {
                token_id,
                role,
                tenant_id: Some(job.tenant_id),
                user_id: None,
            }),
            self_service: false,
        },
        _ => Requester::System {
            by: job.requested_by.clone(),
        },
    }
}

async fn run_chunk(
    d: &Dispatcher,
    job: &BulkJobRow,
    parameters: &BulkParameters,
    requester: &Requester,
    devices: Vec<DeviceId>,
) -> Result<()> {
    let records = d.devices(job.tenant_id, devices.clone()).await?;
    let users: Vec<_> = records
        .iter()
        .filter_map(|r| r.user_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let licences = d.licences(job.tenant_id, users).await?;
    let policy = d.policy.get(job.tenant_id).await?;
    let requested = Requested {
        kind: job.kind,
        params: ActionParams {
            message: parameters.message.clone(),
            phone_number: parameters.phone_number.clone(),
            sealed_unlock_pin: None,
            keep_enrollment_data: parameters.keep_enrollment_data,
            keep_user_data: parameters.keep_user_data,
            persist_esim_data_plan: parameters.persist_esim_data_plan,
            use_protected_wipe: parameters.use_protected_wipe,
        },
        force: parameters.force,
        mac_os_unlock_code: None,
    };
    let mut refused: Vec<(DeviceId, String, String)> = Vec::new();
    let mut plans = Vec::new();
    let by_id: HashMap<DeviceId, _> = records.into_iter().map(|r| (r.id, r)).collect();
    for device in &devices {
        let Some(record) = by_id.get(device) else {
            refused.push((
                *device,
                "not_found".into(),
                "the device does not exist in the tenant".into(),
            ));
            continue;
        };
        let licensed = record.user_id.and_then(|u| licences.get(&u).copied());
        match check(record, &policy, licensed, requester, &requested) {
            Ok(()) => plans.push(Plan {
                record: record.clone(),
                requested: requested.clone(),
                requester: requester.clone(),
                bulk_job: Some(job.id),
            }),
            Err(error) => refused.push((*device, code_of(&error), error.to_string())),
        }
    }
    let (id, now, deps) = (job.id, d.clock.now(), d.deps());
    let planned: Vec<DeviceId> = plans.iter().map(|p| p.record.id).collect();
    let accepted = d
        .requests
        .with_label_values(&[job.kind.as_str(), "accepted"]);
    let refused_counter = d
        .requests
        .with_label_values(&[job.kind.as_str(), "refused"]);
    let (accepted_count, refused_count) = d
        .store
        .write(move |c| {
            let outcomes = write_plans(c, &deps, plans, now)?;
            let mut ok = Vec::new();
            for (device, outcome) in planned.into_iter().zip(outcomes) {
                match outcome {
                    Ok(_) => ok.push(device),
                    Err(error) => refused.push((device, code_of(&error), error.to_string())),
                }
            }
            for chunk in ok.chunks(500) {
                diesel::update(
                    dsp_bulk_targets::table
                        .filter(dsp_bulk_targets::job_id.eq(id))
                        .filter(dsp_bulk_targets::device_id.eq_any(chunk)),
                )
                .set(dsp_bulk_targets::outcome.eq(ACCEPTED))
                .execute(c)?;
            }
            for (device, code, detail) in &refused {
                diesel::update(dsp_bulk_targets::table.find((id, *device)))
                    .set((
                        dsp_bulk_targets::outcome.eq(REFUSED),
                        dsp_bulk_targets::refusal_code.eq(code),
                        dsp_bulk_targets::refusal_detail.eq(detail),
                    ))
                    .execute(c)?;
            }
            diesel::update(dsp_bulk_jobs::table.find(id))
                .set((
                    dsp_bulk_jobs::state.eq("running"),
                    dsp_bulk_jobs::updated_at.eq(to_millis(now)),
                ))
                .execute(c)?;
            Ok::<_, Error>((ok.len(), refused.len()))
        })
        .await?;
    accepted.inc_by(accepted_count as u64);
    refused_counter.inc_by(refused_count as u64);
    Ok(())
}

fn code_of(error: &Error) -> String {
    error
        .code()
        .map_or_else(|| "internal_error".to_owned(), |c| c.as_str().to_owned())
}

/// A job as the API shows it, with a page of its devices after `after`.
pub fn view(
    conn: &mut DbConnection,
    tenant: TenantId,
    id: BulkJobId,
    after: Option<DeviceId>,
    top: i64,
) -> Result<BulkAction> {
    let job: BulkJobRow = dsp_bulk_jobs::table
        .find(id)
        .filter(dsp_bulk_jobs::tenant_id.eq(tenant))
        .select(BulkJobRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("bulk action"))?;
    let outcomes: Vec<(String, i64)> = dsp_bulk_targets::table
        .filter(dsp_bulk_targets::job_id.eq(id))
        .group_by(dsp_bulk_targets::outcome)
        .select((dsp_bulk_targets::outcome, diesel::dsl::count_star()))
        .load(conn)?;
    let count = |outcome: &str| {
        outcomes
            .iter()
            .find(|(o, _)| o == outcome)
            .map_or(0, |(_, n)| u32::try_from(*n).unwrap_or(u32::MAX))
    };
    let states: Vec<(ActionState, i64)> = dsp_actions::table
        .filter(dsp_actions::bulk_job_id.eq(id))
        .group_by(dsp_actions::state)
        .select((dsp_actions::state, diesel::dsl::count_star()))
        .load(conn)?;
    let refusals: Vec<(Option<String>, i64)> = dsp_bulk_targets::table
        .filter(dsp_bulk_targets::job_id.eq(id))
        .filter(dsp_bulk_targets::outcome.eq(REFUSED))
        .group_by(dsp_bulk_targets::refusal_code)
        .select((dsp_bulk_targets::refusal_code, diesel::dsl::count_star()))
        .load(conn)?;

    let mut page = dsp_bulk_targets::table
        .filter(dsp_bulk_targets::job_id.eq(id))
        .order(dsp_bulk_targets::device_id)
        .limit(top)
        .select(BulkTargetRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        page = page.filter(dsp_bulk_targets::device_id.gt(after));
    }
    let targets: Vec<BulkTargetRow> = page.load(conn)?;
    let device_ids: Vec<DeviceId> = targets.iter().map(|t| t.device_id).collect();
    let actions: HashMap<DeviceId, (mdm_domain::ActionId, ActionState)> = dsp_actions::table
        .filter(dsp_actions::bulk_job_id.eq(id))
        .filter(dsp_actions::device_id.eq_any(&device_ids))
        .select((dsp_actions::device_id, dsp_actions::id, dsp_actions::state))
        .load::<(DeviceId, mdm_domain::ActionId, ActionState)>(conn)?
        .into_iter()
        .map(|(device, action, state)| (device, (action, state)))
        .collect();
    let next_link = (targets.len() as i64 == top)
        .then(|| {
            targets.last().map(|t| {
                format!(
                    "/api/v1/deviceManagement/bulkActions/{id}?top={top}&skipToken={}",
                    t.device_id
                )
            })
        })
        .flatten();
    Ok(BulkAction {
        id,
        action: job.kind,
        state: job.state.clone(),
        total_devices: u32::try_from(job.total).unwrap_or(0),
        pending: count(PENDING),
        accepted: count(ACCEPTED),
        refused: count(REFUSED),
        action_states: states
            .into_iter()
            .map(|(s, n)| (s.to_string(), u32::try_from(n).unwrap_or(u32::MAX)))
            .collect::<BTreeMap<_, _>>(),
        refusals: refusals
            .into_iter()
            .map(|(code, n)| {
                (
                    code.unwrap_or_default(),
                    u32::try_from(n).unwrap_or(u32::MAX),
                )
            })
            .collect(),
        requested_by: job.requested_by,
        created_date_time: from_millis(job.created_at),
        completed_date_time: job.completed_at.map(from_millis),
        devices: targets
            .into_iter()
            .map(|t| {
                let action = actions.get(&t.device_id);
                BulkActionDevice {
                    device_id: t.device_id,
                    outcome: t.outcome,
                    action_id: action.map(|a| a.0),
                    action_state: action.map(|a| a.1),
                    refusal_code: t.refusal_code,
                    refusal_detail: t.refusal_detail,
                }
            })
            .collect(),
        next_link,
    })
}
