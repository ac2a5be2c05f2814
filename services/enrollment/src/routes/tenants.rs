//! Tenants and API tokens.

use actix_web::{HttpResponse, web};
use mdm_api::public::{CreateTenant, CreateToken, Page};
use mdm_domain::{Permission, Role, TenantId, TokenId};
use mdm_runtime::{ApiError, Caller, audit};
use mdm_store::Store;

use super::Shared;
use crate::error::Error;
use crate::tokens::Issuer;
use crate::{tenants, tokens};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/tenants")
            .route(web::post().to(create_tenant))
            .route(web::get().to(list_tenants)),
    )
    .service(web::resource("/api/v1/tenants/{id}").get(get_tenant))
    .service(
        web::resource("/api/v1/tokens")
            .route(web::post().to(create_token))
            .route(web::get().to(list_tokens)),
    )
    .service(
        web::resource("/api/v1/tokens/{id}")
            .route(web::get().to(get_token))
            .route(web::delete().to(revoke_token)),
    );
}

async fn create_tenant(
    caller: Caller,
    state: Shared,
    body: web::Json<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTenants)?;
    let (now, shared) = (state.clock.now(), state.clone());
    let tenant = state
        .store
        .write(move |c| {
            let tenant = tenants::create(c, &body.display_name, now)?;
            let mut event = audit::event(&caller, now, "tenant.created", "tenant", tenant.id);
            event.tenant_id = Some(tenant.id);
            shared.audit(
                c,
                &audit::with_detail(
                    event,
                    serde_json::json!({ "displayName": tenant.display_name }),
                ),
            )?;
            Ok::<_, Error>(tenant)
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/tenants/{}", tenant.id)))
        .json(tenant))
}

async fn list_tenants(caller: Caller, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadTenant)?;
    let visible = visible_tenant(&caller);
    let value = store
        .read(move |c| match visible {
            None => tenants::list(c),
            Some(own) => tenants::get(c, own).map(|t| vec![t]),
        })
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        value,
        next_link: None,
    }))
}

async fn get_tenant(
    caller: Caller,
    store: web::Data<Store>,
    id: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadTenant)?;
    let id = id.into_inner();
    if visible_tenant(&caller).is_some_and(|own| own != id) {
        return Err(Error::NotFound("tenant").into());
    }
    let tenant = store.read(move |c| tenants::get(c, id)).await?;
    Ok(HttpResponse::Ok().json(tenant))
}

async fn create_token(
    caller: Caller,
    state: Shared,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTokens)?;
    let issuer = Issuer::Caller {
        role: caller.role,
        tenant: caller.tenant_opt(),
    };
    let (now, shared, by) = (state.clock.now(), state.clone(), caller.clone());
    let created = state
        .store
        .write(move |c| {
            let created = tokens::create(c, issuer, body.into_inner(), now)?;
            let mut event = audit::event(&by, now, "token.created", "token", created.token.id);
            event.tenant_id = created.token.tenant_id;
            let detail = serde_json::json!({ "role": created.token.role });
            shared.audit(c, &audit::with_detail(event, detail))?;
            Ok::<_, Error>(created)
        })
        .await?;
    tracing::info!(token = %created.token.id, role = %created.token.role, by = %caller.token_id, "token created");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/tokens/{}", created.token.id)))
        .json(created))
}

async fn list_tokens(caller: Caller, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTokens)?;
    let scope = token_scope(&caller);
    let value = store.read(move |c| tokens::list(c, scope)).await?;
    Ok(HttpResponse::Ok().json(Page {
        value,
        next_link: None,
    }))
}

async fn get_token(
    caller: Caller,
    store: web::Data<Store>,
    id: web::Path<TokenId>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTokens)?;
    let (scope, id) = (token_scope(&caller), id.into_inner());
    let token = store.read(move |c| tokens::get(c, scope, id)).await?;
    Ok(HttpResponse::Ok().json(token))
}

async fn revoke_token(
    caller: Caller,
    state: Shared,
    id: web::Path<TokenId>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTokens)?;
    let (scope, id, now) = (token_scope(&caller), id.into_inner(), state.clock.now());
    let (shared, by) = (state.clone(), caller.clone());
    let token = state
        .store
        .write(move |c| {
            let token = tokens::revoke(c, scope, id, now)?;
            let mut event = audit::event(&by, now, "token.revoked", "token", id);
            event.tenant_id = token.tenant_id;
            shared.audit(c, &event)?;
            Ok::<_, Error>(token)
        })
        .await?;
    tracing::info!(token = %token.id, by = %caller.token_id, "token revoked");
    Ok(HttpResponse::Ok().json(token))
}

/// The one tenant a tenant-scoped caller sees; `None` for operators, who see all.
fn visible_tenant(caller: &Caller) -> Option<TenantId> {
    if caller.role == Role::Operator {
        None
    } else {
        caller.tenant_opt()
    }
}

/// Tokens an operator sees: all, or those of the tenant named with `X-Mdm-Tenant`.
fn token_scope(caller: &Caller) -> Option<TenantId> {
    caller.tenant_opt()
}
