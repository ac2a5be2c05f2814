//! Simulated Android devices: provisioned with an enrollment token into the management
//! mode the token and the device's setup lead to, reporting status through Pub/Sub, and
//! carrying out commands the way Android Device Policy does (refusing those their
//! management mode or API level does not allow).

use std::sync::Arc;

use serde_json::{Value, json};

use super::google::{Inner, MockGoogle, Pushed, random_id, rfc3339};

/// How the device was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The user's own phone: Android Device Policy from the enrollment link.
    PersonalDevice,
    /// A factory-new company device: QR code (or zero-touch) at the setup wizard.
    CompanyDevice,
}

/// What the device reports about itself.
#[derive(Debug, Clone)]
pub struct Hardware {
    pub brand: String,
    pub manufacturer: String,
    pub model: String,
    pub serial_number: String,
    pub imei: String,
    pub android_version: String,
    pub api_level: i64,
    pub secure: bool,
    pub encrypted: bool,
}

impl Hardware {
    /// A Google Pixel 8 on Android 14.
    pub fn pixel() -> Self {
        Self {
            brand: "google".into(),
            manufacturer: "Google".into(),
            model: "Pixel 8".into(),
            serial_number: format!("3B{}", random_id(10).to_uppercase()),
            imei: format!("35{:013}", rand::random::<u64>() % 10_000_000_000_000),
            android_version: "14".into(),
            api_level: 34,
            secure: true,
            encrypted: true,
        }
    }

    /// A Samsung Galaxy on Android 13.
    pub fn samsung() -> Self {
        Self {
            brand: "samsung".into(),
            manufacturer: "samsung".into(),
            model: "SM-S911B".into(),
            android_version: "13".into(),
            api_level: 33,
            ..Self::pixel()
        }
    }
}

/// What happened to a device, for tests to look at.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub online: bool,
    pub(crate) pending: Vec<String>,
    pub locked: bool,
    pub password: Option<String>,
    pub reboots: u32,
    /// The work profile (and with it every company app and its data) was removed.
    pub work_profile_removed: bool,
    /// The whole device was reset to factory settings.
    pub factory_reset: bool,
    pub esims_wiped: bool,
    pub external_storage_wiped: bool,
    /// Commands carried out, by type, in order.
    pub executed: Vec<String>,
}

/// A device managed through the mock.
#[derive(Clone)]
pub struct SimulatedDevice {
    mock: MockGoogle,
    name: String,
}

impl SimulatedDevice {
    pub(crate) fn new(mock: MockGoogle, name: String) -> Self {
        Self { mock, name }
    }

    /// `enterprises/<e>/devices/<d>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device resource (`None` once the device left management).
    pub fn resource(&self) -> Option<Value> {
        self.mock.device(&self.name)
    }

    /// What happened to the device so far (also after it left).
    pub fn state(&self) -> State {
        let state = self.mock.inner.lock();
        state
            .devices
            .get(&self.name)
            .map(|d| d.sim.clone())
            .or_else(|| state.gone.get(&self.name).cloned())
            .unwrap_or_default()
    }

    /// Changes what the device will report next.
    pub fn update(&self, change: impl FnOnce(&mut Value)) {
        if let Some(entry) = self.mock.inner.lock().devices.get_mut(&self.name) {
            change(&mut entry.resource);
        }
    }

    /// Sends a status report (STATUS_REPORT with the whole Device), waits for the push.
    pub async fn report_status(&self) -> Pushed {
        let now = rfc3339(self.mock.inner.now());
        let resource = {
            let mut state = self.mock.inner.lock();
            let Some(entry) = state.devices.get_mut(&self.name) else {
                return Pushed {
                    message_id: String::new(),
                    notification_type: "STATUS_REPORT".into(),
                    attempts: 0,
                    status: 0,
                };
            };
            entry.resource["lastStatusReportTime"] = json!(now);
            entry.resource["lastPolicySyncTime"] = json!(now);
            entry.resource.clone()
        };
        self.mock.publish("STATUS_REPORT", Some(&resource)).await
    }

    /// An offline device receives nothing; back online, it carries out what waits.
    pub fn set_online(&self, online: bool) {
        if let Some(entry) = self.mock.inner.lock().devices.get_mut(&self.name) {
            entry.sim.online = online;
        }
    }

    /// Carries out the commands waiting for the device and reports each (COMMAND).
    pub async fn process_commands(&self) {
        execute_pending(&self.mock.inner, &self.name).await;
    }

    /// The user resets the device or removes the work profile: it disappears from Google
    /// without any notification (`devices.get` answers 404 from now on).
    pub fn vanish(&self) {
        let mut state = self.mock.inner.lock();
        if let Some(mut entry) = state.devices.remove(&self.name) {
            entry.sim.factory_reset = true;
            state.gone.insert(self.name.clone(), entry.sim);
        }
    }
}

/// Provisioning: answers the new Device resource, or why Google refused.
pub(crate) fn provision(
    inner: &Inner,
    token_value: &str,
    setup: Setup,
    hardware: &Hardware,
) -> Result<Value, String> {
    let now = inner.now();
    let mut state = inner.lock();
    let token = state
        .enrollment_tokens
        .values()
        .find(|t| t["value"] == token_value)
        .cloned()
        .ok_or("This enrollment token is not valid.")?;
    let token_name = token["name"].as_str().unwrap_or_default().to_owned();
    let expires = token["expirationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or("The token has no expiry.")?;
    if expires <= now {
        return Err("This enrollment token has expired.".into());
    }
    if token["oneTimeOnly"] == true && state.used_tokens.contains(&token_name) {
        return Err("This enrollment token was already used.".into());
    }
    let usage = token["allowPersonalUsage"]
        .as_str()
        .unwrap_or("PERSONAL_USAGE_ALLOWED");
    let (mode, ownership) = match (setup, usage) {
        (
            Setup::PersonalDevice,
            "PERSONAL_USAGE_DISALLOWED" | "PERSONAL_USAGE_DISALLOWED_USERLESS",
        ) => {
            return Err("Personal devices cannot be enrolled with this token.".into());
        }
        (Setup::PersonalDevice, _) => ("PROFILE_OWNER", "PERSONALLY_OWNED"),
        (
            Setup::CompanyDevice,
            "PERSONAL_USAGE_DISALLOWED" | "PERSONAL_USAGE_DISALLOWED_USERLESS",
        ) => ("DEVICE_OWNER", "COMPANY_OWNED"),
        (Setup::CompanyDevice, _) => ("PROFILE_OWNER", "COMPANY_OWNED"),
    };
    let enterprise = token_name
        .split("/enrollmentTokens/")
        .next()
        .unwrap_or_default()
        .to_owned();
    let policy = token["policyName"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{enterprise}/policies/default"));
    let name = format!("{enterprise}/devices/{:016x}", rand::random::<u64>());
    let now_text = rfc3339(now);
    let mut resource = json!({
        "name": name,
        "managementMode": mode,
        "ownership": ownership,
        "state": "ACTIVE",
        "appliedState": "ACTIVE",
        "policyName": policy,
        "appliedPolicyName": policy,
        "appliedPolicyVersion": "1",
        "policyCompliant": true,
        "enrollmentTime": now_text,
        "lastStatusReportTime": now_text,
        "lastPolicySyncTime": now_text,
        "enrollmentTokenName": token_name,
        "apiLevel": hardware.api_level,
        "hardwareInfo": {
            "brand": hardware.brand,
            "hardware": "sim",
            "manufacturer": hardware.manufacturer,
            "model": hardware.model,
            "serialNumber": hardware.serial_number,
        },
        "softwareInfo": {
            "androidVersion": hardware.android_version,
            "securityPatchLevel": "2026-10-05",
            "androidBuildNumber": format!("AP{}.{}", hardware.api_level, random_id(6)),
            "androidDevicePolicyVersionCode": 18340,
            "androidDevicePolicyVersionName": "118.34",
        },
        "networkInfo": { "imei": hardware.imei },
        "deviceSettings": {
            "isDeviceSecure": hardware.secure,
            "isEncrypted": hardware.encrypted,
            "encryptionStatus": if hardware.encrypted { "ACTIVE_PER_USER" } else { "INACTIVE" },
            "adbEnabled": false,
            "developmentSettingsEnabled": false,
        },
        "memoryInfo": { "totalRam": "8000000000", "totalInternalStorage": "128000000000" },
    });
    if let Some(data) = token.get("additionalData") {
        resource["enrollmentTokenData"] = data.clone();
    }
    if usage != "PERSONAL_USAGE_DISALLOWED_USERLESS" {
        resource["userName"] = json!(format!("{enterprise}/users/{}", random_id(12)));
    }
    state.used_tokens.insert(token_name);
    state.devices.insert(
        name,
        super::google::DeviceEntry {
            resource: resource.clone(),
            sim: State {
                online: true,
                password: hardware.secure.then(|| "1234".to_owned()),
                ..State::default()
            },
        },
    );
    Ok(resource)
}

/// Why a command failed on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandOutcome {
    pub(crate) error_code: Option<&'static str>,
    pub(crate) message: String,
    /// The device leaves management once it reported.
    pub(crate) leaves: bool,
}

impl CommandOutcome {
    fn ok() -> Self {
        Self {
            error_code: None,
            message: String::new(),
            leaves: false,
        }
    }

    fn failed(code: &'static str, message: &str) -> Self {
        Self {
            error_code: Some(code),
            message: message.to_owned(),
            leaves: false,
        }
    }
}

/// Carries out one command as Android Device Policy would.
pub(crate) fn run(sim: &mut State, device: &Value, command: &Value) -> CommandOutcome {
    let mode = device["managementMode"].as_str().unwrap_or_default();
    let ownership = device["ownership"].as_str().unwrap_or_default();
    let api = device["apiLevel"].as_i64().unwrap_or(0);
    let kind = command["type"].as_str().unwrap_or_default();
    sim.executed.push(kind.to_owned());
    match kind {
        "LOCK" => {
            sim.locked = true;
            CommandOutcome::ok()
        }
        "RESET_PASSWORD" => {
            let new = command["newPassword"].as_str().unwrap_or_default();
            let numeric = !new.is_empty() && new.bytes().all(|b| b.is_ascii_digit());
            if numeric && new.len() < 6 && api >= 34 {
                return CommandOutcome::failed(
                    "INVALID_VALUE",
                    "Numeric passwords must have at least 6 digits on Android 14.",
                );
            }
            if !new.is_empty() && new.len() < 4 {
                return CommandOutcome::failed("INVALID_VALUE", "The password is too short.");
            }
            if mode == "PROFILE_OWNER" && ownership == "PERSONALLY_OWNED" && new.is_empty() {
                return CommandOutcome::failed(
                    "INVALID_VALUE",
                    "A work profile password cannot be cleared.",
                );
            }
            sim.password = (!new.is_empty()).then(|| new.to_owned());
            let flags = command["resetPasswordFlags"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if flags.iter().any(|f| f == "LOCK_NOW") {
                sim.locked = true;
            }
            CommandOutcome::ok()
        }
        "REBOOT" => {
            if mode != "DEVICE_OWNER" {
                return CommandOutcome::failed(
                    "MANAGEMENT_MODE",
                    "Only fully managed devices can be rebooted.",
                );
            }
            if api < 24 {
                return CommandOutcome::failed("API_LEVEL", "Reboot needs Android 7.0.");
            }
            sim.reboots += 1;
            CommandOutcome::ok()
        }
        "RELINQUISH_OWNERSHIP" => {
            if !(mode == "PROFILE_OWNER" && ownership == "COMPANY_OWNED") {
                return CommandOutcome::failed(
                    "MANAGEMENT_MODE",
                    "Only company-owned devices with a work profile can relinquish ownership.",
                );
            }
            sim.work_profile_removed = true;
            CommandOutcome {
                leaves: true,
                ..CommandOutcome::ok()
            }
        }
        "WIPE" => {
            let flags: Vec<String> = command["wipeParams"]["wipeDataFlags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            wipe(sim, device, &flags);
            CommandOutcome {
                leaves: true,
                ..CommandOutcome::ok()
            }
        }
        _ => CommandOutcome::failed("UNSUPPORTED", "The device does not support this command."),
    }
}

/// A wipe: a factory reset of a company-owned device, the removal of the work profile of
/// a personal one (personal data and personal eSIMs stay).
pub(crate) fn wipe(sim: &mut State, device: &Value, flags: &[String]) {
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    if device["ownership"] == "COMPANY_OWNED" {
        sim.factory_reset = true;
        sim.esims_wiped = has("WIPE_ESIMS");
        sim.external_storage_wiped = has("WIPE_EXTERNAL_STORAGE");
    }
    sim.work_profile_removed = true;
    sim.locked = false;
}

/// Carries out the commands waiting for an online device, completes their operations and
/// publishes a COMMAND notification for each.
pub(crate) async fn execute_pending(inner: &Arc<Inner>, name: &str) {
    loop {
        let next = {
            let mut state = inner.lock();
            let Some(entry) = state.devices.get_mut(name) else {
                return;
            };
            if !entry.sim.online || entry.sim.pending.is_empty() {
                return;
            }
            let op_name = entry.sim.pending.remove(0);
            let resource = entry.resource.clone();
            let Some(operation) = state.operations.get(&op_name).cloned() else {
                continue;
            };
            if operation["done"] == true {
                continue;
            }
            let expired = operation["metadata"]["createTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .zip(
                    operation["metadata"]["duration"]
                        .as_str()
                        .and_then(super::discovery::parse_duration),
                )
                .is_some_and(|(created, secs)| {
                    // Whole milliseconds are precise enough for a command's lifetime.
                    let millis = (secs * 1000.0) as i64;
                    created + chrono::Duration::milliseconds(millis) < inner.now()
                });
            let Some(entry) = state.devices.get_mut(name) else {
                return;
            };
            let outcome = if expired {
                CommandOutcome::failed(
                    "UNKNOWN",
                    "The command expired before the device received it.",
                )
            } else {
                run(&mut entry.sim, &resource, &operation["metadata"])
            };
            let mut operation = operation;
            operation["done"] = json!(true);
            if let Some(code) = outcome.error_code {
                operation["metadata"]["errorCode"] = json!(code);
                let (rpc, status) = match code {
                    "INVALID_VALUE" => (3, "INVALID_ARGUMENT"),
                    "MANAGEMENT_MODE" | "API_LEVEL" => (9, "FAILED_PRECONDITION"),
                    "UNSUPPORTED" => (12, "UNIMPLEMENTED"),
                    _ => (2, "UNKNOWN"),
                };
                operation["error"] =
                    json!({"code": rpc, "message": outcome.message, "status": status});
            } else {
                operation["response"] =
                    json!({"@type": "type.googleapis.com/google.protobuf.Empty"});
            }
            state.operations.insert(op_name, operation.clone());
            // A device that wipes itself (or gives up its work profile) has left by the
            // time its operation reads done: whoever sees the one sees the other, however
            // the notification and a poll of the operation race.
            let leaves = outcome.leaves && outcome.error_code.is_none();
            if leaves && let Some(entry) = state.devices.remove(name) {
                state.gone.insert(name.to_owned(), entry.sim);
            }
            Some((operation, leaves))
        };
        let Some((operation, leaves)) = next else {
            return;
        };
        super::google::publish(inner, "COMMAND", Some(&operation), None).await;
        if leaves {
            return;
        }
    }
}
