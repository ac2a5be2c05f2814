//! Directory users and licences.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use mdm_api::ErrorCode;
use mdm_api::Service;
use mdm_api::internal::inventory::{
    DeviceFilter, DevicesLookup, DevicesLookupResponse, DevicesSelect, DevicesSelectResponse,
};
use mdm_api::public::{CreateUser, Page, UpdateUser, User};
use mdm_domain::{Permission, TenantId, UserId};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::Shared;
use crate::error::Error;
use crate::users;

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(create)
        .service(list)
        .service(get)
        .service(update)
        .service(delete)
        .service(assign_licence)
        .service(remove_licence);
}

/// Creates a directory user, optionally licensed and with an enrollment password (the
/// Windows sign-in during enrollment).
#[utoipa::path(
    tag = "users",
    operation_id = "createUser",
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user; `Location` names it.", body = User,
            headers(("Location" = String, description = "The user's URL."))),
        (status = 409, description = "A user with this principal name exists (`user_exists`)."),
    )
)]
#[post("/api/v1/users")]
async fn create(
    caller: Caller,
    state: Shared,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageUsers)?;
    let (now, shared, iterations) = (
        state.clock.now(),
        state.clone(),
        state.config.password_hash_iterations,
    );
    let request = body.into_inner();
    let user = web::block(move || {
        // Hashing a password takes a while: off the executor, outside the transaction.
        shared.store.write_blocking(|c| {
            let user = users::create(c, tenant, request, iterations, now)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "user.created", "user", user.id),
                json!({ "userPrincipalName": user.user_principal_name, "licensed": user.licensed }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(user)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/users/{}", user.id)))
        .json(user))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Users per page (1 to 1000; 100 when omitted).
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<UserId>,
}

/// Lists the tenant's users, a page at a time.
#[utoipa::path(
    tag = "users",
    operation_id = "listUsers",
    params(ListQuery),
    responses((status = 200, description = "A page of users.", body = Page<User>))
)]
#[get("/api/v1/users")]
async fn list(
    caller: Caller,
    state: Shared,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let top = query.top.unwrap_or(100).clamp(1, users::MAX_PAGE);
    let after = query.skip_token;
    let value = state
        .store
        .read(move |c| users::list(c, tenant, after, top))
        .await?;
    let next_link = (value.len() as i64 == top)
        .then(|| {
            value
                .last()
                .map(|u| format!("/api/v1/users?top={top}&skipToken={}", u.id))
        })
        .flatten();
    Ok(HttpResponse::Ok().json(Page { value, next_link }))
}

/// Reads a user.
#[utoipa::path(
    tag = "users",
    operation_id = "getUser",
    params(("id" = UserId, Path, description = "The user.")),
    responses((status = 200, description = "The user.", body = User))
)]
#[get("/api/v1/users/{id}")]
async fn get(
    caller: Caller,
    state: Shared,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = id.into_inner();
    let user = state.store.read(move |c| users::get(c, tenant, id)).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Changes a user's display name or enrollment password.
#[utoipa::path(
    tag = "users",
    operation_id = "updateUser",
    params(("id" = UserId, Path, description = "The user.")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user now.", body = User))
)]
#[patch("/api/v1/users/{id}")]
async fn update(
    caller: Caller,
    state: Shared,
    id: web::Path<UserId>,
    body: web::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageUsers)?;
    let (id, now, shared, iterations) = (
        id.into_inner(),
        state.clock.now(),
        state.clone(),
        state.config.password_hash_iterations,
    );
    let request = body.into_inner();
    let password_changed = request.password.is_some();
    let user = web::block(move || {
        shared.store.write_blocking(|c| {
            let user = users::update(c, tenant, id, request, iterations)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "user.updated", "user", id),
                json!({ "passwordChanged": password_changed }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(user)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(user))
}

/// Gives the user a licence: their devices may enrol.
#[utoipa::path(
    tag = "users",
    operation_id = "assignUserLicense",
    params(("id" = UserId, Path, description = "The user.")),
    responses((status = 200, description = "The user now.", body = User))
)]
#[post("/api/v1/users/{id}/assignLicense")]
async fn assign_licence(
    caller: Caller,
    state: Shared,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageUsers)?;
    let (id, now, shared) = (id.into_inner(), state.clock.now(), state.clone());
    let user = state
        .store
        .write(move |c| {
            let (user, changed) = users::assign_licence(c, tenant, id, now)?;
            if changed {
                shared.audit(
                    c,
                    &audit::event(&caller, now, "user.licenseAssigned", "user", id),
                )?;
            }
            Ok::<_, Error>(user)
        })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Takes the user's licence away: all their devices are unenrolled, and no remote action
/// can reach them any more.
#[utoipa::path(
    tag = "users",
    operation_id = "removeUserLicense",
    params(("id" = UserId, Path, description = "The user.")),
    responses((status = 200, description = "The user now.", body = User))
)]
#[post("/api/v1/users/{id}/removeLicense")]
async fn remove_licence(
    caller: Caller,
    state: Shared,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageUsers)?;
    let (id, now, shared) = (id.into_inner(), state.clock.now(), state.clone());
    let user = state
        .store
        .write(move |c| {
            let (user, changed) = users::remove_licence(c, &shared.outbox, tenant, id, now)?;
            if changed {
                shared.audit(
                    c,
                    &audit::event(&caller, now, "user.licenseRemoved", "user", id),
                )?;
            }
            Ok::<_, Error>(user)
        })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete although the user still has managed devices.
    #[serde(default)]
    force: bool,
}

/// Refused while the user has managed devices, unless forced: after a user is deleted,
/// no factory reset or retire can reach their devices any more.
#[utoipa::path(
    tag = "users",
    operation_id = "deleteUser",
    params(("id" = UserId, Path, description = "The user."), DeleteQuery),
    responses(
        (status = 204, description = "The user is deleted."),
        (status = 409, description = "The user still has managed devices (`user_has_managed_devices`); the answer lists them in `devices`."),
    )
)]
#[delete("/api/v1/users/{id}")]
async fn delete(
    caller: Caller,
    state: Shared,
    id: web::Path<UserId>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageUsers)?;
    let id = id.into_inner();
    let user = state.store.read(move |c| users::get(c, tenant, id)).await?;
    let managed = managed_devices(&state, tenant, id).await?;
    if !managed.is_empty() && !query.force {
        return Err(ApiError::new(
            ErrorCode::UserHasManagedDevices,
            format!(
                "{} still has {} managed devices: wipe or retire them first, or delete with ?force=true",
                user.user_principal_name,
                managed.len()
            ),
        )
        .with("devices", &managed));
    }
    let (now, shared) = (state.clock.now(), state.clone());
    let forced_past = managed.len();
    state
        .store
        .write(move |c| {
            users::delete(c, tenant, id)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "user.deleted", "user", id),
                json!({ "userPrincipalName": user.user_principal_name, "managedDevicesLeft": forced_past }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The user's devices that are still managed, as inventory knows them.
async fn managed_devices(
    state: &Shared,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let select = DevicesSelect {
        tenant_id: tenant,
        filter: DeviceFilter {
            user_id: Some(user),
            ..DeviceFilter::default()
        },
    };
    let found: DevicesSelectResponse = state
        .client
        .post(Service::Inventory, "/devices/select", &select)
        .await?;
    if found.device_ids.is_empty() {
        return Ok(Vec::new());
    }
    let lookup = DevicesLookup {
        tenant_id: tenant,
        device_ids: found.device_ids,
    };
    let records: DevicesLookupResponse = state
        .client
        .post(Service::Inventory, "/devices/lookup", &lookup)
        .await?;
    Ok(records
        .devices
        .into_iter()
        .filter(|d| d.management_state.is_managed())
        .map(|d| {
            json!({
                "id": d.id,
                "deviceName": d.device_name,
                "operatingSystem": d.platform,
                "managementState": d.management_state,
            })
        })
        .collect())
}
