#![doc = include_str!("../README.md")]

mod background;
pub mod clientcert;
pub mod commands;
pub mod config;
pub mod csr;
pub mod db;
mod enroll;
mod http;
mod inbox;
pub mod inventory;
pub mod metrics;
pub mod provisioning;
pub mod push;
pub mod session;
pub mod soap;
pub mod state;
pub mod syncml;
pub mod xml;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdm_api::{InternalClient, Service};
use mdm_domain::DeviceId;
use mdm_runtime::crypto::SecretBox;
use mdm_runtime::group_commit::GroupCommit;
use mdm_runtime::jobs::Job;
use mdm_runtime::outbox::Outbox;
use mdm_runtime::{Context, Module, SharedClock};
use mdm_store::{Store, StoreError};

pub use config::Config;
pub use http::{AUTHENTICATE, DISCOVERY, ENROLLMENT, MANAGEMENT, POLICY};

/// The SecretBox purpose of command results kept sealed (the new PIN of LockAndResetPIN).
pub const RESULT_PURPOSE: &str = "windows-command-result";

/// Where devices reach the adapter.
#[derive(Debug, Clone)]
pub struct Urls {
    pub discovery: String,
    pub policy: String,
    pub enrollment: String,
    pub authenticate: String,
    pub management: String,
}

impl Urls {
    pub fn new(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            discovery: format!("{base}{DISCOVERY}"),
            policy: format!("{base}{POLICY}"),
            enrollment: format!("{base}{ENROLLMENT}"),
            authenticate: format!("{base}{AUTHENTICATE}"),
            management: format!("{base}{MANAGEMENT}"),
        }
    }
}

/// The adapter's shared state.
pub struct Adapter {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) clock: SharedClock,
    pub(crate) client: InternalClient,
    pub(crate) secrets: SecretBox,
    pub(crate) outbox: Outbox,
    pub(crate) recorder: session::Recorder,
    pub(crate) index: state::Index,
    pub(crate) sessions: state::Sessions,
    pub(crate) seen: Mutex<HashMap<DeviceId, i64>>,
    pub(crate) push: Option<push::Push>,
    pub(crate) limits: xml::Limits,
    pub(crate) urls: Urls,
    pub metrics: metrics::WindowsMetrics,
}

impl Adapter {
    /// Builds the adapter's state; must run inside the tokio runtime (group commit starts
    /// its writer task).
    pub fn new(context: &Context, config: &Config) -> Result<Self, prometheus::Error> {
        let push = match push::Push::from_config(config, context.clock.clone()) {
            Ok(push) => push,
            Err(error) => {
                tracing::error!(%error, "WNS push is misconfigured and stays off");
                None
            }
        };
        Ok(Self {
            config: config.clone(),
            store: context.store.clone(),
            clock: context.clock.clone(),
            client: context.client.clone(),
            secrets: context.secrets.clone(),
            outbox: context.outbox(Service::Windows),
            recorder: session::Recorder::start(
                GroupCommit::start(context.store.clone(), 4, 64),
                config.group_commit_batch.max(1),
            ),
            index: state::Index::new(),
            sessions: state::Sessions::new(config.max_sessions, config.session_idle_secs),
            seen: Mutex::new(HashMap::new()),
            push,
            limits: config.xml_limits(),
            urls: Urls::new(&context.public_url),
            metrics: metrics::WindowsMetrics::new(context.metrics.registry())?,
        })
    }

    /// The device a client certificate authenticates: from memory, else from the
    /// database (a device enrolled by another replica, or before a restart). `None` for
    /// an unknown, revoked or expired certificate, or an ended enrollment.
    pub async fn authenticate(
        &self,
        sha256: [u8; 32],
        now: i64,
    ) -> Result<Option<DeviceId>, StoreError> {
        let valid = |device: DeviceId| {
            self.index
                .with(device, |d| {
                    d.certificates
                        .iter()
                        .any(|c| c.sha256 == sha256 && c.not_after > now)
                })
                .unwrap_or(false)
        };
        if let Some(device) = self.index.device_of(&sha256) {
            return Ok(valid(device).then_some(device));
        }
        if self.index.recently_unknown(&sha256, now) {
            return Ok(None);
        }
        let loaded = self
            .store
            .read(move |c| {
                let Some((_, enrollment)) = db::by_certificate(c, &sha256)? else {
                    return Ok::<_, StoreError>(None);
                };
                db::load_device(c, enrollment.device_id)
            })
            .await?;
        let Some(loaded) = loaded else {
            self.index.remember_unknown(sha256, now);
            return Ok(None);
        };
        let device = loaded.enrollment.device_id;
        self.index.insert(state::Device::from_loaded(&loaded));
        Ok(valid(device).then_some(device))
    }

    /// Notes a check-in (sent to inventory with the next flush).
    pub(crate) fn saw(&self, device: DeviceId, now: i64) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(device, now);
    }

    /// Devices held in memory.
    pub fn devices_in_memory(&self) -> usize {
        self.index.len()
    }

    /// Sessions in progress.
    pub fn sessions_in_progress(&self) -> usize {
        self.sessions.len()
    }
}

/// The Windows adapter as a module of a process. Call it inside the tokio runtime.
pub fn module(context: &Context, config: &Config) -> Result<Module, prometheus::Error> {
    let adapter = Arc::new(Adapter::new(context, config)?);
    Ok(module_for(adapter))
}

/// The module around an adapter built beforehand (benchmarks and tests look inside it).
pub fn module_for(adapter: Arc<Adapter>) -> Module {
    let routes = adapter.clone();
    let expiry = adapter.clone();
    let prune = adapter.clone();
    let seen = adapter.clone();
    let sync = adapter.clone();
    let mut module = Module::new(Service::Windows)
        .public(move |cfg| http::routes(cfg, &routes))
        .inbox(inbox::inbox(&adapter))
        .job(Job::new(
            "windows-command-expiry",
            Duration::from_secs(60),
            move || {
                let adapter = expiry.clone();
                async move {
                    let expired = adapter.expire_commands().await?;
                    Ok(format!("{expired} commands expired"))
                }
            },
        ))
        .job(Job::new(
            "windows-command-prune",
            Duration::from_secs(86_400),
            move || {
                let adapter = prune.clone();
                async move {
                    let before = adapter.clock.now().timestamp_millis() - 90 * 86_400_000;
                    let pruned = adapter
                        .store
                        .write(move |c| db::prune_commands(c, before))
                        .await?;
                    Ok(format!("{pruned} finished commands forgotten"))
                }
            },
        ))
        .task(move |shutdown| Box::pin(background::seen_loop(seen, shutdown)));
    if adapter.config.replica_sync_ms > 0 {
        module = module.task(move |shutdown| Box::pin(background::sync_loop(sync, shutdown)));
    }
    module
}
