//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use mdm_store::Store;
use serde_json::json;

use crate::metrics::Metrics;

/// Whether this process should receive traffic.
pub struct Readiness {
    store: Store,
    metrics: Arc<Metrics>,
    shutting_down: AtomicBool,
    /// Set once the database has been seen with no pending migration; migrations never
    /// become pending again while the process runs.
    migrated: AtomicBool,
    last_ready: AtomicBool,
}

/// Why the process is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    ShuttingDown,
    DatabaseUnreachable,
    MigrationsPending,
}

impl NotReady {
    fn as_str(self) -> &'static str {
        match self {
            Self::ShuttingDown => "shutting down",
            Self::DatabaseUnreachable => "database unreachable",
            Self::MigrationsPending => "database migrations pending",
        }
    }
}

const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            shutting_down: AtomicBool::new(false),
            migrated: AtomicBool::new(false),
            last_ready: AtomicBool::new(false),
        })
    }

    /// From now on the process reports itself unready: shutdown has begun.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub async fn check(&self) -> Result<(), NotReady> {
        let result = self.evaluate().await;
        let ready = result.is_ok();
        self.metrics.ready.set(i64::from(ready));
        if self.last_ready.swap(ready, Ordering::SeqCst) != ready {
            self.metrics.readiness_changes.inc();
            match result {
                Ok(()) => tracing::info!("ready"),
                Err(reason) => tracing::warn!(reason = reason.as_str(), "not ready"),
            }
        }
        result
    }

    async fn evaluate(&self) -> Result<(), NotReady> {
        if self.is_shutting_down() {
            return Err(NotReady::ShuttingDown);
        }
        self.store
            .ping(DATABASE_TIMEOUT)
            .await
            .map_err(|_| NotReady::DatabaseUnreachable)?;
        if !self.migrated.load(Ordering::SeqCst) {
            match self.store.pending_migrations().await {
                Ok(pending) if pending.is_empty() => self.migrated.store(true, Ordering::SeqCst),
                Ok(_) => return Err(NotReady::MigrationsPending),
                Err(_) => return Err(NotReady::DatabaseUnreachable),
            }
        }
        Ok(())
    }
}

/// While the process drains, every response closes its connection: a client holding a
/// keep-alive connection to this replica opens its next one through the load balancer,
/// which already sends it to a ready replica, instead of finding the connection cut when
/// the listener stops.
pub async fn close_connections_while_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = req
        .app_data::<web::Data<Arc<Readiness>>>()
        .is_some_and(|readiness| readiness.is_shutting_down());
    let mut response = next.call(req).await?;
    if draining {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// Mounts the three operational endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz))
        .service(web::resource("/metrics").get(metrics));
}

/// The process runs and answers. It does not look at the database: a database outage
/// must not make Kubernetes restart every replica.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<Arc<Readiness>>) -> HttpResponse {
    match readiness.check().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(json!({ "status": "unready", "reason": reason.as_str() })),
    }
}

async fn metrics(metrics: web::Data<Arc<Metrics>>, store: web::Data<Store>) -> HttpResponse {
    metrics.record_pool(store.usage());
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(metrics.render())
}
