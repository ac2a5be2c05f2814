//! Row types of the tables in [`crate::schema`], one module per owning crate.

pub mod android;
pub mod apple;
pub mod dispatch;
pub mod enrollment;
pub mod inventory;
pub mod runtime;
pub mod windows;
