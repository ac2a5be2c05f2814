//! `managedDeviceCleanupSettings`: the tenant's inactivity clean-up rule.

use actix_web::{HttpResponse, get, put, web};
use mdm_api::public::ManagedDeviceCleanupSettings;
use mdm_domain::Permission;
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde_json::json;

use super::Shared;
use crate::cleanup;
use crate::error::Error;

pub fn routes(routes: &mut ApiRoutes) {
    routes.service(get).service(put);
}

/// Reads the clean-up rule: devices that have not checked in for this many days are removed.
#[utoipa::path(
    tag = "settings",
    operation_id = "getManagedDeviceCleanupSettings",
    responses(
        (status = 200, description = "The rule.", body = ManagedDeviceCleanupSettings),
    )
)]
#[get("/api/v1/deviceManagement/managedDeviceCleanupSettings")]
async fn get(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let settings = state
        .store
        .read(move |c| cleanup::settings(c, tenant))
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// Sets the clean-up rule: off (`null`) or 90 to 270 days.
#[utoipa::path(
    tag = "settings",
    operation_id = "setManagedDeviceCleanupSettings",
    request_body = ManagedDeviceCleanupSettings,
    responses(
        (status = 200, description = "The rule now.", body = ManagedDeviceCleanupSettings),
    )
)]
#[put("/api/v1/deviceManagement/managedDeviceCleanupSettings")]
async fn put(
    caller: Caller,
    state: Shared,
    body: web::Json<ManagedDeviceCleanupSettings>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ManageSettings)?;
    let (now, shared, settings) = (state.clock.now(), state.clone(), body.into_inner());
    let answer = settings.clone();
    state
        .store
        .write(move |c| {
            let before = cleanup::settings(c, tenant)?;
            cleanup::set_settings(c, tenant, &settings, now)?;
            let event = audit::with_detail(
                audit::event(&caller, now, "cleanupSettings.updated", "tenant", tenant),
                json!({
                    "before": before.device_inactivity_before_retirement_in_days,
                    "after": settings.device_inactivity_before_retirement_in_days,
                }),
            );
            shared.audit(c, &event)?;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}
