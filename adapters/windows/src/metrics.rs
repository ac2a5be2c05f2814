//! The adapter's Prometheus metrics (`mdm_windows_*`).

use prometheus::{IntCounterVec, Opts, Registry};

use crate::push::PushOutcome;

pub struct WindowsMetrics {
    /// `mdm_windows_pushes_total{outcome=delivered|transient|permanent|channel_gone}`.
    pub pushes: IntCounterVec,
    /// `mdm_windows_enrollments_total{kind=new|renewal,outcome=issued|refused}`.
    pub enrollments: IntCounterVec,
    /// `mdm_windows_management_messages_total{outcome=answered|unauthenticated|refused}`.
    pub messages: IntCounterVec,
}

impl WindowsMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            pushes: IntCounterVec::new(
                Opts::new("windows_pushes_total", "WNS pushes by outcome"),
                &["outcome"],
            )?,
            enrollments: IntCounterVec::new(
                Opts::new(
                    "windows_enrollments_total",
                    "MS-WSTEP certificate requests by kind and outcome",
                ),
                &["kind", "outcome"],
            )?,
            messages: IntCounterVec::new(
                Opts::new(
                    "windows_management_messages_total",
                    "OMA-DM messages from devices by outcome",
                ),
                &["outcome"],
            )?,
        };
        // Registering twice (two modules in one test process) is harmless: keep going.
        let _ = registry.register(Box::new(metrics.pushes.clone()));
        let _ = registry.register(Box::new(metrics.enrollments.clone()));
        let _ = registry.register(Box::new(metrics.messages.clone()));
        Ok(metrics)
    }

    /// Counts a push by the label the alert rules use.
    pub fn push(&self, outcome: &PushOutcome) {
        let label = match outcome {
            PushOutcome::Delivered => "delivered",
            PushOutcome::ChannelGone(_) => "channel_gone",
            PushOutcome::Retry(..) => "transient",
            PushOutcome::Failed(_) => "permanent",
        };
        self.pushes.with_label_values(&[label]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_push_outcome_has_the_label_the_alert_expects() {
        let metrics = WindowsMetrics::new(&Registry::new()).unwrap();
        for outcome in [
            PushOutcome::Delivered,
            PushOutcome::ChannelGone(410),
            PushOutcome::Retry("503".into(), None),
            PushOutcome::Failed("403".into()),
        ] {
            metrics.push(&outcome);
        }
        for label in ["delivered", "channel_gone", "transient", "permanent"] {
            assert_eq!(
                metrics.pushes.with_label_values(&[label]).get(),
                1,
                "{label}"
            );
        }
    }
}
