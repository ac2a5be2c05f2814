//! RFC 9457 problem details, and the table of error codes.

use serde::{Deserialize, Serialize};

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! error_codes {
    ($( $(#[$meta:meta])* $variant:ident = ($status:literal, $code:literal, $title:literal) ),+ $(,)?) => {
        /// Every error the API can answer, with its HTTP status, stable code and title.
        /// Clients branch on `code`; the codes never change meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$meta])* $variant ),+
        }

        impl ErrorCode {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub const fn status(self) -> u16 {
                match self { $(Self::$variant => $status),+ }
            }

            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }

            pub const fn title(self) -> &'static str {
                match self { $(Self::$variant => $title),+ }
            }

            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == code)
            }
        }
    };
}

error_codes! {
    // ---- generic -----------------------------------------------------------------
    InvalidRequest = (400, "invalid_request", "The request is malformed"),
    Unauthorized = (401, "unauthorized", "Authentication is required"),
    Forbidden = (403, "forbidden", "The caller's role does not allow this"),
    NotFound = (404, "not_found", "No such object"),
    MethodNotAllowed = (405, "method_not_allowed", "Method not allowed"),
    Conflict = (409, "conflict", "The request conflicts with the object's state"),
    PayloadTooLarge = (413, "payload_too_large", "The request body is too large"),
    UnsupportedMediaType = (415, "unsupported_media_type", "Unsupported content type"),
    ValidationFailed = (422, "validation_failed", "A field has an invalid value"),
    IdempotencyKeyReused = (422, "idempotency_key_reused",
        "The Idempotency-Key was used before with a different request"),
    IdempotencyKeyInUse = (409, "idempotency_key_in_use",
        "A request with this Idempotency-Key is still in progress"),
    RateLimited = (429, "rate_limited", "Too many requests"),
    Internal = (500, "internal_error", "Internal server error"),
    Unavailable = (503, "service_unavailable", "The service is temporarily unavailable"),
    UpstreamFailed = (502, "upstream_failed", "A service this call depends on failed"),

    // ---- tenants, tokens, authority ----------------------------------------------
    TenantNameTaken = (409, "tenant_name_taken", "A tenant with this name exists"),
    TenantRequired = (400, "tenant_required",
        "An operator token must name the tenant (header X-Mdm-Tenant)"),
    RoleNotGrantable = (403, "role_not_grantable", "The caller may not grant this role"),
    AuthorityDisallowsEnrollment = (409, "authority_disallows_enrollment",
        "The tenant's MDM authority does not allow enrollment"),
    AuthorityDisallowsAction = (409, "authority_disallows_action",
        "The tenant's MDM authority does not allow this action"),
    DataSharingConsentRequired = (422, "data_sharing_consent_required",
        "Turning this on shares data with the platform vendor and needs explicit consent"),

    // ---- enrollment --------------------------------------------------------------
    UserExists = (409, "user_exists", "A user with this principal name exists"),
    UserHasManagedDevices = (409, "user_has_managed_devices",
        "The user still has managed devices: wipe or retire them first, or force"),
    InvalidCertificate = (422, "invalid_certificate", "The certificate cannot be used"),
    PushCertificateTopicMismatch = (409, "push_certificate_topic_mismatch",
        "The certificate's topic differs from the one enrolled devices use"),
    AndroidBindingFailed = (422, "android_binding_failed", "Google refused the Android Enterprise binding"),

    // ---- inventory ---------------------------------------------------------------
    RegistrationPending = (409, "registration_pending",
        "The device's Autopilot registration is still pending: try again once it is registered"),
    AlreadyAGroupMember = (409, "already_a_group_member", "The device is already a member of the group"),
    SerialNumberRegistered = (409, "serial_number_registered", "A device with this serial number is already registered"),

    // ---- dispatch ----------------------------------------------------------------
    // The capability matrix's refusals (mdm_domain::capability::RefusalReason).
    ActionNotSupported = (422, "action_not_supported", "The device cannot do this"),
    DeviceHasNoPasscode = (422, "device_has_no_passcode", "The device has no passcode to lock with"),
    RequiresWindows1709 = (422, "requires_windows_1709",
        "Keeping enrollment data and user accounts needs Windows 10 version 1709 or later"),
    RetireNotOfferedForDirectoryJoined = (422, "retire_not_offered_for_directory_joined",
        "Company data cannot be removed from a Windows 10 device joined to the directory"),
    HybridAuthorityReadOnly = (409, "hybrid_authority_read_only",
        "Under hybrid authority, devices are acted on through the configuration manager"),
    UserNotLicensed = (409, "user_not_licensed", "The device's user has no licence"),
    DeviceNotManaged = (409, "device_not_managed", "The device is no longer managed"),
    DeviceRemovalPending = (409, "device_removal_pending", "The device is already being removed"),
    SelfServiceNotAllowed = (422, "self_service_not_allowed", "This action is not available in self-service"),
    ForbiddenForRole = (403, "forbidden_for_role", "The caller's role may not take this action"),
    InvalidActionOptions = (422, "invalid_action_options", "The action's options contradict each other"),
    // Dispatch's own.
    UnlockPinOutstanding = (409, "unlock_pin_outstanding",
        "The Mac's unlock PIN from an earlier lock has not been used: send force to lock again"),
    ActionNotCancelable = (409, "action_not_cancelable", "The device has already received the action"),
    TooManyDevices = (422, "too_many_devices", "A bulk action takes at most 100,000 devices"),

    // ---- apple -------------------------------------------------------------------
    AppleDeviceAuthenticationFailed = (403, "apple_device_authentication_failed",
        "The device could not be authenticated"),
    AppleEnrollmentRefused = (403, "apple_enrollment_refused",
        "The device may not enrol"),
    AppleMalformedMessage = (400, "apple_malformed_message",
        "The message is not a valid Apple MDM message"),
    AppleUserChannelsDisabled = (410, "apple_user_channels_disabled",
        "User channels are not enabled on this server"),
    AppleCheckInUnsupported = (400, "apple_check_in_unsupported",
        "This server does not support this check-in request"),
    AppleProfileUnavailable = (410, "apple_profile_unavailable",
        "The enrollment profile was already downloaded or has expired"),
    ApplePushCertificateMissing = (409, "apple_push_certificate_missing",
        "The tenant has no APNs push certificate"),
    AppleScepFailed = (400, "apple_scep_failed", "The SCEP request was refused"),
    AppleQueueFull = (409, "apple_queue_full", "The device's command queue is full"),
    AppleDeviceUnknown = (404, "apple_device_unknown",
        "No Apple enrollment is known for this device"),

    // ---- windows -----------------------------------------------------------------
    WindowsDeviceUnauthenticated = (401, "windows_device_unauthenticated",
        "The device's client certificate was not accepted"),
    WindowsMalformedMessage = (400, "windows_malformed_message",
        "The message is not a valid SyncML or SOAP message"),
    WindowsUnsupportedEncoding = (415, "windows_unsupported_encoding",
        "Only application/vnd.syncml.dm+xml is accepted"),

    // ---- android -----------------------------------------------------------------
    AndroidEnterpriseNotBound = (409, "android_enterprise_not_bound",
        "No Android Enterprise is bound to the tenant"),
    AndroidEnrollmentNotAllowed = (409, "android_enrollment_not_allowed",
        "The tenant's MDM authority or enrollment restrictions do not allow this Android enrollment"),
    AndroidRequestRejected = (422, "android_request_rejected",
        "Google's Android Management API refused the request"),
    AndroidServiceAccountInvalid = (422, "android_service_account_invalid",
        "The Google service-account key is not usable"),
}

/// An error body: RFC 9457 problem details with a stable `code`, plus optional
/// members that a specific error documents (for example `devices` with
/// `user_has_managed_devices`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub code: String,
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// Written out rather than derived: `code` lists the error-code table, and the members
/// that specific errors add are allowed.
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::ObjectBuilder;
        use utoipa::openapi::schema::{AdditionalProperties, Type};
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "RFC 9457 problem details with a stable machine-readable `code`; some codes \
                 add members of their own (for example `devices`).",
            ))
            .property("type", text("A URI naming the problem type."))
            .property("title", text("The code's title."))
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("The HTTP status.")),
            )
            .property("detail", text("What happened, in words, for this request."))
            .property(
                "code",
                text("The stable error code; clients branch on it.")
                    .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str()))),
            )
            .required("type")
            .required("title")
            .required("status")
            .required("code")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Problem {}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<Option<String>>) -> Self {
        Self {
            type_uri: format!("https://mdm.invalid/problems/{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code: code.as_str().to_owned(),
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds a documented extension member.
    pub fn with(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(name.to_owned(), value);
        self
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(
                seen.insert(code.as_str()),
                "duplicate code {}",
                code.as_str()
            );
            assert!((400..600).contains(&code.status()));
            assert!(
                code.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn serializes_as_rfc9457() {
        let problem = Problem::new(ErrorCode::NotFound, Some("no device 42".into()))
            .with("id", serde_json::json!("42"));
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "https://mdm.invalid/problems/not_found");
        assert_eq!(json["status"], 404);
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["detail"], "no device 42");
        assert_eq!(json["id"], "42");
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, problem);
    }
}
