//! The Android adapter's internal API (`/internal/v1/android`), which the enrollment
//! service calls to bind an Android Enterprise (the adapter owns every AMAPI call).

use mdm_domain::TenantId;
use serde::{Deserialize, Serialize};

/// `POST /signupUrls`: start the signup flow (AMAPI `signupUrls.create`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSignupUrl {
    pub tenant_id: TenantId,
    /// Where Google sends the admin back, with `enterpriseToken`.
    pub callback_url: String,
    /// The service-account key file (JSON) of the Google Cloud project.
    pub service_account_key: String,
    #[serde(default)]
    pub admin_email: Option<String>,
}

impl std::fmt::Debug for CreateSignupUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSignupUrl")
            .field("tenant_id", &self.tenant_id)
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

/// AMAPI's `SignupUrl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupUrl {
    /// `signupUrls/C...`.
    pub name: String,
    pub url: String,
}

/// `POST /enterprises`: finish the signup (`enterprises.create` with the token Google
/// returned), or attach an existing enterprise (`enterprise_name` set, no token); then
/// set the Pub/Sub topic and notification types (`enterprises.patch`) and the default
/// policy.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindEnterprise {
    pub tenant_id: TenantId,
    pub service_account_key: String,
    #[serde(default)]
    pub signup_url_name: Option<String>,
    #[serde(default)]
    pub enterprise_token: Option<String>,
    /// An enterprise that already exists.
    #[serde(default)]
    pub enterprise_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub pubsub_topic: Option<String>,
    #[serde(default)]
    pub notification_types: Vec<String>,
}

impl std::fmt::Debug for BindEnterprise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindEnterprise")
            .field("tenant_id", &self.tenant_id)
            .field("signup_url_name", &self.signup_url_name)
            .field("enterprise_name", &self.enterprise_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundEnterprise {
    /// `enterprises/LC0...`.
    pub enterprise_name: String,
}
