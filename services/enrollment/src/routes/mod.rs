//! HTTP routes of the enrollment service.

mod internal;
mod settings;
mod tenants;
mod users;

use std::sync::Arc;

use actix_web::web;
use mdm_api::InternalClient;
use mdm_api::internal::dispatch::AuditEvent;
use mdm_api::internal::enrollment::{POLICY_CONSUMERS, PolicyChanged};
use mdm_domain::TenantId;
use mdm_runtime::crypto::SecretBox;
use mdm_runtime::outbox::Outbox;
use mdm_runtime::{ApiRoutes, SharedClock, audit};
use mdm_store::{DbConnection, Store, StoreError};
use prometheus::IntGaugeVec;

use crate::ca::CaCache;
use crate::config::Config;

/// What the handlers share.
pub struct State {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub client: InternalClient,
    pub secrets: SecretBox,
    pub outbox: Outbox,
    pub ca: CaCache,
    pub public_url: String,
    /// `mdm_apple_push_certificate_days_to_expiry{tenant}`.
    pub push_certificate_days: IntGaugeVec,
}

impl State {
    /// Tells the services that cache tenant policy that it changed.
    pub fn policy_changed(
        &self,
        conn: &mut DbConnection,
        tenant: TenantId,
    ) -> Result<(), StoreError> {
        let change = uuid::Uuid::now_v7();
        for consumer in POLICY_CONSUMERS {
            let key = format!("enrollment:policy-changed:{change}:{consumer}");
            let message = PolicyChanged {
                tenant_id: tenant,
                consumer,
            };
            self.outbox
                .enqueue(conn, &key, Some(&tenant.to_string()), &message)?;
        }
        Ok(())
    }

    pub fn audit(&self, conn: &mut DbConnection, event: &AuditEvent) -> Result<(), StoreError> {
        audit::record(&self.outbox, conn, event)
    }
}

pub type Shared = web::Data<Arc<State>>;

/// The admin API's routes.
pub fn api(routes: &mut ApiRoutes) {
    tenants::routes(routes);
    settings::routes(routes);
    users::routes(routes);
}

/// The state the handlers share, and the routes outside the admin API.
pub fn public(state: Arc<State>) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(state.clone()));
        settings::browser_routes(cfg);
    }
}

pub fn internal(state: Arc<State>) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(state.clone()));
        internal::routes(cfg);
    }
}
