//! Messages the adapter receives: actions to deliver and cancel (from dispatch), devices
//! removed (from inventory). Handlers run inside the receiving transaction; the push and
//! the in-memory index follow after the commit.

use std::sync::Arc;

use mdm_api::Service;
use mdm_api::internal::adapter::{CancelAction, DeliverAction, DeviceRemoved};
use mdm_domain::{ActionState, OsVersion};
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError, Inbox};
use mdm_store::models::windows::WinCommandRow;
use mdm_store::{DbConnection, to_millis};
use uuid::Uuid;

use crate::Adapter;
use crate::commands::{self, Refusal};
use crate::db::{self, command_state, state};
use crate::push::PushOutcome;
use crate::session::report;
use crate::state::Pending;

pub fn inbox(adapter: &Arc<Adapter>) -> Inbox {
    let deliver = adapter.clone();
    let cancel = adapter.clone();
    let removed = adapter.clone();
    Inbox::new(Service::Windows)
        .on::<DeliverAction, _>(move |c, d, m| deliver_action(&deliver, c, d, m))
        .on::<CancelAction, _>(move |c, d, m| cancel_action(&cancel, c, d, m))
        .on::<DeviceRemoved, _>(move |c, d, m| device_removed(&removed, c, d, m))
}

fn deliver_action(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeliverAction,
) -> Result<AfterCommit, HandlerError> {
    let now = delivery.now;
    let device = message.device_id;
    let key = device.to_string();
    let outbox = &adapter.outbox;
    let end = |c: &mut DbConnection, state: ActionState, detail: String| {
        report(
            outbox,
            c,
            &key,
            message.action_id,
            device,
            state,
            None,
            Some(detail),
            now,
        )
    };
    if !db::commands_of_action(c, message.action_id)?.is_empty() {
        // Delivered to us before (under another message key): nothing new.
        return Ok(None);
    }
    let Some(enrollment) = db::active_enrollment(c, device)? else {
        end(
            c,
            ActionState::Failed,
            "the device has no active Windows enrollment".into(),
        )?;
        return Ok(None);
    };
    if message.expires_at <= now {
        end(
            c,
            ActionState::Expired,
            "the action expired before it could be queued".into(),
        )?;
        return Ok(None);
    }
    let build = enrollment
        .os_version
        .as_deref()
        .and_then(|v| v.parse::<OsVersion>().ok())
        .and_then(|v| v.windows_10_build());
    let target = commands::Device {
        mode: enrollment.management_mode,
        build,
        provider_id: &adapter.config.provider_id,
    };
    let steps = match commands::plan(message.kind, &message.params, &target) {
        Ok(steps) => steps,
        Err(Refusal::NotSupported(why)) => {
            end(c, ActionState::NotSupported, why)?;
            return Ok(None);
        }
        Err(Refusal::Invalid(why)) => {
            end(c, ActionState::Failed, why)?;
            return Ok(None);
        }
    };
    let count = steps.len();
    let created = to_millis(now);
    let rows: Vec<WinCommandRow> = steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| WinCommandRow {
            id: Uuid::now_v7().as_bytes().to_vec(),
            device_id: device,
            action_id: Some(message.action_id),
            kind: message.kind.as_str().to_owned(),
            step: i32::try_from(i).unwrap_or(i32::MAX),
            last_step: i + 1 == count,
            verb: step.verb.to_owned(),
            loc_uri: step.loc_uri,
            data: step.data,
            meta_format: step.format.map(str::to_owned),
            priority: message.priority,
            state: command_state::QUEUED.to_owned(),
            status_code: None,
            sealed_result: None,
            expires_at: to_millis(message.expires_at),
            created_at: created,
            delivered_at: None,
            completed_at: None,
            delivered_in: None,
        })
        .collect();
    db::insert_commands(c, &rows)?;
    report(
        outbox,
        c,
        &key,
        message.action_id,
        device,
        ActionState::Sent,
        None,
        None,
        now,
    )?;
    let pending: Vec<Pending> = rows.iter().filter_map(Pending::from_row).collect();
    let channel = enrollment
        .channel_uri
        .clone()
        .filter(|_| enrollment.channel_state.as_deref() == Some("active"));
    let adapter = adapter.clone();
    let enrollment_id = enrollment.id;
    Ok(Some(Box::pin(async move {
        adapter.index.with(device, |d| d.add_pending(pending));
        if let (Some(push), Some(channel)) = (adapter.push.as_ref(), channel) {
            let outcome = push.send_with_retries(&channel).await;
            adapter.metrics.push(&outcome);
            match outcome {
                PushOutcome::Delivered => {}
                PushOutcome::ChannelGone(status) => {
                    tracing::info!(%device, status, "the device's push channel is gone");
                    let uri = channel.clone();
                    let expired = adapter
                        .store
                        .write(move |c| db::expire_channel(c, enrollment_id, &uri))
                        .await;
                    if let Err(error) = expired {
                        tracing::warn!(%error, "the expired push channel was not recorded");
                    }
                    adapter.index.with(device, |d| {
                        if d.channel.as_deref() == Some(channel.as_str()) {
                            d.channel = None;
                        }
                    });
                }
                PushOutcome::Retry(why, _) | PushOutcome::Failed(why) => {
                    tracing::warn!(%device, %why, "push failed; the device gets its commands at its next poll");
                }
            }
        }
    })))
}

fn cancel_action(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: CancelAction,
) -> Result<AfterCommit, HandlerError> {
    let commands = db::commands_of_action(c, message.action_id)?;
    if commands.is_empty()
        || commands
            .iter()
            .any(|row| row.state != command_state::QUEUED)
    {
        // Unknown here, or already (partly) delivered: not cancelable any more.
        return Ok(None);
    }
    db::end_later_steps(
        c,
        message.action_id,
        -1,
        command_state::CANCELED,
        to_millis(delivery.now),
    )?;
    report(
        &adapter.outbox,
        c,
        &message.device_id.to_string(),
        message.action_id,
        message.device_id,
        ActionState::Canceled,
        None,
        None,
        delivery.now,
    )?;
    let ids: Vec<Uuid> = commands
        .iter()
        .filter_map(|r| Uuid::from_slice(&r.id).ok())
        .collect();
    let adapter = adapter.clone();
    let device = message.device_id;
    Ok(Some(Box::pin(async move {
        adapter.index.with(device, |d| d.remove_pending(&ids));
    })))
}

fn device_removed(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeviceRemoved,
) -> Result<AfterCommit, HandlerError> {
    let now = to_millis(delivery.now);
    if let Some(enrollment) = db::active_enrollment(c, message.device_id)? {
        db::end_enrollment(c, enrollment.id, state::REMOVED, now)?;
    }
    db::end_open_commands(c, message.device_id, command_state::CANCELED, now)?;
    let adapter = adapter.clone();
    let device = message.device_id;
    Ok(Some(Box::pin(async move {
        adapter.index.remove(device);
    })))
}
