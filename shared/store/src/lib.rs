#![doc = include_str!("../README.md")]

mod connection;
mod error;
pub mod migrations;
pub mod models;
pub mod schema;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;

pub use connection::{Backend, DatabaseUrl, DbConnection, MultiBackend, UnsupportedUrl};
pub use error::StoreError;
pub use store::{PoolOptions, PoolUsage, Store};
pub use time::{from_millis, to_millis};
