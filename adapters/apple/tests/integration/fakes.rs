//! Stand-ins for the services the adapter talks to: enrollment (gate, CA, push
//! certificate, token introspection) answering the same internal paths, and inventory
//! and dispatch recording the messages the relay delivers to them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::Service;
use mdm_api::internal::dispatch::{ActionReport, AuditEvent};
use mdm_api::internal::enrollment::{
    GateDecision, GateDenial, GateRequest, GateResponse, PushCertificate, SignRequest,
    SignedCertificate,
};
use mdm_api::internal::inventory::{
    DeviceEnrolled, DeviceFactsReported, DeviceUnenrolled, DevicesSeen,
};
use mdm_api::internal::{Grant, IntrospectRequest, IntrospectResponse};
use mdm_domain::TenantId;
use mdm_e2e::apple::TestCa;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::{Module, SharedClock};
use openssl::x509::X509Req;

/// What the fake enrollment service knows.
pub struct EnrollmentState {
    pub ca: TestCa,
    pub push: HashMap<TenantId, PushCertificate>,
    pub deny: Option<GateDenial>,
    pub tokens: HashMap<String, Grant>,
    pub gate_calls: usize,
    pub gate_checks: usize,
    pub signed: usize,
    pub clock: Option<SharedClock>,
}

pub type Enrollment = Arc<Mutex<EnrollmentState>>;

pub fn enrollment_module(state: Enrollment, clock: SharedClock) -> Module {
    state.lock().unwrap().clock = Some(clock);
    Module::new(Service::Enrollment).internal(move |cfg| {
        cfg.app_data(web::Data::new(state.clone()))
            .service(web::resource("/gate").post(gate))
            .service(web::resource("/ca/sign").post(sign))
            .service(web::resource("/ca/certificate").get(ca_certificate))
            .service(web::resource("/tenants/{id}/apple/pushCertificate").get(push_certificate))
            .service(web::resource("/tokens/introspect").post(introspect));
    })
}

async fn gate(state: web::Data<Enrollment>, body: web::Json<GateRequest>) -> HttpResponse {
    let mut state = state.lock().unwrap();
    state.gate_calls += 1;
    state.gate_checks += body.checks.len();
    let decisions = body
        .checks
        .iter()
        .map(|check| match state.deny {
            Some(denial) => GateDecision::deny(denial, "denied by the test"),
            None if !state.push.contains_key(&check.tenant_id) => {
                GateDecision::deny(GateDenial::TenantUnknown, "no such tenant")
            }
            None => GateDecision::allow(check.user_id.map(|_| "jane@contoso.example".to_owned())),
        })
        .collect();
    HttpResponse::Ok().json(GateResponse { decisions })
}

async fn sign(state: web::Data<Enrollment>, body: web::Json<SignRequest>) -> HttpResponse {
    let mut state = state.lock().unwrap();
    state.signed += 1;
    let now = state.clock.as_ref().unwrap().now().timestamp();
    let csr = X509Req::from_der(&STANDARD.decode(&body.csr).unwrap()).unwrap();
    let cert = state
        .ca
        .sign_csr(&csr, &body.common_name, now - 3600, now + 365 * 86_400)
        .unwrap();
    HttpResponse::Ok().json(SignedCertificate {
        serial: hex::encode(cert.serial_number().to_bn().unwrap().to_vec()),
        certificate: STANDARD.encode(cert.to_der().unwrap()),
        ca_certificate: STANDARD.encode(state.ca.cert.to_der().unwrap()),
        not_before: mdm_store::from_millis((now - 3600) * 1000),
        not_after: mdm_store::from_millis((now + 365 * 86_400) * 1000),
    })
}

async fn ca_certificate(state: web::Data<Enrollment>) -> HttpResponse {
    let state = state.lock().unwrap();
    HttpResponse::Ok().json(
        serde_json::json!({ "certificate": STANDARD.encode(state.ca.cert.to_der().unwrap()) }),
    )
}

async fn push_certificate(state: web::Data<Enrollment>, id: web::Path<TenantId>) -> HttpResponse {
    let state = state.lock().unwrap();
    match state.push.get(&id.into_inner()) {
        Some(cert) => HttpResponse::Ok().json(cert),
        None => HttpResponse::NotFound()
            .content_type("application/problem+json")
            .body(r#"{"type":"x","title":"No such object","status":404,"code":"not_found"}"#),
    }
}

async fn introspect(
    state: web::Data<Enrollment>,
    body: web::Json<IntrospectRequest>,
) -> HttpResponse {
    let state = state.lock().unwrap();
    let grant = state.tokens.get(&body.token).cloned();
    HttpResponse::Ok().json(IntrospectResponse {
        active: grant.is_some(),
        grant,
    })
}

/// A message some service received.
#[derive(Debug, Clone)]
pub enum Got {
    Enrolled(DeviceEnrolled),
    Facts(DeviceFactsReported),
    Seen(DevicesSeen),
    Unenrolled(DeviceUnenrolled),
    Report(ActionReport),
    Audit(AuditEvent),
}

pub type Inboxes = Arc<Mutex<Vec<Got>>>;

pub fn inventory_module(got: Inboxes) -> Module {
    let (a, b, c, d) = (got.clone(), got.clone(), got.clone(), got);
    Module::new(Service::Inventory).inbox(
        Inbox::new(Service::Inventory)
            .on::<DeviceEnrolled, _>(move |_, _, m| {
                a.lock().unwrap().push(Got::Enrolled(m));
                Ok(None)
            })
            .on::<DeviceFactsReported, _>(move |_, _, m| {
                b.lock().unwrap().push(Got::Facts(m));
                Ok(None)
            })
            .on::<DevicesSeen, _>(move |_, _, m| {
                c.lock().unwrap().push(Got::Seen(m));
                Ok(None)
            })
            .on::<DeviceUnenrolled, _>(move |_, _, m| {
                d.lock().unwrap().push(Got::Unenrolled(m));
                Ok(None)
            }),
    )
}

pub fn dispatch_module(got: Inboxes) -> Module {
    let audits = got.clone();
    let inbox = Inbox::new(Service::Dispatch)
        .on::<ActionReport, _>(move |_, _, m| {
            got.lock().unwrap().push(Got::Report(m));
            Ok(None)
        })
        .on::<AuditEvent, _>(move |_, _, m| {
            audits.lock().unwrap().push(Got::Audit(m));
            Ok(None)
        });
    Module::new(Service::Dispatch).inbox(inbox)
}
