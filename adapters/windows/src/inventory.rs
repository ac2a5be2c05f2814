//! Device facts from the DevInfo, DevDetail and DeviceStatus nodes.

use mdm_api::internal::inventory::DeviceFacts;
use mdm_domain::OsVersion;

/// The nodes read for a full inventory, one Get each.
pub const INVENTORY_NODES: &[&str] = &[
    "./DevDetail/SwV",
    "./DevDetail/OEM",
    "./DevDetail/Ext/Microsoft/DeviceName",
    "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber",
    "./DevDetail/Ext/Microsoft/OSPlatform",
    "./Vendor/MSFT/DeviceStatus/OS/Edition",
    "./Vendor/MSFT/DeviceStatus/Compliance/EncryptionCompliance",
];

/// The node a LocURI names, without the `./Device` or `./User` scope prefix, lower case.
fn normalized(loc_uri: &str) -> String {
    let uri = loc_uri.trim();
    let uri = uri
        .strip_prefix("./Device/")
        .or_else(|| uri.strip_prefix("./device/"))
        .map(|rest| format!("./{rest}"))
        .unwrap_or_else(|| uri.to_owned());
    uri.to_ascii_lowercase()
}

/// Facts gathered from the items of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub facts: DeviceFacts,
    /// The OS version text, for the stored enrollment.
    pub os_version: Option<String>,
    /// DeviceStatus/OS/Edition.
    pub edition: Option<u32>,
    /// Whether a DevDetail node was read (a full inventory arrived).
    pub inventory: bool,
}

impl Gathered {
    /// Takes in one node's value; answers whether the node was a known fact.
    pub fn add(&mut self, loc_uri: &str, value: &str) -> bool {
        let value = value.trim();
        if value.is_empty() || value.len() > 1024 {
            return false;
        }
        let text = || Some(value.to_owned());
        match normalized(loc_uri).as_str() {
            "./devinfo/man" => self.facts.manufacturer = text(),
            "./devinfo/mod" => self.facts.model = text(),
            "./devinfo/devid" | "./devinfo/dmv" | "./devinfo/lang" => return true,
            "./devdetail/swv" => {
                self.inventory = true;
                if let Ok(version) = value.parse::<OsVersion>() {
                    self.facts.os_version = Some(version);
                    self.os_version = text();
                }
            }
            "./devdetail/oem" => {
                self.inventory = true;
                if self.facts.manufacturer.is_none() {
                    self.facts.manufacturer = text();
                }
            }
            "./devdetail/ext/microsoft/devicename" => {
                self.inventory = true;
                self.facts.device_name = text();
            }
            "./devdetail/ext/microsoft/smbiosserialnumber" => {
                self.inventory = true;
                self.facts.serial_number = text();
            }
            "./devdetail/ext/microsoft/osplatform" => self.inventory = true,
            "./vendor/msft/devicestatus/os/edition" => self.edition = value.parse().ok(),
            "./vendor/msft/devicestatus/compliance/encryptioncompliance" => {
                self.facts.is_encrypted = Some(value == "1");
            }
            _ => return false,
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.facts == DeviceFacts::default()
    }
}

/// The facts of `new` that differ from `known`; `None` when nothing changed.
pub fn changes(known: &DeviceFacts, new: &DeviceFacts) -> Option<DeviceFacts> {
    fn pick<T: Clone + PartialEq>(known: &Option<T>, new: &Option<T>) -> Option<T> {
        match new {
            Some(value) if known.as_ref() != Some(value) => Some(value.clone()),
            _ => None,
        }
    }
    let diff = DeviceFacts {
        device_name: pick(&known.device_name, &new.device_name),
        os_version: pick(&known.os_version, &new.os_version),
        model: pick(&known.model, &new.model),
        manufacturer: pick(&known.manufacturer, &new.manufacturer),
        serial_number: pick(&known.serial_number, &new.serial_number),
        imei: pick(&known.imei, &new.imei),
        is_passcode_present: pick(&known.is_passcode_present, &new.is_passcode_present),
        is_supervised: pick(&known.is_supervised, &new.is_supervised),
        is_encrypted: pick(&known.is_encrypted, &new.is_encrypted),
        identity_certificate_expires_at: pick(
            &known.identity_certificate_expires_at,
            &new.identity_certificate_expires_at,
        ),
    };
    (diff != DeviceFacts::default()).then_some(diff)
}

/// `known` with `changes` applied.
pub fn merge(known: &DeviceFacts, changes: &DeviceFacts) -> DeviceFacts {
    DeviceFacts {
        device_name: changes.device_name.clone().or(known.device_name.clone()),
        os_version: changes.os_version.or(known.os_version),
        model: changes.model.clone().or(known.model.clone()),
        manufacturer: changes.manufacturer.clone().or(known.manufacturer.clone()),
        serial_number: changes
            .serial_number
            .clone()
            .or(known.serial_number.clone()),
        imei: changes.imei.clone().or(known.imei.clone()),
        is_passcode_present: changes.is_passcode_present.or(known.is_passcode_present),
        is_supervised: changes.is_supervised.or(known.is_supervised),
        is_encrypted: changes.is_encrypted.or(known.is_encrypted),
        identity_certificate_expires_at: changes
            .identity_certificate_expires_at
            .or(known.identity_certificate_expires_at),
    }
}

/// Windows 10 Mobile editions (DeviceStatus/OS/Edition, AdditionalContext OSEdition):
/// PRODUCT_MOBILE_CORE (0x68) and PRODUCT_MOBILE_ENTERPRISE (0x85).
pub fn is_mobile_edition(edition: u32) -> bool {
    matches!(edition, 0x68 | 0x85)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nodes_with_or_without_scope() {
        let mut g = Gathered::default();
        assert!(g.add("./DevInfo/Man", "VMware, Inc."));
        assert!(g.add("./DevInfo/Mod", "VMware7,1"));
        assert!(g.add("./DevDetail/SwV", "10.0.19043.2364"));
        assert!(g.add(
            "./Device/Vendor/MSFT/DeviceStatus/Compliance/EncryptionCompliance",
            "1"
        ));
        assert!(g.add("./DevDetail/Ext/Microsoft/DeviceName", "DESKTOP-28FGAI6"));
        assert!(!g.add("./Vendor/MSFT/Unknown", "x"));
        assert_eq!(g.facts.manufacturer.as_deref(), Some("VMware, Inc."));
        assert_eq!(g.facts.os_version.unwrap().to_string(), "10.0.19043.2364");
        assert_eq!(g.facts.is_encrypted, Some(true));
        assert!(g.inventory);
    }

    #[test]
    fn only_changes_are_reported() {
        let known = DeviceFacts {
            model: Some("A".into()),
            ..DeviceFacts::default()
        };
        let same = known.clone();
        assert_eq!(changes(&known, &same), None);
        let new = DeviceFacts {
            model: Some("A".into()),
            manufacturer: Some("M".into()),
            ..DeviceFacts::default()
        };
        let diff = changes(&known, &new).unwrap();
        assert_eq!(diff.model, None);
        assert_eq!(diff.manufacturer.as_deref(), Some("M"));
        let merged = merge(&known, &diff);
        assert_eq!(merged.model.as_deref(), Some("A"));
        assert_eq!(merged.manufacturer.as_deref(), Some("M"));
        assert!(is_mobile_edition(104) && !is_mobile_edition(72));
    }
}
