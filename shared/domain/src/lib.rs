#![doc = include_str!("../README.md")]

pub mod action;
pub mod authority;
pub mod capability;
pub mod device;
pub mod ids;
pub mod platform;
pub mod preview;
pub mod role;
mod wire_enum;

pub use action::{ActionKind, ActionState};
pub use authority::MdmAuthority;
pub use capability::{ActionOptions, CallerContext, DeviceContext, Refusal, RefusalReason};
pub use device::{ManagementMode, ManagementState, Ownership};
pub use ids::{ActionId, BulkJobId, DeviceId, EnrollmentId, InvalidId, TenantId, TokenId, UserId};
pub use platform::{AndroidApiLevel, OsVersion, Platform, PlatformFamily};
pub use preview::{RetireColumn, RetirePreview, RetireRow, WipePreview};
pub use role::{Permission, Role};
pub use wire_enum::UnknownValue;
