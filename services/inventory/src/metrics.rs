//! Inventory's own metrics, registered in the process's registry (prefix `mdm_`).

use mdm_runtime::metrics::Metrics;
use prometheus::{IntCounter, IntCounterVec, Opts};

#[derive(Clone)]
pub struct InventoryMetrics {
    /// `mdm_inventory_devices_removed_total{rule}`: records removed by the clean-up
    /// (`inactivity`, `deletePending`, `certificate`) or after a completed delete
    /// (`deleted`).
    pub devices_removed: IntCounterVec,
    /// `mdm_inventory_checkins_total`: check-ins recorded from `DevicesSeen` batches.
    pub checkins: IntCounter,
}

impl InventoryMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let devices_removed = IntCounterVec::new(
            Opts::new(
                "inventory_devices_removed_total",
                "Device records removed, by the rule or event that removed them",
            ),
            &["rule"],
        )
        .unwrap_or_else(|_| unreachable!("the metric's name and labels are valid"));
        let checkins = IntCounter::new(
            "inventory_checkins_total",
            "Device check-ins recorded from the adapters' batches",
        )
        .unwrap_or_else(|_| unreachable!("the metric's name is valid"));
        for collector in [
            Box::new(devices_removed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(checkins.clone()),
        ] {
            if let Err(error) = metrics.registry().register(collector) {
                tracing::warn!(%error, "inventory metric not registered");
            }
        }
        Self {
            devices_removed,
            checkins,
        }
    }
}
