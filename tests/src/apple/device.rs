//! A simulated Apple device (iPhone, iPad or Mac), written from Apple's MDM protocol
//! documentation: it installs an enrollment profile (getting its identity by SCEP or
//! from a PKCS#12 payload, its key made here), signs its requests (Mdm-Signature) or
//! lets an ingress forward its certificate, sends Authenticate and TokenUpdate, polls the
//! command endpoint when pushed, and answers commands as scripted, with realistic
//! results. It parses the server's plists itself (plist::Value), not with the server's
//! code.

use std::collections::{HashMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use plist::{Dictionary, Value};
use rand::Rng;

pub const CHECKIN_TYPE: &str = "application/x-apple-aspen-mdm-checkin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    IPhone,
    IPad,
    Mac,
}

/// How the device proves its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `Mdm-Signature`: a detached CMS signature over every body.
    Signature,
    /// An ingress terminated TLS and forwards the certificate in `header`: RFC 9440
    /// (`:base64:`) or URL-escaped PEM.
    Forwarded { header: String, rfc9440: bool },
}

/// How the device answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Acknowledge,
    Error {
        code: i64,
        domain: String,
        description: String,
    },
    NotNow,
    FormatError,
}

/// Where the device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Fresh,
    Enrolled,
    /// The MDM profile is gone.
    Unenrolled,
    Wiped,
}

/// A command the device received.
#[derive(Debug, Clone)]
pub struct Received {
    pub uuid: String,
    pub request_type: String,
    pub command: Dictionary,
}

/// A configuration profile installed on the device.
#[derive(Debug, Clone)]
pub struct InstalledProfile {
    pub identifier: String,
    pub uuid: String,
    pub payload_types: Vec<String>,
}

pub struct SimulatedDevice {
    pub model: Model,
    pub udid: String,
    pub serial: String,
    pub os_version: String,
    pub build_version: String,
    pub device_name: String,
    pub push_token: Vec<u8>,
    pub push_magic: String,
    pub unlock_token: Option<Vec<u8>>,
    pub supervised: bool,
    pub passcode_present: bool,
    pub auth: AuthMode,
    pub identity: Option<(X509, PKey<Private>)>,
    pub server_url: String,
    pub check_in_url: String,
    pub topic: String,
    pub check_out_when_removed: bool,
    pub state: DeviceState,
    pub locked: bool,
    pub profiles: Vec<InstalledProfile>,
    pub managed_apps: Vec<String>,
    pub received: Vec<Received>,
    /// A command's report that did not reach the server (the connection failed, or the
    /// server answered 5xx): sent before anything else at the next check-in, as devices
    /// do (Apple: "it is possible for the device to send the same status twice").
    pub unsent_report: Option<Dictionary>,
    /// Scripted answers per RequestType, used in order; afterwards Acknowledge.
    pub scripts: HashMap<String, VecDeque<Answer>>,
    /// Statuses and bodies of the last check-in and report.
    pub last_status: u16,
    pub last_body: Bytes,
    http: reqwest::Client,
}

fn hex_id(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill(&mut raw[..]);
    hex::encode(raw)
}

impl SimulatedDevice {
    pub fn new(model: Model, auth: AuthMode) -> Self {
        let (udid, os, build, name) = match model {
            Model::Mac => (
                uuid::Uuid::new_v4().to_string().to_uppercase(),
                "14.5",
                "23F79",
                "Jane's MacBook Pro",
            ),
            Model::IPhone => (
                format!("00008110-{}", hex_id(8).to_uppercase()),
                "17.5.1",
                "21F90",
                "Jane's iPhone",
            ),
            Model::IPad => (
                format!("00008103-{}", hex_id(8).to_uppercase()),
                "17.5",
                "21F79",
                "Jane's iPad",
            ),
        };
        let mut token = vec![0u8; 32];
        rand::rng().fill(&mut token[..]);
        let mut unlock = vec![0u8; 64];
        rand::rng().fill(&mut unlock[..]);
        Self {
            model,
            udid,
            serial: format!("C02{}", hex_id(4).to_uppercase()),
            os_version: os.into(),
            build_version: build.into(),
            device_name: name.into(),
            push_token: token,
            push_magic: uuid::Uuid::new_v4().to_string().to_uppercase(),
            unlock_token: (model != Model::Mac).then_some(unlock),
            supervised: model == Model::Mac,
            passcode_present: true,
            auth,
            identity: None,
            server_url: String::new(),
            check_in_url: String::new(),
            topic: String::new(),
            check_out_when_removed: true,
            state: DeviceState::Fresh,
            locked: false,
            profiles: vec![InstalledProfile {
                identifier: "com.example.wifi".into(),
                uuid: uuid::Uuid::new_v4().to_string(),
                payload_types: vec!["com.apple.wifi.managed".into()],
            }],
            managed_apps: if model == Model::Mac {
                vec![]
            } else {
                vec!["com.example.mail".into(), "com.example.notes".into()]
            },
            received: Vec::new(),
            unsent_report: None,
            scripts: HashMap::new(),
            last_status: 0,
            last_body: Bytes::new(),
            // Shorter than the server's keep-alive, so that a closed connection is
            // never reused.
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_millis(300))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn token_hex(&self) -> String {
        hex::encode(&self.push_token)
    }

    /// Answers the next commands of `request_type` as given (then Acknowledge again).
    pub fn script(&mut self, request_type: &str, answers: &[Answer]) {
        self.scripts
            .entry(request_type.to_owned())
            .or_default()
            .extend(answers.iter().cloned());
    }

    /// Downloads and installs an enrollment profile: identity, Authenticate, TokenUpdate.
    /// Answers the HTTP status of the failing step as an error.
    pub async fn enroll(&mut self, profile_url: &str, now: i64) -> anyhow::Result<()> {
        let response = self.http.get(profile_url).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "profile download answered {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        anyhow::ensure!(
            content_type == "application/x-apple-aspen-config",
            "profile content type {content_type}"
        );
        let body = response.bytes().await?;
        self.install(&body, now).await?;
        let status = self.authenticate().await?;
        anyhow::ensure!(status == 200, "Authenticate answered {status}");
        let status = self.token_update().await?;
        anyhow::ensure!(status == 200, "TokenUpdate answered {status}");
        self.state = DeviceState::Enrolled;
        Ok(())
    }

    /// Installs a profile body (signed or not): the identity and the MDM settings.
    pub async fn install(&mut self, body: &[u8], now: i64) -> anyhow::Result<()> {
        let xml = if body.starts_with(b"<?xml") || body.starts_with(b"<plist") {
            body.to_vec()
        } else {
            // A signed profile: CMS with the profile inside.
            let pkcs7 = Pkcs7::from_der(body)?;
            let mut out = Vec::new();
            let store = X509StoreBuilder::new()?.build();
            let none: Stack<X509> = Stack::new()?;
            pkcs7.verify(
                &none,
                &store,
                None,
                Some(&mut out),
                Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY,
            )?;
            out
        };
        let profile: Value = plist::from_bytes(&xml)?;
        let root = profile
            .as_dictionary()
            .ok_or_else(|| anyhow::anyhow!("the profile is not a dictionary"))?;
        anyhow::ensure!(
            root.get("PayloadType").and_then(Value::as_string) == Some("Configuration")
        );
        let identifier = root
            .get("PayloadIdentifier")
            .and_then(Value::as_string)
            .ok_or_else(|| anyhow::anyhow!("no PayloadIdentifier"))?
            .to_owned();
        let payloads = root
            .get("PayloadContent")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("no PayloadContent"))?;
        let find = |kind: &str| {
            payloads
                .iter()
                .filter_map(Value::as_dictionary)
                .find(|p| p.get("PayloadType").and_then(Value::as_string) == Some(kind))
        };
        let mdm = find("com.apple.mdm").ok_or_else(|| anyhow::anyhow!("no MDM payload"))?;
        let text = |d: &Dictionary, k: &str| d.get(k).and_then(Value::as_string).map(str::to_owned);
        self.server_url = text(mdm, "ServerURL").ok_or_else(|| anyhow::anyhow!("no ServerURL"))?;
        self.check_in_url = text(mdm, "CheckInURL").unwrap_or_else(|| self.server_url.clone());
        self.topic = text(mdm, "Topic").ok_or_else(|| anyhow::anyhow!("no Topic"))?;
        self.check_out_when_removed = mdm
            .get("CheckOutWhenRemoved")
            .and_then(Value::as_boolean)
            .unwrap_or(false);
        anyhow::ensure!(
            mdm.get("SignMessage").and_then(Value::as_boolean) == Some(true),
            "SignMessage is not true"
        );
        let identity_uuid = text(mdm, "IdentityCertificateUUID")
            .ok_or_else(|| anyhow::anyhow!("no IdentityCertificateUUID"))?;
        let identity = payloads
            .iter()
            .filter_map(Value::as_dictionary)
            .find(|p| text(p, "PayloadUUID").as_deref() == Some(identity_uuid.as_str()))
            .ok_or_else(|| anyhow::anyhow!("IdentityCertificateUUID names no payload"))?;
        match text(identity, "PayloadType").as_deref() {
            Some("com.apple.security.scep") => {
                let content = identity
                    .get("PayloadContent")
                    .and_then(Value::as_dictionary)
                    .ok_or_else(|| anyhow::anyhow!("SCEP payload without content"))?;
                let url =
                    text(content, "URL").ok_or_else(|| anyhow::anyhow!("SCEP without URL"))?;
                let challenge = text(content, "Challenge").unwrap_or_default();
                let key = super::pki::new_key()?;
                let issued =
                    super::scep::enroll(&self.http, &url, &challenge, &self.udid, &key, now)
                        .await?;
                self.identity = Some((issued.cert, key));
            }
            Some("com.apple.security.pkcs12") => {
                let data = identity
                    .get("PayloadContent")
                    .and_then(Value::as_data)
                    .ok_or_else(|| anyhow::anyhow!("PKCS#12 payload without data"))?;
                let password = text(identity, "Password").unwrap_or_default();
                let parsed = Pkcs12::from_der(data)?.parse2(&password)?;
                let (Some(cert), Some(key)) = (parsed.cert, parsed.pkey) else {
                    anyhow::bail!("the PKCS#12 holds no identity");
                };
                self.identity = Some((cert, key));
            }
            other => anyhow::bail!("unsupported identity payload {other:?}"),
        }
        self.profiles.push(InstalledProfile {
            identifier,
            uuid: text(root, "PayloadUUID").unwrap_or_default(),
            payload_types: payloads
                .iter()
                .filter_map(Value::as_dictionary)
                .filter_map(|p| text(p, "PayloadType"))
                .collect(),
        });
        Ok(())
    }

    /// The identifier of the installed MDM profile.
    pub fn mdm_profile(&self) -> Option<String> {
        self.profiles
            .iter()
            .find(|p| p.payload_types.iter().any(|t| t == "com.apple.mdm"))
            .map(|p| p.identifier.clone())
    }

    fn base(&self, message_type: &str) -> Dictionary {
        let mut dict = Dictionary::new();
        dict.insert("MessageType".into(), message_type.into());
        dict.insert("Topic".into(), self.topic.clone().into());
        dict.insert("UDID".into(), self.udid.clone().into());
        dict
    }

    pub async fn authenticate(&mut self) -> anyhow::Result<u16> {
        let mut dict = self.base("Authenticate");
        dict.insert("BuildVersion".into(), self.build_version.clone().into());
        dict.insert("OSVersion".into(), self.os_version.clone().into());
        dict.insert("SerialNumber".into(), self.serial.clone().into());
        match self.model {
            Model::Mac => {
                dict.insert("DeviceName".into(), self.device_name.clone().into());
                dict.insert("Model".into(), "MacBookPro18,3".into());
                dict.insert("ModelName".into(), "MacBook Pro".into());
                dict.insert("ProductName".into(), "MacBookPro18,3".into());
            }
            Model::IPhone => {
                dict.insert("ProductName".into(), "iPhone15,2".into());
                dict.insert("IMEI".into(), "35 208706 123456 7".into());
            }
            Model::IPad => {
                dict.insert("ProductName".into(), "iPad13,1".into());
            }
        }
        self.check_in(dict).await
    }

    pub async fn token_update(&mut self) -> anyhow::Result<u16> {
        let mut dict = self.base("TokenUpdate");
        dict.insert("Token".into(), Value::Data(self.push_token.clone()));
        dict.insert("PushMagic".into(), self.push_magic.clone().into());
        dict.insert("AwaitingConfiguration".into(), false.into());
        if let Some(unlock) = &self.unlock_token {
            dict.insert("UnlockToken".into(), Value::Data(unlock.clone()));
        }
        self.check_in(dict).await
    }

    pub async fn check_out(&mut self) -> anyhow::Result<u16> {
        let dict = self.base("CheckOut");
        let status = self.check_in(dict).await?;
        self.state = DeviceState::Unenrolled;
        Ok(status)
    }

    /// Sends any check-in message (for tests of the less common ones).
    pub async fn check_in(&mut self, dict: Dictionary) -> anyhow::Result<u16> {
        let body = to_xml(&dict);
        let (status, body) = self.send(&self.check_in_url.clone(), body, true).await?;
        self.last_status = status;
        self.last_body = body;
        Ok(status)
    }

    /// Sends a raw body to the check-in endpoint.
    pub async fn send_raw(
        &mut self,
        url: &str,
        body: Vec<u8>,
        check_in: bool,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.send(url, body, check_in).await
    }

    async fn send(&self, url: &str, body: Vec<u8>, check_in: bool) -> anyhow::Result<(u16, Bytes)> {
        let mut request = self.http.put(url);
        if check_in {
            request = request.header("content-type", CHECKIN_TYPE);
        }
        if let Some((cert, key)) = &self.identity {
            match &self.auth {
                AuthMode::Signature => {
                    let none: Stack<X509> = Stack::new()?;
                    let signature = Pkcs7::sign(
                        cert,
                        key,
                        &none,
                        &body,
                        Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY,
                    )?;
                    request = request.header("Mdm-Signature", STANDARD.encode(signature.to_der()?));
                }
                AuthMode::Forwarded { header, rfc9440 } => {
                    let value = if *rfc9440 {
                        format!(":{}:", STANDARD.encode(cert.to_der()?))
                    } else {
                        escape(&String::from_utf8(cert.to_pem()?)?)
                    };
                    request = request.header(header.as_str(), value);
                }
            }
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }

    /// Checks in with Idle (or the report that did not get through last time) and works
    /// through the commands the server hands out until it answers nothing. Answers how
    /// many commands were handled.
    pub async fn poll(&mut self) -> anyhow::Result<usize> {
        if self.state != DeviceState::Enrolled {
            return Ok(0);
        }
        let mut report = self
            .unsent_report
            .take()
            .unwrap_or_else(|| self.status_report("Idle", None));
        let mut handled = 0;
        for _ in 0..1000 {
            let sent = self
                .send(&self.server_url.clone(), to_xml(&report), false)
                .await;
            let (status, body) = match sent {
                Ok(answer) => answer,
                Err(error) => {
                    self.keep_unsent(report);
                    return Err(error);
                }
            };
            self.last_status = status;
            self.last_body = body.clone();
            if status != 200 {
                if status >= 500 {
                    self.keep_unsent(report);
                }
                return Ok(handled);
            }
            if body.is_empty() {
                return Ok(handled);
            }
            let value: Value = plist::from_bytes(&body)?;
            let root = value
                .as_dictionary()
                .ok_or_else(|| anyhow::anyhow!("a command is not a dictionary"))?;
            let uuid = root
                .get("CommandUUID")
                .and_then(Value::as_string)
                .ok_or_else(|| anyhow::anyhow!("a command without CommandUUID"))?
                .to_owned();
            let command = root
                .get("Command")
                .and_then(Value::as_dictionary)
                .ok_or_else(|| anyhow::anyhow!("a command without Command"))?
                .clone();
            let request_type = command
                .get("RequestType")
                .and_then(Value::as_string)
                .unwrap_or("")
                .to_owned();
            self.received.push(Received {
                uuid: uuid.clone(),
                request_type: request_type.clone(),
                command: command.clone(),
            });
            handled += 1;
            match self.execute(&uuid, &request_type, &command).await? {
                Some(next) => report = next,
                None => return Ok(handled),
            }
        }
        Ok(handled)
    }

    /// Keeps a command's report for the next check-in (an Idle is sent anew anyway).
    fn keep_unsent(&mut self, report: Dictionary) {
        if report.get("CommandUUID").is_some() {
            self.unsent_report = Some(report);
        }
    }

    fn status_report(&self, status: &str, uuid: Option<&str>) -> Dictionary {
        let mut dict = Dictionary::new();
        dict.insert("Status".into(), status.into());
        dict.insert("UDID".into(), self.udid.clone().into());
        if let Some(uuid) = uuid {
            dict.insert("CommandUUID".into(), uuid.into());
        }
        dict
    }

    /// Carries a command out; answers the report to send, or None when the device left
    /// management (wiped, or its MDM profile removed with a CheckOut sent).
    async fn execute(
        &mut self,
        uuid: &str,
        request_type: &str,
        command: &Dictionary,
    ) -> anyhow::Result<Option<Dictionary>> {
        let scripted = self
            .scripts
            .get_mut(request_type)
            .and_then(VecDeque::pop_front);
        let answer = scripted.unwrap_or(Answer::Acknowledge);
        match answer {
            Answer::NotNow => return Ok(Some(self.status_report("NotNow", Some(uuid)))),
            Answer::FormatError => {
                return Ok(Some(self.status_report("CommandFormatError", Some(uuid))));
            }
            Answer::Error {
                code,
                domain,
                description,
            } => {
                let mut report = self.status_report("Error", Some(uuid));
                report.insert(
                    "ErrorChain".into(),
                    error_chain(code, &domain, &description),
                );
                return Ok(Some(report));
            }
            Answer::Acknowledge => {}
        }
        let mut report = self.status_report("Acknowledged", Some(uuid));
        let text = |k: &str| command.get(k).and_then(Value::as_string).map(str::to_owned);
        match request_type {
            "DeviceInformation" => {
                let queries: Vec<String> = command
                    .get("Queries")
                    .and_then(Value::as_array)
                    .map(|q| {
                        q.iter()
                            .filter_map(Value::as_string)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let mut answers = Dictionary::new();
                for query in queries {
                    if let Some(value) = self.query(&query) {
                        answers.insert(query, value);
                    }
                }
                report.insert("QueryResponses".into(), Value::Dictionary(answers));
            }
            "SecurityInfo" => {
                let mut info = Dictionary::new();
                if self.model == Model::Mac {
                    info.insert("FDE_Enabled".into(), true.into());
                    info.insert("SystemIntegrityProtectionEnabled".into(), true.into());
                    info.insert(
                        "FirewallSettings".into(),
                        Value::Dictionary(Dictionary::from_iter([
                            ("FirewallEnabled".to_owned(), Value::from(true)),
                            ("BlockAllIncoming".to_owned(), Value::from(false)),
                            ("StealthMode".to_owned(), Value::from(false)),
                        ])),
                    );
                } else {
                    info.insert("HardwareEncryptionCaps".into(), 3.into());
                    info.insert("PasscodeCompliant".into(), true.into());
                    info.insert("PasscodeCompliantWithProfiles".into(), true.into());
                }
                info.insert("PasscodePresent".into(), self.passcode_present.into());
                report.insert("SecurityInfo".into(), Value::Dictionary(info));
            }
            "ProfileList" => {
                let list = self
                    .profiles
                    .iter()
                    .map(|p| {
                        Value::Dictionary(Dictionary::from_iter([
                            (
                                "PayloadIdentifier".to_owned(),
                                Value::from(p.identifier.clone()),
                            ),
                            ("PayloadUUID".to_owned(), Value::from(p.uuid.clone())),
                            ("PayloadVersion".to_owned(), Value::from(1)),
                            ("IsManaged".to_owned(), Value::from(true)),
                            (
                                "PayloadDisplayName".to_owned(),
                                Value::from(p.identifier.clone()),
                            ),
                            (
                                "PayloadContent".to_owned(),
                                Value::Array(
                                    p.payload_types
                                        .iter()
                                        .map(|t| {
                                            Value::Dictionary(Dictionary::from_iter([(
                                                "PayloadType".to_owned(),
                                                Value::from(t.clone()),
                                            )]))
                                        })
                                        .collect(),
                                ),
                            ),
                        ]))
                    })
                    .collect();
                report.insert("ProfileList".into(), Value::Array(list));
            }
            "ManagedApplicationList" => {
                let mut apps = Dictionary::new();
                for app in &self.managed_apps {
                    apps.insert(
                        app.clone(),
                        Value::Dictionary(Dictionary::from_iter([
                            ("Status".to_owned(), Value::from("Managed")),
                            ("ManagementFlags".to_owned(), Value::from(1)),
                            ("HasConfiguration".to_owned(), Value::from(false)),
                            ("HasFeedback".to_owned(), Value::from(false)),
                            ("IsValidated".to_owned(), Value::from(true)),
                        ])),
                    );
                }
                report.insert("ManagedApplicationList".into(), Value::Dictionary(apps));
            }
            "InstalledApplicationList" => {
                let mut list: Vec<Value> = self
                    .managed_apps
                    .iter()
                    .map(|app| app_entry(app, "Company app"))
                    .collect();
                list.push(app_entry("com.apple.mobilesafari", "Safari"));
                report.insert("InstalledApplicationList".into(), Value::Array(list));
            }
            "DeviceLock" => {
                self.locked = true;
                if text("Message").is_some() || text("PhoneNumber").is_some() {
                    report.insert("MessageResult".into(), "Success".into());
                }
            }
            "ClearPasscode" => {
                let given = command
                    .get("UnlockToken")
                    .and_then(Value::as_data)
                    .map(<[u8]>::to_vec);
                if given.is_none() || given != self.unlock_token {
                    let mut error = self.status_report("Error", Some(uuid));
                    error.insert(
                        "ErrorChain".into(),
                        error_chain(12_025, "MCMDMErrorDomain", "Invalid unlock token"),
                    );
                    return Ok(Some(error));
                }
                self.passcode_present = false;
            }
            "EraseDevice" => {
                // The device answers, then erases itself and is gone.
                let _ = self
                    .send(&self.server_url.clone(), to_xml(&report), false)
                    .await?;
                self.state = DeviceState::Wiped;
                return Ok(None);
            }
            "RestartDevice" => {
                if self.model != Model::Mac && !self.supervised {
                    let mut error = self.status_report("Error", Some(uuid));
                    error.insert(
                        "ErrorChain".into(),
                        error_chain(12_081, "MCMDMErrorDomain", "The device must be supervised"),
                    );
                    return Ok(Some(error));
                }
            }
            "RemoveProfile" => {
                let identifier = text("Identifier").unwrap_or_default();
                let is_mdm = self.mdm_profile().as_deref() == Some(identifier.as_str());
                self.profiles.retain(|p| p.identifier != identifier);
                if is_mdm {
                    // Management ends: the device checks out (CheckOutWhenRemoved) or
                    // acknowledges, and is gone either way.
                    if !self.check_out_when_removed {
                        let _ = self
                            .send(&self.server_url.clone(), to_xml(&report), false)
                            .await?;
                    }
                    self.identity_removed().await?;
                    return Ok(None);
                }
            }
            "RemoveApplication" => {
                let identifier = text("Identifier").unwrap_or_default();
                self.managed_apps.retain(|a| *a != identifier);
            }
            _ => {
                let mut error = self.status_report("Error", Some(uuid));
                error.insert(
                    "ErrorChain".into(),
                    error_chain(12_021, "MCMDMErrorDomain", "Unknown command"),
                );
                return Ok(Some(error));
            }
        }
        Ok(Some(report))
    }

    async fn identity_removed(&mut self) -> anyhow::Result<()> {
        if self.check_out_when_removed {
            let dict = self.base("CheckOut");
            let _ = self.check_in(dict).await?;
        }
        self.state = DeviceState::Unenrolled;
        Ok(())
    }

    fn query(&self, query: &str) -> Option<Value> {
        let mac = self.model == Model::Mac;
        Some(match query {
            "UDID" => self.udid.clone().into(),
            "DeviceName" => self.device_name.clone().into(),
            "OSVersion" => self.os_version.clone().into(),
            "BuildVersion" => self.build_version.clone().into(),
            "ModelName" => match self.model {
                Model::Mac => "MacBook Pro",
                Model::IPhone => "iPhone",
                Model::IPad => "iPad",
            }
            .into(),
            "Model" => match self.model {
                Model::Mac => "MacBookPro18,3",
                Model::IPhone => "MQ9T3LL/A",
                Model::IPad => "MHQR3LL/A",
            }
            .into(),
            "ProductName" => match self.model {
                Model::Mac => "MacBookPro18,3",
                Model::IPhone => "iPhone15,2",
                Model::IPad => "iPad13,1",
            }
            .into(),
            "SerialNumber" => self.serial.clone().into(),
            "IMEI" if self.model == Model::IPhone => "35 208706 123456 7".into(),
            "IsSupervised" => self.supervised.into(),
            "IsActivationLockEnabled" => false.into(),
            "PINRequiredForDeviceLock" if mac => true.into(),
            "PINRequiredForEraseDevice" if mac => true.into(),
            _ => return None,
        })
    }
}

fn app_entry(identifier: &str, name: &str) -> Value {
    Value::Dictionary(Dictionary::from_iter([
        ("Identifier".to_owned(), Value::from(identifier)),
        ("Name".to_owned(), Value::from(name)),
        ("Version".to_owned(), Value::from("1")),
        ("ShortVersion".to_owned(), Value::from("1.0")),
        ("BundleSize".to_owned(), Value::from(1_048_576)),
    ]))
}

fn error_chain(code: i64, domain: &str, description: &str) -> Value {
    Value::Array(vec![Value::Dictionary(Dictionary::from_iter([
        ("ErrorCode".to_owned(), Value::from(code)),
        ("ErrorDomain".to_owned(), Value::from(domain)),
        ("LocalizedDescription".to_owned(), Value::from(description)),
        ("USEnglishDescription".to_owned(), Value::from(description)),
    ]))])
}

pub fn to_xml(dict: &Dictionary) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = Value::Dictionary(dict.clone()).to_writer_xml(&mut out);
    out
}

/// URL-escapes a PEM as nginx's `$ssl_client_escaped_cert` does.
pub fn escape(pem: &str) -> String {
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for byte in pem.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
