//! `managedDeviceCleanupSettings`: the tenant's inactivity clean-up rule.

use actix_web::{HttpResponse, web};
use mdm_api::public::ManagedDeviceCleanupSettings;
use mdm_domain::Permission;
use mdm_runtime::{ApiError, Caller, audit};
use serde_json::json;

use super::Shared;
use crate::cleanup;
use crate::error::Error;

const SETTINGS: &str = "/api/v1/deviceManagement/managedDeviceCleanupSettings";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(SETTINGS).get(get).put(put));
}

async fn get(caller: Caller, state: Shared) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let settings = state
        .store
        .read(move |c| cleanup::settings(c, tenant))
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

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
