//! Remote actions as OMA-DM commands (CSP nodes), and device status codes as action
//! states.

use mdm_api::internal::adapter::ActionParams;
use mdm_domain::{ActionKind, ActionState, ManagementMode};

/// Windows 10 1703: the first build with `doWipeProtected`.
pub const PROTECTED_WIPE_BUILD: u32 = 15063;

pub mod node {
    pub const WIPE: &str = "./Device/Vendor/MSFT/RemoteWipe/doWipe";
    pub const WIPE_PROTECTED: &str = "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected";
    pub const WIPE_PERSIST_PROVISIONED: &str =
        "./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData";
    pub const WIPE_PERSIST_USER: &str = "./Device/Vendor/MSFT/RemoteWipe/doWipePersistUserData";
    pub const LOCK: &str = "./Device/Vendor/MSFT/RemoteLock/Lock";
    pub const LOCK_AND_RESET_PIN: &str = "./Device/Vendor/MSFT/RemoteLock/LockAndResetPIN";
    pub const NEW_PIN_VALUE: &str = "./Device/Vendor/MSFT/RemoteLock/NewPINValue";
    pub const REBOOT_NOW: &str = "./Device/Vendor/MSFT/Reboot/RebootNow";

    /// `./Device/Vendor/MSFT/DMClient/Provider/<id>/Unenroll`.
    pub fn unenroll(provider_id: &str) -> String {
        format!("./Device/Vendor/MSFT/DMClient/Provider/{provider_id}/Unenroll")
    }

    /// `./Device/Vendor/MSFT/DMClient/Provider/<id>/Push/ChannelURI`.
    pub fn channel_uri(provider_id: &str) -> String {
        format!("./Device/Vendor/MSFT/DMClient/Provider/{provider_id}/Push/ChannelURI")
    }
}

/// The verb the server sends; `Sync` is no SyncML command: the session itself completes
/// the action (syncDevice).
pub mod verb {
    pub const EXEC: &str = "Exec";
    pub const GET: &str = "Get";
    pub const SYNC: &str = "Sync";
}

/// One SyncML command of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub verb: &'static str,
    pub loc_uri: String,
    pub data: Option<String>,
    pub format: Option<&'static str>,
}

impl Step {
    fn exec_chr(loc_uri: impl Into<String>, data: &str) -> Self {
        Self {
            verb: verb::EXEC,
            loc_uri: loc_uri.into(),
            data: Some(data.to_owned()),
            format: Some("chr"),
        }
    }

    fn exec_null(loc_uri: &str) -> Self {
        Self {
            verb: verb::EXEC,
            loc_uri: loc_uri.to_owned(),
            data: None,
            format: Some("null"),
        }
    }

    fn get(loc_uri: &str) -> Self {
        Self {
            verb: verb::GET,
            loc_uri: loc_uri.to_owned(),
            data: None,
            format: None,
        }
    }

    /// The Meta Type that goes with the format.
    pub fn meta_type(format: Option<&str>) -> Option<&'static str> {
        match format {
            Some("chr") => Some("text/plain"),
            _ => None,
        }
    }
}

/// Why an action cannot be turned into commands for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The device cannot do it (edition or build): reported `notSupported`.
    NotSupported(String),
    /// The parameters make no sense: reported `failed`.
    Invalid(String),
}

/// What the device needs to carry out an action.
pub struct Device<'a> {
    pub mode: ManagementMode,
    /// The Windows build, when the device has reported its version.
    pub build: Option<u32>,
    pub provider_id: &'a str,
}

/// The commands of an action, in the order they are sent.
pub fn plan(
    kind: ActionKind,
    params: &ActionParams,
    device: &Device<'_>,
) -> Result<Vec<Step>, Refusal> {
    let mobile = device.mode == ManagementMode::Mobile;
    let at_least = |build: u32| device.build.is_none_or(|b| b >= build);
    match kind {
        ActionKind::Wipe => {
            if params.keep_user_data && !params.keep_enrollment_data {
                return Err(Refusal::Invalid(
                    "keepUserData requires keepEnrollmentData".into(),
                ));
            }
            if params.use_protected_wipe && params.keep_enrollment_data {
                return Err(Refusal::Invalid(
                    "a protected wipe cannot keep the enrollment".into(),
                ));
            }
            let node = if params.keep_enrollment_data && params.keep_user_data {
                if !at_least(mdm_domain::platform::WINDOWS_1709_BUILD) {
                    return Err(Refusal::NotSupported(
                        "keeping user data needs Windows 10 1709 (build 16299) or later".into(),
                    ));
                }
                node::WIPE_PERSIST_USER
            } else if params.keep_enrollment_data {
                node::WIPE_PERSIST_PROVISIONED
            } else if params.use_protected_wipe {
                if !at_least(PROTECTED_WIPE_BUILD) {
                    return Err(Refusal::NotSupported(
                        "a protected wipe needs Windows 10 1703 (build 15063) or later".into(),
                    ));
                }
                node::WIPE_PROTECTED
            } else {
                node::WIPE
            };
            Ok(vec![Step::exec_chr(node, "")])
        }
        ActionKind::Retire | ActionKind::Delete => Ok(vec![Step::exec_chr(
            node::unenroll(device.provider_id),
            device.provider_id,
        )]),
        ActionKind::RemoteLock => {
            if !mobile {
                return Err(Refusal::NotSupported(
                    "remote lock is not supported on Windows desktop editions".into(),
                ));
            }
            Ok(vec![Step::exec_null(node::LOCK)])
        }
        ActionKind::ResetPasscode => {
            if !mobile {
                return Err(Refusal::NotSupported(
                    "passcode reset is not supported on Windows desktop editions".into(),
                ));
            }
            Ok(vec![
                Step::exec_null(node::LOCK_AND_RESET_PIN),
                Step::get(node::NEW_PIN_VALUE),
            ])
        }
        ActionKind::RebootNow => Ok(vec![Step::exec_null(node::REBOOT_NOW)]),
        ActionKind::SyncDevice => Ok(vec![Step {
            verb: verb::SYNC,
            loc_uri: String::new(),
            data: None,
            format: None,
        }]),
    }
}

/// An action's state from the OMA-DM status code of one of its commands: 2xx done,
/// 405 (command not allowed) and 406 (optional feature not supported) notSupported,
/// every other code failed.
pub fn outcome(code: &str) -> ActionState {
    match code.trim().parse::<u16>() {
        Ok(200..=299) => ActionState::Done,
        Ok(405 | 406) => ActionState::NotSupported,
        _ => ActionState::Failed,
    }
}

/// The command state stored for an action state.
pub fn command_state(state: ActionState) -> &'static str {
    use crate::db::command_state as s;
    match state {
        ActionState::Done => s::DONE,
        ActionState::NotSupported => s::NOT_SUPPORTED,
        ActionState::Canceled => s::CANCELED,
        ActionState::Expired => s::EXPIRED,
        ActionState::Pending | ActionState::Sent => s::QUEUED,
        ActionState::Active => s::DELIVERED,
        ActionState::Failed => s::FAILED,
    }
}

/// The enrollment state once an action succeeded, when it ends management.
pub fn ends_enrollment(kind: ActionKind, params: &ActionParams) -> Option<&'static str> {
    match kind {
        ActionKind::Wipe if params.keep_enrollment_data => None,
        ActionKind::Wipe => Some(crate::db::state::WIPED),
        ActionKind::Retire | ActionKind::Delete => Some(crate::db::state::RETIRED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop(build: u32) -> Device<'static> {
        Device {
            mode: ManagementMode::Desktop,
            build: Some(build),
            provider_id: "MDMServer",
        }
    }

    fn mobile() -> Device<'static> {
        Device {
            mode: ManagementMode::Mobile,
            build: Some(15254),
            provider_id: "MDMServer",
        }
    }

    fn wipe(keep_enrollment: bool, keep_user: bool, protected: bool) -> ActionParams {
        ActionParams {
            keep_enrollment_data: keep_enrollment,
            keep_user_data: keep_user,
            use_protected_wipe: protected,
            ..ActionParams::default()
        }
    }

    fn node_of(kind: ActionKind, params: &ActionParams, device: &Device<'_>) -> String {
        plan(kind, params, device).unwrap()[0].loc_uri.clone()
    }

    #[test]
    fn wipe_variants_pick_their_node() {
        let d = desktop(19043);
        assert_eq!(
            node_of(ActionKind::Wipe, &wipe(false, false, false), &d),
            node::WIPE
        );
        assert_eq!(
            node_of(ActionKind::Wipe, &wipe(false, false, true), &d),
            node::WIPE_PROTECTED
        );
        assert_eq!(
            node_of(ActionKind::Wipe, &wipe(true, false, false), &d),
            node::WIPE_PERSIST_PROVISIONED
        );
        assert_eq!(
            node_of(ActionKind::Wipe, &wipe(true, true, false), &d),
            node::WIPE_PERSIST_USER
        );
    }

    #[test]
    fn keeping_user_data_needs_1709() {
        assert!(matches!(
            plan(ActionKind::Wipe, &wipe(true, true, false), &desktop(15063)),
            Err(Refusal::NotSupported(_))
        ));
        assert!(plan(ActionKind::Wipe, &wipe(true, true, false), &desktop(16299)).is_ok());
        assert!(matches!(
            plan(ActionKind::Wipe, &wipe(false, true, false), &desktop(19043)),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            plan(ActionKind::Wipe, &wipe(false, false, true), &desktop(14393)),
            Err(Refusal::NotSupported(_))
        ));
    }

    #[test]
    fn lock_and_pin_reset_only_on_mobile() {
        let params = ActionParams::default();
        for kind in [ActionKind::RemoteLock, ActionKind::ResetPasscode] {
            assert!(matches!(
                plan(kind, &params, &desktop(19043)),
                Err(Refusal::NotSupported(_))
            ));
        }
        assert_eq!(
            node_of(ActionKind::RemoteLock, &params, &mobile()),
            node::LOCK
        );
        let steps = plan(ActionKind::ResetPasscode, &params, &mobile()).unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.verb, s.loc_uri.as_str()))
                .collect::<Vec<_>>(),
            [
                (verb::EXEC, node::LOCK_AND_RESET_PIN),
                (verb::GET, node::NEW_PIN_VALUE)
            ]
        );
    }

    #[test]
    fn retire_unenrolls_with_the_provider_id() {
        let steps = plan(
            ActionKind::Retire,
            &ActionParams::default(),
            &desktop(19043),
        )
        .unwrap();
        assert_eq!(
            steps[0].loc_uri,
            "./Device/Vendor/MSFT/DMClient/Provider/MDMServer/Unenroll"
        );
        assert_eq!(steps[0].data.as_deref(), Some("MDMServer"));
        assert_eq!(
            node_of(
                ActionKind::RebootNow,
                &ActionParams::default(),
                &desktop(19043)
            ),
            node::REBOOT_NOW
        );
    }

    #[test]
    fn status_codes_map_to_states() {
        assert_eq!(outcome("200"), ActionState::Done);
        assert_eq!(outcome("202"), ActionState::Done);
        assert_eq!(outcome("405"), ActionState::NotSupported);
        assert_eq!(outcome("406"), ActionState::NotSupported);
        assert_eq!(outcome("404"), ActionState::Failed);
        assert_eq!(outcome("500"), ActionState::Failed);
        assert_eq!(outcome("garbage"), ActionState::Failed);
    }
}
