//! Routes: the device endpoints (`public_routes`) and the admin API (`api_routes`) on the
//! public listener, the internal API for dispatch.
//!
//! | route | |
//! |---|---|
//! | `PUT /mdm/apple/checkin` | check-in messages (`application/x-apple-aspen-mdm-checkin`) |
//! | `PUT /mdm/apple/connect` | command reports; answers the next command or nothing |
//! | `GET, POST /mdm/apple/scep` | SCEP: GetCACaps, GetCACert, PKIOperation |
//! | `GET /mdm/apple/enroll/{token}` | the enrollment profile, once |
//! | `POST, GET /api/v1/deviceManagement/appleEnrollmentProfiles` | create and list profiles |
//! | `GET /api/v1/deviceManagement/appleEnrollmentProfiles/{id}` | one profile |

use std::sync::Arc;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mdm_api::ErrorCode;
use mdm_api::internal::adapter::DeliverAction;
use mdm_api::internal::enrollment::SignRequest;
use mdm_api::public::Page;
use mdm_domain::{
    ActionId, DeviceId, EnrollmentId, Ownership, Permission, Platform, Role, TenantId, UserId,
};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use mdm_store::models::apple::{EnrollmentProfileRow, IdentityRow};
use mdm_store::{StoreError, to_millis};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::DeviceError;
use crate::profile::{self, IdentityPayload, ProfileSpec};
use crate::scep;
use crate::service::{Apple, Reply};
use crate::store;

pub const CHECKIN_CONTENT_TYPE: &str = "application/x-apple-aspen-mdm-checkin";
pub const PROFILE_CONTENT_TYPE: &str = "application/x-apple-aspen-config";

pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mdm/apple/checkin")
            .route(web::put().to(check_in))
            .route(web::post().to(check_in)),
    )
    .service(
        web::resource("/mdm/apple/connect")
            .route(web::put().to(connect))
            .route(web::post().to(connect)),
    )
    .service(
        web::resource("/mdm/apple/scep")
            .route(web::get().to(scep_get))
            .route(web::post().to(scep_post)),
    )
    .service(web::resource("/mdm/apple/enroll/{token}").route(web::get().to(download)));
}

/// The admin API's routes: enrollment profiles.
pub fn api_routes(routes: &mut ApiRoutes) {
    routes
        .service(create_profile)
        .service(list_profiles)
        .service(get_profile);
}

pub fn internal_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/devices/{deviceId}").route(web::get().to(device_status)))
        .service(web::resource("/channels/{channelId}").route(web::get().to(channel_status)))
        .service(
            web::resource("/devices/{deviceId}/commands")
                .route(web::get().to(device_commands))
                .route(web::post().to(enqueue)),
        )
        .service(web::resource("/actions/{actionId}/cancel").route(web::post().to(cancel)))
        .service(web::resource("/commands/{uuid}").route(web::get().to(command_result)));
}

/// Reads a body up to `limit` bytes; more is a 400.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, DeviceError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| DeviceError::Malformed(crate::protocol::ProtocolError::Invalid("body")))?;
        if body.len() + chunk.len() > limit {
            return Err(DeviceError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn respond(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Empty => HttpResponse::Ok().finish(),
        Reply::Plist(body) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/xml; charset=UTF-8"))
            .body(body),
        Reply::Json(body) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(body),
    }
}

fn is_check_in(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(CHECKIN_CONTENT_TYPE))
}

async fn check_in(
    apple: web::Data<Arc<Apple>>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    if !is_check_in(&req) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("check-ins are {CHECKIN_CONTENT_TYPE}"),
        )
        .into());
    }
    let body = read_body(payload, apple.config.max_checkin_bytes).await?;
    Ok(respond(apple.check_in(req.headers(), &body).await?))
}

async fn connect(
    apple: web::Data<Arc<Apple>>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, DeviceError> {
    // Without a CheckInURL, devices send check-ins to the ServerURL too.
    if is_check_in(&req) {
        let body = read_body(payload, apple.config.max_checkin_bytes).await?;
        return Ok(respond(apple.check_in(req.headers(), &body).await?));
    }
    let body = read_body(payload, apple.config.max_report_bytes).await?;
    Ok(respond(apple.report(req.headers(), &body).await?))
}

// ---- SCEP -------------------------------------------------------------------------

#[derive(Deserialize)]
struct ScepQuery {
    operation: String,
    message: Option<String>,
}

async fn scep_get(
    apple: web::Data<Arc<Apple>>,
    query: web::Query<ScepQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    match query.operation.as_str() {
        "GetCACaps" => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/plain"))
            .body(scep::CAPABILITIES)),
        "GetCACert" => {
            let ra = ra(&apple).await?;
            let ca = our_ca(&apple).await?;
            let body = scep::ca_ra_certs(&ra.cert, &ca).map_err(ApiError::internal)?;
            Ok(HttpResponse::Ok()
                .insert_header((CONTENT_TYPE, "application/x-x509-ca-ra-cert"))
                .body(body))
        }
        "PKIOperation" => {
            let message = query
                .message
                .ok_or_else(|| ApiError::new(ErrorCode::AppleScepFailed, "message is missing"))?;
            if message.len() > scep::MAX_MESSAGE * 2 {
                return Err(ApiError::new(
                    ErrorCode::AppleScepFailed,
                    "message too large",
                ));
            }
            let cleaned: String = message.chars().filter(|c| !c.is_whitespace()).collect();
            let body = STANDARD
                .decode(cleaned.replace(' ', "+"))
                .map_err(|_| ApiError::new(ErrorCode::AppleScepFailed, "message is not base64"))?;
            pki_operation(&apple, &body).await
        }
        _ => Err(ApiError::new(
            ErrorCode::AppleScepFailed,
            "unknown operation",
        )),
    }
}

async fn scep_post(
    apple: web::Data<Arc<Apple>>,
    query: web::Query<ScepQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    if query.operation != "PKIOperation" {
        return Err(ApiError::new(ErrorCode::AppleScepFailed, "unknown operation").into());
    }
    let body = read_body(payload, scep::MAX_MESSAGE).await?;
    Ok(pki_operation(&apple, &body).await?)
}

async fn ra(apple: &Apple) -> Result<Arc<scep::Ra>, ApiError> {
    apple
        .ra
        .get_or_try_init(|| async {
            let store = apple.store.clone();
            let secrets = apple.secrets.clone();
            let organization = apple.config.organization.clone();
            let now = apple.now();
            let row = store.read(store::scep_ra).await?;
            let row = match row {
                Some(row) => row,
                None => {
                    let ra = scep::Ra::generate(&organization, now.timestamp())
                        .map_err(ApiError::internal)?;
                    let key = ra.key.private_key_to_der().map_err(ApiError::internal)?;
                    let sealed = secrets
                        .seal("apple-scep-ra", &key)
                        .map_err(ApiError::internal)?;
                    let row = mdm_store::models::apple::ScepRaRow {
                        name: "ra".into(),
                        certificate: ra.cert.to_der().map_err(ApiError::internal)?,
                        sealed_key: sealed,
                        created_at: to_millis(now),
                    };
                    store.write(move |c| store::store_scep_ra(c, &row)).await?
                }
            };
            let key = secrets
                .open("apple-scep-ra", &row.sealed_key)
                .map_err(ApiError::internal)?;
            Ok::<_, ApiError>(Arc::new(scep::Ra {
                cert: X509::from_der(&row.certificate).map_err(ApiError::internal)?,
                key: openssl::pkey::PKey::private_key_from_der(&key).map_err(ApiError::internal)?,
            }))
        })
        .await
        .cloned()
}

async fn our_ca(apple: &Apple) -> Result<X509, ApiError> {
    apple.ensure_ca().await;
    apple
        .auth
        .our_ca()
        .ok_or_else(|| ApiError::bare(ErrorCode::Unavailable))
}

async fn pki_operation(apple: &Apple, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let ra = ra(apple).await?;
    let request = scep::parse_request(body, &ra)
        .map_err(|e| ApiError::new(ErrorCode::AppleScepFailed, e.to_string()))?;
    let answer = match issue(apple, &request).await {
        Ok((cert, ca)) => scep::cert_rep_success(&ra, &request, &cert, &ca),
        Err(IssueError::Refused(why)) => {
            tracing::info!(reason = why, "SCEP request refused");
            scep::cert_rep_failure(&ra, &request, scep::FailInfo::BadRequest)
        }
        Err(IssueError::Failed(error)) => return Err(error),
    }
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/x-pki-message"))
        .body(answer))
}

enum IssueError {
    Refused(&'static str),
    Failed(ApiError),
}

/// Has the CA issue the certificate a SCEP request asks for: a first request by its
/// one-time challenge, a renewal by the identity that signed it.
async fn issue(apple: &Apple, request: &scep::Request) -> Result<(X509, X509), IssueError> {
    let now = apple.now();
    let (tenant, device, profile_id) = match request.message_type.as_str() {
        scep::PKCS_REQ => {
            let challenge = request
                .challenge
                .clone()
                .ok_or(IssueError::Refused("no challenge"))?;
            let hash = openssl::sha::sha256(challenge.as_bytes()).to_vec();
            let at = to_millis(now);
            let profile = apple
                .store
                .write(move |c| store::claim_challenge(c, &hash, at))
                .await
                .map_err(|e: StoreError| IssueError::Failed(e.into()))?
                .ok_or(IssueError::Refused("unknown, used or expired challenge"))?;
            (profile.tenant_id, profile.device_id, profile.id)
        }
        scep::RENEWAL_REQ => {
            let current = apple
                .auth
                .verify_certificate(&request.signer)
                .map_err(|_| {
                    IssueError::Refused("the renewal is not signed by a valid identity")
                })?;
            let hash = current.hash.to_vec();
            let identity = apple
                .store
                .read(move |c| store::identity(c, &hash))
                .await
                .map_err(|e: StoreError| IssueError::Failed(e.into()))?
                .ok_or(IssueError::Refused("the identity was not issued here"))?;
            (identity.tenant_id, identity.device_id, identity.profile_id)
        }
        _ => return Err(IssueError::Refused("unsupported message type")),
    };
    let signed = apple
        .upstream
        .sign(&SignRequest {
            tenant_id: tenant,
            device_id: device,
            enrollment_id: None,
            csr: STANDARD.encode(&request.csr_der),
            common_name: device.to_string(),
        })
        .await
        .map_err(|e| IssueError::Failed(e.into()))?;
    let (cert, ca) = decode_signed(&signed).map_err(IssueError::Failed)?;
    record_identity(apple, &cert, profile_id, tenant, device, &signed.serial)
        .await
        .map_err(IssueError::Failed)?;
    Ok((cert, ca))
}

fn decode_signed(
    signed: &mdm_api::internal::enrollment::SignedCertificate,
) -> Result<(X509, X509), ApiError> {
    let cert = STANDARD
        .decode(&signed.certificate)
        .ok()
        .and_then(|der| X509::from_der(&der).ok())
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("the CA answered an unreadable certificate"))
        })?;
    let ca = STANDARD
        .decode(&signed.ca_certificate)
        .ok()
        .and_then(|der| X509::from_der(&der).ok())
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "the CA answered an unreadable CA certificate"
            ))
        })?;
    Ok((cert, ca))
}

async fn record_identity(
    apple: &Apple,
    cert: &X509,
    profile_id: EnrollmentId,
    tenant: TenantId,
    device: DeviceId,
    serial: &str,
) -> Result<(), ApiError> {
    let der = cert.to_der().map_err(ApiError::internal)?;
    let row = IdentityRow {
        cert_hash: openssl::sha::sha256(&der).to_vec(),
        profile_id,
        tenant_id: tenant,
        device_id: device,
        serial: serial.to_owned(),
        not_after: crate::auth::asn1_millis(cert.not_after()).unwrap_or_default(),
        issued_at: apple.now_millis(),
    };
    apple
        .store
        .write(move |c| store::insert_identity(c, &row))
        .await?;
    Ok(())
}

// ---- enrollment profiles ---------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProfile {
    /// `company` for an admin, `personal` for a user (self-service) when omitted.
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// The user the device will belong to (a user token: the caller).
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// iOS, iPadOS or macOS; any Apple platform when omitted.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An enrollment profile: a one-time download that enrols one device.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub id: EnrollmentId,
    /// The one-time download URL; only in the answer that created the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    pub ownership: Ownership,
    pub user_id: Option<UserId>,
    pub platform: Option<Platform>,
    pub identity: String,
    pub created_date_time: DateTime<Utc>,
    pub expires_date_time: DateTime<Utc>,
    pub downloaded_date_time: Option<DateTime<Utc>>,
}

impl ProfileView {
    fn of(row: &EnrollmentProfileRow, url: Option<String>) -> Self {
        Self {
            id: row.id,
            profile_url: url,
            ownership: row.ownership,
            user_id: row.user_id,
            platform: row.platform,
            identity: row.identity.clone(),
            created_date_time: mdm_store::from_millis(row.created_at),
            expires_date_time: mdm_store::from_millis(row.expires_at),
            downloaded_date_time: row.downloaded_at.map(mdm_store::from_millis),
        }
    }
}

/// Makes an enrollment profile: its `profileUrl` downloads once, on the device, and
/// enrols it. Admins make company profiles; a user token makes a personal one for the
/// caller (self-service).
#[utoipa::path(
    tag = "apple",
    operation_id = "createAppleEnrollmentProfile",
    request_body = CreateProfile,
    responses(
        (status = 201, description = "The profile with its one-time `profileUrl`; `Location` names it.", body = ProfileView,
            headers(("Location" = String, description = "The profile's URL."))),
        (status = 409, description = "No push certificate is uploaded (`apple_push_certificate_missing`)."),
    )
)]
#[post("/api/v1/deviceManagement/appleEnrollmentProfiles")]
async fn create_profile(
    apple: web::Data<Arc<Apple>>,
    caller: Caller,
    body: web::Json<CreateProfile>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (tenant, user_id, ownership) = if caller.role == Role::User {
        let tenant = caller.tenant_with(Permission::SelfService)?;
        let own = caller
            .user_id
            .ok_or_else(|| ApiError::forbidden("this token acts for no user"))?;
        if body.user_id.is_some_and(|u| u != own) {
            return Err(ApiError::forbidden(
                "a user may only enrol their own devices",
            ));
        }
        (
            tenant,
            Some(own),
            body.ownership.unwrap_or(Ownership::Personal),
        )
    } else {
        let tenant = caller.tenant_with(Permission::ManageSettings)?;
        (
            tenant,
            body.user_id,
            body.ownership.unwrap_or(Ownership::Company),
        )
    };
    if body.platform.is_some_and(|p| !p.is_apple()) {
        return Err(ApiError::invalid("platform must be iOS, iPadOS or macOS"));
    }
    match apple.upstream.push_certificate(tenant).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(ApiError::bare(ErrorCode::ApplePushCertificateMissing)),
        Err(error) => return Err(error.into()),
    }
    let now = apple.now();
    let token = profile::random_secret();
    let row = EnrollmentProfileRow {
        id: EnrollmentId::new(),
        tenant_id: tenant,
        device_id: DeviceId::new(),
        ownership,
        user_id,
        platform: body.platform,
        identity: if apple.config.scep { "scep" } else { "pkcs12" }.into(),
        token_hash: openssl::sha::sha256(token.as_bytes()).to_vec(),
        challenge_hash: None,
        created_by: caller.token_id.to_string(),
        created_at: to_millis(now),
        expires_at: to_millis(now) + crate::service::hours(apple.config.profile_lifetime_hours),
        downloaded_at: None,
        challenge_used_at: None,
    };
    let stored = row.clone();
    let event = audit::with_detail(
        audit::event(
            &caller,
            now,
            "appleEnrollmentProfile.created",
            "appleEnrollmentProfile",
            row.id,
        ),
        serde_json::json!({ "ownership": ownership, "userId": user_id, "platform": body.platform }),
    );
    let outbox = apple.outbox.clone();
    apple
        .store
        .write(move |c| {
            store::insert_profile(c, &stored)?;
            audit::record(&outbox, c, &event)
        })
        .await?;
    let url = format!("{}/mdm/apple/enroll/{token}", apple.public_url);
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!(
                "/api/v1/deviceManagement/appleEnrollmentProfiles/{}",
                row.id
            ),
        ))
        .json(ProfileView::of(&row, Some(url))))
}

/// Lists the tenant's enrollment profiles, newest first (without their URLs).
#[utoipa::path(
    tag = "apple",
    operation_id = "listAppleEnrollmentProfiles",
    responses((status = 200, description = "The profiles.", body = Page<ProfileView>))
)]
#[get("/api/v1/deviceManagement/appleEnrollmentProfiles")]
async fn list_profiles(
    apple: web::Data<Arc<Apple>>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let rows = apple
        .store
        .read(move |c| {
            use diesel::prelude::*;
            use mdm_store::schema::apl_enrollment_profiles as p;
            Ok::<_, StoreError>(
                p::table
                    .filter(p::tenant_id.eq(tenant))
                    .order(p::created_at.desc())
                    .limit(1000)
                    .select(EnrollmentProfileRow::as_select())
                    .load(c)?,
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        value: rows
            .iter()
            .map(|r| ProfileView::of(r, None))
            .collect::<Vec<_>>(),
        next_link: None,
    }))
}

/// Reads an enrollment profile: whether and when it was downloaded.
#[utoipa::path(
    tag = "apple",
    operation_id = "getAppleEnrollmentProfile",
    params(("id" = EnrollmentId, Path, description = "The profile.")),
    responses((status = 200, description = "The profile.", body = ProfileView))
)]
#[get("/api/v1/deviceManagement/appleEnrollmentProfiles/{id}")]
async fn get_profile(
    apple: web::Data<Arc<Apple>>,
    caller: Caller,
    id: web::Path<EnrollmentId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = id.into_inner();
    let row = apple
        .store
        .read(move |c| store::profile(c, id))
        .await?
        .filter(|r| r.tenant_id == tenant)
        .ok_or_else(|| ApiError::not_found("enrollment profile"))?;
    Ok(HttpResponse::Ok().json(ProfileView::of(&row, None)))
}

/// `GET /mdm/apple/enroll/{token}`: the profile, once.
async fn download(
    apple: web::Data<Arc<Apple>>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = token.into_inner();
    if token.len() > 128 {
        return Err(ApiError::bare(ErrorCode::AppleProfileUnavailable));
    }
    let token_hash = openssl::sha::sha256(token.as_bytes()).to_vec();
    let now = apple.now();
    let lookup = token_hash.clone();
    let at = to_millis(now);
    let row = apple
        .store
        .read(move |c| store::downloadable_profile(c, &lookup, at))
        .await?
        .ok_or_else(|| ApiError::bare(ErrorCode::AppleProfileUnavailable))?;
    let push = apple
        .upstream
        .push_certificate(row.tenant_id)
        .await?
        .ok_or_else(|| ApiError::bare(ErrorCode::ApplePushCertificateMissing))?;
    let (identity, challenge_hash) = if row.identity == "scep" {
        let challenge = profile::random_secret();
        let hash = openssl::sha::sha256(challenge.as_bytes()).to_vec();
        (
            IdentityPayload::Scep {
                url: format!("{}/mdm/apple/scep", apple.public_url),
                challenge,
                subject: row.device_id.to_string(),
            },
            Some(hash),
        )
    } else {
        let (key, csr) =
            profile::identity_request(&row.device_id.to_string()).map_err(ApiError::internal)?;
        let signed = apple
            .upstream
            .sign(&SignRequest {
                tenant_id: row.tenant_id,
                device_id: row.device_id,
                enrollment_id: None,
                csr: STANDARD.encode(csr.to_der().map_err(ApiError::internal)?),
                common_name: row.device_id.to_string(),
            })
            .await?;
        let (cert, ca) = decode_signed(&signed)?;
        record_identity(
            &apple,
            &cert,
            row.id,
            row.tenant_id,
            row.device_id,
            &signed.serial,
        )
        .await?;
        let password = profile::random_secret();
        let data = profile::pkcs12(&key, &cert, &ca, &password).map_err(ApiError::internal)?;
        (IdentityPayload::Pkcs12 { data, password }, None)
    };
    let profile_id = row.id.to_string();
    let spec = ProfileSpec {
        profile_id: &profile_id,
        prefix: &apple.config.payload_identifier_prefix,
        organization: &apple.config.organization,
        server_url: format!("{}/mdm/apple/connect", apple.public_url),
        check_in_url: format!("{}/mdm/apple/checkin", apple.public_url),
        topic: push.topic.clone(),
        identity,
        user_channels: apple.config.user_channels,
    };
    let mut body = profile::build(&spec);
    if let Some(signer) = &apple.signer {
        body = signer.sign(&body).map_err(ApiError::internal)?;
    }
    let claimed = apple
        .store
        .write(move |c| store::claim_download(c, &token_hash, challenge_hash, at))
        .await?;
    if claimed.is_none() {
        return Err(ApiError::bare(ErrorCode::AppleProfileUnavailable));
    }
    tracing::info!(profile = %row.id, "enrollment profile downloaded");
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, PROFILE_CONTENT_TYPE))
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"enroll.mobileconfig\"",
        ))
        .body(body))
}

// ---- internal API -----------------------------------------------------------------

/// `GET /internal/v1/apple/devices/{deviceId}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    pub device_id: DeviceId,
    pub tenant_id: TenantId,
    pub enrollment_id: EnrollmentId,
    pub channel_id: String,
    pub platform: Platform,
    pub state: String,
    pub push_state: String,
    pub has_unlock_token: bool,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub identity_certificate_expires_at: Option<DateTime<Utc>>,
    pub queued_commands: usize,
}

/// A queued command or an answer, for `GET .../commands`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandView {
    pub command_uuid: String,
    pub request_type: String,
    pub action_id: Option<ActionId>,
    /// queued or sent for queued commands; the device's status (Acknowledged, Error,
    /// CommandFormatError) or Expired / Canceled for answers.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_chain: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommands {
    pub queued: Vec<CommandView>,
    pub results: Vec<CommandView>,
}

async fn device_row(
    apple: &Apple,
    device: DeviceId,
) -> Result<mdm_store::models::apple::EnrollmentRow, ApiError> {
    apple
        .store
        .read(move |c| store::enrollments_of_device(c, device))
        .await?
        .into_iter()
        .find(|r| r.channel_id == r.device_channel)
        .ok_or_else(|| ApiError::bare(ErrorCode::AppleDeviceUnknown))
}

async fn device_status(
    apple: web::Data<Arc<Apple>>,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let row = device_row(&apple, id.into_inner()).await?;
    status_of(&apple, row).await
}

/// `GET /internal/v1/apple/channels/{channelId}`: the same, by UDID (or EnrollmentID).
async fn channel_status(
    apple: web::Data<Arc<Apple>>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let row = apple
        .store
        .read(move |c| store::enrollment(c, &id))
        .await?
        .ok_or_else(|| ApiError::bare(ErrorCode::AppleDeviceUnknown))?;
    status_of(&apple, row).await
}

async fn status_of(
    apple: &Apple,
    row: mdm_store::models::apple::EnrollmentRow,
) -> Result<HttpResponse, ApiError> {
    let key = row.channel_id.clone();
    let queued = apple
        .store
        .read(move |c| store::commands_of(c, &key))
        .await?
        .len();
    Ok(HttpResponse::Ok().json(DeviceStatus {
        device_id: row.device_id,
        tenant_id: row.tenant_id,
        enrollment_id: row.enrollment_id,
        channel_id: row.channel_id,
        platform: row.platform,
        state: row.state,
        push_state: row.push_state,
        has_unlock_token: row.sealed_unlock_token.is_some(),
        enrolled_at: row.enrolled_at.map(mdm_store::from_millis),
        identity_certificate_expires_at: row.cert_not_after.map(mdm_store::from_millis),
        queued_commands: queued,
    }))
}

async fn device_commands(
    apple: web::Data<Arc<Apple>>,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let row = device_row(&apple, id.into_inner()).await?;
    let key = row.channel_id.clone();
    let (queued, results) = apple
        .store
        .read(move |c| {
            Ok::<_, StoreError>((
                store::commands_of(c, &key)?,
                store::results_of(c, &key, 200)?,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(DeviceCommands {
        queued: queued
            .into_iter()
            .map(|q| CommandView {
                command_uuid: q.command_uuid,
                request_type: q.request_type,
                action_id: q.action_id,
                status: q.state,
                error_chain: None,
                completed_at: None,
            })
            .collect(),
        results: results.into_iter().map(result_view).collect(),
    }))
}

fn result_view(r: mdm_store::models::apple::CommandResultRow) -> CommandView {
    CommandView {
        command_uuid: r.command_uuid,
        request_type: r.request_type,
        action_id: r.action_id,
        status: r.status,
        error_chain: r.error_chain.and_then(|e| serde_json::from_str(&e).ok()),
        completed_at: Some(mdm_store::from_millis(r.completed_at)),
    }
}

async fn command_result(
    apple: web::Data<Arc<Apple>>,
    uuid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let uuid = uuid.into_inner();
    let row = apple
        .store
        .read(move |c| store::result(c, &uuid))
        .await?
        .ok_or_else(|| ApiError::not_found("command result"))?;
    Ok(HttpResponse::Ok().json(result_view(row)))
}

/// `POST /internal/v1/apple/devices/{deviceId}/commands`: queue an action now (the same
/// body as the `adapter.deliver_action` message, applied once per action id).
async fn enqueue(
    apple: web::Data<Arc<Apple>>,
    id: web::Path<DeviceId>,
    body: web::Json<DeliverAction>,
) -> Result<HttpResponse, ApiError> {
    let action = body.into_inner();
    if action.device_id != id.into_inner() {
        return Err(ApiError::invalid("deviceId differs from the path"));
    }
    let now = apple.now();
    let app = apple.get_ref().clone();
    let key = format!("internal:{}", action.action_id);
    let after = apple
        .store
        .write(move |c| {
            let delivery = mdm_runtime::inbox::Delivery {
                producer: mdm_api::Service::Dispatch,
                key: &key,
                kind: "adapter.deliver_action",
                now,
            };
            crate::actions::deliver(&app, c, &delivery, action)
                .map_err(|e| StoreError::Config(e.to_string()))
        })
        .await?;
    if let Some(after) = after {
        after.await;
    }
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /internal/v1/apple/actions/{actionId}/cancel`.
async fn cancel(
    apple: web::Data<Arc<Apple>>,
    id: web::Path<ActionId>,
) -> Result<HttpResponse, ApiError> {
    let action_id = id.into_inner();
    let now = apple.now();
    let app = apple.get_ref().clone();
    let row = apple
        .store
        .read(move |c| store::action(c, action_id))
        .await?
        .ok_or_else(|| ApiError::not_found("action"))?;
    let message = mdm_api::internal::adapter::CancelAction {
        action_id,
        device_id: row.device_id,
        family: mdm_domain::PlatformFamily::Apple,
    };
    let after = apple
        .store
        .write(move |c| {
            let delivery = mdm_runtime::inbox::Delivery {
                producer: mdm_api::Service::Dispatch,
                key: "internal-cancel",
                kind: "adapter.cancel_action",
                now,
            };
            crate::actions::cancel(&app, c, &delivery, message)
                .map_err(|e| StoreError::Config(e.to_string()))
        })
        .await?;
    let canceled = after.is_some();
    if let Some(after) = after {
        after.await;
    }
    if canceled {
        Ok(HttpResponse::Ok().json(serde_json::json!({ "canceled": true })))
    } else {
        Err(ApiError::new(
            ErrorCode::Conflict,
            "the action reached the device or already ended",
        ))
    }
}
