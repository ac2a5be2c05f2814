//! Tenants and API tokens.

use actix_web::{HttpResponse, delete, get, post, web};
use mdm_api::public::{CreateTenant, CreateToken, CreatedToken, Page, Tenant, Token};
use mdm_domain::{Permission, Role, TenantId, TokenId};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use mdm_store::Store;

use super::Shared;
use crate::error::Error;
use crate::tokens::Issuer;
use crate::{tenants, tokens};

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(create_tenant)
        .service(list_tenants)
        .service(get_tenant)
        .service(create_token)
        .service(list_tokens)
        .service(get_token)
        .service(revoke_token);
}

/// Creates a tenant (operators).
#[utoipa::path(
    tag = "tenants",
    operation_id = "createTenant",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant; `Location` names it.", body = Tenant,
            headers(("Location" = String, description = "The tenant's URL."))),
        (status = 409, description = "A tenant with this name exists (`tenant_name_taken`)."),
    )
)]
#[post("/api/v1/tenants")]
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

/// Lists the tenants: all of them for operators, the caller's own for the others.
#[utoipa::path(
    tag = "tenants",
    operation_id = "listTenants",
    responses((status = 200, description = "The tenants.", body = Page<Tenant>))
)]
#[get("/api/v1/tenants")]
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

/// Reads a tenant.
#[utoipa::path(
    tag = "tenants",
    operation_id = "getTenant",
    params(("id" = TenantId, Path, description = "The tenant.")),
    responses((status = 200, description = "The tenant.", body = Tenant))
)]
#[get("/api/v1/tenants/{id}")]
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

/// Creates an API token; its secret is in this answer only.
///
/// Operators grant any role (naming the tenant for the tenant roles); admins grant the
/// roles of their tenant. A `user` token acts for one directory user (`userId`).
#[utoipa::path(
    tag = "tokens",
    operation_id = "createToken",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token and its secret; `Location` names it.",
            body = CreatedToken,
            headers(("Location" = String, description = "The token's URL."))),
        (status = 403, description = "The caller may not grant this role (`role_not_grantable`)."),
        (status = 404, description = "No such tenant or user (`not_found`)."),
    )
)]
#[post("/api/v1/tokens")]
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

/// Lists the tokens the caller manages, without their secrets.
#[utoipa::path(
    tag = "tokens",
    operation_id = "listTokens",
    responses((status = 200, description = "The tokens.", body = Page<Token>))
)]
#[get("/api/v1/tokens")]
async fn list_tokens(caller: Caller, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTokens)?;
    let scope = token_scope(&caller);
    let value = store.read(move |c| tokens::list(c, scope)).await?;
    Ok(HttpResponse::Ok().json(Page {
        value,
        next_link: None,
    }))
}

/// Reads a token, without its secret.
#[utoipa::path(
    tag = "tokens",
    operation_id = "getToken",
    params(("id" = TokenId, Path, description = "The token.")),
    responses((status = 200, description = "The token.", body = Token))
)]
#[get("/api/v1/tokens/{id}")]
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

/// Revokes a token: it stops working at once.
#[utoipa::path(
    tag = "tokens",
    operation_id = "revokeToken",
    params(("id" = TokenId, Path, description = "The token.")),
    responses((status = 200, description = "The revoked token.", body = Token))
)]
#[delete("/api/v1/tokens/{id}")]
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
