//! Messages from other services: actions from dispatch (turned into commands), their
//! cancellation, and the removal of a device by inventory. Handlers run inside the
//! inbox's transaction; what must follow the commit (updating the in-memory queue,
//! pushing) is returned as after-commit work.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::adapter::{CancelAction, DeliverAction, DeviceRemoved, UNLOCK_PIN_PURPOSE};
use mdm_domain::{ActionId, ActionKind, ActionState, DeviceId, OsVersion, Platform};
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError};
use mdm_store::models::apple::{ActionRow, CommandRow, EnrollmentRow, NewCommandRow};
use mdm_store::schema::{apl_command_results, apl_commands};
use mdm_store::{DbConnection, StoreError, to_millis};

use crate::followup::{self, record_closed};
use crate::protocol::command::{self, Command, EraseOptions};
use crate::service::{Apple, EndCause, UNLOCK_TOKEN_PURPOSE, new_command, report_action};
use crate::state::{self, Purpose, Queued};
use crate::store;

/// Why an action was refused here, as reported to dispatch.
struct Refusal {
    state: ActionState,
    code: &'static str,
    detail: String,
}

fn refuse(state: ActionState, code: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        state,
        code,
        detail: detail.into(),
    }
}

/// `adapter.deliver_action`: queue the action's commands, report `sent`, push.
pub fn deliver(
    apple: &Arc<Apple>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    action: DeliverAction,
) -> Result<AfterCommit, HandlerError> {
    let now = delivery.now;
    let row = device_row(c, action.device_id)?;
    let Some(row) = row.filter(|r| r.state == "enrolled" || r.state == "authenticated") else {
        report_action(
            &apple.outbox,
            c,
            action.action_id,
            action.device_id,
            ActionState::Failed,
            Some((
                "apple_device_unknown".into(),
                "no Apple enrollment is active for this device".into(),
            )),
            now,
        )?;
        return Ok(None);
    };
    let inserted = store::insert_action(
        c,
        &ActionRow {
            action_id: action.action_id,
            channel_id: row.channel_id.clone(),
            device_id: action.device_id,
            kind: action.kind,
            state: "queued".into(),
            expires_at: to_millis(action.expires_at),
            created_at: to_millis(now),
            updated_at: to_millis(now),
        },
    )?;
    if !inserted {
        return Ok(None);
    }
    let waiting: i64 = apl_commands::table
        .filter(apl_commands::channel_id.eq(&row.channel_id))
        .count()
        .get_result(c)?;
    let commands =
        if usize::try_from(waiting).unwrap_or(usize::MAX) >= apple.config.max_queue_per_device {
            Err(refuse(
                ActionState::Failed,
                "apple_queue_full",
                "the device's command queue is full",
            ))
        } else {
            commands_for(apple, c, &row, &action)
        };
    let commands = match commands {
        Ok(commands) => commands,
        Err(refusal) => {
            store::set_action_state(c, action.action_id, refusal.state.as_str(), to_millis(now))?;
            report_action(
                &apple.outbox,
                c,
                action.action_id,
                action.device_id,
                refusal.state,
                Some((refusal.code.into(), refusal.detail)),
                now,
            )?;
            return Ok(None);
        }
    };
    let expires = to_millis(action.expires_at);
    let (purpose, priority) = match action.kind {
        ActionKind::Retire | ActionKind::Delete => (Purpose::RetireStep, false),
        _ => (
            Purpose::Action,
            action.priority || action.kind.is_priority(),
        ),
    };
    let rows: Vec<NewCommandRow> = commands
        .iter()
        .map(|cmd| {
            new_command(
                &row.channel_id,
                cmd,
                purpose,
                Some(action.action_id),
                priority,
                to_millis(now),
                expires,
            )
        })
        .collect();
    let inserted = store::insert_commands(c, &rows)?;
    report_action(
        &apple.outbox,
        c,
        action.action_id,
        action.device_id,
        ActionState::Sent,
        None,
        now,
    )?;
    let apple = apple.clone();
    let key = row.channel_id;
    Ok(Some(Box::pin(async move {
        apple.enqueued(&key, inserted).await;
    })))
}

fn device_row(c: &mut DbConnection, device: DeviceId) -> Result<Option<EnrollmentRow>, StoreError> {
    Ok(store::enrollments_of_device(c, device)?
        .into_iter()
        .find(|r| r.channel_id == r.device_channel))
}

/// The commands that carry out an action on this device, or why it cannot be done.
fn commands_for(
    apple: &Apple,
    c: &mut DbConnection,
    row: &EnrollmentRow,
    action: &DeliverAction,
) -> Result<Vec<Command>, Refusal> {
    let mac = row.platform == Platform::MacOs;
    let os: Option<OsVersion> = store::device_info(c, &row.channel_id)
        .ok()
        .flatten()
        .and_then(|i| i.os_version)
        .and_then(|v| v.parse().ok());
    let params = &action.params;
    match action.kind {
        ActionKind::RemoteLock => {
            let pin = if mac {
                open_pin(apple, params.sealed_unlock_pin.as_deref())?
            } else {
                None
            };
            Ok(vec![command::device_lock(
                params.message.as_deref(),
                params.phone_number.as_deref(),
                pin.as_deref(),
            )])
        }
        ActionKind::ResetPasscode => {
            if mac {
                return Err(refuse(
                    ActionState::NotSupported,
                    "action_not_supported",
                    "macOS has no ClearPasscode command",
                ));
            }
            let Some(sealed) = row.sealed_unlock_token.as_deref() else {
                return Err(refuse(
                    ActionState::NotSupported,
                    "unlock_token_missing",
                    "the device never sent an UnlockToken, so its passcode cannot be cleared",
                ));
            };
            let token = apple
                .secrets
                .open(UNLOCK_TOKEN_PURPOSE, sealed)
                .map_err(|_| {
                    refuse(
                        ActionState::Failed,
                        "unlock_token_unreadable",
                        "the stored UnlockToken cannot be opened",
                    )
                })?;
            Ok(vec![command::clear_passcode(token)])
        }
        ActionKind::Wipe => {
            let pin = if mac {
                open_pin(apple, params.sealed_unlock_pin.as_deref())?
            } else {
                None
            };
            let ios = !mac;
            let at_least = |major, minor| os.is_some_and(|v| v >= OsVersion::new(major, minor, 0));
            let preserve = ios && params.persist_esim_data_plan;
            // DisallowProximitySetup exists from iOS 11.3; before iOS 14 it must be the
            // only option.
            let proximity = ios
                && apple.config.erase_disallow_proximity_setup
                && at_least(11, 3)
                && (at_least(14, 0) || !preserve);
            let options = EraseOptions {
                pin: pin.as_deref(),
                preserve_data_plan: preserve.then_some(true),
                disallow_proximity_setup: proximity.then_some(true),
                obliteration_behavior: (mac && (os.is_none() || at_least(12, 0)))
                    .then_some(apple.config.erase_obliteration_behavior.as_str()),
            };
            Ok(vec![command::erase_device(&options)])
        }
        ActionKind::Retire | ActionKind::Delete => Ok(followup::retire_queries(row.platform)),
        ActionKind::RebootNow => Ok(vec![command::restart_device()]),
        ActionKind::SyncDevice => Ok(vec![command::device_information()]),
    }
}

/// Opens the sealed Mac PIN that dispatch sends; a PIN must be six digits.
fn open_pin(apple: &Apple, sealed: Option<&str>) -> Result<Option<String>, Refusal> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let unreadable = || {
        refuse(
            ActionState::Failed,
            "unlock_pin_unreadable",
            "the sealed unlock PIN cannot be opened",
        )
    };
    let bytes = STANDARD.decode(sealed).map_err(|_| unreadable())?;
    let pin = apple
        .secrets
        .open(UNLOCK_PIN_PURPOSE, &bytes)
        .map_err(|_| unreadable())?;
    let pin = String::from_utf8(pin).map_err(|_| unreadable())?;
    if pin.len() != 6 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unreadable());
    }
    Ok(Some(pin))
}

/// Whether any command of the action reached the device.
fn delivered(c: &mut DbConnection, action: ActionId) -> Result<bool, StoreError> {
    let sent: i64 = apl_commands::table
        .filter(apl_commands::action_id.eq(action))
        .filter(apl_commands::state.eq(store::SENT))
        .count()
        .get_result(c)?;
    let answered: i64 = apl_command_results::table
        .filter(apl_command_results::action_id.eq(action))
        .count()
        .get_result(c)?;
    Ok(sent > 0 || answered > 0)
}

/// `adapter.cancel_action`: drop an action the device has not received.
pub fn cancel(
    apple: &Arc<Apple>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    cancel: CancelAction,
) -> Result<AfterCommit, HandlerError> {
    let now = delivery.now;
    let Some(action) = store::action(c, cancel.action_id)? else {
        return Ok(None);
    };
    if action.state != "queued" || delivered(c, cancel.action_id)? {
        return Ok(None);
    }
    let removed = store::take_queued_of_action(c, cancel.action_id)?;
    record_closed(c, &removed, "Canceled", now)?;
    store::set_action_state(c, cancel.action_id, "canceled", to_millis(now))?;
    report_action(
        &apple.outbox,
        c,
        cancel.action_id,
        cancel.device_id,
        ActionState::Canceled,
        None,
        now,
    )?;
    let apple = apple.clone();
    Ok(Some(Box::pin(async move {
        apple.dequeued(&removed);
    })))
}

/// `adapter.device_removed`: the record is gone; end the enrollment here.
pub fn removed(
    apple: &Arc<Apple>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeviceRemoved,
) -> Result<AfterCommit, HandlerError> {
    let Some(row) = device_row(c, message.device_id)? else {
        return Ok(None);
    };
    if row.ended_at.is_some() {
        return Ok(None);
    }
    let keys = followup::end_enrollment(
        c,
        &apple.outbox,
        &row.channel_id,
        None,
        "removed",
        delivery.now,
        EndCause::Removed,
    )?;
    let apple = apple.clone();
    Ok(Some(Box::pin(async move {
        apple.apply_ended(&keys);
    })))
}

/// Expires actions whose time ran out (run by the expiry job).
pub fn expire_due(
    apple: &Apple,
    c: &mut DbConnection,
    now: DateTime<Utc>,
) -> Result<(Vec<CommandRow>, usize), StoreError> {
    let mut commands = store::take_expired(c, to_millis(now), 1000)?;
    let mut actions = 0;
    // Commands first: each action's report once.
    let mut seen = std::collections::HashSet::new();
    for row in &commands {
        if let Some(action) = row.action_id
            && seen.insert(action)
        {
            let device: Option<DeviceId> = store::action(c, action)?.map(|a| a.device_id);
            if let Some(device) = device {
                followup::expire_action(c, &apple.outbox, action, device, now)?;
                actions += 1;
            }
        }
    }
    record_closed(c, &commands, "Expired", now)?;
    for action in store::expired_actions(c, to_millis(now), 1000)? {
        let rest = store::take_queued_of_action(c, action.action_id)?;
        followup::expire_action(c, &apple.outbox, action.action_id, action.device_id, now)?;
        commands.extend(rest);
        actions += 1;
    }
    Ok((commands, actions))
}

impl Apple {
    /// After commit: commands queued for a channel join its in-memory queue (if loaded),
    /// and the device is pushed.
    pub async fn enqueued(&self, key: &str, rows: Vec<CommandRow>) {
        let channel = match self.channel(key).await {
            Ok(Some(channel)) => channel,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "queued commands not loaded; they load with the channel");
                return;
            }
        };
        {
            let mut c = state::lock(&channel);
            for row in rows {
                c.queue.push(Queued::from_row(row));
            }
        }
        self.push(&channel).await;
    }

    /// After commit: commands that left the queue leave memory too.
    pub fn dequeued(&self, rows: &[CommandRow]) {
        for row in rows {
            if let Some(channel) = self.channels.get(&row.channel_id) {
                state::lock(&channel).queue.remove(&row.command_uuid);
            }
        }
    }
}
