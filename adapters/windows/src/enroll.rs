//! MS-MDE2 enrollment: discovery, the XCEP enrollment policy, WSTEP certificate issue and
//! renewal, and the sign-in page of the Federated policy.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mdm_api::Service;
use mdm_api::client::ClientError;
use mdm_api::internal::enrollment::{
    AuthenticateUser, BulkAuthenticate, BulkTenant, GateCheck, GateDenial, GateRequest,
    GateResponse, ResolveUser, ResolvedUser, SignRequest, SignedCertificate, WindowsAuthPolicy,
    WindowsEnrollmentSettings,
};
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFacts, DeviceFactsReported};
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementMode, OsVersion, Ownership, Platform, TenantId, UserId,
};
use mdm_store::models::windows::{WinCertificateRow, WinEnrollmentRow};
use mdm_store::{StoreError, to_millis};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use serde::{Deserialize, Serialize};

use crate::Adapter;
use crate::clientcert::{fingerprint, thumbprint};
use crate::csr::{Csr, CsrError};
use crate::db::{self, state};
use crate::inventory::is_mobile_edition;
use crate::provisioning::{self, Store};
use crate::soap::{self, Envelope, Fault, FaultKind, action, value};
use crate::state::{Certificate, Device};
use crate::xml::{Document, Element, XmlError, escape};

/// The SecretBox purpose of Federated sign-in tokens.
const TOKEN_PURPOSE: &str = "windows-federated-token";
/// AdditionalContext items read at most.
const MAX_CONTEXT_ITEMS: usize = 200;

fn parse<'a>(adapter: &Adapter, body: &'a [u8]) -> Result<Document<'a>, Fault> {
    Document::parse(body, &adapter.limits).map_err(|e| match e {
        XmlError::TooLarge(limit) => {
            Fault::message_format(format!("the message is larger than {limit} bytes"))
        }
        other => Fault::message_format(other.to_string()),
    })
}

fn policy_name(policy: WindowsAuthPolicy) -> &'static str {
    match policy {
        WindowsAuthPolicy::OnPremise => "OnPremise",
        WindowsAuthPolicy::Federated => "Federated",
        WindowsAuthPolicy::Certificate => "Certificate",
    }
}

fn upstream(error: ClientError) -> Fault {
    if error.is_transient() {
        Fault::new(
            FaultKind::InMaintenance,
            "The enrollment service is busy; try again later",
        )
    } else {
        Fault::internal(error)
    }
}

fn store_fault(error: StoreError) -> Fault {
    if error.is_transient() {
        Fault::new(
            FaultKind::InMaintenance,
            "The enrollment service is busy; try again later",
        )
    } else {
        Fault::internal(error)
    }
}

// ---- discovery ---------------------------------------------------------------------

/// `POST /EnrollmentServer/Discovery.svc`.
pub async fn discover(adapter: Arc<Adapter>, body: &[u8]) -> HttpResponse {
    let doc = match parse(&adapter, body) {
        Ok(doc) => doc,
        Err(fault) => return fault.response(action::DISCOVER_RESPONSE, None),
    };
    let envelope = match Envelope::read(&doc) {
        Ok(envelope) => envelope,
        Err(fault) => return fault.response(action::DISCOVER_RESPONSE, None),
    };
    let relates = envelope.message_id.clone();
    match discover_answer(&adapter, &envelope).await {
        Ok(xml) => soap::soap_response(StatusCode::OK, xml),
        Err(fault) => fault.response(action::DISCOVER_RESPONSE, relates.as_deref()),
    }
}

async fn discover_answer(adapter: &Adapter, envelope: &Envelope<'_, '_>) -> Result<String, Fault> {
    if envelope.action.trim() != action::DISCOVER {
        return Err(Fault::message_format("the Action is not Discover"));
    }
    let request = envelope
        .body
        .path(&["Discover", "request"])
        .ok_or_else(|| Fault::message_format("no Discover request"))?;
    let email = request.text_at(&["EmailAddress"]).unwrap_or_default();
    let offered: Vec<&str> = request
        .child("AuthPolicies")
        .map(|p| p.children_named("AuthPolicy").map(|a| a.text()).collect())
        .unwrap_or_default();
    let request_version = request.text_at(&["RequestVersion"]).unwrap_or("1.0");
    let policy = if email.is_empty() || email.len() > 320 {
        adapter.config.default_auth_policy
    } else {
        match adapter
            .client
            .post::<_, ResolvedUser>(
                Service::Enrollment,
                "/users/resolve",
                &ResolveUser {
                    user_principal_name: email.to_owned(),
                },
            )
            .await
        {
            Ok(user) => {
                let settings: WindowsEnrollmentSettings = adapter
                    .client
                    .get(
                        Service::Enrollment,
                        &format!("/tenants/{}/windows", user.tenant_id),
                    )
                    .await
                    .map_err(upstream)?;
                settings.auth_policy
            }
            // An address nobody has: the default, so that discovery says nothing about
            // which addresses exist.
            Err(ClientError::Status { status: 404, .. }) => adapter.config.default_auth_policy,
            Err(error) => return Err(upstream(error)),
        }
    };
    let name = policy_name(policy);
    if !offered.is_empty() && !offered.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        return Err(Fault::new(
            FaultKind::DeviceNotSupported,
            format!(
                "This organisation requires the {name} sign-in, which this device does not offer"
            ),
        ));
    }
    let version = if request_version.starts_with('4') || request_version.starts_with('5') {
        "4.0"
    } else {
        "3.0"
    };
    let urls = &adapter.urls;
    let mut body = String::with_capacity(800);
    body.push_str(r#"<DiscoverResponse xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment"><DiscoverResult><AuthPolicy>"#);
    body.push_str(name);
    body.push_str("</AuthPolicy><EnrollmentVersion>");
    body.push_str(version);
    body.push_str("</EnrollmentVersion><EnrollmentPolicyServiceUrl>");
    body.push_str(&escape(&urls.policy));
    body.push_str("</EnrollmentPolicyServiceUrl><EnrollmentServiceUrl>");
    body.push_str(&escape(&urls.enrollment));
    body.push_str("</EnrollmentServiceUrl>");
    if policy == WindowsAuthPolicy::Federated {
        body.push_str("<AuthenticationServiceUrl>");
        body.push_str(&escape(&urls.authenticate));
        body.push_str("</AuthenticationServiceUrl>");
    }
    body.push_str("</DiscoverResult></DiscoverResponse>");
    Ok(soap::envelope(
        action::DISCOVER_RESPONSE,
        envelope.message_id.as_deref(),
        "",
        &body,
    ))
}

// ---- authentication ----------------------------------------------------------------

/// Who is enrolling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    User {
        tenant_id: TenantId,
        user_id: UserId,
        user_principal_name: String,
    },
    /// A bulk enrollment (provisioning package): the tenant, no user.
    Bulk { tenant_id: TenantId },
}

impl Credential {
    fn tenant(&self) -> TenantId {
        match self {
            Self::User { tenant_id, .. } | Self::Bulk { tenant_id } => *tenant_id,
        }
    }
}

/// The content of a Federated sign-in token (sealed; opaque to the client).
#[derive(Serialize, Deserialize)]
struct SignInToken {
    tenant: TenantId,
    user: UserId,
    upn: String,
    expires: i64,
}

async fn authenticate(
    adapter: &Adapter,
    envelope: &Envelope<'_, '_>,
    client_cert: Option<&[u8]>,
) -> Result<(Credential, &'static str), Fault> {
    let security = envelope.security();
    let token = security.and_then(|s| {
        s.children_named("BinarySecurityToken").find(|t| {
            t.attribute("ValueType")
                .is_some_and(|v| v.ends_with("DeviceEnrollmentUserToken"))
        })
    });
    if let Some(token) = token {
        let credential = federated(adapter, token.text())?;
        require_policy(adapter, credential.tenant(), WindowsAuthPolicy::Federated).await?;
        return Ok((credential, "federated"));
    }
    if let Some(username_token) = security.and_then(|s| s.child("UsernameToken")) {
        let username = username_token.text_at(&["Username"]).unwrap_or_default();
        let password = username_token
            .child("Password")
            .map(|p| p.raw_text())
            .unwrap_or_default();
        if username.is_empty()
            || password.is_empty()
            || username.len() > 320
            || password.len() > 1024
        {
            return Err(Fault::new(FaultKind::Authentication, "User not recognized"));
        }
        let user = adapter
            .client
            .post::<_, ResolvedUser>(
                Service::Enrollment,
                "/users/authenticate",
                &AuthenticateUser {
                    user_principal_name: username.to_owned(),
                    password: password.to_owned(),
                },
            )
            .await;
        match user {
            Ok(user) => {
                require_policy(adapter, user.tenant_id, WindowsAuthPolicy::OnPremise).await?;
                return Ok((
                    Credential::User {
                        tenant_id: user.tenant_id,
                        user_id: user.user_id,
                        user_principal_name: user.user_principal_name,
                    },
                    "onPremise",
                ));
            }
            Err(ClientError::Status {
                status: 401 | 404, ..
            }) => {}
            Err(error) => return Err(upstream(error)),
        }
        // Not a user's password: perhaps a provisioning package's bulk secret.
        return bulk(
            adapter,
            BulkAuthenticate {
                secret: Some(password.to_owned()),
                certificate_thumbprint: None,
            },
        )
        .await
        .map(|c| (c, "bulk"));
    }
    if let Some(der) = client_cert {
        return bulk(
            adapter,
            BulkAuthenticate {
                secret: None,
                certificate_thumbprint: Some(thumbprint(der)),
            },
        )
        .await
        .map(|c| (c, "certificate"));
    }
    Err(Fault::new(
        FaultKind::InvalidSecurity,
        "The request carries no credential that can be read",
    ))
}

/// The tenant's authentication policy decides which credential enrols a user's device: a
/// password under OnPremise, a token from the sign-in page under Federated, neither under
/// Certificate. The policy is read at each enrollment, so a change applies to the next
/// one. (Provisioning packages are the bulk-enrollment setting's, not the policy's.)
async fn require_policy(
    adapter: &Adapter,
    tenant: TenantId,
    used: WindowsAuthPolicy,
) -> Result<(), Fault> {
    let settings: WindowsEnrollmentSettings = adapter
        .client
        .get(Service::Enrollment, &format!("/tenants/{tenant}/windows"))
        .await
        .map_err(upstream)?;
    if settings.auth_policy == used {
        return Ok(());
    }
    Err(Fault::new(
        FaultKind::Authentication,
        format!(
            "This organisation enrols devices with the {} policy, not {}",
            policy_name(settings.auth_policy),
            policy_name(used)
        ),
    ))
}

async fn bulk(adapter: &Adapter, request: BulkAuthenticate) -> Result<Credential, Fault> {
    match adapter
        .client
        .post::<_, BulkTenant>(Service::Enrollment, "/windows/bulk/authenticate", &request)
        .await
    {
        Ok(tenant) => Ok(Credential::Bulk {
            tenant_id: tenant.tenant_id,
        }),
        Err(ClientError::Status {
            status: 401 | 403 | 404,
            ..
        }) => Err(Fault::new(FaultKind::Authentication, "User not recognized")),
        Err(error) => Err(upstream(error)),
    }
}

fn federated(adapter: &Adapter, content: &str) -> Result<Credential, Fault> {
    let refused = || Fault::new(FaultKind::Authentication, "The sign-in token is not valid");
    let content = content.trim();
    if content.len() > 8192 {
        return Err(refused());
    }
    // Windows base64-encodes the token the sign-in page returned.
    let token = STANDARD
        .decode(content)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .unwrap_or_else(|| content.to_owned());
    let sealed = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| refused())?;
    let opened = adapter
        .secrets
        .open(TOKEN_PURPOSE, &sealed)
        .map_err(|_| refused())?;
    let token: SignInToken = serde_json::from_slice(&opened).map_err(|_| refused())?;
    if token.expires <= adapter.clock.now().timestamp_millis() {
        return Err(Fault::new(
            FaultKind::Authentication,
            "The sign-in has expired; sign in again",
        ));
    }
    Ok(Credential::User {
        tenant_id: token.tenant,
        user_id: token.user,
        user_principal_name: token.upn,
    })
}

// ---- XCEP policy ---------------------------------------------------------------------

/// `POST /EnrollmentServer/Policy.svc`.
pub async fn policy(
    adapter: Arc<Adapter>,
    client_cert: Option<Vec<u8>>,
    body: &[u8],
) -> HttpResponse {
    let doc = match parse(&adapter, body) {
        Ok(doc) => doc,
        Err(fault) => return fault.response(action::GET_POLICIES_RESPONSE, None),
    };
    let envelope = match Envelope::read(&doc) {
        Ok(envelope) => envelope,
        Err(fault) => return fault.response(action::GET_POLICIES_RESPONSE, None),
    };
    let relates = envelope.message_id.clone();
    let answer = async {
        if envelope.action.trim() != action::GET_POLICIES {
            return Err(Fault::message_format("the Action is not GetPolicies"));
        }
        if envelope.body.child("GetPolicies").is_none() {
            return Err(Fault::message_format("no GetPolicies request"));
        }
        authenticate(&adapter, &envelope, client_cert.as_deref()).await?;
        Ok(policy_answer(&adapter, envelope.message_id.as_deref()))
    };
    match answer.await {
        Ok(xml) => soap::soap_response(StatusCode::OK, xml),
        Err(fault) => fault.response(action::GET_POLICIES_RESPONSE, relates.as_deref()),
    }
}

fn policy_answer(adapter: &Adapter, relates_to: Option<&str>) -> String {
    let config = &adapter.config;
    let validity = u64::from(config.certificate_validity_days) * 86_400;
    let renewal = u64::from(config.renewal_window_days) * 86_400;
    let body = format!(
        r#"<GetPoliciesResponse xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"><response><policyID/><policyFriendlyName xsi:nil="true"/><nextUpdateHours xsi:nil="true"/><policiesNotChanged xsi:nil="true"/><policies><policy><policyOIDReference>0</policyOIDReference><cAs xsi:nil="true"/><attributes><commonName>{name}</commonName><policySchema>3</policySchema><certificateValidity><validityPeriodSeconds>{validity}</validityPeriodSeconds><renewalPeriodSeconds>{renewal}</renewalPeriodSeconds></certificateValidity><permission><enroll>true</enroll><autoEnroll>false</autoEnroll></permission><privateKeyAttributes><minimalKeyLength>{bits}</minimalKeyLength><keySpec xsi:nil="true"/><keyUsageProperty xsi:nil="true"/><permissions xsi:nil="true"/><algorithmOIDReference xsi:nil="true"/><cryptoProviders xsi:nil="true"/></privateKeyAttributes><revision><majorRevision>101</majorRevision><minorRevision>0</minorRevision></revision><supersededPolicies xsi:nil="true"/><privateKeyFlags xsi:nil="true"/><subjectNameFlags xsi:nil="true"/><enrollmentFlags xsi:nil="true"/><generalFlags xsi:nil="true"/><hashAlgorithmOIDReference>0</hashAlgorithmOIDReference><rARequirements xsi:nil="true"/><keyArchivalAttributes xsi:nil="true"/><extensions xsi:nil="true"/></attributes></policy></policies></response><cAs xsi:nil="true"/><oIDs><oID><value>2.16.840.1.101.3.4.2.1</value><group>1</group><oIDReferenceID>0</oIDReferenceID><defaultName>szOID_NIST_sha256</defaultName></oID></oIDs></GetPoliciesResponse>"#,
        name = escape(&config.provider_id),
        bits = config.min_key_bits,
    );
    soap::envelope(action::GET_POLICIES_RESPONSE, relates_to, "", &body)
}

// ---- WSTEP ---------------------------------------------------------------------------

/// What the RequestSecurityToken carries.
struct TokenRequest {
    renew: bool,
    token_value_type: String,
    token_der: Vec<u8>,
    context: HashMap<String, String>,
}

fn read_token_request(envelope: &Envelope<'_, '_>) -> Result<TokenRequest, Fault> {
    if envelope.action.trim() != action::RST {
        return Err(Fault::message_format("the Action is not a WSTEP request"));
    }
    let rst = envelope
        .body
        .child("RequestSecurityToken")
        .ok_or_else(|| Fault::message_format("no RequestSecurityToken"))?;
    let token_type = rst.text_at(&["TokenType"]).unwrap_or_default();
    if token_type != value::ENROLLMENT_TOKEN {
        return Err(Fault::message_format("unsupported TokenType"));
    }
    let renew = match rst.text_at(&["RequestType"]).unwrap_or_default() {
        value::ISSUE => false,
        value::RENEW => true,
        _ => return Err(Fault::message_format("unsupported RequestType")),
    };
    let token: Element<'_, '_> = rst
        .child("BinarySecurityToken")
        .ok_or_else(|| Fault::new(FaultKind::CertificateRequest, "no certificate request"))?;
    let value_type = token.attribute("ValueType").unwrap_or_default().to_owned();
    let compact: String = token
        .text()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if compact.len() > 64 * 1024 {
        return Err(Fault::new(
            FaultKind::CertificateRequest,
            "the certificate request is too large",
        ));
    }
    let token_der = STANDARD.decode(compact).map_err(|_| {
        Fault::new(
            FaultKind::CertificateRequest,
            "the certificate request is not base64",
        )
    })?;
    let mut context = HashMap::new();
    if let Some(additional) = rst.child("AdditionalContext") {
        for item in additional
            .children_named("ContextItem")
            .take(MAX_CONTEXT_ITEMS)
        {
            if let (Some(name), Some(value)) = (item.attribute("Name"), item.text_at(&["Value"]))
                && name.len() <= 64
                && value.len() <= 512
            {
                // The first value of a name wins (MAC repeats).
                context
                    .entry(name.to_owned())
                    .or_insert_with(|| value.to_owned());
            }
        }
    }
    Ok(TokenRequest {
        renew,
        token_value_type: value_type,
        token_der,
        context,
    })
}

/// `POST /EnrollmentServer/Enrollment.svc`.
pub async fn enroll(
    adapter: Arc<Adapter>,
    client_cert: Option<Vec<u8>>,
    body: &[u8],
) -> HttpResponse {
    let doc = match parse(&adapter, body) {
        Ok(doc) => doc,
        Err(fault) => return fault.response(action::RSTRC, None),
    };
    let envelope = match Envelope::read(&doc) {
        Ok(envelope) => envelope,
        Err(fault) => return fault.response(action::RSTRC, None),
    };
    let relates = envelope.message_id.clone();
    let mut kind = "new";
    let answer = async {
        let request = read_token_request(&envelope)?;
        if request.renew {
            kind = "renewal";
        }
        let provisioning = if request.renew {
            renew(&adapter, client_cert.as_deref(), &request).await?
        } else {
            let (credential, method) =
                authenticate(&adapter, &envelope, client_cert.as_deref()).await?;
            issue(&adapter, credential, method, &request).await?
        };
        Ok::<_, Fault>(rstr(&provisioning, envelope.message_id.as_deref()))
    };
    let answer = answer.await;
    let outcome = if answer.is_ok() { "issued" } else { "refused" };
    adapter
        .metrics
        .enrollments
        .with_label_values(&[kind, outcome])
        .inc();
    match answer {
        Ok(xml) => soap::soap_response(StatusCode::OK, xml),
        Err(fault) => fault.response(action::RSTRC, relates.as_deref()),
    }
}

fn rstr(provisioning: &str, relates_to: Option<&str>) -> String {
    let body = format!(
        r#"<RequestSecurityTokenResponseCollection xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><RequestSecurityTokenResponse><TokenType>{token_type}</TokenType><DispositionMessage xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment"/><RequestedSecurityToken><BinarySecurityToken ValueType="{pdoc}" EncodingType="{encoding}" xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">{doc}</BinarySecurityToken></RequestedSecurityToken><RequestID xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment">0</RequestID></RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"#,
        token_type = value::ENROLLMENT_TOKEN,
        pdoc = value::PROVISION_DOC,
        encoding = value::BASE64,
        doc = STANDARD.encode(provisioning),
    );
    soap::envelope(action::RSTRC, relates_to, "", &body)
}

fn csr_fault(error: CsrError) -> Fault {
    Fault::new(FaultKind::CertificateRequest, error.to_string())
}

/// A DeviceID a client may have: hex, GUID punctuation, at most 128 characters.
fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'{' | b'}' | b'_'))
}

fn denial_fault(denial: Option<GateDenial>, detail: Option<String>) -> Fault {
    let detail = detail.unwrap_or_else(|| "This device may not enrol".into());
    let kind = match denial {
        Some(GateDenial::DeviceLimitReached) => FaultKind::DeviceCapReached,
        Some(GateDenial::UserNotLicensed) => FaultKind::UserLicense,
        Some(GateDenial::PlatformNotAllowed) => FaultKind::DeviceNotSupported,
        Some(GateDenial::AuthorityDisallowsEnrollment | GateDenial::PrerequisiteMissing) => {
            FaultKind::NotSupported
        }
        Some(GateDenial::TenantUnknown | GateDenial::UserUnknown) => FaultKind::Authentication,
        Some(GateDenial::PersonalDevicesNotAllowed) | None => FaultKind::Authorization,
    };
    Fault::new(kind, detail)
}

struct Issued {
    der: Vec<u8>,
    ca_der: Vec<u8>,
    sha256: [u8; 32],
    serial: String,
    subject: String,
    not_before: i64,
    not_after: i64,
}

async fn sign(
    adapter: &Adapter,
    tenant: TenantId,
    device: DeviceId,
    enrollment: EnrollmentId,
    csr: &Csr,
    common_name: &str,
) -> Result<Issued, Fault> {
    let signed: SignedCertificate = adapter
        .client
        .post(
            Service::Enrollment,
            "/ca/sign",
            &SignRequest {
                tenant_id: tenant,
                device_id: device,
                enrollment_id: Some(enrollment),
                csr: STANDARD.encode(&csr.der),
                common_name: common_name.to_owned(),
            },
        )
        .await
        .map_err(|e| match e {
            ClientError::Status {
                status: 400 | 422, ..
            } => Fault::new(FaultKind::CertificateRequest, "Failed to get certificate"),
            other => upstream(other),
        })?;
    let der = STANDARD.decode(&signed.certificate).map_err(|e| {
        Fault::internal(format!(
            "the CA answered a certificate that is not base64: {e}"
        ))
    })?;
    let ca_der = STANDARD
        .decode(&signed.ca_certificate)
        .map_err(|e| Fault::internal(format!("the CA certificate is not base64: {e}")))?;
    let parsed = X509::from_der(&der)
        .map_err(|e| Fault::internal(format!("the CA answered an unreadable certificate: {e}")))?;
    let subject = parsed
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| format!("CN={}", String::from_utf8_lossy(e.data().as_slice())))
        .unwrap_or_else(|| format!("CN={common_name}"));
    Ok(Issued {
        sha256: fingerprint(&der),
        der,
        ca_der,
        serial: signed.serial,
        subject,
        not_before: to_millis(signed.not_before),
        not_after: to_millis(signed.not_after),
    })
}

async fn issue(
    adapter: &Adapter,
    credential: Credential,
    method: &'static str,
    request: &TokenRequest,
) -> Result<String, Fault> {
    if request.token_value_type != value::PKCS10 && !request.token_value_type.ends_with("#PKCS10") {
        return Err(Fault::new(
            FaultKind::CertificateRequest,
            "expected a PKCS#10 request",
        ));
    }
    let csr = Csr::parse_and_verify(&request.token_der, adapter.config.min_key_bits)
        .map_err(csr_fault)?;
    let context = &request.context;
    let windows_device_id = match (csr.device_id.as_deref(), context.get("DeviceID")) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b.trim()) => {
            return Err(Fault::new(
                FaultKind::InvalidEnrollmentData,
                "the DeviceID of the request and of its context differ",
            ));
        }
        (Some(id), _) => id.to_owned(),
        (None, Some(id)) => id.trim().to_owned(),
        (None, None) => {
            return Err(Fault::new(
                FaultKind::InvalidEnrollmentData,
                "the request names no DeviceID",
            ));
        }
    };
    if !valid_device_id(&windows_device_id) {
        return Err(Fault::new(
            FaultKind::InvalidEnrollmentData,
            "the DeviceID is not valid",
        ));
    }
    let device_type = context
        .get("DeviceType")
        .cloned()
        .unwrap_or_else(|| "CIMClient_Windows".into());
    let os_edition = context
        .get("OSEdition")
        .and_then(|e| e.trim().parse::<u32>().ok());
    let mobile = device_type.to_ascii_lowercase().contains("phone")
        || os_edition.is_some_and(is_mobile_edition);
    let mode = if mobile {
        ManagementMode::Mobile
    } else {
        ManagementMode::Desktop
    };
    let enrollment_type = context
        .get("EnrollmentType")
        .cloned()
        .unwrap_or_else(|| "Full".into());
    let (user_id, upn) = match &credential {
        Credential::User {
            user_id,
            user_principal_name,
            ..
        } => (Some(*user_id), Some(user_principal_name.clone())),
        Credential::Bulk { .. } => (None, None),
    };
    let directory_joined = user_id.is_some() && enrollment_type.eq_ignore_ascii_case("Device");
    let ownership = if user_id.is_none() || directory_joined {
        Ownership::Company
    } else {
        Ownership::Personal
    };
    let tenant = credential.tenant();
    let lookup_id = windows_device_id.clone();
    let previous = adapter
        .store
        .read(move |c| db::latest_by_windows_device(c, tenant, &lookup_id))
        .await
        .map_err(store_fault)?
        .filter(|e| e.state == state::ACTIVE);
    let decision: GateResponse = adapter
        .client
        .post(
            Service::Enrollment,
            "/gate",
            &GateRequest {
                checks: vec![GateCheck {
                    tenant_id: tenant,
                    platform: Platform::Windows,
                    ownership,
                    management_mode: Some(mode),
                    user_id,
                    device_id: previous.as_ref().map(|p| p.device_id),
                }],
            },
        )
        .await
        .map_err(upstream)?;
    let decision = decision
        .decisions
        .into_iter()
        .next()
        .ok_or_else(|| Fault::internal("the gate answered no decision"))?;
    if !decision.allowed {
        return Err(denial_fault(decision.denial, decision.detail));
    }
    let upn = upn.or(decision.user_principal_name);
    let device_id = previous
        .as_ref()
        .map_or_else(DeviceId::new, |p| p.device_id);
    let enrollment_id = EnrollmentId::new();
    let issued = sign(
        adapter,
        tenant,
        device_id,
        enrollment_id,
        &csr,
        &windows_device_id,
    )
    .await?;

    let now_time = adapter.clock.now();
    let now = to_millis(now_time);
    let os_version = context
        .get("OSVersion")
        .filter(|v| v.parse::<OsVersion>().is_ok())
        .cloned();
    let facts = DeviceFacts {
        device_name: context.get("DeviceName").cloned(),
        os_version: os_version.as_deref().and_then(|v| v.parse().ok()),
        identity_certificate_expires_at: Some(session_time(issued.not_after)),
        ..DeviceFacts::default()
    };
    let row = WinEnrollmentRow {
        id: enrollment_id,
        device_id,
        tenant_id: tenant,
        user_id,
        user_principal_name: upn.clone(),
        windows_device_id: windows_device_id.clone(),
        hw_device_id: context.get("HWDevID").cloned(),
        device_type,
        os_edition: os_edition.and_then(|e| i32::try_from(e).ok()),
        os_version: os_version.clone(),
        management_mode: mode,
        ownership,
        enrollment_type,
        directory_joined,
        auth_method: method.to_owned(),
        state: state::ACTIVE.into(),
        channel_uri: None,
        channel_state: None,
        last_facts: serde_json::to_string(&facts).ok(),
        inventory_at: None,
        enrolled_at: now,
        ended_at: None,
    };
    let certificate = WinCertificateRow {
        sha256: issued.sha256.to_vec(),
        enrollment_id,
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        revoked_at: None,
    };
    let message = DeviceEnrolled {
        device_id,
        tenant_id: tenant,
        enrollment_id,
        platform: Platform::Windows,
        ownership,
        management_mode: Some(mode),
        user_id,
        user_principal_name: upn.clone(),
        directory_joined,
        facts: facts.clone(),
        enrolled_at: now_time,
    };
    let outbox = adapter.outbox.clone();
    let replaced = previous.as_ref().map(|p| p.id);
    let insert_row = row.clone();
    let loaded = adapter
        .store
        .write(move |c| {
            if let Some(old) = replaced {
                db::end_enrollment(c, old, state::REPLACED, now)?;
            }
            db::insert_enrollment(c, &insert_row)?;
            db::insert_certificate(c, &certificate)?;
            outbox.enqueue(
                c,
                &format!("windows:enrolled:{enrollment_id}"),
                Some(&device_id.to_string()),
                &message,
            )?;
            db::load_device(c, device_id)
        })
        .await
        .map_err(store_fault)?;
    if let Some(loaded) = loaded {
        adapter.index.insert(Device::from_loaded(&loaded));
    }
    tracing::info!(device = %device_id, enrollment = %enrollment_id, %mode, "Windows device enrolled");
    let store = if directory_joined || user_id.is_none() {
        Store::System
    } else {
        Store::User
    };
    Ok(provisioning::Document {
        root_thumbprint: &thumbprint(&issued.ca_der),
        root_base64: &STANDARD.encode(&issued.ca_der),
        client_thumbprint: &thumbprint(&issued.der),
        client_base64: &STANDARD.encode(&issued.der),
        client_subject: &issued.subject,
        store,
        management_url: &adapter.urls.management,
        device_id: &device_id.to_string(),
        user_principal_name: upn.as_deref(),
        renewal: false,
    }
    .render(&adapter.config))
}

fn session_time(millis: i64) -> chrono::DateTime<chrono::Utc> {
    mdm_store::from_millis(millis)
}

/// The PKCS#10 inside a renewal's PKCS#7, and the certificate that signed it.
fn open_renewal(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Fault> {
    let bad = |why: &str| Fault::new(FaultKind::CertificateRequest, why.to_owned());
    let pkcs7 = Pkcs7::from_der(der).map_err(|_| bad("the renewal request is not PKCS#7"))?;
    let empty = Stack::new().map_err(Fault::internal)?;
    let store = X509StoreBuilder::new().map_err(Fault::internal)?.build();
    let mut content = Vec::new();
    // The signer is checked against our records below, not against a chain.
    pkcs7
        .verify(
            &empty,
            &store,
            None,
            Some(&mut content),
            Pkcs7Flags::NOVERIFY,
        )
        .map_err(|_| bad("the renewal request's signature does not verify"))?;
    let signers = pkcs7
        .signers(&empty, Pkcs7Flags::empty())
        .map_err(|_| bad("the renewal request names no signer"))?;
    let signer = signers
        .iter()
        .next()
        .ok_or_else(|| bad("the renewal request names no signer"))?
        .to_der()
        .map_err(Fault::internal)?;
    // A manual renewal base64-encodes the PKCS#10 once more.
    let content = if content.first() == Some(&0x30) {
        content
    } else {
        let text: String = String::from_utf8_lossy(&content)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        STANDARD
            .decode(text)
            .map_err(|_| bad("the renewal request holds no PKCS#10"))?
    };
    Ok((content, signer))
}

async fn renew(
    adapter: &Adapter,
    client_cert: Option<&[u8]>,
    request: &TokenRequest,
) -> Result<String, Fault> {
    if !request.token_value_type.ends_with(value::PKCS7_SUFFIX) {
        return Err(Fault::new(
            FaultKind::CertificateRequest,
            "a renewal carries a PKCS#7 request",
        ));
    }
    let (csr_der, signer) = open_renewal(&request.token_der)?;
    let signer_hash = fingerprint(&signer);
    let found = adapter
        .store
        .read(move |c| db::by_certificate(c, &signer_hash))
        .await
        .map_err(store_fault)?;
    let not_eligible = || {
        Fault::new(
            FaultKind::NotEligibleToRenew,
            "This certificate cannot be renewed; enrol the device again",
        )
    };
    let Some((current, enrollment)) = found else {
        return Err(not_eligible());
    };
    if let Some(der) = client_cert {
        // The TLS client certificate must be one of the same enrollment's.
        let hash = fingerprint(der);
        let same = hash == signer_hash
            || adapter
                .store
                .read(move |c| db::by_certificate(c, &hash))
                .await
                .map_err(store_fault)?
                .is_some_and(|(_, e)| e.id == enrollment.id);
        if !same {
            return Err(Fault::new(FaultKind::Authentication, "User not recognized"));
        }
    }
    let now_time = adapter.clock.now();
    let now = to_millis(now_time);
    let window = i64::from(adapter.config.renewal_window_days) * 86_400_000;
    if now >= current.not_after || now < current.not_after - window {
        return Err(not_eligible());
    }
    let csr = Csr::parse_and_verify(&csr_der, adapter.config.min_key_bits).map_err(csr_fault)?;
    let issued = sign(
        adapter,
        enrollment.tenant_id,
        enrollment.device_id,
        enrollment.id,
        &csr,
        &enrollment.windows_device_id,
    )
    .await?;
    let certificate = WinCertificateRow {
        sha256: issued.sha256.to_vec(),
        enrollment_id: enrollment.id,
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        revoked_at: None,
    };
    let device_id = enrollment.device_id;
    let outbox = adapter.outbox.clone();
    let facts = DeviceFactsReported {
        device_id,
        facts: DeviceFacts {
            identity_certificate_expires_at: Some(session_time(issued.not_after)),
            ..DeviceFacts::default()
        },
        at: now_time,
    };
    let serial = issued.serial.clone();
    adapter
        .store
        .write(move |c| {
            db::insert_certificate(c, &certificate)?;
            outbox.enqueue(
                c,
                &format!("windows:renewed:{device_id}:{serial}"),
                Some(&device_id.to_string()),
                &facts,
            )
        })
        .await
        .map_err(store_fault)?;
    let added = Certificate {
        sha256: issued.sha256,
        not_after: issued.not_after,
    };
    let certificates = adapter.index.with(device_id, |d| {
        let mut all = d.certificates.clone();
        all.push(added);
        all
    });
    if let Some(certificates) = certificates {
        adapter.index.set_certificates(device_id, certificates);
    }
    tracing::info!(device = %device_id, "Windows client certificate renewed");
    let store = if enrollment.directory_joined || enrollment.user_id.is_none() {
        Store::System
    } else {
        Store::User
    };
    Ok(provisioning::Document {
        root_thumbprint: &thumbprint(&issued.ca_der),
        root_base64: &STANDARD.encode(&issued.ca_der),
        client_thumbprint: &thumbprint(&issued.der),
        client_base64: &STANDARD.encode(&issued.der),
        client_subject: &issued.subject,
        store,
        management_url: &adapter.urls.management,
        device_id: &device_id.to_string(),
        user_principal_name: enrollment.user_principal_name.as_deref(),
        renewal: true,
    }
    .render(&adapter.config))
}

// ---- the Federated sign-in page ------------------------------------------------------

/// The app to return to must be a Windows app URI: the page never posts anywhere else.
fn valid_appru(appru: &str) -> bool {
    appru.starts_with("ms-app://") && appru.len() <= 512 && !appru.contains(['"', '<', '>'])
}

fn page(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action ms-app: 'self'"))
        .body(body)
}

fn sign_in_form(appru: &str, login_hint: &str, message: Option<&str>) -> String {
    format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Sign in</title></head><body><h1>Sign in to enrol this device</h1>{message}<form method="post"><input type="hidden" name="appru" value="{appru}"><p><label>User name <input name="username" value="{hint}" autocomplete="username"></label></p><p><label>Password <input type="password" name="password" autocomplete="current-password"></label></p><p><button type="submit">Sign in</button></p></form></body></html>"#,
        message = message
            .map(|m| format!("<p role=\"alert\">{}</p>", escape(m)))
            .unwrap_or_default(),
        appru = escape(appru),
        hint = escape(login_hint),
    )
}

/// `GET /EnrollmentServer/Authenticate?appru=&login_hint=`.
pub fn sign_in_page(appru: &str, login_hint: &str) -> HttpResponse {
    if !valid_appru(appru) {
        return page(
            StatusCode::BAD_REQUEST,
            "<!DOCTYPE html><p>This page is opened by the Windows enrollment client.</p>".into(),
        );
    }
    page(StatusCode::OK, sign_in_form(appru, login_hint, None))
}

/// The form the sign-in page posts.
#[derive(Deserialize)]
pub struct SignInForm {
    pub appru: String,
    pub username: String,
    pub password: String,
}

/// `POST /EnrollmentServer/Authenticate`: checks the password, then hands the client an
/// opaque sealed token (`wresult`) that the WSTEP request carries back.
pub async fn sign_in(adapter: Arc<Adapter>, form: SignInForm) -> HttpResponse {
    if !valid_appru(&form.appru) {
        return page(
            StatusCode::BAD_REQUEST,
            "<!DOCTYPE html><p>This page is opened by the Windows enrollment client.</p>".into(),
        );
    }
    if form.username.len() > 320 || form.password.len() > 1024 {
        return page(
            StatusCode::BAD_REQUEST,
            sign_in_form(
                &form.appru,
                "",
                Some("The user name or password is too long."),
            ),
        );
    }
    let user = adapter
        .client
        .post::<_, ResolvedUser>(
            Service::Enrollment,
            "/users/authenticate",
            &AuthenticateUser {
                user_principal_name: form.username.clone(),
                password: form.password.clone(),
            },
        )
        .await;
    let user = match user {
        Ok(user) => user,
        Err(ClientError::Status {
            status: 401 | 404, ..
        }) => {
            return page(
                StatusCode::UNAUTHORIZED,
                sign_in_form(
                    &form.appru,
                    &form.username,
                    Some("The user name or password is wrong."),
                ),
            );
        }
        Err(error) => {
            tracing::warn!(%error, "the sign-in page could not reach the enrollment service");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                sign_in_form(
                    &form.appru,
                    &form.username,
                    Some("Sign-in is not available right now; try again later."),
                ),
            );
        }
    };
    let expires = adapter.clock.now().timestamp_millis()
        + i64::from(adapter.config.federated_token_minutes) * 60_000;
    let token = SignInToken {
        tenant: user.tenant_id,
        user: user.user_id,
        upn: user.user_principal_name,
        expires,
    };
    let sealed = serde_json::to_vec(&token)
        .map_err(|e| e.to_string())
        .and_then(|json| {
            adapter
                .secrets
                .seal(TOKEN_PURPOSE, &json)
                .map_err(|e| e.to_string())
        });
    let sealed = match sealed {
        Ok(sealed) => URL_SAFE_NO_PAD.encode(sealed),
        Err(error) => {
            tracing::error!(%error, "a sign-in token could not be sealed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><p>Sign-in failed.</p>".into(),
            );
        }
    };
    page(
        StatusCode::OK,
        format!(
            r#"<!DOCTYPE html><html><head><title>Working...</title><script>window.onload=function(){{document.forms[0].submit();}};</script></head><body><form method="post" action="{appru}"><p><input type="hidden" name="wresult" value="{token}"/></p><input type="submit"/></form></body></html>"#,
            appru = escape(&form.appru),
            token = sealed,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_and_return_addresses_are_checked() {
        assert!(valid_device_id("B5B954E81FBCB94EB79BD08BE625F4EE"));
        assert!(valid_device_id("{7BA748C8-703E-4DF2-A74A-92984117346A}"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id("a b"));
        assert!(!valid_device_id(&"A".repeat(129)));
        assert!(valid_appru("ms-app://windows.immersivecontrolpanel"));
        assert!(!valid_appru("https://evil.example.com"));
        assert!(!valid_appru("ms-app://x\"><script>"));
    }

    #[test]
    fn gate_denials_become_their_faults() {
        let cases = [
            (GateDenial::DeviceLimitReached, FaultKind::DeviceCapReached),
            (GateDenial::UserNotLicensed, FaultKind::UserLicense),
            (
                GateDenial::PlatformNotAllowed,
                FaultKind::DeviceNotSupported,
            ),
            (
                GateDenial::AuthorityDisallowsEnrollment,
                FaultKind::NotSupported,
            ),
            (GateDenial::PrerequisiteMissing, FaultKind::NotSupported),
            (
                GateDenial::PersonalDevicesNotAllowed,
                FaultKind::Authorization,
            ),
            (GateDenial::UserUnknown, FaultKind::Authentication),
            (GateDenial::TenantUnknown, FaultKind::Authentication),
        ];
        for (denial, kind) in cases {
            assert_eq!(denial_fault(Some(denial), None).kind, kind, "{denial:?}");
        }
    }
}
