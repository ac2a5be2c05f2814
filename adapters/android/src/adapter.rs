//! What every part of the adapter shares: configuration, the AMAPI client, the tenants'
//! bindings, the store, the clock, the outbox, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::AndroidBinding;
use mdm_api::internal::inventory::{DeviceUnenrolled, UnenrollReason};
use mdm_api::{ClientError, InternalClient, Service};
use mdm_domain::{ActionId, ActionState, DeviceId, TenantId};
use mdm_runtime::crypto::SecretBox;
use mdm_runtime::outbox::Outbox;
use mdm_runtime::{Context, SharedClock};
use mdm_store::{DbConnection, Store, StoreError};
use prometheus::{IntCounterVec, Opts};
use tokio::sync::Notify;

use crate::amapi::{Account, Amapi};
use crate::config::Config;
use crate::error::Error;
use crate::pubsub::Jwks;

/// A tenant's binding as the enrollment service holds it.
#[derive(Debug, Clone)]
pub struct Binding {
    pub account: Account,
}

/// The adapter's shared state.
pub struct Adapter {
    pub config: Config,
    pub amapi: Amapi,
    pub store: Store,
    pub clock: SharedClock,
    pub client: InternalClient,
    pub outbox: Outbox,
    pub secrets: SecretBox,
    /// Wakes the worker when work arrives.
    pub wake: Arc<Notify>,
    pub metrics: AndroidMetrics,
    pub jwks: Jwks,
    bindings: Mutex<HashMap<TenantId, (Instant, Binding)>>,
}

/// The adapter's own metrics.
#[derive(Clone)]
pub struct AndroidMetrics {
    /// `mdm_android_notifications_total{type,outcome}`.
    pub notifications: IntCounterVec,
    /// `mdm_android_api_calls_total{call,outcome}`.
    pub api_calls: IntCounterVec,
}

impl AndroidMetrics {
    fn register(context: &Context) -> Result<Self, prometheus::Error> {
        let notifications = IntCounterVec::new(
            Opts::new(
                "android_notifications_total",
                "Pub/Sub notifications received, by type and outcome",
            ),
            &["type", "outcome"],
        )?;
        let api_calls = IntCounterVec::new(
            Opts::new(
                "android_api_calls_total",
                "AMAPI calls made by the worker, by call and outcome",
            ),
            &["call", "outcome"],
        )?;
        // A second module in the same process (tests) registers again: keep going.
        let _ = context
            .metrics
            .registry()
            .register(Box::new(notifications.clone()));
        let _ = context
            .metrics
            .registry()
            .register(Box::new(api_calls.clone()));
        Ok(Self {
            notifications,
            api_calls,
        })
    }
}

impl Adapter {
    pub fn new(context: &Context, config: Config, amapi: Amapi) -> Result<Self, prometheus::Error> {
        let jwks = Jwks::new(
            config.pubsub.oidc_jwks_url.clone(),
            Duration::from_secs(config.pubsub.jwks_cache_secs),
        );
        Ok(Self {
            amapi,
            store: context.store.clone(),
            clock: context.clock.clone(),
            client: context.client.clone(),
            outbox: context.outbox(Service::Android),
            secrets: context.secrets.clone(),
            wake: Arc::new(Notify::new()),
            metrics: AndroidMetrics::register(context)?,
            jwks,
            bindings: Mutex::new(HashMap::new()),
            config,
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The tenant's binding (enterprise and service account), cached briefly.
    pub async fn binding(&self, tenant: TenantId) -> Result<Binding, Error> {
        let ttl = Duration::from_secs(self.config.binding_cache_secs);
        if let Ok(cache) = self.bindings.lock()
            && let Some((at, binding)) = cache.get(&tenant)
            && at.elapsed() < ttl
        {
            return Ok(binding.clone());
        }
        let answer: Result<AndroidBinding, ClientError> = self
            .client
            .get(Service::Enrollment, &format!("/tenants/{tenant}/android"))
            .await;
        let binding = match answer {
            Ok(binding) => binding,
            Err(ClientError::Status { status: 404, .. }) => return Err(Error::NotBound),
            Err(error) => return Err(error.into()),
        };
        let binding = Binding {
            account: Account::parse(&binding.service_account_key)?,
        };
        if let Ok(mut cache) = self.bindings.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(tenant, (Instant::now(), binding.clone()));
        }
        Ok(binding)
    }

    pub fn forget_binding(&self, tenant: TenantId) {
        if let Ok(mut cache) = self.bindings.lock() {
            cache.remove(&tenant);
        }
    }
}

/// Reports an action's new state to dispatch (in the caller's transaction).
pub fn report(
    outbox: &Outbox,
    c: &mut DbConnection,
    action: ActionId,
    device: DeviceId,
    state: ActionState,
    error: Option<(&str, &str)>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let message = ActionReport {
        action_id: action,
        device_id: device,
        state,
        error_code: error.map(|(code, _)| code.to_owned()),
        error_detail: error.map(|(_, detail)| detail.to_owned()),
        at,
    };
    outbox.enqueue(
        c,
        &format!("android:action:{action}:{state}"),
        Some(&device.to_string()),
        &message,
    )
}

/// Tells inventory that a device left management from Google's side.
pub fn unenrolled(
    outbox: &Outbox,
    c: &mut DbConnection,
    device: DeviceId,
    reason: UnenrollReason,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    outbox.enqueue(
        c,
        &format!("android:unenrolled:{device}"),
        Some(&device.to_string()),
        &DeviceUnenrolled {
            device_id: device,
            reason,
            at,
        },
    )
}
