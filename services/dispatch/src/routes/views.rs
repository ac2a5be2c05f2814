//! Bulk actions, the tenant-wide device actions view and the audit trail.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use diesel::result::Error::SerializationError;
use mdm_api::ErrorCode;
use mdm_api::public::{AuditEventView, BulkAction, BulkActionRequest, DeviceAction, Page};
use mdm_domain::{ActionId, ActionKind, ActionState, BulkJobId, DeviceId, Permission};
use mdm_runtime::error::json_config;
use mdm_runtime::idempotency::ReservedKey;
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use mdm_store::StoreError;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::scope;

use super::Shared;
use crate::bulk::{self, MAX_DEVICES, Targets};
use crate::error::Error;
use crate::{actions, audit_trail};

/// 100,000 ids as JSON, with room to spare.
const BULK_BODY_LIMIT: usize = 8 * 1024 * 1024;
const MAX_PAGE: i64 = 1000;

pub fn routes(routes: &mut ApiRoutes) {
    routes
        // Its own body limit: a bulk request names up to 100,000 devices.
        .service(
            scope("/api/v1/deviceManagement/managedDevices/bulkAction")
                .app_data(json_config(BULK_BODY_LIMIT))
                .service(create_bulk),
        )
        .service(get_bulk)
        .service(device_actions)
        .service(audit_events);
}

/// Takes one action on many devices, named (`deviceIds`, up to 100,000) or selected
/// (`filter`). Each device is checked as the single action would be; the job shows which
/// were accepted, which refused and why, and how far their actions got.
#[utoipa::path(
    tag = "bulkActions",
    operation_id = "createBulkAction",
    request_body = BulkActionRequest,
    responses(
        (status = 202, description = "The job; `Location` names it.", body = BulkAction,
            headers(("Location" = String, description = "The job's URL."))),
        (status = 403, description = "The role may not take this action (`forbidden`)."),
        (status = 422, description = "Too many devices (`too_many_devices`), or neither or both of `deviceIds` and `filter`."),
    )
)]
#[post("")]
async fn create_bulk(
    caller: Caller,
    d: Shared,
    key: Option<web::ReqData<ReservedKey>>,
    body: web::Json<BulkActionRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let permission = if request.action.ends_management() {
        Permission::RemoveDevices
    } else {
        Permission::ProtectDevices
    };
    let tenant = caller.tenant_with(permission)?;
    let targets = match (request.device_ids, request.filter) {
        (Some(ids), None) if ids.is_empty() => return Err(ApiError::invalid("deviceIds is empty")),
        (Some(ids), None) if ids.len() > MAX_DEVICES => {
            return Err(ApiError::new(
                ErrorCode::TooManyDevices,
                format!("{} devices named; at most {MAX_DEVICES}", ids.len()),
            ));
        }
        (Some(ids), None) => Targets::Devices(ids),
        (None, Some(filter)) => Targets::Filter(filter),
        _ => return Err(ApiError::invalid("send either deviceIds or filter")),
    };
    let (now, kind, parameters) = (d.clock.now(), request.action, request.parameters);
    let key = key.map(web::ReqData::into_inner);
    let (view, answer) = d
        .store
        .write(move |c| {
            let job = bulk::create_job(
                c,
                tenant,
                kind,
                parameters,
                targets,
                &caller.token_id.to_string(),
                Some(caller.role),
                now,
            )?;
            // A filter's devices are known once the job has selected them: its
            // `bulkAction.completed` event counts them.
            let detail = match &job.filter {
                Some(filter) => serde_json::json!({
                    "action": kind,
                    "filter": serde_json::from_str::<serde_json::Value>(filter).unwrap_or_default(),
                }),
                None => serde_json::json!({ "action": kind, "devices": job.total }),
            };
            let event = audit::with_detail(
                audit::event(&caller, now, "bulkAction.created", "bulkAction", job.id),
                detail,
            );
            audit_trail::insert(c, &[event])?;
            let view = bulk::view(c, tenant, job.id, None, 100)?;
            let answer = serde_json::to_vec(&view)
                .map_err(|e| Error::from(StoreError::from(SerializationError(Box::new(e)))))?;
            if let Some(key) = &key {
                let location = bulk_location(view.id);
                key.record(c, StatusCode::ACCEPTED, Some(&location), &answer)?;
            }
            Ok::<_, Error>((view, answer))
        })
        .await?;
    d.bulk_wake.notify_one();
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", bulk_location(view.id)))
        .content_type("application/json")
        .body(answer))
}

fn bulk_location(id: impl std::fmt::Display) -> String {
    format!("/api/v1/deviceManagement/bulkActions/{id}")
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct BulkPageQuery {
    /// Devices per page (100 when omitted).
    top: Option<i64>,
    /// Where the page of devices starts: from the previous page's `nextLink`.
    skip_token: Option<DeviceId>,
}

/// A bulk job's progress, in total and per device (a page of them).
#[utoipa::path(
    tag = "bulkActions",
    operation_id = "getBulkAction",
    params(("id" = BulkJobId, Path, description = "The job."), BulkPageQuery),
    responses((status = 200, description = "The job.", body = BulkAction))
)]
#[get("/api/v1/deviceManagement/bulkActions/{id}")]
async fn get_bulk(
    caller: Caller,
    d: Shared,
    id: web::Path<BulkJobId>,
    query: web::Query<BulkPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let (id, top, after) = (
        id.into_inner(),
        query.top.unwrap_or(100).clamp(1, MAX_PAGE),
        query.skip_token,
    );
    let view = d
        .store
        .read(move |c| bulk::view(c, tenant, id, after, top))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ActionsQuery {
    /// Actions per page (100 when omitted).
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<ActionId>,
    /// Only actions in this state.
    state: Option<ActionState>,
    /// Only this action.
    action: Option<ActionKind>,
}

/// Every action of the tenant, newest first.
#[utoipa::path(
    tag = "deviceActions",
    operation_id = "listDeviceActions",
    params(ActionsQuery),
    responses((status = 200, description = "A page of actions.", body = Page<DeviceAction>))
)]
#[get("/api/v1/deviceManagement/deviceActions")]
async fn device_actions(
    caller: Caller,
    d: Shared,
    query: web::Query<ActionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let query = query.into_inner();
    let top = query.top.unwrap_or(100).clamp(1, MAX_PAGE);
    let (state, kind, before) = (query.state, query.action, query.skip_token);
    let rows = d
        .store
        .read(move |c| actions::for_tenant(c, tenant, state, kind, before, top))
        .await?;
    let mut link = format!("/api/v1/deviceManagement/deviceActions?top={top}");
    if let Some(state) = state {
        link.push_str(&format!("&state={state}"));
    }
    if let Some(kind) = kind {
        link.push_str(&format!("&action={kind}"));
    }
    let next_link = (rows.len() as i64 == top)
        .then(|| rows.last().map(|r| format!("{link}&skipToken={}", r.id)))
        .flatten();
    let value = rows.iter().map(|r| actions::view(r, None)).collect();
    Ok(HttpResponse::Ok().json(Page { value, next_link }))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Events per page (100 when omitted).
    top: Option<i64>,
    /// Where the page starts: from the previous page's `nextLink`.
    skip_token: Option<uuid::Uuid>,
    /// Only this activity, such as `device.remoteLock`.
    activity: Option<String>,
    /// Only events about this device.
    device_id: Option<DeviceId>,
}

/// The audit trail: who did what to which object, when and from where, newest first.
#[utoipa::path(
    tag = "audit",
    operation_id = "listAuditEvents",
    params(AuditQuery),
    responses((status = 200, description = "A page of events.", body = Page<AuditEventView>))
)]
#[get("/api/v1/auditEvents")]
async fn audit_events(
    caller: Caller,
    d: Shared,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let query = query.into_inner();
    let top = query.top.unwrap_or(100).clamp(1, MAX_PAGE);
    let (activity, device, before) = (query.activity.clone(), query.device_id, query.skip_token);
    let value = d
        .store
        .read(move |c| audit_trail::list(c, tenant, activity.as_deref(), device, before, top))
        .await
        .map_err(|e: Error| ApiError::from(e))?;
    let next_link = (value.len() as i64 == top)
        .then(|| {
            value
                .last()
                .map(|e| format!("/api/v1/auditEvents?top={top}&skipToken={}", e.id))
        })
        .flatten();
    Ok(HttpResponse::Ok().json(Page { value, next_link }))
}
