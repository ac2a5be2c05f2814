//! The capability matrix: whether a remote action may be taken on a device, and if not,
//! why.
//!
//! [`check`] runs five steps in a fixed order; the first refusal wins, so the answer names
//! the most useful reason (a caller who may never act learns that before hearing about
//! the device):
//!
//! 1. **Caller**: the role's permission (`protectDevices` for lock, passcode reset,
//!    restart and sync; `removeDevices` for wipe, retire and delete), or the self-service
//!    subset for a user acting on their own device → `forbidden_for_role`,
//!    `self_service_not_allowed`.
//! 2. **MDM authority** of the tenant → `authority_disallows_action`,
//!    `hybrid_authority_read_only`.
//! 3. **Licence** of the device's user → `user_not_licensed`.
//! 4. **Management state** of the device → `device_not_managed`, `device_removal_pending`.
//! 5. **Platform**: what this kind of device can do (the table in `support`), then the
//!    passcode for a lock, the directory join for a retire, and the options of a factory
//!    reset → `action_not_supported`, `device_has_no_passcode`, `requires_windows_1709`,
//!    `retire_not_offered_for_directory_joined`, `invalid_action_options`.
//!
//! Decisions where the seeds and the API contract are silent:
//! - An Android device without an Android Enterprise mode is a legacy *device
//!   administrator* device (the seeds' plain "Android" column): it can be locked,
//!   wiped and retired, its passcode reset only before Android 7.0 (Google removed that
//!   for device administrators in 7.0), and it cannot be restarted.
//! - A Windows device without a mode is a desktop. A mode that does not fit the platform
//!   is ignored.
//! - Passcode reset needs Android 8.0 only on a personal work profile; fully managed and
//!   corporate-owned work profile devices are supported as Microsoft lists them.
//! - A corporate-owned work profile can be retired: that removes the work profile and
//!   leaves the personal side, as on a personal work profile.
//! - Unknown OS versions: the Android requirements (7.0 for restart, 8.0 for a work
//!   profile's passcode reset, "before 7.0" for a device administrator's) and the 1709
//!   requirement of the keep options are refused unless the version proves them. The
//!   Windows legacy cut-offs (Windows Phone 8.1 for lock, Windows 10 for restart,
//!   protected wipe and the directory-join rule) presume an unknown version is current,
//!   since Windows 8.x can no longer enrol.
//! - Restart on Windows needs Windows 10 (the Reboot CSP does not exist before it);
//!   remote lock on Windows mobile needs Windows Phone 8.1 (seed 003: "8.1 and later").
//! - Keeping enrollment and user data, and protected wipe, are Windows desktop features
//!   (no Windows 10 Mobile build reached 1709). Keeping user data without keeping the
//!   enrollment is a contradiction (`invalid_action_options`).
//! - Under hybrid authority operator tokens are read-only like admin tokens, and a user's
//!   self-service still works (the company portal's actions do not go through the
//!   configuration manager).
//! - Options of a factory reset are ignored for the other actions.

use std::fmt;

use crate::action::ActionKind;
use crate::authority::MdmAuthority;
use crate::device::{ManagementMode, ManagementState, Ownership};
use crate::platform::{AndroidApiLevel, OsVersion, Platform, WINDOWS_1709_BUILD};
use crate::role::{Permission, Role};
use crate::wire_enum::wire_enum;

/// What the capability rules need to know about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceContext {
    pub platform: Platform,
    pub os_version: Option<OsVersion>,
    pub ownership: Ownership,
    pub management_mode: Option<ManagementMode>,
    pub management_state: ManagementState,
    /// A Windows 10 device joined to the directory (Azure AD join).
    pub directory_joined: bool,
    /// None when unknown.
    pub is_passcode_present: Option<bool>,
    /// None when the device has no user; Some(false) when the user lost the licence.
    pub user_licensed: Option<bool>,
}

/// Who asks, under which authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerContext {
    pub authority: MdmAuthority,
    pub role: Role,
    /// A user acting on their own device through self-service (/me/...).
    pub self_service: bool,
}

/// The options of a factory reset (`wipe`); ignored for other actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionOptions {
    pub keep_enrollment_data: bool,
    pub keep_user_data: bool,
    pub use_protected_wipe: bool,
    pub persist_esim_data_plan: bool,
    /// An unlock code given for a Mac's erase.
    pub mac_os_unlock_code: bool,
}

wire_enum! {
    /// Why an action was refused. The names are stable API error codes.
    pub enum RefusalReason {
        /// The platform or management mode cannot do it.
        ActionNotSupported => "action_not_supported",
        /// Remote lock on a device known to have no passcode.
        DeviceHasNoPasscode => "device_has_no_passcode",
        /// Keeping enrollment or user data needs Windows 10 version 1709 or later.
        RequiresWindows1709 => "requires_windows_1709",
        /// Windows 10 devices joined to the directory cannot be retired.
        RetireNotOfferedForDirectoryJoined => "retire_not_offered_for_directory_joined",
        /// The tenant's MDM authority does not offer the action.
        AuthorityDisallowsAction => "authority_disallows_action",
        /// Under hybrid authority only the configuration manager acts on devices.
        HybridAuthorityReadOnly => "hybrid_authority_read_only",
        /// The device's user lost the licence: no remote action reaches the device.
        UserNotLicensed => "user_not_licensed",
        /// The device has left management (retired, wiped or unenrolled).
        DeviceNotManaged => "device_not_managed",
        /// A retire, wipe or delete of the device is already under way.
        DeviceRemovalPending => "device_removal_pending",
        /// Self-service does not offer the action on this device.
        SelfServiceNotAllowed => "self_service_not_allowed",
        /// The caller's role lacks the permission.
        ForbiddenForRole => "forbidden_for_role",
        /// The options contradict each other (keepUserData without keepEnrollmentData).
        InvalidActionOptions => "invalid_action_options",
    }
}

impl RefusalReason {
    /// The HTTP status of the refusal: 403 for the role, 409 for a conflict with the state
    /// of the tenant or the device, 422 for what the device or self-service cannot do.
    pub const fn status(self) -> u16 {
        match self {
            Self::ForbiddenForRole => 403,
            Self::AuthorityDisallowsAction
            | Self::HybridAuthorityReadOnly
            | Self::UserNotLicensed
            | Self::DeviceNotManaged
            | Self::DeviceRemovalPending => 409,
            Self::ActionNotSupported
            | Self::DeviceHasNoPasscode
            | Self::RequiresWindows1709
            | Self::RetireNotOfferedForDirectoryJoined
            | Self::SelfServiceNotAllowed
            | Self::InvalidActionOptions => 422,
        }
    }
}

/// A refused action: the stable reason and one English sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

impl Refusal {
    fn new(reason: RefusalReason, detail: String) -> Self {
        Self { reason, detail }
    }
}

/// Whether `caller` may take the action `kind` (with `options`) on `device`.
pub fn check(
    kind: ActionKind,
    options: &ActionOptions,
    device: &DeviceContext,
    caller: &CallerContext,
) -> Result<(), Refusal> {
    let label = DeviceLabel(device);
    check_caller(kind, device, caller, label)?;
    check_authority(kind, device, caller, label)?;
    check_licence(kind, device, label)?;
    check_state(kind, device, label)?;
    check_platform(kind, options, device, label)
}

/// Every action kind that `check` allows with default options (for showing what is possible).
pub fn allowed_actions(device: &DeviceContext, caller: &CallerContext) -> Vec<ActionKind> {
    let options = ActionOptions::default();
    ActionKind::ALL
        .iter()
        .copied()
        .filter(|&kind| check(kind, &options, device, caller).is_ok())
        .collect()
}

/// The permission a role needs for an action outside self-service.
pub const fn required_permission(kind: ActionKind) -> Permission {
    match kind {
        ActionKind::RemoteLock
        | ActionKind::ResetPasscode
        | ActionKind::RebootNow
        | ActionKind::SyncDevice => Permission::ProtectDevices,
        ActionKind::Wipe | ActionKind::Retire | ActionKind::Delete => Permission::RemoveDevices,
    }
}

/// Step 1: the caller's role, or the self-service subset.
fn check_caller(
    kind: ActionKind,
    device: &DeviceContext,
    caller: &CallerContext,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    let role = caller.role;
    let verb = verb(kind);
    if caller.self_service {
        if !role.can(Permission::SelfService) {
            return Err(Refusal::new(
                RefusalReason::ForbiddenForRole,
                format!(
                    "A token with the {role} role may not {verb} this {label} through \
                     self-service, which is for users acting on their own devices."
                ),
            ));
        }
        return match kind {
            ActionKind::RemoteLock | ActionKind::ResetPasscode => Ok(()),
            ActionKind::Retire | ActionKind::Wipe if device.ownership == Ownership::Personal => {
                Ok(())
            }
            ActionKind::Retire | ActionKind::Wipe => Err(Refusal::new(
                RefusalReason::SelfServiceNotAllowed,
                format!(
                    "Self-service may {verb} only personal devices, and this {label} is \
                     company-owned."
                ),
            )),
            ActionKind::RebootNow | ActionKind::SyncDevice | ActionKind::Delete => {
                Err(Refusal::new(
                    RefusalReason::SelfServiceNotAllowed,
                    format!(
                        "Self-service offers lock, passcode reset, retire and factory reset, so \
                         only an administrator may {verb} this {label}."
                    ),
                ))
            }
        };
    }
    let permission = required_permission(kind);
    if role.can(permission) {
        Ok(())
    } else if role == Role::User {
        Err(Refusal::new(
            RefusalReason::SelfServiceNotAllowed,
            format!(
                "A token with the user role may not {verb} this {label} directly; users act on \
                 their own devices through self-service (/me/managedDevices)."
            ),
        ))
    } else {
        Err(Refusal::new(
            RefusalReason::ForbiddenForRole,
            format!(
                "A token with the {role} role may not {verb} this {label}: the role lacks \
                 the {permission} permission."
            ),
        ))
    }
}

/// Step 2: what the tenant's MDM authority offers.
fn check_authority(
    kind: ActionKind,
    device: &DeviceContext,
    caller: &CallerContext,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    let authority = caller.authority;
    let verb = verb(kind);
    let refuse = |detail: String| {
        Err(Refusal::new(
            RefusalReason::AuthorityDisallowsAction,
            detail,
        ))
    };
    match authority {
        // The configuration manager acts through the connector role with the standalone
        // set; users' self-service (already limited in step 1) keeps working.
        MdmAuthority::Hybrid if matches!(caller.role, Role::Connector | Role::User) => Ok(()),
        MdmAuthority::Hybrid => Err(Refusal::new(
            RefusalReason::HybridAuthorityReadOnly,
            format!(
                "Under hybrid MDM authority only the on-premises configuration manager may \
                 {verb} this {label}; {} tokens are read-only for device actions.",
                caller.role
            ),
        )),
        _ if caller.role == Role::Connector => refuse(format!(
            "A connector token may {verb} this {label} only under hybrid MDM authority, and the \
             tenant's authority is {authority}."
        )),
        MdmAuthority::Standalone => Ok(()),
        MdmAuthority::None if kind == ActionKind::Delete => Ok(()),
        MdmAuthority::None => refuse(format!(
            "Under MDM authority none only delete is offered, so no one may {verb} this {label}."
        )),
        MdmAuthority::Office365 if device.platform == Platform::MacOs => refuse(format!(
            "Under office365 MDM authority macOS devices are not managed, so no one may {verb} \
             this {label}."
        )),
        MdmAuthority::Office365
            if matches!(
                kind,
                ActionKind::Retire | ActionKind::Wipe | ActionKind::Delete
            ) =>
        {
            Ok(())
        }
        MdmAuthority::Office365 => refuse(format!(
            "Under office365 MDM authority only retire, factory reset and delete are offered, so \
             no one may {verb} this {label}."
        )),
    }
}

/// Step 3: a user without a licence has no managed devices; only the record can go.
fn check_licence(
    kind: ActionKind,
    device: &DeviceContext,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    if device.user_licensed == Some(false) && kind != ActionKind::Delete {
        return Err(Refusal::new(
            RefusalReason::UserNotLicensed,
            format!(
                "The user of this {label} no longer has a licence, so no remote action can reach \
                 the device and only delete is possible."
            ),
        ));
    }
    Ok(())
}

/// Step 4: where the device stands. A device that has left management can only be
/// deleted; while it is leaving, a second removal of the same kind is pointless (a wipe
/// still supersedes a pending retire or delete).
fn check_state(
    kind: ActionKind,
    device: &DeviceContext,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    let state = device.management_state;
    if !state.is_managed() && kind != ActionKind::Delete {
        return Err(Refusal::new(
            RefusalReason::DeviceNotManaged,
            format!(
                "This {label} {} and is no longer under management, so it can only be deleted.",
                state_phrase(state)
            ),
        ));
    }
    let pending = match kind {
        ActionKind::Retire => state.is_leaving(),
        ActionKind::Wipe => matches!(
            state,
            ManagementState::WipePending | ManagementState::WipeIssued
        ),
        ActionKind::Delete => state == ManagementState::DeletePending,
        ActionKind::RemoteLock
        | ActionKind::ResetPasscode
        | ActionKind::RebootNow
        | ActionKind::SyncDevice => false,
    };
    if pending {
        return Err(Refusal::new(
            RefusalReason::DeviceRemovalPending,
            format!(
                "This {label} {} already, so another request to {} it would add nothing.",
                state_phrase(state),
                verb(kind)
            ),
        ));
    }
    Ok(())
}

/// Where a device stands, in a sentence: "This iOS device {is being retired}".
const fn state_phrase(state: ManagementState) -> &'static str {
    match state {
        ManagementState::Managed
        | ManagementState::RetireFailed
        | ManagementState::RetireCanceled
        | ManagementState::WipeFailed
        | ManagementState::WipeCanceled => "is managed",
        ManagementState::RetirePending => "is waiting for a retire",
        ManagementState::RetireIssued => "is being retired",
        ManagementState::WipePending => "is waiting for a factory reset",
        ManagementState::WipeIssued => "is being factory reset",
        ManagementState::DeletePending => "is waiting to be deleted",
        ManagementState::Retired => "has been retired",
        ManagementState::Wiped => "has been factory reset",
        ManagementState::Unenrolled => "has been unenrolled",
    }
}

/// How a device is managed, as far as the capability rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceClass {
    /// iOS and iPadOS.
    AppleMobile,
    Mac,
    /// Android without an Android Enterprise mode: the legacy device administrator.
    AndroidDeviceAdmin,
    AndroidFullyManaged,
    AndroidDedicated,
    AndroidWorkProfile,
    AndroidCorporateWorkProfile,
    WindowsDesktop,
    WindowsMobile,
}

impl DeviceClass {
    /// A mode that does not fit the platform is ignored.
    const fn of(platform: Platform, mode: Option<ManagementMode>) -> Self {
        match (platform, mode) {
            (Platform::Ios | Platform::IPadOs, _) => Self::AppleMobile,
            (Platform::MacOs, _) => Self::Mac,
            (Platform::Android, Some(ManagementMode::FullyManaged)) => Self::AndroidFullyManaged,
            (Platform::Android, Some(ManagementMode::Dedicated)) => Self::AndroidDedicated,
            (Platform::Android, Some(ManagementMode::WorkProfile)) => Self::AndroidWorkProfile,
            (Platform::Android, Some(ManagementMode::CorporateWorkProfile)) => {
                Self::AndroidCorporateWorkProfile
            }
            (Platform::Android, Some(ManagementMode::Desktop | ManagementMode::Mobile) | None) => {
                Self::AndroidDeviceAdmin
            }
            (Platform::Windows, Some(ManagementMode::Mobile)) => Self::WindowsMobile,
            (Platform::Windows, _) => Self::WindowsDesktop,
        }
    }

    const fn is_windows(self) -> bool {
        matches!(self, Self::WindowsDesktop | Self::WindowsMobile)
    }
}

/// The Windows generations the rules and the retire table distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum WindowsRelease {
    /// Windows 8 and Windows RT (6.2), Windows Phone 8 (8.0), and anything older.
    Eight,
    /// Windows 8.1 and Windows RT 8.1 (6.3, or 8.1 as some report it), Windows Phone 8.1
    /// (8.10).
    EightOne,
    /// Windows 10 and 11, Windows 10 Mobile (10.0.x).
    Ten,
}

impl WindowsRelease {
    /// The generation of a reported Windows version; None when the version is unknown.
    pub(crate) fn of(version: Option<&OsVersion>) -> Option<Self> {
        let version = version?;
        Some(match (version.major(), version.minor()) {
            (major, _) if major >= 10 => Self::Ten,
            (6, minor) if minor >= 3 => Self::EightOne,
            (8, minor) if minor >= 1 => Self::EightOne,
            _ => Self::Eight,
        })
    }
}

/// What a class of device can do with an action, before the passcode, the directory join
/// and the options are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    Yes,
    /// Never; the text says why (and what to do instead), as the end of a sentence.
    No(&'static str),
    /// From an Android release on; the device's version must prove it.
    AndroidFrom(AndroidApiLevel, &'static str),
    /// Only before an Android release; the device's version must prove it.
    AndroidBefore(AndroidApiLevel, &'static str),
    /// From a Windows generation on; an unknown version counts as current.
    WindowsFrom(WindowsRelease, &'static str),
}

const ANDROID_7_0: AndroidApiLevel = AndroidApiLevel(24);
const ANDROID_8_0: AndroidApiLevel = AndroidApiLevel(26);

/// The platform table: which class of device supports which action.
const fn support(kind: ActionKind, class: DeviceClass) -> Support {
    use DeviceClass::*;
    use Support::*;
    match (kind, class) {
        (ActionKind::SyncDevice | ActionKind::Delete, _) => Yes,

        // Seed 003: Android in every mode, iOS, macOS, Windows 10 Mobile and Windows Phone
        // 8.1 and later; not Windows desktop.
        (ActionKind::RemoteLock, WindowsDesktop) => No(
            "Windows desktop editions cannot be locked remotely (only Windows 10 Mobile and \
             Windows Phone 8.1 and later can)",
        ),
        (ActionKind::RemoteLock, WindowsMobile) => {
            WindowsFrom(WindowsRelease::EightOne, "Windows Phone 8.1")
        }
        (ActionKind::RemoteLock, _) => Yes,

        (
            ActionKind::ResetPasscode,
            AppleMobile | AndroidFullyManaged | AndroidCorporateWorkProfile | WindowsMobile,
        ) => Yes,
        (ActionKind::ResetPasscode, AndroidWorkProfile) => AndroidFrom(ANDROID_8_0, "8.0"),
        // Android 7.0 took passcode reset away from device administrators.
        (ActionKind::ResetPasscode, AndroidDeviceAdmin) => AndroidBefore(ANDROID_7_0, "7.0"),
        (ActionKind::ResetPasscode, AndroidDedicated) => {
            No("dedicated (kiosk) devices have no user passcode to reset")
        }
        (ActionKind::ResetPasscode, Mac) => No("macOS has no remote passcode reset"),
        (ActionKind::ResetPasscode, WindowsDesktop) => {
            No("Windows desktop editions have no remote passcode reset (only Windows mobile has)")
        }

        // Seed 001: factory reset is not supported for Android work profiles.
        (ActionKind::Wipe, AndroidWorkProfile) => No(
            "factory reset is not supported for Android personal work profiles; retire removes \
             the work profile instead",
        ),
        (ActionKind::Wipe, _) => Yes,

        // Seed 001: kiosk devices can only be factory reset.
        (ActionKind::Retire, AndroidDedicated) => No(
            "company data cannot be removed from Android dedicated (kiosk) devices; factory \
             reset it instead",
        ),
        (ActionKind::Retire, AndroidFullyManaged) => No(
            "a fully managed Android device holds no personal data to keep apart from company \
             data; wipe it instead",
        ),
        (ActionKind::Retire, _) => Yes,

        (ActionKind::RebootNow, AppleMobile | Mac) => Yes,
        (ActionKind::RebootNow, WindowsDesktop | WindowsMobile) => {
            WindowsFrom(WindowsRelease::Ten, "Windows 10")
        }
        (ActionKind::RebootNow, AndroidFullyManaged | AndroidDedicated) => {
            AndroidFrom(ANDROID_7_0, "7.0")
        }
        (ActionKind::RebootNow, AndroidWorkProfile | AndroidCorporateWorkProfile) => {
            No("Android restarts only devices it manages as a whole, not work profiles")
        }
        (ActionKind::RebootNow, AndroidDeviceAdmin) => {
            No("Android device administrator management cannot restart a device")
        }
    }
}

/// Step 5: what the device can do.
fn check_platform(
    kind: ActionKind,
    options: &ActionOptions,
    device: &DeviceContext,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    let class = DeviceClass::of(device.platform, device.management_mode);
    let action = action_name(kind);
    let not_supported =
        |detail: String| Err(Refusal::new(RefusalReason::ActionNotSupported, detail));
    match support(kind, class) {
        Support::Yes => {}
        Support::No(why) => {
            return not_supported(format!("{action} is not available on this {label}: {why}."));
        }
        Support::AndroidFrom(floor, release) => match android_level(device) {
            Some(AndroidLevel::Known(level)) if level >= floor => {}
            Some(_) => {
                return not_supported(format!(
                    "{action} needs Android {release} or later, and this {label} runs an older \
                     release."
                ));
            }
            None => {
                return not_supported(format!(
                    "{action} needs Android {release} or later, and the OS version of this \
                     {label} is unknown."
                ));
            }
        },
        Support::AndroidBefore(ceiling, release) => match android_level(device) {
            Some(AndroidLevel::Known(level)) if level >= ceiling => {
                return not_supported(format!(
                    "{action} is available to Android device administrators only before Android \
                     {release}, and this {label} runs {release} or later."
                ));
            }
            Some(_) => {}
            None => {
                return not_supported(format!(
                    "{action} is available to Android device administrators only before Android \
                     {release}, and the OS version of this {label} is unknown."
                ));
            }
        },
        Support::WindowsFrom(floor, name) => {
            if WindowsRelease::of(device.os_version.as_ref()).is_some_and(|release| release < floor)
            {
                return not_supported(format!(
                    "{action} needs {name} or later, and this {label} runs an older release."
                ));
            }
        }
    }
    match kind {
        ActionKind::RemoteLock if device.is_passcode_present == Some(false) => Err(Refusal::new(
            RefusalReason::DeviceHasNoPasscode,
            format!(
                "Remote lock needs a passcode to unlock the device with, and this {label} has \
                 none."
            ),
        )),
        ActionKind::Retire
            if class.is_windows() && device.directory_joined && is_windows_10(device) =>
        {
            Err(Refusal::new(
                RefusalReason::RetireNotOfferedForDirectoryJoined,
                format!(
                    "Company data cannot be removed from this {label} because it is a Windows 10 \
                     device joined to the directory; factory reset it instead."
                ),
            ))
        }
        ActionKind::Wipe => check_wipe_options(options, device, class, label),
        _ => Ok(()),
    }
}

/// A Windows device that is (or, with an unknown version, presumably is) Windows 10 or later.
fn is_windows_10(device: &DeviceContext) -> bool {
    WindowsRelease::of(device.os_version.as_ref())
        .is_none_or(|release| release == WindowsRelease::Ten)
}

/// The API level an Android device's version proves.
enum AndroidLevel {
    Known(AndroidApiLevel),
    /// A version older than every listed release (before 4.4).
    Older,
}

fn android_level(device: &DeviceContext) -> Option<AndroidLevel> {
    let version = device.os_version.as_ref()?;
    Some(match AndroidApiLevel::from_release(version) {
        Some(level) => AndroidLevel::Known(level),
        None => AndroidLevel::Older,
    })
}

/// The options of a factory reset, once the device can be reset at all.
fn check_wipe_options(
    options: &ActionOptions,
    device: &DeviceContext,
    class: DeviceClass,
    label: DeviceLabel<'_>,
) -> Result<(), Refusal> {
    let not_supported =
        |detail: String| Err(Refusal::new(RefusalReason::ActionNotSupported, detail));
    if options.keep_user_data && !options.keep_enrollment_data {
        return Err(Refusal::new(
            RefusalReason::InvalidActionOptions,
            format!(
                "A factory reset cannot keep user data without keeping the enrollment data \
                 (keepUserData needs keepEnrollmentData), so this request for the {label} is \
                 invalid."
            ),
        ));
    }
    if options.keep_enrollment_data {
        let build = device
            .os_version
            .as_ref()
            .and_then(OsVersion::windows_10_build);
        match (class, build) {
            (DeviceClass::WindowsDesktop, Some(build)) if build >= WINDOWS_1709_BUILD => {}
            (DeviceClass::WindowsDesktop, _) => {
                let why = if device.os_version.is_some() {
                    format!("this {label} runs an older release")
                } else {
                    format!("the OS version of this {label} is unknown")
                };
                return Err(Refusal::new(
                    RefusalReason::RequiresWindows1709,
                    format!(
                        "Keeping the enrollment state and user account during a factory reset \
                         needs Windows 10 version 1709 (build {WINDOWS_1709_BUILD}) or later, and \
                         {why}."
                    ),
                ));
            }
            _ => {
                return not_supported(format!(
                    "Keeping the enrollment state and user account during a factory reset is only \
                     available on Windows 10 desktop version 1709 and later, not on this {label}."
                ));
            }
        }
    }
    if options.use_protected_wipe
        && !(class == DeviceClass::WindowsDesktop && is_windows_10(device))
    {
        return not_supported(format!(
            "Protected wipe is only available on Windows 10 desktop editions, not on this {label}."
        ));
    }
    if options.persist_esim_data_plan
        && !matches!(
            device.platform,
            Platform::Ios | Platform::IPadOs | Platform::Android
        )
    {
        return not_supported(format!(
            "Keeping the eSIM data plan during a factory reset is only available on iOS, iPadOS \
             and Android, not on this {label}."
        ));
    }
    if options.mac_os_unlock_code && class != DeviceClass::Mac {
        return not_supported(format!(
            "An unlock code applies only to the erase of a Mac, not to this {label}."
        ));
    }
    Ok(())
}

/// "lock", "retire": completes "may not … this device".
const fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::RemoteLock => "lock",
        ActionKind::ResetPasscode => "reset the passcode of",
        ActionKind::Wipe => "factory reset",
        ActionKind::Retire => "retire",
        ActionKind::RebootNow => "restart",
        ActionKind::SyncDevice => "sync",
        ActionKind::Delete => "delete",
    }
}

/// The action's name at the start of a sentence.
const fn action_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::RemoteLock => "Remote lock",
        ActionKind::ResetPasscode => "Passcode reset",
        ActionKind::Wipe => "Factory reset",
        ActionKind::Retire => "Retire",
        ActionKind::RebootNow => "Restart",
        ActionKind::SyncDevice => "Sync",
        ActionKind::Delete => "Delete",
    }
}

/// Names a device in a sentence: "Android 8.0 personal work profile device",
/// "Windows 10.0.19045 desktop device", "iOS 17.4 device".
#[derive(Clone, Copy)]
struct DeviceLabel<'a>(&'a DeviceContext);

impl fmt::Display for DeviceLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let device = self.0;
        write!(f, "{}", device.platform)?;
        if let Some(version) = device.os_version {
            write!(f, " {version}")?;
        }
        let mode = match DeviceClass::of(device.platform, device.management_mode) {
            DeviceClass::AppleMobile | DeviceClass::Mac => None,
            DeviceClass::AndroidDeviceAdmin => Some("legacy (device administrator)"),
            DeviceClass::AndroidFullyManaged => Some("fully managed"),
            DeviceClass::AndroidDedicated => Some("dedicated (kiosk)"),
            DeviceClass::AndroidWorkProfile => Some("personal work profile"),
            DeviceClass::AndroidCorporateWorkProfile => Some("corporate-owned work profile"),
            DeviceClass::WindowsDesktop => Some("desktop"),
            DeviceClass::WindowsMobile => Some("mobile"),
        };
        if let Some(mode) = mode {
            write!(f, " {mode}")?;
        }
        f.write_str(" device")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use ActionKind::*;

    fn v(text: &str) -> OsVersion {
        text.parse().unwrap()
    }

    /// A managed, licensed device with a passcode, in `mode`, owned as the mode implies.
    fn device(platform: Platform, mode: Option<ManagementMode>, version: &str) -> DeviceContext {
        DeviceContext {
            platform,
            os_version: Some(v(version)),
            ownership: mode
                .and_then(ManagementMode::implied_ownership)
                .unwrap_or(Ownership::Company),
            management_mode: mode,
            management_state: ManagementState::Managed,
            directory_joined: false,
            is_passcode_present: Some(true),
            user_licensed: Some(true),
        }
    }

    fn ios() -> DeviceContext {
        device(Platform::Ios, None, "17.4")
    }

    fn android(mode: ManagementMode, version: &str) -> DeviceContext {
        device(Platform::Android, Some(mode), version)
    }

    fn windows(mode: ManagementMode, version: &str) -> DeviceContext {
        device(Platform::Windows, Some(mode), version)
    }

    fn caller(authority: MdmAuthority, role: Role) -> CallerContext {
        CallerContext {
            authority,
            role,
            self_service: false,
        }
    }

    fn admin() -> CallerContext {
        caller(MdmAuthority::Standalone, Role::Admin)
    }

    fn me() -> CallerContext {
        CallerContext {
            self_service: true,
            ..caller(MdmAuthority::Standalone, Role::User)
        }
    }

    fn outcome(
        kind: ActionKind,
        device: &DeviceContext,
        caller: &CallerContext,
    ) -> Option<RefusalReason> {
        check(kind, &ActionOptions::default(), device, caller)
            .err()
            .map(|refusal| refusal.reason)
    }

    fn wipe_with(options: ActionOptions, device: &DeviceContext) -> Option<RefusalReason> {
        check(Wipe, &options, device, &admin())
            .err()
            .map(|refusal| refusal.reason)
    }

    const KEEP: ActionOptions = ActionOptions {
        keep_enrollment_data: true,
        keep_user_data: true,
        use_protected_wipe: false,
        persist_esim_data_plan: false,
        mac_os_unlock_code: false,
    };

    // ---- the reasons themselves ----

    #[test]
    fn refusal_reasons_have_stable_names_and_statuses() {
        use RefusalReason::*;
        let table = [
            (ActionNotSupported, "action_not_supported", 422),
            (DeviceHasNoPasscode, "device_has_no_passcode", 422),
            (RequiresWindows1709, "requires_windows_1709", 422),
            (
                RetireNotOfferedForDirectoryJoined,
                "retire_not_offered_for_directory_joined",
                422,
            ),
            (AuthorityDisallowsAction, "authority_disallows_action", 409),
            (HybridAuthorityReadOnly, "hybrid_authority_read_only", 409),
            (UserNotLicensed, "user_not_licensed", 409),
            (DeviceNotManaged, "device_not_managed", 409),
            (DeviceRemovalPending, "device_removal_pending", 409),
            (SelfServiceNotAllowed, "self_service_not_allowed", 422),
            (ForbiddenForRole, "forbidden_for_role", 403),
            (InvalidActionOptions, "invalid_action_options", 422),
        ];
        assert_eq!(table.len(), RefusalReason::ALL.len());
        for (reason, name, status) in table {
            assert_eq!(reason.as_str(), name);
            assert_eq!(reason.status(), status, "{name}");
            assert_eq!(name.parse::<RefusalReason>().unwrap(), reason);
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn a_refusal_displays_its_detail() {
        let refusal = check(
            RemoteLock,
            &ActionOptions::default(),
            &windows(ManagementMode::Desktop, "10.0.19045"),
            &admin(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ActionNotSupported);
        assert_eq!(refusal.to_string(), refusal.detail);
        assert_eq!(
            refusal.detail,
            "Remote lock is not available on this Windows 10.0.19045 desktop device: Windows \
             desktop editions cannot be locked remotely (only Windows 10 Mobile and Windows \
             Phone 8.1 and later can)."
        );
    }

    // ---- remote lock ----

    #[test]
    fn remote_lock_platforms() {
        let supported = [
            ios(),
            device(Platform::IPadOs, None, "17.4"),
            device(Platform::MacOs, None, "14.5"),
            android(ManagementMode::FullyManaged, "14"),
            android(ManagementMode::Dedicated, "14"),
            android(ManagementMode::WorkProfile, "14"),
            android(ManagementMode::CorporateWorkProfile, "14"),
            device(Platform::Android, None, "9.0"),
            windows(ManagementMode::Mobile, "10.0.15063"),
            windows(ManagementMode::Mobile, "8.10.14219"),
            windows(ManagementMode::Mobile, "8.1"),
        ];
        for d in supported {
            assert_eq!(outcome(RemoteLock, &d, &admin()), None, "{d:?}");
        }
        let unsupported = [
            windows(ManagementMode::Desktop, "10.0.19045"),
            windows(ManagementMode::Desktop, "6.3.9600"),
            device(Platform::Windows, None, "10.0.22631"),
            // Windows Phone 8.0: seed 003 names 8.1 and later.
            windows(ManagementMode::Mobile, "8.0.10501"),
        ];
        for d in unsupported {
            assert_eq!(
                outcome(RemoteLock, &d, &admin()),
                Some(RefusalReason::ActionNotSupported),
                "{d:?}"
            );
        }
    }

    #[test]
    fn remote_lock_needs_a_passcode() {
        for d in [
            ios(),
            android(ManagementMode::WorkProfile, "14"),
            windows(ManagementMode::Mobile, "10.0.15063"),
        ] {
            let mut d = d;
            d.is_passcode_present = Some(false);
            assert_eq!(
                outcome(RemoteLock, &d, &admin()),
                Some(RefusalReason::DeviceHasNoPasscode)
            );
            d.is_passcode_present = None;
            assert_eq!(outcome(RemoteLock, &d, &admin()), None);
        }
        // The platform's answer is the more useful one where both apply.
        let mut desktop = windows(ManagementMode::Desktop, "10.0.19045");
        desktop.is_passcode_present = Some(false);
        assert_eq!(
            outcome(RemoteLock, &desktop, &admin()),
            Some(RefusalReason::ActionNotSupported)
        );
        // Other actions do not care.
        let mut phone = ios();
        phone.is_passcode_present = Some(false);
        assert_eq!(outcome(ResetPasscode, &phone, &admin()), None);
    }

    // ---- passcode reset ----

    #[test]
    fn passcode_reset_platforms() {
        let cases = [
            (ios(), None),
            (device(Platform::IPadOs, None, "17.4"), None),
            (
                device(Platform::MacOs, None, "14.5"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (android(ManagementMode::FullyManaged, "7.0"), None),
            (android(ManagementMode::CorporateWorkProfile, "14"), None),
            (android(ManagementMode::WorkProfile, "8.0"), None),
            (android(ManagementMode::WorkProfile, "14"), None),
            (
                android(ManagementMode::WorkProfile, "7.1.2"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                android(ManagementMode::Dedicated, "14"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (device(Platform::Android, None, "6.0"), None),
            (
                device(Platform::Android, None, "7.0"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (device(Platform::Android, None, "4.1"), None),
            (windows(ManagementMode::Mobile, "10.0.15063"), None),
            (windows(ManagementMode::Mobile, "8.1"), None),
            (
                windows(ManagementMode::Desktop, "10.0.19045"),
                Some(RefusalReason::ActionNotSupported),
            ),
        ];
        for (d, expected) in cases {
            assert_eq!(outcome(ResetPasscode, &d, &admin()), expected, "{d:?}");
        }
    }

    #[test]
    fn android_version_requirements_need_a_known_version() {
        let mut work_profile = android(ManagementMode::WorkProfile, "14");
        work_profile.os_version = None;
        let refusal = check(
            ResetPasscode,
            &ActionOptions::default(),
            &work_profile,
            &admin(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ActionNotSupported);
        assert!(refusal.detail.contains("unknown"), "{}", refusal.detail);
        let mut kiosk = android(ManagementMode::Dedicated, "14");
        kiosk.os_version = None;
        assert_eq!(
            outcome(RebootNow, &kiosk, &admin()),
            Some(RefusalReason::ActionNotSupported)
        );
        let mut legacy = device(Platform::Android, None, "6.0");
        legacy.os_version = None;
        assert_eq!(
            outcome(ResetPasscode, &legacy, &admin()),
            Some(RefusalReason::ActionNotSupported)
        );
    }

    // ---- factory reset ----

    #[test]
    fn factory_reset_everywhere_but_personal_work_profiles() {
        let everywhere = [
            ios(),
            device(Platform::IPadOs, None, "17.4"),
            device(Platform::MacOs, None, "14.5"),
            android(ManagementMode::FullyManaged, "14"),
            android(ManagementMode::Dedicated, "14"),
            android(ManagementMode::CorporateWorkProfile, "14"),
            device(Platform::Android, None, "9.0"),
            windows(ManagementMode::Desktop, "10.0.19045"),
            windows(ManagementMode::Desktop, "6.3.9600"),
            windows(ManagementMode::Mobile, "8.1"),
        ];
        for d in everywhere {
            assert_eq!(outcome(Wipe, &d, &admin()), None, "{d:?}");
        }
        let refusal = check(
            Wipe,
            &ActionOptions::default(),
            &android(ManagementMode::WorkProfile, "14"),
            &admin(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ActionNotSupported);
        assert!(
            refusal.detail.contains("work profile"),
            "{}",
            refusal.detail
        );
    }

    #[test]
    fn keeping_enrollment_and_user_data_needs_windows_10_1709() {
        let desktop = |version: &str| windows(ManagementMode::Desktop, version);
        assert_eq!(wipe_with(KEEP, &desktop("10.0.16299")), None);
        assert_eq!(wipe_with(KEEP, &desktop("10.0.16299.125")), None);
        assert_eq!(wipe_with(KEEP, &desktop("10.0.19045")), None);
        assert_eq!(wipe_with(KEEP, &desktop("10.0.26100")), None);
        assert_eq!(
            wipe_with(KEEP, &desktop("10.0.15063")),
            Some(RefusalReason::RequiresWindows1709)
        );
        assert_eq!(
            wipe_with(KEEP, &desktop("6.3.9600")),
            Some(RefusalReason::RequiresWindows1709)
        );
        assert_eq!(
            wipe_with(KEEP, &desktop("8.1")),
            Some(RefusalReason::RequiresWindows1709)
        );
        let mut unknown = desktop("10.0.19045");
        unknown.os_version = None;
        let refusal = check(Wipe, &KEEP, &unknown, &admin()).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::RequiresWindows1709);
        assert!(refusal.detail.contains("unknown"), "{}", refusal.detail);
        // Enrollment alone is allowed too (doWipePersistProvisionedData).
        let enrollment_only = ActionOptions {
            keep_enrollment_data: true,
            ..Default::default()
        };
        assert_eq!(wipe_with(enrollment_only, &desktop("10.0.16299")), None);
        assert_eq!(
            wipe_with(enrollment_only, &desktop("10.0.15063")),
            Some(RefusalReason::RequiresWindows1709)
        );
        // Not on other platforms, nor on Windows mobile.
        for d in [
            ios(),
            device(Platform::MacOs, None, "14.5"),
            android(ManagementMode::FullyManaged, "14"),
            windows(ManagementMode::Mobile, "10.0.16299"),
        ] {
            assert_eq!(
                wipe_with(KEEP, &d),
                Some(RefusalReason::ActionNotSupported),
                "{d:?}"
            );
        }
    }

    #[test]
    fn keeping_user_data_needs_keeping_enrollment_data() {
        let user_only = ActionOptions {
            keep_user_data: true,
            ..Default::default()
        };
        for d in [
            windows(ManagementMode::Desktop, "10.0.19045"),
            windows(ManagementMode::Desktop, "10.0.15063"),
            ios(),
        ] {
            assert_eq!(
                wipe_with(user_only, &d),
                Some(RefusalReason::InvalidActionOptions),
                "{d:?}"
            );
        }
    }

    #[test]
    fn factory_reset_options_per_platform() {
        let protected = ActionOptions {
            use_protected_wipe: true,
            ..Default::default()
        };
        let esim = ActionOptions {
            persist_esim_data_plan: true,
            ..Default::default()
        };
        let unlock = ActionOptions {
            mac_os_unlock_code: true,
            ..Default::default()
        };
        let mac = device(Platform::MacOs, None, "14.5");
        let desktop = windows(ManagementMode::Desktop, "10.0.19045");
        let old_desktop = windows(ManagementMode::Desktop, "6.3.9600");
        let phone = windows(ManagementMode::Mobile, "10.0.15063");
        let fully_managed = android(ManagementMode::FullyManaged, "14");
        let not_supported = Some(RefusalReason::ActionNotSupported);

        assert_eq!(wipe_with(protected, &desktop), None);
        for d in [old_desktop, phone, ios(), mac, fully_managed] {
            assert_eq!(wipe_with(protected, &d), not_supported, "{d:?}");
        }
        for d in [
            ios(),
            device(Platform::IPadOs, None, "17.4"),
            fully_managed,
            android(ManagementMode::Dedicated, "14"),
        ] {
            assert_eq!(wipe_with(esim, &d), None, "{d:?}");
        }
        for d in [mac, desktop, phone] {
            assert_eq!(wipe_with(esim, &d), not_supported, "{d:?}");
        }
        assert_eq!(wipe_with(unlock, &mac), None);
        for d in [ios(), desktop, fully_managed] {
            assert_eq!(wipe_with(unlock, &d), not_supported, "{d:?}");
        }
    }

    #[test]
    fn options_only_matter_for_factory_reset() {
        let all = ActionOptions {
            keep_enrollment_data: false,
            keep_user_data: true,
            use_protected_wipe: true,
            persist_esim_data_plan: true,
            mac_os_unlock_code: true,
        };
        let d = ios();
        for kind in [
            RemoteLock,
            ResetPasscode,
            Retire,
            RebootNow,
            SyncDevice,
            Delete,
        ] {
            assert_eq!(
                check(kind, &all, &d, &admin()),
                check(kind, &ActionOptions::default(), &d, &admin())
            );
        }
    }

    // ---- retire ----

    #[test]
    fn retire_platforms() {
        let cases = [
            (ios(), None),
            (device(Platform::MacOs, None, "14.5"), None),
            (android(ManagementMode::WorkProfile, "14"), None),
            (android(ManagementMode::CorporateWorkProfile, "14"), None),
            (device(Platform::Android, None, "9.0"), None),
            (
                android(ManagementMode::Dedicated, "14"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                android(ManagementMode::FullyManaged, "14"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (windows(ManagementMode::Desktop, "10.0.19045"), None),
            (windows(ManagementMode::Mobile, "8.1"), None),
        ];
        for (d, expected) in cases {
            assert_eq!(outcome(Retire, &d, &admin()), expected, "{d:?}");
        }
        let refusal = check(
            Retire,
            &ActionOptions::default(),
            &android(ManagementMode::FullyManaged, "14"),
            &admin(),
        )
        .unwrap_err();
        assert!(refusal.detail.contains("wipe it"), "{}", refusal.detail);
        let refusal = check(
            Retire,
            &ActionOptions::default(),
            &android(ManagementMode::Dedicated, "14"),
            &admin(),
        )
        .unwrap_err();
        assert!(refusal.detail.contains("kiosk"), "{}", refusal.detail);
    }

    #[test]
    fn retire_is_not_offered_for_directory_joined_windows_10() {
        let joined = |mode, version: Option<&str>| DeviceContext {
            directory_joined: true,
            os_version: version.map(v),
            ..windows(mode, "10.0.19045")
        };
        let refused = Some(RefusalReason::RetireNotOfferedForDirectoryJoined);
        assert_eq!(
            outcome(
                Retire,
                &joined(ManagementMode::Desktop, Some("10.0.19045")),
                &admin()
            ),
            refused
        );
        assert_eq!(
            outcome(Retire, &joined(ManagementMode::Desktop, None), &admin()),
            refused
        );
        assert_eq!(
            outcome(
                Retire,
                &joined(ManagementMode::Mobile, Some("10.0.15063")),
                &admin()
            ),
            refused
        );
        // The join is a Windows 10 notion: Windows 8.1 keeps the seed's own column.
        assert_eq!(
            outcome(
                Retire,
                &joined(ManagementMode::Desktop, Some("6.3.9600")),
                &admin()
            ),
            None
        );
        // A factory reset is still possible, and the flag means nothing elsewhere.
        assert_eq!(
            outcome(
                Wipe,
                &joined(ManagementMode::Desktop, Some("10.0.19045")),
                &admin()
            ),
            None
        );
        let mut phone = ios();
        phone.directory_joined = true;
        assert_eq!(outcome(Retire, &phone, &admin()), None);
    }

    // ---- restart, sync, delete ----

    #[test]
    fn restart_platforms() {
        let cases = [
            (ios(), None),
            (device(Platform::IPadOs, None, "17.4"), None),
            (device(Platform::MacOs, None, "14.5"), None),
            (windows(ManagementMode::Desktop, "10.0.19045"), None),
            (windows(ManagementMode::Mobile, "10.0.15063"), None),
            (
                windows(ManagementMode::Desktop, "6.3.9600"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                windows(ManagementMode::Mobile, "8.1"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (android(ManagementMode::FullyManaged, "7.0"), None),
            (android(ManagementMode::Dedicated, "14"), None),
            (
                android(ManagementMode::FullyManaged, "6.0.1"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                android(ManagementMode::Dedicated, "6.0"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                android(ManagementMode::WorkProfile, "14"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                android(ManagementMode::CorporateWorkProfile, "14"),
                Some(RefusalReason::ActionNotSupported),
            ),
            (
                device(Platform::Android, None, "9.0"),
                Some(RefusalReason::ActionNotSupported),
            ),
        ];
        for (d, expected) in cases {
            assert_eq!(outcome(RebootNow, &d, &admin()), expected, "{d:?}");
        }
        // An unknown Windows version is presumed current.
        let mut unknown = windows(ManagementMode::Desktop, "10.0.19045");
        unknown.os_version = None;
        assert_eq!(outcome(RebootNow, &unknown, &admin()), None);
    }

    #[test]
    fn sync_and_delete_on_every_platform() {
        for d in [
            ios(),
            device(Platform::MacOs, None, "14.5"),
            android(ManagementMode::WorkProfile, "5.0"),
            android(ManagementMode::Dedicated, "14"),
            windows(ManagementMode::Desktop, "6.2.9200"),
            windows(ManagementMode::Mobile, "8.0.10501"),
        ] {
            assert_eq!(outcome(SyncDevice, &d, &admin()), None, "{d:?}");
            assert_eq!(outcome(Delete, &d, &admin()), None, "{d:?}");
        }
    }

    // ---- authority ----

    #[test]
    fn authority_none_allows_only_delete() {
        let none = caller(MdmAuthority::None, Role::Admin);
        for &kind in ActionKind::ALL {
            let expected = (kind != Delete).then_some(RefusalReason::AuthorityDisallowsAction);
            assert_eq!(outcome(kind, &ios(), &none), expected, "{kind}");
        }
    }

    #[test]
    fn office365_allows_retire_wipe_delete_and_nothing_on_macs() {
        let office = caller(MdmAuthority::Office365, Role::Admin);
        for &kind in ActionKind::ALL {
            let expected = (!matches!(kind, Retire | Wipe | Delete))
                .then_some(RefusalReason::AuthorityDisallowsAction);
            assert_eq!(outcome(kind, &ios(), &office), expected, "{kind}");
            assert_eq!(
                outcome(kind, &device(Platform::MacOs, None, "14.5"), &office),
                Some(RefusalReason::AuthorityDisallowsAction),
                "{kind}"
            );
        }
    }

    #[test]
    fn hybrid_makes_tokens_read_only_but_the_connector() {
        for role in [Role::Operator, Role::Admin, Role::Helpdesk] {
            assert_eq!(
                outcome(SyncDevice, &ios(), &caller(MdmAuthority::Hybrid, role)),
                Some(RefusalReason::HybridAuthorityReadOnly),
                "{role}"
            );
        }
        let connector = caller(MdmAuthority::Hybrid, Role::Connector);
        for d in [
            ios(),
            android(ManagementMode::WorkProfile, "14"),
            windows(ManagementMode::Desktop, "10.0.19045"),
        ] {
            assert_eq!(
                allowed_actions(&d, &connector),
                allowed_actions(&d, &admin())
            );
        }
        // Self-service keeps working under hybrid.
        let mut personal = ios();
        personal.ownership = Ownership::Personal;
        let me_hybrid = CallerContext {
            authority: MdmAuthority::Hybrid,
            ..me()
        };
        assert_eq!(
            allowed_actions(&personal, &me_hybrid),
            [RemoteLock, ResetPasscode, Wipe, Retire]
        );
    }

    #[test]
    fn the_connector_acts_only_under_hybrid() {
        for authority in [
            MdmAuthority::None,
            MdmAuthority::Standalone,
            MdmAuthority::Office365,
        ] {
            for &kind in ActionKind::ALL {
                assert_eq!(
                    outcome(kind, &ios(), &caller(authority, Role::Connector)),
                    Some(RefusalReason::AuthorityDisallowsAction),
                    "{authority} {kind}"
                );
            }
        }
    }

    // ---- roles and self-service ----

    #[test]
    fn roles_need_their_permission() {
        let d = ios();
        for &kind in ActionKind::ALL {
            assert_eq!(
                outcome(kind, &d, &caller(MdmAuthority::Standalone, Role::Reader)),
                Some(RefusalReason::ForbiddenForRole)
            );
            assert_eq!(
                outcome(kind, &d, &caller(MdmAuthority::Standalone, Role::Operator)),
                None
            );
            let helpdesk = outcome(kind, &d, &caller(MdmAuthority::Standalone, Role::Helpdesk));
            let expected =
                matches!(kind, Wipe | Retire | Delete).then_some(RefusalReason::ForbiddenForRole);
            assert_eq!(helpdesk, expected, "{kind}");
            // A user outside self-service is pointed to it.
            assert_eq!(
                outcome(kind, &d, &caller(MdmAuthority::Standalone, Role::User)),
                Some(RefusalReason::SelfServiceNotAllowed)
            );
        }
        let refusal = check(
            Wipe,
            &ActionOptions::default(),
            &d,
            &caller(MdmAuthority::Standalone, Role::Helpdesk),
        )
        .unwrap_err();
        assert!(
            refusal.detail.contains("removeDevices"),
            "{}",
            refusal.detail
        );
    }

    #[test]
    fn self_service_offers_lock_passcode_and_removal_of_personal_devices() {
        let mut personal = ios();
        personal.ownership = Ownership::Personal;
        let company = ios();
        for &kind in ActionKind::ALL {
            let on_personal = outcome(kind, &personal, &me());
            let on_company = outcome(kind, &company, &me());
            match kind {
                RemoteLock | ResetPasscode => {
                    assert_eq!(on_personal, None);
                    assert_eq!(on_company, None);
                }
                Retire | Wipe => {
                    assert_eq!(on_personal, None);
                    assert_eq!(on_company, Some(RefusalReason::SelfServiceNotAllowed));
                }
                RebootNow | SyncDevice | Delete => {
                    assert_eq!(on_personal, Some(RefusalReason::SelfServiceNotAllowed));
                    assert_eq!(on_company, Some(RefusalReason::SelfServiceNotAllowed));
                }
            }
        }
        // Other roles cannot use self-service.
        let admin_me = CallerContext {
            role: Role::Admin,
            ..me()
        };
        assert_eq!(
            outcome(RemoteLock, &personal, &admin_me),
            Some(RefusalReason::ForbiddenForRole)
        );
        // The device's own limits still apply.
        let work_profile = android(ManagementMode::WorkProfile, "14");
        assert_eq!(
            outcome(Wipe, &work_profile, &me()),
            Some(RefusalReason::ActionNotSupported)
        );
        assert_eq!(outcome(Retire, &work_profile, &me()), None);
    }

    // ---- licence and state ----

    #[test]
    fn without_a_licence_only_delete() {
        let mut d = ios();
        d.user_licensed = Some(false);
        for &kind in ActionKind::ALL {
            let expected = (kind != Delete).then_some(RefusalReason::UserNotLicensed);
            assert_eq!(outcome(kind, &d, &admin()), expected, "{kind}");
        }
        d.user_licensed = None;
        assert_eq!(allowed_actions(&d, &admin()), ActionKind::ALL);
    }

    #[test]
    fn management_state_rules() {
        use ManagementState::*;
        let pending = Some(RefusalReason::DeviceRemovalPending);
        let not_managed = Some(RefusalReason::DeviceNotManaged);
        for &state in ManagementState::ALL {
            let d = DeviceContext {
                management_state: state,
                ..ios()
            };
            let ended = matches!(state, Retired | Wiped | Unenrolled);
            for kind in [RemoteLock, ResetPasscode, RebootNow, SyncDevice] {
                let expected = if ended { not_managed } else { None };
                assert_eq!(outcome(kind, &d, &admin()), expected, "{kind} {state}");
            }
            let retire = match state {
                Retired | Wiped | Unenrolled => not_managed,
                RetirePending | RetireIssued | WipePending | WipeIssued | DeletePending => pending,
                _ => None,
            };
            assert_eq!(outcome(Retire, &d, &admin()), retire, "retire {state}");
            let wipe = match state {
                Retired | Wiped | Unenrolled => not_managed,
                WipePending | WipeIssued => pending,
                _ => None,
            };
            assert_eq!(outcome(Wipe, &d, &admin()), wipe, "wipe {state}");
            let delete = if state == DeletePending {
                pending
            } else {
                None
            };
            assert_eq!(outcome(Delete, &d, &admin()), delete, "delete {state}");
        }
    }

    // ---- order of the checks ----

    #[test]
    fn the_most_useful_reason_wins() {
        let mut everything_wrong = windows(ManagementMode::Desktop, "10.0.15063");
        everything_wrong.management_state = ManagementState::Retired;
        everything_wrong.user_licensed = Some(false);
        everything_wrong.is_passcode_present = Some(false);
        // Role first: a reader can never act.
        assert_eq!(
            outcome(
                RemoteLock,
                &everything_wrong,
                &caller(MdmAuthority::Hybrid, Role::Reader)
            ),
            Some(RefusalReason::ForbiddenForRole)
        );
        // Then the authority.
        assert_eq!(
            outcome(
                RemoteLock,
                &everything_wrong,
                &caller(MdmAuthority::Office365, Role::Admin)
            ),
            Some(RefusalReason::AuthorityDisallowsAction)
        );
        assert_eq!(
            outcome(
                RemoteLock,
                &everything_wrong,
                &caller(MdmAuthority::Hybrid, Role::Admin)
            ),
            Some(RefusalReason::HybridAuthorityReadOnly)
        );
        // Then the licence, which explains why the device was unenrolled.
        assert_eq!(
            outcome(RemoteLock, &everything_wrong, &admin()),
            Some(RefusalReason::UserNotLicensed)
        );
        everything_wrong.user_licensed = Some(true);
        // Then the state.
        assert_eq!(
            outcome(RemoteLock, &everything_wrong, &admin()),
            Some(RefusalReason::DeviceNotManaged)
        );
        everything_wrong.management_state = ManagementState::Managed;
        // Then what the platform can do, before the passcode.
        assert_eq!(
            outcome(RemoteLock, &everything_wrong, &admin()),
            Some(RefusalReason::ActionNotSupported)
        );
        assert_eq!(
            wipe_with(KEEP, &everything_wrong),
            Some(RefusalReason::RequiresWindows1709)
        );
    }

    // ---- exhaustive ----

    const ROLES_AND_SELF_SERVICE: usize = 12;

    fn versions(platform: Platform) -> Vec<Option<OsVersion>> {
        let texts: &[&str] = match platform {
            Platform::Ios | Platform::IPadOs => &["17.0"],
            Platform::MacOs => &["14.5"],
            Platform::Android => &["4.1", "6.0", "7.0", "8.0", "14"],
            Platform::Windows => &["6.2.9200", "8.1", "10.0.15063", "10.0.16299", "10.0.19045"],
        };
        std::iter::once(None)
            .chain(texts.iter().map(|t| Some(v(t))))
            .collect()
    }

    fn modes(platform: Platform) -> Vec<Option<ManagementMode>> {
        std::iter::once(None)
            .chain(
                ManagementMode::ALL
                    .iter()
                    .copied()
                    .filter(|m| m.applies_to(platform))
                    .map(Some),
            )
            .collect()
    }

    fn all_devices(platform: Platform) -> Vec<DeviceContext> {
        let mut devices = Vec::new();
        for management_mode in modes(platform) {
            for os_version in versions(platform) {
                for &ownership in Ownership::ALL {
                    for &management_state in ManagementState::ALL {
                        for is_passcode_present in [Some(true), Some(false), None] {
                            for user_licensed in [None, Some(true), Some(false)] {
                                for directory_joined in [false, true] {
                                    devices.push(DeviceContext {
                                        platform,
                                        os_version,
                                        ownership,
                                        management_mode,
                                        management_state,
                                        directory_joined,
                                        is_passcode_present,
                                        user_licensed,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        devices
    }

    fn all_callers() -> Vec<CallerContext> {
        let mut callers = Vec::new();
        for &authority in MdmAuthority::ALL {
            for &role in Role::ALL {
                for self_service in [false, true] {
                    callers.push(CallerContext {
                        authority,
                        role,
                        self_service,
                    });
                }
            }
        }
        callers
    }

    fn class(device: &DeviceContext) -> DeviceClass {
        DeviceClass::of(device.platform, device.management_mode)
    }

    /// Invariants of one answer, stated independently of how `check` is written.
    fn assert_invariants(
        kind: ActionKind,
        d: &DeviceContext,
        c: &CallerContext,
        result: &Result<(), Refusal>,
    ) {
        let context = || format!("{kind} on {d:?} by {c:?}: {result:?}");
        let Err(refusal) = result else {
            // What an allowed action implies.
            assert!(
                c.authority != MdmAuthority::None || kind == Delete,
                "{}",
                context()
            );
            if c.authority == MdmAuthority::Office365 {
                assert!(matches!(kind, Retire | Wipe | Delete), "{}", context());
                assert_ne!(d.platform, Platform::MacOs, "{}", context());
            }
            if c.authority == MdmAuthority::Hybrid {
                assert!(
                    matches!(c.role, Role::Connector | Role::User),
                    "{}",
                    context()
                );
            }
            if c.role == Role::Connector {
                assert_eq!(c.authority, MdmAuthority::Hybrid, "{}", context());
            }
            assert_ne!(c.role, Role::Reader, "{}", context());
            if c.role == Role::Helpdesk {
                assert!(!matches!(kind, Wipe | Retire | Delete), "{}", context());
            }
            if c.self_service {
                assert_eq!(c.role, Role::User, "{}", context());
                assert!(
                    matches!(kind, RemoteLock | ResetPasscode | Retire | Wipe),
                    "{}",
                    context()
                );
                if matches!(kind, Retire | Wipe) {
                    assert_eq!(d.ownership, Ownership::Personal, "{}", context());
                }
            } else {
                assert_ne!(c.role, Role::User, "{}", context());
            }
            if d.user_licensed == Some(false) || !d.management_state.is_managed() {
                assert_eq!(kind, Delete, "{}", context());
            }
            match kind {
                RemoteLock => {
                    assert_ne!(d.is_passcode_present, Some(false), "{}", context());
                    assert_ne!(class(d), DeviceClass::WindowsDesktop, "{}", context());
                }
                ResetPasscode => assert!(
                    !matches!(
                        class(d),
                        DeviceClass::AndroidDedicated
                            | DeviceClass::Mac
                            | DeviceClass::WindowsDesktop
                    ),
                    "{}",
                    context()
                ),
                Wipe => {
                    assert_ne!(class(d), DeviceClass::AndroidWorkProfile, "{}", context());
                    assert!(
                        !matches!(
                            d.management_state,
                            ManagementState::WipePending | ManagementState::WipeIssued
                        ),
                        "{}",
                        context()
                    );
                }
                Retire => {
                    assert!(!d.management_state.is_leaving(), "{}", context());
                    assert!(
                        !matches!(
                            class(d),
                            DeviceClass::AndroidDedicated | DeviceClass::AndroidFullyManaged
                        ),
                        "{}",
                        context()
                    );
                    if d.platform == Platform::Windows && d.directory_joined {
                        assert!(
                            d.os_version.is_some_and(|v| v.major() < 10),
                            "{}",
                            context()
                        );
                    }
                }
                RebootNow => assert!(
                    !matches!(
                        class(d),
                        DeviceClass::AndroidWorkProfile
                            | DeviceClass::AndroidCorporateWorkProfile
                            | DeviceClass::AndroidDeviceAdmin
                    ),
                    "{}",
                    context()
                ),
                Delete => assert_ne!(
                    d.management_state,
                    ManagementState::DeletePending,
                    "{}",
                    context()
                ),
                SyncDevice => {}
            }
            return;
        };
        // What every refusal carries.
        let detail = &refusal.detail;
        assert!(!detail.is_empty() && detail.ends_with('.'), "{}", context());
        assert!(
            detail.chars().next().is_some_and(char::is_uppercase),
            "{}",
            context()
        );
        assert!(detail.contains(d.platform.as_str()), "{}", context());
        assert!(
            !detail.contains('\n') && !detail.contains("  "),
            "{}",
            context()
        );
        assert!(
            matches!(refusal.reason.status(), 403 | 409 | 422),
            "{}",
            context()
        );
        // Sync and delete are never refused for what the device is.
        if matches!(kind, SyncDevice | Delete) {
            assert!(
                !matches!(
                    refusal.reason,
                    RefusalReason::ActionNotSupported
                        | RefusalReason::DeviceHasNoPasscode
                        | RefusalReason::RequiresWindows1709
                        | RefusalReason::RetireNotOfferedForDirectoryJoined
                        | RefusalReason::InvalidActionOptions
                ),
                "{}",
                context()
            );
        }
        // Default options never ask for what needs 1709 or contradict each other.
        assert!(
            !matches!(
                refusal.reason,
                RefusalReason::RequiresWindows1709 | RefusalReason::InvalidActionOptions
            ),
            "{}",
            context()
        );
        // A role without the permission hears about the role, whatever else is wrong.
        if !c.self_service && !c.role.can(required_permission(kind)) {
            let expected = if c.role == Role::User {
                RefusalReason::SelfServiceNotAllowed
            } else {
                RefusalReason::ForbiddenForRole
            };
            assert_eq!(refusal.reason, expected, "{}", context());
        }
    }

    /// Every device of `platform` × every caller × every action kind (run per platform so
    /// that the test runner spreads the work).
    fn exhaustive_matrix(platform: Platform) {
        let devices = all_devices(platform);
        let callers = all_callers();
        assert_eq!(
            callers.len(),
            MdmAuthority::ALL.len() * ROLES_AND_SELF_SERVICE
        );
        let options = ActionOptions::default();
        let mut checked = 0usize;
        let mut allowed_count = 0usize;
        for d in &devices {
            let reference = allowed_actions(d, &admin());
            for c in &callers {
                let mut allowed = Vec::new();
                for &kind in ActionKind::ALL {
                    let result = check(kind, &options, d, c);
                    assert_invariants(kind, d, c, &result);
                    if result.is_ok() {
                        allowed.push(kind);
                    }
                    checked += 1;
                }
                assert_eq!(allowed_actions(d, c), allowed, "{d:?} {c:?}");
                // No caller can do more than a standalone admin, and the connector under
                // hybrid does exactly as much.
                assert!(
                    allowed.iter().all(|kind| reference.contains(kind)),
                    "{d:?} {c:?}"
                );
                if c.authority == MdmAuthority::Hybrid
                    && c.role == Role::Connector
                    && !c.self_service
                {
                    assert_eq!(allowed, reference, "{d:?}");
                }
                allowed_count += allowed.len();
            }
        }
        // (Modes + none) × versions × ownership × state × passcode × licence × join.
        let shapes = modes(platform).len() * versions(platform).len();
        assert_eq!(
            devices.len(),
            shapes * 2 * ManagementState::ALL.len() * 3 * 3 * 2
        );
        assert_eq!(
            checked,
            devices.len() * callers.len() * ActionKind::ALL.len()
        );
        assert!(allowed_count > 0);
    }

    #[test]
    fn exhaustive_matrix_ios() {
        exhaustive_matrix(Platform::Ios);
    }

    #[test]
    fn exhaustive_matrix_ipados() {
        exhaustive_matrix(Platform::IPadOs);
    }

    #[test]
    fn exhaustive_matrix_macos() {
        exhaustive_matrix(Platform::MacOs);
    }

    #[test]
    fn exhaustive_matrix_android() {
        exhaustive_matrix(Platform::Android);
    }

    #[test]
    fn exhaustive_matrix_windows() {
        exhaustive_matrix(Platform::Windows);
    }

    #[test]
    fn exhaustive_factory_reset_options() {
        let mut checked = 0;
        for &platform in Platform::ALL {
            for mode in modes(platform) {
                for os_version in versions(platform) {
                    let d = DeviceContext {
                        platform,
                        os_version,
                        management_mode: mode,
                        ..ios()
                    };
                    for bits in 0u8..32 {
                        let options = ActionOptions {
                            keep_enrollment_data: bits & 1 != 0,
                            keep_user_data: bits & 2 != 0,
                            use_protected_wipe: bits & 4 != 0,
                            persist_esim_data_plan: bits & 8 != 0,
                            mac_os_unlock_code: bits & 16 != 0,
                        };
                        let result = check(Wipe, &options, &d, &admin());
                        let build = os_version.and_then(|v| v.windows_10_build());
                        let desktop =
                            platform == Platform::Windows && mode != Some(ManagementMode::Mobile);
                        let expected = mode != Some(ManagementMode::WorkProfile)
                            && (!options.keep_user_data || options.keep_enrollment_data)
                            && (!options.keep_enrollment_data
                                || (desktop && build.is_some_and(|b| b >= WINDOWS_1709_BUILD)))
                            && (!options.use_protected_wipe
                                || (desktop && os_version.is_none_or(|v| v.major() >= 10)))
                            && (!options.persist_esim_data_plan
                                || matches!(
                                    platform,
                                    Platform::Ios | Platform::IPadOs | Platform::Android
                                ))
                            && (!options.mac_os_unlock_code || platform == Platform::MacOs);
                        assert_eq!(result.is_ok(), expected, "{d:?} {options:?}: {result:?}");
                        if let Err(refusal) = &result {
                            assert!(
                                refusal.detail.contains(platform.as_str()),
                                "{}",
                                refusal.detail
                            );
                            if refusal.reason == RefusalReason::RequiresWindows1709 {
                                assert!(desktop && build.is_none_or(|b| b < WINDOWS_1709_BUILD));
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(
            checked,
            32 * Platform::ALL
                .iter()
                .map(|&p| modes(p).len() * versions(p).len())
                .sum::<usize>()
        );
    }

    // ---- properties over arbitrary versions and contexts ----

    fn any_version() -> impl Strategy<Value = Option<OsVersion>> {
        proptest::option::of(
            (0u32..30, 0u32..20, 0u32..40_000).prop_map(|(a, b, c)| OsVersion::new(a, b, c)),
        )
    }

    fn any_device() -> impl Strategy<Value = DeviceContext> {
        (
            prop::sample::select(Platform::ALL),
            any_version(),
            prop::sample::select(Ownership::ALL),
            proptest::option::of(prop::sample::select(ManagementMode::ALL)),
            prop::sample::select(ManagementState::ALL),
            any::<bool>(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(
                |(
                    platform,
                    os_version,
                    ownership,
                    management_mode,
                    management_state,
                    directory_joined,
                    is_passcode_present,
                    user_licensed,
                )| {
                    DeviceContext {
                        platform,
                        os_version,
                        ownership,
                        management_mode,
                        management_state,
                        directory_joined,
                        is_passcode_present,
                        user_licensed,
                    }
                },
            )
    }

    fn any_caller() -> impl Strategy<Value = CallerContext> {
        (
            prop::sample::select(MdmAuthority::ALL),
            prop::sample::select(Role::ALL),
            any::<bool>(),
        )
            .prop_map(|(authority, role, self_service)| CallerContext {
                authority,
                role,
                self_service,
            })
    }

    fn any_options() -> impl Strategy<Value = ActionOptions> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(a, b, c, d, e)| ActionOptions {
                keep_enrollment_data: a,
                keep_user_data: b,
                use_protected_wipe: c,
                persist_esim_data_plan: d,
                mac_os_unlock_code: e,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any context, including modes that do not fit the platform and odd versions.
        #[test]
        fn any_context_keeps_the_invariants(
            kind in prop::sample::select(ActionKind::ALL),
            d in any_device(),
            c in any_caller(),
        ) {
            let result = check(kind, &ActionOptions::default(), &d, &c);
            assert_invariants(kind, &d, &c, &result);
            let allowed = allowed_actions(&d, &c);
            prop_assert_eq!(allowed.contains(&kind), result.is_ok());
        }

        /// With any options, keeping data is allowed only on Windows 10 1709 or later.
        #[test]
        fn keep_flags_need_1709(d in any_device(), options in any_options()) {
            let managed = DeviceContext { management_state: ManagementState::Managed, user_licensed: Some(true), ..d };
            let result = check(Wipe, &options, &managed, &admin());
            if result.is_ok() && (options.keep_enrollment_data || options.keep_user_data) {
                prop_assert_eq!(managed.platform, Platform::Windows);
                let build = managed.os_version.and_then(|v| v.windows_10_build());
                prop_assert!(build.is_some_and(|b| b >= WINDOWS_1709_BUILD));
                prop_assert!(options.keep_enrollment_data);
            }
            if let Err(refusal) = &result {
                prop_assert!(!refusal.detail.is_empty());
            }
            // Other actions ignore the options.
            for &kind in ActionKind::ALL.iter().filter(|&&k| k != Wipe) {
                prop_assert_eq!(check(kind, &options, &managed, &admin()), check(kind, &ActionOptions::default(), &managed, &admin()));
            }
        }

        /// Android version requirements follow the API level of the reported release.
        #[test]
        fn android_version_floors(major in 0u32..20, minor in 0u32..4) {
            let version = OsVersion::new(major, minor, 0);
            let level = AndroidApiLevel::from_release(&version);
            let at_least = |floor: u32| level.is_some_and(|l| l >= AndroidApiLevel(floor));
            let at = |mode: Option<ManagementMode>| DeviceContext { os_version: Some(version), ..device(Platform::Android, mode, "14") };
            prop_assert_eq!(outcome(ResetPasscode, &at(Some(ManagementMode::WorkProfile)), &admin()).is_none(), at_least(26));
            prop_assert_eq!(outcome(RebootNow, &at(Some(ManagementMode::FullyManaged)), &admin()).is_none(), at_least(24));
            prop_assert_eq!(outcome(RebootNow, &at(Some(ManagementMode::Dedicated)), &admin()).is_none(), at_least(24));
            prop_assert_eq!(outcome(ResetPasscode, &at(None), &admin()).is_none(), !at_least(24));
            prop_assert!(outcome(ResetPasscode, &at(Some(ManagementMode::FullyManaged)), &admin()).is_none());
        }
    }
}
