//! The device-facing routes.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use mdm_api::ErrorCode;
use mdm_runtime::ApiError;
use serde::Deserialize;

use crate::soap::{Fault, action};
use crate::{Adapter, clientcert, enroll, session};

pub const DISCOVERY: &str = "/EnrollmentServer/Discovery.svc";
pub const POLICY: &str = "/EnrollmentServer/Policy.svc";
pub const ENROLLMENT: &str = "/EnrollmentServer/Enrollment.svc";
pub const AUTHENTICATE: &str = "/EnrollmentServer/Authenticate";
pub const MANAGEMENT: &str = "/ManagementServer/MDM.svc";

pub fn routes(cfg: &mut web::ServiceConfig, adapter: &Arc<Adapter>) {
    let data = web::Data::new(adapter.clone());
    cfg.service(
        web::resource(DISCOVERY)
            .app_data(data.clone())
            .route(web::get().to(discovery_probe))
            .route(web::post().to(discovery)),
    )
    .service(web::resource(POLICY).app_data(data.clone()).post(policy))
    .service(
        web::resource(ENROLLMENT)
            .app_data(data.clone())
            .post(enrollment),
    )
    .service(
        web::resource(AUTHENTICATE)
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(8 * 1024))
            .route(web::get().to(sign_in_page))
            .route(web::post().to(sign_in)),
    )
    .service(web::resource(MANAGEMENT).app_data(data).post(management));
}

/// The body is over the limit.
struct TooLarge;

/// Bodies over the limit are still read (and dropped) up to this size, so that the client
/// sees the 413 rather than a connection reset while it is still sending.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, TooLarge> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = Vec::with_capacity(declared.unwrap_or(4096).min(limit));
    let mut over = declared.is_some_and(|len| len > limit);
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(TooLarge);
    }
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Err(TooLarge);
        };
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            return Err(TooLarge);
        }
        if over || body.len() + chunk.len() > limit {
            over = true;
            body = Vec::new();
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if over {
        return Err(TooLarge);
    }
    Ok(body)
}

fn soap_too_large(action: &str, limit: usize) -> HttpResponse {
    let mut response = Fault::message_format(format!("the message is larger than {limit} bytes"))
        .response(action, None);
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

/// `GET /EnrollmentServer/Discovery.svc`: the client's probe; 200 with an empty body.
async fn discovery_probe() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html")
        .insert_header(("Cache-Control", "no-cache"))
        .body("")
}

async fn discovery(
    adapter: web::Data<Arc<Adapter>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = adapter.config.max_message_bytes;
    match read_body(&req, payload, limit).await {
        Ok(body) => enroll::discover(adapter.get_ref().clone(), &body).await,
        Err(TooLarge) => soap_too_large(action::DISCOVER_RESPONSE, limit),
    }
}

async fn policy(
    adapter: web::Data<Arc<Adapter>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = adapter.config.max_message_bytes;
    let cert = clientcert::from_request(&req, adapter.config.client_cert_header.as_deref());
    match read_body(&req, payload, limit).await {
        Ok(body) => enroll::policy(adapter.get_ref().clone(), cert, &body).await,
        Err(TooLarge) => soap_too_large(action::GET_POLICIES_RESPONSE, limit),
    }
}

async fn enrollment(
    adapter: web::Data<Arc<Adapter>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = adapter.config.max_message_bytes;
    let cert = clientcert::from_request(&req, adapter.config.client_cert_header.as_deref());
    match read_body(&req, payload, limit).await {
        Ok(body) => enroll::enroll(adapter.get_ref().clone(), cert, &body).await,
        Err(TooLarge) => soap_too_large(action::RSTRC, limit),
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    appru: String,
    #[serde(default)]
    login_hint: String,
}

async fn sign_in_page(query: web::Query<SignInQuery>) -> HttpResponse {
    enroll::sign_in_page(&query.appru, &query.login_hint)
}

async fn sign_in(
    adapter: web::Data<Arc<Adapter>>,
    form: web::Form<enroll::SignInForm>,
) -> HttpResponse {
    enroll::sign_in(adapter.get_ref().clone(), form.into_inner()).await
}

async fn management(
    adapter: web::Data<Arc<Adapter>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(session::SYNCML_CONTENT_TYPE) {
        return actix_web::ResponseError::error_response(&ApiError::bare(
            ErrorCode::WindowsUnsupportedEncoding,
        ));
    }
    let limit = adapter.config.max_message_bytes;
    let cert = clientcert::from_request(&req, adapter.config.client_cert_header.as_deref());
    match read_body(&req, payload, limit).await {
        Ok(body) => {
            let response = session::handle(adapter.get_ref().clone(), cert, &body).await;
            let outcome = match response.status() {
                StatusCode::OK => "answered",
                StatusCode::UNAUTHORIZED => "unauthenticated",
                _ => "refused",
            };
            adapter.metrics.messages.with_label_values(&[outcome]).inc();
            response
        }
        Err(TooLarge) => actix_web::ResponseError::error_response(&ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("SyncML messages are limited to {limit} bytes"),
        )),
    }
}
