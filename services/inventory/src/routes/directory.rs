//! Directory records of devices.

use actix_web::{HttpResponse, delete, get, web};
use mdm_api::public::{DirectoryDevice, Page};
use mdm_domain::{Permission, UserId};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{QueryString, Shared, page_size, paged};
use crate::devices::{DEFAULT_PAGE, MAX_PAGE};
use crate::directory;
use crate::error::Error;

const RECORDS: &str = "/api/v1/directory/devices";

pub fn routes(routes: &mut ApiRoutes) {
    routes.service(list).service(delete);
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Records per page.
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<Uuid>,
    /// Only this user's records.
    user_id: Option<UserId>,
}

/// Lists the devices' directory records.
#[utoipa::path(
    tag = "directory",
    operation_id = "listDirectoryDevices",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of directory records.", body = Page<DirectoryDevice>),
    )
)]
#[get("/api/v1/directory/devices")]
async fn list(
    caller: Caller,
    state: Shared,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let top = page_size(query.top, DEFAULT_PAGE, MAX_PAGE);
    let (user, after) = (query.user_id, query.skip_token);
    let rows = state
        .store
        .read(move |c| directory::list(c, tenant, user, after, top + 1))
        .await?;
    let page = paged(
        rows.into_iter().map(directory::to_wire).collect(),
        top,
        |last| {
            let mut next = QueryString::default();
            next.push("top", top)
                .push("skipToken", last.id)
                .push_opt("userId", user);
            next.finish(RECORDS)
        },
    );
    Ok(HttpResponse::Ok().json(page))
}

/// Deletes the record at once. The device stays under management; its user's slot of
/// the device limit is free from now on.
#[utoipa::path(
    tag = "directory",
    operation_id = "deleteDirectoryDevice",
    params(("id" = Uuid, Path, description = "The directory record.")),
    responses(
        (status = 204, description = "The record is deleted."),
    )
)]
#[delete("/api/v1/directory/devices/{id:[0-9a-fA-F-]+}")]
async fn delete(
    caller: Caller,
    state: Shared,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::RemoveDevices)?;
    let (id, now, shared) = (id.into_inner(), state.clock.now(), state.clone());
    state
        .store
        .write(move |c| {
            let row = directory::delete(c, tenant, id)?;
            let mut event = audit::with_detail(
                audit::event(
                    &caller,
                    now,
                    "directoryDevice.deleted",
                    "directoryDevice",
                    id,
                ),
                json!({ "userId": row.user_id, "managedDeviceId": row.device_id }),
            );
            if let Some(device) = row.device_id {
                event = audit::on_device(event, device);
            }
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
