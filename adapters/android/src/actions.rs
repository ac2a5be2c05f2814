//! Remote actions: what each becomes in AMAPI for each management mode, the messages from
//! dispatch and inventory (applied inside the receiver's transaction; the AMAPI calls are
//! the worker's), and the outcome of an operation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mdm_api::internal::adapter::{ActionParams, CancelAction, DeliverAction, DeviceRemoved};
use mdm_domain::{ActionKind, ActionState, ManagementMode};
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError};
use mdm_store::models::android::{ActionRow, DeviceRow};
use mdm_store::{DbConnection, StoreError, to_millis};
use rand::Rng;

use crate::adapter::{Adapter, report};
use crate::amapi::types::{Command, Operation, UserFacingMessage, WipeParams};
use crate::store::{self, device_state, phase};

/// What an action becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `devices.issueCommand` with this command.
    Command(Command),
    /// `devices.delete`.
    Delete,
    /// Not possible in this management mode: answered `notSupported` with the reason.
    Refuse(&'static str),
}

/// The AMAPI form of `kind` on a device in `mode`. `new_password` is the passcode a
/// reset sets.
pub fn plan(
    kind: ActionKind,
    mode: ManagementMode,
    api_level: Option<i32>,
    params: &ActionParams,
    new_password: Option<&str>,
) -> Plan {
    use ManagementMode::*;
    let command = |kind: &str| Command {
        kind: Some(kind.to_owned()),
        ..Command::default()
    };
    match kind {
        ActionKind::RemoteLock => Plan::Command(command("LOCK")),
        ActionKind::ResetPasscode => {
            if mode == WorkProfile && api_level.is_some_and(|l| l < 26) {
                return Plan::Refuse(
                    "resetting the work profile passcode needs Android 8.0 or later",
                );
            }
            Plan::Command(Command {
                new_password: new_password.map(str::to_owned),
                // The user must enter the new passcode before another reset can change
                // it, and the device locks at once.
                reset_password_flags: vec!["REQUIRE_ENTRY".into(), "LOCK_NOW".into()],
                ..command("RESET_PASSWORD")
            })
        }
        ActionKind::RebootNow => match mode {
            FullyManaged | Dedicated if api_level.is_none_or(|l| l >= 24) => {
                Plan::Command(command("REBOOT"))
            }
            FullyManaged | Dedicated => Plan::Refuse("restarting needs Android 7.0 or later"),
            _ => Plan::Refuse("only fully managed devices can be restarted remotely"),
        },
        ActionKind::Wipe => match mode {
            WorkProfile => Plan::Refuse(
                "a personal device with a work profile cannot be factory reset; retire removes the work profile",
            ),
            _ if params.keep_enrollment_data || params.keep_user_data => Plan::Refuse(
                "keeping enrollment or user data through a factory reset is a Windows option",
            ),
            FullyManaged | Dedicated | CorporateWorkProfile => {
                let flags = if params.persist_esim_data_plan {
                    Vec::new()
                } else {
                    vec!["WIPE_ESIMS".to_owned()]
                };
                Plan::Command(Command {
                    wipe_params: Some(WipeParams {
                        wipe_data_flags: flags,
                        wipe_reason: None,
                    }),
                    ..command("WIPE")
                })
            }
            Desktop | Mobile => Plan::Refuse("not an Android management mode"),
        },
        ActionKind::Retire => match mode {
            // On a personal device WIPE removes the work profile; personal data stays.
            WorkProfile => Plan::Command(Command {
                wipe_params: Some(WipeParams {
                    wipe_data_flags: Vec::new(),
                    wipe_reason: Some(UserFacingMessage {
                        default_message: Some(
                            "Your organization removed the work profile from this device.".into(),
                        ),
                    }),
                }),
                ..command("WIPE")
            }),
            CorporateWorkProfile => Plan::Command(command("RELINQUISH_OWNERSHIP")),
            Dedicated => {
                Plan::Refuse("dedicated (kiosk) devices cannot be retired, only factory reset")
            }
            FullyManaged => Plan::Refuse(
                "fully managed devices cannot be retired without a factory reset; use wipe",
            ),
            Desktop | Mobile => Plan::Refuse("not an Android management mode"),
        },
        ActionKind::Delete => Plan::Delete,
        ActionKind::SyncDevice => Plan::Refuse(
            "Android devices sync their policy by themselves; AMAPI has no sync command",
        ),
    }
}

/// A temporary passcode for RESET_PASSWORD that any password policy accepts: 16
/// characters with upper and lower case letters, digits and symbols (the quality rules
/// are minimums; Android 14 refuses numeric passcodes under 6 digits).
pub fn temporary_passcode() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!#%+=?@";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| char::from(set[rng.random_range(0..set.len())]);
    let mut chars: Vec<char> = Vec::with_capacity(16);
    for set in [UPPER, LOWER, DIGITS, SYMBOLS] {
        chars.push(pick(set));
    }
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    while chars.len() < 16 {
        chars.push(pick(&all));
    }
    // Shuffle so that the classes are not always in the same places.
    for i in (1..chars.len()).rev() {
        let j = rng.random_range(0..=i);
        chars.swap(i, j);
    }
    chars.into_iter().collect()
}

/// The purpose under which reset passcodes are sealed.
pub const PASSCODE_PURPOSE: &str = "android-reset-passcode";

/// What a finished operation means for its action.
pub fn outcome_of(operation: &Operation) -> Option<(ActionState, Option<(String, String)>)> {
    if operation.done != Some(true) {
        return None;
    }
    let command = operation.command().unwrap_or_default();
    let error_code = command
        .error_code
        .filter(|c| c != "COMMAND_ERROR_CODE_UNSPECIFIED");
    match (&operation.error, error_code) {
        (None, None) => Some((ActionState::Done, None)),
        (Some(status), _) if status.code == 1 => Some((
            ActionState::Canceled,
            Some(("CANCELLED".into(), status.message.clone())),
        )),
        (status, code) => {
            let message = status
                .as_ref()
                .map(|s| s.message.clone())
                .unwrap_or_default();
            let code = code.unwrap_or_else(|| {
                status
                    .as_ref()
                    .map_or_else(|| "UNKNOWN".to_owned(), |s| format!("rpc_{}", s.code))
            });
            let state = match code.as_str() {
                "API_LEVEL" | "MANAGEMENT_MODE" | "UNSUPPORTED" => ActionState::NotSupported,
                _ => ActionState::Failed,
            };
            Some((state, Some((code, message))))
        }
    }
}

/// Ends an action with `state` (once) and tells dispatch; a wipe or retire that
/// completed removes the device here.
pub fn finish(
    adapter: &Adapter,
    c: &mut DbConnection,
    action: &ActionRow,
    state: ActionState,
    error: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if phase::is_terminal(&action.phase) {
        return Ok(());
    }
    store::set_phase(
        c,
        action.action_id,
        state.as_str(),
        error.map(|(_, detail)| detail),
        to_millis(now),
    )?;
    report(
        &adapter.outbox,
        c,
        action.action_id,
        action.device_id,
        state,
        error,
        now,
    )?;
    if state == ActionState::Done
        && action.kind.ends_management()
        && let Some(device) = store::device(c, action.device_id)?
        && device.state != device_state::REMOVED
    {
        store::set_device_state(
            c,
            device.device_id,
            device_state::REMOVED,
            None,
            to_millis(now),
        )?;
        // Other actions waiting for the device cannot reach it any more.
        for other in store::open_actions_of(c, device.device_id)? {
            if other.action_id != action.action_id {
                finish(
                    adapter,
                    c,
                    &other,
                    ActionState::Failed,
                    Some(("NOT_FOUND", "the device left management")),
                    now,
                )?;
            }
        }
    }
    Ok(())
}

/// A finished (or not) operation, from a COMMAND notification or `operations.get`.
pub fn apply_operation(
    adapter: &Adapter,
    c: &mut DbConnection,
    action: &ActionRow,
    operation: &Operation,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    match outcome_of(operation) {
        Some((state, error)) => {
            let error = error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            finish(adapter, c, action, state, error, now)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

// ---- inbox -----------------------------------------------------------------------------

fn wake(adapter: &Arc<Adapter>) -> AfterCommit {
    let wake = adapter.wake.clone();
    Some(Box::pin(async move { wake.notify_one() }))
}

/// `DeliverAction`: recorded for the worker; an action the device's mode cannot take is
/// answered at once.
pub fn deliver(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeliverAction,
) -> Result<AfterCommit, HandlerError> {
    let now = delivery.now;
    let device = store::device(c, message.device_id)?;
    let mut params = message.params.clone();
    params.sealed_unlock_pin = None;
    let row = ActionRow {
        action_id: message.action_id,
        tenant_id: message.tenant_id,
        device_id: message.device_id,
        kind: message.kind,
        phase: phase::QUEUED.to_owned(),
        params: serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
        sealed_passcode: None,
        operation_name: None,
        priority: message.priority,
        attempts: 0,
        next_attempt_at: to_millis(now),
        lease_until: None,
        attempt_started_at: None,
        last_error: None,
        expires_at: to_millis(message.expires_at),
        requested_at: to_millis(message.requested_at),
        issued_at: None,
        news_at: None,
        created_at: to_millis(now),
        updated_at: to_millis(now),
    };
    if !store::insert_action(c, &row)? {
        return Ok(None);
    }
    let Some(device) = device.filter(|d| d.tenant_id == message.tenant_id) else {
        finish(
            adapter,
            c,
            &row,
            ActionState::Failed,
            Some((
                "device_unknown",
                "the Android adapter does not know this device",
            )),
            now,
        )?;
        return Ok(None);
    };
    if device.state != device_state::MANAGED {
        finish(
            adapter,
            c,
            &row,
            ActionState::Failed,
            Some(("NOT_FOUND", "the device is no longer managed")),
            now,
        )?;
        return Ok(None);
    }
    if let Plan::Refuse(why) = plan(
        row.kind,
        device.management_mode,
        device.api_level,
        &params,
        None,
    ) {
        finish(
            adapter,
            c,
            &row,
            ActionState::NotSupported,
            Some(("not_supported", why)),
            now,
        )?;
        return Ok(None);
    }
    Ok(wake(adapter))
}

/// `CancelAction`: a queued action ends here; an issued one is canceled at Google by the
/// worker (`operations.cancel`); a finished one stays as it is.
pub fn cancel(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: CancelAction,
) -> Result<AfterCommit, HandlerError> {
    let Some(action) = store::action(c, message.action_id)? else {
        return Ok(None);
    };
    match action.phase.as_str() {
        phase::QUEUED => {
            finish(
                adapter,
                c,
                &action,
                ActionState::Canceled,
                None,
                delivery.now,
            )?;
            Ok(None)
        }
        phase::ISSUED => {
            store::set_phase(
                c,
                action.action_id,
                phase::CANCEL_REQUESTED,
                None,
                to_millis(delivery.now),
            )?;
            Ok(wake(adapter))
        }
        _ => Ok(None),
    }
}

/// `DeviceRemoved`: the record is gone from inventory; management ends at Google too
/// (`devices.delete`, by the worker), and what waited for the device is dropped.
pub fn removed(
    adapter: &Arc<Adapter>,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeviceRemoved,
) -> Result<AfterCommit, HandlerError> {
    let Some(device) = store::device(c, message.device_id)? else {
        return Ok(None);
    };
    if device.state != device_state::MANAGED && device.state != device_state::ENROLLING {
        return Ok(None);
    }
    let now = to_millis(delivery.now);
    for action in store::open_actions_of(c, device.device_id)? {
        store::set_phase(
            c,
            action.action_id,
            ActionState::Canceled.as_str(),
            Some("the device was removed"),
            now,
        )?;
    }
    store::set_device_state(c, device.device_id, device_state::DELETING, Some(now), now)?;
    Ok(wake(adapter))
}

/// The device an action is for, when it can still be reached.
pub fn reachable(device: Option<DeviceRow>) -> Option<DeviceRow> {
    device.filter(|d| d.state == device_state::MANAGED)
}

/// An ActionRow's parameters.
pub fn params_of(action: &ActionRow) -> ActionParams {
    serde_json::from_str(&action.params).unwrap_or_default()
}

/// The command's lifetime at Google: until the action expires (at least a minute).
pub fn command_duration(action: &ActionRow, now: DateTime<Utc>) -> String {
    let left = (action.expires_at - to_millis(now)) / 1000;
    format!("{}s", left.max(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ManagementMode::*;

    fn kinds(kind: ActionKind, mode: ManagementMode, params: &ActionParams) -> Plan {
        plan(kind, mode, Some(34), params, Some("Xy3!Xy3!Xy3!Xy3!"))
    }

    fn command_type(plan: &Plan) -> Option<&str> {
        match plan {
            Plan::Command(c) => c.kind.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn every_action_in_every_mode() {
        let params = ActionParams::default();
        let table = [
            (
                ActionKind::RemoteLock,
                [Some("LOCK"), Some("LOCK"), Some("LOCK"), Some("LOCK")],
            ),
            (ActionKind::ResetPasscode, [Some("RESET_PASSWORD"); 4]),
            (
                ActionKind::RebootNow,
                [Some("REBOOT"), None, None, Some("REBOOT")],
            ),
            (
                ActionKind::Wipe,
                [Some("WIPE"), None, Some("WIPE"), Some("WIPE")],
            ),
            (
                ActionKind::Retire,
                [None, Some("WIPE"), Some("RELINQUISH_OWNERSHIP"), None],
            ),
            (ActionKind::SyncDevice, [None; 4]),
        ];
        for (kind, expected) in table {
            for (mode, want) in [FullyManaged, WorkProfile, CorporateWorkProfile, Dedicated]
                .into_iter()
                .zip(expected)
            {
                let planned = kinds(kind, mode, &params);
                assert_eq!(command_type(&planned), want, "{kind} on {mode}");
                if want.is_none() {
                    assert!(matches!(planned, Plan::Refuse(_)), "{kind} on {mode}");
                }
            }
        }
        assert_eq!(
            kinds(ActionKind::Delete, WorkProfile, &params),
            Plan::Delete
        );
    }

    /// Every command this adapter can send, per action and mode, is valid against the
    /// discovery document's `Command` schema and looks as recorded.
    #[test]
    fn commands_match_the_discovery_document() {
        let discovery = mdm_e2e::android::discovery::Discovery::get();
        let mut all = serde_json::Map::new();
        for kind in ActionKind::ALL {
            for mode in [FullyManaged, WorkProfile, CorporateWorkProfile, Dedicated] {
                let planned = kinds(*kind, mode, &ActionParams::default());
                let shown = match &planned {
                    Plan::Command(command) => {
                        let mut command = command.clone();
                        command.duration = Some("600s".into());
                        let body = serde_json::to_value(&command).unwrap();
                        discovery.validate("Command", &body).unwrap();
                        body
                    }
                    Plan::Delete => serde_json::json!("devices.delete"),
                    Plan::Refuse(why) => serde_json::json!(format!("refused: {why}")),
                };
                all.insert(format!("{kind} on {mode}"), shown);
            }
        }
        insta::assert_json_snapshot!(all);
    }

    #[test]
    fn wipe_flags_follow_the_esim_choice() {
        let Plan::Command(wipe) = kinds(ActionKind::Wipe, FullyManaged, &ActionParams::default())
        else {
            panic!()
        };
        assert_eq!(wipe.wipe_params.unwrap().wipe_data_flags, ["WIPE_ESIMS"]);
        let keep = ActionParams {
            persist_esim_data_plan: true,
            ..ActionParams::default()
        };
        let Plan::Command(wipe) = kinds(ActionKind::Wipe, Dedicated, &keep) else {
            panic!()
        };
        assert!(wipe.wipe_params.unwrap().wipe_data_flags.is_empty());
        let windows_only = ActionParams {
            keep_user_data: true,
            ..ActionParams::default()
        };
        assert!(matches!(
            kinds(ActionKind::Wipe, FullyManaged, &windows_only),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn old_devices_are_refused_what_they_cannot_do() {
        let params = ActionParams::default();
        assert!(matches!(
            plan(ActionKind::RebootNow, FullyManaged, Some(23), &params, None),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan(
                ActionKind::ResetPasscode,
                WorkProfile,
                Some(25),
                &params,
                None
            ),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn passcodes_satisfy_every_quality() {
        for _ in 0..50 {
            let p = temporary_passcode();
            assert_eq!(p.len(), 16);
            assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(p.bytes().any(|b| b.is_ascii_digit()));
            assert!(p.bytes().any(|b| !b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn operation_outcomes() {
        let op = |v: serde_json::Value| -> Operation { serde_json::from_value(v).unwrap() };
        assert_eq!(outcome_of(&op(serde_json::json!({"name": "x"}))), None);
        assert_eq!(
            outcome_of(&op(serde_json::json!({"done": true})))
                .unwrap()
                .0,
            ActionState::Done
        );
        let refused = op(
            serde_json::json!({"done": true, "metadata": {"type": "REBOOT", "errorCode": "MANAGEMENT_MODE"}, "error": {"code": 9, "message": "no"}}),
        );
        assert_eq!(outcome_of(&refused).unwrap().0, ActionState::NotSupported);
        let invalid =
            op(serde_json::json!({"done": true, "metadata": {"errorCode": "INVALID_VALUE"}}));
        assert_eq!(outcome_of(&invalid).unwrap().0, ActionState::Failed);
        let canceled = op(serde_json::json!({"done": true, "error": {"code": 1, "message": "c"}}));
        assert_eq!(outcome_of(&canceled).unwrap().0, ActionState::Canceled);
    }
}
