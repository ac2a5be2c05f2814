//! The store's error type.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL or the database settings are unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// No connection could be had: the database is down, unreachable or saturated.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(#[from] DieselError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database task panicked: {0}")]
    Panicked(String),
    /// A write shared a transaction with others (group commit) and that transaction
    /// failed as a whole; trying again may succeed.
    #[error("the transaction this write belonged to failed: {0}")]
    BatchFailed(String),
}

impl StoreError {
    /// The query found no row.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Query(DieselError::NotFound))
    }

    /// A unique constraint refused the row.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }

    /// The failure may pass if the caller tries again (the database was unreachable, busy,
    /// or a transaction lost a serialization race).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::BatchFailed(_) => true,
            Self::Query(DieselError::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure
                        | DatabaseErrorKind::ClosedConnection
                        | DatabaseErrorKind::UnableToSendCommand
                ) || info.message().contains("database is locked")
            }
            _ => false,
        }
    }
}
