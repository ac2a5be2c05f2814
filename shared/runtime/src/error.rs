//! Errors to HTTP: every error answer is RFC 9457 problem+json with a stable code from
//! [`ErrorCode`]. A 5xx answer says nothing about its cause; the cause goes to the log.

use std::fmt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use mdm_api::client::ClientError;
use mdm_api::{ErrorCode, PROBLEM_JSON, Problem};
use mdm_store::StoreError;

/// An error answer of the API.
pub struct ApiError {
    code: ErrorCode,
    detail: Option<String>,
    extensions: serde_json::Map<String, serde_json::Value>,
    /// What went wrong inside, for the log only.
    cause: Option<anyhow::Error>,
    /// A known wait in seconds (`Retry-After`; else 5 on a 503 or 429). Its 503 carries a
    /// detail written for the caller.
    known_wait_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: Some(detail.into()),
            extensions: Default::default(),
            cause: None,
            known_wait_secs: None,
        }
    }

    /// An error with the code's title and no further detail.
    pub fn bare(code: ErrorCode) -> Self {
        Self {
            code,
            detail: None,
            extensions: Default::default(),
            cause: None,
            known_wait_secs: None,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    /// A failure of ours: 500, cause logged, nothing shown.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::bare(ErrorCode::Internal)
        }
    }

    /// Adds a documented member to the problem body.
    /// 503 for a wait whose length is known (a vendor's quota): `Retry-After` says it in
    /// seconds, and `detail`, written for the caller, in words. Other 5xx answers say
    /// nothing but their title.
    pub fn unavailable_for(wait: std::time::Duration, detail: impl Into<String>) -> Self {
        Self {
            known_wait_secs: Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            ..Self::new(ErrorCode::Unavailable, detail)
        }
    }

    pub fn with(mut self, name: &str, value: impl serde::Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.extensions.insert(name.to_owned(), value);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The body this error answers with.
    pub fn problem(&self) -> Problem {
        let server_side = self.code.status() >= 500;
        let detail = if server_side && self.known_wait_secs.is_none() {
            None
        } else {
            self.detail.clone()
        };
        let mut problem = Problem::new(self.code, detail);
        if !server_side {
            problem.extensions = self.extensions.clone();
        }
        problem
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code.as_str())
            .field("detail", &self.detail)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code.as_str())?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, " ({cause:#})")?;
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        // A known wait (a vendor's quota) is expected, not a failure of ours.
        if self.known_wait_secs.is_some() {
            tracing::info!(code = self.code.as_str(), detail = ?self.detail, "asked to wait");
        } else if self.code.status() >= 500 {
            tracing::error!(code = self.code.as_str(), detail = ?self.detail, cause = ?self.cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(PROBLEM_JSON);
        if let Some(secs) = self.known_wait_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        } else if matches!(self.code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        if self.code == ErrorCode::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        // The body was refused unread: the connection cannot carry another request, and a
        // client that is not told so may send its next one on it as it closes.
        if matches!(
            self.code,
            ErrorCode::PayloadTooLarge | ErrorCode::UnsupportedMediaType
        ) {
            response.force_close();
        }
        response.json(self.problem())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_not_found() {
            return Self::bare(ErrorCode::NotFound);
        }
        let code = if error.is_transient() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::Internal
        };
        Self {
            cause: Some(error.into()),
            ..Self::bare(code)
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        StoreError::from(error).into()
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let code = if error.is_transient() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::UpstreamFailed
        };
        Self {
            cause: Some(error.into()),
            ..Self::bare(code)
        }
    }
}

/// The JSON extractor configuration with this server's error answers, for a route that
/// needs another body limit than the listener's (bulk requests).
pub fn json_config(limit: usize) -> web::JsonConfig {
    use actix_web::error::JsonPayloadError;
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _| {
            let api = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::new(ErrorCode::PayloadTooLarge, err.to_string())
                }
                JsonPayloadError::ContentType => {
                    ApiError::new(ErrorCode::UnsupportedMediaType, "expected application/json")
                }
                JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::invalid(e.to_string()),
                JsonPayloadError::Deserialize(e) => {
                    ApiError::new(ErrorCode::InvalidRequest, format!("malformed JSON: {e}"))
                }
                _ => ApiError::new(ErrorCode::InvalidRequest, err.to_string()),
            };
            api.into()
        })
}

/// Extractor configuration whose failures answer problem+json: malformed JSON is 400, a
/// wrong field 422, a body over `json_limit` 413, a wrong content type 415, a malformed
/// path segment (such as an id) 404, a bad query string 400.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, json_limit: usize) {
    use actix_web::error::{PathError, QueryPayloadError};
    cfg.app_data(json_config(json_limit))
        .app_data(
            web::PathConfig::default().error_handler(|err: PathError, _| {
                ApiError::new(ErrorCode::NotFound, format!("no such object ({err})")).into()
            }),
        )
        .app_data(
            web::QueryConfig::default().error_handler(|err: QueryPayloadError, _| {
                ApiError::new(ErrorCode::InvalidRequest, format!("invalid query: {err}")).into()
            }),
        );
}

/// Middleware that turns error answers without a body (an unknown route, a wrong method,
/// a body over a limit) into problem+json, so that every error looks the same.
pub async fn problem_for_bare_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return Ok(response);
    }
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let (req, mut res) = response.into_parts();
    let body = serde_json::to_vec(&Problem::new(code, None)).unwrap_or_default();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let res = res.set_body(BoxBody::new(body));
    Ok(ServiceResponse::new(req, res))
}

/// The answer for routes that match nothing.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such resource"))
}
