//! Turning requests into actions, and actions into messages to the adapters.
//!
//! Every action — asked by an admin, by a user on their own device, by a bulk job, or by
//! the system (a delete, a removed licence) — goes through the same steps: the device's
//! facts from inventory, the tenant's authority and the user's licence from enrollment,
//! the capability matrix (`mdm_domain::capability`), then, in one transaction, dispatch's
//! own rules (one removal at a time, the outstanding Mac PIN), the supersede of a wipe,
//! the action row, its delivery message (ordered per device), the device's new management
//! state for inventory, and the audit event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mdm_api::ErrorCode;
use mdm_api::cache::PolicyCache;
use mdm_api::internal::adapter::{ActionParams, CancelAction, DeliverAction};
use mdm_api::internal::enrollment::{TenantPolicy, UsersLookup, UsersLookupResponse};
use mdm_api::internal::inventory::{
    DeviceRecord, DevicesLookup, DevicesLookupResponse, ManagementStateChanged,
};
use mdm_api::{InternalClient, Service};
use mdm_domain::capability::{self, ActionOptions, CallerContext, DeviceContext};
use mdm_domain::{
    ActionId, ActionKind, ActionState, BulkJobId, DeviceId, ManagementState, MdmAuthority,
    Platform, Role, TenantId, UserId,
};
use mdm_runtime::crypto::SecretBox;
use mdm_runtime::idempotency::ReservedKey;
use mdm_runtime::outbox::{self, Outbox};
use mdm_runtime::{Caller, SharedClock, audit};
use mdm_store::models::dispatch::ActionRow;
use mdm_store::{DbConnection, Store, to_millis};
use prometheus::IntCounterVec;

use crate::actions;
use crate::audit_trail;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pins;

/// What was asked, with the action's parameters.
#[derive(Debug, Clone)]
pub struct Requested {
    pub kind: ActionKind,
    pub params: ActionParams,
    /// Lock a Mac again although its PIN is outstanding.
    pub force: bool,
    /// The PIN an admin chose for a Mac's wipe.
    pub mac_os_unlock_code: Option<String>,
}

impl Requested {
    pub fn new(kind: ActionKind) -> Self {
        Self {
            kind,
            params: ActionParams::default(),
            force: false,
            mac_os_unlock_code: None,
        }
    }

    fn kind(&self) -> ActionKind {
        self.kind
    }

    fn options(&self) -> ActionOptions {
        ActionOptions {
            keep_enrollment_data: self.params.keep_enrollment_data,
            keep_user_data: self.params.keep_user_data,
            use_protected_wipe: self.params.use_protected_wipe,
            persist_esim_data_plan: self.params.persist_esim_data_plan,
            mac_os_unlock_code: self.mac_os_unlock_code.is_some(),
        }
    }
}

/// Who asks.
#[derive(Debug, Clone)]
pub enum Requester {
    /// An API caller; `self_service` when a user acts on their own device.
    Caller { caller: Caller, self_service: bool },
    /// The server itself (a delete from inventory, a removed licence), for `by`.
    System { by: String },
}

impl Requester {
    fn by(&self) -> String {
        match self {
            Self::Caller { caller, .. } => caller.token_id.to_string(),
            Self::System { by } => by.clone(),
        }
    }
}

/// A decided action, ready to be written.
pub struct Plan {
    pub record: DeviceRecord,
    pub requested: Requested,
    pub requester: Requester,
    pub bulk_job: Option<BulkJobId>,
}

/// What became of one plan.
pub struct Created {
    pub row: ActionRow,
    /// A Mac's PIN, in clear, for the answer to the request.
    pub pin: Option<String>,
}

/// The answer to a request with an `Idempotency-Key`: stored in the transaction that
/// makes the action, so that a crash cannot leave one without the other.
pub struct IdempotentAnswer {
    pub key: ReservedKey,
    /// Whether the answer shows a Mac's PIN.
    pub shows_pin: bool,
}

impl IdempotentAnswer {
    /// The answer's body for `created`: what the handler sends too.
    pub fn body(shows_pin: bool, created: &Created) -> Result<Vec<u8>> {
        let pin = created.pin.clone().filter(|_| shows_pin);
        serde_json::to_vec(&actions::view(&created.row, pin)).map_err(|e| {
            Error::from(mdm_store::StoreError::from(
                diesel::result::Error::SerializationError(Box::new(e)),
            ))
        })
    }
}

/// The dispatch service's shared state.
pub struct Dispatcher {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub client: InternalClient,
    pub policy: PolicyCache,
    pub secrets: SecretBox,
    pub outbox: Outbox,
    pub requests: IntCounterVec,
    pub bulk_wake: Arc<tokio::sync::Notify>,
}

impl Dispatcher {
    /// The device as inventory holds it, in the caller's tenant.
    pub async fn device(&self, tenant: TenantId, device: DeviceId) -> Result<DeviceRecord> {
        let mut found = self.devices(tenant, vec![device]).await?;
        found.pop().ok_or(Error::NotFound("device"))
    }

    pub async fn devices(&self, tenant: TenantId, ids: Vec<DeviceId>) -> Result<Vec<DeviceRecord>> {
        let answer: DevicesLookupResponse = self
            .client
            .post(
                Service::Inventory,
                "/devices/lookup",
                &DevicesLookup {
                    tenant_id: tenant,
                    device_ids: ids,
                },
            )
            .await?;
        Ok(answer.devices)
    }

    /// Whether each user holds a licence; a user who no longer exists holds none.
    pub async fn licences(
        &self,
        tenant: TenantId,
        users: Vec<UserId>,
    ) -> Result<HashMap<UserId, bool>> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let answer: UsersLookupResponse = self
            .client
            .post(
                Service::Enrollment,
                "/users/lookup",
                &UsersLookup {
                    tenant_id: tenant,
                    user_ids: users.clone(),
                },
            )
            .await?;
        let mut licensed: HashMap<UserId, bool> = users.into_iter().map(|u| (u, false)).collect();
        licensed.extend(answer.users.into_iter().map(|u| (u.user_id, u.licensed)));
        Ok(licensed)
    }

    /// Asks for one action on one device; answers it, or why not (and audits either).
    pub async fn request(
        &self,
        requester: Requester,
        tenant: TenantId,
        device: DeviceId,
        requested: Requested,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Created> {
        let kind = requested.kind();
        let outcome = self
            .request_checked(&requester, tenant, device, requested, answer)
            .await;
        let label = if outcome.is_ok() {
            "accepted"
        } else {
            "refused"
        };
        self.requests
            .with_label_values(&[kind.as_str(), label])
            .inc();
        if let (Err(error), Requester::Caller { caller, .. }) = (&outcome, &requester)
            && let Some(code) = error.code().filter(|c| *c != ErrorCode::NotFound)
        {
            let event = audit::on_device(
                audit::refused(
                    audit::event(
                        caller,
                        self.clock.now(),
                        &format!("device.{kind}"),
                        "device",
                        device,
                    ),
                    code.as_str(),
                ),
                device,
            );
            let _ = self
                .store
                .write(move |c| audit_trail::insert(c, &[event]))
                .await;
        }
        outcome
    }

    async fn request_checked(
        &self,
        requester: &Requester,
        tenant: TenantId,
        device: DeviceId,
        requested: Requested,
        answer: Option<IdempotentAnswer>,
    ) -> Result<Created> {
        let record = self.device(tenant, device).await?;
        if let Requester::Caller {
            caller,
            self_service: true,
        } = requester
            && (record.user_id.is_none() || record.user_id != caller.user_id)
        {
            return Err(Error::NotFound("device"));
        }
        let policy = self.policy.get(tenant).await?;
        let licensed = self
            .licences(tenant, record.user_id.into_iter().collect())
            .await?;
        let licensed = record.user_id.and_then(|u| licensed.get(&u).copied());
        check(&record, &policy, licensed, requester, &requested)?;
        let plan = Plan {
            record,
            requested,
            requester: requester.clone(),
            bulk_job: None,
        };
        let now = self.clock.now();
        let deps = self.deps();
        let mut outcomes = self
            .store
            .write(move |c| {
                let outcomes = write_plans(c, &deps, vec![plan], now)?;
                if let (Some(answer), Some(Ok(created))) = (&answer, outcomes.last()) {
                    let body = IdempotentAnswer::body(answer.shows_pin, created)?;
                    answer
                        .key
                        .record(c, actix_web::http::StatusCode::ACCEPTED, None, &body)?;
                }
                Ok::<_, Error>(outcomes)
            })
            .await?;
        outcomes.pop().unwrap_or(Err(Error::NotFound("action")))
    }

    /// What writing plans needs.
    pub fn deps(&self) -> Deps {
        Deps {
            secrets: self.secrets.clone(),
            outbox: self.outbox.clone(),
            config: self.config.clone(),
        }
    }
}

/// The capability check for one device.
pub fn check(
    record: &DeviceRecord,
    policy: &TenantPolicy,
    licensed: Option<bool>,
    requester: &Requester,
    requested: &Requested,
) -> Result<()> {
    let device = DeviceContext {
        platform: record.platform,
        os_version: record.os_version,
        ownership: record.ownership,
        management_mode: record.management_mode,
        management_state: record.management_state,
        directory_joined: record.directory_joined,
        is_passcode_present: record.is_passcode_present,
        user_licensed: if record.user_id.is_some() {
            Some(licensed.unwrap_or(false))
        } else {
            None
        },
    };
    let kind = requested.kind();
    match requester {
        Requester::Caller {
            caller,
            self_service,
        } => {
            let who = CallerContext {
                authority: policy.authority,
                role: caller.role,
                self_service: *self_service,
            };
            capability::check(kind, &requested.options(), &device, &who)?;
        }
        // The server's own requests: a delete was checked where it was asked; a removed
        // licence still ends management, so only what the device can do counts.
        Requester::System { .. } if kind == ActionKind::Delete => {}
        Requester::System { .. } => {
            let who = CallerContext {
                authority: MdmAuthority::Standalone,
                role: Role::Operator,
                self_service: false,
            };
            let unlicensed_free = DeviceContext {
                user_licensed: None,
                ..device
            };
            capability::check(kind, &requested.options(), &unlicensed_free, &who)?;
        }
    }
    if let Some(code) = &requested.mac_os_unlock_code
        && !pins::is_valid(code)
    {
        return Err(Error::refused(
            ErrorCode::ValidationFailed,
            "macOsUnlockCode must be six digits",
        ));
    }
    Ok(())
}

/// What writing plans needs from the dispatcher.
#[derive(Clone)]
pub struct Deps {
    pub secrets: SecretBox,
    pub outbox: Outbox,
    pub config: Config,
}

/// Writes decided plans in the caller's transaction: dispatch's own rules per device, the
/// supersede of a wipe, the action rows, their deliveries, the devices' management states,
/// the audit events. Answers each plan's outcome, in order.
pub fn write_plans(
    conn: &mut DbConnection,
    deps: &Deps,
    plans: Vec<Plan>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Created>>> {
    let devices: Vec<DeviceId> = plans.iter().map(|p| p.record.id).collect();
    let mut open: HashMap<DeviceId, Vec<ActionRow>> = HashMap::new();
    for action in actions::open_for_devices(conn, &devices)? {
        open.entry(action.device_id).or_default().push(action);
    }
    let pinned: HashSet<DeviceId> = actions::devices_with_live_pin(conn, &devices, now)?
        .into_iter()
        .collect();

    let mut outcomes = Vec::with_capacity(plans.len());
    let mut rows = Vec::new();
    let mut deliveries = Vec::new();
    let mut states = Vec::new();
    let mut events = Vec::new();
    let mut superseded = Vec::new();
    let mut acted_on = Vec::new();
    for plan in plans {
        let kind = plan.requested.kind();
        let device = plan.record.id;
        let open_here = open.get(&device).map(Vec::as_slice).unwrap_or_default();
        if let Err(refusal) = local_rules(kind, &plan, open_here, pinned.contains(&device)) {
            outcomes.push(Err(refusal));
            continue;
        }
        let pin = if plan.record.platform == Platform::MacOs
            && matches!(kind, ActionKind::RemoteLock | ActionKind::Wipe)
        {
            Some(
                plan.requested
                    .mac_os_unlock_code
                    .clone()
                    .unwrap_or_else(pins::generate),
            )
        } else {
            None
        };
        let sealed = pin
            .as_deref()
            .map(|p| pins::seal(&deps.secrets, p))
            .transpose()
            .map_err(|e| Error::Store(mdm_store::StoreError::Config(e.to_string())))?;
        let id = ActionId::new();
        let expires_at = now
            + Duration::hours(
                i64::try_from(deps.config.expiry.hours(kind)).unwrap_or(i64::MAX / 7200),
            );
        let mut params = plan.requested.params.clone();
        params.sealed_unlock_pin = sealed.as_deref().map(pins::for_adapter);
        let stored_params = ActionParams {
            sealed_unlock_pin: None,
            ..params.clone()
        };
        let row = ActionRow {
            id,
            tenant_id: plan.record.tenant_id,
            device_id: device,
            device_name: plan.record.device_name.clone(),
            platform: plan.record.platform,
            kind,
            state: ActionState::Pending,
            params: serde_json::to_string(&stored_params).unwrap_or_else(|_| "{}".into()),
            priority: kind.is_priority(),
            requested_by: plan.requester.by(),
            self_service: matches!(
                plan.requester,
                Requester::Caller {
                    self_service: true,
                    ..
                }
            ),
            bulk_job_id: plan.bulk_job,
            pin_expires_at: sealed
                .as_ref()
                .map(|_| to_millis(now + Duration::days(i64::from(deps.config.unlock_pin_days)))),
            sealed_unlock_pin: sealed,
            cancel_requested: false,
            error_code: None,
            error_detail: None,
            created_at: to_millis(now),
            updated_at: to_millis(now),
            expires_at: to_millis(expires_at),
        };
        if kind == ActionKind::Wipe {
            superseded.extend(
                open_here
                    .iter()
                    .filter(|a| a.kind != ActionKind::Wipe && a.state.is_cancelable())
                    .cloned(),
            );
        }
        acted_on.push(device);
        deliveries.push((
            delivery_key(id),
            Some(device.to_string()),
            DeliverAction {
                action_id: id,
                tenant_id: row.tenant_id,
                device_id: device,
                family: row.platform.family(),
                kind,
                params,
                priority: row.priority,
                expires_at,
                requested_at: now,
            },
        ));
        let pending_state = match (kind, &plan.requester) {
            (ActionKind::Retire, _) => Some(ManagementState::RetirePending),
            (ActionKind::Wipe, _) => Some(ManagementState::WipePending),
            // A delete from inventory already set it; a bulk delete tells inventory.
            (ActionKind::Delete, Requester::Caller { .. }) => Some(ManagementState::DeletePending),
            _ => None,
        };
        if let Some(state) = pending_state {
            states.push(state_message(device, state, Some(id), false, now));
        }
        if let Requester::Caller { caller, .. } = &plan.requester {
            let mut event = audit::on_device(
                audit::event(caller, now, &format!("device.{kind}"), "action", id),
                device,
            );
            event.detail = serde_json::json!({ "kind": kind, "bulkActionId": plan.bulk_job });
            events.push(event);
        }
        outcomes.push(Ok(Created {
            row: row.clone(),
            pin,
        }));
        rows.push(row);
    }

    // Another action was sent: earlier PINs are no longer shown (the new one stays).
    actions::clear_pins(conn, &acted_on)?;
    actions::insert(conn, &rows)?;
    for action in superseded {
        cancel_in_transaction(
            conn,
            &deps.outbox,
            &action,
            "superseded",
            "a wipe replaced it",
            now,
        )?;
    }
    deps.outbox.enqueue_many(conn, &deliveries)?;
    deps.outbox.enqueue_many(conn, &states)?;
    audit_trail::insert(conn, &events)?;
    Ok(outcomes)
}

/// Dispatch's own rules, which need its record of open actions.
fn local_rules(
    kind: ActionKind,
    plan: &Plan,
    open: &[ActionRow],
    pin_outstanding: bool,
) -> Result<()> {
    let removal = |kinds: &[ActionKind]| open.iter().any(|a| kinds.contains(&a.kind));
    let pending = match kind {
        ActionKind::Retire => removal(&[ActionKind::Retire, ActionKind::Wipe, ActionKind::Delete]),
        ActionKind::Wipe => removal(&[ActionKind::Wipe]),
        ActionKind::Delete => removal(&[ActionKind::Delete]),
        _ => false,
    };
    if pending {
        return Err(Error::refused(
            ErrorCode::DeviceRemovalPending,
            format!(
                "a {} of this device is already under way",
                open.iter()
                    .find(|a| a.kind.ends_management())
                    .map_or("removal".into(), |a| a.kind.to_string())
            ),
        ));
    }
    if kind == ActionKind::RemoteLock
        && plan.record.platform == Platform::MacOs
        && pin_outstanding
        && !plan.requested.force
    {
        return Err(Error::refused(
            ErrorCode::UnlockPinOutstanding,
            "this Mac's unlock PIN from an earlier lock has not been used yet: lock it again only with force, \
             and note the new PIN",
        ));
    }
    Ok(())
}

pub fn delivery_key(id: ActionId) -> String {
    format!("dispatch:deliver:{id}")
}

pub fn state_message(
    device: DeviceId,
    state: ManagementState,
    action: Option<ActionId>,
    remove_record: bool,
    now: DateTime<Utc>,
) -> (String, Option<String>, ManagementStateChanged) {
    (
        format!("dispatch:state:{device}:{}", uuid::Uuid::now_v7()),
        Some(device.to_string()),
        ManagementStateChanged {
            device_id: device,
            state,
            action_id: action,
            remove_record,
            at: now,
        },
    )
}

/// Cancels an action the device has not received. If its delivery has not left dispatch,
/// it is withdrawn and the action ends now; otherwise the adapter is asked to cancel and
/// answers `canceled` (or, too late, the action's outcome).
pub fn cancel_in_transaction(
    conn: &mut DbConnection,
    outbox: &Outbox,
    action: &ActionRow,
    code: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<ActionState> {
    if !action.state.is_cancelable() {
        return Err(Error::refused(
            ErrorCode::ActionNotCancelable,
            format!("the action is {}: the device has it already", action.state),
        ));
    }
    if action.state == ActionState::Pending
        && outbox::withdraw(conn, &delivery_key(action.id), now)?
    {
        actions::set_state(
            conn,
            action.id,
            ActionState::Canceled,
            Some(code),
            Some(detail),
            now,
        )?;
        if let Some((state, remove)) = management_state(action, ActionState::Canceled) {
            outbox.enqueue_many(
                conn,
                &[state_message(
                    action.device_id,
                    state,
                    Some(action.id),
                    remove,
                    now,
                )],
            )?;
        }
        return Ok(ActionState::Canceled);
    }
    actions::mark_cancel_requested(conn, action.id, now)?;
    let message = CancelAction {
        action_id: action.id,
        device_id: action.device_id,
        family: action.platform.family(),
    };
    outbox.enqueue(
        conn,
        &format!("dispatch:cancel:{}", action.id),
        Some(&action.device_id.to_string()),
        &message,
    )?;
    Ok(action.state)
}

/// The management state an action's new state gives its device, and whether the record
/// goes: a retire or wipe moves the device through pending, issued and an outcome; a
/// completed delete removes it.
pub fn management_state(action: &ActionRow, state: ActionState) -> Option<(ManagementState, bool)> {
    use ActionState::*;
    use ManagementState as M;
    let keeps_enrollment =
        serde_json::from_str::<ActionParams>(&action.params).is_ok_and(|p| p.keep_enrollment_data);
    match (action.kind, state) {
        (ActionKind::Retire, Active) => Some((M::RetireIssued, false)),
        (ActionKind::Retire, Done) => Some((M::Retired, false)),
        (ActionKind::Retire, Failed | NotSupported | Expired) => Some((M::RetireFailed, false)),
        (ActionKind::Retire, Canceled) => Some((M::RetireCanceled, false)),
        (ActionKind::Wipe, Active) => Some((M::WipeIssued, false)),
        // A reset that keeps the enrollment leaves the device managed (seed 001).
        (ActionKind::Wipe, Done) if keeps_enrollment => Some((M::Managed, false)),
        (ActionKind::Wipe, Done) => Some((M::Wiped, false)),
        (ActionKind::Wipe, Failed | NotSupported | Expired) => Some((M::WipeFailed, false)),
        (ActionKind::Wipe, Canceled) => Some((M::WipeCanceled, false)),
        (ActionKind::Delete, Done) => Some((M::DeletePending, true)),
        _ => None,
    }
}
