//! Managed devices: the list with its filters, one device, delete; a user's devices and
//! the caller's own.

use actix_web::{HttpResponse, delete, get, web};
use chrono::{DateTime, SecondsFormat, Utc};
use mdm_api::Service;
use mdm_api::internal::dispatch::DeviceActionsSummary;
use mdm_api::internal::enrollment::{UsersLookup, UsersLookupResponse};
use mdm_api::internal::inventory::DeviceFilter;
use mdm_api::public::{ManagedDevice, Page};
use mdm_domain::{DeviceId, ManagementState, Ownership, Permission, Platform, TenantId, UserId};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{QueryString, Shared, State, page_size, paged};
use crate::devices::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::error::Error;
use crate::removal;

const DEVICES: &str = "/api/v1/deviceManagement/managedDevices";
const MY_DEVICES: &str = "/api/v1/me/managedDevices";

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(list)
        .service(get)
        .service(delete)
        .service(user_devices)
        .service(my_devices)
        .service(my_device);
}

/// The list's query: paging and the filters of the API contract.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Devices per page.
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<DeviceId>,
    operating_system: Option<Platform>,
    /// `company` or `personal`.
    owner_type: Option<Ownership>,
    management_state: Option<ManagementState>,
    user_principal_name: Option<String>,
    /// Only devices whose last check-in was before this time.
    last_sync_before: Option<DateTime<Utc>>,
}

impl ListQuery {
    fn filter(&self, user: Option<UserId>) -> DeviceFilter {
        DeviceFilter {
            operating_system: self.operating_system,
            owner_type: self.owner_type,
            management_state: self.management_state,
            user_principal_name: self.user_principal_name.clone(),
            user_id: user,
            last_sync_before: self.last_sync_before,
        }
    }

    /// The link to the page after `last`, carrying the filters.
    fn next_link(&self, path: &str, top: i64, last: DeviceId) -> String {
        let mut query = QueryString::default();
        query
            .push("top", top)
            .push("skipToken", last)
            .push_opt("operatingSystem", self.operating_system)
            .push_opt("ownerType", self.owner_type)
            .push_opt("managementState", self.management_state)
            .push_opt("userPrincipalName", self.user_principal_name.as_deref())
            .push_opt(
                "lastSyncBefore",
                self.last_sync_before
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        query.finish(path)
    }
}

/// One page of the tenant's devices matching the query.
async fn page(
    state: &State,
    tenant: TenantId,
    query: &ListQuery,
    user: Option<UserId>,
    path: &str,
) -> Result<HttpResponse, ApiError> {
    let top = page_size(query.top, DEFAULT_PAGE, MAX_PAGE);
    let (filter, after) = (query.filter(user), query.skip_token);
    let rows = state
        .store
        .read(move |c| devices::list(c, tenant, &filter, after, top + 1))
        .await?;
    let page = paged(rows, top, |last| query.next_link(path, top, last.id));
    let page = mdm_api::public::Page {
        value: page
            .value
            .into_iter()
            .map(devices::to_wire)
            .collect::<Vec<_>>(),
        next_link: page.next_link,
    };
    Ok(HttpResponse::Ok().json(page))
}

/// Lists the tenant's managed devices, a page at a time, with the filters given.
#[utoipa::path(
    tag = "managedDevices",
    operation_id = "listManagedDevices",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of devices.", body = Page<ManagedDevice>),
    )
)]
#[get("/api/v1/deviceManagement/managedDevices")]
async fn list(
    caller: Caller,
    state: Shared,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    page(&state, tenant, &query, None, DEVICES).await
}

/// `GET /api/v1/users/{id}/managedDevices`: 404 when the tenant has no such user.
/// Lists a user's managed devices.
#[utoipa::path(
    tag = "users",
    operation_id = "listUserManagedDevices",
    params(("id" = UserId, Path, description = "The user."), ListQuery),
    responses(
        (status = 200, description = "A page of the user's devices.", body = Page<ManagedDevice>),
    )
)]
#[get("/api/v1/users/{id:[0-9a-fA-F-]+}/managedDevices")]
async fn user_devices(
    caller: Caller,
    state: Shared,
    user: web::Path<UserId>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let user = user.into_inner();
    let lookup = UsersLookup {
        tenant_id: tenant,
        user_ids: vec![user],
    };
    let found: UsersLookupResponse = state
        .client
        .post(Service::Enrollment, "/users/lookup", &lookup)
        .await
        .map_err(Error::from)?;
    if !found.users.iter().any(|u| u.user_id == user) {
        return Err(ApiError::not_found("user"));
    }
    let path = format!("/api/v1/users/{user}/managedDevices");
    page(&state, tenant, &query, Some(user), &path).await
}

/// `GET /api/v1/me/managedDevices`: a user's own devices (self-service).
#[utoipa::path(
    tag = "selfService",
    operation_id = "listMyManagedDevices",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the caller's devices.", body = Page<ManagedDevice>),
        (status = 403, description = "The token acts for no user (`forbidden`)."),
    )
)]
#[get("/api/v1/me/managedDevices")]
async fn my_devices(
    caller: Caller,
    state: Shared,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, user) = self_service(&caller)?;
    page(&state, tenant, &query, Some(user), MY_DEVICES).await
}

/// Reads one of the caller's own devices.
#[utoipa::path(
    tag = "selfService",
    operation_id = "getMyManagedDevice",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 200, description = "The device.", body = ManagedDevice),
        (status = 403, description = "The token acts for no user (`forbidden`)."),
    )
)]
#[get("/api/v1/me/managedDevices/{id:[0-9a-fA-F-]+}")]
async fn my_device(
    caller: Caller,
    state: Shared,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, user) = self_service(&caller)?;
    let device = view(&state, &caller, tenant, id.into_inner(), Some(user)).await?;
    Ok(HttpResponse::Ok().json(device))
}

fn self_service(caller: &Caller) -> Result<(TenantId, UserId), ApiError> {
    let tenant = caller.tenant_with(Permission::SelfService)?;
    let user = caller
        .user_id
        .ok_or_else(|| ApiError::forbidden("the token acts for no user"))?;
    Ok((tenant, user))
}

/// Reads a managed device.
#[utoipa::path(
    tag = "managedDevices",
    operation_id = "getManagedDevice",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 200, description = "The device with its actions, and a Mac's unlock PIN for roles that may see it.", body = ManagedDevice),
    )
)]
#[get("/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}")]
async fn get(
    caller: Caller,
    state: Shared,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let device = view(&state, &caller, tenant, id.into_inner(), None).await?;
    Ok(HttpResponse::Ok().json(device))
}

/// One device with its actions, and its unlock PIN for roles that may see it. The actions
/// come from dispatch; when dispatch does not answer in time the device is answered
/// without them rather than not at all.
async fn view(
    state: &State,
    caller: &Caller,
    tenant: TenantId,
    id: DeviceId,
    only_of: Option<UserId>,
) -> Result<ManagedDevice, ApiError> {
    let read = state.store.read(move |c| devices::find(c, tenant, id));
    let (row, summary) = tokio::join!(read, summary(state, tenant, id));
    let row = row?
        .filter(|row| only_of.is_none_or(|user| row.user_id == Some(user)))
        .ok_or_else(|| ApiError::not_found("managed device"))?;
    let mut device = devices::to_wire(row);
    if let Some(summary) = summary {
        device.device_action_results = Some(summary.device_action_results);
        if caller.role.can(Permission::ReadUnlockPin) {
            device.lock_pin = summary.lock_pin;
        }
    }
    Ok(device)
}

async fn summary(state: &State, tenant: TenantId, id: DeviceId) -> Option<DeviceActionsSummary> {
    let path = format!("/devices/{id}/summary?tenantId={tenant}");
    let call = state
        .client
        .get::<DeviceActionsSummary>(Service::Dispatch, &path);
    match tokio::time::timeout(state.config.dispatch_summary_timeout(), call).await {
        Ok(Ok(summary)) => Some(summary),
        Ok(Err(error)) => {
            tracing::warn!(device = %id, %error, "no action summary from dispatch: the device is answered without it");
            None
        }
        Err(_) => {
            tracing::warn!(device = %id, "dispatch's action summary timed out: the device is answered without it");
            None
        }
    }
}

/// `DELETE .../managedDevices/{id}`: the device goes to `deletePending` and dispatch
/// issues the retire that removes company data at its next check-in; the record goes
/// when that is done (or when the clean-up window passes without a check-in).
#[utoipa::path(
    tag = "managedDevices",
    operation_id = "deleteManagedDevice",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 202, description = "The device, `deletePending`.", body = ManagedDevice),
        (status = 409, description = "The authority does not allow it (`authority_disallows_action`, `hybrid_authority_read_only`), or the device is already being removed (`device_removal_pending`)."),
        (status = 422, description = "The device cannot be removed this way (`action_not_supported`)."),
    )
)]
#[delete("/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}")]
async fn delete(
    caller: Caller,
    state: Shared,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::RemoveDevices)?;
    let id = id.into_inner();
    // 404 for another tenant's device before anything else is asked.
    state
        .store
        .read(move |c| devices::get(c, tenant, id))
        .await?;
    let authority = state
        .policies
        .get(tenant)
        .await
        .map_err(Error::from)?
        .authority;
    let (now, shared, who) = (state.clock.now(), state.clone(), caller.clone());
    let outcome = state
        .store
        .write(move |c| {
            removal::request_delete(c, &shared.outbox, &who, authority, tenant, id, now)
        })
        .await;
    match outcome {
        Ok(row) => Ok(HttpResponse::Accepted().json(devices::to_wire(row))),
        Err(Error::Capability(refusal)) => {
            let event = audit::refused(
                audit::on_device(
                    audit::event(&caller, now, "device.delete", "managedDevice", id),
                    id,
                ),
                refusal.reason.as_str(),
            );
            let shared = state.clone();
            state.store.write(move |c| shared.audit(c, &event)).await?;
            Err(Error::Capability(refusal).into())
        }
        Err(error) => Err(error.into()),
    }
}
