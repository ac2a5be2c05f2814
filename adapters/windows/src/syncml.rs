//! SyncML 1.2 (OMA-DM 1.2) messages: a typed reading of a client's message, and a writer
//! for the server's answers.
//!
//! Commands keep their document order; nothing is regrouped by verb.

use crate::xml::{Document, Element, Limits, XmlError, escape_into};

/// The namespace of SyncML 1.2 documents.
pub const NAMESPACE: &str = "SYNCML:SYNCML1.2";

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub commands: Vec<Command>,
    /// `<Final/>`: the last message of the client's package.
    pub is_final: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub ver_dtd: String,
    pub ver_proto: String,
    pub session_id: String,
    pub msg_id: u64,
    /// The server URL the client addressed.
    pub target: String,
    /// The client's DeviceID.
    pub source: String,
    pub max_msg_size: Option<u64>,
}

/// The verbs of SyncML DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Alert,
    Add,
    Replace,
    Delete,
    Get,
    Exec,
    Copy,
    Status,
    Results,
    Atomic,
    Sequence,
    /// An element that is no SyncML command (answered with Status 400).
    Unknown,
}

impl Verb {
    fn from_name(name: &str) -> Self {
        match name {
            "Alert" => Self::Alert,
            "Add" => Self::Add,
            "Replace" => Self::Replace,
            "Delete" => Self::Delete,
            "Get" => Self::Get,
            "Exec" => Self::Exec,
            "Copy" => Self::Copy,
            "Status" => Self::Status,
            "Results" => Self::Results,
            "Atomic" => Self::Atomic,
            "Sequence" => Self::Sequence,
            _ => Self::Unknown,
        }
    }
}

/// One command of a message, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    /// The element name as sent.
    pub name: String,
    pub cmd_id: Option<String>,
    pub msg_ref: Option<String>,
    pub cmd_ref: Option<String>,
    /// Status: the verb of the command it answers.
    pub cmd: Option<String>,
    /// Alert code or Status code.
    pub data: Option<String>,
    pub meta: Meta,
    pub items: Vec<Item>,
    /// Atomic and Sequence: the commands inside.
    pub nested: Vec<Command>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub format: Option<String>,
    pub kind: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub source: Option<String>,
    pub target: Option<String>,
    pub meta: Meta,
    pub data: Option<String>,
    /// `<MoreData/>`: a chunk of a large object; more follows.
    pub more_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("not a SyncML message: {0}")]
    NotSyncMl(String),
}

impl Message {
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        let doc = Document::parse(body, limits)?;
        let root = doc.root();
        if root.name() != "SyncML" {
            return Err(ParseError::NotSyncMl(format!(
                "the root element is <{}>",
                root.name()
            )));
        }
        let hdr = root
            .child("SyncHdr")
            .ok_or_else(|| ParseError::NotSyncMl("no SyncHdr".into()))?;
        let body = root
            .child("SyncBody")
            .ok_or_else(|| ParseError::NotSyncMl("no SyncBody".into()))?;
        let required = |name: &str| {
            hdr.text_at(&[name])
                .map(str::to_owned)
                .ok_or_else(|| ParseError::NotSyncMl(format!("SyncHdr has no {name}")))
        };
        let msg_id = required("MsgID")?
            .parse::<u64>()
            .map_err(|_| ParseError::NotSyncMl("MsgID is not a number".into()))?;
        let header = Header {
            ver_dtd: required("VerDTD")?,
            ver_proto: required("VerProto")?,
            session_id: required("SessionID")?,
            msg_id,
            target: hdr
                .text_at(&["Target", "LocURI"])
                .unwrap_or_default()
                .to_owned(),
            source: hdr
                .text_at(&["Source", "LocURI"])
                .ok_or_else(|| ParseError::NotSyncMl("SyncHdr has no Source".into()))?
                .to_owned(),
            max_msg_size: hdr
                .text_at(&["Meta", "MaxMsgSize"])
                .and_then(|s| s.parse().ok()),
        };
        if header.session_id.is_empty() || header.session_id.len() > 64 {
            return Err(ParseError::NotSyncMl(
                "SessionID is empty or too long".into(),
            ));
        }
        let mut commands = Vec::new();
        let mut is_final = false;
        for element in body.children() {
            if element.name() == "Final" {
                is_final = true;
            } else {
                commands.push(command(element));
            }
        }
        Ok(Self {
            header,
            commands,
            is_final,
        })
    }
}

fn command(element: Element<'_, '_>) -> Command {
    let verb = Verb::from_name(element.name());
    let text = |name: &str| element.text_at(&[name]).map(str::to_owned);
    let nested = if matches!(verb, Verb::Atomic | Verb::Sequence) {
        element
            .children()
            .filter(|c| !matches!(c.name(), "CmdID" | "NoResp" | "Meta" | "Cred"))
            .map(command)
            .collect()
    } else {
        Vec::new()
    };
    Command {
        verb,
        name: element.name().to_owned(),
        cmd_id: text("CmdID").filter(|id| !id.is_empty()),
        msg_ref: text("MsgRef"),
        cmd_ref: text("CmdRef"),
        cmd: text("Cmd"),
        data: text("Data"),
        meta: element.child("Meta").map(meta).unwrap_or_default(),
        items: element.children_named("Item").map(item).collect(),
        nested,
    }
}

fn meta(element: Element<'_, '_>) -> Meta {
    Meta {
        format: element.text_at(&["Format"]).map(str::to_owned),
        kind: element.text_at(&["Type"]).map(str::to_owned),
        size: element.text_at(&["Size"]).and_then(|s| s.parse().ok()),
    }
}

fn item(element: Element<'_, '_>) -> Item {
    Item {
        source: element.text_at(&["Source", "LocURI"]).map(str::to_owned),
        target: element.text_at(&["Target", "LocURI"]).map(str::to_owned),
        meta: element.child("Meta").map(meta).unwrap_or_default(),
        // Data keeps its white space: large-object chunks are concatenated as sent.
        data: element.child("Data").map(|d| d.raw_text().to_owned()),
        more_data: element.child("MoreData").is_some(),
    }
}

/// Status codes the server answers with.
pub mod code {
    pub const OK: u16 = 200;
    pub const CHUNK_ACCEPTED: u16 = 213;
    pub const BAD_REQUEST: u16 = 400;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_ALLOWED: u16 = 405;
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: u16 = 406;
    pub const REQUEST_ENTITY_TOO_LARGE: u16 = 413;
    pub const SIZE_MISMATCH: u16 = 424;
    pub const COMMAND_FAILED: u16 = 500;
    pub const VERSION_NOT_SUPPORTED: u16 = 505;
    pub const PROTOCOL_NOT_SUPPORTED: u16 = 513;
}

/// Alert codes.
pub mod alert {
    pub const SERVER_INITIATED: &str = "1200";
    pub const CLIENT_INITIATED: &str = "1201";
    pub const NEXT_MESSAGE: &str = "1222";
    pub const SESSION_ABORT: &str = "1223";
    pub const DEVICE_ALERT: &str = "1224";
    pub const GENERIC_ALERT: &str = "1226";
}

/// A command the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutCommand<'a> {
    pub verb: &'a str,
    pub cmd_id: &'a str,
    pub loc_uri: &'a str,
    pub format: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// Writes one server message. Status CmdIDs count from 1 within the message; commands
/// carry the CmdIDs they are given (their command ids), so none is ever "0".
pub struct Writer {
    out: String,
    next_cmd_id: u32,
}

impl Writer {
    /// Starts a message answering a client's message.
    pub fn new(session_id: &str, msg_id: u64, device: &str, server_url: &str) -> Self {
        let mut out = String::with_capacity(1024);
        out.push_str(r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>"#);
        escape_into(&mut out, session_id);
        out.push_str("</SessionID><MsgID>");
        out.push_str(&msg_id.to_string());
        out.push_str("</MsgID><Target><LocURI>");
        escape_into(&mut out, device);
        out.push_str("</LocURI></Target><Source><LocURI>");
        escape_into(&mut out, server_url);
        out.push_str("</LocURI></Source></SyncHdr><SyncBody>");
        Self {
            out,
            next_cmd_id: 1,
        }
    }

    fn cmd_id(&mut self) -> u32 {
        let id = self.next_cmd_id;
        self.next_cmd_id += 1;
        id
    }

    /// A Status for a client command (or for the header: `cmd_ref` "0", `cmd` "SyncHdr").
    pub fn status(&mut self, msg_ref: u64, cmd_ref: &str, cmd: &str, code: u16) {
        let id = self.cmd_id();
        self.out.push_str("<Status><CmdID>");
        self.out.push_str(&id.to_string());
        self.out.push_str("</CmdID><MsgRef>");
        self.out.push_str(&msg_ref.to_string());
        self.out.push_str("</MsgRef><CmdRef>");
        escape_into(&mut self.out, cmd_ref);
        self.out.push_str("</CmdRef><Cmd>");
        escape_into(&mut self.out, cmd);
        self.out.push_str("</Cmd><Data>");
        self.out.push_str(&code.to_string());
        self.out.push_str("</Data></Status>");
    }

    /// An Alert with a code and no items (1222: send the next message).
    pub fn alert(&mut self, code: &str) {
        let id = self.cmd_id();
        self.out.push_str("<Alert><CmdID>");
        self.out.push_str(&id.to_string());
        self.out.push_str("</CmdID><Data>");
        escape_into(&mut self.out, code);
        self.out.push_str("</Data></Alert>");
    }

    /// A management command (Exec, Get, Replace, Add, Delete) with one item.
    pub fn command(&mut self, command: &OutCommand<'_>) {
        let verb = command.verb;
        self.out.push('<');
        self.out.push_str(verb);
        self.out.push_str("><CmdID>");
        escape_into(&mut self.out, command.cmd_id);
        self.out.push_str("</CmdID><Item><Target><LocURI>");
        escape_into(&mut self.out, command.loc_uri);
        self.out.push_str("</LocURI></Target>");
        if command.format.is_some() || command.kind.is_some() {
            self.out.push_str("<Meta>");
            if let Some(format) = command.format {
                self.out.push_str(r#"<Format xmlns="syncml:metinf">"#);
                escape_into(&mut self.out, format);
                self.out.push_str("</Format>");
            }
            if let Some(kind) = command.kind {
                self.out.push_str(r#"<Type xmlns="syncml:metinf">"#);
                escape_into(&mut self.out, kind);
                self.out.push_str("</Type>");
            }
            self.out.push_str("</Meta>");
        }
        if let Some(data) = command.data {
            self.out.push_str("<Data>");
            escape_into(&mut self.out, data);
            self.out.push_str("</Data>");
        }
        self.out.push_str("</Item></");
        self.out.push_str(verb);
        self.out.push('>');
    }

    /// Ends the message (`<Final/>` when `is_final`).
    pub fn finish(mut self, is_final: bool) -> String {
        if is_final {
            self.out.push_str("<Final/>");
        }
        self.out.push_str("</SyncBody></SyncML>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION1: &str = include_str!("../tests/data/04-management-session1-msg1.xml");
    const SESSION2: &str = include_str!("../tests/data/05-management-session2-user-unenroll.xml");

    #[test]
    fn reads_the_real_first_message() {
        let message = Message::parse(SESSION1.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(message.header.session_id, "1");
        assert_eq!(message.header.msg_id, 1);
        assert_eq!(message.header.source, "B5B954E81FBCB94EB79BD08BE625F4EE");
        assert!(message.header.target.ends_with("/ManagementServer/MDM.svc"));
        assert!(message.is_final);
        let verbs: Vec<_> = message
            .commands
            .iter()
            .map(|c| (c.verb, c.cmd_id.as_deref().unwrap(), c.data.as_deref()))
            .collect();
        assert_eq!(
            verbs,
            [
                (Verb::Alert, "2", Some("1201")),
                (Verb::Alert, "3", Some("1224")),
                (Verb::Replace, "4", None),
            ]
        );
        let login = &message.commands[1].items[0];
        assert_eq!(
            login.meta.kind.as_deref(),
            Some("com.microsoft/MDM/LoginStatus")
        );
        assert_eq!(login.data.as_deref(), Some("user"));
        let devinfo: Vec<_> = message.commands[2]
            .items
            .iter()
            .map(|i| (i.source.as_deref().unwrap(), i.data.as_deref().unwrap()))
            .collect();
        assert_eq!(devinfo[1], ("./DevInfo/Man", "VMware, Inc."));
        assert_eq!(devinfo.len(), 5);
    }

    #[test]
    fn reads_the_real_unenroll_alert() {
        let message = Message::parse(SESSION2.as_bytes(), &Limits::default()).unwrap();
        let alert = &message.commands[2];
        assert_eq!(alert.data.as_deref(), Some("1226"));
        assert_eq!(
            alert.items[0].meta.kind.as_deref(),
            Some("com.microsoft:mdm.unenrollment.userrequest")
        );
        assert_eq!(alert.items[0].meta.format.as_deref(), Some("int"));
    }

    #[test]
    fn refuses_what_is_not_syncml() {
        for bad in [
            "<Envelope/>",
            "<SyncML><SyncBody/></SyncML>",
            "<SyncML><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>x</MsgID><Source><LocURI>a</LocURI></Source></SyncHdr><SyncBody/></SyncML>",
        ] {
            assert!(
                Message::parse(bad.as_bytes(), &Limits::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_in_order_and_round_trips() {
        let mut writer = Writer::new("1", 1, "DEV<1>", "https://mdm/ManagementServer/MDM.svc");
        writer.status(1, "0", "SyncHdr", 200);
        writer.command(&OutCommand {
            verb: "Exec",
            cmd_id: "0190f7a2-0000-7000-8000-000000000001",
            loc_uri: "./Device/Vendor/MSFT/RemoteWipe/doWipe",
            format: Some("chr"),
            kind: Some("text/plain"),
            data: Some(""),
        });
        writer.alert("1222");
        let xml = writer.finish(true);
        let doc = Document::parse(xml.as_bytes(), &Limits::default()).unwrap();
        let body = doc.root().child("SyncBody").unwrap();
        let names: Vec<_> = body.children().map(|c| c.name()).collect();
        assert_eq!(names, ["Status", "Exec", "Alert", "Final"]);
        assert_eq!(
            doc.root().text_at(&["SyncHdr", "Target", "LocURI"]),
            Some("DEV<1>")
        );
        let status = body.child("Status").unwrap();
        assert_eq!(status.text_at(&["CmdID"]), Some("1"));
        assert_eq!(body.child("Alert").unwrap().text_at(&["CmdID"]), Some("2"));
    }
}
