//! The services and adapters that make up the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A service or adapter: a unit of `mdm serve --only`, a Deployment in Kubernetes, an
/// outbox destination, and the owner of a set of tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Enrollment,
    Inventory,
    Dispatch,
    Apple,
    Android,
    Windows,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Self::Enrollment,
        Self::Inventory,
        Self::Dispatch,
        Self::Apple,
        Self::Android,
        Self::Windows,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enrollment => "enrollment",
            Self::Inventory => "inventory",
            Self::Dispatch => "dispatch",
            Self::Apple => "apple",
            Self::Android => "android",
            Self::Windows => "windows",
        }
    }

    /// The path prefix of this service's internal API.
    pub fn internal_prefix(self) -> String {
        format!("/internal/v1/{}", self.as_str())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown service `{0}`; expected one of: enrollment, inventory, dispatch, apple, android, windows"
)]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownService(s.to_owned()))
    }
}
