//! What a managed device is: who owns it, how it is managed, and where it stands.

use crate::platform::Platform;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Who owns the device (Graph's `managedDeviceOwnerType`).
    pub enum Ownership {
        Company => "company",
        Personal => "personal",
    }
}

wire_enum! {
    /// How a device is managed, where the platform has such a choice: the four Android
    /// Enterprise modes and the two Windows editions. Apple devices have none.
    pub enum ManagementMode {
        /// Android: a company device managed as a whole.
        FullyManaged => "fullyManaged",
        /// Android: a personal device with a separate work profile.
        WorkProfile => "workProfile",
        /// Android: a company device with a work profile and room for personal use.
        CorporateWorkProfile => "corporateWorkProfile",
        /// Android: a single-purpose (kiosk) company device with no user.
        Dedicated => "dedicated",
        /// Windows desktop editions (Home, Pro, Enterprise, Education).
        Desktop => "desktop",
        /// Windows 10 Mobile and Windows Phone.
        Mobile => "mobile",
    }
}

impl ManagementMode {
    /// Whether a device of `platform` can be managed in this mode.
    pub const fn applies_to(self, platform: Platform) -> bool {
        match self {
            Self::FullyManaged
            | Self::WorkProfile
            | Self::CorporateWorkProfile
            | Self::Dedicated => {
                matches!(platform, Platform::Android)
            }
            Self::Desktop | Self::Mobile => matches!(platform, Platform::Windows),
        }
    }

    /// The ownership a mode implies, where it implies one (a personal work profile is the
    /// only personal Android mode).
    pub const fn implied_ownership(self) -> Option<crate::device::Ownership> {
        match self {
            Self::WorkProfile => Some(Ownership::Personal),
            Self::FullyManaged | Self::CorporateWorkProfile | Self::Dedicated => {
                Some(Ownership::Company)
            }
            Self::Desktop | Self::Mobile => None,
        }
    }
}

/// Whether `mode` is a valid management mode for `platform`: Android and Windows devices
/// need one, Apple devices have none.
pub fn mode_fits_platform(platform: Platform, mode: Option<ManagementMode>) -> bool {
    match mode {
        Some(mode) => mode.applies_to(platform),
        None => platform.is_apple(),
    }
}

wire_enum! {
    /// Where a device stands in its management life cycle (Graph's `managementState`,
    /// with the end states this server keeps visible until the record is removed).
    pub enum ManagementState {
        Managed => "managed",
        RetirePending => "retirePending",
        RetireIssued => "retireIssued",
        RetireFailed => "retireFailed",
        RetireCanceled => "retireCanceled",
        WipePending => "wipePending",
        WipeIssued => "wipeIssued",
        WipeFailed => "wipeFailed",
        WipeCanceled => "wipeCanceled",
        DeletePending => "deletePending",
        /// Company data removed; the device left management, personal data stayed.
        Retired => "retired",
        /// Factory reset; the device left management.
        Wiped => "wiped",
        /// Management ended from the device or by a removed licence.
        Unenrolled => "unenrolled",
    }
}

impl ManagementState {
    /// The device is still under management: actions can reach it.
    pub const fn is_managed(self) -> bool {
        !matches!(self, Self::Retired | Self::Wiped | Self::Unenrolled)
    }

    /// The device holds a slot of its user's device limit. Retired, wiped and unenrolled
    /// devices have given theirs back.
    pub const fn counts_toward_device_limit(self) -> bool {
        self.is_managed()
    }

    /// A retire, wipe or delete is under way: a second one would be pointless.
    pub const fn is_leaving(self) -> bool {
        matches!(
            self,
            Self::RetirePending
                | Self::RetireIssued
                | Self::WipePending
                | Self::WipeIssued
                | Self::DeletePending
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_fit_their_platforms() {
        assert!(mode_fits_platform(
            Platform::Android,
            Some(ManagementMode::Dedicated)
        ));
        assert!(mode_fits_platform(
            Platform::Windows,
            Some(ManagementMode::Mobile)
        ));
        assert!(mode_fits_platform(Platform::Ios, None));
        assert!(!mode_fits_platform(Platform::Android, None));
        assert!(!mode_fits_platform(
            Platform::MacOs,
            Some(ManagementMode::Desktop)
        ));
        assert!(!mode_fits_platform(
            Platform::Windows,
            Some(ManagementMode::WorkProfile)
        ));
    }

    #[test]
    fn end_states_free_the_slot() {
        for state in ManagementState::ALL {
            let ended = matches!(
                state,
                ManagementState::Retired | ManagementState::Wiped | ManagementState::Unenrolled
            );
            assert_eq!(state.counts_toward_device_limit(), !ended, "{state}");
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(ManagementState::DeletePending.as_str(), "deletePending");
        assert_eq!(
            "corporateworkprofile".parse::<ManagementMode>().unwrap(),
            ManagementMode::CorporateWorkProfile
        );
        assert_eq!(
            ManagementMode::WorkProfile.implied_ownership(),
            Some(Ownership::Personal)
        );
    }
}
