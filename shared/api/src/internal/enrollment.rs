//! The enrollment service's internal API (`/internal/v1/enrollment`): the enrollment
//! gate, tenant policy, users, and the device-identity CA.

use chrono::{DateTime, Utc};
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementMode, MdmAuthority, Ownership, Platform, TenantId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::service::Service;

/// `POST /gate`: may these devices enrol? One check per device, answered in order.
/// Adapters batch concurrent enrollments into one call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRequest {
    pub checks: Vec<GateCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    pub tenant_id: TenantId,
    pub platform: Platform,
    pub ownership: Ownership,
    #[serde(default)]
    pub management_mode: Option<ManagementMode>,
    /// The user the device enrols for; `None` for userless devices (kiosks, bulk).
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// Set when a known device enrols again: it already holds its slot.
    #[serde(default)]
    pub device_id: Option<DeviceId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResponse {
    pub decisions: Vec<GateDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateDecision {
    pub allowed: bool,
    /// Why not, when not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<GateDenial>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The user's principal name, for the inventory record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
}

impl GateDecision {
    pub fn allow(user_principal_name: Option<String>) -> Self {
        Self {
            allowed: true,
            denial: None,
            detail: None,
            user_principal_name,
        }
    }

    pub fn deny(denial: GateDenial, detail: impl Into<String>) -> Self {
        Self {
            allowed: false,
            denial: Some(denial),
            detail: Some(detail.into()),
            user_principal_name: None,
        }
    }
}

/// Why the gate refused an enrollment. Adapters turn each into their protocol's own
/// refusal; the codes match the API's problem codes where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateDenial {
    TenantUnknown,
    /// The tenant's MDM authority is `none`.
    AuthorityDisallowsEnrollment,
    /// The platform's prerequisite (an APNs certificate, an Android Enterprise binding,
    /// Windows enrollment turned on) is missing or expired.
    PrerequisiteMissing,
    /// The tenant's restrictions block this platform (or macOS under office365).
    PlatformNotAllowed,
    PersonalDevicesNotAllowed,
    UserUnknown,
    UserNotLicensed,
    DeviceLimitReached,
}

impl GateDenial {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TenantUnknown => "tenant_unknown",
            Self::AuthorityDisallowsEnrollment => "authority_disallows_enrollment",
            Self::PrerequisiteMissing => "prerequisite_missing",
            Self::PlatformNotAllowed => "platform_not_allowed",
            Self::PersonalDevicesNotAllowed => "personal_devices_not_allowed",
            Self::UserUnknown => "user_unknown",
            Self::UserNotLicensed => "user_not_licensed",
            Self::DeviceLimitReached => "device_limit_reached",
        }
    }
}

/// `GET /tenants/{tenantId}/policy`: what other services need to know of a tenant.
/// Readers cache it briefly; `enrollment.policy_changed` messages invalidate the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicy {
    pub tenant_id: TenantId,
    pub authority: MdmAuthority,
    pub device_limit_per_user: u8,
    pub platforms: Vec<PlatformRestriction>,
    /// The APNs topic of the tenant's push certificate, when one is uploaded.
    #[serde(default)]
    pub apple_push_topic: Option<String>,
    /// `enterprises/...` when Android Enterprise is bound.
    #[serde(default)]
    pub android_enterprise: Option<String>,
    pub windows_enrollment_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformRestriction {
    pub platform: Platform,
    pub allowed: bool,
    pub personal_allowed: bool,
}

/// Sent to every service that caches tenant policy when it changes (authority,
/// restrictions, prerequisites): one message per consumer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChanged {
    pub tenant_id: TenantId,
    /// The service whose cache this clears.
    pub consumer: Service,
}

/// The services that cache tenant policy.
pub const POLICY_CONSUMERS: [Service; 2] = [Service::Dispatch, Service::Inventory];

/// `POST /users/lookup`: the users' licence state, for the capability check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersLookup {
    pub tenant_id: TenantId,
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersLookupResponse {
    /// Only users that exist in the tenant are listed.
    pub users: Vec<UserState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserState {
    pub user_id: UserId,
    pub user_principal_name: String,
    pub licensed: bool,
}

/// `POST /ca/sign`: have the device-identity CA sign a device's CSR.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignRequest {
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    #[serde(default)]
    pub enrollment_id: Option<EnrollmentId>,
    /// The PKCS#10 request, DER, base64.
    pub csr: String,
    /// The subject common name to issue (the CSR's own subject is not trusted).
    pub common_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCertificate {
    /// Hex of the 128-bit serial number.
    pub serial: String,
    /// DER, base64.
    pub certificate: String,
    /// The CA certificate, DER, base64.
    pub ca_certificate: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// `POST /ca/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest {
    pub serial: String,
    pub reason: String,
}

// Dispatch caches tenant policy for the capability check, inventory for the
// authority shown with each device.
impl crate::internal::Message for PolicyChanged {
    const KIND: &'static str = "enrollment.policy_changed";
    fn destination(&self) -> Service {
        self.consumer
    }
}

/// `GET /tenants/{tenantId}/apple/pushCertificate`: the tenant's APNs certificate and
/// key, for the Apple adapter's push client. 404 when none is uploaded.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushCertificate {
    /// `com.apple.mgmt.External.<uuid>`, from the certificate's UID attribute.
    pub topic: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for PushCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushCertificate")
            .field("topic", &self.topic)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// `GET /tenants/{tenantId}/windows`: how Windows devices of the tenant may enrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsEnrollmentSettings {
    /// Automatic (user-driven) enrollment is on.
    pub automatic_enrollment: bool,
    /// The authentication policy that discovery announces.
    pub auth_policy: WindowsAuthPolicy,
    /// Bulk enrollment (provisioning packages) is set up.
    pub bulk_enrollment: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WindowsAuthPolicy {
    OnPremise,
    Federated,
    Certificate,
}

/// `POST /users/resolve`: which tenant and user a principal name belongs to (Windows
/// discovery knows only the e-mail address). 404 when nobody has that name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveUser {
    pub user_principal_name: String,
}

/// `POST /users/authenticate`: checks a user's enrollment password (Windows OnPremise
/// UsernameToken, the Federated sign-in page). 401 when it does not match.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateUser {
    pub user_principal_name: String,
    pub password: String,
}

impl std::fmt::Debug for AuthenticateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateUser")
            .field("user_principal_name", &self.user_principal_name)
            .finish_non_exhaustive()
    }
}

/// The answer of `/users/resolve` and `/users/authenticate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedUser {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub user_principal_name: String,
    pub licensed: bool,
}

/// `POST /windows/bulk/authenticate`: bulk enrollment credentials, either the
/// provisioning secret (OnPremise) or the thumbprint of the client certificate
/// (Certificate policy). Answers the tenant, or 401.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkAuthenticate {
    #[serde(default)]
    pub secret: Option<String>,
    /// SHA-1 thumbprint, hex.
    #[serde(default)]
    pub certificate_thumbprint: Option<String>,
}

impl std::fmt::Debug for BulkAuthenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkAuthenticate")
            .field("certificate_thumbprint", &self.certificate_thumbprint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkTenant {
    pub tenant_id: TenantId,
}

/// `GET /tenants/{tenantId}/android`: the tenant's Android Enterprise binding, for the
/// Android adapter's AMAPI client. 404 when not bound.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AndroidBinding {
    /// `enterprises/LC0...`.
    pub enterprise_name: String,
    /// The Google service-account key file (JSON), including its `token_uri`.
    pub service_account_key: String,
    /// `projects/<p>/topics/<t>` for Pub/Sub notifications, when configured.
    #[serde(default)]
    pub pubsub_topic: Option<String>,
    #[serde(default)]
    pub notification_types: Vec<String>,
}

impl std::fmt::Debug for AndroidBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndroidBinding")
            .field("enterprise_name", &self.enterprise_name)
            .field("pubsub_topic", &self.pubsub_topic)
            .finish_non_exhaustive()
    }
}
