//! Bodies of the public admin API (`/api/v1`): camelCase, shaped like Microsoft Graph.

use chrono::{DateTime, Utc};
use mdm_domain::{MdmAuthority, Role, TenantId, TokenId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of a list: `value`, and `nextLink` (the URL of the next page) while more remain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// `POST /api/v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenant {
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub mobile_device_management_authority: MdmAuthority,
    pub created_date_time: DateTime<Utc>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
    /// Required for every role but `operator`; an admin's own tenant when omitted.
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    /// Required for the `user` role: the user the token acts for.
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub description: String,
    /// Days until the token stops working; never when omitted.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub id: TokenId,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    pub user_id: Option<UserId>,
    pub description: String,
    pub created_date_time: DateTime<Utc>,
    pub expiration_date_time: Option<DateTime<Utc>>,
    pub revoked_date_time: Option<DateTime<Utc>>,
}

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: Token,
    /// The bearer token. It is not stored and cannot be shown again.
    pub secret: String,
}

/// `GET/PUT /api/v1/organization/mdmAuthority`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MdmAuthorityBody {
    pub mobile_device_management_authority: MdmAuthority,
}

/// `GET/PUT /api/v1/deviceManagement/enrollmentRestrictions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentRestrictions {
    /// 1 to 15.
    pub device_limit_per_user: u8,
    pub platforms: Vec<PlatformRestrictionBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformRestrictionBody {
    pub platform: mdm_domain::Platform,
    pub allowed: bool,
    pub personal_devices_allowed: bool,
}

/// Who agreed to share data with Apple or Google, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSharingConsent {
    /// The token id of the admin who consented.
    pub consented_by: String,
    pub consented_date_time: DateTime<Utc>,
}

/// `PUT /api/v1/deviceManagement/applePushNotificationCertificate`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadPushCertificate {
    /// Base64 of a PKCS#12 file, or PEM text (the certificate, optionally followed by its key).
    pub certificate: String,
    /// The PKCS#12 password.
    #[serde(default)]
    pub password: Option<String>,
    /// The PEM private key, when `certificate` is a PEM certificate without it.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Must be true: uploading the certificate shares data with Apple.
    #[serde(default)]
    pub data_sharing_consent: bool,
    /// Accept a topic that differs from the one devices enrolled with (they will stop
    /// receiving pushes until they enrol again).
    #[serde(default)]
    pub force: bool,
}

impl std::fmt::Debug for UploadPushCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadPushCertificate")
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// `GET /api/v1/deviceManagement/applePushNotificationCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplePushNotificationCertificate {
    pub topic_identifier: String,
    pub certificate_serial_number: String,
    pub expiration_date_time: DateTime<Utc>,
    pub last_modified_date_time: DateTime<Utc>,
    /// Whole days until it expires (negative once expired).
    pub days_to_expiry: i64,
    /// It expires within the warning window (30 days by default) or has expired.
    pub expiring_soon: bool,
    pub data_sharing_consent: DataSharingConsent,
}

/// `POST /api/v1/deviceManagement/androidEnterprise/signupUrl`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AndroidSignupRequest {
    /// The Google Cloud service-account key file (JSON text).
    pub service_account_key: String,
    /// Where Google sends the admin back; this server's callback when omitted.
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub admin_email: Option<String>,
    /// The Pub/Sub topic Google publishes the enterprise's notifications to, set on the
    /// enterprise when the signup completes (`projects/<project>/topics/<topic>`).
    #[serde(default)]
    pub pubsub_topic: Option<String>,
    /// The notification types to enable (all that the server reads when empty).
    #[serde(default)]
    pub notification_types: Vec<String>,
    #[serde(default)]
    pub data_sharing_consent: bool,
}

impl std::fmt::Debug for AndroidSignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndroidSignupRequest")
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AndroidSignupUrl {
    pub name: String,
    pub url: String,
}

/// `PUT /api/v1/deviceManagement/androidEnterprise`: complete a signup with the
/// `enterpriseToken` Google returned, or bind an existing enterprise.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindAndroidEnterprise {
    #[serde(default)]
    pub enterprise_token: Option<String>,
    /// An existing enterprise, `enterprises/LC0...`.
    #[serde(default)]
    pub enterprise_name: Option<String>,
    /// Required unless a signup started with one.
    #[serde(default)]
    pub service_account_key: Option<String>,
    #[serde(default)]
    pub pubsub_topic: Option<String>,
    #[serde(default)]
    pub notification_types: Vec<String>,
    #[serde(default)]
    pub data_sharing_consent: bool,
}

impl std::fmt::Debug for BindAndroidEnterprise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindAndroidEnterprise")
            .field("enterprise_name", &self.enterprise_name)
            .field("pubsub_topic", &self.pubsub_topic)
            .finish_non_exhaustive()
    }
}

/// `GET /api/v1/deviceManagement/androidEnterprise`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AndroidEnterprise {
    /// `notBound`, `pendingSignup` or `bound`.
    pub binding_state: String,
    pub enterprise_name: Option<String>,
    pub pubsub_topic: Option<String>,
    pub notification_types: Vec<String>,
    pub bound_date_time: Option<DateTime<Utc>>,
    pub data_sharing_consent: Option<DataSharingConsent>,
    /// What the binding still lacks before devices enrol and report: `enterprise` (no
    /// enterprise bound yet), `pubsubTopic` (no notification will ever arrive).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// `GET/PUT /api/v1/deviceManagement/windowsEnrollment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowsEnrollment {
    pub automatic_enrollment: bool,
    /// `OnPremise`, `Federated` or `Certificate`.
    pub authentication_policy: crate::internal::enrollment::WindowsAuthPolicy,
    /// SHA-1 thumbprints (hex) of the certificates that may bulk-enrol (Certificate policy).
    #[serde(default)]
    pub bulk_enrollment_certificate_thumbprints: Vec<String>,
    /// Read-only: a bulk provisioning secret is set.
    #[serde(default)]
    pub bulk_enrollment_secret_configured: bool,
}

/// `POST /api/v1/deviceManagement/windowsEnrollment/bulkEnrollmentSecret`: a new
/// provisioning secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentSecret {
    pub secret: String,
}

/// `GET /api/v1/users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub user_principal_name: String,
    pub display_name: String,
    pub licensed: bool,
    pub created_date_time: DateTime<Utc>,
}

/// `POST /api/v1/users`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub user_principal_name: String,
    pub display_name: String,
    /// The user's enrollment password (Windows sign-in during enrollment).
    #[serde(default)]
    pub password: Option<String>,
    /// Assign a licence at once.
    #[serde(default)]
    pub licensed: bool,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("user_principal_name", &self.user_principal_name)
            .field("display_name", &self.display_name)
            .field("licensed", &self.licensed)
            .finish_non_exhaustive()
    }
}

/// `PATCH /api/v1/users/{id}`.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for UpdateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateUser")
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// One action on a device, as `deviceActionResults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceActionResult {
    pub id: mdm_domain::ActionId,
    pub action_name: mdm_domain::ActionKind,
    pub action_state: mdm_domain::ActionState,
    pub start_date_time: DateTime<Utc>,
    pub last_updated_date_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
}

/// A Mac's unlock PIN from its last lock or wipe, while it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockPin {
    pub pin: String,
    pub action_id: mdm_domain::ActionId,
    pub expiration_date_time: DateTime<Utc>,
}

/// `GET /api/v1/deviceManagement/managedDevices[/{id}]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDevice {
    pub id: mdm_domain::DeviceId,
    pub device_name: Option<String>,
    pub operating_system: mdm_domain::Platform,
    pub os_version: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub serial_number: Option<String>,
    pub imei: Option<String>,
    pub managed_device_owner_type: mdm_domain::Ownership,
    pub management_mode: Option<mdm_domain::ManagementMode>,
    pub management_state: mdm_domain::ManagementState,
    pub enrolled_date_time: DateTime<Utc>,
    pub last_sync_date_time: Option<DateTime<Utc>>,
    pub user_id: Option<UserId>,
    pub user_principal_name: Option<String>,
    pub is_passcode_present: Option<bool>,
    pub is_supervised: Option<bool>,
    pub is_encrypted: Option<bool>,
    /// Joined to the directory (Windows Azure AD join).
    pub directory_joined: bool,
    /// Only when one device is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_action_results: Option<Vec<DeviceActionResult>>,
    /// A Mac locked in the last 30 days, to roles that may see it; only when one device is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_pin: Option<LockPin>,
}

/// `GET/PUT /api/v1/deviceManagement/managedDeviceCleanupSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedDeviceCleanupSettings {
    /// Off (`null`), or 90 to 270 days.
    pub device_inactivity_before_retirement_in_days: Option<u16>,
}

/// `GET /api/v1/directory/devices`: a device's record in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryDevice {
    pub id: uuid::Uuid,
    pub display_name: Option<String>,
    pub operating_system: mdm_domain::Platform,
    pub user_id: Option<UserId>,
    /// The managed device, while it is managed.
    pub managed_device_id: Option<mdm_domain::DeviceId>,
    pub registration_date_time: DateTime<Utc>,
}

/// `GET/POST /api/v1/deviceManagement/windowsAutopilotDeviceIdentities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotDeviceIdentity {
    pub id: uuid::Uuid,
    pub serial_number: String,
    pub hardware_identifier: String,
    pub group_tag: Option<String>,
    /// `pending` while the registration is processed, then `registered`.
    pub state: String,
    pub managed_device_id: Option<mdm_domain::DeviceId>,
    pub created_date_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAutopilotDeviceIdentity {
    pub serial_number: String,
    /// The hardware hash, base64.
    pub hardware_identifier: String,
    #[serde(default)]
    pub group_tag: Option<String>,
}

/// `GET/POST /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroup {
    pub id: uuid::Uuid,
    pub display_name: String,
    pub member_count: u32,
    pub created_date_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeviceGroup {
    pub display_name: String,
}

/// `POST /api/v1/deviceManagement/managedDesktopDevices/{id}/remove`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveManagedDesktopDevice {
    #[serde(default)]
    pub also_delete_from_directory_and_management: bool,
}

/// An action as dispatch shows it: in the 202 answer of an action call and in the
/// tenant-wide device actions view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAction {
    #[serde(flatten)]
    pub result: DeviceActionResult,
    pub device_id: mdm_domain::DeviceId,
    pub device_name: Option<String>,
    pub operating_system: mdm_domain::Platform,
    /// The token that asked, or `system`.
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_action_id: Option<mdm_domain::BulkJobId>,
    /// A Mac's unlock PIN, in the answer to the lock (or wipe) that set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_pin: Option<String>,
}

/// `POST .../managedDevices/{id}/remoteLock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteLockRequest {
    /// Shown on the lock screen.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    /// Lock a Mac again although its last unlock PIN was not used.
    #[serde(default)]
    pub force: bool,
}

/// `POST .../managedDevices/{id}/wipe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WipeRequest {
    #[serde(default)]
    pub keep_enrollment_data: bool,
    #[serde(default)]
    pub keep_user_data: bool,
    /// A 6-digit PIN for a Mac; one is generated when omitted.
    #[serde(default)]
    pub mac_os_unlock_code: Option<String>,
    #[serde(default)]
    pub persist_esim_data_plan: bool,
    #[serde(default)]
    pub use_protected_wipe: bool,
}

/// `POST /api/v1/deviceManagement/managedDevices/bulkAction`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkActionRequest {
    pub action: mdm_domain::ActionKind,
    #[serde(default)]
    pub device_ids: Option<Vec<mdm_domain::DeviceId>>,
    #[serde(default)]
    pub filter: Option<crate::internal::inventory::DeviceFilter>,
    #[serde(default)]
    pub parameters: BulkParameters,
}

/// The parameters of a bulk action: those of the single action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkParameters {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub keep_enrollment_data: bool,
    #[serde(default)]
    pub keep_user_data: bool,
    #[serde(default)]
    pub persist_esim_data_plan: bool,
    #[serde(default)]
    pub use_protected_wipe: bool,
}

/// `GET /api/v1/deviceManagement/bulkActions/{id}`: progress in total and per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkAction {
    pub id: mdm_domain::BulkJobId,
    pub action: mdm_domain::ActionKind,
    /// `accepted` (devices not yet checked), `running`, `completed` (every device checked).
    pub state: String,
    pub total_devices: u32,
    /// Devices not yet checked.
    pub pending: u32,
    pub accepted: u32,
    pub refused: u32,
    /// Accepted devices by the state of their action.
    pub action_states: std::collections::BTreeMap<String, u32>,
    /// Refused devices by reason code.
    pub refusals: std::collections::BTreeMap<String, u32>,
    pub requested_by: String,
    pub created_date_time: DateTime<Utc>,
    pub completed_date_time: Option<DateTime<Utc>>,
    /// A page of the devices.
    pub devices: Vec<BulkActionDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkActionDevice {
    pub device_id: mdm_domain::DeviceId,
    /// `pending`, `accepted` or `refused`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<mdm_domain::ActionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_state: Option<mdm_domain::ActionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_detail: Option<String>,
}

/// `GET /api/v1/auditEvents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventView {
    pub id: uuid::Uuid,
    pub activity: String,
    pub activity_date_time: DateTime<Utc>,
    /// The token id of the caller, or `system`.
    pub actor: String,
    pub actor_role: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub device_id: Option<mdm_domain::DeviceId>,
    /// `success` or `refused`.
    pub outcome: String,
    pub detail: serde_json::Value,
    pub remote_address: Option<String>,
}
