//! The diesel schema of every table, one file per owning crate. A table belongs to
//! exactly one service or adapter (its name's prefix says which); no other crate reads or
//! writes it. `rt_` tables are mdm-runtime's infrastructure (outbox, inbox, leases,
//! idempotency) and exist once per database.
//!
//! The `schema_matches_migrations` test compares these files with the migrated databases.

mod android;
mod apple;
mod dispatch;
mod enrollment;
mod inventory;
mod runtime;
mod windows;

// Until every owner has its tables, some of these re-export nothing.
#[allow(unused_imports)]
pub use {android::*, apple::*, dispatch::*, enrollment::*, inventory::*, runtime::*, windows::*};
