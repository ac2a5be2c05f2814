#![doc = include_str!("../README.md")]

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod group_commit;
pub mod health;
pub mod idempotency;
pub mod inbox;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod server;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

pub use auth::Caller;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::ApiError;
pub use openapi::{ApiRoutes, ApiRoutesFn};
pub use server::{Application, Context, Module};
pub use shutdown::Shutdown;
