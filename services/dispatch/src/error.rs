//! The dispatch service's errors.

use mdm_api::ErrorCode;
use mdm_api::client::ClientError;
use mdm_domain::capability::Refusal;
use mdm_runtime::ApiError;
use mdm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist")]
    NotFound(&'static str),
    /// The action may not be taken; nothing was sent.
    #[error("{1}")]
    Refused(ErrorCode, String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] ClientError),
}

impl Error {
    pub fn refused(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Refused(code, detail.into())
    }

    /// The stable code of a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused(code, _) => Some(*code),
            Self::NotFound(_) => Some(ErrorCode::NotFound),
            _ => None,
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        let code =
            ErrorCode::from_code(refusal.reason.as_str()).unwrap_or(ErrorCode::ActionNotSupported);
        Self::Refused(code, refusal.detail)
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

#[cfg(test)]
mod tests {
    use mdm_domain::capability::RefusalReason;

    use super::*;

    #[test]
    fn every_refusal_has_its_problem_code_with_the_same_status() {
        for reason in RefusalReason::ALL {
            let code = ErrorCode::from_code(reason.as_str())
                .unwrap_or_else(|| panic!("no code for {reason}"));
            assert_eq!(code.status(), reason.status(), "{reason}");
        }
    }
}
