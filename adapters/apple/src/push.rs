//! Pushes: one at a time per channel (a push already under way absorbs the next), many
//! at once overall; transient failures retried with backoff and jitter; permanent ones
//! recorded on the channel (and the tenant's certificate cache dropped when the
//! certificate is at fault).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdm_api::internal::inventory::UnenrollReason;
use mdm_domain::{DeviceId, TenantId};
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};

use crate::apns::{ApnsClient, Identity, Outcome, Push};
use crate::service::{Apple, report_unenrolled};
use crate::state::{self, PushTarget};
use crate::store;

/// A channel to push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub channel: Arc<str>,
    pub tenant: TenantId,
    pub device: DeviceId,
    pub target: PushTarget,
}

/// Pushes at once, at most.
const CONCURRENCY: usize = 512;

/// Runs pushes until the sender side is dropped.
pub async fn run(
    apple: Arc<Apple>,
    client: Arc<ApnsClient>,
    mut requests: mpsc::Receiver<PushRequest>,
) {
    // Channels with a push under way, and whether another was asked for meanwhile.
    let in_flight: Arc<Mutex<HashMap<Arc<str>, bool>>> = Arc::default();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(request) = requests.recv().await {
        let fresh = in_flight
            .lock()
            .map(|mut map| match map.get_mut(&request.channel) {
                Some(again) => {
                    *again = true;
                    false
                }
                None => {
                    map.insert(request.channel.clone(), false);
                    true
                }
            })
            .unwrap_or(false);
        if !fresh {
            // One more push follows the one under way (the device may have come and
            // gone before this request's commands were queued).
            apple.metrics.pushes.with_label_values(&["coalesced"]).inc();
            continue;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let apple = apple.clone();
        let client = client.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            loop {
                deliver(&apple, &client, &request).await;
                let again = in_flight
                    .lock()
                    .map(|mut map| match map.get_mut(&request.channel) {
                        Some(again) if *again => {
                            *again = false;
                            true
                        }
                        _ => {
                            map.remove(&request.channel);
                            false
                        }
                    })
                    .unwrap_or(false);
                if !again {
                    break;
                }
            }
            drop(permit);
        });
    }
}

async fn deliver(apple: &Apple, client: &ApnsClient, request: &PushRequest) {
    let certificate = match apple.upstream.push_certificate(request.tenant).await {
        Ok(Some(certificate)) => certificate,
        Ok(None) => {
            apple
                .metrics
                .pushes
                .with_label_values(&["no_certificate"])
                .inc();
            tracing::warn!(tenant = %request.tenant, "no push certificate: device not pushed");
            return;
        }
        Err(error) => {
            apple
                .metrics
                .pushes
                .with_label_values(&["no_certificate"])
                .inc();
            tracing::warn!(%error, "push certificate unavailable: device not pushed");
            return;
        }
    };
    let identity = Identity {
        certificate_pem: certificate.certificate_pem.clone(),
        private_key_pem: certificate.private_key_pem.clone(),
    };
    let config = &apple.config;
    let expiration = if config.push_expiration_secs == 0 {
        0
    } else {
        apple.now().timestamp() + i64::try_from(config.push_expiration_secs).unwrap_or(0)
    };
    let push = Push {
        token: request.target.token.clone(),
        topic: request.target.topic.clone(),
        magic: request.target.magic.clone(),
        expiration,
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = client.send(&identity, &push).await;
        match outcome {
            Outcome::Delivered => {
                apple.metrics.pushes.with_label_values(&["delivered"]).inc();
                return;
            }
            Outcome::Transient(why) => {
                apple.metrics.pushes.with_label_values(&["transient"]).inc();
                if attempt >= config.push_max_attempts.max(1) {
                    tracing::warn!(channel = %request.channel, %why, attempt, "push failed; the periodic re-push will try again");
                    return;
                }
                tokio::time::sleep(backoff(
                    config.push_retry_base_ms,
                    config.push_retry_max_secs,
                    attempt,
                ))
                .await;
            }
            permanent @ Outcome::Permanent { .. } => {
                apple.metrics.pushes.with_label_values(&["permanent"]).inc();
                record_permanent(apple, request, &permanent).await;
                return;
            }
        }
    }
}

/// The delay before retry `attempt + 1`: base · 2^(attempt−1), capped, times a random
/// factor in [0.5, 1].
pub fn backoff(base_ms: u64, max_secs: u64, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = base_ms
        .saturating_mul(1u64 << exponent)
        .min(max_secs.saturating_mul(1000));
    let factor = rand::rng().random_range(0.5..=1.0);
    Duration::from_millis((full as f64 * factor) as u64)
}

async fn record_permanent(apple: &Apple, request: &PushRequest, outcome: &Outcome) {
    let Outcome::Permanent { status, reason } = outcome else {
        return;
    };
    let state = if outcome.is_unregistered() {
        "unregistered"
    } else if outcome.is_certificate_problem() {
        apple.upstream.forget_push_certificate(request.tenant);
        "certificate"
    } else {
        match reason.as_str() {
            "BadDeviceToken" => "badDeviceToken",
            "DeviceTokenNotForTopic" => "deviceTokenNotForTopic",
            _ => "failed",
        }
    };
    tracing::warn!(channel = %request.channel, status, %reason, state, "push refused permanently");
    if let Some(channel) = apple.channels.get(&request.channel) {
        let mut c = state::lock(&channel);
        // A TokenUpdate since then brought a new token: keep it working.
        if c.push.as_ref() == Some(&request.target) {
            c.push_state = state.to_owned();
        } else {
            return;
        }
    }
    let key = request.channel.to_string();
    let detail = format!("{status} {reason}");
    let now = apple.now();
    let unregistered = outcome.is_unregistered();
    let device = request.device;
    let outbox = apple.outbox.clone();
    let token = request.target.token.clone();
    let written = apple
        .group
        .write(move |c| {
            let row = store::enrollment(c, &key)?;
            if row.as_ref().and_then(|r| r.push_token.as_ref()) != Some(&token) {
                return Ok(());
            }
            store::set_push_state(c, &key, state, Some(&detail), now.timestamp_millis())?;
            // APNs no longer knows the device for this topic: it left management.
            if unregistered && row.is_some_and(|r| r.channel_id == r.device_channel) {
                report_unenrolled(&outbox, c, device, UnenrollReason::Vanished, now)?;
            }
            Ok(())
        })
        .await;
    if let Err(error) = written {
        tracing::warn!(%error, "push state not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        for attempt in 1..12 {
            let delay = backoff(100, 5, attempt).as_millis() as u64;
            let full = (100u64 << (attempt - 1)).min(5000);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay}");
        }
    }
}
