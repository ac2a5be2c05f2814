//! The commands this adapter sends, built as Apple's schema describes them
//! (`mdm/commands/*.yaml`; the tests check every one against it).

use plist::{Dictionary, Value};

/// A command before it has a CommandUUID.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub request_type: &'static str,
    /// The keys of the `Command` dictionary besides `RequestType`.
    pub params: Dictionary,
}

impl Command {
    fn new(request_type: &'static str) -> Self {
        Self {
            request_type,
            params: Dictionary::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.params.insert(key.to_owned(), value.into());
        self
    }

    fn with_opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    /// The command as the device receives it: `{CommandUUID, Command: {RequestType, ...}}`,
    /// an XML property list.
    pub fn render(&self, command_uuid: &str) -> Vec<u8> {
        let mut command = Dictionary::new();
        command.insert("RequestType".into(), self.request_type.into());
        for (key, value) in &self.params {
            command.insert(key.clone(), value.clone());
        }
        let mut root = Dictionary::new();
        root.insert("Command".into(), Value::Dictionary(command));
        root.insert("CommandUUID".into(), command_uuid.into());
        let mut out = Vec::with_capacity(256);
        // Writing XML to a Vec cannot fail.
        let _ = Value::Dictionary(root).to_writer_xml(&mut out);
        out
    }
}

/// The DeviceInformation queries the adapter asks for.
pub const DEVICE_QUERIES: &[&str] = &[
    "UDID",
    "DeviceName",
    "OSVersion",
    "BuildVersion",
    "ModelName",
    "Model",
    "ProductName",
    "SerialNumber",
    "IMEI",
    "MEID",
    "IsSupervised",
    "IsActivationLockEnabled",
    "PINRequiredForDeviceLock",
    "PINRequiredForEraseDevice",
];

pub fn device_information() -> Command {
    Command::new("DeviceInformation").with(
        "Queries",
        Value::Array(DEVICE_QUERIES.iter().map(|q| Value::from(*q)).collect()),
    )
}

pub fn security_info() -> Command {
    Command::new("SecurityInfo")
}

pub fn profile_list() -> Command {
    Command::new("ProfileList").with("ManagedOnly", true)
}

pub fn installed_application_list(managed_only: bool) -> Command {
    Command::new("InstalledApplicationList").with("ManagedAppsOnly", managed_only)
}

pub fn managed_application_list() -> Command {
    Command::new("ManagedApplicationList")
}

/// DeviceLock: the lock-screen message and phone number, and on a Mac the six-digit PIN.
pub fn device_lock(message: Option<&str>, phone: Option<&str>, pin: Option<&str>) -> Command {
    Command::new("DeviceLock")
        .with_opt("Message", message)
        .with_opt("PhoneNumber", phone)
        .with_opt("PIN", pin)
}

pub fn clear_passcode(unlock_token: Vec<u8>) -> Command {
    Command::new("ClearPasscode").with("UnlockToken", Value::Data(unlock_token))
}

/// EraseDevice options; keys that do not apply to the platform stay out.
#[derive(Debug, Clone, Default)]
pub struct EraseOptions<'a> {
    pub pin: Option<&'a str>,
    pub preserve_data_plan: Option<bool>,
    pub disallow_proximity_setup: Option<bool>,
    pub obliteration_behavior: Option<&'a str>,
}

pub fn erase_device(options: &EraseOptions<'_>) -> Command {
    Command::new("EraseDevice")
        .with_opt("PIN", options.pin)
        .with_opt("PreserveDataPlan", options.preserve_data_plan)
        .with_opt("DisallowProximitySetup", options.disallow_proximity_setup)
        .with_opt("ObliterationBehavior", options.obliteration_behavior)
}

pub fn restart_device() -> Command {
    Command::new("RestartDevice")
}

pub fn remove_profile(identifier: &str) -> Command {
    Command::new("RemoveProfile").with("Identifier", identifier)
}

pub fn remove_application(identifier: &str) -> Command {
    Command::new("RemoveApplication").with("Identifier", identifier)
}

/// Every command the adapter can emit, with sample values, for the schema tests.
pub fn samples() -> Vec<Command> {
    vec![
        device_information(),
        security_info(),
        profile_list(),
        installed_application_list(true),
        installed_application_list(false),
        managed_application_list(),
        device_lock(Some("Call IT"), Some("+31 20 123 4567"), None),
        device_lock(None, None, Some("123456")),
        device_lock(None, None, None),
        clear_passcode(vec![1, 2, 3]),
        erase_device(&EraseOptions::default()),
        erase_device(&EraseOptions {
            preserve_data_plan: Some(true),
            disallow_proximity_setup: Some(true),
            ..Default::default()
        }),
        erase_device(&EraseOptions {
            pin: Some("654321"),
            obliteration_behavior: Some("DoNotObliterate"),
            ..Default::default()
        }),
        restart_device(),
        remove_profile("com.example.wifi"),
        remove_application("com.example.app"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_command_envelope() {
        let body = device_lock(Some("Lost"), None, Some("123456")).render("c-1");
        let value: Value = plist::from_bytes(&body).unwrap();
        let root = value.as_dictionary().unwrap();
        assert_eq!(root.get("CommandUUID").unwrap().as_string(), Some("c-1"));
        let command = root.get("Command").unwrap().as_dictionary().unwrap();
        assert_eq!(
            command.get("RequestType").unwrap().as_string(),
            Some("DeviceLock")
        );
        assert_eq!(command.get("Message").unwrap().as_string(), Some("Lost"));
        assert_eq!(command.get("PIN").unwrap().as_string(), Some("123456"));
        assert!(command.get("PhoneNumber").is_none());
    }
}
