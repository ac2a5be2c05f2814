//! Device groups and their members.

use actix_web::{HttpResponse, web};
use mdm_api::public::{CreateDeviceGroup, Page};
use mdm_domain::{DeviceId, Permission};
use mdm_runtime::{ApiError, Caller, audit};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{QueryString, Shared, UUID, page_size, paged, with_id};
use crate::devices::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::error::Error;
use crate::groups;

const GROUPS: &str = "/api/v1/groups";

pub fn routes(cfg: &mut web::ServiceConfig) {
    let member = format!("{}/{{deviceId:{UUID}}}", with_id(GROUPS, "id", "/members"));
    cfg.service(web::resource(GROUPS).get(list).post(create))
        .service(
            web::resource(with_id(GROUPS, "id", ""))
                .get(get)
                .delete(delete),
        )
        .service(web::resource(with_id(GROUPS, "id", "/members")).get(members))
        .service(web::resource(member).post(add_member).delete(remove_member));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageQuery {
    top: Option<i64>,
    skip_token: Option<Uuid>,
}

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

async fn get(caller: Caller, state: Shared, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let id = id.into_inner();
    let group = state
        .store
        .read(move |c| groups::get(c, tenant, id))
        .await?;
    Ok(HttpResponse::Ok().json(group))
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MembersQuery {
    top: Option<i64>,
    skip_token: Option<DeviceId>,
}

/// The group's member devices.
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
