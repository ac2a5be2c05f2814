//! Last-seen bookkeeping without a write per request: check-ins are noted in memory and
//! flushed every few seconds as one `DevicesSeen` message to inventory.

use std::collections::HashMap;
use std::sync::Mutex;

use mdm_api::internal::inventory::{DevicesSeen, Seen as SeenEntry};
use mdm_domain::DeviceId;
use mdm_runtime::outbox::Outbox;
use mdm_store::{DbConnection, StoreError};

/// Devices seen since the last flush.
#[derive(Default)]
pub struct Seen {
    pending: Mutex<HashMap<DeviceId, i64>>,
}

impl Seen {
    pub fn touch(&self, device: DeviceId, at: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(device, at);
        }
    }

    /// Takes what was noted.
    pub fn take(&self) -> Vec<(DeviceId, i64)> {
        self.pending
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending).into_iter().collect())
            .unwrap_or_default()
    }

    /// Puts entries back after a failed flush (newer ones win).
    pub fn restore(&self, entries: Vec<(DeviceId, i64)>) {
        if let Ok(mut pending) = self.pending.lock() {
            for (device, at) in entries {
                let slot = pending.entry(device).or_insert(at);
                *slot = (*slot).max(at);
            }
        }
    }
}

/// Writes one DevicesSeen message per 5,000 devices.
pub fn flush(
    c: &mut DbConnection,
    outbox: &Outbox,
    entries: &[(DeviceId, i64)],
) -> Result<(), StoreError> {
    for chunk in entries.chunks(5000) {
        let message = DevicesSeen {
            seen: chunk
                .iter()
                .map(|(device, at)| SeenEntry {
                    device_id: *device,
                    at: mdm_store::from_millis(*at),
                })
                .collect(),
        };
        outbox.enqueue(
            c,
            &format!("apple:seen:{}", uuid::Uuid::now_v7()),
            None,
            &message,
        )?;
    }
    Ok(())
}
