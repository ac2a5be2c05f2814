//! What retire ("remove company data") and a factory reset do to one device, from the
//! tables of Microsoft's documentation (seed 001), translated from Dutch.
//!
//! Which retire column applies to a device:
//!
//! | device | column |
//! |---|---|
//! | iOS, iPadOS | iOS |
//! | macOS | macOS |
//! | Android without an Android Enterprise mode (device administrator) | Android, or Android Samsung Knox Standard when the manufacturer is Samsung |
//! | Android personal or corporate-owned work profile | Android work profile (retire removes the work profile; on a corporate-owned device too, the personal side stays) |
//! | Android dedicated | Android Enterprise kiosk devices: not supported |
//! | Android fully managed | not supported (not in the seed: nothing personal to keep apart) |
//! | Windows 10 or 11, desktop or mobile (10.0.x), or an unknown Windows version | Windows 10; not supported when joined to the directory |
//! | Windows desktop 8.1 (6.3, or 8.1 as reported) | Windows 8.1 (MDM) and Windows RT 8.1 |
//! | Windows desktop 8 (6.2 or older) | Windows RT (the only Windows 8 edition with MDM) |
//! | Windows mobile 8.x | Windows Phone 8.1 and Windows Phone 8 |

use serde::Serialize;

use crate::capability::WindowsRelease;
use crate::device::{ManagementMode, Ownership};
use crate::platform::{OsVersion, Platform, WINDOWS_1709_BUILD};
use crate::wire_enum::wire_enum;

wire_enum! {
    /// The column of the retire table that describes a device.
    pub enum RetireColumn {
        Ios => "ios",
        Android => "android",
        AndroidSamsungKnoxStandard => "androidSamsungKnoxStandard",
        AndroidWorkProfile => "androidWorkProfile",
        AndroidEnterpriseDedicated => "androidEnterpriseDedicated",
        /// Not a column of the seed: fully managed devices cannot be retired.
        AndroidEnterpriseFullyManaged => "androidEnterpriseFullyManaged",
        MacOs => "macOs",
        Windows81AndWindowsRt81 => "windows81AndWindowsRt81",
        WindowsRt => "windowsRt",
        WindowsPhone81AndWindowsPhone8 => "windowsPhone81AndWindowsPhone8",
        Windows10 => "windows10",
    }
}

impl RetireColumn {
    /// The column's heading in the documentation.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Ios => "iOS",
            Self::Android => "Android",
            Self::AndroidSamsungKnoxStandard => "Android Samsung Knox Standard",
            Self::AndroidWorkProfile => "Android work profile",
            Self::AndroidEnterpriseDedicated => "Android Enterprise kiosk devices",
            Self::AndroidEnterpriseFullyManaged => "Android Enterprise fully managed devices",
            Self::MacOs => "macOS",
            Self::Windows81AndWindowsRt81 => "Windows 8.1 (MDM) and Windows RT 8.1",
            Self::WindowsRt => "Windows RT",
            Self::WindowsPhone81AndWindowsPhone8 => "Windows Phone 8.1 and Windows Phone 8",
            Self::Windows10 => "Windows 10",
        }
    }
}

/// What retire does to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RetirePreview {
    pub column: RetireColumn,
    pub column_title: &'static str,
    /// Whether company data can be removed from this device at all.
    pub supported: bool,
    /// Whether the user's personal data stays on the device (when retire is supported).
    pub personal_data_stays: bool,
    pub summary: &'static str,
    /// One row per data type, as the column says; empty when retire is not supported.
    pub rows: Vec<RetireRow>,
    pub notes: Vec<&'static str>,
}

/// One data type of the retire table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RetireRow {
    pub data_type: &'static str,
    pub effect: &'static str,
    /// Whether the company's data or hold of this type leaves the device: removed, or
    /// revoked so that it no longer works. False when it stays usable, when only the
    /// enforcement of settings ends, or when the row does not apply.
    pub company_data_removed: bool,
}

/// What a factory reset does to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WipePreview {
    /// Whether the factory reset can be done as asked (keeping enrollment and user data
    /// needs Windows 10 version 1709 or later).
    pub supported: bool,
    pub keeps_enrollment_and_user_data: bool,
    /// Whether the device is still managed after the reset.
    pub stays_under_management: bool,
    pub summary: &'static str,
    pub kept: &'static [&'static str],
    pub lost: &'static [&'static str],
}

/// What retire removes from and keeps on this device.
pub fn retire_preview(
    platform: Platform,
    management_mode: Option<ManagementMode>,
    ownership: Ownership,
    os_version: Option<&OsVersion>,
    manufacturer: Option<&str>,
    directory_joined: bool,
) -> RetirePreview {
    let column = retire_column(platform, management_mode, os_version, manufacturer);
    let unsupported = match column {
        RetireColumn::AndroidEnterpriseDedicated => Some(KIOSK_NOT_SUPPORTED),
        RetireColumn::AndroidEnterpriseFullyManaged => Some(FULLY_MANAGED_NOT_SUPPORTED),
        RetireColumn::Windows10 if directory_joined => Some(DIRECTORY_JOINED_NOT_SUPPORTED),
        _ => None,
    };
    if let Some(reason) = unsupported {
        return RetirePreview {
            column,
            column_title: column.title(),
            supported: false,
            personal_data_stays: false,
            summary: reason,
            rows: Vec::new(),
            notes: vec![FACTORY_RESET_INSTEAD],
        };
    }
    let mut notes = Vec::new();
    if column == RetireColumn::AndroidWorkProfile {
        notes.push(WORK_PROFILE_NO_FACTORY_RESET);
    }
    notes.push(match ownership {
        Ownership::Personal => PERSONAL_DEVICE_NOTE,
        Ownership::Company => COMPANY_DEVICE_NOTE,
    });
    RetirePreview {
        column,
        column_title: column.title(),
        supported: true,
        personal_data_stays: true,
        summary: if column == RetireColumn::AndroidWorkProfile {
            WORK_PROFILE_SUMMARY
        } else {
            RETIRE_SUMMARY
        },
        rows: retire_rows(column),
        notes,
    }
}

/// What a factory reset keeps and loses on this device.
pub fn wipe_preview(
    platform: Platform,
    os_version: Option<&OsVersion>,
    keep_enrollment_and_user_data: bool,
) -> WipePreview {
    if !keep_enrollment_and_user_data {
        return WipePreview {
            supported: true,
            keeps_enrollment_and_user_data: false,
            stays_under_management: false,
            summary: "All user accounts, data, MDM policies and settings are wiped, and the \
                      drive is securely erased. The default state and settings of the \
                      operating system are restored. The device is removed from management.",
            kept: &[],
            lost: &["User accounts", "Data", "MDM policies", "Settings"],
        };
    }
    let is_1709 = platform == Platform::Windows
        && os_version
            .and_then(OsVersion::windows_10_build)
            .is_some_and(|build| build >= WINDOWS_1709_BUILD);
    if !is_1709 {
        return WipePreview {
            supported: false,
            keeps_enrollment_and_user_data: true,
            stays_under_management: false,
            summary: "The option to keep the enrollment state and user account is only \
                      available for Windows 10 version 1709 and later.",
            kept: &[],
            lost: &[],
        };
    }
    WipePreview {
        supported: true,
        keeps_enrollment_and_user_data: true,
        stays_under_management: true,
        summary: "All MDM policies are wiped. User accounts and data are kept. User settings \
                  are reset to their defaults. The default state and settings of the \
                  operating system are restored. MDM policies are applied again the next time \
                  the device connects to management.",
        kept: &[
            "User accounts associated with the device",
            "Machine state (domain join, Azure AD join)",
            "Mobile device management (MDM) enrollment",
            "OEM-installed apps (Store and Win32 apps)",
            "User profile",
            "User data outside the user profile",
            "User autologon",
        ],
        lost: &[
            "User files",
            "User-installed apps (Store and Win32 apps)",
            "Non-default device settings",
        ],
    }
}

/// The column of the retire table for a device (see the module documentation).
fn retire_column(
    platform: Platform,
    management_mode: Option<ManagementMode>,
    os_version: Option<&OsVersion>,
    manufacturer: Option<&str>,
) -> RetireColumn {
    match platform {
        Platform::Ios | Platform::IPadOs => RetireColumn::Ios,
        Platform::MacOs => RetireColumn::MacOs,
        Platform::Android => match management_mode {
            Some(ManagementMode::WorkProfile | ManagementMode::CorporateWorkProfile) => {
                RetireColumn::AndroidWorkProfile
            }
            Some(ManagementMode::Dedicated) => RetireColumn::AndroidEnterpriseDedicated,
            Some(ManagementMode::FullyManaged) => RetireColumn::AndroidEnterpriseFullyManaged,
            Some(ManagementMode::Desktop | ManagementMode::Mobile) | None => {
                if manufacturer.is_some_and(|name| name.trim().eq_ignore_ascii_case("samsung")) {
                    RetireColumn::AndroidSamsungKnoxStandard
                } else {
                    RetireColumn::Android
                }
            }
        },
        Platform::Windows => {
            let mobile = management_mode == Some(ManagementMode::Mobile);
            match (WindowsRelease::of(os_version), mobile) {
                (Some(WindowsRelease::Ten) | None, _) => RetireColumn::Windows10,
                (Some(WindowsRelease::EightOne | WindowsRelease::Eight), true) => {
                    RetireColumn::WindowsPhone81AndWindowsPhone8
                }
                (Some(WindowsRelease::EightOne), false) => RetireColumn::Windows81AndWindowsRt81,
                (Some(WindowsRelease::Eight), false) => RetireColumn::WindowsRt,
            }
        }
    }
}

fn retire_rows(column: RetireColumn) -> Vec<RetireRow> {
    fn rows<const N: usize>(
        table: &[(&'static str, [Cell; N])],
        pick: impl Fn(&[Cell; N]) -> Cell,
    ) -> Vec<RetireRow> {
        table
            .iter()
            .map(|(data_type, cells)| {
                let cell = pick(cells);
                RetireRow {
                    data_type,
                    effect: cell.effect,
                    company_data_removed: cell.removed,
                }
            })
            .collect()
    }
    match column {
        RetireColumn::Ios => rows(IOS, |[cell]| *cell),
        RetireColumn::MacOs => rows(MACOS, |[cell]| *cell),
        RetireColumn::AndroidWorkProfile => rows(WORK_PROFILE, |[cell]| *cell),
        RetireColumn::Android => rows(ANDROID, |[plain, _]| *plain),
        RetireColumn::AndroidSamsungKnoxStandard => rows(ANDROID, |[_, knox]| *knox),
        RetireColumn::Windows81AndWindowsRt81 => rows(WINDOWS, |[w81, _, _, _]| *w81),
        RetireColumn::WindowsRt => rows(WINDOWS, |[_, rt, _, _]| *rt),
        RetireColumn::WindowsPhone81AndWindowsPhone8 => rows(WINDOWS, |[_, _, phone, _]| *phone),
        RetireColumn::Windows10 => rows(WINDOWS, |[_, _, _, w10]| *w10),
        RetireColumn::AndroidEnterpriseDedicated | RetireColumn::AndroidEnterpriseFullyManaged => {
            Vec::new()
        }
    }
}

/// One cell of a retire table: the effect, and whether company data goes (see
/// [`RetireRow::company_data_removed`]).
#[derive(Clone, Copy)]
struct Cell {
    effect: &'static str,
    removed: bool,
}

/// The company's data of this type leaves the device (removed or revoked).
const fn gone(effect: &'static str) -> Cell {
    Cell {
        effect,
        removed: true,
    }
}

/// The data stays, only enforcement ends, or the row does not apply.
const fn stays(effect: &'static str) -> Cell {
    Cell {
        effect,
        removed: false,
    }
}

const RETIRE_SUMMARY: &str = "Removes the data of managed apps (where applicable), settings \
    and email profiles assigned through management. The device leaves management the next \
    time it checks in and receives the action. The user's personal data stays on the device.";
const WORK_PROFILE_SUMMARY: &str = "Removing company data from a device with an Android work \
    profile removes all data, apps and settings in the work profile on the device. The device \
    is retired from management.";
const WORK_PROFILE_NO_FACTORY_RESET: &str =
    "Factory reset is not supported for Android work profiles.";
const KIOSK_NOT_SUPPORTED: &str = "Android kiosk devices can only be factory reset. Company \
    data cannot be removed from Android kiosk devices.";
// Not in the seed: a fully managed device has no personal side to keep.
const FULLY_MANAGED_NOT_SUPPORTED: &str = "A fully managed Android device holds no personal \
    data to keep apart from company data, so company data cannot be removed on its own.";
const DIRECTORY_JOINED_NOT_SUPPORTED: &str =
    "On Windows 10 you cannot remove company data from devices joined to Azure AD.";
const FACTORY_RESET_INSTEAD: &str = "Use a factory reset to remove this device from management.";
// Seed 000: which removal fits whom.
const PERSONAL_DEVICE_NOTE: &str = "Removing company data is the recommended action for \
    employees' own devices, because it does not touch the personal data on the device.";
const COMPANY_DEVICE_NOTE: &str = "For a company device that is being repurposed, a factory \
    reset may fit better: it restores the device's factory settings.";

const REMOVED: &str = "Removed.";
const NOT_SUPPORTED: &str = "Not supported.";
const SETTINGS: &str = "Configurations that were set by management policy are no longer \
    enforced. Users can change the settings.";
const CERTIFICATES_REMOVED_AND_REVOKED: &str = "Certificates are removed and revoked.";
const MANAGEMENT_PROFILE_REMOVED: &str = "The management profile is removed.";
const AZURE_AD_RECORD_REMOVED: &str = "The Azure AD record is removed.";
const EMAIL_PROFILES_REMOVED: &str = "Email profiles provisioned through management are \
    removed. Cached email on the device is removed.";
const CONTACTS: &str = "Contacts synced directly from the app to the native address book \
    are removed. Contacts synced from the native address book to another external source \
    cannot be removed. Currently only the Outlook app is supported.";
const MAM_DATA_UNUSABLE: &str = "App data is removed. The app is not removed. Data protected \
    by mobile application management (MAM) encryption outside the app (for example on an SD \
    card) stays encrypted and unusable, but is not removed.";
const ANDROID_OUTLOOK: &str = "Email received by the Outlook app for Android is removed. This \
    applies only if Outlook is protected by MAM policy. Otherwise Outlook is not wiped when \
    the device is unenrolled.";
const ANDROID_APPS_STAY: &str = "Apps and data remain installed.";
const DEVICE_ADMIN_REVOKED: &str = "Device administrator rights are revoked.";
const WINDOWS_EFS_EMAIL: &str = "Removes email that has EFS enabled. This includes email and \
    attachments in the Mail app for Windows.";

/// iOS (seed 001, "iOS").
const IOS: &[(&str, [Cell; 1])] = &[
    (
        "Company apps and associated data installed through management",
        [gone(
            "Apps are removed. Company app data is removed. App data of Microsoft apps that \
             use mobile app management is removed. The app is not removed.",
        )],
    ),
    ("Settings", [stays(SETTINGS)]),
    ("Wi-Fi and VPN profile settings", [gone(REMOVED)]),
    (
        "Certificate profile settings",
        [gone(CERTIFICATES_REMOVED_AND_REVOKED)],
    ),
    ("Management agent", [gone(MANAGEMENT_PROFILE_REMOVED)]),
    ("Email", [gone(EMAIL_PROFILES_REMOVED)]),
    (
        "Outlook",
        [gone(
            "Email received by the Microsoft Outlook app for iOS is removed. This requires the \
             Outlook mobile app to be deployed as a required app for iOS users first.",
        )],
    ),
    ("Azure AD unjoin", [gone(AZURE_AD_RECORD_REMOVED)]),
    ("Contacts", [gone(CONTACTS)]),
];

/// Android device administrator: the columns "Android" and "Android Samsung Knox Standard".
const ANDROID: &[(&str, [Cell; 2])] = &[
    ("Web links", [gone(REMOVED), gone(REMOVED)]),
    (
        "Unmanaged Google Play apps",
        [stays(ANDROID_APPS_STAY), stays(ANDROID_APPS_STAY)],
    ),
    (
        "Unmanaged line-of-business apps",
        [
            stays(ANDROID_APPS_STAY),
            gone(
                "Apps are removed and local app data is removed. No data outside the app (for \
                 example on an SD card) is removed.",
            ),
        ],
    ),
    (
        "Managed Google Play apps",
        [
            gone(MAM_DATA_UNUSABLE),
            gone(
                "App data is removed. The app is not removed. Data protected by MAM encryption \
                 outside the app (for example on an SD card) stays encrypted, but is not \
                 removed.",
            ),
        ],
    ),
    (
        "Managed line-of-business apps",
        [gone(MAM_DATA_UNUSABLE), gone(MAM_DATA_UNUSABLE)],
    ),
    ("Settings", [stays(SETTINGS), stays(SETTINGS)]),
    (
        "Wi-Fi and VPN profile settings",
        [gone(REMOVED), gone(REMOVED)],
    ),
    (
        "Certificate profile settings",
        [
            gone("Certificates are revoked, but not removed."),
            gone(CERTIFICATES_REMOVED_AND_REVOKED),
        ],
    ),
    (
        "Management agent",
        [gone(DEVICE_ADMIN_REVOKED), gone(DEVICE_ADMIN_REVOKED)],
    ),
    (
        "Email",
        [
            stays("Not applicable (Android devices do not support email profiles)."),
            gone(EMAIL_PROFILES_REMOVED),
        ],
    ),
    ("Outlook", [gone(ANDROID_OUTLOOK), gone(ANDROID_OUTLOOK)]),
    (
        "Azure AD unjoin",
        [gone(AZURE_AD_RECORD_REMOVED), gone(AZURE_AD_RECORD_REMOVED)],
    ),
    ("Contacts", [gone(CONTACTS), gone(CONTACTS)]),
];

/// Android work profile: the seed has a paragraph rather than a table; this is its one row.
const WORK_PROFILE: &[(&str, [Cell; 1])] = &[(
    "Data, apps and settings in the work profile",
    [gone(REMOVED)],
)];

/// macOS (seed 001, "macOS").
const MACOS: &[(&str, [Cell; 1])] = &[
    ("Settings", [stays(SETTINGS)]),
    ("Wi-Fi and VPN profile settings", [gone(REMOVED)]),
    (
        "Certificate profile settings",
        [gone(
            "Certificates deployed through MDM are removed and revoked.",
        )],
    ),
    ("Management agent", [gone(MANAGEMENT_PROFILE_REMOVED)]),
    (
        "Outlook",
        [stays(
            "If conditional access is enabled, the device no longer receives new email.",
        )],
    ),
    ("Azure AD unjoin", [gone(AZURE_AD_RECORD_REMOVED)]),
];

/// Windows: the columns "Windows 8.1 (MDM) and Windows RT 8.1", "Windows RT", "Windows
/// Phone 8.1 and Windows Phone 8", "Windows 10".
const WINDOWS: &[(&str, [Cell; 4])] = &[
    (
        "Company apps and associated data installed through management",
        [
            gone("Keys are revoked for files protected with EFS. The user cannot open the files."),
            stays("Company apps are not removed."),
            gone(
                "Apps originally installed through the company portal are removed. Company app \
                 data is removed.",
            ),
            gone(
                "Apps are removed. Sideloading keys are removed. On Windows 10 version 1703 \
                 (Creators Update) and later, Office 365 ProPlus apps are not removed.",
            ),
        ],
    ),
    (
        "Settings",
        [
            stays(SETTINGS),
            stays(SETTINGS),
            stays(SETTINGS),
            stays(SETTINGS),
        ],
    ),
    (
        "Wi-Fi and VPN profile settings",
        [
            gone(REMOVED),
            gone(REMOVED),
            stays(NOT_SUPPORTED),
            gone(REMOVED),
        ],
    ),
    (
        "Certificate profile settings",
        [
            gone(CERTIFICATES_REMOVED_AND_REVOKED),
            gone(CERTIFICATES_REMOVED_AND_REVOKED),
            stays(NOT_SUPPORTED),
            gone(CERTIFICATES_REMOVED_AND_REVOKED),
        ],
    ),
    (
        "Email",
        [
            gone(WINDOWS_EFS_EMAIL),
            stays(NOT_SUPPORTED),
            gone(EMAIL_PROFILES_REMOVED),
            gone(
                "Removes email that has EFS enabled. This includes email and attachments in the \
                 Mail app for Windows. Removes email accounts provisioned by management.",
            ),
        ],
    ),
    (
        "Azure AD unjoin",
        [
            stays("No."),
            stays("No."),
            gone(AZURE_AD_RECORD_REMOVED),
            stays(
                "Not applicable. On Windows 10 you cannot remove company data from devices \
                 joined to Azure AD.",
            ),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;
    use crate::authority::MdmAuthority;
    use crate::capability::{ActionOptions, CallerContext, DeviceContext, check};
    use crate::device::ManagementState;
    use crate::role::Role;

    fn v(text: &str) -> OsVersion {
        text.parse().unwrap()
    }

    fn column(
        platform: Platform,
        mode: Option<ManagementMode>,
        version: Option<&str>,
        manufacturer: Option<&str>,
    ) -> RetireColumn {
        let version = version.map(v);
        retire_preview(
            platform,
            mode,
            Ownership::Company,
            version.as_ref(),
            manufacturer,
            false,
        )
        .column
    }

    fn preview(platform: Platform, mode: Option<ManagementMode>, version: &str) -> RetirePreview {
        retire_preview(
            platform,
            mode,
            Ownership::Personal,
            Some(&v(version)),
            None,
            false,
        )
    }

    fn effect(preview: &RetirePreview, data_type: &str) -> (&'static str, bool) {
        let row = preview
            .rows
            .iter()
            .find(|row| row.data_type == data_type)
            .unwrap_or_else(|| panic!("no row {data_type} in {:?}", preview.column));
        (row.effect, row.company_data_removed)
    }

    #[test]
    fn every_device_finds_its_column() {
        use ManagementMode::*;
        use RetireColumn as C;
        let cases = [
            (Platform::Ios, None, Some("17.4"), None, C::Ios),
            (Platform::IPadOs, None, Some("17.4"), None, C::Ios),
            (Platform::MacOs, None, None, None, C::MacOs),
            (
                Platform::Android,
                None,
                Some("9"),
                Some("Google"),
                C::Android,
            ),
            (Platform::Android, None, Some("9"), None, C::Android),
            (
                Platform::Android,
                None,
                Some("9"),
                Some("samsung"),
                C::AndroidSamsungKnoxStandard,
            ),
            (
                Platform::Android,
                None,
                Some("9"),
                Some(" SAMSUNG "),
                C::AndroidSamsungKnoxStandard,
            ),
            (
                Platform::Android,
                Some(WorkProfile),
                Some("14"),
                Some("samsung"),
                C::AndroidWorkProfile,
            ),
            (
                Platform::Android,
                Some(CorporateWorkProfile),
                Some("14"),
                None,
                C::AndroidWorkProfile,
            ),
            (
                Platform::Android,
                Some(Dedicated),
                Some("14"),
                Some("samsung"),
                C::AndroidEnterpriseDedicated,
            ),
            (
                Platform::Android,
                Some(FullyManaged),
                Some("14"),
                None,
                C::AndroidEnterpriseFullyManaged,
            ),
            (
                Platform::Windows,
                Some(Desktop),
                Some("10.0.19045"),
                None,
                C::Windows10,
            ),
            (
                Platform::Windows,
                Some(Desktop),
                Some("10.0.26100"),
                None,
                C::Windows10,
            ),
            (Platform::Windows, Some(Desktop), None, None, C::Windows10),
            (
                Platform::Windows,
                None,
                Some("10.0.19045"),
                None,
                C::Windows10,
            ),
            (
                Platform::Windows,
                Some(Mobile),
                Some("10.0.15063"),
                None,
                C::Windows10,
            ),
            (
                Platform::Windows,
                Some(Desktop),
                Some("6.3.9600"),
                None,
                C::Windows81AndWindowsRt81,
            ),
            (
                Platform::Windows,
                Some(Desktop),
                Some("8.1"),
                None,
                C::Windows81AndWindowsRt81,
            ),
            (
                Platform::Windows,
                Some(Desktop),
                Some("6.2.9200"),
                None,
                C::WindowsRt,
            ),
            (
                Platform::Windows,
                Some(Mobile),
                Some("8.10.14219"),
                None,
                C::WindowsPhone81AndWindowsPhone8,
            ),
            (
                Platform::Windows,
                Some(Mobile),
                Some("8.0.10501"),
                None,
                C::WindowsPhone81AndWindowsPhone8,
            ),
        ];
        for (platform, mode, version, manufacturer, expected) in cases {
            assert_eq!(
                column(platform, mode, version, manufacturer),
                expected,
                "{platform} {mode:?} {version:?} {manufacturer:?}"
            );
        }
    }

    #[test]
    fn columns_have_stable_names_and_titles() {
        assert_eq!(RetireColumn::ALL.len(), 11);
        assert_eq!(
            RetireColumn::AndroidSamsungKnoxStandard.as_str(),
            "androidSamsungKnoxStandard"
        );
        assert_eq!(
            RetireColumn::Windows81AndWindowsRt81.title(),
            "Windows 8.1 (MDM) and Windows RT 8.1"
        );
        assert_eq!(
            RetireColumn::WindowsPhone81AndWindowsPhone8.title(),
            "Windows Phone 8.1 and Windows Phone 8"
        );
        for column in RetireColumn::ALL {
            assert!(!column.title().is_empty());
            assert_eq!(column.as_str().parse::<RetireColumn>().unwrap(), *column);
        }
    }

    #[test]
    fn ios_column() {
        let p = preview(Platform::Ios, None, "17.4");
        assert!(p.supported && p.personal_data_stays);
        assert_eq!(p.column_title, "iOS");
        assert_eq!(p.rows.len(), 9);
        assert_eq!(
            effect(&p, "Wi-Fi and VPN profile settings"),
            ("Removed.", true)
        );
        assert_eq!(
            effect(&p, "Certificate profile settings"),
            ("Certificates are removed and revoked.", true)
        );
        assert_eq!(
            effect(&p, "Management agent"),
            ("The management profile is removed.", true)
        );
        assert_eq!(
            effect(&p, "Azure AD unjoin"),
            ("The Azure AD record is removed.", true)
        );
        assert!(!effect(&p, "Settings").1);
        assert!(effect(&p, "Outlook").0.contains("required app"));
        assert!(effect(&p, "Contacts").0.contains("Outlook app"));
        assert!(
            effect(
                &p,
                "Company apps and associated data installed through management"
            )
            .0
            .starts_with("Apps are removed.")
        );
        // iPadOS is the same column.
        assert_eq!(preview(Platform::IPadOs, None, "17.4").rows, p.rows);
    }

    #[test]
    fn android_and_knox_columns_differ_where_the_seed_says() {
        let plain = retire_preview(
            Platform::Android,
            None,
            Ownership::Personal,
            Some(&v("9")),
            Some("Google"),
            false,
        );
        let knox = retire_preview(
            Platform::Android,
            None,
            Ownership::Personal,
            Some(&v("9")),
            Some("Samsung"),
            false,
        );
        assert_eq!(plain.column_title, "Android");
        assert_eq!(knox.column_title, "Android Samsung Knox Standard");
        assert_eq!(plain.rows.len(), 13);
        assert_eq!(knox.rows.len(), 13);
        let types = |p: &RetirePreview| p.rows.iter().map(|r| r.data_type).collect::<Vec<_>>();
        assert_eq!(types(&plain), types(&knox));
        let differ: Vec<_> = plain
            .rows
            .iter()
            .zip(&knox.rows)
            .filter(|(a, b)| a.effect != b.effect)
            .map(|(a, _)| a.data_type)
            .collect();
        assert_eq!(
            differ,
            [
                "Unmanaged line-of-business apps",
                "Managed Google Play apps",
                "Certificate profile settings",
                "Email"
            ]
        );
        assert_eq!(
            effect(&plain, "Unmanaged line-of-business apps"),
            ("Apps and data remain installed.", false)
        );
        assert!(effect(&knox, "Unmanaged line-of-business apps").1);
        assert_eq!(
            effect(&plain, "Certificate profile settings").0,
            "Certificates are revoked, but not removed."
        );
        assert_eq!(
            effect(&knox, "Certificate profile settings").0,
            "Certificates are removed and revoked."
        );
        assert!(!effect(&plain, "Email").1);
        assert!(effect(&knox, "Email").1);
        assert!(
            effect(&knox, "Managed Google Play apps")
                .0
                .contains("stays encrypted, but")
        );
        assert!(
            effect(&plain, "Managed Google Play apps")
                .0
                .contains("stays encrypted and unusable")
        );
        assert_eq!(
            effect(&plain, "Unmanaged Google Play apps"),
            effect(&knox, "Unmanaged Google Play apps")
        );
        assert_eq!(
            effect(&plain, "Management agent").0,
            "Device administrator rights are revoked."
        );
    }

    #[test]
    fn android_work_profile_column() {
        for mode in [
            ManagementMode::WorkProfile,
            ManagementMode::CorporateWorkProfile,
        ] {
            let p = preview(Platform::Android, Some(mode), "14");
            assert!(p.supported && p.personal_data_stays);
            assert_eq!(p.column_title, "Android work profile");
            assert_eq!(p.rows.len(), 1);
            assert!(p.rows[0].company_data_removed);
            assert!(p.summary.contains("work profile"));
            assert!(
                p.notes
                    .contains(&"Factory reset is not supported for Android work profiles.")
            );
        }
    }

    #[test]
    fn android_kiosk_and_fully_managed_cannot_be_retired() {
        for (mode, word) in [
            (ManagementMode::Dedicated, "kiosk"),
            (ManagementMode::FullyManaged, "fully managed"),
        ] {
            let p = preview(Platform::Android, Some(mode), "14");
            assert!(!p.supported && !p.personal_data_stays);
            assert!(p.rows.is_empty());
            assert!(p.summary.contains(word), "{}", p.summary);
            assert!(p.notes.iter().any(|n| n.contains("factory reset")));
        }
    }

    #[test]
    fn macos_column() {
        let p = preview(Platform::MacOs, None, "14.5");
        assert!(p.supported);
        assert_eq!(p.rows.len(), 6);
        assert_eq!(
            effect(&p, "Certificate profile settings").0,
            "Certificates deployed through MDM are removed and revoked."
        );
        assert_eq!(
            effect(&p, "Outlook"),
            (
                "If conditional access is enabled, the device no longer receives new email.",
                false
            )
        );
        assert!(
            p.rows
                .iter()
                .all(|r| r.data_type != "Email" && r.data_type != "Contacts")
        );
    }

    #[test]
    fn windows_columns() {
        let w81 = preview(Platform::Windows, Some(ManagementMode::Desktop), "6.3.9600");
        let rt = preview(Platform::Windows, Some(ManagementMode::Desktop), "6.2.9200");
        let phone = preview(
            Platform::Windows,
            Some(ManagementMode::Mobile),
            "8.10.14219",
        );
        let w10 = preview(
            Platform::Windows,
            Some(ManagementMode::Desktop),
            "10.0.19045",
        );
        for p in [&w81, &rt, &phone, &w10] {
            assert!(p.supported && p.personal_data_stays);
            assert_eq!(p.rows.len(), 6);
            assert!(!effect(p, "Settings").1);
        }
        let apps = "Company apps and associated data installed through management";
        assert!(effect(&w81, apps).0.contains("EFS"));
        assert_eq!(effect(&rt, apps), ("Company apps are not removed.", false));
        assert!(effect(&phone, apps).0.contains("company portal"));
        assert!(effect(&w10, apps).0.contains("Office 365 ProPlus"));
        assert_eq!(
            effect(&phone, "Wi-Fi and VPN profile settings"),
            ("Not supported.", false)
        );
        assert_eq!(
            effect(&phone, "Certificate profile settings"),
            ("Not supported.", false)
        );
        assert_eq!(effect(&rt, "Email"), ("Not supported.", false));
        assert!(
            effect(&w10, "Email")
                .0
                .contains("email accounts provisioned")
        );
        assert_eq!(effect(&w81, "Azure AD unjoin"), ("No.", false));
        assert_eq!(effect(&rt, "Azure AD unjoin"), ("No.", false));
        assert_eq!(
            effect(&phone, "Azure AD unjoin"),
            ("The Azure AD record is removed.", true)
        );
        assert!(
            effect(&w10, "Azure AD unjoin")
                .0
                .starts_with("Not applicable.")
        );
    }

    #[test]
    fn directory_joined_windows_10_cannot_be_retired() {
        let joined = retire_preview(
            Platform::Windows,
            Some(ManagementMode::Desktop),
            Ownership::Company,
            Some(&v("10.0.19045")),
            None,
            true,
        );
        assert_eq!(joined.column, RetireColumn::Windows10);
        assert!(!joined.supported && joined.rows.is_empty());
        assert!(joined.summary.contains("Azure AD"));
        // Windows 8.1 has no such join; its column applies.
        let older = retire_preview(
            Platform::Windows,
            Some(ManagementMode::Desktop),
            Ownership::Company,
            Some(&v("6.3.9600")),
            None,
            true,
        );
        assert!(older.supported);
        // Elsewhere the flag means nothing.
        let phone = retire_preview(Platform::Ios, None, Ownership::Company, None, None, true);
        assert!(phone.supported);
    }

    #[test]
    fn ownership_picks_the_advice() {
        let personal = retire_preview(Platform::Ios, None, Ownership::Personal, None, None, false);
        let company = retire_preview(Platform::Ios, None, Ownership::Company, None, None, false);
        assert_eq!(personal.notes, [PERSONAL_DEVICE_NOTE]);
        assert_eq!(company.notes, [COMPANY_DEVICE_NOTE]);
        assert_eq!(personal.rows, company.rows);
    }

    /// The preview and the capability check agree on whether retire is possible.
    #[test]
    fn preview_agrees_with_the_capability_check() {
        let versions = [
            "6.2.9200",
            "6.3.9600",
            "8.1",
            "8.0.10501",
            "10.0.15063",
            "10.0.19045",
            "7.0",
            "14",
            "17.4",
        ];
        for &platform in Platform::ALL {
            let modes = std::iter::once(None).chain(
                ManagementMode::ALL
                    .iter()
                    .copied()
                    .filter(|m| m.applies_to(platform))
                    .map(Some),
            );
            for mode in modes {
                for version in versions.iter().map(|t| Some(v(t))).chain([None]) {
                    for directory_joined in [false, true] {
                        let p = retire_preview(
                            platform,
                            mode,
                            Ownership::Personal,
                            version.as_ref(),
                            None,
                            directory_joined,
                        );
                        let device = DeviceContext {
                            platform,
                            os_version: version,
                            ownership: Ownership::Personal,
                            management_mode: mode,
                            management_state: ManagementState::Managed,
                            directory_joined,
                            is_passcode_present: Some(true),
                            user_licensed: Some(true),
                        };
                        let caller = CallerContext {
                            authority: MdmAuthority::Standalone,
                            role: Role::Admin,
                            self_service: false,
                        };
                        let allowed = check(
                            ActionKind::Retire,
                            &ActionOptions::default(),
                            &device,
                            &caller,
                        )
                        .is_ok();
                        assert_eq!(p.supported, allowed, "{device:?}");
                        assert_eq!(p.supported, !p.rows.is_empty(), "{device:?}");
                        assert!(!p.summary.is_empty() && !p.notes.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn retire_preview_serializes_in_camel_case() {
        let p = preview(Platform::MacOs, None, "14.5");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["column"], "macOs");
        assert_eq!(json["columnTitle"], "macOS");
        assert_eq!(json["supported"], true);
        assert_eq!(json["personalDataStays"], true);
        assert_eq!(json["rows"][0]["dataType"], "Settings");
        assert_eq!(json["rows"][0]["companyDataRemoved"], false);
        assert!(json["rows"][0]["effect"].is_string());
        assert!(json["notes"].is_array());
    }

    // ---- factory reset ----

    #[test]
    fn wipe_without_keeping_wipes_everything_everywhere() {
        for &platform in Platform::ALL {
            for version in [None, Some(v("10.0.19045")), Some(v("17.4"))] {
                let p = wipe_preview(platform, version.as_ref(), false);
                assert!(p.supported && !p.keeps_enrollment_and_user_data);
                assert!(!p.stays_under_management);
                assert!(p.kept.is_empty());
                assert_eq!(
                    p.lost,
                    ["User accounts", "Data", "MDM policies", "Settings"]
                );
                assert!(p.summary.contains("removed from management"));
            }
        }
    }

    #[test]
    fn wipe_keeping_enrollment_and_user_data_on_windows_10_1709() {
        for version in ["10.0.16299", "10.0.16299.15", "10.0.19045", "10.0.22631"] {
            let p = wipe_preview(Platform::Windows, Some(&v(version)), true);
            assert!(
                p.supported && p.keeps_enrollment_and_user_data && p.stays_under_management,
                "{version}"
            );
            assert_eq!(
                p.kept,
                [
                    "User accounts associated with the device",
                    "Machine state (domain join, Azure AD join)",
                    "Mobile device management (MDM) enrollment",
                    "OEM-installed apps (Store and Win32 apps)",
                    "User profile",
                    "User data outside the user profile",
                    "User autologon",
                ]
            );
            assert_eq!(
                p.lost,
                [
                    "User files",
                    "User-installed apps (Store and Win32 apps)",
                    "Non-default device settings"
                ]
            );
            assert!(p.summary.starts_with("All MDM policies are wiped."));
        }
    }

    #[test]
    fn wipe_keeping_data_is_not_offered_elsewhere() {
        let cases = [
            (Platform::Windows, Some("10.0.15063")),
            (Platform::Windows, Some("6.3.9600")),
            (Platform::Windows, Some("8.1")),
            (Platform::Windows, None),
            (Platform::Ios, Some("17.4")),
            (Platform::MacOs, Some("14.5")),
            (Platform::Android, Some("14")),
            // A version number is not a platform.
            (Platform::Android, Some("10.0.16299")),
        ];
        for (platform, version) in cases {
            let version = version.map(v);
            let p = wipe_preview(platform, version.as_ref(), true);
            assert!(
                !p.supported && !p.stays_under_management,
                "{platform} {version:?}"
            );
            assert!(p.kept.is_empty() && p.lost.is_empty());
            assert!(p.summary.contains("1709"));
        }
    }

    #[test]
    fn wipe_preview_serializes_in_camel_case() {
        let json = serde_json::to_value(wipe_preview(
            Platform::Windows,
            Some(&v("10.0.19045")),
            true,
        ))
        .unwrap();
        assert_eq!(json["keepsEnrollmentAndUserData"], true);
        assert_eq!(json["staysUnderManagement"], true);
        assert_eq!(json["kept"].as_array().unwrap().len(), 7);
        assert_eq!(json["lost"].as_array().unwrap().len(), 3);
    }
}
