//! The client-side rate limiter: at most `limit` requests in any `window` per Google
//! Cloud project (AMAPI's default quota is 1,000 requests per 100 s per project).
//!
//! A sliding-window log of the requests sent. Google counts a request when it arrives,
//! somewhere between our sending it and our reading the answer; so each request holds its
//! place in the log while it is in flight and then counts from the moment its answer came
//! back. A new request goes only when fewer than `limit` requests are in flight or
//! answered within the last `window`: then no window at Google's end can hold more than
//! `limit` of them, whatever the network's delays. It counts this process's requests;
//! several replicas share a project's quota, so give each its share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

type Log = HashMap<String, Vec<Entry>>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    /// When the answer came back; `None` while in flight.
    answered: Option<Instant>,
}

pub struct RateLimiter {
    limit: usize,
    window: Duration,
    log: Arc<Mutex<Log>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A request's place in the log: it counts from the moment the permit is dropped (the
/// answer came back, or the request was abandoned).
pub struct Permit {
    log: Option<Arc<Mutex<Log>>>,
    project: String,
    id: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(log) = &self.log else {
            return;
        };
        if let Ok(mut log) = log.lock()
            && let Some(entry) = log
                .get_mut(&self.project)
                .and_then(|entries| entries.iter_mut().find(|e| e.id == self.id))
        {
            entry.answered = Some(Instant::now());
        }
    }
}

impl RateLimiter {
    /// `limit` 0 turns the limiter off.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            log: Arc::new(Mutex::new(HashMap::new())),
            next_id: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn is_off(&self) -> bool {
        self.limit == 0 || self.window.is_zero()
    }

    /// Waits until a request to `project` may be sent; hold the permit until its answer
    /// is read.
    pub async fn acquire(&self, project: &str) -> Permit {
        if self.is_off() {
            return Permit {
                log: None,
                project: String::new(),
                id: 0,
            };
        }
        loop {
            let wait = {
                let Ok(mut log) = self.log.lock() else {
                    return Permit {
                        log: None,
                        project: String::new(),
                        id: 0,
                    };
                };
                let entries = log.entry(project.to_owned()).or_default();
                let now = Instant::now();
                entries.retain(|e| e.answered.is_none_or(|at| at + self.window > now));
                if entries.len() < self.limit {
                    let id = self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    entries.push(Entry { id, answered: None });
                    return Permit {
                        log: Some(self.log.clone()),
                        project: project.to_owned(),
                        id,
                    };
                }
                // The first answered request to leave the window frees a place; while
                // every place is in flight, look again shortly.
                entries
                    .iter()
                    .filter_map(|e| e.answered)
                    .min()
                    .map_or(Duration::from_millis(50), |at| (at + self.window) - now)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_the_limit() {
        let limiter = RateLimiter::new(10, Duration::from_secs(100));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..35 {
            drop(limiter.acquire("p").await);
            times.push(Instant::now() - start);
        }
        // Ten at once, then ten more a window later, and so on.
        assert_eq!(times[9], Duration::ZERO);
        assert!(times[10] >= Duration::from_secs(100));
        assert!(times[20] >= Duration::from_secs(200));
        assert!(times[34] >= Duration::from_secs(300));
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(100))
                .count();
            assert!(in_window <= 10);
        }
        // Another project has its own quota.
        let before = Instant::now();
        drop(limiter.acquire("q").await);
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_counts_until_a_window_after_its_answer() {
        let limiter = RateLimiter::new(2, Duration::from_secs(100));
        let start = Instant::now();
        let slow = limiter.acquire("p").await;
        drop(limiter.acquire("p").await);
        // The slow request is answered 30 s later: its place frees 100 s after that.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(slow);
        drop(limiter.acquire("p").await);
        assert!(Instant::now() - start >= Duration::from_secs(100));
        drop(limiter.acquire("p").await);
        assert!(Instant::now() - start >= Duration::from_secs(130));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_it_off() {
        let limiter = RateLimiter::new(0, Duration::from_secs(100));
        let start = Instant::now();
        for _ in 0..10_000 {
            drop(limiter.acquire("p").await);
        }
        assert_eq!(Instant::now(), start);
    }
}
