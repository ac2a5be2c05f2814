//! AMAPI failures: google.rpc.Status answers parsed into a typed error, and what each
//! means for retrying.

use std::time::Duration;

use serde::Deserialize;

/// A failed AMAPI call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AmapiError {
    /// Google answered with a google.rpc.Status.
    #[error("AMAPI answered {http} {status}: {message}")]
    Status {
        http: u16,
        /// The google.rpc.Code name (`NOT_FOUND`, `RESOURCE_EXHAUSTED`, ...).
        status: String,
        message: String,
        /// From a `Retry-After` header, when Google sent one.
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    #[error("AMAPI did not answer in time")]
    Timeout,
    /// The connection failed.
    #[error("AMAPI could not be reached: {0}")]
    Transport(String),
    /// The project is waiting out a 429: nothing was sent.
    #[error("the project's AMAPI quota is exhausted; waiting {0:?} before the next request")]
    CoolingDown(Duration),
    /// An access token could not be had from the OAuth server.
    #[error("no OAuth access token: {0}")]
    Token(String),
    /// Google's OAuth server refused the service-account key (`invalid_grant`: a key that
    /// was deleted or disabled, or a signature it does not accept). Permanent until the
    /// admin uploads another key.
    #[error("Google refused the service-account key {key}: {reason}")]
    KeyRefused { key: String, reason: String },
    /// The service-account key is not usable.
    #[error("the service-account key is not usable: {0}")]
    InvalidKey(String),
    /// The answer was not what the API documents.
    #[error("AMAPI sent an answer that could not be read: {0}")]
    Decode(String),
}

/// How a failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The object does not exist (any more): a device that left management.
    NotFound,
    /// The project's quota is exhausted: wait at least a minute.
    RateLimited,
    /// Worth trying again after a backoff.
    Transient,
    /// Will fail the same way again (400, 403, a bad key).
    Permanent,
}

impl AmapiError {
    /// Reads a non-2xx answer's body as google.rpc.Status.
    pub fn from_answer(http: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Status,
        }
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            message: String,
            #[serde(default)]
            status: String,
        }
        let (status, message) = match serde_json::from_slice::<Envelope>(body) {
            Ok(envelope) => (envelope.error.status, envelope.error.message),
            Err(_) => (String::new(), String::new()),
        };
        let status = if status.is_empty() {
            default_status(http).to_owned()
        } else {
            status
        };
        // Google's messages are short; keep the log line bounded anyway.
        let message: String = message.chars().take(300).collect();
        Self::Status {
            http,
            status,
            message,
            retry_after,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Status { http, message, .. } => {
                let gone = message.contains("no longer being managed")
                    || message.contains("entity was not found");
                match http {
                    404 => Disposition::NotFound,
                    // The quirk: a 500 INTERNAL that means "not found".
                    500 if gone => Disposition::NotFound,
                    400 if gone => Disposition::NotFound,
                    429 => Disposition::RateLimited,
                    408 | 500 | 502 | 503 | 504 => Disposition::Transient,
                    401 => Disposition::Transient,
                    _ => Disposition::Permanent,
                }
            }
            Self::CoolingDown(_) => Disposition::RateLimited,
            Self::Timeout | Self::Transport(_) | Self::Token(_) => Disposition::Transient,
            Self::InvalidKey(_) | Self::KeyRefused { .. } | Self::Decode(_) => {
                Disposition::Permanent
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.disposition() == Disposition::NotFound
    }

    /// The google.rpc status name, or a short name for local failures (for reports).
    pub fn code(&self) -> String {
        match self {
            Self::Status { status, .. } => status.clone(),
            Self::Timeout => "DEADLINE_EXCEEDED".into(),
            Self::Transport(_) => "UNAVAILABLE".into(),
            Self::CoolingDown(_) => "RESOURCE_EXHAUSTED".into(),
            Self::Token(_) => "UNAUTHENTICATED".into(),
            Self::InvalidKey(_) | Self::KeyRefused { .. } => "INVALID_SERVICE_ACCOUNT_KEY".into(),
            Self::Decode(_) => "INVALID_RESPONSE".into(),
        }
    }
}

fn default_status(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(http: u16, body: &str) -> AmapiError {
        AmapiError::from_answer(http, body.as_bytes(), None)
    }

    #[test]
    fn parses_google_rpc_status() {
        let error = answer(
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(error.code(), "RESOURCE_EXHAUSTED");
        assert_eq!(error.disposition(), Disposition::RateLimited);
        assert!(error.to_string().contains("Quota exceeded"));
    }

    #[test]
    fn classifies_each_answer() {
        assert_eq!(answer(404, "{}").disposition(), Disposition::NotFound);
        assert_eq!(answer(503, "").disposition(), Disposition::Transient);
        assert_eq!(
            answer(400, r#"{"error":{"message":"bad"}}"#).disposition(),
            Disposition::Permanent
        );
        assert_eq!(answer(403, "{}").disposition(), Disposition::Permanent);
        assert_eq!(
            answer(
                500,
                r#"{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}"#
            )
            .disposition(),
            Disposition::Transient
        );
        assert_eq!(
            answer(500, r#"{"error":{"code":500,"message":"Requested entity was not found.","status":"INTERNAL"}}"#).disposition(),
            Disposition::NotFound
        );
        assert_eq!(
            answer(400, r#"{"error":{"code":400,"message":"Device is no longer being managed.","status":"FAILED_PRECONDITION"}}"#).disposition(),
            Disposition::NotFound
        );
        assert_eq!(answer(418, "not json at all").code(), "UNKNOWN");
    }
}
