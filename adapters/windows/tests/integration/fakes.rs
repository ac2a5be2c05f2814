//! Small fakes of the services the adapter talks to, serving the same internal paths and
//! messages as the real ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::internal::adapter::{ActionParams, CancelAction, DeliverAction, DeviceRemoved};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::{
    AuthenticateUser, BulkAuthenticate, BulkTenant, GateCheck, GateDecision, GateDenial,
    GateRequest, GateResponse, ResolveUser, ResolvedUser, SignRequest, SignedCertificate,
    TenantPolicy, WindowsAuthPolicy, WindowsEnrollmentSettings,
};
use mdm_api::internal::inventory::{
    DeviceEnrolled, DeviceFactsReported, DeviceUnenrolled, DevicesSeen,
};
use mdm_api::{ErrorCode, Service};
use mdm_domain::{
    ActionId, ActionKind, ActionState, DeviceId, MdmAuthority, PlatformFamily, TenantId, UserId,
};
use mdm_runtime::inbox::Inbox;
use mdm_runtime::{ApiError, Context, Module};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Req};

/// What inventory received.
#[derive(Debug, Clone)]
pub enum Recorded {
    Enrolled(DeviceEnrolled),
    Facts(DeviceFactsReported),
    Seen(DevicesSeen),
    Unenrolled(DeviceUnenrolled),
}

pub struct FixtureState {
    pub tenant: TenantId,
    /// upn (lower case) → (user id, password, licensed)
    pub users: HashMap<String, (UserId, String)>,
    pub bulk_secret: String,
    pub bulk_thumbprints: Vec<String>,
    pub settings: WindowsEnrollmentSettings,
    pub denial: Option<GateDenial>,
    pub gate_checks: Vec<GateCheck>,
    pub signed: Vec<SignRequest>,
    pub inventory: Vec<Recorded>,
    pub reports: Vec<ActionReport>,
    /// Days the CA's certificates last.
    pub validity_days: i64,
}

pub struct Fixture {
    pub state: Mutex<FixtureState>,
    pub ca_cert: X509,
    ca_key: PKey<Private>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "Test device CA").unwrap();
        let name = name.build();
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::from_unix(1_600_000_000).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::from_unix(2_500_000_000).unwrap())
            .unwrap();
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        Self {
            state: Mutex::new(FixtureState {
                tenant: TenantId::new(),
                users: HashMap::new(),
                bulk_secret: "bulk-secret-of-the-package".into(),
                bulk_thumbprints: Vec::new(),
                settings: WindowsEnrollmentSettings {
                    automatic_enrollment: true,
                    auth_policy: WindowsAuthPolicy::OnPremise,
                    bulk_enrollment: true,
                },
                denial: None,
                gate_checks: Vec::new(),
                signed: Vec::new(),
                inventory: Vec::new(),
                reports: Vec::new(),
                validity_days: 365,
            }),
            ca_cert: builder.build(),
            ca_key: key,
        }
    }

    pub fn add_user(&self, upn: &str, password: &str) -> UserId {
        let id = UserId::new();
        self.state
            .lock()
            .unwrap()
            .users
            .insert(upn.to_lowercase(), (id, password.to_owned()));
        id
    }

    pub fn tenant(&self) -> TenantId {
        self.state.lock().unwrap().tenant
    }

    /// The last report of `action` in `state`.
    pub fn report(&self, action: ActionId, state: ActionState) -> Option<ActionReport> {
        self.state
            .lock()
            .unwrap()
            .reports
            .iter()
            .rev()
            .find(|r| r.action_id == action && r.state == state)
            .cloned()
    }

    pub fn reports_of(&self, action: ActionId) -> Vec<ActionReport> {
        self.state
            .lock()
            .unwrap()
            .reports
            .iter()
            .filter(|r| r.action_id == action)
            .cloned()
            .collect()
    }

    pub fn inventory(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().inventory.clone()
    }

    pub fn enrolled(&self, device: DeviceId) -> Option<DeviceEnrolled> {
        self.inventory().into_iter().find_map(|r| match r {
            Recorded::Enrolled(e) if e.device_id == device => Some(e),
            _ => None,
        })
    }

    fn sign(&self, request: &SignRequest, now: i64) -> Result<SignedCertificate, ApiError> {
        let der = STANDARD
            .decode(&request.csr)
            .map_err(|_| ApiError::invalid("csr is not base64"))?;
        let csr = X509Req::from_der(&der).map_err(|_| ApiError::invalid("not a CSR"))?;
        let key = csr.public_key().map_err(|_| ApiError::invalid("no key"))?;
        let mut serial = BigNum::new().unwrap();
        serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", &request.common_name)
            .unwrap();
        let name = name.build();
        let validity = self.state.lock().unwrap().validity_days;
        let not_before = now / 1000;
        let not_after = not_before + validity * 86_400;
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        builder
            .set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
            .unwrap();
        builder.set_subject_name(&name).unwrap();
        builder
            .set_issuer_name(self.ca_cert.subject_name())
            .unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::from_unix(not_before).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::from_unix(not_after).unwrap())
            .unwrap();
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_encipherment()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder
            .append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
            .unwrap();
        builder.sign(&self.ca_key, MessageDigest::sha256()).unwrap();
        let certificate = builder.build();
        self.state.lock().unwrap().signed.push(request.clone());
        Ok(SignedCertificate {
            serial: serial.to_hex_str().unwrap().to_string(),
            certificate: STANDARD.encode(certificate.to_der().unwrap()),
            ca_certificate: STANDARD.encode(self.ca_cert.to_der().unwrap()),
            not_before: mdm_store::from_millis(not_before * 1000),
            not_after: mdm_store::from_millis(not_after * 1000),
        })
    }
}

type Shared = web::Data<Arc<Fixture>>;

/// The enrollment service's internal API, answered from the fixture.
pub fn enrollment(ctx: &Context, fixture: Arc<Fixture>) -> Module {
    let clock = ctx.clock.clone();
    Module::new(Service::Enrollment).internal(move |cfg| {
        let clock = clock.clone();
        cfg.app_data(web::Data::new(fixture.clone()))
            .route(
                "/gate",
                web::post().to(|fx: Shared, body: web::Json<GateRequest>| async move {
                    let mut state = fx.state.lock().unwrap();
                    let mut decisions = Vec::new();
                    for check in &body.checks {
                        state.gate_checks.push(check.clone());
                        let upn = state
                            .users
                            .iter()
                            .find(|(_, (id, _))| Some(*id) == check.user_id)
                            .map(|(upn, _)| upn.clone());
                        decisions.push(match state.denial {
                            Some(denial) => {
                                GateDecision::deny(denial, format!("refused: {}", denial.as_str()))
                            }
                            None => GateDecision::allow(upn),
                        });
                    }
                    HttpResponse::Ok().json(GateResponse { decisions })
                }),
            )
            .route(
                "/ca/sign",
                web::post().to(move |fx: Shared, body: web::Json<SignRequest>| {
                    let now = clock.now().timestamp_millis();
                    async move { fx.sign(&body, now).map(|c| HttpResponse::Ok().json(c)) }
                }),
            )
            .route(
                "/ca/certificate",
                web::get().to(|fx: Shared| async move {
                    HttpResponse::Ok().json(serde_json::json!({
                        "certificate": STANDARD.encode(fx.ca_cert.to_der().unwrap())
                    }))
                }),
            )
            .route(
                "/users/resolve",
                web::post().to(|fx: Shared, body: web::Json<ResolveUser>| async move {
                    let state = fx.state.lock().unwrap();
                    let upn = body.user_principal_name.to_lowercase();
                    match state.users.get(&upn) {
                        Some((id, _)) => Ok(HttpResponse::Ok().json(ResolvedUser {
                            tenant_id: state.tenant,
                            user_id: *id,
                            user_principal_name: upn,
                            licensed: true,
                        })),
                        None => Err(ApiError::not_found("user")),
                    }
                }),
            )
            .route(
                "/users/authenticate",
                web::post().to(|fx: Shared, body: web::Json<AuthenticateUser>| async move {
                    let state = fx.state.lock().unwrap();
                    let upn = body.user_principal_name.to_lowercase();
                    match state.users.get(&upn) {
                        Some((id, password)) if *password == body.password => {
                            Ok(HttpResponse::Ok().json(ResolvedUser {
                                tenant_id: state.tenant,
                                user_id: *id,
                                user_principal_name: upn,
                                licensed: true,
                            }))
                        }
                        _ => Err(ApiError::bare(ErrorCode::Unauthorized)),
                    }
                }),
            )
            .route(
                "/windows/bulk/authenticate",
                web::post().to(|fx: Shared, body: web::Json<BulkAuthenticate>| async move {
                    let state = fx.state.lock().unwrap();
                    let by_secret = body.secret.as_deref() == Some(state.bulk_secret.as_str());
                    let by_cert = body
                        .certificate_thumbprint
                        .as_ref()
                        .is_some_and(|t| state.bulk_thumbprints.contains(t));
                    if by_secret || by_cert {
                        Ok(HttpResponse::Ok().json(BulkTenant {
                            tenant_id: state.tenant,
                        }))
                    } else {
                        Err(ApiError::bare(ErrorCode::Unauthorized))
                    }
                }),
            )
            .route(
                "/tenants/{id}/windows",
                web::get().to(|fx: Shared| async move {
                    HttpResponse::Ok().json(fx.state.lock().unwrap().settings.clone())
                }),
            )
            .route(
                "/tenants/{id}/policy",
                web::get().to(|fx: Shared| async move {
                    let state = fx.state.lock().unwrap();
                    HttpResponse::Ok().json(TenantPolicy {
                        tenant_id: state.tenant,
                        authority: MdmAuthority::Standalone,
                        device_limit_per_user: 5,
                        platforms: Vec::new(),
                        apple_push_topic: None,
                        android_enterprise: None,
                        windows_enrollment_enabled: true,
                    })
                }),
            );
    })
}

/// Inventory: records what it receives.
pub fn inventory(fixture: Arc<Fixture>) -> Module {
    let (a, b, c, d) = (fixture.clone(), fixture.clone(), fixture.clone(), fixture);
    Module::new(Service::Inventory).inbox(
        Inbox::new(Service::Inventory)
            .on::<DeviceEnrolled, _>(move |_, _, m| {
                a.state
                    .lock()
                    .unwrap()
                    .inventory
                    .push(Recorded::Enrolled(m));
                Ok(None)
            })
            .on::<DeviceFactsReported, _>(move |_, _, m| {
                b.state.lock().unwrap().inventory.push(Recorded::Facts(m));
                Ok(None)
            })
            .on::<DevicesSeen, _>(move |_, _, m| {
                c.state.lock().unwrap().inventory.push(Recorded::Seen(m));
                Ok(None)
            })
            .on::<DeviceUnenrolled, _>(move |_, _, m| {
                d.state
                    .lock()
                    .unwrap()
                    .inventory
                    .push(Recorded::Unenrolled(m));
                Ok(None)
            }),
    )
}

/// Dispatch: records action reports; a public route shaped like the admin API queues
/// actions for Windows devices through dispatch's outbox.
pub fn dispatch(ctx: &Context, fixture: Arc<Fixture>) -> Module {
    let recorder = fixture.clone();
    let ctx = ctx.clone();
    Module::new(Service::Dispatch)
        .inbox(
            Inbox::new(Service::Dispatch).on::<ActionReport, _>(move |_, _, m| {
                recorder.state.lock().unwrap().reports.push(m);
                Ok(None)
            }),
        )
        .public(move |cfg| {
            let ctx = ctx.clone();
            let tenant = fixture.tenant();
            let act_ctx = ctx.clone();
            cfg.route(
                "/api/v1/deviceManagement/managedDevices/{id}/deviceActionResults/{action}/cancel",
                web::post().to(move |path: web::Path<(DeviceId, ActionId)>| {
                    let ctx = ctx.clone();
                    async move {
                        let (device, action) = path.into_inner();
                        let outbox = ctx.outbox(Service::Dispatch);
                        ctx.store
                            .write(move |c| {
                                outbox.enqueue(
                                    c,
                                    &format!("dispatch:cancel:{action}"),
                                    Some(&device.to_string()),
                                    &CancelAction {
                                        action_id: action,
                                        device_id: device,
                                        family: PlatformFamily::Windows,
                                    },
                                )
                            })
                            .await
                            .map_err(ApiError::from)?;
                        Ok::<_, ApiError>(HttpResponse::Accepted().finish())
                    }
                }),
            )
            .route(
                "/api/v1/deviceManagement/managedDevices/{id}/remove",
                web::post().to({
                    let ctx = act_ctx.clone();
                    move |path: web::Path<DeviceId>| {
                        let ctx = ctx.clone();
                        async move {
                            let device = path.into_inner();
                            let outbox = ctx.outbox(Service::Dispatch);
                            let at = ctx.clock.now();
                            ctx.store
                                .write(move |c| {
                                    outbox.enqueue(
                                        c,
                                        &format!("inventory:removed:{device}"),
                                        Some(&device.to_string()),
                                        &DeviceRemoved {
                                            device_id: device,
                                            family: PlatformFamily::Windows,
                                            at,
                                        },
                                    )
                                })
                                .await
                                .map_err(ApiError::from)?;
                            Ok::<_, ApiError>(HttpResponse::Accepted().finish())
                        }
                    }
                }),
            )
            .route(
                "/api/v1/deviceManagement/managedDevices/{id}/{action}",
                web::post().to(
                    move |path: web::Path<(DeviceId, String)>,
                          body: web::Json<serde_json::Value>| {
                        let ctx = act_ctx.clone();
                        async move {
                            let (device, action) = path.into_inner();
                            let kind: ActionKind =
                                action.parse().map_err(|_| ApiError::not_found("action"))?;
                            let params: ActionParams =
                                serde_json::from_value(body.0.clone()).unwrap_or_default();
                            let minutes = body
                                .0
                                .get("expiresInMinutes")
                                .and_then(|v| v.as_i64())
                                .unwrap_or(1440);
                            let id = ActionId::new();
                            let now = ctx.clock.now();
                            let message = DeliverAction {
                                action_id: id,
                                tenant_id: tenant,
                                device_id: device,
                                family: PlatformFamily::Windows,
                                kind,
                                params,
                                priority: kind.is_priority(),
                                expires_at: now + chrono::Duration::minutes(minutes),
                                requested_at: now,
                            };
                            let outbox = ctx.outbox(Service::Dispatch);
                            ctx.store
                                .write(move |c| {
                                    outbox.enqueue(
                                        c,
                                        &format!("dispatch:deliver:{id}"),
                                        Some(&device.to_string()),
                                        &message,
                                    )
                                })
                                .await
                                .map_err(ApiError::from)?;
                            Ok::<_, ApiError>(
                                HttpResponse::Accepted()
                                    .json(serde_json::json!({"id": id, "actionState": "pending"})),
                            )
                        }
                    },
                ),
            );
        })
}
