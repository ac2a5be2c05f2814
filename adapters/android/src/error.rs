//! The adapter's errors and their HTTP answers.

use mdm_api::ErrorCode;
use mdm_runtime::ApiError;

use crate::amapi::{AmapiError, Disposition};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Android Enterprise is bound to this tenant")]
    NotBound,
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} does not exist")]
    NotFound(&'static str),
    #[error(transparent)]
    Amapi(#[from] AmapiError),
    #[error(transparent)]
    Store(#[from] mdm_store::StoreError),
    #[error(transparent)]
    Client(#[from] mdm_api::ClientError),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotBound => ApiError::new(
                ErrorCode::AndroidEnterpriseNotBound,
                "bind an Android Enterprise first (androidEnterprise)",
            ),
            Error::NotAllowed(why) => ApiError::new(ErrorCode::AndroidEnrollmentNotAllowed, why),
            Error::Invalid(why) => ApiError::invalid(why),
            Error::NotFound(what) => ApiError::not_found(what),
            Error::Amapi(AmapiError::InvalidKey(why)) => {
                ApiError::new(ErrorCode::AndroidServiceAccountInvalid, why)
            }
            Error::Amapi(refused @ AmapiError::KeyRefused { .. }) => {
                ApiError::new(ErrorCode::AndroidServiceAccountInvalid, refused.to_string())
            }
            // Nothing was sent: the wait is known to the second.
            Error::Amapi(AmapiError::CoolingDown(wait)) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                ApiError::unavailable_for(
                    wait,
                    format!(
                        "Google's request quota for this project is used up; requests resume \
                         in {secs} seconds"
                    ),
                )
            }
            Error::Amapi(error) => match error.disposition() {
                Disposition::Permanent | Disposition::NotFound => ApiError::new(
                    ErrorCode::AndroidRequestRejected,
                    format!("{}: {}", error.code(), google_message(&error)),
                ),
                Disposition::RateLimited | Disposition::Transient => {
                    tracing::warn!(%error, "an admin request to Google failed");
                    ApiError::new(
                        ErrorCode::Unavailable,
                        "Google's Android Management API did not answer; try again shortly",
                    )
                }
            },
            Error::Store(error) => error.into(),
            Error::Client(error) => error.into(),
        }
    }
}

fn google_message(error: &AmapiError) -> String {
    match error {
        AmapiError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
