//! Newtype identifiers. Each wraps a UUID; new ones are version 7 (time-ordered), so that
//! they sort by creation time and index well. On the wire they are the usual hyphenated
//! text form; in the database they are 16 bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The text did not hold a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid id")]
pub struct InvalidId(pub String);

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "diesel", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Binary))]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Reads the 16-byte form stored in the database.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidId> {
                Uuid::from_slice(bytes)
                    .map(Self)
                    .map_err(|_| InvalidId(format!("{} bytes", bytes.len())))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId(s.to_owned()))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, schema::Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        #[cfg(feature = "diesel")]
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Binary, DB> for $name
        where
            DB: diesel::backend::Backend,
            [u8]: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                <[u8] as diesel::serialize::ToSql<diesel::sql_types::Binary, DB>>::to_sql(
                    self.0.as_bytes().as_slice(),
                    out,
                )
            }
        }

        #[cfg(feature = "diesel")]
        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Binary, DB> for $name
        where
            DB: diesel::backend::Backend,
            Vec<u8>: diesel::deserialize::FromSql<diesel::sql_types::Binary, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let raw = <Vec<u8> as diesel::deserialize::FromSql<
                    diesel::sql_types::Binary,
                    DB,
                >>::from_sql(bytes)?;
                Ok(Self::from_slice(&raw)?)
            }
        }
    };
}

define_id!(
    /// An organisation using the server; every object belongs to exactly one.
    TenantId
);
define_id!(
    /// A directory user of a tenant.
    UserId
);
define_id!(
    /// A managed device (the inventory record), the same id across all services.
    DeviceId
);
define_id!(
    /// One remote action on one device.
    ActionId
);
define_id!(
    /// One enrollment of a device with a platform adapter.
    EnrollmentId
);
define_id!(
    /// A bulk action job over many devices.
    BulkJobId
);
define_id!(
    /// An API token (the public part; the secret is separate and only stored hashed).
    TokenId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let id = DeviceId::new();
        let parsed: DeviceId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert_eq!(id.to_string().len(), 36);
    }

    #[test]
    fn byte_form_round_trips() {
        let id = TenantId::new();
        assert_eq!(TenantId::from_slice(id.as_bytes()).unwrap(), id);
        assert!(TenantId::from_slice(&[1, 2, 3]).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            "not-an-id".parse::<UserId>(),
            Err(InvalidId("not-an-id".to_owned()))
        );
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let ids: Vec<ActionId> = (0..100).map(|_| ActionId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = EnrollmentId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<EnrollmentId>(&json).unwrap(), id);
    }
}
