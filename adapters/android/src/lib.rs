#![doc = include_str!("../README.md")]

mod actions;
mod adapter;
pub mod amapi;
mod config;
mod devices;
mod error;
mod pubsub;
mod routes;
mod store;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use mdm_api::Service;
use mdm_api::internal::adapter::{CancelAction, DeliverAction, DeviceRemoved};
use mdm_runtime::inbox::Inbox;
use mdm_runtime::jobs::Job;
use mdm_runtime::{Context, Module};

pub use actions::{Plan, plan, temporary_passcode};
pub use config::{Config, PubsubConfig, RetryConfig};
pub use devices::Profile;
pub use error::Error;
pub use pubsub::PATH as PUBSUB_PATH;
pub use routes::{TOKENS_PATH, api_routes as api};

/// A handle on a running adapter, for tests and tools: runs its background work now.
#[derive(Clone)]
pub struct Handle {
    adapter: Arc<adapter::Adapter>,
}

impl Handle {
    /// One pass of the worker (gate, deletions, commands, cancels, polls).
    pub async fn run_worker_once(&self) -> Result<usize, mdm_store::StoreError> {
        worker::run_once(&self.adapter).await
    }

    /// Sends inventory the devices heard from since the last batch.
    pub async fn flush_seen(&self) -> Result<usize, mdm_store::StoreError> {
        worker::flush_seen(&self.adapter).await
    }

    /// Compares every enterprise's devices at Google with ours.
    pub async fn reconcile(&self) -> anyhow::Result<String> {
        worker::reconcile(&self.adapter).await
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        self.adapter.wake.notify_one();
    }
}

/// The Android adapter as a module of a process.
/// The adapter as a module of a process; fails on a configuration it cannot use.
pub fn module(context: &Context, config: &Config) -> anyhow::Result<Module> {
    Ok(module_with_pause(context, config, Arc::new(amapi::Sleep))?.0)
}

pub fn module_with_pause(
    context: &Context,
    config: &Config,
    pause: Arc<dyn amapi::Pause>,
) -> anyhow::Result<(Module, Handle)> {
    let amapi = amapi::Amapi::new(config.client_options(), context.clock.clone(), pause)?;
    if config.pubsub.token.is_none() && config.pubsub.oidc_audience.is_none() {
        tracing::warn!(
            "android.pubsub has neither a token nor an OIDC audience: every push will be refused"
        );
    }
    let adapter = Arc::new(adapter::Adapter::new(context, config.clone(), amapi)?);
    let handle = Handle {
        adapter: adapter.clone(),
    };
    let data = actix_web::web::Data::new(adapter.clone());
    let (public_data, public_adapter) = (data.clone(), adapter.clone());
    let inbox = {
        let (a, b, c) = (adapter.clone(), adapter.clone(), adapter.clone());
        Inbox::new(Service::Android)
            .on::<DeliverAction, _>(move |conn, delivery, message| {
                actions::deliver(&a, conn, delivery, message)
            })
            .on::<CancelAction, _>(move |conn, delivery, message| {
                actions::cancel(&b, conn, delivery, message)
            })
            .on::<DeviceRemoved, _>(move |conn, delivery, message| {
                actions::removed(&c, conn, delivery, message)
            })
    };
    let (seen, reconcile, prune, task) = (
        adapter.clone(),
        adapter.clone(),
        adapter.clone(),
        adapter.clone(),
    );
    let module = Module::new(Service::Android)
        .api(routes::api_routes)
        .public(move |cfg| {
            cfg.app_data(public_data.clone());
            routes::public_routes(cfg, &public_adapter);
        })
        .internal(move |cfg| {
            cfg.app_data(data.clone());
            routes::internal_routes(cfg);
        })
        .inbox(inbox)
        .job(Job::new(
            "android-devices-seen",
            Duration::from_secs(config.seen_flush_secs.max(1)),
            move || {
                let adapter = seen.clone();
                async move {
                    Ok(format!(
                        "{} devices seen",
                        worker::flush_seen(&adapter).await?
                    ))
                }
            },
        ))
        .job(Job::new(
            "android-reconcile",
            Duration::from_secs(config.reconcile_interval_secs.max(60)),
            move || {
                let adapter = reconcile.clone();
                async move { worker::reconcile(&adapter).await }
            },
        ))
        .job(Job::new(
            "android-receipts",
            Duration::from_secs(3600),
            move || {
                let adapter = prune.clone();
                async move { worker::prune_receipts(&adapter).await }
            },
        ))
        .task(move |shutdown| Box::pin(worker::run(task, shutdown)));
    Ok((module, handle))
}
