//! What a command's answer (or its expiry) changes: action outcomes reported to dispatch,
//! device facts reported to inventory, the retire sequence, and the end of an enrollment.
//! All of it runs inside the batch transaction that records the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::inventory::{DeviceFacts, DeviceFactsReported, UnenrollReason};
use mdm_domain::{ActionId, ActionKind, ActionState, DeviceId, OsVersion, Platform, TenantId};
use mdm_runtime::outbox::Outbox;
use mdm_store::models::apple::{CommandRow, DeviceInfoRow, NewCommandRow};
use mdm_store::schema::apl_enrollments;
use mdm_store::{DbConnection, StoreError, to_millis};

use crate::batch::{FollowUp, FollowUpFn};
use crate::protocol::command;
use crate::protocol::inventory::{self, Profile};
use crate::protocol::{Report, Status};
use crate::service::{Apple, EndCause, hours, new_command, report_action, report_unenrolled};
use crate::state::{Channel, Purpose, Queued};
use crate::store;

/// What a follow-up needs to know about the channel.
#[derive(Debug, Clone)]
pub struct ChannelContext {
    pub key: String,
    pub device_channel: String,
    pub device_id: DeviceId,
    pub tenant_id: TenantId,
    pub platform: Platform,
    pub os_version: Option<OsVersion>,
}

impl ChannelContext {
    pub fn of(channel: &Channel) -> Self {
        Self {
            key: channel.key.to_string(),
            device_channel: channel.device_channel.to_string(),
            device_id: channel.device_id,
            tenant_id: channel.tenant_id,
            platform: channel.platform,
            os_version: channel.os_version,
        }
    }
}

/// Actions delivered to a device whose outcome has not come yet. Their `active` report
/// is written after a short grace: a device usually answers within it, and then the
/// outcome alone is reported (dispatch accepts skipped steps), saving a write per
/// delivery on the hot path.
#[derive(Default)]
pub struct ActiveTracker {
    pending: Mutex<HashMap<ActionId, (DeviceId, i64)>>,
}

impl ActiveTracker {
    fn note(&self, action: ActionId, device: DeviceId, at: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry(action).or_insert((device, at));
        }
    }

    fn forget(&self, action: ActionId) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&action);
        }
    }

    /// Takes the actions delivered before `before`.
    pub fn due(&self, before: i64) -> Vec<(ActionId, DeviceId)> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        let due: Vec<(ActionId, DeviceId)> = pending
            .iter()
            .filter(|(_, (_, at))| *at <= before)
            .map(|(action, (device, _))| (*action, *device))
            .collect();
        for (action, _) in &due {
            pending.remove(action);
        }
        due
    }
}

pub fn note_active(apple: &Apple, action: ActionId, device: DeviceId, at: i64) {
    apple.active.note(action, device, at);
}

/// Writes the `active` reports that are due.
pub fn write_active(
    c: &mut DbConnection,
    outbox: &Outbox,
    due: &[(ActionId, DeviceId)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (action, device) in due {
        let moved = diesel::update(
            mdm_store::schema::apl_actions::table
                .find(*action)
                .filter(mdm_store::schema::apl_actions::state.eq("queued")),
        )
        .set((
            mdm_store::schema::apl_actions::state.eq("active"),
            mdm_store::schema::apl_actions::updated_at.eq(to_millis(now)),
        ))
        .execute(c)?;
        if moved == 1 {
            report_action(outbox, c, *action, *device, ActionState::Active, None, now)?;
        }
    }
    Ok(())
}

/// The follow-up of a command's answer.
pub fn for_answer(
    apple: &Apple,
    queued: &Queued,
    report: &Report,
    body: &[u8],
    context: ChannelContext,
    now: DateTime<Utc>,
) -> Option<FollowUpFn> {
    let outbox = apple.outbox.clone();
    let status = report.status;
    let error = report.error_chain.first().map(|e| {
        (
            e.code
                .map_or_else(|| status.as_str().to_owned(), |c| c.to_string()),
            e.us_english_description
                .clone()
                .or(e.localized_description.clone())
                .or(e.domain.clone())
                .unwrap_or_else(|| status.as_str().to_owned()),
        )
    });
    let facts = if status == Status::Acknowledged {
        Facts::parse(&queued.request_type, body)
    } else {
        Facts::None
    };
    if let Some(action) = queued.action_id {
        apple.active.forget(action);
    }
    let purpose = queued.purpose;
    let action_id = queued.action_id;
    let request_type = queued.request_type.to_string();
    let expiry_hours = apple.config.command_expiry_hours;
    let prefix = apple.config.payload_identifier_prefix.clone();
    Some(Box::new(move |c: &mut DbConnection, _row: &CommandRow| {
        let mut outcome = FollowUp::default();
        facts.write(c, &outbox, &context, now)?;
        match (purpose, action_id) {
            (Purpose::Action, Some(action)) => {
                let wipe = request_type == "EraseDevice";
                let (state, error) = match status {
                    Status::Acknowledged => (ActionState::Done, None),
                    Status::CommandFormatError => (
                        ActionState::NotSupported,
                        Some(error.unwrap_or((
                            "CommandFormatError".into(),
                            "The device could not read the command".into(),
                        ))),
                    ),
                    _ => (ActionState::Failed, error.clone()),
                };
                if store::set_action_state(c, action, state.as_str(), to_millis(now))? {
                    report_action(&outbox, c, action, context.device_id, state, error, now)?;
                }
                if state == ActionState::Done && wipe {
                    end_enrollment(
                        c,
                        &outbox,
                        &context.device_channel,
                        None,
                        "wiped",
                        now,
                        EndCause::Action,
                    )?;
                    outcome.ended = true;
                }
            }
            (Purpose::RetireStep, Some(action)) => {
                let expires = to_millis(now) + hours(expiry_hours);
                outcome.enqueued = retire_step(
                    c,
                    &context,
                    action,
                    &request_type,
                    status,
                    &facts,
                    &prefix,
                    now,
                    expires,
                )?;
                outcome.push = !outcome.enqueued.is_empty();
            }
            (Purpose::RetireFinal, Some(action)) => {
                if status == Status::Acknowledged {
                    if store::set_action_state(c, action, "done", to_millis(now))? {
                        report_action(
                            &outbox,
                            c,
                            action,
                            context.device_id,
                            ActionState::Done,
                            None,
                            now,
                        )?;
                    }
                    end_enrollment(
                        c,
                        &outbox,
                        &context.device_channel,
                        None,
                        "retired",
                        now,
                        EndCause::Action,
                    )?;
                    outcome.ended = true;
                } else if store::set_action_state(c, action, "failed", to_millis(now))? {
                    report_action(
                        &outbox,
                        c,
                        action,
                        context.device_id,
                        ActionState::Failed,
                        error,
                        now,
                    )?;
                }
            }
            _ => {}
        }
        Ok(outcome)
    }))
}

/// The follow-up of a command that expired unanswered.
pub fn for_expiry(
    apple: &Apple,
    queued: &Queued,
    context: ChannelContext,
    now: DateTime<Utc>,
) -> Option<FollowUpFn> {
    let action = queued.action_id?;
    apple.active.forget(action);
    let outbox = apple.outbox.clone();
    Some(Box::new(move |c: &mut DbConnection, _row: &CommandRow| {
        expire_action(c, &outbox, action, context.device_id, now)?;
        Ok(FollowUp::default())
    }))
}

/// Ends an action whose time ran out: its remaining commands go, dispatch hears `expired`.
pub fn expire_action(
    c: &mut DbConnection,
    outbox: &Outbox,
    action: ActionId,
    device: DeviceId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if store::set_action_state(c, action, "expired", to_millis(now))? {
        let rest = store::take_queued_of_action(c, action)?;
        record_closed(c, &rest, "Expired", now)?;
        report_action(outbox, c, action, device, ActionState::Expired, None, now)?;
    }
    Ok(())
}

/// Writes results for commands that left the queue without an answer.
pub fn record_closed(
    c: &mut DbConnection,
    rows: &[CommandRow],
    status: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let results: Vec<_> = rows
        .iter()
        .map(|row| mdm_store::models::apple::CommandResultRow {
            command_uuid: row.command_uuid.clone(),
            channel_id: row.channel_id.clone(),
            request_type: row.request_type.clone(),
            action_id: row.action_id,
            status: status.to_owned(),
            error_chain: None,
            result: None,
            completed_at: to_millis(now),
        })
        .collect();
    store::insert_results(c, &results)
}

/// Facts parsed from an inventory answer, outside the transaction.
enum Facts {
    None,
    Device(Box<inventory::DeviceInformation>),
    Security(inventory::SecurityInfo),
    Profiles(Vec<Profile>),
    ManagedApps(Vec<String>),
    InstalledApps(usize),
}

impl Facts {
    fn parse(request_type: &str, body: &[u8]) -> Self {
        let parsed = match request_type {
            "DeviceInformation" => {
                inventory::parse_device_information(body).map(|d| Self::Device(Box::new(d)))
            }
            "SecurityInfo" => inventory::parse_security_info(body).map(Self::Security),
            "ProfileList" => inventory::parse_profile_list(body).map(Self::Profiles),
            "ManagedApplicationList" => {
                inventory::parse_managed_application_list(body).map(Self::ManagedApps)
            }
            "InstalledApplicationList" => inventory::parse_installed_application_list(body)
                .map(|apps| Self::InstalledApps(apps.len())),
            _ => return Self::None,
        };
        parsed.unwrap_or_else(|error| {
            tracing::info!(request_type, %error, "an inventory answer could not be read");
            Self::None
        })
    }

    /// Stores the facts and tells inventory what changed.
    fn write(
        &self,
        c: &mut DbConnection,
        outbox: &Outbox,
        context: &ChannelContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if matches!(self, Self::None) {
            return Ok(());
        }
        let mut info =
            store::device_info(c, &context.device_channel)?.unwrap_or_else(|| DeviceInfoRow {
                channel_id: context.device_channel.clone(),
                ..Default::default()
            });
        info.updated_at = to_millis(now);
        let mut facts = DeviceFacts::default();
        match self {
            Self::None => {}
            Self::Device(d) => {
                merge(&mut info.device_name, &d.device_name);
                merge(&mut info.os_version, &d.os_version);
                merge(&mut info.build_version, &d.build_version);
                merge(&mut info.model_name, &d.model_name);
                merge(&mut info.model, &d.model);
                merge(&mut info.product_name, &d.product_name);
                merge(&mut info.serial_number, &d.serial_number);
                merge(&mut info.imei, &d.imei);
                merge(&mut info.meid, &d.meid);
                if d.is_supervised.is_some() {
                    info.is_supervised = d.is_supervised;
                }
                facts.device_name = d.device_name.clone();
                facts.os_version = d.os_version.as_deref().and_then(|v| v.parse().ok());
                facts.model = d.product_name.clone().or(d.model.clone());
                facts.manufacturer = Some("Apple".into());
                facts.serial_number = d.serial_number.clone();
                facts.imei = d.imei.clone();
                facts.is_supervised = d.is_supervised;
            }
            Self::Security(s) => {
                info.passcode_present = s.passcode_present;
                facts.is_passcode_present = s.passcode_present;
                facts.is_encrypted = s.is_encrypted();
            }
            Self::Profiles(profiles) => {
                info.profiles = serde_json::to_string(profiles).ok();
            }
            Self::ManagedApps(apps) => {
                info.managed_apps = serde_json::to_string(apps).ok();
            }
            Self::InstalledApps(count) => {
                info.installed_app_count = i32::try_from(*count).ok();
            }
        }
        store::upsert_device_info(c, &info)?;
        if facts != DeviceFacts::default() {
            outbox.enqueue(
                c,
                &format!("apple:facts:{}:{}", context.device_id, uuid::Uuid::new_v4()),
                Some(&context.device_id.to_string()),
                &DeviceFactsReported {
                    device_id: context.device_id,
                    facts,
                    at: now,
                },
            )?;
        }
        // The OS version matters for later commands (EraseDevice options).
        Ok(())
    }
}

fn merge(into: &mut Option<String>, from: &Option<String>) {
    if from.is_some() {
        into.clone_from(from);
    }
}

/// The queries that start a retire: what is installed by MDM.
pub fn retire_queries(platform: Platform) -> Vec<command::Command> {
    let mut queries = vec![command::profile_list()];
    // The seed's iOS table removes the apps Intune installed, with their data; the macOS
    // table does not touch apps.
    if platform != Platform::MacOs {
        queries.push(command::managed_application_list());
    }
    queries
}

/// One retire query answered: queue the removals it calls for; once no query is left,
/// queue the removal of the MDM profile itself.
#[allow(clippy::too_many_arguments)]
fn retire_step(
    c: &mut DbConnection,
    context: &ChannelContext,
    action: ActionId,
    request_type: &str,
    status: Status,
    facts: &Facts,
    prefix: &str,
    now: DateTime<Utc>,
    expires: i64,
) -> Result<Vec<CommandRow>, StoreError> {
    let now_ms = to_millis(now);
    let mut next: Vec<NewCommandRow> = Vec::new();
    let mdm_profile = mdm_profile_identifier(c, context, prefix)?;
    if status == Status::Acknowledged {
        match (request_type, facts) {
            ("ProfileList", Facts::Profiles(profiles)) => {
                for profile in profiles {
                    if Some(&profile.identifier) == mdm_profile.as_ref() || profile.is_mdm() {
                        continue;
                    }
                    let cmd = command::remove_profile(&profile.identifier);
                    next.push(new_command(
                        &context.key,
                        &cmd,
                        Purpose::RetireStep,
                        Some(action),
                        false,
                        now_ms,
                        expires,
                    ));
                }
            }
            ("ManagedApplicationList", Facts::ManagedApps(apps)) => {
                for app in apps {
                    let cmd = command::remove_application(app);
                    next.push(new_command(
                        &context.key,
                        &cmd,
                        Purpose::RetireStep,
                        Some(action),
                        false,
                        now_ms,
                        expires,
                    ));
                }
            }
            _ => {}
        }
    }
    let queries_left = store::commands_of_action(c, action)?.iter().any(|row| {
        matches!(
            row.request_type.as_str(),
            "ProfileList" | "ManagedApplicationList"
        )
    });
    let is_query = matches!(request_type, "ProfileList" | "ManagedApplicationList");
    if is_query && !queries_left {
        let identifier = mdm_profile_identifier(c, context, prefix)?;
        match identifier {
            Some(identifier) => {
                let cmd = command::remove_profile(&identifier);
                next.push(new_command(
                    &context.key,
                    &cmd,
                    Purpose::RetireFinal,
                    Some(action),
                    false,
                    now_ms,
                    expires,
                ));
            }
            None => {
                tracing::warn!(channel = %context.key, "retire: the MDM profile is unknown; the device must check out by itself");
            }
        }
    }
    if next.is_empty() {
        return Ok(Vec::new());
    }
    store::insert_commands(c, &next)
}

/// The identifier of the profile that enrolled the device: the profile in the device's
/// ProfileList that carries the MDM payload, or the one this adapter made.
fn mdm_profile_identifier(
    c: &mut DbConnection,
    context: &ChannelContext,
    prefix: &str,
) -> Result<Option<String>, StoreError> {
    let info = store::device_info(c, &context.device_channel)?;
    if let Some(profiles) = info
        .and_then(|i| i.profiles)
        .and_then(|p| serde_json::from_str::<Vec<Profile>>(&p).ok())
        && let Some(mdm) = profiles.iter().find(|p| p.is_mdm())
    {
        return Ok(Some(mdm.identifier.clone()));
    }
    let profile_id: Option<Option<Vec<u8>>> = apl_enrollments::table
        .find(&context.device_channel)
        .select(apl_enrollments::profile_id)
        .first(c)
        .optional()?;
    Ok(profile_id
        .flatten()
        .and_then(|id| uuid::Uuid::from_slice(&id).ok())
        .map(|id| crate::profile::mdm_profile_identifier(prefix, &id.to_string())))
}

/// Ends the enrollment of a device (all its channels) or of one user channel: the state
/// is set, the queue emptied, open actions end. Answers the channel keys that ended.
pub fn end_enrollment(
    c: &mut DbConnection,
    outbox: &Outbox,
    device_channel: &str,
    user_channel: Option<&String>,
    state: &str,
    now: DateTime<Utc>,
    cause: EndCause,
) -> Result<Vec<String>, StoreError> {
    let now_ms = to_millis(now);
    let keys: Vec<String> = match user_channel {
        Some(key) => vec![key.clone()],
        None => store::channels_of(c, device_channel)?
            .into_iter()
            .map(|r| r.channel_id)
            .collect(),
    };
    diesel::update(apl_enrollments::table.filter(apl_enrollments::channel_id.eq_any(&keys)))
        .set((
            apl_enrollments::state.eq(state),
            apl_enrollments::ended_at.eq(Some(now_ms)),
            apl_enrollments::updated_at.eq(now_ms),
        ))
        .execute(c)?;
    let dropped = store::take_all_of(c, &keys)?;
    record_closed(c, &dropped, "Canceled", now)?;
    if user_channel.is_some() {
        return Ok(keys);
    }
    let device: Option<DeviceId> = apl_enrollments::table
        .find(device_channel)
        .select(apl_enrollments::device_id)
        .first(c)
        .optional()?;
    let Some(device) = device else {
        return Ok(keys);
    };
    let mut completed_retire = false;
    for action in store::open_actions_of(c, device_channel)? {
        let retire = matches!(action.kind, ActionKind::Retire | ActionKind::Delete);
        if retire && matches!(cause, EndCause::CheckOut(_)) {
            // The device removed its MDM profile: the retire is done.
            store::set_action_state(c, action.action_id, "done", now_ms)?;
            report_action(
                outbox,
                c,
                action.action_id,
                device,
                ActionState::Done,
                None,
                now,
            )?;
            completed_retire = true;
        } else {
            store::set_action_state(c, action.action_id, "failed", now_ms)?;
            report_action(
                outbox,
                c,
                action.action_id,
                device,
                ActionState::Failed,
                Some((
                    "device_left_management".into(),
                    format!("the device's enrollment ended ({state})"),
                )),
                now,
            )?;
        }
    }
    if let EndCause::CheckOut(device) = cause
        && !completed_retire
    {
        report_unenrolled(outbox, c, device, UnenrollReason::RemovedOnDevice, now)?;
    }
    Ok(keys)
}

impl Profile {
    /// Whether this is an MDM enrollment profile (its payloads include com.apple.mdm).
    pub fn is_mdm(&self) -> bool {
        self.payloads
            .iter()
            .any(|p| p.payload_type.as_deref() == Some("com.apple.mdm"))
    }
}

/// Shared with the tracker's flush task.
pub type SharedTracker = Arc<ActiveTracker>;
