//! Apple's MDM wire format: the check-in messages and command reports devices send (XML or
//! binary property lists), and the commands the server answers with.
//!
//! Parsing is bounded: bodies are size-limited by the endpoints, and [`check_shape`]
//! refuses nesting deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] values before
//! the typed parse runs, so no body can exhaust the stack.

pub mod command;
pub mod inventory;

use plist::Data;
use serde::Deserialize;

/// Deepest nesting of arrays and dictionaries accepted in a device's message.
pub const MAX_DEPTH: usize = 32;
/// Most values (of any type) accepted in one message.
pub const MAX_ELEMENTS: usize = 200_000;

/// Why a message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("the body is not a property list: {0}")]
    NotAPlist(String),
    #[error("the property list nests deeper than {MAX_DEPTH} levels or holds too many values")]
    TooComplex,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unknown MessageType `{0}`")]
    UnknownMessageType(String),
    #[error("unknown Status `{0}`")]
    UnknownStatus(String),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Refuses bodies that nest too deeply or hold too many values, cheaply, before parsing.
pub fn check_shape(body: &[u8]) -> Result<(), ProtocolError> {
    if body.starts_with(b"bplist") {
        return check_binary_shape(body);
    }
    // XML: count open and close tags of containers in one pass over the bytes.
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut i = 0;
    while let Some(offset) = body[i..].iter().position(|&b| b == b'<') {
        let at = i + offset;
        let rest = &body[at + 1..];
        if rest.starts_with(b"dict>") || rest.starts_with(b"array>") {
            depth += 1;
            elements += 1;
            if depth > MAX_DEPTH {
                return Err(ProtocolError::TooComplex);
            }
        } else if rest.starts_with(b"/dict>") || rest.starts_with(b"/array>") {
            depth = depth.saturating_sub(1);
        } else {
            elements += 1;
        }
        if elements > MAX_ELEMENTS * 2 {
            return Err(ProtocolError::TooComplex);
        }
        i = at + 1;
    }
    Ok(())
}

fn check_binary_shape(body: &[u8]) -> Result<(), ProtocolError> {
    let malformed = || ProtocolError::NotAPlist("damaged binary property list".into());
    if body.len() < 40 {
        return Err(malformed());
    }
    let trailer = &body[body.len() - 32..];
    let offset_size = usize::from(trailer[6]);
    let ref_size = usize::from(trailer[7]);
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let count = usize::try_from(be(&trailer[8..16])).map_err(|_| malformed())?;
    let top = usize::try_from(be(&trailer[16..24])).map_err(|_| malformed())?;
    let table = usize::try_from(be(&trailer[24..32])).map_err(|_| malformed())?;
    if !(1..=8).contains(&offset_size)
        || !(1..=8).contains(&ref_size)
        || count > MAX_ELEMENTS
        || top >= count
    {
        return Err(malformed());
    }
    let offset_of = |index: usize| -> Option<usize> {
        let start = table.checked_add(index.checked_mul(offset_size)?)?;
        let bytes = body.get(start..start + offset_size)?;
        usize::try_from(be(bytes)).ok()
    };
    // Depth-first over object references with an explicit stack: (object, depth).
    let mut stack = vec![(top, 1usize)];
    let mut visited = 0usize;
    while let Some((index, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_ELEMENTS || depth > MAX_DEPTH {
            return Err(ProtocolError::TooComplex);
        }
        let offset = offset_of(index).ok_or_else(malformed)?;
        let marker = *body.get(offset).ok_or_else(malformed)?;
        let kind = marker >> 4;
        if !matches!(kind, 0xA | 0xC | 0xD) {
            continue;
        }
        let (length, header) = match marker & 0x0f {
            0x0f => {
                let int_marker = *body.get(offset + 1).ok_or_else(malformed)?;
                if int_marker >> 4 != 1 {
                    return Err(malformed());
                }
                let size = 1usize << (int_marker & 0x0f).min(3);
                let bytes = body
                    .get(offset + 2..offset + 2 + size)
                    .ok_or_else(malformed)?;
                (
                    usize::try_from(be(bytes)).map_err(|_| malformed())?,
                    2 + size,
                )
            }
            n => (usize::from(n), 1),
        };
        let refs = if kind == 0xD {
            length.checked_mul(2).ok_or_else(malformed)?
        } else {
            length
        };
        if refs > MAX_ELEMENTS {
            return Err(ProtocolError::TooComplex);
        }
        for i in 0..refs {
            let start = offset + header + i * ref_size;
            let bytes = body.get(start..start + ref_size).ok_or_else(malformed)?;
            let child = usize::try_from(be(bytes)).map_err(|_| malformed())?;
            if child >= count {
                return Err(malformed());
            }
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

/// Parses a property list into `T` after [`check_shape`].
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtocolError> {
    check_shape(body)?;
    plist::from_bytes(body).map_err(|e| ProtocolError::NotAPlist(e.to_string()))
}

/// Which channel a message belongs to, as Apple identifies them: the device channel by
/// UDID (or EnrollmentID for user enrollment), a user channel additionally by the user
/// (UserID on macOS, UserShortName on Shared iPad, EnrollmentUserID for user enrollment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelId {
    /// The device channel's id.
    pub device: String,
    /// The user part of a user channel.
    pub user: Option<String>,
    /// The device is user-enrolled (identified by EnrollmentID, not UDID).
    pub user_enrollment: bool,
}

/// The Shared iPad's UserID, meaning "no directory user".
const SHARED_IPAD_USER: &str = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF";
/// Longest id accepted in any of the id fields.
const MAX_ID_LEN: usize = 128;

impl ChannelId {
    fn from_fields(ids: &Ids) -> Result<Self, ProtocolError> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_ID_LEN
                && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        };
        let (device, user_enrollment) = match (&ids.udid, &ids.enrollment_id) {
            (Some(udid), _) => (udid.clone(), false),
            (None, Some(enrollment_id)) => (enrollment_id.clone(), true),
            (None, None) => return Err(ProtocolError::Missing("UDID or EnrollmentID")),
        };
        if !valid(&device) {
            return Err(ProtocolError::Invalid("device identifier"));
        }
        let user = match (&ids.enrollment_user_id, &ids.user_id, &ids.user_short_name) {
            (Some(eu), _, _) => Some(eu.clone()),
            (None, Some(uid), short) if uid.eq_ignore_ascii_case(SHARED_IPAD_USER) => Some(
                short
                    .clone()
                    .ok_or(ProtocolError::Missing("UserShortName"))?,
            ),
            (None, Some(uid), _) => Some(uid.clone()),
            (None, None, Some(short)) => Some(short.clone()),
            (None, None, None) => None,
        };
        if let Some(user) = &user
            && !valid(user)
        {
            return Err(ProtocolError::Invalid("user identifier"));
        }
        Ok(Self {
            device,
            user,
            user_enrollment,
        })
    }

    /// The key of this channel's row: the device id, or `device:user`.
    pub fn key(&self) -> String {
        match &self.user {
            Some(user) => format!("{}:{user}", self.device),
            None => self.device.clone(),
        }
    }

    pub fn is_user_channel(&self) -> bool {
        self.user.is_some()
    }
}

/// The id fields every message carries some of.
#[derive(Debug, Default)]
struct Ids {
    udid: Option<String>,
    enrollment_id: Option<String>,
    enrollment_user_id: Option<String>,
    user_id: Option<String>,
    user_short_name: Option<String>,
}

macro_rules! ids_of {
    ($raw:expr) => {
        Ids {
            udid: $raw.udid.take(),
            enrollment_id: $raw.enrollment_id.take(),
            enrollment_user_id: $raw.enrollment_user_id.take(),
            user_id: $raw.user_id.take(),
            user_short_name: $raw.user_short_name.take(),
        }
    };
}

/// A check-in message (`Content-Type: application/x-apple-aspen-mdm-checkin`).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckIn {
    Authenticate(Authenticate),
    TokenUpdate(TokenUpdate),
    CheckOut,
    SetBootstrapToken {
        /// Absent or empty: forget the stored token.
        token: Option<Vec<u8>>,
    },
    GetBootstrapToken,
    UserAuthenticate {
        digest_response: Option<String>,
    },
    DeclarativeManagement {
        endpoint: String,
        data: Option<Vec<u8>>,
    },
    GetToken {
        service_type: String,
    },
}

/// A check-in message and the channel it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInMessage {
    pub channel: ChannelId,
    pub topic: Option<String>,
    pub message: CheckIn,
}

/// What Authenticate tells about the device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Authenticate {
    pub device_name: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub serial_number: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
}

/// TokenUpdate: where to push, and the unlock token.
#[derive(Clone, PartialEq)]
pub struct TokenUpdate {
    pub token: Vec<u8>,
    pub push_magic: String,
    pub unlock_token: Option<Vec<u8>>,
    pub awaiting_configuration: bool,
    pub user_short_name: Option<String>,
    pub user_long_name: Option<String>,
}

impl std::fmt::Debug for TokenUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenUpdate")
            .field("awaiting_configuration", &self.awaiting_configuration)
            .field("has_unlock_token", &self.unlock_token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawCheckIn {
    #[serde(rename = "MessageType")]
    message_type: String,
    #[serde(rename = "Topic")]
    topic: Option<String>,
    #[serde(rename = "UDID")]
    udid: Option<String>,
    #[serde(rename = "EnrollmentID")]
    enrollment_id: Option<String>,
    #[serde(rename = "EnrollmentUserID")]
    enrollment_user_id: Option<String>,
    #[serde(rename = "UserID")]
    user_id: Option<String>,
    #[serde(rename = "UserShortName")]
    user_short_name: Option<String>,
    #[serde(rename = "DeviceName")]
    device_name: Option<String>,
    #[serde(rename = "Model")]
    model: Option<String>,
    #[serde(rename = "ModelName")]
    model_name: Option<String>,
    #[serde(rename = "ProductName")]
    product_name: Option<String>,
    #[serde(rename = "SerialNumber")]
    serial_number: Option<String>,
    #[serde(rename = "IMEI")]
    imei: Option<String>,
    #[serde(rename = "MEID")]
    meid: Option<String>,
    #[serde(rename = "OSVersion")]
    os_version: Option<String>,
    #[serde(rename = "BuildVersion")]
    build_version: Option<String>,
    #[serde(rename = "Token")]
    token: Option<Data>,
    #[serde(rename = "PushMagic")]
    push_magic: Option<String>,
    #[serde(rename = "UnlockToken")]
    unlock_token: Option<Data>,
    #[serde(rename = "AwaitingConfiguration")]
    awaiting_configuration: Option<bool>,
    #[serde(rename = "UserLongName")]
    user_long_name: Option<String>,
    #[serde(rename = "BootstrapToken")]
    bootstrap_token: Option<Data>,
    #[serde(rename = "Endpoint")]
    endpoint: Option<String>,
    #[serde(rename = "Data")]
    data: Option<Data>,
    #[serde(rename = "TokenServiceType")]
    token_service_type: Option<String>,
    #[serde(rename = "DigestResponse")]
    digest_response: Option<String>,
}

/// Longest free-text value kept from a check-in (names, versions).
const MAX_TEXT: usize = 256;

fn text(value: Option<String>) -> Option<String> {
    value.map(|mut v| {
        if v.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
        }
        v
    })
}

/// Parses a check-in body.
pub fn parse_check_in(body: &[u8]) -> Result<CheckInMessage, ProtocolError> {
    let mut raw: RawCheckIn = parse(body)?;
    let ids = ids_of!(raw);
    let channel = ChannelId::from_fields(&ids)?;
    let message = match raw.message_type.as_str() {
        "Authenticate" => CheckIn::Authenticate(Authenticate {
            device_name: text(raw.device_name),
            model: text(raw.model),
            model_name: text(raw.model_name),
            product_name: text(raw.product_name),
            serial_number: text(raw.serial_number),
            imei: text(raw.imei),
            meid: text(raw.meid),
            os_version: text(raw.os_version),
            build_version: text(raw.build_version),
        }),
        "TokenUpdate" => {
            let token: Vec<u8> = raw.token.ok_or(ProtocolError::Missing("Token"))?.into();
            if token.is_empty() || token.len() > 256 {
                return Err(ProtocolError::Invalid("Token"));
            }
            let push_magic = raw.push_magic.ok_or(ProtocolError::Missing("PushMagic"))?;
            if push_magic.is_empty() || push_magic.len() > MAX_TEXT {
                return Err(ProtocolError::Invalid("PushMagic"));
            }
            CheckIn::TokenUpdate(TokenUpdate {
                token,
                push_magic,
                unlock_token: raw.unlock_token.map(Into::into),
                awaiting_configuration: raw.awaiting_configuration.unwrap_or(false),
                user_short_name: text(ids.user_short_name.clone()),
                user_long_name: text(raw.user_long_name),
            })
        }
        "CheckOut" => CheckIn::CheckOut,
        "SetBootstrapToken" => CheckIn::SetBootstrapToken {
            token: raw
                .bootstrap_token
                .map(Vec::<u8>::from)
                .filter(|t| !t.is_empty()),
        },
        "GetBootstrapToken" => CheckIn::GetBootstrapToken,
        "UserAuthenticate" => CheckIn::UserAuthenticate {
            digest_response: raw.digest_response,
        },
        "DeclarativeManagement" => CheckIn::DeclarativeManagement {
            endpoint: raw.endpoint.ok_or(ProtocolError::Missing("Endpoint"))?,
            data: raw.data.map(Into::into),
        },
        "GetToken" => CheckIn::GetToken {
            service_type: raw
                .token_service_type
                .ok_or(ProtocolError::Missing("TokenServiceType"))?,
        },
        other => {
            return Err(ProtocolError::UnknownMessageType(
                text(Some(other.to_owned())).unwrap_or_default(),
            ));
        }
    };
    Ok(CheckInMessage {
        channel,
        topic: raw.topic,
        message,
    })
}

/// The status of a command report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Idle,
    Acknowledged,
    Error,
    CommandFormatError,
    NotNow,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Acknowledged => "Acknowledged",
            Self::Error => "Error",
            Self::CommandFormatError => "CommandFormatError",
            Self::NotNow => "NotNow",
        }
    }
}

/// One entry of a report's ErrorChain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ErrorEntry {
    #[serde(rename = "ErrorCode")]
    pub code: Option<i64>,
    #[serde(rename = "ErrorDomain")]
    pub domain: Option<String>,
    #[serde(rename = "LocalizedDescription")]
    pub localized_description: Option<String>,
    #[serde(rename = "USEnglishDescription")]
    pub us_english_description: Option<String>,
}

/// A command report (the body of a request to the command endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub channel: ChannelId,
    pub status: Status,
    /// Absent for Idle.
    pub command_uuid: Option<String>,
    pub error_chain: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct RawReport {
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "CommandUUID")]
    command_uuid: Option<String>,
    #[serde(rename = "UDID")]
    udid: Option<String>,
    #[serde(rename = "EnrollmentID")]
    enrollment_id: Option<String>,
    #[serde(rename = "EnrollmentUserID")]
    enrollment_user_id: Option<String>,
    #[serde(rename = "UserID")]
    user_id: Option<String>,
    #[serde(rename = "UserShortName")]
    user_short_name: Option<String>,
    #[serde(rename = "ErrorChain", default)]
    error_chain: Vec<ErrorEntry>,
}

/// Most ErrorChain entries kept.
const MAX_ERROR_CHAIN: usize = 16;

/// Parses a command report.
pub fn parse_report(body: &[u8]) -> Result<Report, ProtocolError> {
    let mut raw: RawReport = parse(body)?;
    let ids = ids_of!(raw);
    let channel = ChannelId::from_fields(&ids)?;
    let status = match raw.status.as_str() {
        "Idle" => Status::Idle,
        "Acknowledged" => Status::Acknowledged,
        "Error" => Status::Error,
        "CommandFormatError" => Status::CommandFormatError,
        "NotNow" => Status::NotNow,
        other => {
            return Err(ProtocolError::UnknownStatus(
                text(Some(other.to_owned())).unwrap_or_default(),
            ));
        }
    };
    if status != Status::Idle {
        match &raw.command_uuid {
            Some(uuid) if !uuid.is_empty() && uuid.len() <= MAX_ID_LEN => {}
            Some(_) => return Err(ProtocolError::Invalid("CommandUUID")),
            None => return Err(ProtocolError::Missing("CommandUUID")),
        }
    }
    let mut error_chain = raw.error_chain;
    error_chain.truncate(MAX_ERROR_CHAIN);
    Ok(Report {
        channel,
        status,
        command_uuid: raw.command_uuid.filter(|_| status != Status::Idle),
        error_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plist(body: &str) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>{body}</dict></plist>"#
        )
        .into_bytes()
    }

    #[test]
    fn channels_follow_apples_ids() {
        let device = parse_report(&plist(
            "<key>Status</key><string>Idle</string><key>UDID</key><string>ABC</string>",
        ))
        .unwrap();
        assert_eq!(device.channel.key(), "ABC");
        assert!(!device.channel.is_user_channel());
        let user = parse_report(&plist(
            "<key>Status</key><string>Idle</string><key>UDID</key><string>ABC</string><key>UserID</key><string>U-1</string>",
        ))
        .unwrap();
        assert_eq!(user.channel.key(), "ABC:U-1");
        let shared = parse_report(&plist(&format!(
            "<key>Status</key><string>Idle</string><key>UDID</key><string>ABC</string><key>UserID</key><string>{SHARED_IPAD_USER}</string><key>UserShortName</key><string>jane@example.com</string>"
        )))
        .unwrap();
        assert_eq!(shared.channel.key(), "ABC:jane@example.com");
        let byod = parse_report(&plist(
            "<key>Status</key><string>Idle</string><key>EnrollmentID</key><string>E-9</string><key>EnrollmentUserID</key><string>EU-1</string>",
        ))
        .unwrap();
        assert!(byod.channel.user_enrollment);
        assert_eq!(byod.channel.key(), "E-9:EU-1");
    }

    #[test]
    fn reports_need_a_command_uuid_unless_idle() {
        let err = parse_report(&plist(
            "<key>Status</key><string>Acknowledged</string><key>UDID</key><string>A</string>",
        ))
        .unwrap_err();
        assert_eq!(err, ProtocolError::Missing("CommandUUID"));
        let err = parse_report(&plist(
            "<key>Status</key><string>Maybe</string><key>UDID</key><string>A</string>",
        ))
        .unwrap_err();
        assert!(matches!(err, ProtocolError::UnknownStatus(_)));
        let err = parse_report(&plist("<key>Status</key><string>Idle</string>")).unwrap_err();
        assert_eq!(err, ProtocolError::Missing("UDID or EnrollmentID"));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!(
            "<key>Status</key><string>Idle</string><key>UDID</key><string>A</string><key>X</key>{}{}",
            "<array>".repeat(MAX_DEPTH + 1),
            "</array>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            parse_report(&plist(&deep)).unwrap_err(),
            ProtocolError::TooComplex
        );
        let shallow = format!(
            "<key>Status</key><string>Idle</string><key>UDID</key><string>A</string><key>X</key>{}{}",
            "<array>".repeat(5),
            "</array>".repeat(5)
        );
        assert!(parse_report(&plist(&shallow)).is_ok());
    }

    #[test]
    fn binary_plists_parse_and_are_bounded() {
        let mut dict = plist::Dictionary::new();
        dict.insert("Status".into(), "NotNow".into());
        dict.insert("UDID".into(), "B1".into());
        dict.insert("CommandUUID".into(), "c-1".into());
        let mut body = Vec::new();
        plist::Value::Dictionary(dict.clone())
            .to_writer_binary(&mut body)
            .unwrap();
        let report = parse_report(&body).unwrap();
        assert_eq!(report.status, Status::NotNow);
        let mut nested = plist::Value::Array(vec![]);
        for _ in 0..MAX_DEPTH + 2 {
            nested = plist::Value::Array(vec![nested]);
        }
        dict.insert("Deep".into(), nested);
        let mut body = Vec::new();
        plist::Value::Dictionary(dict)
            .to_writer_binary(&mut body)
            .unwrap();
        assert_eq!(parse_report(&body).unwrap_err(), ProtocolError::TooComplex);
    }

    #[test]
    fn garbage_is_not_a_plist() {
        assert!(matches!(
            parse_check_in(b"{\"MessageType\":\"Authenticate\"}"),
            Err(ProtocolError::NotAPlist(_))
        ));
        assert!(matches!(
            parse_check_in(b""),
            Err(ProtocolError::NotAPlist(_))
        ));
        assert!(
            parse_check_in(&plist(
                "<key>MessageType</key><string>Bogus</string><key>UDID</key><string>A</string>"
            ))
            .is_err()
        );
    }
}
