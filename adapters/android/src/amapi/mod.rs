//! The Android Management API client: base URL from configuration, OAuth through the
//! service account's key, a client-side rate limiter per project, google.rpc.Status
//! errors, and retries.
//!
//! Two ways to call: [`Amapi::call`] makes one attempt (the worker retries later from its
//! tables, so a crash loses nothing), [`Amapi::call_with_retries`] retries in place for
//! the admin-facing calls (enterprise binding, enrollment tokens), as long as the waits
//! are short; a 429 is never waited out in place but answered at once.

pub mod auth;
pub mod error;
pub mod ratelimit;
pub mod retry;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mdm_runtime::SharedClock;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use auth::Account;
pub use error::{AmapiError, Disposition};
use ratelimit::RateLimiter;
pub use retry::RetryPolicy;

/// The largest answer read from AMAPI.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Waits between in-place retries; tests replace it so that nothing really sleeps.
pub trait Pause: Send + Sync + 'static {
    fn pause(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Sleeps for real.
pub struct Sleep;

impl Pause for Sleep {
    fn pause(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// One AMAPI request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Below the root URL: `v1/enterprises/LC0.../devices/...:issueCommand`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(path)
        }
    }

    pub fn post(path: impl Into<String>, body: &impl Serialize) -> Self {
        Self {
            method: Method::POST,
            body: Some(serde_json::to_value(body).unwrap_or(serde_json::Value::Null)),
            ..Self::get(path)
        }
    }

    pub fn patch(path: impl Into<String>, body: &impl Serialize) -> Self {
        Self {
            method: Method::PATCH,
            ..Self::post(path, body)
        }
    }

    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://androidmanagement.googleapis.com/`.
    pub base_url: String,
    pub timeout: Duration,
    /// Requests per `rate_window` per project; 0 turns the limiter off.
    pub rate_limit: u32,
    pub rate_window: Duration,
    pub retry: RetryPolicy,
    /// In-place retries give up rather than wait longer than this.
    pub max_inline_wait: Duration,
    /// Attempts of an in-place call.
    pub inline_attempts: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            base_url: "https://androidmanagement.googleapis.com/".into(),
            timeout: Duration::from_secs(30),
            rate_limit: 1000,
            rate_window: Duration::from_secs(100),
            retry: RetryPolicy::default(),
            max_inline_wait: Duration::from_secs(10),
            inline_attempts: 4,
        }
    }
}

/// The AMAPI client. Cheap to clone.
#[derive(Clone)]
pub struct Amapi {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    http: reqwest::Client,
    tokens: auth::Tokens,
    limiter: RateLimiter,
    clock: SharedClock,
    pause: Arc<dyn Pause>,
    /// Projects waiting out a 429, until when (by the injected clock).
    cooling: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Amapi {
    pub fn new(
        options: ClientOptions,
        clock: SharedClock,
        pause: Arc<dyn Pause>,
    ) -> Result<Self, AmapiError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| AmapiError::Transport(e.to_string()))?;
        let mut options = options;
        if !options.base_url.ends_with('/') {
            options.base_url.push('/');
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tokens: auth::Tokens::new(options.timeout),
                limiter: RateLimiter::new(options.rate_limit, options.rate_window),
                options,
                http,
                clock,
                pause,
                cooling: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.options.retry
    }

    /// One attempt (plus one with a fresh token after a 401).
    pub async fn call<T: DeserializeOwned>(
        &self,
        account: &Account,
        request: &Request,
    ) -> Result<T, AmapiError> {
        let value = self.send(account, request).await?;
        serde_json::from_value(value).map_err(|e| AmapiError::Decode(e.to_string()))
    }

    /// Retries in place with backoff while the waits are short (503, timeouts); a 429 or
    /// a failure that cannot succeed is answered at once.
    pub async fn call_with_retries<T: DeserializeOwned>(
        &self,
        account: &Account,
        request: &Request,
    ) -> Result<T, AmapiError> {
        let options = &self.inner.options;
        let mut failed = 0u32;
        loop {
            match self.call(account, request).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    failed += 1;
                    let wait = (failed < options.inline_attempts)
                        .then(|| options.retry.delay_random(failed, &error))
                        .flatten()
                        .filter(|w| *w <= options.max_inline_wait);
                    match wait {
                        Some(wait) => {
                            tracing::info!(path = %request.path, error = %error, ?wait, "AMAPI call failed; retrying");
                            self.inner.pause.pause(wait).await;
                        }
                        None => return Err(error),
                    }
                }
            }
        }
    }

    async fn send(
        &self,
        account: &Account,
        request: &Request,
    ) -> Result<serde_json::Value, AmapiError> {
        let project = &account.project_id;
        let now = self.inner.clock.now();
        if let Some(until) = self.cooling_until(project)
            && now < until
        {
            let left = (until - now).to_std().unwrap_or_default();
            return Err(AmapiError::CoolingDown(left));
        }
        let mut fresh = false;
        loop {
            let token = self.inner.tokens.token(account, fresh).await?;
            let permit = self.inner.limiter.acquire(project).await;
            let result = self.attempt(&token, request).await;
            drop(permit);
            match result {
                Err(AmapiError::Status { http: 401, .. }) if !fresh => {
                    // The token was revoked or expired early: get a new one, once.
                    fresh = true;
                }
                Err(error) => {
                    if error.disposition() == Disposition::RateLimited {
                        let wait = self
                            .inner
                            .options
                            .retry
                            .rate_limited_delay
                            .max(match &error {
                                AmapiError::Status { retry_after, .. } => {
                                    retry_after.unwrap_or_default()
                                }
                                _ => Duration::ZERO,
                            });
                        self.cool_down(
                            project,
                            now + chrono::Duration::from_std(wait).unwrap_or_default(),
                        );
                    }
                    return Err(error);
                }
                Ok(value) => return Ok(value),
            }
        }
    }

    async fn attempt(
        &self,
        token: &str,
        request: &Request,
    ) -> Result<serde_json::Value, AmapiError> {
        let url = format!("{}{}", self.inner.options.base_url, request.path);
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), url)
            .bearer_auth(token)
            .query(&request.query);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                AmapiError::Timeout
            } else {
                AmapiError::Transport(without_url(&e))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(response).await?;
        if !(200..300).contains(&status) {
            return Err(AmapiError::from_answer(status, &body, retry_after));
        }
        if body.is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| AmapiError::Decode(e.to_string()))
    }

    fn cooling_until(&self, project: &str) -> Option<DateTime<Utc>> {
        self.inner.cooling.lock().ok()?.get(project).copied()
    }

    fn cool_down(&self, project: &str, until: DateTime<Utc>) {
        if let Ok(mut cooling) = self.inner.cooling.lock() {
            let entry = cooling.entry(project.to_owned()).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
    }
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, AmapiError> {
    let mut response = response;
    if response
        .content_length()
        .is_some_and(|l| l > MAX_ANSWER_BYTES as u64)
    {
        return Err(AmapiError::Decode("the answer is too large".into()));
    }
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                AmapiError::Timeout
            } else {
                AmapiError::Transport(without_url(&e))
            }
        })?;
        let Some(chunk) = chunk else {
            break;
        };
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AmapiError::Decode("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's error text without the URL (whose query could carry a token).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "AMAPI");
    }
    text
}
