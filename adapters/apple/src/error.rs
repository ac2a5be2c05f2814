//! What a device or a caller is answered when something goes wrong.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mdm_api::ErrorCode;
use mdm_runtime::ApiError;
use mdm_store::StoreError;

use crate::auth::AuthError;
use crate::protocol::ProtocolError;

/// Errors of the device endpoints. None answers 401 (a 401 on check-in can make a device
/// unenrol); authentication failures answer 403 without saying which check failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device not authenticated: {0}")]
    Unauthenticated(#[from] AuthError),
    /// The certificate is valid but bound to another enrollment, or to none.
    #[error("the certificate is not bound to this device")]
    NotBound,
    #[error("malformed message: {0}")]
    Malformed(#[from] ProtocolError),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The enrollment ended (checked out, wiped, retired, removed): Apple's
    /// ErrorUnrecognizedDevice, which makes the device unenrol.
    #[error("unrecognised device")]
    Unrecognized,
    #[error("enrollment refused: {0}")]
    Refused(String),
    #[error("user channels are turned off")]
    UserChannelsDisabled,
    #[error("unsupported check-in request")]
    Unsupported,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the enrollment service could not answer: {0}")]
    Upstream(String),
}

impl DeviceError {
    fn api(&self) -> ApiError {
        match self {
            Self::Unauthenticated(_) | Self::NotBound => {
                ApiError::bare(ErrorCode::AppleDeviceAuthenticationFailed)
            }
            Self::Malformed(e) => ApiError::new(ErrorCode::AppleMalformedMessage, e.to_string()),
            Self::TooLarge(limit) => ApiError::new(
                ErrorCode::AppleMalformedMessage,
                format!("the body is larger than {limit} bytes"),
            ),
            Self::Unrecognized => ApiError::bare(ErrorCode::AppleDeviceUnknown),
            Self::Refused(detail) => {
                ApiError::new(ErrorCode::AppleEnrollmentRefused, detail.clone())
            }
            Self::UserChannelsDisabled => ApiError::bare(ErrorCode::AppleUserChannelsDisabled),
            Self::Unsupported => ApiError::bare(ErrorCode::AppleCheckInUnsupported),
            Self::Store(e) => ApiError::internal(anyhow::anyhow!("{e}")).with_code_of(e),
            Self::Upstream(e) => ApiError::new(ErrorCode::Unavailable, e.clone()),
        }
    }
}

/// Picks 503 for transient store failures.
trait CodeOf {
    fn with_code_of(self, error: &StoreError) -> ApiError;
}

impl CodeOf for ApiError {
    fn with_code_of(self, error: &StoreError) -> ApiError {
        if error.is_transient() {
            tracing::warn!(%error, "device request failed: database busy or unavailable");
            ApiError::bare(ErrorCode::Unavailable)
        } else {
            self
        }
    }
}

impl ResponseError for DeviceError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unrecognized => StatusCode::FORBIDDEN,
            other => other.api().status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Unrecognized => HttpResponse::Forbidden()
                .content_type("application/json")
                .body(
                    r#"{"code":"com.apple.unrecognized.device","description":"This device is no longer managed by this server."}"#,
                ),
            Self::Unauthenticated(reason) => {
                tracing::info!(%reason, "device request not authenticated");
                self.api().error_response()
            }
            other => other.api().error_response(),
        }
    }
}
