//! HTTP routes: the internal API the enrollment service calls to bind an enterprise, the
//! admin API for enrollment tokens and reset passcodes (`api_routes`), and the Pub/Sub
//! push endpoint (`public_routes`).

use std::sync::Arc;

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use mdm_api::internal::android::{BindEnterprise, BoundEnterprise, CreateSignupUrl, SignupUrl};
use mdm_api::internal::enrollment::TenantPolicy;
use mdm_api::public::Page;
use mdm_api::{ErrorCode, Service};
use mdm_domain::{ActionId, DeviceId, MdmAuthority, Permission, Platform, TenantId, UserId};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use mdm_store::models::android::{EnrollmentTokenRow, EnterpriseRow};
use mdm_store::{StoreError, from_millis, to_millis};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actions::PASSCODE_PURPOSE;
use crate::adapter::Adapter;
use crate::amapi::types::{EnrollmentToken, Enterprise, default_policy};
use crate::amapi::{Account, Request};
use crate::devices::{Profile, TokenData};
use crate::error::Error;
use crate::{pubsub, store};

pub const TOKENS_PATH: &str = "/api/v1/deviceManagement/androidEnrollmentTokens";

pub fn internal_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/signupUrls").post(create_signup_url))
        .service(web::resource("/enterprises").post(bind_enterprise));
}

pub fn public_routes(cfg: &mut web::ServiceConfig, adapter: &Arc<Adapter>) {
    let limit = adapter.config.pubsub.max_body_bytes;
    cfg.service(
        web::resource(pubsub::PATH)
            .app_data(web::PayloadConfig::new(limit))
            .post(pubsub::receive),
    );
}

/// The admin API's routes: enrollment tokens, and the passcode a reset set.
pub fn api_routes(routes: &mut ApiRoutes) {
    routes
        .service(create_token)
        .service(list_tokens)
        .service(get_token)
        .service(delete_token)
        .service(reset_passcode);
}

// ---- internal: enterprise binding ------------------------------------------------------

async fn create_signup_url(
    adapter: web::Data<Arc<Adapter>>,
    body: web::Json<CreateSignupUrl>,
) -> Result<HttpResponse, ApiError> {
    let account = Account::parse(&body.service_account_key).map_err(Error::from)?;
    let mut request = Request::post("v1/signupUrls", &serde_json::json!({}))
        .query("projectId", account.project_id.clone())
        .query("callbackUrl", body.callback_url.clone());
    // signupUrls.create takes no body.
    request.body = None;
    if let Some(email) = &body.admin_email {
        request = request.query("adminEmail", email.clone());
    }
    let url: SignupUrl = adapter
        .amapi
        .call_with_retries(&account, &request)
        .await
        .map_err(Error::from)?;
    tracing::info!(tenant = %body.tenant_id, signup = %url.name, "Android Enterprise signup started");
    Ok(HttpResponse::Ok().json(url))
}

async fn bind_enterprise(
    adapter: web::Data<Arc<Adapter>>,
    body: web::Json<BindEnterprise>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account = Account::parse(&body.service_account_key).map_err(Error::from)?;
    let amapi = &adapter.amapi;
    let enterprise: Enterprise = match (
        &body.enterprise_name,
        &body.signup_url_name,
        &body.enterprise_token,
    ) {
        (Some(name), _, _) => {
            if !name.starts_with("enterprises/") || name.len() > 200 || name[12..].contains('/') {
                return Err(ApiError::invalid("enterpriseName must be enterprises/<id>"));
            }
            amapi
                .call_with_retries(&account, &Request::get(format!("v1/{name}")))
                .await
                .map_err(Error::from)?
        }
        (None, Some(signup), Some(token)) => {
            let request = Request::post(
                "v1/enterprises",
                &Enterprise {
                    enterprise_display_name: body.display_name.clone(),
                    ..Enterprise::default()
                },
            )
            .query("projectId", account.project_id.clone())
            .query("signupUrlName", signup.clone())
            .query("enterpriseToken", token.clone());
            amapi
                .call_with_retries(&account, &request)
                .await
                .map_err(Error::from)?
        }
        _ => {
            return Err(ApiError::invalid(
                "give enterpriseName, or signupUrlName with enterpriseToken",
            ));
        }
    };
    let name = enterprise.name.clone().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("enterprises.create answered no name"))
    })?;
    let types = if body.notification_types.is_empty() {
        adapter.config.notification_types.clone()
    } else {
        body.notification_types.clone()
    };
    if let Some(topic) = &body.pubsub_topic {
        let patch = Enterprise {
            pubsub_topic: Some(topic.clone()),
            enabled_notification_types: types.clone(),
            ..Enterprise::default()
        };
        let _: Enterprise = amapi
            .call_with_retries(
                &account,
                &Request::patch(format!("v1/{name}"), &patch)
                    .query("updateMask", "pubsubTopic,enabledNotificationTypes"),
            )
            .await
            .map_err(Error::from)?;
    }
    let policy = format!("{name}/policies/{}", adapter.config.default_policy_id);
    let _: serde_json::Value = amapi
        .call_with_retries(
            &account,
            &Request::patch(format!("v1/{policy}"), &default_policy()),
        )
        .await
        .map_err(Error::from)?;
    let now = to_millis(adapter.now());
    let row = EnterpriseRow {
        tenant_id: body.tenant_id,
        enterprise_name: name.clone(),
        project_id: Some(account.project_id.clone()),
        display_name: body
            .display_name
            .clone()
            .or(enterprise.enterprise_display_name),
        pubsub_topic: body.pubsub_topic.clone(),
        notification_types: types.join(" "),
        default_policy: policy,
        upgraded_at: None,
        bound_at: now,
        updated_at: now,
    };
    let saved = adapter
        .store
        .write(move |c| store::save_enterprise(c, &row))
        .await;
    match saved {
        Ok(()) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::new(
                mdm_api::ErrorCode::Conflict,
                "this enterprise is bound to another tenant",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    adapter.forget_binding(body.tenant_id);
    tracing::info!(tenant = %body.tenant_id, enterprise = %name, "Android Enterprise bound");
    Ok(HttpResponse::Ok().json(BoundEnterprise {
        enterprise_name: name,
    }))
}

// ---- admin: enrollment tokens ----------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateToken {
    profile: Profile,
    /// The user the devices enrolled with it belong to (not for `dedicated`).
    #[serde(default)]
    user_id: Option<UserId>,
    /// How long it works: 60 s to 90 days.
    #[serde(default)]
    duration_seconds: Option<u64>,
    /// Enrols one device only.
    #[serde(default)]
    one_time_only: bool,
}

/// An enrollment token as the admin API shows it. `value`, `qrCode` and `enrollmentLink`
/// are shown once, when the token is created.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    id: String,
    name: String,
    profile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enrollment_link: Option<String>,
    expiration_date_time: DateTime<Utc>,
    created_date_time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_date_time: Option<DateTime<Utc>>,
}

impl TokenView {
    fn of(row: &EnrollmentTokenRow) -> Self {
        Self {
            id: uuid_of(&row.id).to_string(),
            name: row.name.clone(),
            profile: row.profile.clone(),
            user_id: row.user_id,
            value: None,
            qr_code: None,
            enrollment_link: None,
            expiration_date_time: from_millis(row.expires_at),
            created_date_time: from_millis(row.created_at),
            revoked_date_time: row.revoked_at.map(from_millis),
        }
    }
}

const MAX_TOKEN_SECS: u64 = 90 * 24 * 3600;

/// Makes an Android enrollment token for a profile (personal work profile, fully managed,
/// corporate work profile, dedicated); its `value`, `qrCode` and `enrollmentLink` are in
/// this answer only.
#[utoipa::path(
    tag = "android",
    operation_id = "createAndroidEnrollmentToken",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token; `Location` names it.", body = TokenView,
            headers(("Location" = String, description = "The token's URL."))),
        (status = 409, description = "The authority or the enrollment restrictions do not allow it (`authority_disallows_enrollment`, `android_enrollment_not_allowed`), or no enterprise is bound (`android_enterprise_not_bound`)."),
        (status = 422, description = "Google refused the request (`android_request_rejected`)."),
    )
)]
#[post("/api/v1/deviceManagement/androidEnrollmentTokens")]
async fn create_token(
    caller: Caller,
    adapter: web::Data<Arc<Adapter>>,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let body = body.into_inner();
    let seconds = body
        .duration_seconds
        .unwrap_or(adapter.config.enrollment_token_default_secs);
    if !(60..=MAX_TOKEN_SECS).contains(&seconds) {
        return Err(ApiError::invalid(
            "durationSeconds must be between 60 and 7776000 (90 days)",
        ));
    }
    if body.profile == Profile::Dedicated && body.user_id.is_some() {
        return Err(ApiError::invalid(
            "dedicated devices have no user: leave userId out",
        ));
    }
    let enterprise = adapter
        .store
        .read(move |c| store::enterprise_of_tenant(c, tenant))
        .await?
        .ok_or(Error::NotBound)?;
    check_restrictions(&adapter, tenant, body.profile).await?;
    let binding = adapter.binding(tenant).await?;
    let data = TokenData {
        tenant: Some(tenant.to_string()),
        profile: Some(body.profile.as_str().to_owned()),
        user: body.user_id.map(|u| u.to_string()),
    };
    let token = EnrollmentToken {
        policy_name: Some(enterprise.default_policy.clone()),
        duration: Some(format!("{seconds}s")),
        allow_personal_usage: Some(body.profile.personal_usage().to_owned()),
        one_time_only: body.one_time_only.then_some(true),
        additional_data: serde_json::to_string(&data).ok(),
        ..EnrollmentToken::default()
    };
    let created: EnrollmentToken = adapter
        .amapi
        .call_with_retries(
            &binding.account,
            &Request::post(
                format!("v1/{}/enrollmentTokens", enterprise.enterprise_name),
                &token,
            ),
        )
        .await
        .map_err(Error::from)?;
    let (Some(name), Some(value)) = (created.name.clone(), created.value.clone()) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "enrollmentTokens.create answered no name or value"
        )));
    };
    let now = adapter.now();
    let expires = created
        .expiration_timestamp
        .as_deref()
        .and_then(|t| crate::devices::parse_time(Some(t)))
        .unwrap_or(now + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(0)));
    let row = EnrollmentTokenRow {
        id: uuid::Uuid::now_v7().as_bytes().to_vec(),
        name,
        tenant_id: tenant,
        profile: body.profile.as_str().to_owned(),
        user_id: body.user_id,
        policy_name: enterprise.default_policy,
        expires_at: to_millis(expires),
        created_at: to_millis(now),
        revoked_at: None,
    };
    let saved = row.clone();
    let event = audit::with_detail(
        audit::event(
            &caller,
            now,
            "androidEnrollmentToken.created",
            "androidEnrollmentToken",
            uuid_of(&row.id),
        ),
        serde_json::json!({ "profile": row.profile, "expiresDateTime": expires }),
    );
    let outbox = adapter.outbox.clone();
    adapter
        .store
        .write(move |c| {
            store::insert_token(c, &saved)?;
            audit::record(&outbox, c, &event)
        })
        .await?;
    let mut view = TokenView::of(&row);
    view.enrollment_link = Some(format!(
        "https://enterprise.google.com/android/enroll?et={value}"
    ));
    view.value = Some(value);
    view.qr_code = created.qr_code;
    tracing::info!(tenant = %tenant, token = %view.name, profile = %view.profile, "Android enrollment token created");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{TOKENS_PATH}/{}", view.id)))
        .json(view))
}

/// The tenant's authority and restrictions must allow the profile.
async fn check_restrictions(
    adapter: &Adapter,
    tenant: TenantId,
    profile: Profile,
) -> Result<(), ApiError> {
    let policy: TenantPolicy = adapter
        .client
        .get(Service::Enrollment, &format!("/tenants/{tenant}/policy"))
        .await
        .map_err(Error::from)?;
    if policy.authority == MdmAuthority::None {
        return Err(ApiError::new(
            ErrorCode::AuthorityDisallowsEnrollment,
            "the tenant's MDM authority is none: no device may enrol",
        ));
    }
    let android = policy
        .platforms
        .iter()
        .find(|p| p.platform == Platform::Android);
    if android.is_some_and(|p| !p.allowed) {
        return Err(Error::NotAllowed("the enrollment restrictions block Android".into()).into());
    }
    if profile == Profile::PersonalWorkProfile && android.is_some_and(|p| !p.personal_allowed) {
        return Err(Error::NotAllowed(
            "the enrollment restrictions block personal Android devices".into(),
        )
        .into());
    }
    Ok(())
}

/// Lists the tenant's Android enrollment tokens.
#[utoipa::path(
    tag = "android",
    operation_id = "listAndroidEnrollmentTokens",
    responses((status = 200, description = "The tokens.", body = Page<TokenView>))
)]
#[get("/api/v1/deviceManagement/androidEnrollmentTokens")]
async fn list_tokens(
    caller: Caller,
    adapter: web::Data<Arc<Adapter>>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let rows = adapter
        .store
        .read(move |c| store::tokens_of_tenant(c, tenant, 1000))
        .await?;
    let value: Vec<TokenView> = rows.iter().map(TokenView::of).collect();
    Ok(HttpResponse::Ok().json(Page {
        value,
        next_link: None,
    }))
}

/// The id of a token row as the API shows it.
fn uuid_of(id: &[u8]) -> uuid::Uuid {
    uuid::Uuid::from_slice(id).unwrap_or_default()
}

fn token_id(id: &str) -> Result<Vec<u8>, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.as_bytes().to_vec())
        .map_err(|_| ApiError::not_found("enrollment token"))
}

/// Reads an Android enrollment token (without its value).
#[utoipa::path(
    tag = "android",
    operation_id = "getAndroidEnrollmentToken",
    params(("id" = Uuid, Path, description = "The enrollment token.")),
    responses((status = 200, description = "The token.", body = TokenView))
)]
#[get("/api/v1/deviceManagement/androidEnrollmentTokens/{id}")]
async fn get_token(
    caller: Caller,
    adapter: web::Data<Arc<Adapter>>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = token_id(&id)?;
    let row = adapter
        .store
        .read(move |c| store::token_by_id(c, tenant, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("enrollment token"))?;
    Ok(HttpResponse::Ok().json(TokenView::of(&row)))
}

/// Revokes an Android enrollment token at Google: no device can enrol with it any more.
#[utoipa::path(
    tag = "android",
    operation_id = "deleteAndroidEnrollmentToken",
    params(("id" = Uuid, Path, description = "The enrollment token.")),
    responses((status = 204, description = "The token is revoked."))
)]
#[delete("/api/v1/deviceManagement/androidEnrollmentTokens/{id}")]
async fn delete_token(
    caller: Caller,
    adapter: web::Data<Arc<Adapter>>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let id = token_id(&id)?;
    let lookup = id.clone();
    let row = adapter
        .store
        .read(move |c| store::token_by_id(c, tenant, &lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("enrollment token"))?;
    if row.revoked_at.is_none() {
        let binding = adapter.binding(tenant).await?;
        let deleted: Result<serde_json::Value, _> = adapter
            .amapi
            .call_with_retries(
                &binding.account,
                &Request::delete(format!("v1/{}", row.name)),
            )
            .await;
        match deleted {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Error::from(e).into()),
        }
        let now = adapter.now();
        let event = audit::event(
            &caller,
            now,
            "androidEnrollmentToken.revoked",
            "androidEnrollmentToken",
            uuid_of(&id),
        );
        let outbox = adapter.outbox.clone();
        adapter
            .store
            .write(move |c| {
                store::revoke_token(c, &id, to_millis(now))?;
                audit::record(&outbox, c, &event)
            })
            .await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

// ---- admin: the passcode a reset set ----------------------------------------------------

/// How long the temporary passcode of a reset stays readable.
const PASSCODE_VISIBLE_DAYS: i64 = 7;

/// The temporary passcode the device's last passcode reset set, for 7 days. Reading it
/// is audited.
#[utoipa::path(
    tag = "android",
    operation_id = "getAndroidResetPasscode",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 200, description = "The passcode.", body = ResetPasscode),
        (status = 404, description = "No readable passcode reset of this device (`not_found`)."),
    )
)]
#[get("/api/v1/deviceManagement/managedDevices/{id}/androidResetPasscode")]
async fn reset_passcode(
    caller: Caller,
    adapter: web::Data<Arc<Adapter>>,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadUnlockPin)?;
    let device = id.into_inner();
    let action = adapter
        .store
        .read(move |c| {
            let Some(row) = store::device(c, device)?.filter(|d| d.tenant_id == tenant) else {
                return Ok::<_, StoreError>(None);
            };
            store::last_passcode_reset(c, row.device_id)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("a passcode reset of this device"))?;
    let issued = from_millis(action.issued_at.unwrap_or(action.created_at));
    if adapter.now() - issued > chrono::Duration::days(PASSCODE_VISIBLE_DAYS)
        || action.phase == "failed"
        || action.phase == "notSupported"
    {
        return Err(ApiError::not_found("a passcode reset of this device"));
    }
    let sealed = action.sealed_passcode.unwrap_or_default();
    let passcode = adapter
        .secrets
        .open(PASSCODE_PURPOSE, &sealed)
        .map_err(ApiError::internal)?;
    // Reading a passcode is recorded like a change (never the passcode itself).
    let event = audit::on_device(
        audit::event(
            &caller,
            adapter.now(),
            "device.resetPasscodeRead",
            "device",
            device,
        ),
        device,
    );
    let outbox = adapter.outbox.clone();
    adapter
        .store
        .write(move |c| audit::record(&outbox, c, &event))
        .await?;
    Ok(HttpResponse::Ok().json(ResetPasscode {
        action_id: action.action_id,
        action_state: action.phase,
        passcode: String::from_utf8_lossy(&passcode).into_owned(),
        issued_date_time: issued,
    }))
}

/// The temporary passcode a reset set on an Android device.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ResetPasscode {
    action_id: ActionId,
    /// The reset's progress on the device.
    action_state: String,
    passcode: String,
    issued_date_time: DateTime<Utc>,
}
