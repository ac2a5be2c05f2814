//! Prometheus metrics: the registry every service adds to, the HTTP metrics middleware,
//! and the gauges of the runtime's own machinery.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Outbox delivery latency in seconds: from at once to a retry after many minutes.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    900.0, 1800.0,
];

/// Latency buckets in seconds, from a cached answer to a slow vendor call.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics of one process. Services register their own collectors in [`Metrics::registry`].
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub pool_connections: IntGaugeVec,
    pub outbox_pending: IntGauge,
    pub outbox_dead: IntGauge,
    pub outbox_delivered: IntCounter,
    pub outbox_failed_attempts: IntCounter,
    pub outbox_dead_lettered: IntCounter,
    pub outbox_delivery_seconds: Histogram,
    pub inbox_messages: IntCounterVec,
    pub jobs_runs: IntCounterVec,
    pub readiness_changes: IntCounter,
    /// 1 while the process is ready, 0 otherwise.
    pub ready: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new_custom(Some("mdm".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route, method and status",
            ),
            &["listener", "route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["listener", "route", "method"],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by state (max, open, idle, in_use)",
            ),
            &["state"],
        )?;
        let outbox_pending =
            IntGauge::new("outbox_pending", "Outbox messages waiting for delivery")?;
        let outbox_dead =
            IntGauge::new("outbox_dead", "Outbox messages given up on (dead letters)")?;
        let outbox_delivered =
            IntCounter::new("outbox_delivered_total", "Outbox messages delivered")?;
        let outbox_failed_attempts = IntCounter::new(
            "outbox_failed_attempts_total",
            "Outbox delivery attempts that failed and will be retried",
        )?;
        let outbox_dead_lettered = IntCounter::new(
            "outbox_dead_lettered_total",
            "Outbox messages moved to the dead-letter state",
        )?;
        let outbox_delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "outbox_delivery_latency_seconds",
                "Time from a message's creation to its delivery",
            )
            .buckets(DELIVERY_BUCKETS.to_vec()),
        )?;
        let inbox_messages = IntCounterVec::new(
            Opts::new(
                "inbox_messages_total",
                "Messages received, by kind and result",
            ),
            &["kind", "result"],
        )?;
        // Labelled `name`: Prometheus keeps `job` for the scrape target.
        let jobs_runs = IntCounterVec::new(
            Opts::new(
                "job_runs_total",
                "Background job runs, by job name and outcome",
            ),
            &["name", "outcome"],
        )?;
        let readiness_changes = IntCounter::new(
            "readiness_changes_total",
            "Times readiness changed between ready and not",
        )?;
        let ready = IntGauge::new(
            "ready",
            "1 while the process is ready (as /readyz answers), 0 otherwise",
        )?;

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(outbox_dead.clone()))?;
        registry.register(Box::new(outbox_delivered.clone()))?;
        registry.register(Box::new(outbox_failed_attempts.clone()))?;
        registry.register(Box::new(outbox_dead_lettered.clone()))?;
        registry.register(Box::new(outbox_delivery_seconds.clone()))?;
        registry.register(Box::new(inbox_messages.clone()))?;
        registry.register(Box::new(jobs_runs.clone()))?;
        registry.register(Box::new(readiness_changes.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Arc::new(Self {
            registry,
            http_requests,
            http_duration,
            pool_connections,
            outbox_pending,
            outbox_dead,
            outbox_delivered,
            outbox_failed_attempts,
            outbox_dead_lettered,
            outbox_delivery_seconds,
            inbox_messages,
            jobs_runs,
            readiness_changes,
            ready,
        }))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    pub fn record_pool(&self, usage: mdm_store::PoolUsage) {
        self.pool_connections
            .with_label_values(&["max"])
            .set(i64::from(usage.max));
        self.pool_connections
            .with_label_values(&["open"])
            .set(i64::from(usage.open));
        self.pool_connections
            .with_label_values(&["idle"])
            .set(i64::from(usage.idle));
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(usage.open.saturating_sub(usage.idle)));
    }
}

/// Which listener a request came in on, as application data.
#[derive(Clone, Copy)]
pub struct ListenerName(pub &'static str);

/// Middleware counting requests and timing them by route pattern (never by raw path, so
/// that ids do not explode the label space).
pub async fn record_http(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<Arc<Metrics>>>()
        .map(|m| m.get_ref().clone());
    let listener = req
        .app_data::<web::Data<ListenerName>>()
        .map_or("public", |l| l.0);
    let method = req.method().as_str().to_owned();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        // Routing happens inside the app, so the matched pattern is known only afterwards.
        let (route, status) = match &result {
            Ok(response) => (
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned()),
                response.status().as_u16(),
            ),
            Err(error) => (
                "unmatched".to_owned(),
                error.as_response_error().status_code().as_u16(),
            ),
        };
        metrics
            .http_requests
            .with_label_values(&[listener, &route, &method, &status.to_string()])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[listener, &route, &method])
            .observe(started.elapsed().as_secs_f64());
    }
    result
}
