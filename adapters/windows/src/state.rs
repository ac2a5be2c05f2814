//! What management sessions need, in memory: devices by certificate, each device's
//! open commands, and the sessions in progress.
//!
//! The database stays the source of truth. A device missing here is loaded from it on its
//! first message (after a restart, or when another replica enrolled it); this replica's
//! own writes update the entries after they commit; commands queued by other replicas
//! are picked up by [`crate::sync`]. Every state change of a command is a conditional
//! update in the database, so a stale entry can cause no double delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use mdm_api::internal::inventory::DeviceFacts;
use mdm_domain::{ActionId, ActionKind, DeviceId, EnrollmentId, ManagementMode, TenantId};
use mdm_store::models::windows::{WinCommandRow, WinEnrollmentRow};
use uuid::Uuid;

use crate::db::{LoadedDevice, command_state};

const SHARDS: usize = 16;
/// How long an unknown certificate is remembered as unknown (no database look-up).
const UNKNOWN_TTL_MS: i64 = 30_000;
const MAX_UNKNOWN: usize = 10_000;

/// An open command of a device.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    /// The CmdID it is sent with: the id's text.
    pub cmd_id: Arc<str>,
    pub action_id: Option<ActionId>,
    pub kind: ActionKind,
    pub step: i32,
    pub last_step: bool,
    pub verb: String,
    pub loc_uri: String,
    pub data: Option<String>,
    pub format: Option<String>,
    pub priority: bool,
    pub delivered: bool,
    /// The device message whose answer carried it (see [`crate::db::mark_delivered`]).
    pub delivered_in: Option<Arc<str>>,
    pub expires_at: i64,
}

impl Pending {
    pub fn from_row(row: &WinCommandRow) -> Option<Self> {
        let id = Uuid::from_slice(&row.id).ok()?;
        Some(Self {
            id,
            cmd_id: id.hyphenated().to_string().into(),
            action_id: row.action_id,
            kind: row.kind.parse().ok()?,
            step: row.step,
            last_step: row.last_step,
            verb: row.verb.clone(),
            loc_uri: row.loc_uri.clone(),
            data: row.data.clone(),
            format: row.meta_format.clone(),
            priority: row.priority,
            delivered: row.state == command_state::DELIVERED,
            delivered_in: row.delivered_in.as_deref().map(Arc::from),
            expires_at: row.expires_at,
        })
    }
}

/// A certificate that authenticates a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Certificate {
    pub sha256: [u8; 32],
    pub not_after: i64,
}

/// A device with an active enrollment.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: DeviceId,
    pub enrollment_id: EnrollmentId,
    pub tenant_id: TenantId,
    pub windows_device_id: String,
    pub mode: ManagementMode,
    pub build: Option<u32>,
    pub certificates: Vec<Certificate>,
    /// What inventory last heard.
    pub facts: DeviceFacts,
    pub inventory_at: Option<i64>,
    /// The push channel, while it is usable.
    pub channel: Option<String>,
    /// Open commands: priority first, then in the order queued.
    pub pending: Vec<Pending>,
}

impl Device {
    pub fn from_loaded(loaded: &LoadedDevice) -> Self {
        let e: &WinEnrollmentRow = &loaded.enrollment;
        let mut device = Self {
            device_id: e.device_id,
            enrollment_id: e.id,
            tenant_id: e.tenant_id,
            windows_device_id: e.windows_device_id.clone(),
            mode: e.management_mode,
            build: e
                .os_version
                .as_deref()
                .and_then(|v| v.parse::<mdm_domain::OsVersion>().ok())
                .and_then(|v| v.windows_10_build()),
            certificates: loaded
                .certificates
                .iter()
                .filter_map(|c| {
                    Some(Certificate {
                        sha256: c.sha256.as_slice().try_into().ok()?,
                        not_after: c.not_after,
                    })
                })
                .collect(),
            facts: e
                .last_facts
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default(),
            inventory_at: e.inventory_at,
            channel: e
                .channel_uri
                .clone()
                .filter(|_| e.channel_state.as_deref() == Some("active")),
            pending: Vec::new(),
        };
        device.add_pending(loaded.commands.iter().filter_map(Pending::from_row));
        device
    }

    /// Adds commands (once each) and keeps the order.
    pub fn add_pending(&mut self, commands: impl IntoIterator<Item = Pending>) {
        for command in commands {
            if !self.pending.iter().any(|p| p.id == command.id) {
                self.pending.push(command);
            }
        }
        // UUIDv7 ids sort by creation; steps of one action keep their order.
        self.pending
            .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    }

    pub fn remove_pending(&mut self, ids: &[Uuid]) {
        self.pending.retain(|p| !ids.contains(&p.id));
    }
}

/// The in-memory index of devices.
pub struct Index {
    shards: Vec<Mutex<HashMap<DeviceId, Device>>>,
    certificates: RwLock<HashMap<[u8; 32], DeviceId>>,
    unknown: Mutex<HashMap<[u8; 32], i64>>,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data here (every change is a
    // single assignment), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Index {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            certificates: RwLock::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, device: DeviceId) -> &Mutex<HashMap<DeviceId, Device>> {
        let bytes = device.as_bytes();
        // The last bytes of a UUIDv7 are random.
        &self.shards[usize::from(bytes[15]) % SHARDS]
    }

    /// Adds or replaces a device.
    pub fn insert(&self, device: Device) {
        let device_id = device.device_id;
        let hashes: Vec<[u8; 32]> = device.certificates.iter().map(|c| c.sha256).collect();
        let old = lock(self.shard(device_id)).insert(device_id, device);
        {
            let mut unknown = lock(&self.unknown);
            for hash in &hashes {
                unknown.remove(hash);
            }
        }
        let mut certificates = self
            .certificates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = old {
            for certificate in &old.certificates {
                if !hashes.contains(&certificate.sha256)
                    && certificates.get(&certificate.sha256) == Some(&old.device_id)
                {
                    certificates.remove(&certificate.sha256);
                }
            }
        }
        for hash in hashes {
            certificates.insert(hash, device_id);
        }
    }

    /// Drops a device (its enrollment ended).
    pub fn remove(&self, device: DeviceId) {
        let Some(old) = lock(self.shard(device)).remove(&device) else {
            return;
        };
        let mut certificates = self
            .certificates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for certificate in &old.certificates {
            if certificates.get(&certificate.sha256) == Some(&device) {
                certificates.remove(&certificate.sha256);
            }
        }
    }

    /// The device a certificate authenticates, when it is in memory.
    pub fn device_of(&self, sha256: &[u8; 32]) -> Option<DeviceId> {
        self.certificates
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(sha256)
            .copied()
    }

    /// Runs `f` on a device in memory.
    pub fn with<R>(&self, device: DeviceId, f: impl FnOnce(&mut Device) -> R) -> Option<R> {
        lock(self.shard(device)).get_mut(&device).map(f)
    }

    pub fn contains(&self, device: DeviceId) -> bool {
        lock(self.shard(device)).contains_key(&device)
    }

    /// Whether `sha256` was looked up and found unknown in the last seconds.
    pub fn recently_unknown(&self, sha256: &[u8; 32], now: i64) -> bool {
        lock(&self.unknown)
            .get(sha256)
            .is_some_and(|&at| now - at < UNKNOWN_TTL_MS)
    }

    pub fn remember_unknown(&self, sha256: [u8; 32], now: i64) {
        let mut unknown = lock(&self.unknown);
        if unknown.len() >= MAX_UNKNOWN {
            unknown.retain(|_, at| now - *at < UNKNOWN_TTL_MS);
            if unknown.len() >= MAX_UNKNOWN {
                unknown.clear();
            }
        }
        unknown.insert(sha256, now);
    }

    /// Replaces a device's certificates (after a renewal was used, or issued).
    pub fn set_certificates(&self, device: DeviceId, certificates: Vec<Certificate>) {
        let old = self.with(device, |d| {
            std::mem::replace(&mut d.certificates, certificates.clone())
        });
        let mut map = self
            .certificates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = old {
            for certificate in old {
                if !certificates.iter().any(|c| c.sha256 == certificate.sha256) {
                    map.remove(&certificate.sha256);
                }
            }
        }
        for certificate in certificates {
            map.insert(certificate.sha256, device);
        }
    }

    /// Number of devices in memory.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A chunk-by-chunk upload of a large object (Alert 1222 / MoreData).
#[derive(Debug, Clone, Default)]
pub struct LargeObject {
    pub cmd_ref: Option<String>,
    pub loc_uri: String,
    pub declared_size: Option<u64>,
    pub data: String,
}

/// One OMA-DM session in progress.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub last_msg_id: u64,
    /// The answer to the last message, sent again if the client repeats that message.
    pub last_answer: Option<Arc<String>>,
    pub last_active: i64,
    /// CmdIDs of the Gets the server sent on its own (inventory, push channel).
    pub own_gets: Vec<String>,
    pub inventory_requested: bool,
    pub channel_requested: bool,
    pub large_object: Option<LargeObject>,
}

/// Sessions in progress, bounded and forgotten when idle.
pub struct Sessions {
    map: Mutex<HashMap<(DeviceId, String), Session>>,
    max: usize,
    idle_ms: i64,
}

impl Sessions {
    pub fn new(max: usize, idle_secs: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle_ms: i64::try_from(idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// The session, or a new one.
    pub fn take(&self, device: DeviceId, session_id: &str, now: i64) -> Session {
        let mut map = lock(&self.map);
        match map.remove(&(device, session_id.to_owned())) {
            Some(session) if now - session.last_active <= self.idle_ms => session,
            _ => Session::default(),
        }
    }

    /// Keeps a session for its next message.
    pub fn put(&self, device: DeviceId, session_id: &str, mut session: Session, now: i64) {
        session.last_active = now;
        let mut map = lock(&self.map);
        if map.len() >= self.max {
            let idle = self.idle_ms;
            map.retain(|_, s| now - s.last_active <= idle);
            if map.len() >= self.max {
                // Still full: the least recently active session goes.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.last_active)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert((device, session_id.to_owned()), session);
    }

    /// Forgets idle sessions; answers how many remain.
    pub fn sweep(&self, now: i64) -> usize {
        let mut map = lock(&self.map);
        let idle = self.idle_ms;
        map.retain(|_, s| now - s.last_active <= idle);
        map.len()
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: DeviceId, sha: u8) -> Device {
        Device {
            device_id: id,
            enrollment_id: EnrollmentId::new(),
            tenant_id: TenantId::new(),
            windows_device_id: "W".into(),
            mode: ManagementMode::Desktop,
            build: None,
            certificates: vec![Certificate {
                sha256: [sha; 32],
                not_after: 0,
            }],
            facts: DeviceFacts::default(),
            inventory_at: None,
            channel: None,
            pending: Vec::new(),
        }
    }

    fn pending(priority: bool) -> Pending {
        let id = Uuid::now_v7();
        Pending {
            id,
            cmd_id: id.to_string().into(),
            action_id: None,
            kind: ActionKind::RebootNow,
            step: 0,
            last_step: true,
            verb: "Exec".into(),
            loc_uri: "./x".into(),
            data: None,
            format: None,
            priority,
            delivered: false,
            delivered_in: None,
            expires_at: 0,
        }
    }

    #[test]
    fn certificates_find_devices_and_go_with_them() {
        let index = Index::new();
        let id = DeviceId::new();
        index.insert(device(id, 1));
        assert_eq!(index.device_of(&[1; 32]), Some(id));
        index.set_certificates(
            id,
            vec![Certificate {
                sha256: [2; 32],
                not_after: 0,
            }],
        );
        assert_eq!(index.device_of(&[1; 32]), None);
        assert_eq!(index.device_of(&[2; 32]), Some(id));
        index.remove(id);
        assert_eq!(index.device_of(&[2; 32]), None);
        assert!(index.is_empty());
    }

    #[test]
    fn priority_commands_go_first_then_in_order() {
        let mut d = device(DeviceId::new(), 1);
        let (a, b, c) = (pending(false), pending(false), pending(true));
        d.add_pending([a.clone(), b.clone()]);
        d.add_pending([c.clone(), a.clone()]);
        let order: Vec<_> = d.pending.iter().map(|p| p.id).collect();
        assert_eq!(order, [c.id, a.id, b.id]);
    }

    #[test]
    fn sessions_are_bounded_and_expire() {
        let sessions = Sessions::new(2, 10);
        let d = DeviceId::new();
        for (i, id) in ["1", "2", "3"].iter().enumerate() {
            let session = Session {
                last_msg_id: i as u64,
                ..Session::default()
            };
            sessions.put(d, id, session, i as i64);
        }
        assert_eq!(sessions.len(), 2);
        // "1" was the least recently active.
        assert_eq!(sessions.take(d, "1", 3).last_msg_id, 0);
        assert_eq!(sessions.take(d, "3", 3).last_msg_id, 2);
        assert_eq!(sessions.sweep(100_000), 0);
        unknown_certificates_are_remembered_briefly();
    }

    fn unknown_certificates_are_remembered_briefly() {
        let index = Index::new();
        index.remember_unknown([9; 32], 1000);
        assert!(index.recently_unknown(&[9; 32], 2000));
        assert!(!index.recently_unknown(&[9; 32], 1000 + UNKNOWN_TTL_MS + 1));
    }
}
