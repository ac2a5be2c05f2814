//! OMA-DM management sessions at `/ManagementServer/MDM.svc`.
//!
//! Each message: authenticate the client certificate (by its SHA-256, in memory), read
//! the SyncML with limits, answer the header and every client command with a Status in
//! document order, match the client's Status and Results to the commands sent (their
//! CmdIDs are the command ids, so this works on any replica and after a restart), take in
//! DevInfo/DevDetail facts, large objects (MoreData, Alert 1222) and Alert 1226; then
//! pick the next commands. Everything that must be durable (deliveries, outcomes, facts,
//! the unenrollment) is written through group commit, and the answer leaves only after
//! that commit. A message answered with Statuses only ends the session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use chrono::{DateTime, Utc};
use mdm_api::ErrorCode;
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::inventory::{
    DeviceFacts, DeviceFactsReported, DeviceUnenrolled, UnenrollReason,
};
use mdm_domain::{ActionId, ActionState, DeviceId, EnrollmentId};
use mdm_runtime::ApiError;
use mdm_runtime::group_commit::GroupCommit;
use mdm_runtime::outbox::Outbox;
use mdm_store::models::windows::WinCommandRow;
use mdm_store::{DbConnection, StoreError, from_millis};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::Adapter;
use crate::commands::{self, node, verb};
use crate::db::{self, command_state, state};
use crate::inventory::{self, Gathered};
use crate::state::{LargeObject, Pending, Session};
use crate::syncml::{Command, Item, Message, OutCommand, ParseError, Verb, Writer, alert, code};
use crate::xml::XmlError;

pub const SYNCML_CONTENT_TYPE: &str = "application/vnd.syncml.dm+xml";
const UNENROLL_ALERT_TYPE: &str = "com.microsoft:mdm.unenrollment.userrequest";

/// The answer for a device that could not be authenticated: one code, no detail about
/// which check failed.
pub fn unauthenticated() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::bare(
        ErrorCode::WindowsDeviceUnauthenticated,
    ))
}

fn syncml(body: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType(
            SYNCML_CONTENT_TYPE.parse().unwrap_or(mime_fallback()),
        ))
        .body(body.into())
}

fn mime_fallback() -> actix_web::mime::Mime {
    actix_web::mime::APPLICATION_OCTET_STREAM
}

/// What one outcome of a command is.
#[derive(Debug, Clone)]
struct Completion {
    id: Uuid,
    cmd_id: String,
    code: String,
    state: ActionState,
    sealed_result: Option<Vec<u8>>,
}

/// The durable effects of one message.
#[derive(Default)]
pub(crate) struct Effects {
    deliver: Vec<Pending>,
    syncs: Vec<Pending>,
    completions: Vec<Completion>,
    unenroll: bool,
    facts: Option<(DeviceFacts, DeviceFacts, Option<String>, Option<i64>)>,
    channel: Option<Option<String>>,
    revoke_others: Option<[u8; 32]>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.deliver.is_empty()
            && self.syncs.is_empty()
            && self.completions.is_empty()
            && !self.unenroll
            && self.facts.is_none()
            && self.channel.is_none()
            && self.revoke_others.is_none()
    }
}

/// What the commit did.
#[derive(Default)]
pub(crate) struct Applied {
    delivered: Vec<Uuid>,
    finished: Vec<Uuid>,
    ended: bool,
}

/// Handles one SyncML message from a device.
pub async fn handle(adapter: Arc<Adapter>, cert_der: Option<Vec<u8>>, body: &[u8]) -> HttpResponse {
    let now_time = adapter.clock.now();
    let now = now_time.timestamp_millis();
    let Some(der) = cert_der else {
        return unauthenticated();
    };
    let fingerprint = crate::clientcert::fingerprint(&der);
    let device_id = match adapter.authenticate(fingerprint, now).await {
        Ok(Some(device)) => device,
        Ok(None) => return unauthenticated(),
        Err(error) => return actix_web::ResponseError::error_response(&ApiError::from(error)),
    };
    let message = match Message::parse(body, &adapter.limits) {
        Ok(message) => message,
        Err(ParseError::Xml(XmlError::TooLarge(limit))) => {
            return actix_web::ResponseError::error_response(&ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("SyncML messages are limited to {limit} bytes"),
            ));
        }
        Err(error) => {
            return actix_web::ResponseError::error_response(&ApiError::new(
                ErrorCode::WindowsMalformedMessage,
                error.to_string(),
            ));
        }
    };
    let Some(snapshot) = adapter.index.with(device_id, |d| {
        (
            d.windows_device_id.clone(),
            d.enrollment_id,
            d.facts.clone(),
            d.inventory_at,
            d.channel.clone(),
            d.certificates.clone(),
        )
    }) else {
        return unauthenticated();
    };
    let (windows_device_id, enrollment_id, known_facts, inventory_at, channel, certificates) =
        snapshot;
    // The certificate must belong to the device the message says it comes from.
    if !message
        .header
        .source
        .trim()
        .eq_ignore_ascii_case(windows_device_id.trim())
    {
        tracing::info!(device = %device_id, "SyncML Source does not match the certificate's enrollment");
        return unauthenticated();
    }
    let header = &message.header;
    let mut writer = Writer::new(
        &header.session_id,
        header.msg_id,
        &header.source,
        &adapter.urls.management,
    );
    if header.ver_dtd != "1.2" || header.ver_proto != "DM/1.2" {
        let status = if header.ver_dtd != "1.2" {
            code::VERSION_NOT_SUPPORTED
        } else {
            code::PROTOCOL_NOT_SUPPORTED
        };
        writer.status(header.msg_id, "0", "SyncHdr", status);
        return syncml(writer.finish(true));
    }

    let mut session = if header.msg_id == 1 {
        // A session's first message: whatever was kept under this id is over.
        let _ = adapter.sessions.take(device_id, &header.session_id, now);
        Session::default()
    } else {
        adapter.sessions.take(device_id, &header.session_id, now)
    };
    if header.msg_id != 1
        && header.msg_id == session.last_msg_id
        && let Some(answer) = session.last_answer.clone()
    {
        adapter
            .sessions
            .put(device_id, &header.session_id, session, now);
        return syncml(answer.as_str());
    }
    if header.msg_id != 1 && header.msg_id < session.last_msg_id {
        adapter
            .sessions
            .put(device_id, &header.session_id, session, now);
        writer.status(header.msg_id, "0", "SyncHdr", code::BAD_REQUEST);
        return syncml(writer.finish(true));
    }
    writer.status(header.msg_id, "0", "SyncHdr", code::OK);
    // Commands delivered in an answer to this very message are sent again: the device
    // sends a message again only when the answer did not reach it.
    let message_key: Arc<str> = format!("{}/{}", header.session_id, header.msg_id).into();

    let mut effects = Effects::default();
    let mut gathered = Gathered::default();
    let mut channel_seen: Option<Option<String>> = None;
    let mut end_session = false;
    let channel_node = node::channel_uri(&adapter.config.provider_id).to_ascii_lowercase();
    for command in &message.commands {
        answer_command(
            &adapter,
            command,
            header.msg_id,
            &mut writer,
            &mut session,
            &mut effects,
            &mut gathered,
            &mut channel_seen,
            &mut end_session,
            &channel_node,
        );
    }

    // Facts, channel and certificate changes.
    if !gathered.is_empty() || gathered.inventory {
        let mut new = gathered.facts.clone();
        new.identity_certificate_expires_at = None;
        let changes = inventory::changes(&known_facts, &new);
        let inventory_now = gathered.inventory.then_some(now);
        if changes.is_some() || inventory_now.is_some() {
            let changes = changes.unwrap_or_default();
            let merged = inventory::merge(&known_facts, &changes);
            effects.facts = Some((changes, merged, gathered.os_version.clone(), inventory_now));
        }
    }
    if let Some(seen) = channel_seen {
        let usable = seen.filter(|uri| {
            adapter
                .push
                .as_ref()
                .is_some_and(|push| push.channel_allowed(uri))
        });
        if usable != channel {
            effects.channel = Some(usable);
        }
    }
    if certificates.len() > 1 {
        let newest = certificates
            .iter()
            .max_by_key(|c| c.not_after)
            .map(|c| c.sha256);
        if newest == Some(fingerprint) {
            effects.revoke_others = Some(fingerprint);
        }
    }

    // The next commands, when the client's package is complete.
    let mut own_gets: Vec<(String, String)> = Vec::new();
    let mut continues = false;
    if effects.unenroll || end_session {
        // Nothing more: the device left, or ended the session.
    } else if !message.is_final || session.large_object.is_some() {
        writer.alert(alert::NEXT_MESSAGE);
        continues = true;
    } else {
        let answered: Vec<Uuid> = effects.completions.iter().map(|c| c.id).collect();
        let budget = adapter.config.max_commands_per_message.max(1);
        let next: Vec<Pending> = adapter
            .index
            .with(device_id, |d| {
                d.pending
                    .iter()
                    .filter(|p| {
                        (!p.delivered || p.delivered_in.as_ref() == Some(&message_key))
                            && !answered.contains(&p.id)
                            && p.expires_at > now
                    })
                    .take(budget)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for pending in next {
            if pending.verb == verb::SYNC {
                effects.syncs.push(pending);
            } else {
                effects.deliver.push(pending);
            }
        }
        let mut room = budget.saturating_sub(effects.deliver.len());
        let inventory_due = inventory_at.is_none_or(|at| {
            now - at >= i64::from(adapter.config.inventory_interval_hours) * 3_600_000
        });
        if inventory_due && !session.inventory_requested && room > 0 {
            session.inventory_requested = true;
            for (i, node) in inventory::INVENTORY_NODES.iter().enumerate().take(room) {
                own_gets.push((
                    format!("inv-{}-{}", header.msg_id, i + 1),
                    (*node).to_owned(),
                ));
            }
            room = room.saturating_sub(own_gets.len());
        }
        if adapter.push.is_some() && !session.channel_requested && room > 0 {
            session.channel_requested = true;
            own_gets.push((
                format!("push-{}", header.msg_id),
                node::channel_uri(&adapter.config.provider_id),
            ));
        }
    }

    // Make it durable before answering.
    let mut applied = Applied::default();
    if !effects.is_empty() {
        let work = Work {
            outbox: adapter.outbox.clone(),
            device_id,
            enrollment_id,
            message: message_key.clone(),
            now: now_time,
            effects,
        };
        let result = adapter.recorder.record(work).await;
        match result {
            Ok((done, effects_back)) => {
                applied = done;
                effects = effects_back;
            }
            Err(error) => {
                tracing::warn!(%error, device = %device_id, "a SyncML message could not be recorded");
                return actix_web::ResponseError::error_response(&ApiError::from(error));
            }
        }
    }

    // Bring memory up to date.
    if applied.ended {
        adapter.index.remove(device_id);
    } else {
        adapter.index.with(device_id, |d| {
            d.remove_pending(&applied.finished);
            for pending in d.pending.iter_mut() {
                if applied.delivered.contains(&pending.id) {
                    pending.delivered = true;
                    pending.delivered_in = Some(message_key.clone());
                }
            }
            let undeliverable: Vec<Uuid> = effects
                .deliver
                .iter()
                .map(|p| p.id)
                .filter(|id| !applied.delivered.contains(id))
                .collect();
            d.remove_pending(&undeliverable);
            if let Some((_, merged, version, at)) = &effects.facts {
                d.facts = merged.clone();
                if let Some(build) = version
                    .as_deref()
                    .and_then(|v| v.parse::<mdm_domain::OsVersion>().ok())
                    .and_then(|v| v.windows_10_build())
                {
                    d.build = Some(build);
                }
                if at.is_some() {
                    d.inventory_at = *at;
                }
            }
            if let Some(channel) = &effects.channel {
                d.channel = channel.clone();
            }
        });
        if let Some(keep) = effects.revoke_others {
            let kept: Vec<_> = certificates
                .iter()
                .filter(|c| c.sha256 == keep)
                .copied()
                .collect();
            adapter.index.set_certificates(device_id, kept);
        }
    }

    // The commands, in order: actions first, then the server's own reads.
    let mut sent_any = false;
    for pending in effects
        .deliver
        .iter()
        .filter(|p| applied.delivered.contains(&p.id))
    {
        writer.command(&OutCommand {
            verb: &pending.verb,
            cmd_id: &pending.cmd_id,
            loc_uri: &pending.loc_uri,
            format: pending.format.as_deref(),
            kind: commands::Step::meta_type(pending.format.as_deref()),
            data: pending.data.as_deref(),
        });
        sent_any = true;
    }
    for (cmd_id, loc_uri) in &own_gets {
        writer.command(&OutCommand {
            verb: verb::GET,
            cmd_id,
            loc_uri,
            format: None,
            kind: None,
            data: None,
        });
        session.own_gets.push(cmd_id.clone());
        sent_any = true;
    }
    let answer = writer.finish(true);
    adapter.saw(device_id, now);
    if (sent_any || continues) && !applied.ended {
        session.last_msg_id = header.msg_id;
        session.last_answer = Some(Arc::new(answer.clone()));
        if session.own_gets.len() > 64 {
            let excess = session.own_gets.len() - 64;
            session.own_gets.drain(..excess);
        }
        adapter
            .sessions
            .put(device_id, &header.session_id, session, now);
    }
    syncml(answer)
}

/// Answers one client command and records what it means.
#[allow(clippy::too_many_arguments)]
fn answer_command(
    adapter: &Adapter,
    command: &Command,
    msg_id: u64,
    writer: &mut Writer,
    session: &mut Session,
    effects: &mut Effects,
    gathered: &mut Gathered,
    channel_seen: &mut Option<Option<String>>,
    end_session: &mut bool,
    channel_node: &str,
) {
    let cmd_id = command.cmd_id.as_deref().unwrap_or("");
    if command.verb == Verb::Status {
        take_status(adapter, command, session, effects, channel_seen);
        return;
    }
    if cmd_id.is_empty() || cmd_id == "0" {
        writer.status(msg_id, cmd_id, &command.name, code::BAD_REQUEST);
        return;
    }
    let status = match command.verb {
        Verb::Alert => match command.data.as_deref().map(str::trim) {
            Some(alert::CLIENT_INITIATED | alert::SERVER_INITIATED | alert::DEVICE_ALERT)
            | Some(alert::NEXT_MESSAGE) => code::OK,
            Some(alert::GENERIC_ALERT) => {
                if command
                    .items
                    .iter()
                    .any(|i| i.meta.kind.as_deref().map(str::trim) == Some(UNENROLL_ALERT_TYPE))
                {
                    effects.unenroll = true;
                }
                code::OK
            }
            Some(alert::SESSION_ABORT) => {
                *end_session = true;
                code::OK
            }
            _ => code::OPTIONAL_FEATURE_NOT_SUPPORTED,
        },
        Verb::Replace | Verb::Add | Verb::Results => {
            let mut status = code::OK;
            for item in &command.items {
                let loc = item
                    .source
                    .as_deref()
                    .or(item.target.as_deref())
                    .unwrap_or("");
                match take_chunk(adapter, session, command, item, loc) {
                    Chunk::Partial => status = code::CHUNK_ACCEPTED,
                    Chunk::Refused(refusal) => status = refusal,
                    Chunk::Whole(data) => {
                        take_value(
                            adapter,
                            command,
                            loc,
                            &data,
                            effects,
                            gathered,
                            channel_seen,
                            channel_node,
                        );
                    }
                }
            }
            status
        }
        Verb::Get | Verb::Exec | Verb::Delete | Verb::Copy | Verb::Atomic | Verb::Sequence => {
            code::OPTIONAL_FEATURE_NOT_SUPPORTED
        }
        Verb::Status => code::OK,
        Verb::Unknown => code::BAD_REQUEST,
    };
    writer.status(msg_id, cmd_id, &command.name, status);
}

enum Chunk {
    Whole(String),
    Partial,
    Refused(u16),
}

/// Large objects: chunks with MoreData are buffered (within the limit) until the last.
fn take_chunk(
    adapter: &Adapter,
    session: &mut Session,
    command: &Command,
    item: &Item,
    loc: &str,
) -> Chunk {
    let data = item.data.as_deref().unwrap_or("");
    if item.more_data {
        let object = session.large_object.get_or_insert_with(|| LargeObject {
            cmd_ref: command.cmd_ref.clone(),
            loc_uri: loc.to_owned(),
            declared_size: item.meta.size,
            data: String::new(),
        });
        if object.loc_uri != loc {
            *object = LargeObject {
                cmd_ref: command.cmd_ref.clone(),
                loc_uri: loc.to_owned(),
                declared_size: item.meta.size,
                data: String::new(),
            };
        }
        if object.data.len() + data.len() > adapter.config.max_large_object_bytes {
            session.large_object = None;
            return Chunk::Refused(code::REQUEST_ENTITY_TOO_LARGE);
        }
        object.data.push_str(data);
        return Chunk::Partial;
    }
    match session.large_object.take() {
        Some(object) if object.loc_uri == loc => {
            let mut whole = object.data;
            if whole.len() + data.len() > adapter.config.max_large_object_bytes {
                return Chunk::Refused(code::REQUEST_ENTITY_TOO_LARGE);
            }
            whole.push_str(data);
            if object
                .declared_size
                .is_some_and(|size| size != whole.len() as u64)
            {
                return Chunk::Refused(code::SIZE_MISMATCH);
            }
            Chunk::Whole(whole)
        }
        other => {
            session.large_object = other;
            Chunk::Whole(data.trim().to_owned())
        }
    }
}

/// A node value the client sent (Replace/Add) or returned (Results).
#[allow(clippy::too_many_arguments)]
fn take_value(
    adapter: &Adapter,
    command: &Command,
    loc: &str,
    data: &str,
    effects: &mut Effects,
    gathered: &mut Gathered,
    channel_seen: &mut Option<Option<String>>,
    channel_node: &str,
) {
    let normalized = loc.trim().to_ascii_lowercase();
    if normalized == channel_node
        || normalized.replacen("./vendor/", "./device/vendor/", 1) == channel_node
    {
        let uri = data.trim();
        *channel_seen = Some((!uri.is_empty()).then(|| uri.to_owned()));
        return;
    }
    if command.verb == Verb::Results
        && let Some(cmd_ref) = command.cmd_ref.as_deref()
        && let Ok(id) = Uuid::parse_str(cmd_ref)
    {
        // The answer to a Get the server queued (NewPINValue): kept sealed, never logged.
        let sealed = adapter
            .secrets
            .seal(crate::RESULT_PURPOSE, data.trim().as_bytes())
            .ok();
        match effects.completions.iter_mut().find(|c| c.id == id) {
            Some(completion) => completion.sealed_result = sealed,
            None => effects.completions.push(Completion {
                id,
                cmd_id: cmd_ref.to_owned(),
                code: "200".into(),
                state: ActionState::Done,
                sealed_result: sealed,
            }),
        }
        return;
    }
    gathered.add(loc, data);
}

/// A Status from the client: the outcome of a command the server sent.
fn take_status(
    adapter: &Adapter,
    command: &Command,
    session: &Session,
    effects: &mut Effects,
    channel_seen: &mut Option<Option<String>>,
) {
    let Some(cmd_ref) = command.cmd_ref.as_deref().map(str::trim) else {
        return;
    };
    if cmd_ref == "0" {
        return;
    }
    let code = command.data.as_deref().unwrap_or("").trim().to_owned();
    if session.own_gets.iter().any(|id| id == cmd_ref) {
        if cmd_ref.starts_with("push-") && code == "404" {
            *channel_seen = Some(None);
        }
        return;
    }
    let Ok(id) = Uuid::parse_str(cmd_ref) else {
        tracing::debug!(cmd_ref, "Status for an unknown command");
        return;
    };
    if effects.completions.iter().any(|c| c.id == id) {
        return;
    }
    let state = commands::outcome(&code);
    let _ = adapter;
    effects.completions.push(Completion {
        id,
        cmd_id: cmd_ref.to_owned(),
        code,
        state,
        sealed_result: None,
    });
}

/// The durable part of one message, run inside a group commit.
pub(crate) struct Work {
    outbox: Outbox,
    device_id: DeviceId,
    enrollment_id: EnrollmentId,
    /// The device message answered (`<SessionID>/<MsgID>`).
    message: Arc<str>,
    now: DateTime<Utc>,
    effects: Effects,
}

/// The outcome of the statements run for a whole batch of messages at once.
#[derive(Default)]
struct Bulk {
    delivered: HashSet<Uuid>,
    completed: HashMap<Uuid, WinCommandRow>,
}

/// Records a batch of messages in one transaction: deliveries, and outcomes without a
/// result, in one statement per kind for the whole batch; the rest message by message.
fn apply_batch(
    c: &mut DbConnection,
    works: Vec<Work>,
) -> Result<Vec<(Applied, Effects)>, StoreError> {
    let mut bulk = Bulk::default();
    let now = works.first().map_or(0, |w| w.now.timestamp_millis());
    let mut deliveries: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    for work in works.iter().filter(|w| !w.effects.deliver.is_empty()) {
        deliveries.entry(&*work.message).or_default().extend(
            work.effects
                .deliver
                .iter()
                .map(|p| p.id.as_bytes().to_vec()),
        );
    }
    for (message, ids) in deliveries {
        for id in db::mark_delivered(c, &ids, message, now)? {
            if let Ok(id) = Uuid::from_slice(&id) {
                bulk.delivered.insert(id);
            }
        }
    }
    let mut groups: HashMap<(&'static str, String), Vec<Vec<u8>>> = HashMap::new();
    for work in &works {
        for completion in work
            .effects
            .completions
            .iter()
            .filter(|c| c.sealed_result.is_none())
        {
            groups
                .entry((
                    commands::command_state(completion.state),
                    completion.code.clone(),
                ))
                .or_default()
                .push(completion.id.as_bytes().to_vec());
        }
    }
    for ((new_state, code), ids) in groups {
        for row in db::complete_many(c, &ids, new_state, &code, now)? {
            if let Ok(id) = Uuid::from_slice(&row.id) {
                bulk.completed.insert(id, row);
            }
        }
    }
    let outbox = works.first().map(|w| w.outbox.clone());
    let mut reports = Reports::new();
    let results = works
        .into_iter()
        .map(|w| w.apply(c, &mut bulk, &mut reports))
        .collect::<Result<Vec<_>, _>>()?;
    if let (Some(outbox), false) = (outbox, reports.is_empty()) {
        outbox.enqueue_many(c, &reports)?;
    }
    Ok(results)
}

/// Action reports of a batch, sent with one multi-row insert: (key, ordering key, report).
type Reports = Vec<(String, Option<String>, ActionReport)>;

/// Adds a report to the batch's (see [`report`] for the keys).
#[allow(clippy::too_many_arguments)]
fn queue_report(
    reports: &mut Reports,
    device_key: &str,
    action: ActionId,
    device_id: DeviceId,
    state: ActionState,
    error_code: Option<String>,
    error_detail: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    reports.push((
        report_key(action, state),
        Some(device_key.to_owned()),
        ActionReport {
            action_id: action,
            device_id,
            state,
            error_code,
            error_detail,
            at,
        },
    ));
    Ok(())
}

fn report_key(action: ActionId, state: ActionState) -> String {
    if state.is_terminal() {
        format!("windows:action:{action}:outcome")
    } else {
        format!("windows:action:{action}:{state}")
    }
}

/// Where a recorded message learns its outcome.
type Reply = oneshot::Sender<Result<(Applied, Effects), StoreError>>;

/// Collects the writes of concurrent messages and records each batch as one job of the
/// group commit; every message is answered after its batch committed.
pub(crate) struct Recorder {
    sender: mpsc::Sender<(Work, Reply)>,
}

impl Recorder {
    pub(crate) fn start(group: GroupCommit, max_batch: usize) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(Work, Reply)>(max_batch.max(1) * 8);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < max_batch.max(1) {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (works, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                match group.write(move |c| apply_batch(c, works)).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::BatchFailed(message.clone())));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    async fn record(&self, work: Work) -> Result<(Applied, Effects), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((work, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the SyncML recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the SyncML recorder has stopped".into()))?
    }
}

impl Work {
    fn apply(
        self,
        c: &mut DbConnection,
        bulk: &mut Bulk,
        reports: &mut Reports,
    ) -> Result<(Applied, Effects), StoreError> {
        let Self {
            outbox,
            device_id,
            enrollment_id,
            message: _,
            now: now_time,
            effects,
        } = self;
        let now = now_time.timestamp_millis();
        let device_key = device_id.to_string();
        let mut applied = Applied::default();
        for pending in &effects.deliver {
            if bulk.delivered.remove(&pending.id) {
                applied.delivered.push(pending.id);
                if let (Some(action), 0) = (pending.action_id, pending.step) {
                    queue_report(
                        reports,
                        &device_key,
                        action,
                        device_id,
                        ActionState::Active,
                        None,
                        None,
                        now_time,
                    )?;
                }
            }
        }
        for pending in &effects.syncs {
            if let Some(row) = db::complete(
                c,
                pending.id.as_bytes(),
                command_state::DONE,
                Some("200"),
                None,
                now,
            )? {
                applied.finished.push(pending.id);
                if let Some(action) = row.action_id {
                    queue_report(
                        reports,
                        &device_key,
                        action,
                        device_id,
                        ActionState::Done,
                        None,
                        None,
                        now_time,
                    )?;
                }
            }
        }
        for completion in &effects.completions {
            let row = match bulk.completed.remove(&completion.id) {
                Some(row) => Some(row),
                None if completion.sealed_result.is_some() => db::complete(
                    c,
                    completion.id.as_bytes(),
                    commands::command_state(completion.state),
                    Some(&completion.code),
                    completion.sealed_result.as_deref(),
                    now,
                )?,
                None => None,
            };
            let Some(row) = row else {
                tracing::debug!(cmd = %completion.cmd_id, "Status for a command that is not open");
                continue;
            };
            applied.finished.push(completion.id);
            let Some(action) = row.action_id else {
                continue;
            };
            let succeeded = completion.state == ActionState::Done;
            if succeeded && !row.last_step {
                continue;
            }
            if !succeeded {
                // The later steps of a failed action are not sent.
                for later in db::commands_of_action(c, action)? {
                    if later.step > row.step
                        && command_state::OPEN.contains(&later.state.as_str())
                        && let Ok(id) = Uuid::from_slice(&later.id)
                    {
                        applied.finished.push(id);
                    }
                }
                db::end_later_steps(c, action, row.step, command_state::CANCELED, now)?;
            }
            let (error_code, detail) = if succeeded {
                (None, None)
            } else {
                (
                    Some(completion.code.clone()),
                    Some(format!(
                        "the device answered {} to {}",
                        completion.code, row.loc_uri
                    )),
                )
            };
            queue_report(
                reports,
                &device_key,
                action,
                device_id,
                completion.state,
                error_code,
                detail,
                now_time,
            )?;
            if succeeded {
                let ends = match row.loc_uri.as_str() {
                    node::WIPE | node::WIPE_PROTECTED => Some(state::WIPED),
                    uri if uri.ends_with("/Unenroll") => Some(state::RETIRED),
                    _ => None,
                };
                if let Some(new_state) = ends {
                    db::end_enrollment(c, enrollment_id, new_state, now)?;
                    applied.ended = true;
                }
            }
        }
        if effects.unenroll {
            db::end_enrollment(c, enrollment_id, state::UNENROLLED, now)?;
            applied.ended = true;
            let ended = db::end_open_commands(c, device_id, command_state::FAILED, now)?;
            let mut reported: Vec<ActionId> = Vec::new();
            for row in ended {
                if let Some(action) = row.action_id.filter(|a| !reported.contains(a)) {
                    reported.push(action);
                    queue_report(
                        reports,
                        &device_key,
                        action,
                        device_id,
                        ActionState::Failed,
                        None,
                        Some("the user removed management on the device".into()),
                        now_time,
                    )?;
                }
            }
            outbox.enqueue(
                c,
                &format!("windows:unenrolled:{enrollment_id}"),
                Some(&device_key),
                &DeviceUnenrolled {
                    device_id,
                    reason: UnenrollReason::RemovedOnDevice,
                    at: now_time,
                },
            )?;
        }
        if let Some((changes, merged, os_version, inventory_at)) = &effects.facts {
            let json = serde_json::to_string(merged).unwrap_or_default();
            db::set_facts(
                c,
                enrollment_id,
                &json,
                os_version.as_deref(),
                *inventory_at,
            )?;
            if *changes != DeviceFacts::default() {
                outbox.enqueue(
                    c,
                    &format!("windows:facts:{device_id}:{}", Uuid::now_v7()),
                    Some(&device_key),
                    &DeviceFactsReported {
                        device_id,
                        facts: changes.clone(),
                        at: now_time,
                    },
                )?;
            }
        }
        if let Some(channel) = &effects.channel {
            let channel_state = if channel.is_some() { "active" } else { "none" };
            db::set_channel(c, enrollment_id, channel.as_deref(), channel_state)?;
        }
        if let Some(keep) = effects.revoke_others {
            db::revoke_other_certificates(c, enrollment_id, &keep, now)?;
        }
        Ok((applied, effects))
    }
}

/// Sends an action's new state to dispatch. Each state is reported once; the outcome
/// (whichever terminal state) once.
#[allow(clippy::too_many_arguments)]
pub fn report(
    outbox: &Outbox,
    c: &mut DbConnection,
    device_key: &str,
    action: ActionId,
    device_id: DeviceId,
    state: ActionState,
    error_code: Option<String>,
    error_detail: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = report_key(action, state);
    outbox.enqueue(
        c,
        &key,
        Some(device_key),
        &ActionReport {
            action_id: action,
            device_id,
            state,
            error_code,
            error_detail,
            at,
        },
    )
}

/// Milliseconds to a time.
pub fn time(millis: i64) -> DateTime<Utc> {
    from_millis(millis)
}
