//! The enrollment service's errors.

use mdm_api::ErrorCode;
use mdm_api::client::ClientError;
use mdm_runtime::ApiError;
use mdm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist")]
    NotFound(&'static str),
    #[error("{1}")]
    Refused(ErrorCode, String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A service this call needs failed.
    #[error(transparent)]
    Upstream(#[from] ClientError),
}

impl Error {
    pub fn refused(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Refused(code, detail.into())
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::Refused(ErrorCode::ValidationFailed, detail.into())
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(what) => ApiError::not_found(what),
            Error::Refused(code, detail) => ApiError::new(code, detail),
            Error::Store(error) => error.into(),
            Error::Upstream(error) => error.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
