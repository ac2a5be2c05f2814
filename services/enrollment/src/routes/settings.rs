//! Tenant settings: MDM authority, enrollment restrictions, and the platform
//! prerequisites (Apple push certificate, Android Enterprise, Windows enrollment).

use actix_web::{HttpResponse, get, post, put, web};
use mdm_api::internal::android::{BindEnterprise, BoundEnterprise, CreateSignupUrl, SignupUrl};
use mdm_api::internal::inventory::{DeviceFilter, DevicesSelect, DevicesSelectResponse};
use mdm_api::public::{
    AndroidEnterprise, AndroidSignupRequest, AndroidSignupUrl, ApplePushNotificationCertificate,
    BindAndroidEnterprise, BulkEnrollmentSecret, EnrollmentRestrictions, MdmAuthorityBody,
    UploadPushCertificate, WindowsEnrollment,
};
use mdm_api::{ClientError, ErrorCode, Service};
use mdm_domain::{Permission, Platform, TenantId};
use mdm_runtime::crypto::random_token;
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;

use super::Shared;
use crate::error::Error;
use crate::{android, apple, tenants, windows};

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(get_authority)
        .service(put_authority)
        .service(get_restrictions)
        .service(put_restrictions)
        .service(get_push_certificate)
        .service(put_push_certificate)
        .service(get_android)
        .service(put_android)
        .service(android_signup)
        .service(get_windows)
        .service(put_windows)
        .service(new_bulk_secret);
}

/// The routes outside the admin API: where Google sends the admin's browser back.
pub fn browser_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/mdm/enrollment/android/callback/{tenantId}").get(android_callback));
}

/// Reads the tenant's MDM authority.
#[utoipa::path(
    tag = "settings",
    operation_id = "getMdmAuthority",
    responses((status = 200, description = "The authority.", body = MdmAuthorityBody))
)]
#[get("/api/v1/organization/mdmAuthority")]
async fn get_authority(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let row = state
        .store
        .read(move |c| tenants::find(c, tenant))
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    Ok(HttpResponse::Ok().json(MdmAuthorityBody {
        mobile_device_management_authority: row.mdm_authority,
    }))
}

/// Sets the tenant's MDM authority: `none` blocks every enrollment, `standalone` manages
/// with every capability, `hybrid` leaves device actions to the configuration manager's
/// connector, `office365` allows the basic subset. Devices keep their enrollment.
#[utoipa::path(
    tag = "settings",
    operation_id = "setMdmAuthority",
    request_body = MdmAuthorityBody,
    responses((status = 200, description = "The authority now.", body = MdmAuthorityBody))
)]
#[put("/api/v1/organization/mdmAuthority")]
async fn put_authority(
    caller: Caller,
    state: Shared,
    body: web::Json<MdmAuthorityBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let authority = body.mobile_device_management_authority;
    let now = state.clock.now();
    let shared = state.clone();
    let previous = state
        .store
        .write(move |c| {
            let previous = tenants::set_authority(c, tenant, authority, now)?;
            if previous != authority {
                let event = audit::with_detail(
                    audit::event(&caller, now, "authority.changed", "tenant", tenant),
                    serde_json::json!({ "from": previous, "to": authority }),
                );
                shared.audit(c, &event)?;
                shared.policy_changed(c, tenant)?;
            }
            Ok::<_, Error>(previous)
        })
        .await?;
    if previous != authority {
        tracing::info!(%tenant, from = %previous, to = %authority, "MDM authority changed");
    }
    Ok(HttpResponse::Ok().json(MdmAuthorityBody {
        mobile_device_management_authority: authority,
    }))
}

/// Reads the enrollment restrictions: platforms allowed, personal devices, the device
/// limit per user.
#[utoipa::path(
    tag = "settings",
    operation_id = "getEnrollmentRestrictions",
    responses((status = 200, description = "The restrictions.", body = EnrollmentRestrictions))
)]
#[get("/api/v1/deviceManagement/enrollmentRestrictions")]
async fn get_restrictions(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let restrictions = state
        .store
        .read(move |c| tenants::restrictions(c, tenant))
        .await?;
    Ok(HttpResponse::Ok().json(restrictions))
}

/// Sets the enrollment restrictions; they apply to new enrollments.
#[utoipa::path(
    tag = "settings",
    operation_id = "setEnrollmentRestrictions",
    request_body = EnrollmentRestrictions,
    responses((status = 200, description = "The restrictions now.", body = EnrollmentRestrictions))
)]
#[put("/api/v1/deviceManagement/enrollmentRestrictions")]
async fn put_restrictions(
    caller: Caller,
    state: Shared,
    body: web::Json<EnrollmentRestrictions>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let now = state.clock.now();
    let shared = state.clone();
    let body = body.into_inner();
    let restrictions = state
        .store
        .write(move |c| {
            let restrictions = tenants::set_restrictions(c, tenant, &body)?;
            let event = audit::with_detail(
                audit::event(
                    &caller,
                    now,
                    "enrollmentRestrictions.changed",
                    "tenant",
                    tenant,
                ),
                serde_json::to_value(&restrictions).unwrap_or_default(),
            );
            shared.audit(c, &event)?;
            shared.policy_changed(c, tenant)?;
            Ok::<_, Error>(restrictions)
        })
        .await?;
    Ok(HttpResponse::Ok().json(restrictions))
}

/// Reads the Apple MDM push certificate: topic, serial, expiry.
#[utoipa::path(
    tag = "apple",
    operation_id = "getApplePushCertificate",
    responses(
        (status = 200, description = "The certificate.", body = ApplePushNotificationCertificate),
        (status = 404, description = "No certificate is uploaded (`not_found`)."),
    )
)]
#[get("/api/v1/deviceManagement/applePushNotificationCertificate")]
async fn get_push_certificate(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let row = state
        .store
        .read(move |c| apple::current(c, tenant))
        .await?
        .ok_or(Error::NotFound("push certificate"))?;
    let now = state.clock.now();
    let wire = apple::to_wire(&row, now, state.config.push_certificate_warning_days);
    state
        .push_certificate_days
        .with_label_values(&[&tenant.to_string()])
        .set(wire.days_to_expiry);
    Ok(HttpResponse::Ok().json(wire))
}

/// Uploads the Apple MDM push certificate (PKCS#12 with its password, or PEM), with the
/// admin's consent to share data with Apple. A renewal must keep the topic the devices
/// enrolled with, unless forced.
#[utoipa::path(
    tag = "apple",
    operation_id = "setApplePushCertificate",
    request_body = UploadPushCertificate,
    responses(
        (status = 200, description = "The certificate now.", body = ApplePushNotificationCertificate),
        (status = 409, description = "The topic differs from the enrolled devices' (`push_certificate_topic_mismatch`); send `force` to replace it."),
        (status = 422, description = "The certificate cannot be used (`invalid_certificate`), or consent is missing (`data_sharing_consent_required`)."),
    )
)]
#[put("/api/v1/deviceManagement/applePushNotificationCertificate")]
async fn put_push_certificate(
    caller: Caller,
    state: Shared,
    body: web::Json<UploadPushCertificate>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let upload = body.into_inner();
    require_consent(upload.data_sharing_consent, "Apple")?;
    let parsed = apple::parse(&upload)?;
    let now = state.clock.now();
    if parsed.not_after <= now {
        return Err(ApiError::new(
            ErrorCode::InvalidCertificate,
            format!("the certificate expired on {}", parsed.not_after),
        ));
    }
    let existing = state.store.read(move |c| apple::current(c, tenant)).await?;
    if let Some(existing) = existing.filter(|e| e.topic != parsed.topic) {
        let enrolled = apple_device_count(&state, tenant).await?;
        if enrolled > 0 && !upload.force {
            return Err(ApiError::new(
                ErrorCode::PushCertificateTopicMismatch,
                format!(
                    "{enrolled} devices enrolled with topic {}; a certificate for {} would stop every push to them \
                     (renew the certificate with the same Apple ID instead, or send force: true and enrol them again)",
                    existing.topic, parsed.topic
                ),
            )
            .with("enrolledDevices", enrolled)
            .with("currentTopic", &existing.topic));
        }
    }
    let consented_by = caller.token_id.to_string();
    let shared = state.clone();
    let forced = upload.force;
    let row = state
        .store
        .write(move |c| {
            let row = apple::store(c, &shared.secrets, tenant, &parsed, &consented_by, now)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "applePushCertificate.uploaded", "tenant", tenant),
                serde_json::json!({ "topic": row.topic, "serialNumber": row.serial_number, "forced": forced }),
            );
            shared.audit(c, &event)?;
            shared.policy_changed(c, tenant)?;
            Ok::<_, Error>(row)
        })
        .await?;
    let wire = apple::to_wire(&row, now, state.config.push_certificate_warning_days);
    state
        .push_certificate_days
        .with_label_values(&[&tenant.to_string()])
        .set(wire.days_to_expiry);
    tracing::info!(%tenant, topic = %wire.topic_identifier, expires = %wire.expiration_date_time, "push certificate uploaded");
    Ok(HttpResponse::Ok().json(wire))
}

/// How many Apple devices inventory holds for the tenant.
async fn apple_device_count(state: &Shared, tenant: TenantId) -> Result<usize, ApiError> {
    let mut total = 0;
    for platform in [Platform::Ios, Platform::IPadOs, Platform::MacOs] {
        let request = DevicesSelect {
            tenant_id: tenant,
            filter: DeviceFilter {
                operating_system: Some(platform),
                ..DeviceFilter::default()
            },
        };
        let found: DevicesSelectResponse = state
            .client
            .post(Service::Inventory, "/devices/select", &request)
            .await?;
        total += found.device_ids.len();
    }
    Ok(total)
}

fn require_consent(consent: bool, vendor: &str) -> Result<(), ApiError> {
    if consent {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::DataSharingConsentRequired,
            format!(
                "this shares device and user data with {vendor}: send \"dataSharingConsent\": true to agree"
            ),
        ))
    }
}

/// Reads the Android Enterprise binding and what it still lacks.
#[utoipa::path(
    tag = "android",
    operation_id = "getAndroidEnterprise",
    responses((status = 200, description = "The binding.", body = AndroidEnterprise))
)]
#[get("/api/v1/deviceManagement/androidEnterprise")]
async fn get_android(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let row = state
        .store
        .read(move |c| android::current(c, tenant))
        .await?;
    Ok(HttpResponse::Ok().json(android::to_wire(row.as_ref())))
}

/// Starts an Android Enterprise signup: answers Google's signup URL for the admin to
/// open; Google then sends the admin back to this server, which completes the binding.
#[utoipa::path(
    tag = "android",
    operation_id = "startAndroidEnterpriseSignup",
    request_body = AndroidSignupRequest,
    responses(
        (status = 200, description = "The signup URL.", body = AndroidSignupUrl),
        (status = 422, description = "Google refused the request (`android_binding_failed`), or consent is missing (`data_sharing_consent_required`)."),
    )
)]
#[post("/api/v1/deviceManagement/androidEnterprise/signupUrl")]
async fn android_signup(
    caller: Caller,
    state: Shared,
    body: web::Json<AndroidSignupRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let request = body.into_inner();
    require_consent(request.data_sharing_consent, "Google")?;
    android::validate_service_account_key(&request.service_account_key)?;
    if let Some(topic) = &request.pubsub_topic {
        android::validate_pubsub_topic(topic)?;
    }
    let callback_url = request.callback_url.clone().unwrap_or_else(|| {
        format!(
            "{}/mdm/enrollment/android/callback/{tenant}",
            state.public_url
        )
    });
    let signup: SignupUrl = state
        .client
        .post(
            Service::Android,
            "/signupUrls",
            &CreateSignupUrl {
                tenant_id: tenant,
                callback_url,
                service_account_key: request.service_account_key.clone(),
                admin_email: request.admin_email.clone(),
            },
        )
        .await
        .map_err(binding_failed)?;
    let now = state.clock.now();
    let shared = state.clone();
    let name = signup.name.clone();
    state
        .store
        .write(move |c| {
            android::save(
                c,
                &shared.secrets,
                tenant,
                android::PENDING,
                None,
                Some(name),
                &request.service_account_key,
                request.pubsub_topic,
                &request.notification_types,
                &caller.token_id.to_string(),
                now,
            )?;
            shared.audit(
                c,
                &audit::event(
                    &caller,
                    now,
                    "androidEnterprise.signupStarted",
                    "tenant",
                    tenant,
                ),
            )?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(AndroidSignupUrl {
        name: signup.name,
        url: signup.url,
    }))
}

/// Binds an Android Enterprise: completes a signup with Google's `enterpriseToken`, or
/// attaches an existing enterprise, and sets its Pub/Sub topic.
#[utoipa::path(
    tag = "android",
    operation_id = "bindAndroidEnterprise",
    request_body = BindAndroidEnterprise,
    responses(
        (status = 200, description = "The binding.", body = AndroidEnterprise),
        (status = 422, description = "Google refused the binding (`android_binding_failed`), or consent is missing (`data_sharing_consent_required`)."),
    )
)]
#[put("/api/v1/deviceManagement/androidEnterprise")]
async fn put_android(
    caller: Caller,
    state: Shared,
    body: web::Json<BindAndroidEnterprise>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let request = body.into_inner();
    require_consent(request.data_sharing_consent, "Google")?;
    let consented_by = caller.token_id.to_string();
    let wire = bind_android(&state, tenant, request, &consented_by, Some(&caller)).await?;
    Ok(HttpResponse::Ok().json(wire))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackQuery {
    enterprise_token: String,
}

/// Where Google sends the admin after the signup: completes the pending binding.
async fn android_callback(
    state: Shared,
    tenant: web::Path<TenantId>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let pending = state
        .store
        .read(move |c| android::current(c, tenant))
        .await?;
    let Some(pending) = pending.filter(|p| p.state == android::PENDING) else {
        return Err(ApiError::not_found("a pending Android Enterprise signup"));
    };
    let request = BindAndroidEnterprise {
        enterprise_token: Some(query.into_inner().enterprise_token),
        enterprise_name: None,
        service_account_key: None,
        pubsub_topic: None,
        notification_types: Vec::new(),
        data_sharing_consent: true,
    };
    bind_android(&state, tenant, request, &pending.consented_by, None).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Android Enterprise is bound to your tenant. You can close this window."))
}

/// Binds through the Android adapter: finishes a signup (token) or attaches an existing
/// enterprise, then records the binding.
async fn bind_android(
    state: &Shared,
    tenant: TenantId,
    request: BindAndroidEnterprise,
    consented_by: &str,
    caller: Option<&Caller>,
) -> Result<mdm_api::public::AndroidEnterprise, ApiError> {
    let pending = state
        .store
        .read(move |c| android::current(c, tenant))
        .await?;
    let key = match (&request.service_account_key, &pending) {
        (Some(key), _) => key.clone(),
        (None, Some(row)) => android::service_account_key(row, &state.secrets)?,
        (None, None) => return Err(ApiError::invalid("serviceAccountKey is required")),
    };
    android::validate_service_account_key(&key)?;
    let signup_url_name = pending
        .as_ref()
        .filter(|p| p.state == android::PENDING)
        .and_then(|p| p.signup_url_name.clone());
    // A signup completes with the Pub/Sub settings given when it started, unless the
    // request names others: without a topic no notification would ever arrive.
    let (signup_topic, signup_types) = android::pending_pubsub(pending.as_ref());
    let pubsub_topic = request.pubsub_topic.clone().or(signup_topic);
    let notification_types = if request.notification_types.is_empty() {
        signup_types
    } else {
        request.notification_types.clone()
    };
    match (
        &request.enterprise_token,
        &request.enterprise_name,
        &signup_url_name,
    ) {
        (Some(_), None, Some(_)) | (None, Some(_), _) => {}
        (Some(_), None, None) => {
            return Err(ApiError::invalid(
                "no signup is pending: start one with POST .../signupUrl",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "send either enterpriseToken (after a signup) or enterpriseName",
            ));
        }
    }
    let bound: BoundEnterprise = state
        .client
        .post(
            Service::Android,
            "/enterprises",
            &BindEnterprise {
                tenant_id: tenant,
                service_account_key: key.clone(),
                signup_url_name: request.enterprise_token.as_ref().and(signup_url_name),
                enterprise_token: request.enterprise_token.clone(),
                enterprise_name: request.enterprise_name.clone(),
                display_name: None,
                pubsub_topic: pubsub_topic.clone(),
                notification_types: notification_types.clone(),
            },
        )
        .await
        .map_err(binding_failed)?;
    let now = state.clock.now();
    let shared = state.clone();
    let consented_by = consented_by.to_owned();
    let event = match caller {
        Some(caller) => audit::event(caller, now, "androidEnterprise.bound", "tenant", tenant),
        None => audit::system_event(tenant, now, "androidEnterprise.bound", "tenant", tenant),
    };
    let row = state
        .store
        .write(move |c| {
            let row = android::save(
                c,
                &shared.secrets,
                tenant,
                android::BOUND,
                Some(bound.enterprise_name.clone()),
                None,
                &key,
                pubsub_topic,
                &notification_types,
                &consented_by,
                now,
            )?;
            shared.audit(
                c,
                &audit::with_detail(
                    event,
                    serde_json::json!({ "enterpriseName": bound.enterprise_name }),
                ),
            )?;
            shared.policy_changed(c, tenant)?;
            Ok::<_, Error>(row)
        })
        .await?;
    Ok(android::to_wire(Some(&row)))
}

/// A refusal from Google (through the adapter) is the admin's to fix; an unreachable
/// adapter is ours.
fn binding_failed(error: ClientError) -> ApiError {
    match &error {
        ClientError::Status {
            status, problem, ..
        } if (400..500).contains(status) => ApiError::new(
            ErrorCode::AndroidBindingFailed,
            problem
                .as_ref()
                .and_then(|p| p.detail.clone())
                .unwrap_or_else(|| format!("Google answered {status}")),
        ),
        _ => error.into(),
    }
}

/// Reads the Windows enrollment settings.
#[utoipa::path(
    tag = "windows",
    operation_id = "getWindowsEnrollment",
    responses((status = 200, description = "The settings.", body = WindowsEnrollment))
)]
#[get("/api/v1/deviceManagement/windowsEnrollment")]
async fn get_windows(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let settings = state.store.read(move |c| windows::get(c, tenant)).await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// Sets the Windows enrollment settings: automatic enrollment, the authentication policy
/// (applies to new enrollments), the certificates allowed to bulk-enrol.
#[utoipa::path(
    tag = "windows",
    operation_id = "setWindowsEnrollment",
    request_body = WindowsEnrollment,
    responses((status = 200, description = "The settings now.", body = WindowsEnrollment))
)]
#[put("/api/v1/deviceManagement/windowsEnrollment")]
async fn put_windows(
    caller: Caller,
    state: Shared,
    body: web::Json<WindowsEnrollment>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let now = state.clock.now();
    let shared = state.clone();
    let body = body.into_inner();
    let settings = state
        .store
        .write(move |c| {
            let settings = windows::put(c, tenant, &body, now)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "windowsEnrollment.changed", "tenant", tenant),
                serde_json::to_value(&settings).unwrap_or_default(),
            );
            shared.audit(c, &event)?;
            shared.policy_changed(c, tenant)?;
            Ok::<_, Error>(settings)
        })
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// Makes a new bulk-enrollment (provisioning package) secret, shown once; the previous
/// one stops working.
#[utoipa::path(
    tag = "windows",
    operation_id = "newWindowsBulkEnrollmentSecret",
    responses((status = 200, description = "The secret.", body = BulkEnrollmentSecret))
)]
#[post("/api/v1/deviceManagement/windowsEnrollment/bulkEnrollmentSecret")]
async fn new_bulk_secret(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let secret = random_token::<32>();
    let now = state.clock.now();
    let shared = state.clone();
    let stored = secret.clone();
    state
        .store
        .write(move |c| {
            windows::set_bulk_secret(c, tenant, &stored, now)?;
            shared.audit(
                c,
                &audit::event(
                    &caller,
                    now,
                    "windowsEnrollment.bulkSecretRotated",
                    "tenant",
                    tenant,
                ),
            )?;
            shared.policy_changed(c, tenant)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(BulkEnrollmentSecret { secret }))
}
