//! Device groups and their members.

use actix_web::{HttpResponse, delete, get, post, web};
use mdm_api::public::{CreateDeviceGroup, DeviceGroup, ManagedDevice, Page};
use mdm_domain::{DeviceId, Permission};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{QueryString, Shared, page_size, paged};
use crate::devices::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::error::Error;
use crate::groups;

const GROUPS: &str = "/api/v1/groups";

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(list)
        .service(create)
        .service(get)
        .service(delete)
        .service(members)
        .service(add_member)
        .service(remove_member);
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Groups per page.
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<Uuid>,
}

/// Lists the device groups.
#[utoipa::path(
    tag = "groups",
    operation_id = "listGroups",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of groups.", body = Page<DeviceGroup>),
    )
)]
#[get("/api/v1/groups")]
async fn list(
    caller: Caller,
    state: Shared,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let top = page_size(query.top, DEFAULT_PAGE, MAX_PAGE);
    let after = query.skip_token;
    let rows = state
        .store
        .read(move |c| groups::list(c, tenant, after, top + 1))
        .await?;
    let page = paged(rows, top, |last| {
        let mut next = QueryString::default();
        next.push("top", top).push("skipToken", last.id);
        next.finish(GROUPS)
    });
    Ok(HttpResponse::Ok().json(page))
}

/// Creates a device group.
#[utoipa::path(
    tag = "groups",
    operation_id = "createGroup",
    request_body = CreateDeviceGroup,
    responses(
        (status = 201, description = "The group; `Location` names it.", body = DeviceGroup, headers(("Location" = String, description = "The group's URL."))),
    )
)]
#[post("/api/v1/groups")]
async fn create(
    caller: Caller,
    state: Shared,
    body: web::Json<CreateDeviceGroup>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let (now, shared, request) = (state.clock.now(), state.clone(), body.into_inner());
    let group = state
        .store
        .write(move |c| {
            let group = groups::create(c, tenant, &request.display_name, now)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "group.created", "group", group.id),
                json!({ "displayName": group.display_name }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(group)
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{GROUPS}/{}", group.id)))
        .json(group))
}

/// Reads a device group.
#[utoipa::path(
    tag = "groups",
    operation_id = "getGroup",
    params(("id" = Uuid, Path, description = "The group.")),
    responses(
        (status = 200, description = "The group.", body = DeviceGroup),
    )
)]
#[get("/api/v1/groups/{id:[0-9a-fA-F-]+}")]
async fn get(caller: Caller, state: Shared, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = id.into_inner();
    let group = state
        .store
        .read(move |c| groups::get(c, tenant, id))
        .await?;
    Ok(HttpResponse::Ok().json(group))
}

/// Deletes a device group.
#[utoipa::path(
    tag = "groups",
    operation_id = "deleteGroup",
    params(("id" = Uuid, Path, description = "The group.")),
    responses(
        (status = 204, description = "The group is deleted; its devices stay."),
    )
)]
#[delete("/api/v1/groups/{id:[0-9a-fA-F-]+}")]
async fn delete(
    caller: Caller,
    state: Shared,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let (id, now, shared) = (id.into_inner(), state.clock.now(), state.clone());
    state
        .store
        .write(move |c| {
            let row = groups::delete(c, tenant, id)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "group.deleted", "group", id),
                json!({ "displayName": row.display_name }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MembersQuery {
    /// Devices per page.
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<DeviceId>,
}

/// The group's member devices.
#[utoipa::path(
    tag = "groups",
    operation_id = "listGroupMembers",
    params(("id" = Uuid, Path, description = "The group."), MembersQuery),
    responses(
        (status = 200, description = "A page of member devices.", body = Page<ManagedDevice>),
    )
)]
#[get("/api/v1/groups/{id:[0-9a-fA-F-]+}/members")]
async fn members(
    caller: Caller,
    state: Shared,
    id: web::Path<Uuid>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = id.into_inner();
    let top = page_size(query.top, DEFAULT_PAGE, MAX_PAGE);
    let after = query.skip_token;
    let rows = state
        .store
        .read(move |c| groups::members(c, tenant, id, after, top + 1))
        .await?;
    let page = paged(rows, top, |last| {
        let mut next = QueryString::default();
        next.push("top", top).push("skipToken", last.id);
        next.finish(&format!("{GROUPS}/{id}/members"))
    });
    Ok(HttpResponse::Ok().json(Page {
        value: page
            .value
            .into_iter()
            .map(devices::to_wire)
            .collect::<Vec<_>>(),
        next_link: page.next_link,
    }))
}

/// Adds a device to a group.
#[utoipa::path(
    tag = "groups",
    operation_id = "addGroupMember",
    params(("id" = Uuid, Path, description = "The group."), ("deviceId" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 204, description = "The device is a member."),
    )
)]
#[post("/api/v1/groups/{id:[0-9a-fA-F-]+}/members/{deviceId:[0-9a-fA-F-]+}")]
async fn add_member(
    caller: Caller,
    state: Shared,
    path: web::Path<(Uuid, DeviceId)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let ((group, device), now, shared) = (path.into_inner(), state.clock.now(), state.clone());
    state
        .store
        .write(move |c| {
            groups::add_member(c, tenant, group, device, now)?;
            let event = audit::on_device(
                audit::event(&caller, now, "group.memberAdded", "group", group),
                device,
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes a device from a group.
#[utoipa::path(
    tag = "groups",
    operation_id = "removeGroupMember",
    params(("id" = Uuid, Path, description = "The group."), ("deviceId" = DeviceId, Path, description = "The managed device.")),
    responses(
        (status = 204, description = "The device is no longer a member."),
    )
)]
#[delete("/api/v1/groups/{id:[0-9a-fA-F-]+}/members/{deviceId:[0-9a-fA-F-]+}")]
async fn remove_member(
    caller: Caller,
    state: Shared,
    path: web::Path<(Uuid, DeviceId)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let ((group, device), now, shared) = (path.into_inner(), state.clock.now(), state.clone());
    state
        .store
        .write(move |c| {
            groups::remove_member(c, tenant, group, device)?;
            let event = audit::on_device(
                audit::event(&caller, now, "group.memberRemoved", "group", group),
                device,
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
