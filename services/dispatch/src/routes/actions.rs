//! The device actions, their self-service versions, cancel, the device's action history
//! and the retire and factory-reset previews.

use actix_web::{HttpResponse, get, post, web};
use mdm_api::ErrorCode;
use mdm_api::internal::adapter::ActionParams;
use mdm_api::public::{DeviceAction, DeviceActionResult, Page, RemoteLockRequest, WipeRequest};
use mdm_domain::capability::required_permission;
use mdm_domain::preview::{RetirePreview, WipePreview};
use mdm_domain::{ActionId, ActionKind, DeviceId, Permission, Role};
use mdm_runtime::idempotency::ReservedKey;
use mdm_runtime::{ApiError, ApiRoutes, Caller, audit};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, optional_json};
use crate::actions;
use crate::dispatcher::{IdempotentAnswer, Requested, Requester, cancel_in_transaction};
use crate::error::Error;

pub fn routes(routes: &mut ApiRoutes) {
    routes
        .service(remote_lock)
        .service(reset_passcode)
        .service(wipe)
        .service(retire)
        .service(reboot_now)
        .service(sync_device)
        .service(my_remote_lock)
        .service(my_reset_passcode)
        .service(my_wipe)
        .service(my_retire)
        .service(results)
        .service(cancel)
        .service(retire_preview)
        .service(wipe_preview);
}

/// Declares one action route: its operation, and a handler that takes `$kind` for an
/// admin or (`self_service: true`) on the caller's own device. The body is optional;
/// actions without options take `Object` (an empty one).
macro_rules! action_route {
    (
        $(#[$doc:meta])*
        $name:ident, $operation:tt, $path:tt, $kind:expr, self_service: $self_service:tt,
        body: $body:ident
    ) => {
        $(#[$doc])*
        #[utoipa::path(
            tag = "deviceActions",
            operation_id = $operation,
            params(("id" = DeviceId, Path, description = "The managed device.")),
            request_body = Option<$body>,
            responses(
                (status = 202, description = "The action, `pending` until the device receives it. A Mac's unlock PIN (`lockPin`) is in this answer only, for roles that may see it.", body = DeviceAction),
                (status = 403, description = "The role may not take this action (`forbidden_for_role`)."),
                (status = 409, description = "The device's state or the tenant's authority refuses it: `authority_disallows_action`, `hybrid_authority_read_only`, `user_not_licensed`, `device_not_managed`, `device_removal_pending`, `unlock_pin_outstanding`."),
                (status = 422, description = "The device cannot do it: `action_not_supported`, `device_has_no_passcode`, `requires_windows_1709`, `retire_not_offered_for_directory_joined`, `invalid_action_options`, `self_service_not_allowed`; `reason` names the capability rule."),
            )
        )]
        #[post($path)]
        async fn $name(
            caller: Caller,
            d: Shared,
            id: web::Path<DeviceId>,
            key: Option<web::ReqData<ReservedKey>>,
            body: web::Bytes,
        ) -> Result<HttpResponse, ApiError> {
            let key = key.map(web::ReqData::into_inner);
            act(caller, d, id.into_inner(), $kind, &body, key, $self_service).await
        }
    };
}

action_route!(
    /// Locks the device now, with an optional message and phone number on the lock
    /// screen. A Mac gets a generated 6-digit PIN, shown once in this answer (and on the
    /// device until another action is sent or 30 days pass).
    remote_lock, "remoteLock",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/remoteLock",
    ActionKind::RemoteLock, self_service: false, body: RemoteLockRequest
);
action_route!(
    /// Clears or resets the passcode: Apple ClearPasscode with the unlock token, Android
    /// RESET_PASSWORD, Windows mobile LockAndResetPIN.
    reset_passcode, "resetPasscode",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/resetPasscode",
    ActionKind::ResetPasscode, self_service: false, body: Object
);
action_route!(
    /// Factory reset. `keepEnrollmentData` with `keepUserData` needs Windows 10 version
    /// 1709 or later; not available for Android personal work profiles.
    wipe, "wipe",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/wipe",
    ActionKind::Wipe, self_service: false, body: WipeRequest
);
action_route!(
    /// Removes company data (retire); personal data stays. `retirePreview` tells what
    /// this device loses and keeps.
    retire, "retire",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/retire",
    ActionKind::Retire, self_service: false, body: Object
);
action_route!(
    /// Restarts the device.
    reboot_now, "rebootNow",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/rebootNow",
    ActionKind::RebootNow, self_service: false, body: Object
);
action_route!(
    /// Asks the device to check in now.
    sync_device, "syncDevice",
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/syncDevice",
    ActionKind::SyncDevice, self_service: false, body: Object
);
action_route!(
    /// Locks one of the caller's own devices (self-service).
    my_remote_lock, "remoteLockMyDevice",
    "/api/v1/me/managedDevices/{id:[0-9a-fA-F-]+}/remoteLock",
    ActionKind::RemoteLock, self_service: true, body: RemoteLockRequest
);
action_route!(
    /// Resets the passcode of one of the caller's own devices (self-service).
    my_reset_passcode, "resetPasscodeMyDevice",
    "/api/v1/me/managedDevices/{id:[0-9a-fA-F-]+}/resetPasscode",
    ActionKind::ResetPasscode, self_service: true, body: Object
);
action_route!(
    /// Factory-resets one of the caller's own devices (self-service).
    my_wipe, "wipeMyDevice",
    "/api/v1/me/managedDevices/{id:[0-9a-fA-F-]+}/wipe",
    ActionKind::Wipe, self_service: true, body: WipeRequest
);
action_route!(
    /// Removes company data from one of the caller's own devices (self-service).
    my_retire, "retireMyDevice",
    "/api/v1/me/managedDevices/{id:[0-9a-fA-F-]+}/retire",
    ActionKind::Retire, self_service: true, body: Object
);

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

/// Every action on the device, newest first.
#[utoipa::path(
    tag = "deviceActions",
    operation_id = "listDeviceActionResults",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses((status = 200, description = "The device's actions.", body = Page<DeviceActionResult>))
)]
#[get("/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/deviceActionResults")]
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

/// Cancels an action the device has not received yet.
#[utoipa::path(
    tag = "deviceActions",
    operation_id = "cancelDeviceAction",
    params(("id" = DeviceId, Path, description = "The managed device."), ("actionId" = ActionId, Path, description = "The action.")),
    responses(
        (status = 202, description = "The action, `canceled`.", body = DeviceAction),
        (status = 403, description = "The role may not cancel this action (`forbidden`)."),
        (status = 409, description = "The device has received the action (`action_not_cancelable`)."),
    )
)]
#[post(
    "/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/deviceActionResults/{actionId:[0-9a-fA-F-]+}/cancel"
)]
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

/// What retire removes from and keeps on this device, from the platform's retire table.
#[utoipa::path(
    tag = "deviceActions",
    operation_id = "getRetirePreview",
    params(("id" = DeviceId, Path, description = "The managed device.")),
    responses((status = 200, description = "The preview.", body = RetirePreview))
)]
#[get("/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/retirePreview")]
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

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct WipePreviewQuery {
    /// Keep the enrollment (with `keepUserData`: Windows 10 1709 and later).
    #[serde(default)]
    keep_enrollment_data: bool,
    /// Keep the user accounts and their data.
    #[serde(default)]
    keep_user_data: bool,
}

/// What a factory reset (with these options) removes from and keeps on this device.
#[utoipa::path(
    tag = "deviceActions",
    operation_id = "getWipePreview",
    params(("id" = DeviceId, Path, description = "The managed device."), WipePreviewQuery),
    responses((status = 200, description = "The preview.", body = WipePreview))
)]
#[get("/api/v1/deviceManagement/managedDevices/{id:[0-9a-fA-F-]+}/wipePreview")]
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
