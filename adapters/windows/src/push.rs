//! WNS push: an OAuth access token from the configured token URL (client credentials),
//! then a raw notification POSTed to the device's channel URI. The notification only
//! wakes the device; it starts a management session and fetches its commands. Polling
//! stays the fallback when a push fails.
//!
//! Errors are classified as WNS documents them: 200 delivered; 401 (token expired)
//! fetches a new token once; 404 and 410 mean the channel is gone (the device reports a
//! new one at its next session); 406 throttled and 5xx are retried with backoff and
//! jitter, honouring Retry-After; other 4xx are permanent for this notification.

use std::time::Duration;

use mdm_runtime::SharedClock;
use mdm_runtime::config::Secret;
use rand::Rng;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::Config;

/// How one push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// 404 or 410: the channel no longer exists.
    ChannelGone(u16),
    /// Worth trying again after the delay (406 throttled, 5xx, transport errors).
    Retry(String, Option<Duration>),
    /// Will fail the same way again (the token endpoint refused us, 400, 403, 413).
    Failed(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// The WNS client.
pub struct Push {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    hosts: Vec<String>,
    allow_http: bool,
    retry_base: Duration,
    clock: SharedClock,
    token: Mutex<Option<(String, i64)>>,
}

impl Push {
    /// The client, when push is configured.
    pub fn from_config(config: &Config, clock: SharedClock) -> anyhow::Result<Option<Self>> {
        let (Some(client_id), Some(client_secret), Some(_)) = (
            config.wns_client_id.clone(),
            config.wns_client_secret.clone(),
            config.push_pfn.as_ref(),
        ) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.wns_timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        if !config.wns_allow_http && !config.wns_token_url.starts_with("https://") {
            anyhow::bail!("windows.wns_token_url must be https");
        }
        Ok(Some(Self {
            http,
            token_url: config.wns_token_url.clone(),
            client_id,
            client_secret,
            hosts: config
                .wns_channel_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            allow_http: config.wns_allow_http,
            retry_base: Duration::from_millis(config.wns_retry_base_ms.max(1)),
            clock,
            token: Mutex::new(None),
        }))
    }

    /// Whether the server may post to this channel URI: https (or http when allowed) on
    /// one of the configured hosts.
    pub fn channel_allowed(&self, uri: &str) -> bool {
        channel_allowed(uri, &self.hosts, self.allow_http)
    }

    async fn access_token(&self, refresh: bool) -> Result<String, PushOutcome> {
        let now = self.clock.now().timestamp_millis();
        let mut token = self.token.lock().await;
        if !refresh
            && let Some((value, expires)) = token.as_ref()
            && *expires > now
        {
            return Ok(value.clone());
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", "notify.windows.com"),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| PushOutcome::Retry(format!("WNS token request failed: {e}"), None))?;
        let status = response.status();
        if !status.is_success() {
            let outcome = if status.is_server_error() || status.as_u16() == 429 {
                PushOutcome::Retry(format!("the WNS token endpoint answered {status}"), None)
            } else {
                PushOutcome::Failed(format!(
                    "the WNS token endpoint refused the credentials ({status})"
                ))
            };
            return Err(outcome);
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| PushOutcome::Failed(format!("unreadable WNS token answer: {e}")))?;
        // Renew a minute early; a token without a lifetime is kept ten minutes.
        let lifetime = answer.expires_in.unwrap_or(600).clamp(60, 86_400) - 60;
        *token = Some((answer.access_token.clone(), now + lifetime * 1000));
        Ok(answer.access_token)
    }

    /// Sends one raw notification.
    pub async fn send(&self, channel: &str) -> PushOutcome {
        if !self.channel_allowed(channel) {
            return PushOutcome::Failed("the channel URI is not on an allowed WNS host".into());
        }
        let mut refreshed = false;
        loop {
            let token = match self.access_token(refreshed).await {
                Ok(token) => token,
                Err(outcome) => return outcome,
            };
            let response = self
                .http
                .post(channel)
                .bearer_auth(&token)
                .header("X-WNS-Type", "wns/raw")
                .header("X-WNS-Cache-Policy", "cache")
                .header("Content-Type", "application/octet-stream")
                .body(&b"sync"[..])
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(e) => return PushOutcome::Retry(format!("WNS request failed: {e}"), None),
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let description = response
                .headers()
                .get("X-WNS-Error-Description")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return match status {
                200 => PushOutcome::Delivered,
                401 if !refreshed => {
                    refreshed = true;
                    continue;
                }
                404 | 410 => PushOutcome::ChannelGone(status),
                406 | 429 => {
                    PushOutcome::Retry(format!("WNS throttled the channel ({status})"), retry_after)
                }
                500..=599 => {
                    PushOutcome::Retry(format!("WNS answered {status} {description}"), retry_after)
                }
                _ => PushOutcome::Failed(format!("WNS answered {status} {description}")),
            };
        }
    }

    /// Sends with retries (backoff with jitter, at most four attempts). Answers the last
    /// outcome.
    pub async fn send_with_retries(&self, channel: &str) -> PushOutcome {
        let mut attempt: u32 = 0;
        loop {
            let outcome = self.send(channel).await;
            attempt += 1;
            match &outcome {
                PushOutcome::Retry(why, retry_after) if attempt < 4 => {
                    let backoff = self.retry_base.saturating_mul(1 << (attempt - 1));
                    let jitter = rand::rng().random_range(0.5..=1.0);
                    let delay = backoff.mul_f64(jitter).max(retry_after.unwrap_or_default());
                    tracing::debug!(%why, ?delay, "WNS push will be retried");
                    tokio::time::sleep(delay.min(Duration::from_secs(120))).await;
                }
                _ => return outcome,
            }
        }
    }
}

/// See [`Push::channel_allowed`].
pub fn channel_allowed(uri: &str, hosts: &[String], allow_http: bool) -> bool {
    let rest = if let Some(rest) = uri.strip_prefix("https://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("http://").filter(|_| allow_http) {
        rest
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') || uri.len() > 2048 {
        return false;
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host)
        .to_ascii_lowercase();
    hosts
        .iter()
        .any(|allowed| host == *allowed || host.ends_with(&format!(".{allowed}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wns_hosts_are_pushed_to() {
        let hosts = vec!["notify.windows.com".to_owned()];
        assert!(channel_allowed(
            "https://db5p.notify.windows.com/?token=AwYAAAD",
            &hosts,
            false
        ));
        for bad in [
            "http://db5p.notify.windows.com/?token=x",
            "https://evil.com/?notify.windows.com",
            "https://notify.windows.com.evil.com/",
            "https://user@notify.windows.com/",
            "ftp://notify.windows.com/",
        ] {
            assert!(!channel_allowed(bad, &hosts, false), "{bad}");
        }
        let local = vec!["127.0.0.1".to_owned()];
        assert!(channel_allowed("http://127.0.0.1:4000/c/1", &local, true));
        assert!(!channel_allowed("http://127.0.0.1:4000/c/1", &local, false));
    }
}
