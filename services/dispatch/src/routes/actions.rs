//! The device actions, their self-service versions, cancel, the device's action history
//! and the retire and factory-reset previews.

use actix_web::{HttpResponse, web};
use mdm_api::ErrorCode;
use mdm_api::internal::adapter::ActionParams;
use mdm_api::public::{RemoteLockRequest, WipeRequest};
use mdm_domain::capability::required_permission;
use mdm_domain::{ActionId, ActionKind, DeviceId, Permission, Role};
use mdm_runtime::idempotency::ReservedKey;
use mdm_runtime::{ApiError, Caller, audit};
use serde::Deserialize;

use super::{DEVICE, Shared, optional_json};
use crate::actions;
use crate::dispatcher::{IdempotentAnswer, Requested, Requester, cancel_in_transaction};
use crate::error::Error;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let device = |rest: &str| format!("/api/v1/deviceManagement/managedDevices/{DEVICE}/{rest}");
    let mine = |rest: &str| format!("/api/v1/me/managedDevices/{DEVICE}/{rest}");
    let admin = [
        ("remoteLock", ActionKind::RemoteLock),
        ("resetPasscode", ActionKind::ResetPasscode),
        ("wipe", ActionKind::Wipe),
        ("retire", ActionKind::Retire),
        ("rebootNow", ActionKind::RebootNow),
        ("syncDevice", ActionKind::SyncDevice),
    ]
    .map(|(path, kind)| (device(path), kind, false));
    let own = [
        ("remoteLock", ActionKind::RemoteLock),
        ("resetPasscode", ActionKind::ResetPasscode),
        ("wipe", ActionKind::Wipe),
        ("retire", ActionKind::Retire),
    ]
    .map(|(path, kind)| (mine(path), kind, true));
    for (path, kind, self_service) in admin.into_iter().chain(own) {
        cfg.service(
            web::resource(path)
                .app_data(web::Data::new(ActionRoute { kind, self_service }))
                .post(take_action),
        );
    }
    cfg.service(web::resource(device("deviceActionResults")).get(results))
        .service(
            web::resource(format!(
                "/api/v1/deviceManagement/managedDevices/{DEVICE}/deviceActionResults/{{actionId}}/cancel"
            ))
            .post(cancel),
        )
        .service(web::resource(device("retirePreview")).get(retire_preview))
        .service(web::resource(device("wipePreview")).get(wipe_preview));
}

/// What an action route takes: the action, for an admin or on the caller's own device.
struct ActionRoute {
    kind: ActionKind,
    self_service: bool,
}

async fn take_action(
    caller: Caller,
    d: Shared,
    id: web::Path<DeviceId>,
    route: web::Data<ActionRoute>,
    key: Option<web::ReqData<ReservedKey>>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = key.map(web::ReqData::into_inner);
    act(
        caller,
        d,
        id.into_inner(),
        route.kind,
        &body,
        key,
        route.self_service,
    )
    .await
}

/// Takes an action: 202 with the action, or the refusal; nothing is sent when refused.
async fn act(
    caller: Caller,
    d: Shared,
    device: DeviceId,
    kind: ActionKind,
    body: &[u8],
    key: Option<ReservedKey>,
    self_service: bool,
) -> Result<HttpResponse, ApiError> {
    let tenant = if self_service {
        caller.tenant_with(Permission::SelfService)?
    } else {
        may_take(&caller, kind)?;
        caller.tenant()?
    };
    let requested = requested(kind, body)?;
    let may_see_pin = self_service || caller.role.can(Permission::ReadUnlockPin);
    let requester = Requester::Caller {
        caller,
        self_service,
    };
    let answer = key.map(|key| IdempotentAnswer {
        key,
        shows_pin: may_see_pin,
    });
    let created = d
        .request(requester, tenant, device, requested, answer)
        .await?;
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(IdempotentAnswer::body(may_see_pin, &created)?))
}

/// A role that may not take `kind` through the admin API is refused before anything
/// about the device is looked at (the device's state or version would tell a caller
/// who may not act on it something it need not know).
fn may_take(caller: &Caller, kind: ActionKind) -> Result<(), ApiError> {
    let permission = required_permission(kind);
    if caller.role.can(permission) {
        return Ok(());
    }
    let role = caller.role;
    let detail = if role == Role::User {
        format!(
            "The user role may not {kind} devices through the admin API; users act on their \
             own devices through /api/v1/me/managedDevices."
        )
    } else {
        format!("The {role} role may not {kind} devices: it lacks the {permission} permission.")
    };
    Err(ApiError::new(ErrorCode::ForbiddenForRole, detail))
}

fn requested(kind: ActionKind, body: &[u8]) -> Result<Requested, ApiError> {
    let mut requested = Requested::new(kind);
    match kind {
        ActionKind::RemoteLock => {
            let body: RemoteLockRequest = optional_json(body)?;
            if body
                .message
                .as_ref()
                .is_some_and(|m| m.chars().count() > 500)
            {
                return Err(ApiError::invalid("message must be at most 500 characters"));
            }
            requested.params = ActionParams {
                message: body.message,
                phone_number: body.phone_number,
                ..ActionParams::default()
            };
            requested.force = body.force;
        }
        ActionKind::Wipe => {
            let body: WipeRequest = optional_json(body)?;
            requested.params = ActionParams {
                keep_enrollment_data: body.keep_enrollment_data,
                keep_user_data: body.keep_user_data,
                persist_esim_data_plan: body.persist_esim_data_plan,
                use_protected_wipe: body.use_protected_wipe,
                ..ActionParams::default()
            };
            requested.mac_os_unlock_code = body.mac_os_unlock_code;
        }
        _ => {
            optional_json::<serde_json::Map<String, serde_json::Value>>(body)?;
        }
    }
    Ok(requested)
}

async fn results(
    caller: Caller,
    d: Shared,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let device = id.into_inner();
    d.device(tenant, device).await?;
    let rows = d
        .store
        .read(move |c| actions::for_device(c, tenant, device, 200))
        .await?;
    let value: Vec<_> = rows.iter().map(actions::result).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "value": value })))
}

async fn cancel(
    caller: Caller,
    d: Shared,
    path: web::Path<(DeviceId, ActionId)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant()?;
    let (device, id) = path.into_inner();
    let now = d.clock.now();
    let out = d.outbox.clone();
    let row = d
        .store
        .write(move |c| {
            let action = actions::get_on_device(c, tenant, device, id)?;
            let permission = if action.kind.ends_management() {
                Permission::RemoveDevices
            } else {
                Permission::ProtectDevices
            };
            if !caller.role.can(permission) {
                return Err(Error::refused(
                    mdm_api::ErrorCode::Forbidden,
                    format!("the {} role may not cancel this action", caller.role),
                ));
            }
            cancel_in_transaction(c, &out, &action, "canceled", "canceled by an admin", now)?;
            let event = audit::on_device(
                audit::event(&caller, now, "action.canceled", "action", id),
                device,
            );
            crate::audit_trail::insert(c, &[event])?;
            Ok(actions::get(c, id)?.unwrap_or(action))
        })
        .await?;
    Ok(HttpResponse::Accepted().json(actions::view(&row, None)))
}

async fn retire_preview(
    caller: Caller,
    d: Shared,
    id: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let record = d.device(tenant, id.into_inner()).await?;
    let preview = mdm_domain::preview::retire_preview(
        record.platform,
        record.management_mode,
        record.ownership,
        record.os_version.as_ref(),
        record.manufacturer.as_deref(),
        record.directory_joined,
    );
    Ok(HttpResponse::Ok().json(preview))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WipePreviewQuery {
    #[serde(default)]
    keep_enrollment_data: bool,
    #[serde(default)]
    keep_user_data: bool,
}

async fn wipe_preview(
    caller: Caller,
    d: Shared,
    id: web::Path<DeviceId>,
    query: web::Query<WipePreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_with(Permission::ReadTenant)?;
    let record = d.device(tenant, id.into_inner()).await?;
    let keep = query.keep_enrollment_data && query.keep_user_data;
    let preview =
        mdm_domain::preview::wipe_preview(record.platform, record.os_version.as_ref(), keep);
    Ok(HttpResponse::Ok().json(preview))
}
