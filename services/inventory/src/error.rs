//! The inventory service's errors.

use mdm_api::ErrorCode;
use mdm_api::client::ClientError;
use mdm_domain::{Refusal, RefusalReason};
use mdm_runtime::ApiError;
use mdm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist")]
    NotFound(&'static str),
    #[error("{1}")]
    Refused(ErrorCode, String),
    /// The capability check refused a device action.
    #[error(transparent)]
    Capability(#[from] Refusal),
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

/// The code a capability refusal answers with: the table's code named like the refusal
/// reason (they are the same stable strings). Should the table lack one, the code of the
/// same status and meaning stands in, and the problem's `reason` member still names it.
pub fn refusal_code(reason: RefusalReason) -> ErrorCode {
    if let Some(code) = ErrorCode::from_code(reason.as_str()) {
        return code;
    }
    match reason {
        RefusalReason::AuthorityDisallowsAction | RefusalReason::HybridAuthorityReadOnly => {
            ErrorCode::AuthorityDisallowsAction
        }
        RefusalReason::ForbiddenForRole => ErrorCode::Forbidden,
        RefusalReason::UserNotLicensed
        | RefusalReason::DeviceNotManaged
        | RefusalReason::DeviceRemovalPending => ErrorCode::Conflict,
        RefusalReason::ActionNotSupported
        | RefusalReason::DeviceHasNoPasscode
        | RefusalReason::RequiresWindows1709
        | RefusalReason::RetireNotOfferedForDirectoryJoined
        | RefusalReason::SelfServiceNotAllowed
        | RefusalReason::InvalidActionOptions => ErrorCode::ValidationFailed,
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(what) => ApiError::not_found(what),
            Error::Refused(code, detail) => ApiError::new(code, detail),
            Error::Capability(refusal) => {
                ApiError::new(refusal_code(refusal.reason), refusal.detail)
                    .with("reason", refusal.reason.as_str())
            }
            Error::Store(error) => error.into(),
            Error::Upstream(error) => error.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_their_own_code_and_status() {
        for reason in RefusalReason::ALL {
            let code = refusal_code(*reason);
            assert_eq!(code.status(), reason.status(), "{reason}");
            assert_eq!(code.as_str(), reason.as_str(), "{reason}");
        }
    }
}
