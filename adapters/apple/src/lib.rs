#![doc = include_str!("../README.md")]

pub mod actions;
pub mod apns;
pub mod auth;
pub mod batch;
pub mod config;
pub mod der;
pub mod error;
pub mod followup;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod profile;
pub mod protocol;
pub mod push;
pub mod scep;
pub mod seen;
pub mod service;
pub mod state;
pub mod store;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use mdm_api::Service;
use mdm_api::internal::adapter::{CancelAction, DeliverAction, DeviceRemoved};
use mdm_runtime::group_commit::GroupCommit;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::{Context, Module};
use openssl::x509::X509;

pub use config::Config;
pub use http::api_routes as api;
pub use service::Apple;

/// The Apple adapter as a module of a process, or why its configuration cannot work (an
/// unreadable CA or signing file). Also answers the adapter itself (tests and benchmarks
/// look inside).
pub fn module(context: &Context, config: &Config) -> anyhow::Result<(Module, Arc<Apple>)> {
    config.validate()?;
    let mut enterprise = Vec::new();
    for ca in &config.trusted_identity_cas {
        let pem = std::fs::read(&ca.file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.file.display()))?;
        for cert in X509::stack_from_pem(&pem)? {
            enterprise.push((cert, ca.tenant_id));
        }
    }
    let apns_roots = match &config.apns_ca_file {
        Some(file) => X509::stack_from_pem(
            &std::fs::read(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
        )?,
        None => Vec::new(),
    };
    let header = config
        .trust_forwarded_client_cert
        .then(|| {
            ::http::HeaderName::from_bytes(
                config.client_cert_header.to_ascii_lowercase().as_bytes(),
            )
        })
        .transpose()?;
    let signer = match (
        &config.profile_signing_cert_file,
        &config.profile_signing_key_file,
    ) {
        (Some(cert), Some(key)) => Some(profile::ProfileSigner::load(cert, key)?),
        _ => None,
    };
    let group = GroupCommit::start(
        context.store.clone(),
        config.batch_max,
        config.batch_max * 16,
    );
    let batch = batch::Batcher::start(group.clone(), context.clock.clone(), config.batch_max);
    let (pushes, push_requests) = tokio::sync::mpsc::channel(65_536);
    let apns = Arc::new(apns::ApnsClient::new(
        &config.apns_url,
        apns_roots,
        config.apns_connections,
        Duration::from_secs(config.apns_timeout_secs.max(1)),
    )?);
    let apple = Arc::new(Apple {
        config: Arc::new(config.clone()),
        store: context.store.clone(),
        clock: context.clock.clone(),
        secrets: context.secrets.clone(),
        outbox: context.outbox(Service::Apple),
        public_url: context.public_url.clone(),
        auth: auth::Authenticator::new(context.clock.clone(), header, enterprise)?,
        channels: state::Channels::default(),
        batch,
        group,
        upstream: upstream::Upstream::start(context.client.clone()),
        pushes,
        seen: seen::Seen::default(),
        metrics: metrics::AppleMetrics::new(context.metrics.registry())?,
        active: followup::ActiveTracker::default(),
        ra: tokio::sync::OnceCell::new(),
        signer,
    });
    let data = web::Data::new(apple.clone());
    let public_data = data.clone();
    let (a1, a2, a3) = (apple.clone(), apple.clone(), apple.clone());
    let inbox = Inbox::new(Service::Apple)
        .on::<DeliverAction, _>(move |c, d, m| actions::deliver(&a1, c, d, m))
        .on::<CancelAction, _>(move |c, d, m| actions::cancel(&a2, c, d, m))
        .on::<DeviceRemoved, _>(move |c, d, m| actions::removed(&a3, c, d, m));
    let (t1, t2, t3, t4) = (apple.clone(), apple.clone(), apple.clone(), apple.clone());
    let module = Module::new(Service::Apple)
        .api(http::api_routes)
        .public(move |cfg| {
            cfg.app_data(public_data.clone());
            http::public_routes(cfg);
        })
        .internal(move |cfg| {
            cfg.app_data(data.clone());
            http::internal_routes(cfg);
        })
        .inbox(inbox)
        .job(jobs::expiry(apple.clone()))
        .job(jobs::repush(apple.clone()))
        .job(jobs::inventory(apple.clone()))
        .job(jobs::retention(apple.clone()))
        .task(move |shutdown| {
            Box::pin(async move {
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = push::run(t1, apns, push_requests) => {}
                }
            })
        })
        .task(move |shutdown| Box::pin(jobs::flush_seen(t2, shutdown)))
        .task(move |shutdown| Box::pin(jobs::flush_active(t3, shutdown)))
        .task(move |shutdown| Box::pin(jobs::fetch_ca(t4, shutdown)));
    Ok((module, apple))
}
