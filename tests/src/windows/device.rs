//! A simulated Windows 10 device: it enrols by replaying the requests recorded from a
//! real client (with this server's URLs, its own key, CSR and DeviceID), then runs
//! OMA-DM sessions and answers commands as a real client does: a Status for every
//! command, Results for Gets, node support by edition and build, large results in
//! chunks (MoreData) when its message size is small, Alert 1226 when its user removes the
//! work account.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::X509;
use rand::Rng;

use super::der::{SignatureOid, windows_csr};
use super::tree::{self, Node, esc};

pub const CAPTURE_DISCOVERY: &str = include_str!("data/01-discovery-request.xml");
pub const CAPTURE_POLICY: &str = include_str!("data/02-policy-request.xml");
pub const CAPTURE_ENROLLMENT: &str = include_str!("data/03-enrollment-request.xml");
pub const CAPTURE_SESSION: &str = include_str!("data/04-management-session1-msg1.xml");
pub const CAPTURE_UNENROLL: &str = include_str!("data/05-management-session2-user-unenroll.xml");

/// The real client's DeviceID in the captures.
pub const CAPTURED_DEVICE_ID: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";
const CAPTURED_DISCOVERY_URL: &str =
    "https://EnterpriseEnrollment.fleetdm.ngrok.io:443/EnrollmentServer/Discovery.svc";
const CAPTURED_POLICY_URL: &str = "https://windows.fleetdm.ngrok.io/EnrollmentServer/Policy.svc";
const CAPTURED_ENROLLMENT_URL: &str =
    "https://windows.fleetdm.ngrok.io/EnrollmentServer/Enrollment.svc";
const CAPTURED_MANAGEMENT_URL: &str = "https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc";
const USER_TOKEN_TYPE: &str = "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// Windows 10 Enterprise (OSEdition 72 as in the capture).
    Desktop,
    /// Windows 10 Mobile (OSEdition 104).
    Mobile,
}

/// Where the device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    NotEnrolled,
    Enrolled,
    /// Factory reset without keeping the enrollment.
    Wiped,
    /// The enrollment was removed (server Unenroll, or the user).
    Unenrolled,
}

/// A SOAP fault the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub subcode: String,
    pub reason: String,
    pub error_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the server answered a fault: {0:?}")]
    Fault(Fault),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<reqwest::Error> for EnrollError {
    fn from(e: reqwest::Error) -> Self {
        Self::Other(e.into())
    }
}

impl EnrollError {
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Self::Fault(f) => Some(f),
            Self::Other(_) => None,
        }
    }
}

/// What discovery answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub auth_policy: String,
    pub enrollment_version: String,
    pub policy_url: String,
    pub enrollment_url: String,
    pub authentication_url: Option<String>,
}

/// What the provisioning document set up.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub certificate: X509,
    pub root: X509,
    pub provider_id: String,
    pub management_url: String,
    pub search_criteria: String,
    pub store: String,
    pub ent_dm_id: String,
    pub pfn: Option<String>,
    pub poll: BTreeMap<String, String>,
    pub renew_period_days: Option<u32>,
    /// The decoded wap-provisioningdoc.
    pub document: String,
}

/// One command the device carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub verb: String,
    pub loc_uri: String,
    pub cmd_id: String,
    pub status: u16,
}

/// What one session did.
#[derive(Debug, Clone, Default)]
pub struct SessionReport {
    /// Messages the device sent.
    pub messages: usize,
    pub executed: Vec<Executed>,
    /// The server's MsgIDs, in order.
    pub server_msg_ids: Vec<u64>,
    /// The server asked for the next message (Alert 1222) this many times.
    pub next_message_alerts: usize,
    /// Every Status the server sent to the device's commands: (CmdRef, Cmd, code).
    pub statuses: Vec<(String, String, u16)>,
}

/// A simulated Windows device.
pub struct WindowsDevice {
    pub server: String,
    pub cert_header: String,
    pub device_id: String,
    pub hw_device_id: String,
    pub edition: Edition,
    pub build: u32,
    pub name: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub encrypted: bool,
    pub lifecycle: Lifecycle,
    pub enrollment: Option<Enrollment>,
    /// The WNS channel the device got for the provisioned PFN.
    pub channel: Option<String>,
    /// Results longer than this go in chunks (MoreData), one chunk per message.
    pub max_chunk: Option<usize>,
    /// The PIN of a mobile device (None: no PIN set).
    pub pin: Option<String>,
    pub reboots: usize,
    pub executed: Vec<Executed>,
    /// Status codes forced for nodes (LocURI without `./Device`), as a broken or odd
    /// device would answer.
    pub overrides: BTreeMap<String, u16>,
    /// How many times a management message is sent again when the connection fails or
    /// the server answers one of [`RETRIED_STATUSES`], [`Self::retry_wait`] apart, as the
    /// DM client does (Microsoft's "OMA DM Client Connection Retry"). 0 by default, so
    /// that a test sees the first failure.
    pub retries: u32,
    pub retry_wait: Duration,
    /// Answers to management messages to lose, as if the connection broke after the
    /// server sent them (the message is then sent again as `retries` says).
    pub lose_answers: u32,
    key: PKey<Private>,
    http: reqwest::Client,
    session_id: u32,
}

/// The answers after which the DM client sends its message again.
pub const RETRIED_STATUSES: [u16; 6] = [404, 408, 413, 500, 503, 504];

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Replaces the text of every `<ac:ContextItem Name="name">` value in a captured request.
fn set_context(xml: &str, name: &str, value: &str) -> String {
    let marker = format!("Name=\"{name}\"><ac:Value>");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(at) = rest.find(&marker) {
        let start = at + marker.len();
        out.push_str(&rest[..start]);
        out.push_str(&esc(value));
        let end = rest[start..]
            .find("</ac:Value>")
            .map_or(rest.len(), |e| start + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn soap_fault(status: u16, body: &str) -> Option<Fault> {
    let root = tree::parse(body).ok()?;
    let fault = root.find("Fault")?;
    Some(Fault {
        status,
        subcode: fault
            .text_at(&["Code", "Subcode", "Value"])
            .unwrap_or_default(),
        reason: fault.text_at(&["Reason", "Text"]).unwrap_or_default(),
        error_type: fault.find("ErrorType").map(|n| n.text.trim().to_owned()),
    })
}

impl WindowsDevice {
    /// A device with a new 2048-bit key and a random DeviceID.
    pub fn new(server: &str, cert_header: &str, edition: Edition) -> anyhow::Result<Self> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        Ok(Self::with_key(server, cert_header, edition, key))
    }

    /// A device with a given key (load generators share one to save key generation).
    pub fn with_key(server: &str, cert_header: &str, edition: Edition, key: PKey<Private>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            // Idle connections go long before a test server's keep-alive closes them.
            .pool_idle_timeout(std::time::Duration::from_millis(500))
            .build()
            .unwrap_or_default();
        Self::with_client(server, cert_header, edition, key, http)
    }

    /// A device with a given key and HTTP client (building a TLS-capable client loads the
    /// system's roots: load generators share one).
    pub fn with_client(
        server: &str,
        cert_header: &str,
        edition: Edition,
        key: PKey<Private>,
        http: reqwest::Client,
    ) -> Self {
        let mut rng = rand::rng();
        let id: [u8; 16] = rng.random();
        let hw: [u8; 32] = rng.random();
        let serial: u32 = rng.random();
        Self {
            server: server.trim_end_matches('/').to_owned(),
            cert_header: cert_header.to_owned(),
            device_id: upper_hex(&id),
            hw_device_id: upper_hex(&hw),
            edition,
            build: match edition {
                Edition::Desktop => 19043,
                Edition::Mobile => 15254,
            },
            name: format!("DESKTOP-{:06X}", serial & 0xffffff),
            manufacturer: "VMware, Inc.".into(),
            model: "VMware7,1".into(),
            serial: format!("VMware-{serial:08x}"),
            encrypted: true,
            lifecycle: Lifecycle::NotEnrolled,
            enrollment: None,
            channel: None,
            max_chunk: None,
            pin: (edition == Edition::Mobile).then(|| "1234".into()),
            reboots: 0,
            executed: Vec::new(),
            overrides: BTreeMap::new(),
            retries: 0,
            retry_wait: Duration::from_secs(1),
            lose_answers: 0,
            key,
            http,
            session_id: 0,
        }
    }

    /// The device of the capture itself: its DeviceID (its key is unknown, so it cannot
    /// renew; it enrols with the captured CSR).
    pub fn captured(server: &str, cert_header: &str) -> anyhow::Result<Self> {
        let mut device = Self::new(server, cert_header, Edition::Desktop)?;
        device.device_id = CAPTURED_DEVICE_ID.into();
        device.hw_device_id =
            "3B3ED6D0EA88CBFCF37D36F90F22FE61172348C0162FC3840D6703149870CE76".into();
        device.name = "DESKTOP-28FGAI6".into();
        Ok(device)
    }

    pub fn os_version(&self) -> String {
        format!("10.0.{}.2364", self.build)
    }

    fn os_edition(&self) -> &'static str {
        match self.edition {
            Edition::Desktop => "72",
            Edition::Mobile => "104",
        }
    }

    async fn soap(&self, url: &str, body: String, with_cert: bool) -> Result<String, EnrollError> {
        let mut request = self
            .http
            .post(url)
            .header("Content-Type", "application/soap+xml; charset=utf-8")
            .header("User-Agent", "ENROLLClient")
            .body(body);
        if with_cert && let Some(enrollment) = &self.enrollment {
            request = request.header(
                &self.cert_header,
                self.cert_header_value(&enrollment.certificate)?,
            );
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let length = response.content_length();
        let text = response.text().await?;
        if let Some(fault) = soap_fault(status, &text) {
            return Err(EnrollError::Fault(fault));
        }
        if status != 200 {
            return Err(anyhow::anyhow!("{url} answered {status}: {text}").into());
        }
        if length != Some(text.len() as u64) {
            return Err(anyhow::anyhow!("the answer has no Content-Length").into());
        }
        Ok(text)
    }

    fn cert_header_value(&self, certificate: &X509) -> anyhow::Result<String> {
        let pem = String::from_utf8(certificate.to_pem()?)?;
        Ok(url_encode(&pem))
    }

    /// GET then POST Discovery.svc with the captured request.
    pub async fn discover(&self, email: &str) -> Result<Discovery, EnrollError> {
        let url = format!("{}/EnrollmentServer/Discovery.svc", self.server);
        let probe = self.http.get(&url).send().await?;
        if probe.status() != 200 || probe.content_length() != Some(0) {
            return Err(anyhow::anyhow!("the discovery probe answered {}", probe.status()).into());
        }
        let mut body = CAPTURE_DISCOVERY
            .replace(CAPTURED_DISCOVERY_URL, &url)
            .replace("demo@fleetdm.ngrok.io", &esc(email))
            .replace("10.0.19043.2364", &self.os_version());
        if self.edition == Edition::Mobile {
            body = body
                .replace(
                    "<DeviceType>CIMClient_Windows</DeviceType>",
                    "<DeviceType>WindowsPhone</DeviceType>",
                )
                .replace("<OSEdition>72</OSEdition>", "<OSEdition>104</OSEdition>");
        }
        let text = self.soap(&url, body, false).await?;
        let root = tree::parse(&text)?;
        let result = root
            .find("DiscoverResult")
            .ok_or_else(|| anyhow::anyhow!("no DiscoverResult in {text}"))?;
        Ok(Discovery {
            auth_policy: result.text_at(&["AuthPolicy"]).unwrap_or_default(),
            enrollment_version: result.text_at(&["EnrollmentVersion"]).unwrap_or_default(),
            policy_url: result
                .text_at(&["EnrollmentPolicyServiceUrl"])
                .unwrap_or_default(),
            enrollment_url: result
                .text_at(&["EnrollmentServiceUrl"])
                .unwrap_or_default(),
            authentication_url: result.text_at(&["AuthenticationServiceUrl"]),
        })
    }

    /// The security header for a user name and password (OnPremise, bulk secret).
    fn username_security(username: &str, password: &str) -> String {
        format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:UsernameToken u:Id="uuid-cc1ccc1f-2fba-4bcf-b063-ffc0cac77917-4"><wsse:Username>{}</wsse:Username><wsse:Password wsse:Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{}</wsse:Password></wsse:UsernameToken></wsse:Security>"#,
            esc(username),
            esc(password)
        )
    }

    fn token_security(token: &str) -> String {
        format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:BinarySecurityToken ValueType="{USER_TOKEN_TYPE}" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary">{}</wsse:BinarySecurityToken></wsse:Security>"#,
            STANDARD.encode(token)
        )
    }

    fn replace_security(capture: &str, security: &str) -> String {
        let start = capture.find("<wsse:Security").unwrap_or(0);
        let end = capture
            .find("</wsse:Security>")
            .map_or(start, |e| e + "</wsse:Security>".len());
        format!("{}{}{}", &capture[..start], security, &capture[end..])
    }

    /// XCEP GetPolicies; answers (minimalKeyLength, hash algorithm OID).
    pub async fn policies(
        &self,
        policy_url: &str,
        security: &str,
    ) -> Result<(u32, String), EnrollError> {
        let body = Self::replace_security(
            &CAPTURE_POLICY.replace(CAPTURED_POLICY_URL, policy_url),
            security,
        );
        let text = self.soap(policy_url, body, false).await?;
        let root = tree::parse(&text)?;
        let bits = root
            .find("minimalKeyLength")
            .and_then(|n| n.text.trim().parse().ok())
            .unwrap_or(0);
        let oid = root
            .find("oID")
            .and_then(|o| o.text_at(&["value"]))
            .unwrap_or_default();
        Ok((bits, oid))
    }

    /// The captured RequestSecurityToken with this device's values and `csr`.
    pub fn enrollment_request(&self, enrollment_url: &str, security: &str, csr: &[u8]) -> String {
        let capture = CAPTURE_ENROLLMENT.replace(CAPTURED_ENROLLMENT_URL, enrollment_url);
        let start = capture
            .find("#base64binary\">")
            .map_or(0, |i| i + "#base64binary\">".len());
        let end = start + capture[start..].find('<').unwrap_or(0);
        let mut body = format!(
            "{}{}{}",
            &capture[..start],
            STANDARD.encode(csr),
            &capture[end..]
        );
        body = Self::replace_security(&body, security);
        body = set_context(&body, "DeviceID", &self.device_id);
        body = set_context(&body, "HWDevID", &self.hw_device_id);
        body = set_context(&body, "DeviceName", &self.name);
        body = set_context(&body, "OSVersion", &self.os_version());
        body = set_context(&body, "ApplicationVersion", &self.os_version());
        body = set_context(&body, "OSEdition", self.os_edition());
        if self.edition == Edition::Mobile {
            body = set_context(&body, "DeviceType", "WindowsPhone");
        }
        body
    }

    /// Issues the RequestSecurityToken and installs what it answers.
    pub async fn request_certificate(
        &mut self,
        enrollment_url: &str,
        body: String,
        with_cert: bool,
    ) -> Result<(), EnrollError> {
        let text = self.soap(enrollment_url, body, with_cert).await?;
        self.install(&text)?;
        Ok(())
    }

    /// Full OnPremise or Federated enrollment as discovery decides, with this device's
    /// key and a CSR of the Windows shape.
    pub async fn enroll(&mut self, email: &str, password: &str) -> Result<Discovery, EnrollError> {
        let discovery = self.discover(email).await?;
        let security = match discovery.auth_policy.as_str() {
            "Federated" => {
                let url = discovery
                    .authentication_url
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("Federated without AuthenticationServiceUrl"))?;
                let token = self.sign_in(&url, email, password).await?;
                Self::token_security(&token)
            }
            _ => Self::username_security(email, password),
        };
        let (bits, _) = self.policies(&discovery.policy_url, &security).await?;
        if bits > 2048 {
            return Err(anyhow::anyhow!("the policy asks for {bits}-bit keys").into());
        }
        let csr = windows_csr(&self.key, &self.device_id, SignatureOid::OiwSha1Rsa)?;
        let body = self.enrollment_request(&discovery.enrollment_url, &security, &csr);
        self.request_certificate(&discovery.enrollment_url, body, false)
            .await?;
        Ok(discovery)
    }

    /// Enrols as the captured device with the captured CSR itself (only the URLs and the
    /// credentials change).
    pub async fn enroll_with_captured_csr(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<(), EnrollError> {
        let discovery = self.discover(email).await?;
        let security = Self::username_security(email, password);
        self.policies(&discovery.policy_url, &security).await?;
        let body = Self::replace_security(
            &CAPTURE_ENROLLMENT.replace(CAPTURED_ENROLLMENT_URL, &discovery.enrollment_url),
            &security,
        );
        self.request_certificate(&discovery.enrollment_url, body, false)
            .await
    }

    /// Bulk enrollment with a provisioning package's client certificate (Certificate
    /// policy): no credentials in the request, the certificate in the TLS layer.
    pub async fn enroll_with_certificate(
        &mut self,
        email: &str,
        certificate: &X509,
    ) -> Result<(), EnrollError> {
        let discovery = self.discover(email).await?;
        let csr = windows_csr(&self.key, &self.device_id, SignatureOid::OiwSha1Rsa)?;
        let security = r#"<wsse:Security s:mustUnderstand="1"></wsse:Security>"#;
        let mut body = self.enrollment_request(&discovery.enrollment_url, security, &csr);
        body = set_context(&body, "EnrollmentType", "Device");
        let text = {
            let response = self
                .http
                .post(&discovery.enrollment_url)
                .header("Content-Type", "application/soap+xml; charset=utf-8")
                .header(&self.cert_header, self.cert_header_value(certificate)?)
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            if let Some(fault) = soap_fault(status, &text) {
                return Err(EnrollError::Fault(fault));
            }
            text
        };
        self.install(&text)?;
        Ok(())
    }

    /// The Federated sign-in page: GET it, post the credentials, read `wresult`.
    pub async fn sign_in(
        &self,
        url: &str,
        email: &str,
        password: &str,
    ) -> Result<String, EnrollError> {
        let appru = "ms-app://windows.immersivecontrolpanel";
        let page = self
            .http
            .get(url)
            .query(&[("appru", appru), ("login_hint", email)])
            .send()
            .await?;
        if page.status() != 200 {
            return Err(anyhow::anyhow!("the sign-in page answered {}", page.status()).into());
        }
        let answer = self
            .http
            .post(url)
            .form(&[
                ("appru", appru),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await?;
        let status = answer.status().as_u16();
        let html = answer.text().await?;
        if status == 401 {
            return Err(EnrollError::Fault(Fault {
                status,
                subcode: "SignIn".into(),
                reason: "wrong password".into(),
                error_type: None,
            }));
        }
        if !html.contains(&format!("action=\"{appru}\"")) {
            return Err(anyhow::anyhow!("the page does not post to the app: {html}").into());
        }
        let start = html
            .find("name=\"wresult\" value=\"")
            .ok_or_else(|| anyhow::anyhow!("no wresult in {html}"))?
            + "name=\"wresult\" value=\"".len();
        let end = start + html[start..].find('"').unwrap_or(0);
        Ok(html[start..end].to_owned())
    }

    /// Reads the RSTR and its provisioning document; installs the certificates.
    fn install(&mut self, rstr: &str) -> anyhow::Result<()> {
        let root = tree::parse(rstr)?;
        let token = root
            .find("RequestedSecurityToken")
            .and_then(|t| t.child("BinarySecurityToken"))
            .ok_or_else(|| anyhow::anyhow!("no provisioning document in {rstr}"))?;
        anyhow::ensure!(
            token
                .attr("ValueType")
                .is_some_and(|v| v.ends_with("DeviceEnrollmentProvisionDoc")),
            "unexpected token type"
        );
        let document = String::from_utf8(STANDARD.decode(token.text.trim())?)?;
        let doc = tree::parse(&document)?;
        let mut renewal_only = true;
        let mut root_cert = None;
        let mut client_cert = None;
        let mut store = String::new();
        let mut renew_period = None;
        let mut application: BTreeMap<String, String> = BTreeMap::new();
        let mut provider: Option<&Node> = None;
        for characteristic in doc.all("characteristic") {
            match characteristic.attr("type") {
                Some("CertificateStore") => {
                    for store_node in characteristic.all("characteristic") {
                        match store_node.attr("type") {
                            Some("Root") => {
                                let system = store_node.child("characteristic");
                                let cert = system.and_then(|s| s.child("characteristic"));
                                if let Some(cert) = cert {
                                    root_cert = Some(Self::installed_cert(cert)?);
                                }
                            }
                            Some("My") => {
                                for child in store_node.all("characteristic") {
                                    match child.attr("type") {
                                        Some("WSTEP") => {
                                            renew_period = child.find("parm").and_then(|_| {
                                                child.child("characteristic").and_then(|r| {
                                                    r.all("parm")
                                                        .find(|p| {
                                                            p.attr("name") == Some("RenewPeriod")
                                                        })
                                                        .and_then(|p| p.attr("value"))
                                                        .and_then(|v| v.parse().ok())
                                                })
                                            });
                                        }
                                        Some(name) => {
                                            store = name.to_owned();
                                            for cert in child.all("characteristic") {
                                                if cert.attr("type") != Some("PrivateKeyContainer")
                                                {
                                                    client_cert = Some(Self::installed_cert(cert)?);
                                                }
                                            }
                                        }
                                        None => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Some("APPLICATION") => {
                    for parm in characteristic.all("parm") {
                        if let Some(name) = parm.attr("name") {
                            application.insert(
                                name.to_owned(),
                                parm.attr("value").unwrap_or("").to_owned(),
                            );
                        }
                    }
                    if application.contains_key("ADDR") {
                        renewal_only = false;
                    }
                }
                Some("DMClient") => {
                    provider = characteristic
                        .child("characteristic")
                        .and_then(|p| p.child("characteristic"));
                }
                _ => {}
            }
        }
        let certificate = client_cert.ok_or_else(|| anyhow::anyhow!("no client certificate"))?;
        let root_cert = root_cert.ok_or_else(|| anyhow::anyhow!("no root certificate"))?;
        // The client certificate must chain to the root that came with it.
        anyhow::ensure!(
            certificate.verify(&*root_cert.public_key()?)?,
            "the client certificate is not signed by the provisioned root"
        );
        if renewal_only {
            let enrollment = self.enrollment.as_mut().ok_or_else(|| {
                anyhow::anyhow!("a renewal answer for a device that is not enrolled")
            })?;
            anyhow::ensure!(
                application.get("PROVIDER-ID") == Some(&enrollment.provider_id),
                "the renewal names another provider"
            );
            enrollment.certificate = certificate;
            enrollment.root = root_cert;
            return Ok(());
        }
        let criteria = application
            .get("SSLCLIENTCERTSEARCHCRITERIA")
            .cloned()
            .unwrap_or_default();
        // Select the certificate as Windows does: by the subject in the criteria.
        let subject = criteria
            .strip_prefix("Subject=")
            .and_then(|rest| rest.split('&').next())
            .map(percent_decode)
            .unwrap_or_default();
        let cn = certificate
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            .unwrap_or_default();
        anyhow::ensure!(
            subject == format!("CN={cn}"),
            "the search criteria {criteria} do not select the issued certificate (CN={cn})"
        );
        anyhow::ensure!(
            criteria.ends_with(&format!("Stores=MY%5C{store}")),
            "the criteria look in another store than the certificate went to"
        );
        let provider = provider.ok_or_else(|| anyhow::anyhow!("no DMClient provider"))?;
        let provider_id = application.get("PROVIDER-ID").cloned().unwrap_or_default();
        anyhow::ensure!(
            provider.attr("type") == Some(provider_id.as_str()),
            "the DMClient provider differs from the w7 PROVIDER-ID"
        );
        let parm = |node: &Node, name: &str| {
            node.all("parm")
                .find(|p| p.attr("name") == Some(name))
                .and_then(|p| p.attr("value"))
                .map(str::to_owned)
        };
        let poll = provider
            .all("characteristic")
            .find(|c| c.attr("type") == Some("Poll"))
            .map(|p| {
                p.all("parm")
                    .filter_map(|parm| {
                        Some((
                            parm.attr("name")?.to_owned(),
                            parm.attr("value")?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pfn = provider
            .all("characteristic")
            .find(|c| c.attr("type") == Some("Push"))
            .and_then(|p| parm(p, "PFN"));
        self.enrollment = Some(Enrollment {
            certificate,
            root: root_cert,
            management_url: application.get("ADDR").cloned().unwrap_or_default(),
            provider_id,
            search_criteria: criteria,
            store,
            ent_dm_id: parm(provider, "EntDMID").unwrap_or_default(),
            pfn,
            poll,
            renew_period_days: renew_period,
            document,
        });
        self.lifecycle = Lifecycle::Enrolled;
        Ok(())
    }

    fn installed_cert(node: &Node) -> anyhow::Result<X509> {
        let thumbprint = node.attr("type").unwrap_or_default().to_owned();
        let encoded = node
            .all("parm")
            .find(|p| p.attr("name") == Some("EncodedCertificate"))
            .and_then(|p| p.attr("value"))
            .ok_or_else(|| anyhow::anyhow!("no EncodedCertificate"))?;
        let der = STANDARD.decode(encoded)?;
        let actual = upper_hex(&openssl::sha::sha1(&der));
        anyhow::ensure!(
            actual == thumbprint,
            "the certificate is filed under {thumbprint}, its thumbprint is {actual}"
        );
        Ok(X509::from_der(&der)?)
    }

    /// Renews the client certificate (ROBO): a new key, its PKCS#10 inside a PKCS#7
    /// signed with the current key, over the current client certificate.
    pub async fn renew(&mut self) -> Result<(), EnrollError> {
        let enrollment = self
            .enrollment
            .clone()
            .ok_or_else(|| anyhow::anyhow!("not enrolled"))?;
        let new_key = PKey::from_rsa(Rsa::generate(2048).map_err(anyhow::Error::from)?)
            .map_err(anyhow::Error::from)?;
        let csr = windows_csr(&new_key, &self.device_id, SignatureOid::Sha256Rsa)?;
        let chain = Stack::<X509>::new().map_err(anyhow::Error::from)?;
        let signed = Pkcs7::sign(
            &enrollment.certificate,
            &self.key,
            &chain,
            &csr,
            Pkcs7Flags::BINARY,
        )
        .map_err(anyhow::Error::from)?
        .to_der()
        .map_err(anyhow::Error::from)?;
        let url = format!("{}/EnrollmentServer/Enrollment.svc", self.server);
        let body = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep</a:Action><a:MessageID>urn:uuid:{id}</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">{url}</a:To><o:Security s:mustUnderstand="1" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><u:Timestamp u:Id="_0"><u:Created>2026-01-01T00:00:00.000Z</u:Created><u:Expires>2026-01-01T00:05:00.000Z</u:Expires></u:Timestamp></o:Security></s:Header><s:Body><RequestSecurityToken xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><TokenType>http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken</TokenType><RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew</RequestType><BinarySecurityToken ValueType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary" xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">{token}</BinarySecurityToken><AdditionalContext xmlns="http://schemas.xmlsoap.org/ws/2006/12/authorization"><ContextItem Name="DeviceType"><Value>CIMClient_Windows</Value></ContextItem><ContextItem Name="ApplicationVersion"><Value>{version}</Value></ContextItem></AdditionalContext></RequestSecurityToken></s:Body></s:Envelope>"#,
            id = uuid::Uuid::new_v4(),
            token = STANDARD.encode(&signed),
            version = self.os_version(),
        );
        self.request_certificate(&url, body, true).await?;
        self.key = new_key;
        Ok(())
    }

    // ---- management sessions ---------------------------------------------------------

    fn header(&self, management_url: &str, session: u32, msg_id: u64) -> String {
        format!(
            "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>{}</LocURI></Target><Source><LocURI>{}</LocURI></Source></SyncHdr>",
            esc(management_url),
            esc(&self.device_id)
        )
    }

    /// The first message of a session, shaped like the captured one.
    fn opening(&self, alert: &str, extra: &str) -> String {
        let management = self
            .enrollment
            .as_ref()
            .map(|e| e.management_url.clone())
            .unwrap_or_default();
        let capture = CAPTURE_SESSION
            .replace(CAPTURED_MANAGEMENT_URL, &management)
            .replace(CAPTURED_DEVICE_ID, &self.device_id)
            .replace(
                "<SessionID>1</SessionID>",
                &format!("<SessionID>{}</SessionID>", self.session_id),
            )
            .replace("<Data>1201</Data>", &format!("<Data>{alert}</Data>"))
            .replace("VMware, Inc.", &esc(&self.manufacturer))
            .replace("VMware7,1", &esc(&self.model));
        capture.replace("<Final/>", &format!("{extra}<Final/>"))
    }

    /// Sends a management message, and sends it again as [`Self::retries`] says.
    async fn send_message(&mut self, message: String) -> anyhow::Result<(u16, String)> {
        let mut retries = self.retries;
        loop {
            let mut sent = self.post_raw(message.clone(), true).await;
            if sent.is_ok() && self.lose_answers > 0 {
                self.lose_answers -= 1;
                sent = Err(anyhow::anyhow!("the answer was lost"));
            }
            let again = match &sent {
                Ok((status, _)) => RETRIED_STATUSES.contains(status),
                Err(_) => true,
            };
            if !again || retries == 0 {
                return sent;
            }
            retries -= 1;
            tokio::time::sleep(self.retry_wait).await;
        }
    }

    /// Sends one raw message to the management endpoint; answers status and body.
    pub async fn post_raw(&self, body: String, with_cert: bool) -> anyhow::Result<(u16, String)> {
        let enrollment = self
            .enrollment
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not enrolled"))?;
        let mut request = self
            .http
            .post(format!("{}?mode=Maintenance&Platform=WoA", enrollment.management_url))
            .header("User-Agent", "MSFT OMA DM Client/1.2.0.1")
            .header("Content-Type", "application/vnd.syncml.dm+xml")
            .header(
                "Accept",
                "application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml, application/octet-stream",
            )
            .header("Client-Request-Id", "0")
            .header("Ms-Cv", "lSF5mvWVYUyRu0Ka.0.0.1")
            .body(body);
        if with_cert {
            request = request.header(
                &self.cert_header,
                self.cert_header_value(&enrollment.certificate)?,
            );
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let length = response.content_length();
        let text = response.text().await?;
        anyhow::ensure!(
            length == Some(text.len() as u64),
            "the answer has no Content-Length"
        );
        Ok((status, text))
    }

    /// A session the device starts on its schedule (Alert 1201).
    pub async fn sync(&mut self) -> anyhow::Result<SessionReport> {
        self.session("1201", "").await
    }

    /// A session after a push notification (Alert 1200).
    pub async fn sync_after_push(&mut self) -> anyhow::Result<SessionReport> {
        self.session("1200", "").await
    }

    /// The user removes the work account in Settings: Alert 1226.
    pub async fn unenroll_from_settings(&mut self) -> anyhow::Result<SessionReport> {
        let alert = r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#;
        let report = self.session("1201", alert).await?;
        self.lifecycle = Lifecycle::Unenrolled;
        Ok(report)
    }

    async fn session(&mut self, alert: &str, extra: &str) -> anyhow::Result<SessionReport> {
        anyhow::ensure!(
            self.lifecycle == Lifecycle::Enrolled,
            "the device is not enrolled ({:?})",
            self.lifecycle
        );
        self.session_id += 1;
        let session = self.session_id;
        let management = self
            .enrollment
            .as_ref()
            .map(|e| e.management_url.clone())
            .unwrap_or_default();
        let mut report = SessionReport::default();
        let mut msg_id: u64 = 1;
        let mut message = self.opening(alert, extra);
        // Chunks of a large result still to send: (Results CmdRef, LocURI, remaining data).
        let mut chunks: Option<(String, String, String, usize)> = None;
        let mut after_session = Vec::new();
        loop {
            let (status, text) = self.send_message(message).await?;
            report.messages += 1;
            anyhow::ensure!(status == 200, "the server answered {status}: {text}");
            let root = tree::parse(&text)?;
            anyhow::ensure!(root.name == "SyncML", "not SyncML: {text}");
            let header = root
                .child("SyncHdr")
                .ok_or_else(|| anyhow::anyhow!("no SyncHdr"))?;
            anyhow::ensure!(
                header.text_at(&["SessionID"]) == Some(session.to_string()),
                "the server changed the SessionID"
            );
            anyhow::ensure!(
                header.text_at(&["Target", "LocURI"]) == Some(self.device_id.clone()),
                "the answer is addressed to another device"
            );
            let server_msg: u64 = header
                .text_at(&["MsgID"])
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            anyhow::ensure!(
                report
                    .server_msg_ids
                    .last()
                    .is_none_or(|&last| server_msg > last),
                "server MsgIDs do not increase"
            );
            report.server_msg_ids.push(server_msg);
            let body = root
                .child("SyncBody")
                .ok_or_else(|| anyhow::anyhow!("no SyncBody"))?;
            let mut header_ok = false;
            let mut commands: Vec<&Node> = Vec::new();
            let mut next_message = false;
            for element in &body.children {
                let cmd_id = element.text_at(&["CmdID"]).unwrap_or_default();
                match element.name.as_str() {
                    "Final" => {}
                    "Status" => {
                        anyhow::ensure!(
                            !cmd_id.is_empty() && cmd_id != "0",
                            "a Status with CmdID {cmd_id:?}"
                        );
                        anyhow::ensure!(
                            element.text_at(&["MsgRef"]) == Some(msg_id.to_string()),
                            "a Status refers to another message"
                        );
                        let cmd_ref = element.text_at(&["CmdRef"]).unwrap_or_default();
                        let code: u16 = element
                            .text_at(&["Data"])
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(0);
                        if cmd_ref == "0" {
                            anyhow::ensure!(code == 200, "the server refused the header: {code}");
                            header_ok = true;
                        } else {
                            report.statuses.push((
                                cmd_ref,
                                element.text_at(&["Cmd"]).unwrap_or_default(),
                                code,
                            ));
                        }
                    }
                    "Alert" if element.text_at(&["Data"]).as_deref() == Some("1222") => {
                        anyhow::ensure!(
                            !cmd_id.is_empty() && cmd_id != "0",
                            "an Alert with CmdID {cmd_id:?}"
                        );
                        next_message = true;
                        report.next_message_alerts += 1;
                    }
                    _ => {
                        anyhow::ensure!(
                            !cmd_id.is_empty() && cmd_id != "0",
                            "a command with CmdID {cmd_id:?}"
                        );
                        commands.push(element);
                    }
                }
            }
            anyhow::ensure!(header_ok, "no Status for the device's SyncHdr");
            if commands.is_empty() && !next_message && chunks.is_none() {
                break;
            }
            if report.messages > 50 {
                anyhow::bail!("the session does not end");
            }
            msg_id += 1;
            let mut out = format!(
                "<SyncML xmlns=\"SYNCML:SYNCML1.2\">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>",
                self.header(&management, session, msg_id)
            );
            let mut next_cmd = 2;
            let mut is_final = true;
            for command in commands {
                let cmd_id = command.text_at(&["CmdID"]).unwrap_or_default();
                let item = command.child("Item");
                let loc = item
                    .and_then(|i| i.text_at(&["Target", "LocURI"]))
                    .unwrap_or_default();
                let data = item.and_then(|i| i.text_at(&["Data"])).unwrap_or_default();
                let (code, result, effect) = self.execute(&command.name, &loc, &data);
                self.executed.push(Executed {
                    verb: command.name.clone(),
                    loc_uri: loc.clone(),
                    cmd_id: cmd_id.clone(),
                    status: code,
                });
                report.executed.push(Executed {
                    verb: command.name.clone(),
                    loc_uri: loc.clone(),
                    cmd_id: cmd_id.clone(),
                    status: code,
                });
                if let Some(effect) = effect {
                    after_session.push(effect);
                }
                out.push_str(&format!(
                    "<Status><CmdID>{next_cmd}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd><Data>{code}</Data></Status>",
                    esc(&cmd_id),
                    esc(&command.name)
                ));
                next_cmd += 1;
                if let Some(value) = result {
                    match self.max_chunk.filter(|max| value.len() > *max) {
                        Some(_) if chunks.is_none() => {
                            chunks =
                                Some((cmd_id.clone(), loc.clone(), value, server_msg as usize));
                        }
                        _ => {
                            out.push_str(&format!(
                                "<Results><CmdID>{next_cmd}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{}</LocURI></Source><Data>{}</Data></Item></Results>",
                                esc(&cmd_id),
                                esc(&loc),
                                esc(&value)
                            ));
                            next_cmd += 1;
                        }
                    }
                }
            }
            if let Some((cmd_ref, loc, mut rest, msg_ref)) = chunks.take() {
                let max = self.max_chunk.unwrap_or(usize::MAX);
                let total = rest.len();
                let first = rest.len() == total && !rest.is_empty();
                let piece: String = rest.drain(..max.min(rest.len())).collect();
                let more = !rest.is_empty();
                let meta = if first && more {
                    format!("<Meta><Size xmlns=\"syncml:metinf\">{total}</Size></Meta>")
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "<Results><CmdID>{next_cmd}</CmdID><MsgRef>{msg_ref}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{}</LocURI></Source>{meta}<Data>{}</Data>{}</Item></Results>",
                    esc(&cmd_ref),
                    esc(&loc),
                    esc(&piece),
                    if more { "<MoreData/>" } else { "" }
                ));
                if more {
                    is_final = false;
                    chunks = Some((cmd_ref, loc, rest, msg_ref));
                }
            }
            if is_final {
                out.push_str("<Final/>");
            }
            out.push_str("</SyncBody></SyncML>");
            message = out;
        }
        for effect in after_session {
            self.lifecycle = effect;
        }
        if self.lifecycle != Lifecycle::Enrolled {
            self.enrollment = self.enrollment.take().filter(|_| false);
        }
        Ok(report)
    }

    /// What the device does with one command: (status, result of a Get, what happens
    /// to the device once the session ends).
    fn execute(
        &mut self,
        verb: &str,
        loc_uri: &str,
        data: &str,
    ) -> (u16, Option<String>, Option<Lifecycle>) {
        let node = loc_uri
            .strip_prefix("./Device/")
            .map(|rest| format!("./{rest}"))
            .unwrap_or_else(|| loc_uri.to_owned());
        if let Some(&code) = self.overrides.get(&node) {
            return (code, None, None);
        }
        let mobile = self.edition == Edition::Mobile;
        let provider = self
            .enrollment
            .as_ref()
            .map(|e| e.provider_id.clone())
            .unwrap_or_default();
        match (verb, node.as_str()) {
            ("Exec", "./Vendor/MSFT/RemoteWipe/doWipe") => (200, None, Some(Lifecycle::Wiped)),
            ("Exec", "./Vendor/MSFT/RemoteWipe/doWipeProtected") if self.build >= 15063 => {
                (200, None, Some(Lifecycle::Wiped))
            }
            ("Exec", "./Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData") => (200, None, None),
            ("Exec", "./Vendor/MSFT/RemoteWipe/doWipePersistUserData") if self.build >= 16299 => {
                (200, None, None)
            }
            (
                "Exec",
                "./Vendor/MSFT/RemoteWipe/doWipeProtected"
                | "./Vendor/MSFT/RemoteWipe/doWipePersistUserData",
            ) => (405, None, None),
            ("Exec", uri)
                if uri == format!("./Vendor/MSFT/DMClient/Provider/{provider}/Unenroll") =>
            {
                if data == provider {
                    (200, None, Some(Lifecycle::Unenrolled))
                } else {
                    (400, None, None)
                }
            }
            ("Exec", "./Vendor/MSFT/RemoteLock/Lock") if mobile && self.pin.is_some() => {
                (200, None, None)
            }
            ("Exec", "./Vendor/MSFT/RemoteLock/Lock") => (405, None, None),
            ("Exec", "./Vendor/MSFT/RemoteLock/LockAndResetPIN") if mobile => {
                let pin: u32 = rand::rng().random_range(100_000..1_000_000);
                self.pin = Some(pin.to_string());
                (200, None, None)
            }
            ("Exec", "./Vendor/MSFT/RemoteLock/LockAndResetPIN") => (405, None, None),
            ("Get", "./Vendor/MSFT/RemoteLock/NewPINValue") if mobile => match &self.pin {
                Some(pin) => (200, Some(pin.clone()), None),
                None => (404, None, None),
            },
            ("Exec", "./Vendor/MSFT/Reboot/RebootNow") => {
                self.reboots += 1;
                (200, None, None)
            }
            ("Get", "./DevDetail/SwV") => (200, Some(self.os_version()), None),
            ("Get", "./DevDetail/OEM") => (200, Some(self.manufacturer.clone()), None),
            ("Get", "./DevDetail/Ext/Microsoft/DeviceName") => (200, Some(self.name.clone()), None),
            ("Get", "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber") => {
                (200, Some(self.serial.clone()), None)
            }
            ("Get", "./DevDetail/Ext/Microsoft/OSPlatform") => (
                200,
                Some(
                    if mobile {
                        "Windows 10 Mobile"
                    } else {
                        "Windows 10 Enterprise"
                    }
                    .into(),
                ),
                None,
            ),
            ("Get", "./Vendor/MSFT/DeviceStatus/OS/Edition") => {
                (200, Some(self.os_edition().into()), None)
            }
            ("Get", "./Vendor/MSFT/DeviceStatus/Compliance/EncryptionCompliance") => (
                200,
                Some(if self.encrypted { "1" } else { "0" }.into()),
                None,
            ),
            ("Get", uri)
                if uri == format!("./Vendor/MSFT/DMClient/Provider/{provider}/Push/ChannelURI") =>
            {
                match (
                    &self.channel,
                    self.enrollment.as_ref().and_then(|e| e.pfn.as_ref()),
                ) {
                    (Some(channel), Some(_)) => (200, Some(channel.clone()), None),
                    _ => (404, None, None),
                }
            }
            ("Get", _) => (404, None, None),
            ("Exec", _) => (404, None, None),
            _ => (406, None, None),
        }
    }

    /// The client certificate the device presents.
    pub fn certificate(&self) -> Option<&X509> {
        self.enrollment.as_ref().map(|e| &e.certificate)
    }

    /// The certificate as the forwarded-certificate header carries it.
    pub fn certificate_header(&self) -> anyhow::Result<String> {
        let enrollment = self
            .enrollment
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not enrolled"))?;
        self.cert_header_value(&enrollment.certificate)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
