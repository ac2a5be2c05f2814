//! When to try an AMAPI call again: exponential backoff with jitter for 503s and
//! timeouts, at least a minute after a 429 (Google's rule), never for what cannot succeed.

use std::time::Duration;

use rand::Rng;

use super::error::{AmapiError, Disposition};

/// The retry rules.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The least wait after a 429.
    pub rate_limited_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            rate_limited_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1` after `failed` attempts ended in `error`, or
    /// `None` when trying again cannot help or the attempts are used up. `jitter` is a
    /// factor in [0, 1]: the backoff is scaled into [0.5, 1] of its value so that calls
    /// that failed together do not return together; a 429 wait only grows with it.
    pub fn delay(&self, failed: u32, error: &AmapiError, jitter: f64) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        match error.disposition() {
            Disposition::NotFound | Disposition::Permanent => None,
            Disposition::RateLimited => {
                let asked = match error {
                    AmapiError::Status { retry_after, .. } => retry_after.unwrap_or_default(),
                    AmapiError::CoolingDown(left) => *left,
                    _ => Duration::ZERO,
                };
                let least = self.rate_limited_delay.max(asked);
                // Up to a quarter more, so that a project's callers spread out.
                Some(least + least.mul_f64(0.25 * jitter))
            }
            Disposition::Transient => {
                let exponent = failed.saturating_sub(1).min(20);
                let backoff = self
                    .base_delay
                    .saturating_mul(1u32 << exponent)
                    .min(self.max_delay);
                Some(backoff.mul_f64(0.5 + 0.5 * jitter))
            }
        }
    }

    /// [`RetryPolicy::delay`] with a random jitter.
    pub fn delay_random(&self, failed: u32, error: &AmapiError) -> Option<Duration> {
        self.delay(failed, error, rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(http: u16) -> AmapiError {
        AmapiError::from_answer(http, b"{}", None)
    }

    #[test]
    fn rate_limits_wait_at_least_a_minute() {
        let policy = RetryPolicy::default();
        for jitter in [0.0, 0.5, 1.0] {
            let wait = policy.delay(1, &status(429), jitter).unwrap();
            assert!(wait >= Duration::from_secs(60), "{wait:?}");
            assert!(wait <= Duration::from_secs(75), "{wait:?}");
        }
        let asked = AmapiError::from_answer(429, b"{}", Some(Duration::from_secs(120)));
        assert!(policy.delay(1, &asked, 0.0).unwrap() >= Duration::from_secs(120));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, &status(503), 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy.delay(3, &status(503), 1.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            policy.delay(3, &status(503), 0.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.delay(7, &AmapiError::Timeout, 1.0),
            Some(Duration::from_secs(64))
        );
        let capped = RetryPolicy {
            max_attempts: 100,
            ..policy.clone()
        };
        assert_eq!(
            capped.delay(40, &status(503), 1.0),
            Some(Duration::from_secs(600))
        );
        assert_eq!(policy.delay(8, &status(503), 1.0), None);
    }

    #[test]
    fn what_cannot_succeed_is_not_retried() {
        let policy = RetryPolicy::default();
        for http in [400, 403, 404] {
            assert_eq!(policy.delay(1, &status(http), 0.5), None, "{http}");
        }
        assert_eq!(
            policy.delay(1, &AmapiError::InvalidKey("x".into()), 0.5),
            None
        );
    }
}
