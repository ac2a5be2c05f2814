//! The MDM authority of a tenant: who manages its devices, and with which capabilities.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// `mobileDeviceManagementAuthority`. A new tenant starts at `none`.
    pub enum MdmAuthority {
        /// Not set: no device can enrol.
        None => "none",
        /// This server manages devices with every capability.
        Standalone => "standalone",
        /// Devices are managed through an on-premises configuration manager that calls
        /// the API with the `connector` role; admin tokens are read-only for device actions.
        Hybrid => "hybrid",
        /// The basic mobility-and-security subset: retire, wipe and delete only, no macOS.
        Office365 => "office365",
    }
}

impl MdmAuthority {
    /// Whether devices may enrol under this authority at all.
    pub const fn allows_enrollment(self) -> bool {
        !matches!(self, Self::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_none_blocks_enrollment() {
        for authority in MdmAuthority::ALL {
            assert_eq!(
                authority.allows_enrollment(),
                *authority != MdmAuthority::None
            );
        }
    }
}
