//! Remote actions and the life cycle of one action on one device.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// What an admin (or a user, on their own device) can ask of a managed device.
    pub enum ActionKind {
        RemoteLock => "remoteLock",
        ResetPasscode => "resetPasscode",
        /// Factory reset.
        Wipe => "wipe",
        /// Remove company data; personal data stays.
        Retire => "retire",
        RebootNow => "rebootNow",
        SyncDevice => "syncDevice",
        /// Remove from management: company data goes at the next check-in, then the record.
        Delete => "delete",
    }
}

impl ActionKind {
    /// Lock and wipe overtake everything else queued for a device.
    pub const fn is_priority(self) -> bool {
        matches!(self, Self::RemoteLock | Self::Wipe)
    }

    /// Actions that end management of the device when they complete.
    pub const fn ends_management(self) -> bool {
        matches!(self, Self::Wipe | Self::Retire | Self::Delete)
    }
}

wire_enum! {
    /// The state of one action (Graph's `actionState`, plus `sent`: the platform adapter
    /// has accepted it but the device has not fetched it yet).
    pub enum ActionState {
        /// Accepted; not yet handed to the platform adapter.
        Pending => "pending",
        /// The adapter has it queued for the device.
        Sent => "sent",
        /// Delivered to the device; waiting for its answer.
        Active => "active",
        Done => "done",
        Failed => "failed",
        /// The device answered that it cannot do this.
        NotSupported => "notSupported",
        Canceled => "canceled",
        /// Not delivered, or not answered, within the action's lifetime.
        Expired => "expired",
    }
}

impl ActionState {
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Done | Self::Failed | Self::NotSupported | Self::Canceled | Self::Expired
        )
    }

    /// The device has not received the action yet, so it can still be canceled (or
    /// superseded by a wipe).
    pub const fn is_cancelable(self) -> bool {
        matches!(self, Self::Pending | Self::Sent)
    }

    /// Whether an action may move from `self` to `next`. States only move forward:
    /// pending → sent → active → an outcome; cancel only before delivery; expiry at any
    /// point before an outcome. A report may skip steps (a device can answer before the
    /// adapter's "sent" arrives), but never go back.
    pub const fn can_become(self, next: Self) -> bool {
        use ActionState::*;
        matches!(
            (self, next),
            (Pending, Sent | Active)
                | (Sent, Active)
                | (
                    Pending | Sent | Active,
                    Done | Failed | NotSupported | Expired
                )
                | (Pending | Sent, Canceled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_move() {
        for from in ActionState::ALL.iter().filter(|s| s.is_terminal()) {
            for to in ActionState::ALL {
                assert!(!from.can_become(*to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn cancel_only_before_delivery() {
        assert!(ActionState::Pending.can_become(ActionState::Canceled));
        assert!(ActionState::Sent.can_become(ActionState::Canceled));
        assert!(!ActionState::Active.can_become(ActionState::Canceled));
    }

    #[test]
    fn never_backwards() {
        assert!(!ActionState::Active.can_become(ActionState::Sent));
        assert!(!ActionState::Sent.can_become(ActionState::Pending));
        assert!(ActionState::Pending.can_become(ActionState::Done));
        assert!(ActionState::Active.can_become(ActionState::Expired));
    }

    #[test]
    fn every_non_terminal_state_can_end() {
        for from in ActionState::ALL.iter().filter(|s| !s.is_terminal()) {
            assert!(from.can_become(ActionState::Expired));
            assert!(from.can_become(ActionState::Failed));
        }
    }

    #[test]
    fn priority_lane() {
        let priority: Vec<_> = ActionKind::ALL.iter().filter(|k| k.is_priority()).collect();
        assert_eq!(priority, [&ActionKind::RemoteLock, &ActionKind::Wipe]);
    }
}
