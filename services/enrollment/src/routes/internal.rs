//! The internal API: token introspection, the enrollment gate, tenant policy, users, the
//! platform prerequisites for the adapters, and the CA.

use actix_web::{HttpResponse, web};
use base64::Engine;
use mdm_api::ErrorCode;
use mdm_api::internal::enrollment::{
    AuthenticateUser, BulkAuthenticate, BulkTenant, GateRequest, GateResponse, ResolveUser,
    RevokeRequest, SignRequest, UsersLookup, UsersLookupResponse,
};
use mdm_api::internal::{IntrospectRequest, IntrospectResponse};
use mdm_domain::TenantId;
use mdm_runtime::ApiError;
use serde_json::json;

use super::Shared;
use crate::error::Error;
use crate::{android, apple, ca, gate, policy, tokens, users, windows};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tokens/introspect").post(introspect))
        .service(web::resource("/gate").post(check_gate))
        .service(web::resource("/tenants/{tenantId}/policy").get(tenant_policy))
        .service(web::resource("/tenants/{tenantId}/apple/pushCertificate").get(push_certificate))
        .service(web::resource("/tenants/{tenantId}/android").get(android_binding))
        .service(web::resource("/tenants/{tenantId}/windows").get(windows_settings))
        .service(web::resource("/users/lookup").post(lookup_users))
        .service(web::resource("/users/resolve").post(resolve_user))
        .service(web::resource("/users/authenticate").post(authenticate_user))
        .service(web::resource("/windows/bulk/authenticate").post(bulk_authenticate))
        .service(web::resource("/ca/sign").post(sign))
        .service(web::resource("/ca/revoke").post(revoke))
        .service(web::resource("/ca/certificate").get(ca_certificate));
}

async fn introspect(
    state: Shared,
    body: web::Json<IntrospectRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let grant = state
        .store
        .read(move |c| tokens::introspect(c, &body.token, now))
        .await?;
    Ok(HttpResponse::Ok().json(IntrospectResponse {
        active: grant.is_some(),
        grant,
    }))
}

async fn check_gate(state: Shared, body: web::Json<GateRequest>) -> Result<HttpResponse, ApiError> {
    let decisions = gate::evaluate(
        &state.store,
        &state.client,
        body.into_inner().checks,
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(GateResponse { decisions }))
}

async fn tenant_policy(
    state: Shared,
    tenant: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, now) = (tenant.into_inner(), state.clock.now());
    let policy = state
        .store
        .read(move |c| policy::tenant_policy(c, tenant, now))
        .await?;
    Ok(HttpResponse::Ok().json(policy))
}

async fn push_certificate(
    state: Shared,
    tenant: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let row = state
        .store
        .read(move |c| apple::current(c, tenant))
        .await?
        .ok_or(Error::NotFound("push certificate"))?;
    Ok(HttpResponse::Ok().json(apple::with_key(&row, &state.secrets)?))
}

async fn android_binding(
    state: Shared,
    tenant: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let row = state
        .store
        .read(move |c| android::current(c, tenant))
        .await?;
    let binding = row
        .as_ref()
        .map(|row| android::binding(row, &state.secrets))
        .transpose()?
        .flatten()
        .ok_or(Error::NotFound("Android Enterprise binding"))?;
    Ok(HttpResponse::Ok().json(binding))
}

async fn windows_settings(
    state: Shared,
    tenant: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.into_inner();
    let settings = state
        .store
        .read(move |c| {
            crate::tenants::find(c, tenant)?.ok_or(Error::NotFound("tenant"))?;
            windows::settings(c, tenant)
        })
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

async fn lookup_users(
    state: Shared,
    body: web::Json<UsersLookup>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let found = state
        .store
        .read(move |c| users::lookup(c, request.tenant_id, &request.user_ids))
        .await?;
    Ok(HttpResponse::Ok().json(UsersLookupResponse { users: found }))
}

async fn resolve_user(
    state: Shared,
    body: web::Json<ResolveUser>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .store
        .read(move |c| users::resolve(c, &body.user_principal_name))
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

async fn authenticate_user(
    state: Shared,
    body: web::Json<AuthenticateUser>,
) -> Result<HttpResponse, ApiError> {
    let shared = state.clone();
    // Deriving the password hash takes a while: off the executor.
    let user = web::block(move || {
        shared
            .store
            .read_blocking(|c| users::authenticate(c, &body.user_principal_name, &body.password))
    })
    .await
    .map_err(ApiError::internal)??;
    let user = user.ok_or_else(|| ApiError::bare(ErrorCode::Unauthorized))?;
    Ok(HttpResponse::Ok().json(user))
}

async fn bulk_authenticate(
    state: Shared,
    body: web::Json<BulkAuthenticate>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let tenant = state
        .store
        .read(move |c| {
            windows::bulk_tenant(
                c,
                request.secret.as_deref(),
                request.certificate_thumbprint.as_deref(),
            )
        })
        .await?
        .ok_or_else(|| ApiError::bare(ErrorCode::Unauthorized))?;
    Ok(HttpResponse::Ok().json(BulkTenant { tenant_id: tenant }))
}

async fn sign(state: Shared, body: web::Json<SignRequest>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let authority = state.ca.get(&state.store, &state.secrets, now).await?;
    let request = body.into_inner();
    let (row, signed) = ca::sign(
        &authority,
        &request,
        state.config.device_certificate_days,
        now,
    )?;
    state.store.write(move |c| ca::record(c, &row)).await?;
    tracing::info!(serial = %signed.serial, device = %request.device_id, "device certificate issued");
    Ok(HttpResponse::Ok().json(signed))
}

async fn revoke(state: Shared, body: web::Json<RevokeRequest>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let row = state
        .store
        .write(move |c| ca::revoke(c, &body.serial, &body.reason, now))
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "serial": row.serial, "revoked": row.revoked_at.is_some() })))
}

async fn ca_certificate(state: Shared) -> Result<HttpResponse, ApiError> {
    let authority = state
        .ca
        .get(&state.store, &state.secrets, state.clock.now())
        .await?;
    let certificate = base64::engine::general_purpose::STANDARD.encode(authority.certificate_der());
    Ok(HttpResponse::Ok().json(json!({ "certificate": certificate })))
}
