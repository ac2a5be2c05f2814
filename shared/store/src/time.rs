//! Times are stored as milliseconds since the Unix epoch (`BIGINT` on both backends):
//! one representation that sorts, indexes and compares the same everywhere.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the epoch.
pub fn to_millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// The time `millis` milliseconds after the epoch; out-of-range values clamp to the epoch.
pub fn from_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = from_millis(1_763_800_000_123);
        assert_eq!(to_millis(t), 1_763_800_000_123);
        assert_eq!(from_millis(i64::MAX), DateTime::<Utc>::default());
    }
}
