//! Autopilot registrations, and the Managed Desktop device list built on them.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Duration, Utc};
use mdm_api::public::{
    AutopilotDeviceIdentity, CreateAutopilotDeviceIdentity, Page, RemoveManagedDesktopDevice,
};
use mdm_domain::{DeviceId, ManagementState, Permission, RefusalReason};
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{QueryString, Shared, page_size, paged};
use crate::devices::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::error::Error;
use crate::ids::to_uuid;
use crate::{autopilot, directory, groups, removal};

const IDENTITIES: &str = "/api/v1/deviceManagement/windowsAutopilotDeviceIdentities";
const DESKTOPS: &str = "/api/v1/deviceManagement/managedDesktopDevices";

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(list)
        .service(create)
        .service(get)
        .service(delete)
        .service(desktops)
        .service(remove_desktop);
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Registrations per page.
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<Uuid>,
}

fn next_link(path: &str, top: i64, last: Uuid) -> String {
    let mut next = QueryString::default();
    next.push("top", top).push("skipToken", last);
    next.finish(path)
}

/// Lists the Windows Autopilot registrations.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "listAutopilotDeviceIdentities",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of registrations.", body = Page<AutopilotDeviceIdentity>),
    )
)]
#[get("/api/v1/deviceManagement/windowsAutopilotDeviceIdentities")]
async fn list(
    caller: Caller,
    state: Shared,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let (top, after, now) = (
        page_size(query.top, DEFAULT_PAGE, MAX_PAGE),
        query.skip_token,
        state.clock.now(),
    );
    let rows = state
        .store
        .read(move |c| autopilot::list(c, tenant, after, top + 1))
        .await?;
    let wire = rows
        .into_iter()
        .map(|r| autopilot::to_wire(r, now))
        .collect();
    let page = paged(wire, top, |last| next_link(IDENTITIES, top, last.id));
    Ok(HttpResponse::Ok().json(page))
}

/// Registers a device with Windows Autopilot by its serial number and hardware hash.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "createAutopilotDeviceIdentity",
    request_body = CreateAutopilotDeviceIdentity,
    responses(
        (status = 201, description = "The registration, `pending` at first; `Location` names it.", body = AutopilotDeviceIdentity, headers(("Location" = String, description = "The registration's URL."))),
        (status = 409, description = "The serial number is registered (`conflict`)."),
    )
)]
#[post("/api/v1/deviceManagement/windowsAutopilotDeviceIdentities")]
async fn create(
    caller: Caller,
    state: Shared,
    body: web::Json<CreateAutopilotDeviceIdentity>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let (now, shared, request) = (state.clock.now(), state.clone(), body.into_inner());
    let processing = Duration::seconds(
        i64::try_from(state.config.autopilot_processing_secs).unwrap_or(i64::MAX / 1000),
    );
    let row = state
        .store
        .write(move |c| {
            let row = autopilot::create(c, tenant, &request, processing, now)?;
            let mut event = audit::with_detail(
                audit::event(
                    &caller,
                    now,
                    "autopilotDeviceIdentity.created",
                    "autopilotDeviceIdentity",
                    to_uuid(&row.id),
                ),
                json!({ "serialNumber": row.serial_number, "groupTag": row.group_tag }),
            );
            if let Some(device) = row.device_id {
                event = audit::on_device(event, device);
            }
            shared.audit(c, &event)?;
            Ok::<_, Error>(row)
        })
        .await?;
    let identity = autopilot::to_wire(row, now);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{IDENTITIES}/{}", identity.id)))
        .json(identity))
}

/// Reads an Autopilot registration.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "getAutopilotDeviceIdentity",
    params(("id" = Uuid, Path, description = "The Autopilot registration.")),
    responses(
        (status = 200, description = "The registration.", body = AutopilotDeviceIdentity),
    )
)]
#[get("/api/v1/deviceManagement/windowsAutopilotDeviceIdentities/{id:[0-9a-fA-F-]+}")]
async fn get(caller: Caller, state: Shared, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let (id, now) = (id.into_inner(), state.clock.now());
    let row = state
        .store
        .read(move |c| autopilot::get(c, tenant, id))
        .await?;
    Ok(HttpResponse::Ok().json(autopilot::to_wire(row, now)))
}

/// Refused with `registration_pending` while the registration is processed.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "deleteAutopilotDeviceIdentity",
    params(("id" = Uuid, Path, description = "The Autopilot registration.")),
    responses(
        (status = 204, description = "The registration is deleted."),
        (status = 409, description = "The registration is pending (`registration_pending`)."),
    )
)]
#[delete("/api/v1/deviceManagement/windowsAutopilotDeviceIdentities/{id:[0-9a-fA-F-]+}")]
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
            let row = autopilot::delete(c, tenant, id, now)?;
            let event = audit::with_detail(
                audit::event(
                    &caller,
                    now,
                    "autopilotDeviceIdentity.deleted",
                    "autopilotDeviceIdentity",
                    id,
                ),
                json!({ "serialNumber": row.serial_number }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET .../managedDesktopDevices`: a registered (or pending) device with its managed
/// device, when it has enrolled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ManagedDesktopDevice {
    /// The Autopilot registration's id.
    id: Uuid,
    serial_number: String,
    group_tag: Option<String>,
    /// The registration's state: `pending` or `registered`.
    registration_state: &'static str,
    managed_device_id: Option<DeviceId>,
    device_name: Option<String>,
    user_principal_name: Option<String>,
    management_state: Option<ManagementState>,
    last_sync_date_time: Option<DateTime<Utc>>,
    created_date_time: DateTime<Utc>,
}

/// Lists the registered (or pending) desktops, with their managed device once enrolled.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "listManagedDesktopDevices",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of devices.", body = Page<ManagedDesktopDevice>),
    )
)]
#[get("/api/v1/deviceManagement/managedDesktopDevices")]
async fn desktops(
    caller: Caller,
    state: Shared,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let (top, after, now) = (
        page_size(query.top, DEFAULT_PAGE, MAX_PAGE),
        query.skip_token,
        state.clock.now(),
    );
    let (rows, linked) = state
        .store
        .read(move |c| {
            let rows = autopilot::list(c, tenant, after, top + 1)?;
            let ids: Vec<DeviceId> = rows.iter().filter_map(|r| r.device_id).collect();
            let linked = devices::lookup(c, tenant, &ids)?;
            Ok::<_, Error>((rows, linked))
        })
        .await?;
    let value: Vec<ManagedDesktopDevice> = rows
        .into_iter()
        .map(|row| {
            let device = row
                .device_id
                .and_then(|id| linked.iter().find(|d| d.id == id));
            ManagedDesktopDevice {
                id: to_uuid(&row.id),
                registration_state: autopilot::state(&row, now),
                managed_device_id: device.map(|d| d.id),
                device_name: device.and_then(|d| d.device_name.clone()),
                user_principal_name: device.and_then(|d| d.user_principal_name.clone()),
                management_state: device.map(|d| d.management_state),
                last_sync_date_time: device
                    .and_then(|d| d.last_sync_at)
                    .map(mdm_store::from_millis),
                created_date_time: mdm_store::from_millis(row.created_at),
                serial_number: row.serial_number,
                group_tag: row.group_tag,
            }
        })
        .collect();
    let page: Page<ManagedDesktopDevice> =
        paged(value, top, |last| next_link(DESKTOPS, top, last.id));
    Ok(HttpResponse::Ok().json(page))
}

/// What a Managed Desktop removal did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ManagedDesktopRemoval {
    id: Uuid,
    serial_number: String,
    managed_device_id: Option<DeviceId>,
    /// Group memberships of the device that were removed.
    group_memberships_removed: usize,
    directory_record_removed: bool,
    /// The device's management is being removed (`deletePending`).
    management_removal_requested: bool,
}

/// `POST .../managedDesktopDevices/{id}/remove`: removes the Autopilot registration (and
/// with it the device-list entry) and every group membership of its device; with
/// `alsoDeleteFromDirectoryAndManagement`, also the device's directory record, and its
/// management the way `DELETE .../managedDevices/{id}` removes it. Refused with
/// `registration_pending` while the registration is pending. All or nothing: a refused
/// delete leaves everything in place.
#[utoipa::path(
    tag = "autopilot",
    operation_id = "removeManagedDesktopDevice",
    params(("id" = Uuid, Path, description = "The Autopilot registration.")),
    request_body = RemoveManagedDesktopDevice,
    responses(
        (status = 200, description = "What was removed.", body = ManagedDesktopRemoval),
        (status = 409, description = "The registration is pending (`registration_pending`), or the authority does not allow the removal."),
        (status = 422, description = "The device cannot be removed this way (`action_not_supported`)."),
    )
)]
#[post("/api/v1/deviceManagement/managedDesktopDevices/{id:[0-9a-fA-F-]+}/remove")]
async fn remove_desktop(
    caller: Caller,
    state: Shared,
    id: web::Path<Uuid>,
    body: web::Json<RemoveManagedDesktopDevice>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::RemoveDevices)?;
    let id = id.into_inner();
    let also_delete = body.also_delete_from_directory_and_management;
    let authority = if also_delete {
        Some(
            state
                .policies
                .get(tenant)
                .await
                .map_err(Error::from)?
                .authority,
        )
    } else {
        None
    };
    let (now, shared) = (state.clock.now(), state.clone());
    let removal = state
        .store
        .write(move |c| {
            let row = autopilot::get(c, tenant, id)?;
            autopilot::refuse_pending(&row, now)?;
            let device = match row.device_id {
                Some(device) => devices::find(c, tenant, device)?,
                None => None,
            };
            let mut outcome = ManagedDesktopRemoval {
                id,
                serial_number: row.serial_number.clone(),
                managed_device_id: device.as_ref().map(|d| d.id),
                group_memberships_removed: 0,
                directory_record_removed: false,
                management_removal_requested: false,
            };
            if let Some(device) = &device {
                outcome.group_memberships_removed =
                    groups::remove_devices_everywhere(c, &[device.id])?;
                if let Some(authority) = authority {
                    outcome.directory_record_removed =
                        directory::remove_for_devices(c, &[device.id])? > 0;
                    match removal::request_delete(
                        c,
                        &shared.outbox,
                        &caller,
                        authority,
                        tenant,
                        device.id,
                        now,
                    ) {
                        Ok(_) => outcome.management_removal_requested = true,
                        // Its removal is under way already.
                        Err(Error::Capability(refusal))
                            if refusal.reason == RefusalReason::DeviceRemovalPending =>
                        {
                            outcome.management_removal_requested = true;
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
            autopilot::remove(c, &row)?;
            let mut event = audit::with_detail(
                audit::event(
                    &caller,
                    now,
                    "managedDesktopDevice.removed",
                    "autopilotDeviceIdentity",
                    id,
                ),
                json!({
                    "serialNumber": outcome.serial_number,
                    "groupMembershipsRemoved": outcome.group_memberships_removed,
                    "alsoDeleteFromDirectoryAndManagement": also_delete,
                }),
            );
            if let Some(device) = outcome.managed_device_id {
                event = audit::on_device(event, device);
            }
            shared.audit(c, &event)?;
            Ok::<_, Error>(outcome)
        })
        .await?;
    Ok(HttpResponse::Ok().json(removal))
}
