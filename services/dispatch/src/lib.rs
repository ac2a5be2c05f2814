#![doc = include_str!("../README.md")]

mod actions;
mod audit_trail;
pub mod bulk;
mod config;
pub mod dispatcher;
mod error;
pub mod maintenance;
mod messages;
mod pins;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use mdm_api::Service;
use mdm_api::cache::PolicyCache;
use mdm_runtime::{Context, Module};
use prometheus::{IntCounterVec, Opts};

pub use config::{Config, ExpiryConfig};
pub use error::Error;
pub use routes::api;

use crate::dispatcher::Dispatcher;

/// The dispatch service as a module of a process.
pub fn module(context: &Context, config: &Config) -> Module {
    let requests = IntCounterVec::new(
        Opts::new(
            "action_requests_total",
            "Device actions asked, by kind and result (accepted, refused)",
        ),
        &["kind", "result"],
    )
    .unwrap_or_else(|_| unreachable!("the metric's name and labels are valid"));
    if let Err(error) = context
        .metrics
        .registry()
        .register(Box::new(requests.clone()))
    {
        tracing::warn!(%error, "action metrics not registered");
    }
    let dispatcher = Arc::new(Dispatcher {
        config: config.clone(),
        store: context.store.clone(),
        clock: context.clock.clone(),
        client: context.client.clone(),
        policy: PolicyCache::new(
            context.client.clone(),
            Duration::from_secs(config.policy_cache_secs),
        ),
        secrets: context.secrets.clone(),
        outbox: context.outbox(Service::Dispatch),
        requests,
        bulk_wake: Arc::new(tokio::sync::Notify::new()),
    });
    let worker = dispatcher.clone();
    let leases = context.leases.clone();
    Module::new(Service::Dispatch)
        .api(routes::api)
        .public(routes::public(dispatcher.clone()))
        .internal(routes::internal(dispatcher.clone()))
        .inbox(messages::inbox(dispatcher.clone()))
        .job(maintenance::job(dispatcher))
        .task(move |shutdown| Box::pin(bulk::run_worker(worker, leases, shutdown)))
}
