//! The AMAPI resources this adapter sends and reads, in the discovery document's JSON
//! shapes. Requests carry only fields the schemas declare (Google answers 400 to an
//! unknown field); answers are read leniently: every field is optional, unknown ones are
//! ignored, so that a field Google adds or leaves out never breaks a parse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enterprise {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_notification_types: Vec<String>,
    #[serde(default, skip_serializing)]
    pub enterprise_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_identifier: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentToken {
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub value: Option<String>,
    #[serde(default, skip_serializing)]
    pub qr_code: Option<String>,
    #[serde(default, skip_serializing)]
    pub expiration_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// A protobuf Duration: `"86400s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_personal_usage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserFacingMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WipeParams {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wipe_data_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe_reason: Option<UserFacingMessage>,
}

/// `devices.issueCommand`'s body, and the metadata of its operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset_password_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe_params: Option<WipeParams>,
    #[serde(default, skip_serializing)]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing)]
    pub create_time: Option<String>,
}

/// google.rpc.Status inside an operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcStatus {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub done: Option<bool>,
    #[serde(default)]
    pub error: Option<RpcStatus>,
    /// A `Command` with an `@type`.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl Operation {
    /// The command in the metadata, if it reads as one.
    pub fn command(&self) -> Option<Command> {
        self.metadata
            .as_ref()
            .and_then(|m| serde_json::from_value(m.clone()).ok())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareInfo {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareInfo {
    #[serde(default)]
    pub android_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    #[serde(default)]
    pub imei: Option<String>,
    #[serde(default)]
    pub meid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSettings {
    #[serde(default)]
    pub is_device_secure: Option<bool>,
    #[serde(default)]
    pub is_encrypted: Option<bool>,
}

/// The parts of a Device this adapter uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default)]
    pub name: Option<String>,
    /// `DEVICE_OWNER` or `PROFILE_OWNER`.
    #[serde(default)]
    pub management_mode: Option<String>,
    /// `COMPANY_OWNED` or `PERSONALLY_OWNED`.
    #[serde(default)]
    pub ownership: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub api_level: Option<i64>,
    #[serde(default)]
    pub hardware_info: Option<HardwareInfo>,
    #[serde(default)]
    pub software_info: Option<SoftwareInfo>,
    #[serde(default)]
    pub network_info: Option<NetworkInfo>,
    #[serde(default)]
    pub device_settings: Option<DeviceSettings>,
    #[serde(default)]
    pub enrollment_token_name: Option<String>,
    #[serde(default)]
    pub enrollment_token_data: Option<String>,
    #[serde(default)]
    pub enrollment_time: Option<String>,
    #[serde(default)]
    pub last_status_report_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDevicesResponse {
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOperationsResponse {
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// The parts of a BatchUsageLogEvents this adapter uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUsageLogEvents {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub retrieval_time: Option<String>,
    #[serde(default)]
    pub usage_log_events: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUpgradeEvent {
    #[serde(default)]
    pub enterprise: Option<String>,
    #[serde(default)]
    pub upgrade_state: Option<String>,
}

/// The policy every device gets: status reports with what inventory needs.
pub fn default_policy() -> Value {
    serde_json::json!({
        "statusReportingSettings": {
            "softwareInfoEnabled": true,
            "hardwareStatusEnabled": true,
            "networkInfoEnabled": true,
            "deviceSettingsEnabled": true,
            "memoryInfoEnabled": true,
            "powerManagementEventsEnabled": true,
            "systemPropertiesEnabled": false,
            "applicationReportsEnabled": false,
            "displayInfoEnabled": false
        }
    })
}
