//! SOAP 1.2 envelopes of MS-MDE2 (discovery), MS-XCEP (policy) and MS-WSTEP
//! (enrollment), and the enrollment faults.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::xml::{Document, Element, escape};

pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";

pub mod action {
    pub const DISCOVER: &str = "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
    pub const DISCOVER_RESPONSE: &str = "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";
    pub const GET_POLICIES: &str =
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
    pub const GET_POLICIES_RESPONSE: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
    pub const RST: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
    pub const RSTRC: &str =
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
}

pub mod value {
    pub const PKCS10: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
    pub const PKCS7_SUFFIX: &str = "#PKCS7";
    pub const USER_TOKEN: &str = "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";
    pub const ENROLLMENT_TOKEN: &str = "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
    pub const PROVISION_DOC: &str = "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";
    pub const BASE64: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";
    pub const ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
    pub const RENEW: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew";
}

/// A parsed request envelope.
pub struct Envelope<'d, 'a> {
    pub header: Option<Element<'d, 'a>>,
    pub body: Element<'d, 'a>,
    pub action: String,
    pub message_id: Option<String>,
}

impl<'d, 'a> Envelope<'d, 'a> {
    pub fn read(doc: &'d Document<'a>) -> Result<Self, Fault> {
        let root = doc.root();
        if root.name() != "Envelope" {
            return Err(Fault::message_format("not a SOAP envelope"));
        }
        let header = root.child("Header");
        let body = root
            .child("Body")
            .ok_or_else(|| Fault::message_format("the envelope has no Body"))?;
        let action = header
            .and_then(|h| h.text_at(&["Action"]))
            .unwrap_or_default()
            .to_owned();
        let message_id = header
            .and_then(|h| h.text_at(&["MessageID"]))
            .filter(|id| id.len() <= 200)
            .map(str::to_owned);
        Ok(Self {
            header,
            body,
            action,
            message_id,
        })
    }

    /// `wsse:Security` in the header.
    pub fn security(&self) -> Option<Element<'d, 'a>> {
        self.header.and_then(|h| h.child("Security"))
    }
}

/// The MS-MDE2 enrollment errors, each answered as a SOAP fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 0x80180001
    MessageFormat,
    /// 0x80180002
    Authentication,
    /// 0x80180003
    Authorization,
    /// 0x80180004
    CertificateRequest,
    /// 0x80180005
    EnrollmentServer,
    /// 0x80180006
    InternalServiceFault,
    /// 0x80180007
    InvalidSecurity,
    /// 0x80180013
    DeviceCapReached,
    /// 0x80180014
    DeviceNotSupported,
    /// 0x80180015
    NotSupported,
    /// 0x80180016
    NotEligibleToRenew,
    /// 0x80180017
    InMaintenance,
    /// 0x80180018
    UserLicense,
    /// 0x80180019
    InvalidEnrollmentData,
}

impl FaultKind {
    /// The subcode value (with its namespace prefix).
    pub fn subcode(self) -> &'static str {
        match self {
            Self::MessageFormat => "s:MessageFormat",
            Self::Authentication => "s:Authentication",
            Self::Authorization => "s:Authorization",
            Self::CertificateRequest => "s:CertificateRequest",
            Self::EnrollmentServer => "s:EnrollmentServer",
            Self::InternalServiceFault => "a:InternalServiceFault",
            Self::InvalidSecurity => "a:InvalidSecurity",
            Self::DeviceCapReached => "s:DeviceCapReached",
            Self::DeviceNotSupported => "s:DeviceNotSupported",
            Self::NotSupported => "s:NotSupported",
            Self::NotEligibleToRenew => "s:NotEligibleToRenew",
            Self::InMaintenance => "s:InMaintenance",
            Self::UserLicense => "s:UserLicense",
            Self::InvalidEnrollmentData => "s:InvalidEnrollmentData",
        }
    }

    /// The `deviceenrollmentserviceerror` type, for the errors added in Windows 10.
    fn error_type(self) -> Option<&'static str> {
        match self {
            Self::DeviceCapReached => Some("DeviceCapReached"),
            Self::DeviceNotSupported => Some("DeviceNotSupported"),
            Self::NotSupported => Some("NotSupported"),
            Self::NotEligibleToRenew => Some("NotEligibleToRenew"),
            Self::InMaintenance => Some("InMaintenance"),
            Self::UserLicense => Some("UserLicense"),
            Self::InvalidEnrollmentData => Some("InvalidEnrollmentData"),
            _ => None,
        }
    }

    /// The HTTP status: 4xx for what the client or its user must change, 5xx for ours.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MessageFormat | Self::CertificateRequest | Self::InvalidEnrollmentData => {
                StatusCode::BAD_REQUEST
            }
            Self::Authentication | Self::InvalidSecurity => StatusCode::UNAUTHORIZED,
            Self::Authorization
            | Self::DeviceCapReached
            | Self::DeviceNotSupported
            | Self::NotSupported
            | Self::NotEligibleToRenew
            | Self::UserLicense => StatusCode::FORBIDDEN,
            Self::InMaintenance => StatusCode::SERVICE_UNAVAILABLE,
            Self::EnrollmentServer => StatusCode::BAD_GATEWAY,
            Self::InternalServiceFault => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A fault to answer, with a reason for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub reason: String,
}

impl Fault {
    pub fn new(kind: FaultKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    pub fn message_format(reason: impl Into<String>) -> Self {
        Self::new(FaultKind::MessageFormat, reason)
    }

    /// Our failure: the reason shown is generic; the cause goes to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "enrollment failed inside the server");
        Self::new(
            FaultKind::InternalServiceFault,
            "The server hit an unexpected issue",
        )
    }

    /// The fault envelope answering a request with `action` and `relates_to`.
    pub fn to_xml(&self, action: &str, relates_to: Option<&str>, trace_id: &str) -> String {
        let mut xml = String::with_capacity(1024);
        xml.push_str(r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">"#);
        xml.push_str(&escape(action));
        xml.push_str(r#"</a:Action><ActivityId CorrelationId=""#);
        xml.push_str(trace_id);
        xml.push_str(r#"" xmlns="http://schemas.microsoft.com/2004/09/servicemodel/diagnostics">"#);
        xml.push_str(trace_id);
        xml.push_str("</ActivityId>");
        if let Some(relates_to) = relates_to {
            xml.push_str("<a:RelatesTo>");
            xml.push_str(&escape(relates_to));
            xml.push_str("</a:RelatesTo>");
        }
        xml.push_str(
            "</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>",
        );
        xml.push_str(self.kind.subcode());
        xml.push_str(r#"</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">"#);
        xml.push_str(&escape(&self.reason));
        xml.push_str("</s:Text></s:Reason>");
        if let Some(error_type) = self.kind.error_type() {
            xml.push_str(r#"<s:Detail><DeviceEnrollmentServiceError xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment"><ErrorType>"#);
            xml.push_str(error_type);
            xml.push_str("</ErrorType><Message>");
            xml.push_str(&escape(&self.reason));
            xml.push_str("</Message><TraceId>");
            xml.push_str(trace_id);
            xml.push_str("</TraceId></DeviceEnrollmentServiceError></s:Detail>");
        }
        xml.push_str("</s:Fault></s:Body></s:Envelope>");
        xml
    }

    pub fn response(&self, action: &str, relates_to: Option<&str>) -> HttpResponse {
        let trace_id = uuid::Uuid::new_v4().to_string();
        if self.kind.status().is_client_error() {
            tracing::info!(fault = self.kind.subcode(), reason = %self.reason, %trace_id, "enrollment refused");
        }
        soap_response(
            self.kind.status(),
            self.to_xml(action, relates_to, &trace_id),
        )
    }
}

/// A SOAP answer with an explicit Content-Length (Windows refuses chunked answers).
pub fn soap_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// Wraps `body` (XML of the Body's content) in an envelope answering a request.
pub fn envelope(action: &str, relates_to: Option<&str>, extra_header: &str, body: &str) -> String {
    let mut xml = String::with_capacity(body.len() + 800);
    xml.push_str(r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">"#);
    xml.push_str(&escape(action));
    xml.push_str("</a:Action><ActivityId CorrelationId=\"");
    let activity = uuid::Uuid::new_v4().to_string();
    xml.push_str(&activity);
    xml.push_str(r#"" xmlns="http://schemas.microsoft.com/2004/09/servicemodel/diagnostics">"#);
    xml.push_str(&activity);
    xml.push_str("</ActivityId>");
    if let Some(relates_to) = relates_to {
        xml.push_str("<a:RelatesTo>");
        xml.push_str(&escape(relates_to));
        xml.push_str("</a:RelatesTo>");
    }
    xml.push_str(extra_header);
    xml.push_str(r#"</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">"#);
    xml.push_str(body);
    xml.push_str("</s:Body></s:Envelope>");
    xml
}
