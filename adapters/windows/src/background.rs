//! Background work: the devices-seen flush, session clean-up, command expiry, catching up
//! with commands queued by other replicas, and forgetting old commands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mdm_api::internal::inventory::{DevicesSeen, Seen};
use mdm_domain::{ActionState, DeviceId};
use mdm_store::StoreError;
use uuid::Uuid;

use crate::Adapter;
use crate::db::{self, command_state};
use crate::session::{report, time};
use crate::state::Pending;

/// Check-ins per `DevicesSeen` message at most.
const SEEN_PER_MESSAGE: usize = 1000;

impl Adapter {
    /// Sends the check-ins collected since the last flush, as few messages.
    pub async fn flush_seen(&self) -> Result<usize, StoreError> {
        let seen: Vec<Seen> = {
            let mut map = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::take(&mut *map)
                .into_iter()
                .map(|(device_id, at)| Seen {
                    device_id,
                    at: time(at),
                })
                .collect()
        };
        if seen.is_empty() {
            return Ok(0);
        }
        let count = seen.len();
        let outbox = self.outbox.clone();
        let result = self
            .store
            .write(move |c| {
                for chunk in seen.chunks(SEEN_PER_MESSAGE) {
                    outbox.enqueue(
                        c,
                        &format!("windows:seen:{}", Uuid::now_v7()),
                        None,
                        &DevicesSeen {
                            seen: chunk.to_vec(),
                        },
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
        result.map(|()| count)
    }

    /// Ends open commands whose lifetime is over and reports their actions `expired`.
    pub async fn expire_commands(&self) -> Result<usize, StoreError> {
        let now_time = self.clock.now();
        let now = now_time.timestamp_millis();
        let outbox = self.outbox.clone();
        let ended = self
            .store
            .write(move |c| {
                let mut ended: Vec<(DeviceId, Uuid)> = Vec::new();
                for row in db::expired_commands(c, now, 1000)? {
                    if db::complete(c, &row.id, command_state::EXPIRED, None, None, now)?.is_none()
                    {
                        continue;
                    }
                    if let Ok(id) = Uuid::from_slice(&row.id) {
                        ended.push((row.device_id, id));
                    }
                    if let Some(action) = row.action_id {
                        report(
                            &outbox,
                            c,
                            &row.device_id.to_string(),
                            action,
                            row.device_id,
                            ActionState::Expired,
                            None,
                            Some("the device did not answer in time".into()),
                            now_time,
                        )?;
                        db::end_later_steps(c, action, row.step, command_state::EXPIRED, now)?;
                    }
                }
                Ok::<_, StoreError>(ended)
            })
            .await?;
        let mut by_device: HashMap<DeviceId, Vec<Uuid>> = HashMap::new();
        for (device, id) in &ended {
            by_device.entry(*device).or_default().push(*id);
        }
        for (device, ids) in by_device {
            self.index.with(device, |d| d.remove_pending(&ids));
        }
        Ok(ended.len())
    }

    /// Picks up commands other replicas queued for devices this one holds in memory.
    pub async fn catch_up(&self, since: i64) -> Result<usize, StoreError> {
        let rows = self
            .store
            .read(move |c| db::queued_since(c, since, 5000))
            .await?;
        let mut added = 0;
        for row in &rows {
            if let Some(pending) = Pending::from_row(row) {
                let id = pending.id;
                let fresh = self
                    .index
                    .with(row.device_id, |d| {
                        let known = d.pending.iter().any(|p| p.id == id);
                        if !known {
                            d.add_pending([pending]);
                        }
                        !known
                    })
                    .unwrap_or(false);
                if fresh {
                    added += 1;
                }
            }
        }
        Ok(added)
    }
}

/// Flushes check-ins and forgets idle sessions until shutdown.
pub async fn seen_loop(adapter: Arc<Adapter>, shutdown: mdm_runtime::Shutdown) {
    let every = Duration::from_secs(adapter.config.seen_flush_secs.max(1));
    loop {
        let stop = tokio::select! {
            _ = shutdown.wait() => true,
            _ = tokio::time::sleep(every) => false,
        };
        if let Err(error) = adapter.flush_seen().await {
            tracing::warn!(%error, "devices seen were not flushed; they go with the next flush");
        }
        adapter
            .sessions
            .sweep(adapter.clock.now().timestamp_millis());
        if stop {
            return;
        }
    }
}

/// Looks for commands queued by other replicas until shutdown.
pub async fn sync_loop(adapter: Arc<Adapter>, shutdown: mdm_runtime::Shutdown) {
    let every = Duration::from_millis(adapter.config.replica_sync_ms.max(50));
    // Transactions may commit out of creation order: look back well past one interval.
    let lookback = 10_000 + i64::try_from(every.as_millis()).unwrap_or(0) * 2;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let since = adapter.clock.now().timestamp_millis() - lookback;
        if let Err(error) = adapter.catch_up(since).await {
            tracing::debug!(%error, "catching up with other replicas failed");
        }
    }
}
