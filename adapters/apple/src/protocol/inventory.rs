//! The answers of inventory queries: DeviceInformation, SecurityInfo, ProfileList,
//! ManagedApplicationList and InstalledApplicationList.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ProtocolError, parse};

/// DeviceInformation's QueryResponses, the keys the adapter asks for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeviceInformation {
    #[serde(rename = "DeviceName")]
    pub device_name: Option<String>,
    #[serde(rename = "OSVersion")]
    pub os_version: Option<String>,
    #[serde(rename = "BuildVersion")]
    pub build_version: Option<String>,
    #[serde(rename = "ModelName")]
    pub model_name: Option<String>,
    #[serde(rename = "Model")]
    pub model: Option<String>,
    #[serde(rename = "ProductName")]
    pub product_name: Option<String>,
    #[serde(rename = "SerialNumber")]
    pub serial_number: Option<String>,
    #[serde(rename = "IMEI")]
    pub imei: Option<String>,
    #[serde(rename = "MEID")]
    pub meid: Option<String>,
    #[serde(rename = "IsSupervised")]
    pub is_supervised: Option<bool>,
    #[serde(rename = "UDID")]
    pub udid: Option<String>,
}

#[derive(Deserialize)]
struct DeviceInformationReport {
    #[serde(rename = "QueryResponses")]
    query_responses: DeviceInformation,
}

pub fn parse_device_information(body: &[u8]) -> Result<DeviceInformation, ProtocolError> {
    parse::<DeviceInformationReport>(body).map(|r| r.query_responses)
}

/// SecurityInfo, the keys the adapter uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SecurityInfo {
    #[serde(rename = "PasscodePresent")]
    pub passcode_present: Option<bool>,
    #[serde(rename = "HardwareEncryptionCaps")]
    pub hardware_encryption_caps: Option<i64>,
    #[serde(rename = "FDE_Enabled")]
    pub fde_enabled: Option<bool>,
}

impl SecurityInfo {
    /// iOS encrypts with data protection (block and file level, caps 3) once a passcode
    /// is set; a Mac with FileVault.
    pub fn is_encrypted(&self) -> Option<bool> {
        if let Some(fde) = self.fde_enabled {
            return Some(fde);
        }
        match (self.hardware_encryption_caps, self.passcode_present) {
            (Some(caps), Some(passcode)) => Some(caps & 3 == 3 && passcode),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct SecurityInfoReport {
    #[serde(rename = "SecurityInfo")]
    security_info: SecurityInfo,
}

pub fn parse_security_info(body: &[u8]) -> Result<SecurityInfo, ProtocolError> {
    parse::<SecurityInfoReport>(body).map(|r| r.security_info)
}

/// An installed configuration profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(rename = "PayloadIdentifier")]
    pub identifier: String,
    #[serde(rename = "PayloadUUID", default)]
    pub uuid: String,
    #[serde(rename = "PayloadDisplayName", default)]
    pub display_name: Option<String>,
    #[serde(rename = "IsManaged", default)]
    pub is_managed: Option<bool>,
    /// The types of the profile's payloads.
    #[serde(rename = "PayloadContent", default)]
    pub payloads: Vec<PayloadEntry>,
}

/// One payload of an installed profile, as ProfileList describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadEntry {
    #[serde(rename = "PayloadType", default)]
    pub payload_type: Option<String>,
}

#[derive(Deserialize)]
struct ProfileListReport {
    #[serde(rename = "ProfileList", default)]
    profile_list: Vec<Profile>,
}

pub fn parse_profile_list(body: &[u8]) -> Result<Vec<Profile>, ProtocolError> {
    parse::<ProfileListReport>(body).map(|r| r.profile_list)
}

#[derive(Deserialize)]
struct ManagedApplicationListReport {
    #[serde(rename = "ManagedApplicationList", default)]
    managed_application_list: BTreeMap<String, plist::Value>,
}

/// The bundle identifiers of the apps the MDM installed.
pub fn parse_managed_application_list(body: &[u8]) -> Result<Vec<String>, ProtocolError> {
    parse::<ManagedApplicationListReport>(body)
        .map(|r| r.managed_application_list.into_keys().collect())
}

/// An installed app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstalledApp {
    #[serde(rename = "Identifier")]
    pub identifier: Option<String>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct InstalledApplicationListReport {
    #[serde(rename = "InstalledApplicationList", default)]
    installed_application_list: Vec<InstalledApp>,
}

pub fn parse_installed_application_list(body: &[u8]) -> Result<Vec<InstalledApp>, ProtocolError> {
    parse::<InstalledApplicationListReport>(body).map(|r| r.installed_application_list)
}
