//! Ids of the objects only inventory knows (directory records, Autopilot registrations,
//! groups): UUIDv7, stored as 16 bytes.

use uuid::Uuid;

/// The UUID of stored id bytes. Inventory writes only 16-byte ids, so anything else
/// cannot occur; it would read as the nil UUID rather than fail the whole answer.
pub fn to_uuid(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// A new, time-ordered id.
pub fn new_id() -> Vec<u8> {
    Uuid::now_v7().as_bytes().to_vec()
}
