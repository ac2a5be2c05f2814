#![doc = include_str!("../README.md")]

mod autopilot;
pub mod cleanup;
mod config;
mod devices;
mod directory;
mod error;
mod groups;
mod ids;
mod messages;
mod metrics;
mod removal;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use mdm_api::Service;
use mdm_api::cache::PolicyCache;
use mdm_runtime::{Context, Module};

pub use config::Config;
pub use error::Error;
pub use routes::api;

use crate::metrics::InventoryMetrics;
use crate::routes::State;

/// The inventory service as a module of a process.
pub fn module(context: &Context, config: &Config) -> Module {
    let state = Arc::new(State {
        config: config.clone(),
        store: context.store.clone(),
        clock: context.clock.clone(),
        client: context.client.clone(),
        outbox: context.outbox(Service::Inventory),
        policies: PolicyCache::new(
            context.client.clone(),
            Duration::from_secs(config.policy_cache_secs),
        ),
        metrics: InventoryMetrics::register(&context.metrics),
    });
    Module::new(Service::Inventory)
        .api(routes::api)
        .public(routes::public(state.clone()))
        .internal(routes::internal(state.clone()))
        .inbox(messages::inbox(state.clone()))
        .job(cleanup::inactivity_job(state.clone()))
        .job(cleanup::certificate_job(state))
}
