//! `[android]`: the adapter's configuration.

use std::time::Duration;

use mdm_runtime::config::Secret;
use serde::Deserialize;

use crate::amapi::{ClientOptions, RetryPolicy};

/// The Android adapter's section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Android Management API's root URL. The OAuth token URL is not set here: it is
    /// the service-account key file's `token_uri`.
    pub api_base_url: String,
    /// Seconds an AMAPI request may take.
    pub request_timeout_secs: u64,
    /// Requests per `rate_limit_window_secs` per Google Cloud project that this process
    /// sends at most (Google's default quota: 1,000 per 100 s). 0 turns the limiter off.
    /// Replicas do not share a count: give each its share.
    pub rate_limit_requests: u32,
    /// The rate limiter's window, in seconds.
    pub rate_limit_window_secs: u64,
    /// Retries of AMAPI calls.
    pub retry: RetryConfig,
    /// How Google's Pub/Sub push requests are authenticated.
    pub pubsub: PubsubConfig,
    /// The Pub/Sub notification types an enterprise is set up with.
    pub notification_types: Vec<String>,
    /// The id of the policy every device gets (`enterprises/<e>/policies/<id>`).
    pub default_policy_id: String,
    /// Seconds an enrollment token lasts when the admin does not say (at most 90 days).
    pub enrollment_token_default_secs: u64,
    /// Milliseconds between the worker's looks at its queue (it is also woken at once
    /// when work arrives).
    pub worker_poll_ms: u64,
    /// AMAPI calls the worker makes at once.
    pub worker_concurrency: usize,
    /// Seconds a worker's claim on a device's or an action's pending work lasts; a
    /// replica that dies frees its claims after this. It must outlast the slowest
    /// attempt: a token refresh, the rate limiter's wait and `request_timeout_secs`.
    pub claim_lease_secs: u64,
    /// Seconds after which a command without news is looked up with `operations.get`.
    pub operation_poll_secs: u64,
    /// Seconds between reconcile runs (`devices.list` against what we know: finds the
    /// devices that left management without telling).
    pub reconcile_interval_secs: u64,
    /// Seconds between batches of "devices seen" sent to inventory.
    pub seen_flush_secs: u64,
    /// Seconds a tenant's binding (enterprise, service-account key) is cached.
    pub binding_cache_secs: u64,
    /// Days that handled Pub/Sub message ids are remembered (Pub/Sub redelivers for at
    /// most 7 days).
    pub receipt_retention_days: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_base_url: "https://androidmanagement.googleapis.com/".into(),
            request_timeout_secs: 30,
            rate_limit_requests: 1000,
            rate_limit_window_secs: 100,
            retry: RetryConfig::default(),
            pubsub: PubsubConfig::default(),
            notification_types: [
                "ENROLLMENT",
                "STATUS_REPORT",
                "COMMAND",
                "USAGE_LOGS",
                "ENTERPRISE_UPGRADE",
            ]
            .map(str::to_owned)
            .to_vec(),
            default_policy_id: "mdm-default".into(),
            enrollment_token_default_secs: 7 * 24 * 3600,
            worker_poll_ms: 500,
            worker_concurrency: 16,
            claim_lease_secs: 120,
            operation_poll_secs: 600,
            reconcile_interval_secs: 3600,
            seen_flush_secs: 30,
            binding_cache_secs: 300,
            receipt_retention_days: 8,
        }
    }
}

/// `[android.retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts of one AMAPI call in all (the worker's retries of a command count).
    pub max_attempts: u32,
    /// Milliseconds before the first retry of a 503 or a timeout; doubled each time.
    pub base_delay_ms: u64,
    /// The longest backoff, in seconds.
    pub max_delay_secs: u64,
    /// Seconds to wait at least after a 429 (Google asks for 60 or more).
    pub rate_limited_delay_secs: u64,
    /// Attempts of an admin-facing call (binding, enrollment tokens) made in place.
    pub inline_attempts: u32,
    /// Seconds an admin-facing call may wait between its attempts.
    pub max_inline_wait_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_ms: 1000,
            max_delay_secs: 600,
            rate_limited_delay_secs: 60,
            inline_attempts: 4,
            max_inline_wait_secs: 10,
        }
    }
}

/// `[android.pubsub]`: the push endpoint `POST /mdm/android/pubsub` accepts a request
/// that carries the shared `token` (`?token=` in the push endpoint's URL), or an OIDC
/// bearer token from Google with the configured audience. At least one must be set;
/// without either, every push is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubsubConfig {
    /// The shared secret in the subscription's push URL (`...?token=<secret>`).
    pub token: Option<Secret>,
    /// The audience of the subscription's OIDC tokens (push authentication).
    pub oidc_audience: Option<String>,
    /// The issuer the OIDC tokens must name.
    pub oidc_issuer: String,
    /// Where Google's signing keys are published (JWKS).
    pub oidc_jwks_url: String,
    /// The service account the subscription signs as (the token's `email`); any when absent.
    pub oidc_email: Option<String>,
    /// Seconds the signing keys are cached.
    pub jwks_cache_secs: u64,
    /// The largest push request accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        Self {
            token: None,
            oidc_audience: None,
            oidc_issuer: "https://accounts.google.com".into(),
            oidc_jwks_url: "https://www.googleapis.com/oauth2/v3/certs".into(),
            oidc_email: None,
            jwks_cache_secs: 3600,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl Config {
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            base_url: self.api_base_url.clone(),
            timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            rate_limit: self.rate_limit_requests,
            rate_window: Duration::from_secs(self.rate_limit_window_secs),
            retry: RetryPolicy {
                max_attempts: self.retry.max_attempts.max(1),
                base_delay: Duration::from_millis(self.retry.base_delay_ms),
                max_delay: Duration::from_secs(self.retry.max_delay_secs),
                rate_limited_delay: Duration::from_secs(self.retry.rate_limited_delay_secs.max(60)),
            },
            max_inline_wait: Duration::from_secs(self.retry.max_inline_wait_secs),
            inline_attempts: self.retry.inline_attempts.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<Config, _> =
            serde_json::from_value(serde_json::json!({"apiBaseUrl": "x"}));
        assert!(parsed.is_err());
        let parsed: Config =
            serde_json::from_value(serde_json::json!({"rate_limit_requests": 0})).unwrap();
        assert_eq!(parsed.rate_limit_requests, 0);
        assert_eq!(parsed.rate_limit_window_secs, 100);
    }

    #[test]
    fn a_429_waits_at_least_a_minute_whatever_the_configuration() {
        let mut config = Config::default();
        config.retry.rate_limited_delay_secs = 5;
        assert_eq!(
            config.client_options().retry.rate_limited_delay,
            Duration::from_secs(60)
        );
    }
}
