#![doc = include_str!("../README.md")]

mod android;
mod apple;
mod ca;
mod config;
mod error;
mod gate;
mod password;
mod policy;
mod routes;
pub mod tenants;
pub mod tokens;
mod users;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use mdm_api::Service;
use mdm_runtime::jobs::Job;
use mdm_runtime::{Context, Module};
use prometheus::{IntGaugeVec, Opts};

pub use config::Config;
pub use error::Error;
pub use routes::api;

use crate::routes::State;

/// The enrollment service as a module of a process.
pub fn module(context: &Context, config: &Config) -> Module {
    let push_certificate_days = IntGaugeVec::new(
        Opts::new(
            "apple_push_certificate_days_to_expiry",
            "Days until each tenant's Apple MDM push certificate expires (negative once expired)",
        ),
        &["tenant"],
    )
    .unwrap_or_else(|_| unreachable!("the metric's name and labels are valid"));
    if let Err(error) = context
        .metrics
        .registry()
        .register(Box::new(push_certificate_days.clone()))
    {
        tracing::warn!(%error, "push certificate metric not registered");
    }
    let state = Arc::new(State {
        config: config.clone(),
        store: context.store.clone(),
        clock: context.clock.clone(),
        client: context.client.clone(),
        secrets: context.secrets.clone(),
        outbox: context.outbox(Service::Enrollment),
        ca: ca::CaCache::default(),
        public_url: context.public_url.clone(),
        push_certificate_days,
    });
    let ca_state = state.clone();
    Module::new(Service::Enrollment)
        .api(routes::api)
        .public(routes::public(state.clone()))
        .internal(routes::internal(state.clone()))
        .job(push_certificate_expiry(state.clone()))
        .task(move |_shutdown| {
            Box::pin(async move {
                // The CA exists from the first start on.
                if let Err(error) = ca_state
                    .ca
                    .get(&ca_state.store, &ca_state.secrets, ca_state.clock.now())
                    .await
                {
                    tracing::error!(%error, "the device-identity CA could not be prepared");
                }
            })
        })
}

/// Keeps the days-to-expiry gauge current and warns about certificates that expire soon.
fn push_certificate_expiry(state: Arc<State>) -> Job {
    Job::new(
        "enrollment-push-certificate-expiry",
        Duration::from_secs(3600),
        move || {
            let state = state.clone();
            async move {
                let now = state.clock.now();
                let rows = state.store.read(apple::all).await?;
                let mut expiring = 0;
                for row in &rows {
                    let wire = apple::to_wire(row, now, state.config.push_certificate_warning_days);
                    state
                        .push_certificate_days
                        .with_label_values(&[&row.tenant_id.to_string()])
                        .set(wire.days_to_expiry);
                    if wire.expiring_soon {
                        expiring += 1;
                        tracing::warn!(tenant = %row.tenant_id, topic = %row.topic, days = wire.days_to_expiry,
                        "the Apple MDM push certificate expires soon: renew it with the same Apple ID");
                    }
                }
                Ok(format!(
                    "{} push certificates checked, {expiring} expiring soon",
                    rows.len()
                ))
            }
        },
    )
}
