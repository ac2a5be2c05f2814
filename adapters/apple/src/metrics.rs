//! The adapter's Prometheus metrics (`mdm_apple_*`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct AppleMetrics {
    pub check_ins: IntCounterVec,
    pub reports: IntCounterVec,
    pub commands_delivered: IntCounter,
    pub commands_expired: IntCounter,
    pub duplicate_reports: IntCounter,
    pub auth_failures: IntCounter,
    pub authenticated: IntCounter,
    pub enrolled: IntCounter,
    pub enrollments_refused: IntCounter,
    pub pushes: IntCounterVec,
    pub channels_loaded: IntGauge,
}

impl AppleMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounter::new(format!("apple_{name}"), help.to_owned());
        let metrics = Self {
            check_ins: IntCounterVec::new(
                Opts::new("apple_check_ins_total", "Check-in messages by type"),
                &["type"],
            )?,
            reports: IntCounterVec::new(
                Opts::new("apple_reports_total", "Command reports by status"),
                &["status"],
            )?,
            commands_delivered: counter("commands_delivered_total", "Commands handed to devices")?,
            commands_expired: counter(
                "commands_expired_total",
                "Commands that expired unanswered",
            )?,
            duplicate_reports: counter(
                "duplicate_reports_total",
                "Answers to commands no longer queued",
            )?,
            auth_failures: counter(
                "auth_failures_total",
                "Device requests that failed authentication",
            )?,
            authenticated: counter("authenticated_total", "Authenticate check-ins accepted")?,
            enrolled: counter("enrolled_total", "Enrollments completed by TokenUpdate")?,
            enrollments_refused: counter(
                "enrollments_refused_total",
                "Authenticate check-ins refused by the gate",
            )?,
            pushes: IntCounterVec::new(
                Opts::new("apple_pushes_total", "APNs pushes by outcome"),
                &["outcome"],
            )?,
            channels_loaded: IntGauge::new("apple_channels_loaded", "Channels held in memory")?,
        };
        // Registering twice (two modules in one test process) is harmless: keep going.
        let _ = registry.register(Box::new(metrics.check_ins.clone()));
        let _ = registry.register(Box::new(metrics.reports.clone()));
        let _ = registry.register(Box::new(metrics.commands_delivered.clone()));
        let _ = registry.register(Box::new(metrics.commands_expired.clone()));
        let _ = registry.register(Box::new(metrics.duplicate_reports.clone()));
        let _ = registry.register(Box::new(metrics.auth_failures.clone()));
        let _ = registry.register(Box::new(metrics.authenticated.clone()));
        let _ = registry.register(Box::new(metrics.enrolled.clone()));
        let _ = registry.register(Box::new(metrics.enrollments_refused.clone()));
        let _ = registry.register(Box::new(metrics.pushes.clone()));
        let _ = registry.register(Box::new(metrics.channels_loaded.clone()));
        Ok(metrics)
    }
}
