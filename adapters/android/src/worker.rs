//! The worker: every AMAPI call that follows from a message or a notification is made
//! here, from the adapter's tables, never inside the transaction that recorded it. Work
//! is claimed with a short lease (safe with several replicas), failures are rescheduled
//! by the retry policy (at least a minute after a 429), and the action id is the
//! idempotency key: an action is issued once, and an attempt whose fate is unknown (a
//! timeout, a crash) is first looked up among the device's operations.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mdm_api::Service;
use mdm_api::internal::enrollment::{GateCheck, GateRequest, GateResponse};
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFacts, DevicesSeen, Seen};
use mdm_domain::{ActionState, Platform};
use mdm_runtime::Shutdown;
use mdm_store::models::android::{ActionRow, DeviceRow};
use mdm_store::{StoreError, from_millis, to_millis};

use crate::actions::{self, PASSCODE_PURPOSE, Plan};
use crate::adapter::Adapter;
use crate::amapi::types::{Device, ListDevicesResponse, ListOperationsResponse, Operation};
use crate::amapi::{AmapiError, Disposition, Request};
use crate::devices;
use crate::store::{self, Outcome, device_state, phase};

const BATCH: i64 = 256;

/// How long a claim on a row lasts, in milliseconds.
fn claim_lease_ms(adapter: &Adapter) -> i64 {
    i64::try_from(adapter.config.claim_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Runs until shutdown: whenever woken, and every poll interval.
pub async fn run(adapter: Arc<Adapter>, shutdown: Shutdown) {
    let poll = Duration::from_millis(adapter.config.worker_poll_ms.max(10));
    loop {
        if shutdown.is_triggered() {
            return;
        }
        if let Err(error) = run_once(&adapter).await {
            tracing::warn!(error = %error, "Android worker pass failed");
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = adapter.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One pass over everything that is due. Answers how many items it handled.
pub async fn run_once(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let mut handled = gate(adapter).await?;
    handled += delete_devices(adapter).await?;
    handled += issue_actions(adapter).await?;
    handled += follow_up(adapter).await?;
    Ok(handled)
}

fn next_after(now: DateTime<Utc>, wait: Duration) -> i64 {
    to_millis(now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::days(1)))
}

// ---- the enrollment gate ---------------------------------------------------------------

/// Devices Google enrolled go through the enrollment gate, in one call per batch:
/// allowed ones are announced to inventory, refused ones are deleted at Google.
async fn gate(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let now = adapter.now();
    let now_ms = to_millis(now);
    let lease_ms = claim_lease_ms(adapter);
    let due = adapter
        .store
        .write(move |c| {
            let mut claimed = Vec::new();
            for row in store::due_devices(c, device_state::ENROLLING, now_ms, 100)? {
                if store::claim_device(c, row.device_id, device_state::ENROLLING, now_ms, lease_ms)?
                {
                    claimed.push(row);
                }
            }
            Ok::<_, StoreError>(claimed)
        })
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let request = GateRequest {
        checks: due
            .iter()
            .map(|d| GateCheck {
                tenant_id: d.tenant_id,
                platform: Platform::Android,
                ownership: d.ownership,
                management_mode: Some(d.management_mode),
                user_id: d.user_id,
                device_id: None,
            })
            .collect(),
    };
    let answer: Result<GateResponse, _> = adapter
        .client
        .post(Service::Enrollment, "/gate", &request)
        .await;
    let count = due.len();
    match answer {
        Ok(answer) if answer.decisions.len() == due.len() => {
            let adapter2 = adapter.clone();
            adapter
                .store
                .write(move |c| {
                    for (device, decision) in due.iter().zip(answer.decisions) {
                        if decision.allowed {
                            store::set_device_state(c, device.device_id, device_state::MANAGED, None, now_ms)?;
                            let facts: DeviceFacts = device
                                .facts
                                .as_deref()
                                .and_then(|f| serde_json::from_str(f).ok())
                                .unwrap_or_default();
                            adapter2.outbox.enqueue(
                                c,
                                &format!("android:enrolled:{}", device.device_id),
                                Some(&device.device_id.to_string()),
                                &DeviceEnrolled {
                                    device_id: device.device_id,
                                    tenant_id: device.tenant_id,
                                    enrollment_id: device.enrollment_id,
                                    platform: Platform::Android,
                                    ownership: device.ownership,
                                    management_mode: Some(device.management_mode),
                                    user_id: device.user_id,
                                    user_principal_name: decision.user_principal_name,
                                    directory_joined: false,
                                    facts,
                                    enrolled_at: from_millis(device.enrolled_at),
                                },
                            )?;
                            let seen = device.last_report_at.unwrap_or(now_ms).min(now_ms);
                            store::mark_seen(c, device.device_id, seen)?;
                            store::mark_seen_sent(c, device.device_id, seen)?;
                        } else {
                            let why = decision
                                .denial
                                .map_or("refused", |d| d.as_str());
                            tracing::info!(device = %device.amapi_name, reason = why, "Android enrollment refused by the gate; deleting the device at Google");
                            store::set_device_state(c, device.device_id, device_state::DELETING, Some(now_ms), now_ms)?;
                            store::retry_device(c, device.device_id, now_ms, &format!("gate: {why}"), now_ms)?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
            adapter.wake.notify_one();
        }
        other => {
            let why = match other {
                Ok(_) => "the gate answered a different number of decisions".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %why, "enrollment gate unavailable; retrying");
            adapter
                .store
                .write(move |c| {
                    for device in &due {
                        let wait = Duration::from_secs(5u64 << device.attempts.clamp(0, 8));
                        store::retry_device(
                            c,
                            device.device_id,
                            next_after(now, wait),
                            &why,
                            now_ms,
                        )?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
        }
    }
    Ok(count)
}

// ---- devices.delete --------------------------------------------------------------------

async fn delete_devices(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let now = adapter.now();
    let now_ms = to_millis(now);
    let lease_ms = claim_lease_ms(adapter);
    let due = adapter
        .store
        .write(move |c| {
            let mut claimed = Vec::new();
            for row in store::due_devices(c, device_state::DELETING, now_ms, BATCH)? {
                if store::claim_device(c, row.device_id, device_state::DELETING, now_ms, lease_ms)?
                {
                    claimed.push(row);
                }
            }
            Ok::<_, StoreError>(claimed)
        })
        .await?;
    let count = due.len();
    futures_util::stream::iter(due)
        .for_each_concurrent(adapter.config.worker_concurrency.max(1), |device| {
            let adapter = adapter.clone();
            async move {
                if let Err(error) = delete_one(&adapter, device).await {
                    tracing::warn!(error = %error, "recording a device deletion failed");
                }
            }
        })
        .await;
    Ok(count)
}

async fn delete_one(adapter: &Arc<Adapter>, device: DeviceRow) -> Result<(), StoreError> {
    let refused = device
        .last_error
        .as_deref()
        .is_some_and(|e| e.starts_with("gate:"));
    let result = match adapter.binding(device.tenant_id).await {
        Ok(binding) => adapter
            .amapi
            .call::<serde_json::Value>(
                &binding.account,
                &Request::delete(format!("v1/{}", device.amapi_name)),
            )
            .await
            .map(|_| ()),
        Err(crate::error::Error::Amapi(e)) => Err(e),
        Err(e) => Err(AmapiError::Token(e.to_string())),
    };
    record_call(adapter, "devices.delete", &result);
    let now = adapter.now();
    let now_ms = to_millis(now);
    let end_state = if refused {
        device_state::REFUSED
    } else {
        device_state::REMOVED
    };
    match result {
        Ok(()) => {
            adapter
                .store
                .write(move |c| {
                    store::set_device_state(c, device.device_id, end_state, None, now_ms)
                })
                .await
        }
        Err(error) if error.is_not_found() => {
            adapter
                .store
                .write(move |c| {
                    store::set_device_state(c, device.device_id, end_state, None, now_ms)
                })
                .await
        }
        Err(error) => {
            let failed = u32::try_from(device.attempts).unwrap_or(0) + 1;
            let text = if refused {
                format!("gate: {error}")
            } else {
                error.to_string()
            };
            match adapter.amapi.retry_policy().delay_random(failed, &error) {
                Some(wait) => {
                    adapter
                        .store
                        .write(move |c| {
                            store::retry_device(
                                c,
                                device.device_id,
                                next_after(now, wait),
                                &text,
                                now_ms,
                            )
                        })
                        .await
                }
                None => {
                    tracing::warn!(device = %device.amapi_name, error = %error, "devices.delete gave up");
                    adapter
                        .store
                        .write(move |c| {
                            store::set_device_state(c, device.device_id, end_state, None, now_ms)
                        })
                        .await
                }
            }
        }
    }
}

// ---- actions ---------------------------------------------------------------------------

async fn issue_actions(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let due = claim_due(adapter, &[phase::QUEUED]).await?;
    let failure = "recording an action's progress failed";
    let work = |adapter: Arc<Adapter>, action, device| async move {
        issue_one(&adapter, action, device).await
    };
    Ok(work_through(adapter, due, failure, work).await)
}

/// Claims the due actions in `phases` (in that order), with their devices, in one write.
async fn claim_due(
    adapter: &Adapter,
    phases: &'static [&'static str],
) -> Result<Vec<(ActionRow, Option<DeviceRow>)>, StoreError> {
    let now_ms = to_millis(adapter.now());
    let lease_ms = claim_lease_ms(adapter);
    adapter
        .store
        .write(move |c| {
            let mut claimed = Vec::new();
            for &wanted in phases {
                for row in store::due_actions(c, wanted, now_ms, BATCH)? {
                    if store::claim_action(c, row.action_id, wanted, now_ms, lease_ms)? {
                        let device = store::device(c, row.device_id)?;
                        claimed.push((row, device));
                    }
                }
            }
            Ok::<_, StoreError>(claimed)
        })
        .await
}

/// Runs `work` on each claimed action, `worker_concurrency` at a time; answers how many.
async fn work_through<F, Fut>(
    adapter: &Arc<Adapter>,
    due: Vec<(ActionRow, Option<DeviceRow>)>,
    failure: &'static str,
    work: F,
) -> usize
where
    F: Fn(Arc<Adapter>, ActionRow, Option<DeviceRow>) -> Fut + Copy,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let count = due.len();
    futures_util::stream::iter(due)
        .for_each_concurrent(
            adapter.config.worker_concurrency.max(1),
            |(action, device)| async move {
                if let Err(error) = work(adapter.clone(), action, device).await {
                    tracing::warn!(error = %error, "{failure}");
                }
            },
        )
        .await;
    count
}

/// Ends an action in one transaction.
async fn finish(
    adapter: &Arc<Adapter>,
    action: ActionRow,
    state: ActionState,
    error: Option<(String, String)>,
) -> Result<(), StoreError> {
    let now = adapter.now();
    let worker = adapter.clone();
    adapter
        .store
        .write(move |c| {
            let current = store::action(c, action.action_id)?.unwrap_or(action);
            let error = error.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            actions::finish(&worker, c, &current, state, error, now)
        })
        .await
}

async fn issue_one(
    adapter: &Arc<Adapter>,
    action: ActionRow,
    device: Option<DeviceRow>,
) -> Result<(), StoreError> {
    let now = adapter.now();
    if to_millis(now) >= action.expires_at {
        return finish(
            adapter,
            action,
            ActionState::Expired,
            Some((
                "expired".into(),
                "not delivered before the action expired".into(),
            )),
        )
        .await;
    }
    let Some(device) = actions::reachable(device) else {
        return finish(
            adapter,
            action,
            ActionState::Failed,
            Some(("NOT_FOUND".into(), "the device is no longer managed".into())),
        )
        .await;
    };
    let params = actions::params_of(&action);
    let passcode =
        (action.kind == mdm_domain::ActionKind::ResetPasscode).then(actions::temporary_passcode);
    let plan = actions::plan(
        action.kind,
        device.management_mode,
        device.api_level,
        &params,
        passcode.as_deref(),
    );
    let binding = match adapter.binding(action.tenant_id).await {
        Ok(binding) => binding,
        Err(crate::error::Error::NotBound) => {
            return finish(
                adapter,
                action,
                ActionState::Failed,
                Some((
                    "android_enterprise_not_bound".into(),
                    "the tenant has no Android Enterprise".into(),
                )),
            )
            .await;
        }
        Err(error) => {
            let failure = AmapiError::Token(error.to_string());
            return reschedule(adapter, action, device, failure, Outcome::Known).await;
        }
    };
    match plan {
        Plan::Refuse(why) => {
            finish(
                adapter,
                action,
                ActionState::NotSupported,
                Some(("not_supported".into(), why.into())),
            )
            .await
        }
        Plan::Delete => {
            let result = adapter
                .amapi
                .call::<serde_json::Value>(
                    &binding.account,
                    &Request::delete(format!("v1/{}", device.amapi_name)),
                )
                .await;
            record_call(adapter, "devices.delete", &result);
            match result {
                Ok(_) => finish(adapter, action, ActionState::Done, None).await,
                // Already gone at Google: deleted all the same.
                Err(error) if error.is_not_found() => {
                    finish(adapter, action, ActionState::Done, None).await
                }
                Err(error) => reschedule(adapter, action, device, error, Outcome::Known).await,
            }
        }
        Plan::Command(mut command) => {
            // An earlier attempt began and never recorded its outcome: it may have reached
            // Google (the process died, or recording Google's answer failed, or the answer
            // was never heard). Ask Google before issuing the command again.
            if let Some(started) = action.attempt_started_at {
                let kind = command.kind.as_deref();
                match find_issued(adapter, &binding.account, &device, started, kind).await {
                    Ok(Some(operation)) => {
                        return issued(adapter, action, &device, operation, None).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        return reschedule(adapter, action, device, error, Outcome::Unknown).await;
                    }
                }
            }
            command.duration = Some(actions::command_duration(&action, now));
            let request = Request::post(format!("v1/{}:issueCommand", device.amapi_name), &command);
            let result = adapter
                .amapi
                .call::<Operation>(&binding.account, &request)
                .await;
            record_call(adapter, "devices.issueCommand", &result);
            match result {
                Ok(operation) => {
                    let sealed = match passcode {
                        Some(p) => Some(
                            adapter
                                .secrets
                                .seal(PASSCODE_PURPOSE, p.as_bytes())
                                .map_err(|e| StoreError::Config(e.to_string()))?,
                        ),
                        None => None,
                    };
                    issued(adapter, action, &device, operation, sealed).await
                }
                Err(error) => reschedule(adapter, action, device, error, Outcome::Known).await,
            }
        }
    }
}

/// issueCommand answered an operation: the action is `sent`; its outcome comes with the
/// COMMAND notification (or `operations.get`).
async fn issued(
    adapter: &Arc<Adapter>,
    action: ActionRow,
    device: &DeviceRow,
    operation: Operation,
    sealed: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    let device_name = device.amapi_name.clone();
    let now = adapter.now();
    let poll = Duration::from_secs(adapter.config.operation_poll_secs.max(1));
    let worker = adapter.clone();
    adapter
        .store
        .write(move |c| {
            let Some(name) = operation.name.clone() else {
                return actions::finish(
                    &worker,
                    c,
                    &action,
                    ActionState::Failed,
                    Some((
                        "INVALID_RESPONSE",
                        "issueCommand answered no operation name",
                    )),
                    now,
                );
            };
            store::lock_device(c, &device_name)?;
            store::set_issued(
                c,
                action.action_id,
                &name,
                sealed,
                next_after(now, poll),
                to_millis(now),
            )?;
            crate::adapter::report(
                &worker.outbox,
                c,
                action.action_id,
                action.device_id,
                ActionState::Sent,
                None,
                now,
            )?;
            // The device may have answered already: in the answer itself, or in a COMMAND
            // notification that overtook it.
            let early = store::take_early_operation(c, &name)?
                .and_then(|text| serde_json::from_str::<Operation>(&text).ok());
            for news in [Some(operation), early].into_iter().flatten() {
                if let Some(current) = store::action(c, action.action_id)? {
                    actions::apply_operation(&worker, c, &current, &news, now)?;
                }
            }
            Ok(())
        })
        .await
}

/// A failed call: retried per the policy, or the action ends.
async fn reschedule(
    adapter: &Arc<Adapter>,
    action: ActionRow,
    device: DeviceRow,
    error: AmapiError,
    outcome: Outcome,
) -> Result<(), StoreError> {
    let now = adapter.now();
    if error.is_not_found() {
        let worker = adapter.clone();
        tracing::info!(device = %device.amapi_name, "AMAPI no longer knows the device: it left management");
        return adapter
            .store
            .write(move |c| {
                if action.kind.ends_management() {
                    // A wipe or retire whose device is gone has reached its end.
                    actions::finish(&worker, c, &action, ActionState::Done, None, now)?;
                }
                let device = store::device(c, device.device_id)?;
                if let Some(device) = device {
                    devices::vanished(&worker.outbox, c, &device, now)?;
                }
                Ok(())
            })
            .await;
    }
    let failed = u32::try_from(action.attempts).unwrap_or(0) + 1;
    match adapter.amapi.retry_policy().delay_random(failed, &error) {
        Some(wait) if next_after(now, wait) < action.expires_at => {
            let unheard = matches!(error, AmapiError::Timeout | AmapiError::Transport(_));
            let outcome = if unheard { Outcome::Unknown } else { outcome };
            let text = if outcome == Outcome::Unknown {
                format!("ambiguous: {error}")
            } else {
                error.to_string()
            };
            tracing::info!(action = %action.action_id, error = %error, ?wait, "AMAPI call failed; will retry");
            adapter
                .store
                .write(move |c| {
                    store::retry_action(
                        c,
                        action.action_id,
                        next_after(now, wait),
                        &text,
                        outcome,
                        to_millis(now),
                    )
                })
                .await
        }
        Some(_) => {
            finish(
                adapter,
                action,
                ActionState::Expired,
                Some((
                    error.code(),
                    format!("not delivered before the action expired: {error}"),
                )),
            )
            .await
        }
        None => {
            finish(
                adapter,
                action,
                ActionState::Failed,
                Some((error.code(), error.to_string())),
            )
            .await
        }
    }
}

/// After an attempt whose fate is unknown: the operation of the same command type that
/// the device got since the attempt began, if Google lists one.
async fn find_issued(
    adapter: &Arc<Adapter>,
    account: &crate::amapi::Account,
    device: &DeviceRow,
    started: i64,
    kind: Option<&str>,
) -> Result<Option<Operation>, AmapiError> {
    // Google stamps the command with its own clock: allow for some skew.
    let since = from_millis(started) - chrono::Duration::minutes(5);
    let result = adapter
        .amapi
        .call::<ListOperationsResponse>(
            account,
            &Request::get(format!("v1/{}/operations", device.amapi_name)),
        )
        .await;
    record_call(adapter, "operations.list", &result);
    let candidates: Vec<Operation> = result?
        .operations
        .into_iter()
        .filter(|op| {
            let command = op.command().unwrap_or_default();
            command.kind.as_deref() == kind
                && devices::parse_time(command.create_time.as_deref()).is_some_and(|t| t >= since)
                && op.name.is_some()
        })
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    // An operation another action recorded is that action's, not this one's.
    let names: Vec<String> = candidates.iter().filter_map(|op| op.name.clone()).collect();
    let recorded = adapter
        .store
        .read(move |c| store::recorded_operations(c, &names))
        .await
        // Unread, the outcome stays unknown, as after a call that went unanswered.
        .map_err(|e| AmapiError::Transport(e.to_string()))?;
    Ok(candidates.into_iter().find(|op| {
        op.name
            .as_ref()
            .is_some_and(|name| !recorded.contains(name))
    }))
}

// ---- cancels, polls, expiry ------------------------------------------------------------

async fn follow_up(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let due = claim_due(adapter, &[phase::CANCEL_REQUESTED, phase::ISSUED]).await?;
    let failure = "following an operation failed";
    let work = |adapter: Arc<Adapter>, action, device| async move {
        follow_one(&adapter, action, device).await
    };
    Ok(work_through(adapter, due, failure, work).await)
}

async fn follow_one(
    adapter: &Arc<Adapter>,
    action: ActionRow,
    device: Option<DeviceRow>,
) -> Result<(), StoreError> {
    let now = adapter.now();
    let Some(operation_name) = action.operation_name.clone() else {
        return finish(
            adapter,
            action,
            ActionState::Failed,
            Some(("INVALID_STATE".into(), "issued without an operation".into())),
        )
        .await;
    };
    let binding = match adapter.binding(action.tenant_id).await {
        Ok(binding) => binding,
        Err(_) => {
            let poll = Duration::from_secs(60);
            return adapter
                .store
                .write(move |c| {
                    store::retry_action(
                        c,
                        action.action_id,
                        next_after(now, poll),
                        "binding unavailable",
                        Outcome::Known,
                        to_millis(now),
                    )
                })
                .await;
        }
    };
    let expired = to_millis(now) >= action.expires_at;
    if action.phase == phase::CANCEL_REQUESTED || expired {
        let cancel = Request::post(
            format!("v1/{operation_name}:cancel"),
            &serde_json::json!({}),
        );
        let result = adapter
            .amapi
            .call::<serde_json::Value>(&binding.account, &cancel)
            .await;
        record_call(adapter, "operations.cancel", &result);
        let state = if expired {
            ActionState::Expired
        } else {
            ActionState::Canceled
        };
        return match result {
            Ok(_) => finish(adapter, action, state, None).await,
            Err(error) if error.disposition() == Disposition::Permanent || error.is_not_found() => {
                // Already finished at Google: its outcome is what counts; look it up.
                poll_operation(adapter, &binding.account, action, device, &operation_name).await
            }
            Err(error) => match device {
                Some(device) => reschedule(adapter, action, device, error, Outcome::Known).await,
                None => {
                    finish(
                        adapter,
                        action,
                        ActionState::Failed,
                        Some((error.code(), error.to_string())),
                    )
                    .await
                }
            },
        };
    }
    poll_operation(adapter, &binding.account, action, device, &operation_name).await
}

async fn poll_operation(
    adapter: &Arc<Adapter>,
    account: &crate::amapi::Account,
    action: ActionRow,
    device: Option<DeviceRow>,
    operation_name: &str,
) -> Result<(), StoreError> {
    let now = adapter.now();
    let result = adapter
        .amapi
        .call::<Operation>(account, &Request::get(format!("v1/{operation_name}")))
        .await;
    record_call(adapter, "operations.get", &result);
    match result {
        Ok(operation) => {
            let worker = adapter.clone();
            let poll = Duration::from_secs(adapter.config.operation_poll_secs.max(1));
            let expires_at = action.expires_at;
            adapter
                .store
                .write(move |c| {
                    if !actions::apply_operation(&worker, c, &action, &operation, now)? {
                        let next = next_after(now, poll).min(expires_at.max(to_millis(now) + 1000));
                        store::set_next_poll(c, action.action_id, next, to_millis(now))?;
                    }
                    Ok(())
                })
                .await
        }
        Err(error) => match device {
            Some(device) => reschedule(adapter, action, device, error, Outcome::Known).await,
            None => {
                finish(
                    adapter,
                    action,
                    ActionState::Failed,
                    Some((error.code(), error.to_string())),
                )
                .await
            }
        },
    }
}

fn record_call<T>(adapter: &Adapter, call: &str, result: &Result<T, AmapiError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => match e.disposition() {
            Disposition::NotFound => "not_found",
            Disposition::RateLimited => "rate_limited",
            Disposition::Transient => "transient",
            Disposition::Permanent => "refused",
        },
    };
    adapter
        .metrics
        .api_calls
        .with_label_values(&[call, outcome])
        .inc();
}

// ---- jobs ------------------------------------------------------------------------------

/// Sends inventory the devices heard from since the last batch (one message for many).
pub async fn flush_seen(adapter: &Arc<Adapter>) -> Result<usize, StoreError> {
    let worker = adapter.clone();
    adapter
        .store
        .write(move |c| {
            let rows = store::unreported_seen(c, 5000)?;
            if rows.is_empty() {
                return Ok(0);
            }
            let mut seen = Vec::with_capacity(rows.len());
            for row in &rows {
                let at = row.seen_at.unwrap_or_default();
                seen.push(Seen {
                    device_id: row.device_id,
                    at: from_millis(at),
                });
                store::mark_seen_sent(c, row.device_id, at)?;
            }
            worker.outbox.enqueue(
                c,
                &format!("android:seen:{}", uuid::Uuid::now_v7()),
                None,
                &DevicesSeen { seen },
            )?;
            Ok(rows.len())
        })
        .await
}

/// Compares each enterprise's devices at Google with ours: a device of ours that Google
/// no longer has (404) left management; a device Google has that we never heard of
/// (a lost ENROLLMENT notification) goes through the gate.
pub async fn reconcile(adapter: &Arc<Adapter>) -> anyhow::Result<String> {
    let enterprises = adapter.store.read(store::enterprises).await?;
    let (mut vanished, mut found) = (0usize, 0usize);
    for enterprise in enterprises {
        let binding = match adapter.binding(enterprise.tenant_id).await {
            Ok(binding) => binding,
            Err(error) => {
                tracing::warn!(tenant = %enterprise.tenant_id, error = %error, "reconcile skipped a tenant");
                continue;
            }
        };
        let mut listed: Vec<Device> = Vec::new();
        let mut page: Option<String> = None;
        let mut complete = true;
        for _ in 0..10_000 {
            let mut request = Request::get(format!("v1/{}/devices", enterprise.enterprise_name))
                .query("pageSize", "100");
            if let Some(token) = &page {
                request = request.query("pageToken", token.clone());
            }
            match adapter
                .amapi
                .call_with_retries::<ListDevicesResponse>(&binding.account, &request)
                .await
            {
                Ok(answer) => {
                    listed.extend(answer.devices);
                    page = answer.next_page_token.filter(|t| !t.is_empty());
                    if page.is_none() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(enterprise = %enterprise.enterprise_name, error = %error, "devices.list failed; reconcile incomplete");
                    complete = false;
                    break;
                }
            }
        }
        if !complete {
            continue;
        }
        let names: std::collections::HashSet<String> =
            listed.iter().filter_map(|d| d.name.clone()).collect();
        let tenant = enterprise.tenant_id;
        let ours = adapter
            .store
            .read(move |c| store::managed_devices_of(c, tenant))
            .await?;
        for row in ours.into_iter().filter(|r| !names.contains(&r.amapi_name)) {
            // Not listed: make sure with devices.get before ending management.
            let result = adapter
                .amapi
                .call::<serde_json::Value>(
                    &binding.account,
                    &Request::get(format!("v1/{}", row.amapi_name)),
                )
                .await;
            if matches!(&result, Err(e) if e.is_not_found()) {
                let worker = adapter.clone();
                let now = adapter.now();
                adapter
                    .store
                    .write(move |c| devices::vanished(&worker.outbox, c, &row, now))
                    .await?;
                vanished += 1;
            }
        }
        for device in listed {
            let Some(name) = device.name.clone() else {
                continue;
            };
            if device.state.as_deref() != Some("ACTIVE") {
                continue;
            }
            let now = adapter.now();
            let registered = adapter
                .store
                .write(move |c| {
                    if store::device_by_name(c, &name)?.is_some() {
                        return Ok::<_, StoreError>(false);
                    }
                    devices::register(c, tenant, &name, &device, now)?;
                    Ok(true)
                })
                .await?;
            if registered {
                found += 1;
            }
        }
    }
    if found > 0 {
        adapter.wake.notify_one();
    }
    Ok(format!(
        "{vanished} devices left management, {found} unknown devices found"
    ))
}

/// Forgets Pub/Sub message ids older than the retention.
pub async fn prune_receipts(adapter: &Arc<Adapter>) -> anyhow::Result<String> {
    let before = to_millis(
        adapter.now()
            - chrono::Duration::days(
                i64::try_from(adapter.config.receipt_retention_days).unwrap_or(8),
            ),
    );
    let pruned = adapter
        .store
        .write(move |c| store::prune_receipts(c, before))
        .await?;
    Ok(format!("pruned {pruned} Pub/Sub receipts"))
}
