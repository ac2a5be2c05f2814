//! Roles of API callers and what each may do.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// The role an API token carries.
    pub enum Role {
        /// Runs the server: creates tenants and tokens, across tenants.
        Operator => "operator",
        /// Manages one tenant.
        Admin => "admin",
        /// Reads a tenant and takes the non-destructive device actions.
        Helpdesk => "helpdesk",
        /// Reads a tenant.
        Reader => "reader",
        /// An on-premises configuration manager acting on devices under hybrid authority.
        Connector => "connector",
        /// A directory user acting on their own devices (self-service).
        User => "user",
    }
}

wire_enum! {
    /// Something a caller may be allowed to do.
    pub enum Permission {
        ManageTenants => "manageTenants",
        ManageTokens => "manageTokens",
        /// Read devices, users, settings, actions and audit.
        ReadTenant => "readTenant",
        /// Change tenant settings: authority, prerequisites, restrictions, clean-up.
        ManageSettings => "manageSettings",
        ManageUsers => "manageUsers",
        /// Lock, reset passcode, reboot, sync.
        ProtectDevices => "protectDevices",
        /// Wipe, retire, delete, directory and Autopilot removals.
        RemoveDevices => "removeDevices",
        /// Read a Mac's unlock PIN.
        ReadUnlockPin => "readUnlockPin",
        /// Act on the caller's own devices.
        SelfService => "selfService",
    }
}

impl Role {
    /// The role's permissions. Whether a device action is allowed under the tenant's MDM
    /// authority is a separate rule (hybrid makes admins read-only for device actions).
    pub const fn can(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Operator => !matches!(permission, SelfService),
            Self::Admin => !matches!(permission, ManageTenants | SelfService),
            Self::Helpdesk => matches!(permission, ReadTenant | ProtectDevices | ReadUnlockPin),
            Self::Reader => matches!(permission, ReadTenant),
            Self::Connector => {
                matches!(
                    permission,
                    ReadTenant | ProtectDevices | RemoveDevices | ReadUnlockPin
                )
            }
            Self::User => matches!(permission, SelfService),
        }
    }

    /// Roles whose tokens are bound to one tenant. Operator tokens are not.
    pub const fn is_tenant_scoped(self) -> bool {
        !matches!(self, Self::Operator)
    }

    /// Roles that a token holder of `self` may create tokens for.
    pub fn may_grant(self, granted: Role) -> bool {
        match self {
            Self::Operator => true,
            Self::Admin => !matches!(granted, Self::Operator),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operators_manage_tenants() {
        for role in Role::ALL {
            assert_eq!(role.can(Permission::ManageTenants), *role == Role::Operator);
        }
    }

    #[test]
    fn readers_only_read() {
        for permission in Permission::ALL {
            assert_eq!(
                Role::Reader.can(*permission),
                *permission == Permission::ReadTenant
            );
        }
    }

    #[test]
    fn helpdesk_cannot_remove_devices() {
        assert!(Role::Helpdesk.can(Permission::ProtectDevices));
        assert!(!Role::Helpdesk.can(Permission::RemoveDevices));
        assert!(!Role::Helpdesk.can(Permission::ManageSettings));
    }

    #[test]
    fn admins_cannot_mint_operators() {
        assert!(!Role::Admin.may_grant(Role::Operator));
        assert!(Role::Admin.may_grant(Role::Helpdesk));
        assert!(!Role::Helpdesk.may_grant(Role::Reader));
        assert!(Role::Operator.may_grant(Role::Operator));
    }
}
