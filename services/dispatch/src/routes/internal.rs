//! The internal API: a device's actions and unlock PIN, for inventory's device view.

use actix_web::{HttpResponse, web};
use mdm_api::internal::dispatch::DeviceActionsSummary;
use mdm_api::public::LockPin;
use mdm_domain::{DeviceId, TenantId};
use mdm_runtime::ApiError;
use mdm_store::from_millis;
use serde::Deserialize;

use super::Shared;
use crate::{actions, pins};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/devices/{id}/summary").get(summary));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Query {
    tenant_id: TenantId,
}

async fn summary(
    d: Shared,
    id: web::Path<DeviceId>,
    query: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let (device, tenant, now) = (id.into_inner(), query.tenant_id, d.clock.now());
    let (rows, pin) = d
        .store
        .read(move |c| {
            Ok::<_, crate::error::Error>((
                actions::for_device(c, tenant, device, 50)?,
                actions::live_pin(c, device, now)?,
            ))
        })
        .await?;
    let lock_pin = pin.filter(|row| row.tenant_id == tenant).and_then(|row| {
        let pin = pins::open(&d.secrets, row.sealed_unlock_pin.as_deref()?)?;
        Some(LockPin {
            pin,
            action_id: row.id,
            expiration_date_time: from_millis(row.pin_expires_at?),
        })
    });
    Ok(HttpResponse::Ok().json(DeviceActionsSummary {
        device_action_results: rows.iter().map(actions::result).collect(),
        lock_pin,
    }))
}
