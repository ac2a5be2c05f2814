//! AMAPI devices: their management mode, the facts inventory keeps, and the moves of a
//! device through this adapter (enrolling, managed, gone).

use chrono::{DateTime, Utc};
use mdm_api::internal::inventory::{DeviceFacts, DeviceFactsReported, UnenrollReason};
use mdm_domain::{ActionState, DeviceId, EnrollmentId, ManagementMode, OsVersion, Ownership};
use mdm_runtime::outbox::Outbox;
use mdm_store::models::android::DeviceRow;
use mdm_store::{DbConnection, StoreError, to_millis};
use serde::{Deserialize, Serialize};

use crate::adapter::{report, unenrolled};
use crate::amapi::types::Device;
use crate::store::{self, device_state};

/// What an admin asks an enrollment token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Profile {
    /// A personal device with a work profile.
    PersonalWorkProfile,
    /// A company device managed as a whole.
    CorporateFullyManaged,
    /// A company device with a work profile and room for personal use.
    CorporateWorkProfile,
    /// A single-purpose company device without a user.
    Dedicated,
}

impl Profile {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PersonalWorkProfile => "personalWorkProfile",
            Self::CorporateFullyManaged => "corporateFullyManaged",
            Self::CorporateWorkProfile => "corporateWorkProfile",
            Self::Dedicated => "dedicated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::PersonalWorkProfile,
            Self::CorporateFullyManaged,
            Self::CorporateWorkProfile,
            Self::Dedicated,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// The token's `allowPersonalUsage`.
    pub const fn personal_usage(self) -> &'static str {
        match self {
            Self::PersonalWorkProfile | Self::CorporateWorkProfile => "PERSONAL_USAGE_ALLOWED",
            Self::CorporateFullyManaged => "PERSONAL_USAGE_DISALLOWED",
            Self::Dedicated => "PERSONAL_USAGE_DISALLOWED_USERLESS",
        }
    }

    pub const fn ownership(self) -> Ownership {
        match self {
            Self::PersonalWorkProfile => Ownership::Personal,
            _ => Ownership::Company,
        }
    }

    pub const fn mode(self) -> ManagementMode {
        match self {
            Self::PersonalWorkProfile => ManagementMode::WorkProfile,
            Self::CorporateFullyManaged => ManagementMode::FullyManaged,
            Self::CorporateWorkProfile => ManagementMode::CorporateWorkProfile,
            Self::Dedicated => ManagementMode::Dedicated,
        }
    }
}

/// How a device is managed, from what Google reports (`managementMode`, `ownership`)
/// and the profile of the token it enrolled with. A profile owner is a work profile (on
/// a personal or a company device); a device owner is fully managed, or dedicated when
/// its token was for dedicated devices (Google does not tell the two apart).
pub fn mode_of(device: &Device, profile: Option<Profile>) -> (ManagementMode, Ownership) {
    let company = device.ownership.as_deref() == Some("COMPANY_OWNED");
    match device.management_mode.as_deref() {
        Some("PROFILE_OWNER") if company => {
            (ManagementMode::CorporateWorkProfile, Ownership::Company)
        }
        Some("PROFILE_OWNER") => (ManagementMode::WorkProfile, Ownership::Personal),
        Some("DEVICE_OWNER") if profile == Some(Profile::Dedicated) => {
            (ManagementMode::Dedicated, Ownership::Company)
        }
        Some("DEVICE_OWNER") => (ManagementMode::FullyManaged, Ownership::Company),
        // Not reported: trust the token's profile.
        _ => match profile {
            Some(profile) => (profile.mode(), profile.ownership()),
            None if company => (ManagementMode::FullyManaged, Ownership::Company),
            None => (ManagementMode::WorkProfile, Ownership::Personal),
        },
    }
}

/// The facts inventory keeps, from a Device. Absent fields stay absent.
pub fn facts_of(device: &Device) -> DeviceFacts {
    let hardware = device.hardware_info.clone().unwrap_or_default();
    let network = device.network_info.clone().unwrap_or_default();
    let settings = device.device_settings.clone().unwrap_or_default();
    DeviceFacts {
        device_name: None,
        os_version: device
            .software_info
            .as_ref()
            .and_then(|s| s.android_version.as_deref())
            .and_then(|v| v.parse::<OsVersion>().ok()),
        model: hardware
            .model
            .filter(|m| !m.is_empty())
            .map(|m| bounded(&m)),
        manufacturer: hardware
            .manufacturer
            .filter(|m| !m.is_empty())
            .map(|m| bounded(&m)),
        serial_number: hardware
            .serial_number
            .filter(|s| !s.is_empty())
            .map(|s| bounded(&s)),
        imei: network
            .imei
            .or(network.meid)
            .filter(|i| !i.is_empty())
            .map(|i| bounded(&i)),
        is_passcode_present: settings.is_device_secure,
        is_supervised: None,
        is_encrypted: settings.is_encrypted,
        identity_certificate_expires_at: None,
    }
}

fn bounded(text: &str) -> String {
    text.chars().take(128).collect()
}

/// A short, stable digest of facts: whether anything changed since the last report.
pub fn facts_hash(facts: &DeviceFacts) -> String {
    let text = serde_json::to_string(facts).unwrap_or_default();
    hex::encode(&openssl::sha::sha256(text.as_bytes())[..12])
}

/// An RFC 3339 time from AMAPI.
pub fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// What the data of an enrollment token (`additionalData`) says.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenData {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// A device Google enrolled that we do not know yet: recorded as enrolling, for the
/// worker to put through the enrollment gate. Answers the row.
pub fn register(
    c: &mut DbConnection,
    tenant: mdm_domain::TenantId,
    name: &str,
    device: &Device,
    now: DateTime<Utc>,
) -> Result<DeviceRow, StoreError> {
    let token = match device.enrollment_token_name.as_deref() {
        Some(token) => store::token_by_name(c, token)?,
        None => None,
    };
    let data: TokenData = device
        .enrollment_token_data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let profile = token
        .as_ref()
        .and_then(|t| Profile::parse(&t.profile))
        .or_else(|| data.profile.as_deref().and_then(Profile::parse));
    let user = token.as_ref().and_then(|t| t.user_id).or_else(|| {
        data.user
            .as_deref()
            .and_then(|u| u.parse::<mdm_domain::UserId>().ok())
    });
    let (mode, ownership) = mode_of(device, profile);
    let facts = facts_of(device);
    let now_ms = to_millis(now);
    let row = DeviceRow {
        device_id: DeviceId::new(),
        tenant_id: tenant,
        enrollment_id: EnrollmentId::new(),
        amapi_name: name.to_owned(),
        management_mode: mode,
        ownership,
        user_id: if mode == ManagementMode::Dedicated {
            None
        } else {
            user
        },
        enrollment_token_name: device.enrollment_token_name.clone(),
        state: device_state::ENROLLING.to_owned(),
        api_level: device.api_level.and_then(|l| i32::try_from(l).ok()),
        facts_hash: Some(facts_hash(&facts)),
        facts: serde_json::to_string(&facts).ok(),
        last_report_at: parse_time(device.last_status_report_time.as_deref()).map(to_millis),
        seen_at: None,
        seen_sent_at: None,
        attempts: 0,
        next_attempt_at: Some(now_ms),
        lease_until: None,
        last_error: None,
        enrolled_at: parse_time(device.enrollment_time.as_deref()).map_or(now_ms, to_millis),
        updated_at: now_ms,
    };
    store::insert_device(c, &row)?;
    Ok(row)
}

/// New facts from a status report: kept, and sent to inventory when they changed (for a
/// device inventory knows). Answers whether they changed.
pub fn apply_report(
    outbox: &Outbox,
    c: &mut DbConnection,
    row: &DeviceRow,
    device: &Device,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let facts = facts_of(device);
    let hash = facts_hash(&facts);
    let report_at = parse_time(device.last_status_report_time.as_deref());
    let changed = row.facts_hash.as_deref() != Some(hash.as_str());
    let text = serde_json::to_string(&facts).unwrap_or_default();
    let api_level = device
        .api_level
        .and_then(|l| i32::try_from(l).ok())
        .or(row.api_level);
    store::update_facts(
        c,
        row.device_id,
        &text,
        &hash,
        api_level,
        report_at.map(to_millis).or(row.last_report_at),
        to_millis(now),
    )?;
    if row.state == device_state::MANAGED {
        store::mark_seen(c, row.device_id, to_millis(report_at.unwrap_or(now)))?;
        if changed {
            outbox.enqueue(
                c,
                &format!("android:facts:{}:{key}", row.device_id),
                Some(&row.device_id.to_string()),
                &DeviceFactsReported {
                    device_id: row.device_id,
                    facts,
                    at: report_at.unwrap_or(now),
                },
            )?;
        }
    }
    Ok(changed)
}

/// A device left management without our asking (Google answers 404, the device was
/// deleted or reset): it is removed here, its open actions fail, inventory is told.
pub fn vanished(
    outbox: &Outbox,
    c: &mut DbConnection,
    row: &DeviceRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if row.state == device_state::REMOVED || row.state == device_state::REFUSED {
        return Ok(());
    }
    let was_managed = row.state == device_state::MANAGED;
    store::set_device_state(
        c,
        row.device_id,
        device_state::REMOVED,
        None,
        to_millis(now),
    )?;
    end_open_actions(outbox, c, row.device_id, now)?;
    if was_managed {
        unenrolled(outbox, c, row.device_id, UnenrollReason::Vanished, now)?;
    }
    Ok(())
}

/// The device left: actions that wait or were sent end as failed.
pub fn end_open_actions(
    outbox: &Outbox,
    c: &mut DbConnection,
    device: DeviceId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for action in store::open_actions_of(c, device)? {
        let state = ActionState::Failed;
        store::set_phase(
            c,
            action.action_id,
            state.as_str(),
            Some("the device left management"),
            to_millis(now),
        )?;
        report(
            outbox,
            c,
            action.action_id,
            device,
            state,
            Some(("NOT_FOUND", "the device is no longer managed by Google")),
            now,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(mode: &str, ownership: &str) -> Device {
        Device {
            management_mode: Some(mode.into()),
            ownership: Some(ownership.into()),
            ..Device::default()
        }
    }

    #[test]
    fn modes_from_what_google_reports() {
        assert_eq!(
            mode_of(&device("PROFILE_OWNER", "PERSONALLY_OWNED"), None),
            (ManagementMode::WorkProfile, Ownership::Personal)
        );
        assert_eq!(
            mode_of(
                &device("PROFILE_OWNER", "COMPANY_OWNED"),
                Some(Profile::PersonalWorkProfile)
            ),
            (ManagementMode::CorporateWorkProfile, Ownership::Company)
        );
        assert_eq!(
            mode_of(
                &device("DEVICE_OWNER", "COMPANY_OWNED"),
                Some(Profile::Dedicated)
            ),
            (ManagementMode::Dedicated, Ownership::Company)
        );
        assert_eq!(
            mode_of(
                &device("DEVICE_OWNER", "COMPANY_OWNED"),
                Some(Profile::CorporateFullyManaged)
            ),
            (ManagementMode::FullyManaged, Ownership::Company)
        );
        assert_eq!(
            mode_of(&Device::default(), Some(Profile::Dedicated)),
            (ManagementMode::Dedicated, Ownership::Company)
        );
    }

    #[test]
    fn facts_tolerate_missing_fields() {
        let facts = facts_of(&Device::default());
        assert_eq!(facts, DeviceFacts::default());
        let device: Device = serde_json::from_value(serde_json::json!({
            "softwareInfo": {"androidVersion": "14"},
            "hardwareInfo": {"manufacturer": "samsung", "model": "SM-S911B", "serialNumber": "R5C"},
            "networkInfo": {"imei": "350000000000001"},
            "deviceSettings": {"isDeviceSecure": true, "isEncrypted": true},
            "somethingNew": {"x": 1}
        }))
        .unwrap();
        let facts = facts_of(&device);
        assert_eq!(facts.os_version.unwrap().to_string(), "14");
        assert_eq!(facts.manufacturer.as_deref(), Some("samsung"));
        assert_eq!(facts.imei.as_deref(), Some("350000000000001"));
        assert_eq!(facts.is_passcode_present, Some(true));
        assert_ne!(facts_hash(&facts), facts_hash(&DeviceFacts::default()));
    }
}
