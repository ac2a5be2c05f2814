//! The internal API (`/internal/v1/inventory`): device records for dispatch and the
//! adapters, filters for bulk actions, and device-limit slots for the enrollment gate.

use actix_web::{HttpResponse, web};
use mdm_api::internal::inventory::{
    DeviceCounts, DeviceCountsResponse, DevicesLookup, DevicesLookupResponse, DevicesSelect,
    DevicesSelectResponse,
};
use mdm_domain::{DeviceId, TenantId};
use mdm_runtime::ApiError;
use serde::Deserialize;

use super::{Shared, with_id};
use crate::error::Error;
use crate::{devices, directory};

/// The most ids one lookup or count may ask about.
const MAX_IDS: usize = 100_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/devices/lookup").post(lookup))
        .service(web::resource("/devices/select").post(select))
        .service(web::resource(with_id("/devices", "id", "")).get(get))
        .service(web::resource("/users/deviceCounts").post(counts));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantQuery {
    tenant_id: TenantId,
}

/// `GET /devices/{id}?tenantId=`: 404 unless the device is the tenant's.
async fn get(
    state: Shared,
    id: web::Path<DeviceId>,
    query: web::Query<TenantQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, tenant) = (id.into_inner(), query.tenant_id);
    let row = state
        .store
        .read(move |c| devices::get(c, tenant, id))
        .await?;
    Ok(HttpResponse::Ok().json(devices::to_record(&row)))
}

async fn lookup(state: Shared, body: web::Json<DevicesLookup>) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    too_many(request.device_ids.len())?;
    let rows = state
        .store
        .read(move |c| devices::lookup(c, request.tenant_id, &request.device_ids))
        .await?;
    Ok(HttpResponse::Ok().json(DevicesLookupResponse {
        devices: rows.iter().map(devices::to_record).collect(),
    }))
}

/// Every matching id, in id order: one index scan, ids only.
async fn select(state: Shared, body: web::Json<DevicesSelect>) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let device_ids = state
        .store
        .read(move |c| devices::select_ids(c, request.tenant_id, &request.filter))
        .await?;
    Ok(HttpResponse::Ok().json(DevicesSelectResponse { device_ids }))
}

async fn counts(state: Shared, body: web::Json<DeviceCounts>) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    too_many(request.user_ids.len().max(request.exclude.len()))?;
    let counts = state
        .store
        .read(move |c| directory::slots(c, request.tenant_id, &request.user_ids, &request.exclude))
        .await?;
    Ok(HttpResponse::Ok().json(DeviceCountsResponse { counts }))
}

fn too_many(asked: usize) -> Result<(), ApiError> {
    if asked > MAX_IDS {
        return Err(Error::invalid(format!("at most {MAX_IDS} ids per request")).into());
    }
    Ok(())
}
