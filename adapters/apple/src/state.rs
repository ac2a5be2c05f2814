//! The in-memory side of the hot path: each channel's enrollment facts and its command
//! queue, and the index from identity-certificate hash to device channel.
//!
//! The database is the truth; this is a cache of it that the hot path reads without a
//! query. A channel is loaded on first use (its row and its queued commands) and kept.
//! Changes are written to the database first and applied here after they commit; queue
//! insertions are idempotent by CommandUUID, so a load racing a commit does no harm, and
//! a command removed from the database behind this cache's back (canceled, expired) is
//! found out when its delivery fails to mark it sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mdm_domain::{
    ActionId, DeviceId, EnrollmentId, OsVersion, Ownership, Platform, TenantId, UserId,
};
use mdm_store::models::apple::{CommandRow, EnrollmentRow};

/// Why a command is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An action from dispatch.
    Action,
    /// An inventory query.
    Inventory,
    /// A step of a retire (queries, removals).
    RetireStep,
    /// The retire's last step: removing the MDM profile.
    RetireFinal,
    /// Queued through the internal API.
    Internal,
}

impl Purpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Inventory => "inventory",
            Self::RetireStep => "retireStep",
            Self::RetireFinal => "retireFinal",
            Self::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "action" => Self::Action,
            "inventory" => Self::Inventory,
            "retireStep" => Self::RetireStep,
            "retireFinal" => Self::RetireFinal,
            _ => Self::Internal,
        }
    }
}

/// A command waiting in a channel's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub uuid: Arc<str>,
    pub request_type: Arc<str>,
    /// The rendered command plist.
    pub payload: Bytes,
    pub priority: bool,
    pub purpose: Purpose,
    pub action_id: Option<ActionId>,
    pub expires_at: i64,
}

impl Queued {
    pub fn from_row(row: CommandRow) -> Self {
        Self {
            id: row.id,
            uuid: row.command_uuid.into(),
            request_type: row.request_type.into(),
            payload: Bytes::from(row.payload),
            priority: row.priority,
            purpose: Purpose::parse(&row.purpose),
            action_id: row.action_id,
            expires_at: row.expires_at,
        }
    }
}

/// The order of a queue: the priority lane (lock, wipe) before everything else, each in
/// the order queued.
type Slot = (bool, i64);

fn slot(priority: bool, id: i64) -> Slot {
    (!priority, id)
}

/// One channel's queue.
#[derive(Debug, Default)]
pub struct Queue {
    items: BTreeMap<Slot, Queued>,
    by_uuid: HashMap<Arc<str>, Slot>,
    /// Commands answered NotNow in the current exchange: not offered again before the
    /// device's next Idle.
    not_now: HashSet<Arc<str>>,
}

impl Queue {
    /// Adds a command unless it is there already.
    pub fn push(&mut self, command: Queued) -> bool {
        if self.by_uuid.contains_key(&command.uuid) {
            return false;
        }
        let key = slot(command.priority, command.id);
        self.by_uuid.insert(command.uuid.clone(), key);
        self.items.insert(key, command);
        true
    }

    pub fn remove(&mut self, uuid: &str) -> Option<Queued> {
        let key = self.by_uuid.remove(uuid)?;
        self.not_now.remove(uuid);
        self.items.remove(&key)
    }

    pub fn get(&self, uuid: &str) -> Option<&Queued> {
        self.by_uuid.get(uuid).and_then(|key| self.items.get(key))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The next command to offer: the first not answered NotNow in this exchange and not
    /// expired at `now`. Expired commands met on the way are answered too, for removal.
    pub fn next(&self, now: i64) -> (Option<Queued>, Vec<Queued>) {
        let mut expired = Vec::new();
        for command in self.items.values() {
            if command.expires_at <= now {
                expired.push(command.clone());
                continue;
            }
            if self.not_now.contains(&command.uuid) {
                continue;
            }
            return (Some(command.clone()), expired);
        }
        (None, expired)
    }

    pub fn mark_not_now(&mut self, uuid: &str) {
        if let Some((key, _)) = self.by_uuid.get_key_value(uuid) {
            self.not_now.insert(key.clone());
        }
    }

    /// A new exchange starts (Idle): NotNow'd commands may be offered again.
    pub fn new_exchange(&mut self) {
        self.not_now.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.values()
    }

    pub fn drain(&mut self) -> Vec<Queued> {
        self.by_uuid.clear();
        self.not_now.clear();
        std::mem::take(&mut self.items).into_values().collect()
    }
}

/// Where a channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Authenticate done, TokenUpdate not yet.
    Authenticated,
    Enrolled,
    /// Checked out, wiped, retired or removed: requests are answered as from an
    /// unrecognised device.
    Ended,
}

impl Phase {
    pub fn parse(state: &str) -> Self {
        match state {
            "authenticated" => Self::Authenticated,
            "enrolled" => Self::Enrolled,
            _ => Self::Ended,
        }
    }
}

/// Where to push a channel.
#[derive(Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub token: Vec<u8>,
    pub magic: String,
    pub topic: String,
}

impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTarget")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// One channel, as the hot path needs it.
#[derive(Debug)]
pub struct Channel {
    pub key: Arc<str>,
    pub device_channel: Arc<str>,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub enrollment_id: EnrollmentId,
    pub platform: Platform,
    pub ownership: Ownership,
    pub user_id: Option<UserId>,
    pub phase: Phase,
    pub cert_hash: Option<[u8; 32]>,
    pub push: Option<PushTarget>,
    /// `ok`, or why pushes stopped working (`unregistered`, `badDeviceToken`, ...).
    pub push_state: String,
    pub has_unlock_token: bool,
    pub os_version: Option<OsVersion>,
    pub queue: Queue,
    /// Unix milliseconds of the last push sent and of the last request seen.
    pub last_push_at: i64,
    pub last_seen_at: i64,
}

impl Channel {
    pub fn from_row(
        row: &EnrollmentRow,
        os_version: Option<OsVersion>,
        commands: Vec<CommandRow>,
    ) -> Self {
        let mut queue = Queue::default();
        for command in commands {
            queue.push(Queued::from_row(command));
        }
        Self {
            key: row.channel_id.as_str().into(),
            device_channel: row.device_channel.as_str().into(),
            tenant_id: row.tenant_id,
            device_id: row.device_id,
            enrollment_id: row.enrollment_id,
            platform: row.platform,
            ownership: row.ownership,
            user_id: row.user_id,
            phase: Phase::parse(&row.state),
            cert_hash: row
                .cert_hash
                .as_deref()
                .and_then(|h| <[u8; 32]>::try_from(h).ok()),
            push: match (&row.push_token, &row.push_magic) {
                (Some(token), Some(magic)) => Some(PushTarget {
                    token: token.clone(),
                    magic: magic.clone(),
                    topic: row.topic.clone(),
                }),
                _ => None,
            },
            push_state: row.push_state.clone(),
            has_unlock_token: row.sealed_unlock_token.is_some(),
            os_version,
            queue,
            last_push_at: 0,
            last_seen_at: 0,
        }
    }
}

pub type ChannelRef = Arc<Mutex<Channel>>;

/// Locks a channel; a poisoned lock (a panic elsewhere) still yields the data.
pub fn lock(channel: &ChannelRef) -> MutexGuard<'_, Channel> {
    channel
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const SHARDS: usize = 32;

/// A map split into shards, each behind its own lock.
struct Sharded<K, V> {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, V>>>,
}

impl<K: Hash + Eq, V: Clone> Sharded<K, V> {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, HashMap<K, V>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        self.shard(&key).insert(key, value);
    }

    fn get_or_insert(&self, key: K, value: V) -> V {
        self.shard(&key).entry(key).or_insert(value).clone()
    }

    fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).remove(key)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    fn values(&self) -> Vec<V> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .map(|m| m.values().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The channels in memory, by channel id and by certificate hash.
pub struct Channels {
    by_key: Sharded<Arc<str>, ChannelRef>,
    by_cert: Sharded<[u8; 32], Arc<str>>,
    by_device: Sharded<DeviceId, Arc<str>>,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            by_key: Sharded::new(),
            by_cert: Sharded::new(),
            by_device: Sharded::new(),
        }
    }
}

impl Channels {
    pub fn get(&self, key: &str) -> Option<ChannelRef> {
        self.by_key.get(key)
    }

    /// The device channel bound to a certificate.
    pub fn by_cert(&self, hash: &[u8; 32]) -> Option<ChannelRef> {
        let key = self.by_cert.get(hash)?;
        self.by_key.get(&*key)
    }

    /// The device channel of a device.
    pub fn by_device(&self, device: DeviceId) -> Option<ChannelRef> {
        let key = self.by_device.get(&device)?;
        self.by_key.get(&*key)
    }

    /// Adds a loaded channel, unless one is there already (then answers that one).
    pub fn insert_loaded(&self, channel: Channel) -> ChannelRef {
        let key = channel.key.clone();
        let cert = channel.cert_hash;
        let device = (channel.key == channel.device_channel).then_some(channel.device_id);
        let entry = self
            .by_key
            .get_or_insert(key.clone(), Arc::new(Mutex::new(channel)));
        if let Some(cert) = cert {
            self.by_cert.insert(cert, key.clone());
        }
        if let Some(device) = device {
            self.by_device.insert(device, key);
        }
        entry
    }

    /// Replaces (or adds) a channel, after its row changed (Authenticate).
    pub fn replace(&self, channel: Channel) -> ChannelRef {
        let key = channel.key.clone();
        if let Some(old) = self.by_key.get(&*key) {
            let old = lock(&old);
            if let Some(cert) = old.cert_hash
                && Some(cert) != channel.cert_hash
            {
                self.by_cert.remove(&cert);
            }
        }
        let cert = channel.cert_hash;
        let device = (channel.key == channel.device_channel).then_some(channel.device_id);
        let entry = Arc::new(Mutex::new(channel));
        self.by_key.insert(key.clone(), entry.clone());
        if let Some(cert) = cert {
            self.by_cert.insert(cert, key.clone());
        }
        if let Some(device) = device {
            self.by_device.insert(device, key);
        }
        entry
    }

    /// Binds a certificate to a loaded device channel (renewal).
    pub fn bind_cert(&self, old: Option<[u8; 32]>, new: [u8; 32], key: Arc<str>) {
        if let Some(old) = old {
            self.by_cert.remove(&old);
        }
        self.by_cert.insert(new, key);
    }

    pub fn forget_cert(&self, hash: &[u8; 32]) {
        self.by_cert.remove(hash);
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<ChannelRef> {
        self.by_key.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: i64, priority: bool, expires_at: i64) -> Queued {
        Queued {
            id,
            uuid: format!("c{id}").into(),
            request_type: "DeviceInformation".into(),
            payload: Bytes::new(),
            priority,
            purpose: Purpose::Inventory,
            action_id: None,
            expires_at,
        }
    }

    #[test]
    fn priority_lane_goes_first_then_order() {
        let mut queue = Queue::default();
        queue.push(queued(1, false, 100));
        queue.push(queued(2, false, 100));
        queue.push(queued(3, true, 100));
        assert!(!queue.push(queued(3, true, 100)), "idempotent by uuid");
        let order: Vec<_> = queue.iter().map(|q| q.id).collect();
        assert_eq!(order, [3, 1, 2]);
        assert_eq!(queue.next(0).0.unwrap().id, 3);
    }

    #[test]
    fn not_now_skips_until_the_next_exchange() {
        let mut queue = Queue::default();
        queue.push(queued(1, false, 100));
        queue.push(queued(2, false, 100));
        queue.mark_not_now("c1");
        assert_eq!(queue.next(0).0.unwrap().id, 2);
        queue.mark_not_now("c2");
        assert!(queue.next(0).0.is_none());
        queue.new_exchange();
        assert_eq!(queue.next(0).0.unwrap().id, 1);
    }

    #[test]
    fn expired_commands_are_reported_not_offered() {
        let mut queue = Queue::default();
        queue.push(queued(1, false, 10));
        queue.push(queued(2, false, 100));
        let (next, expired) = queue.next(50);
        assert_eq!(next.unwrap().id, 2);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, 1);
    }
}
