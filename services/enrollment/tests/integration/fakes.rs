//! Stand-ins for the services the enrollment service talks to: inventory (device
//! records), dispatch (the messages it receives) and the Android adapter (AMAPI calls).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use mdm_api::internal::Message;
use mdm_api::internal::android::{BindEnterprise, BoundEnterprise, CreateSignupUrl, SignupUrl};
use mdm_api::internal::dispatch::{AuditEvent, UnenrollUser};
use mdm_api::internal::enrollment::PolicyChanged;
use mdm_api::internal::inventory::{
    DeviceCounts, DeviceCountsResponse, DeviceRecord, DevicesLookup, DevicesLookupResponse,
    DevicesSelect, DevicesSelectResponse, UserDeviceCount,
};
use mdm_api::{ErrorCode, Problem, Service};
use mdm_domain::{DeviceId, EnrollmentId, ManagementState, Ownership, Platform, TenantId, UserId};
use mdm_runtime::Module;
use mdm_runtime::inbox::Inbox;
use serde_json::Value;

#[derive(Clone, Default)]
pub struct Fakes {
    pub devices: Arc<Mutex<Vec<DeviceRecord>>>,
    pub dispatch: Arc<Mutex<Vec<(String, Value)>>>,
    /// The messages inventory received (it caches tenant policy too).
    pub inventory_messages: Arc<Mutex<Vec<(String, Value)>>>,
    pub android_calls: Arc<Mutex<Vec<(String, Value)>>>,
    /// When set, the fake Android adapter answers this google.rpc-like refusal.
    pub android_refuses: Arc<Mutex<Option<u16>>>,
}

impl Fakes {
    pub fn modules(&self) -> Vec<Module> {
        vec![self.inventory(), self.dispatch_module(), self.android()]
    }

    pub fn add_device(
        &self,
        tenant: TenantId,
        platform: Platform,
        user: Option<UserId>,
        state: ManagementState,
    ) -> DeviceId {
        let id = DeviceId::new();
        self.devices.lock().unwrap().push(DeviceRecord {
            id,
            tenant_id: tenant,
            enrollment_id: EnrollmentId::new(),
            platform,
            os_version: None,
            ownership: Ownership::Company,
            management_mode: None,
            management_state: state,
            user_id: user,
            user_principal_name: None,
            is_passcode_present: None,
            directory_joined: false,
            manufacturer: None,
            model: None,
            device_name: Some(format!("{platform} device")),
            serial_number: None,
            enrolled_at: chrono::DateTime::<Utc>::default(),
            last_sync_at: None,
        });
        id
    }

    /// Waits for dispatch to receive a message of `kind` matching `wanted`.
    pub async fn dispatch_received(&self, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        received("dispatch", &self.dispatch, kind, wanted).await
    }

    /// Waits for inventory to receive a message of `kind` matching `wanted`.
    pub async fn inventory_received(&self, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        received("inventory", &self.inventory_messages, kind, wanted).await
    }

    fn inventory(&self) -> Module {
        let devices = self.devices.clone();
        let inbox = Inbox::new(Service::Inventory)
            .on::<PolicyChanged, _>(record(self.inventory_messages.clone()));
        Module::new(Service::Inventory)
            .inbox(inbox)
            .internal(move |cfg| {
                cfg.app_data(web::Data::new(devices.clone()))
                    .service(web::resource("/devices/select").post(select))
                    .service(web::resource("/devices/lookup").post(lookup))
                    .service(web::resource("/users/deviceCounts").post(counts));
            })
    }

    fn dispatch_module(&self) -> Module {
        let inbox = Inbox::new(Service::Dispatch)
            .on::<UnenrollUser, _>(record(self.dispatch.clone()))
            .on::<PolicyChanged, _>(record(self.dispatch.clone()))
            .on::<AuditEvent, _>(record(self.dispatch.clone()));
        Module::new(Service::Dispatch).inbox(inbox)
    }

    fn android(&self) -> Module {
        let state = (self.android_calls.clone(), self.android_refuses.clone());
        Module::new(Service::Android).internal(move |cfg| {
            cfg.app_data(web::Data::new(state.clone()))
                .service(web::resource("/signupUrls").post(signup))
                .service(web::resource("/enterprises").post(enterprises));
        })
    }
}

type Devices = web::Data<Arc<Mutex<Vec<DeviceRecord>>>>;

async fn select(devices: Devices, body: web::Json<DevicesSelect>) -> HttpResponse {
    let devices = devices.lock().unwrap();
    let ids = devices
        .iter()
        .filter(|d| d.tenant_id == body.tenant_id)
        .filter(|d| body.filter.operating_system.is_none_or(|p| p == d.platform))
        .filter(|d| body.filter.user_id.is_none_or(|u| Some(u) == d.user_id))
        .map(|d| d.id)
        .collect();
    HttpResponse::Ok().json(DevicesSelectResponse { device_ids: ids })
}

async fn lookup(devices: Devices, body: web::Json<DevicesLookup>) -> HttpResponse {
    let devices = devices.lock().unwrap();
    let found = devices
        .iter()
        .filter(|d| d.tenant_id == body.tenant_id && body.device_ids.contains(&d.id))
        .cloned()
        .collect();
    HttpResponse::Ok().json(DevicesLookupResponse { devices: found })
}

/// As inventory counts: the user's records that still hold a slot.
async fn counts(devices: Devices, body: web::Json<DeviceCounts>) -> HttpResponse {
    let devices = devices.lock().unwrap();
    let counts = body
        .user_ids
        .iter()
        .map(|&user_id| UserDeviceCount {
            user_id,
            count: devices
                .iter()
                .filter(|d| d.tenant_id == body.tenant_id && d.user_id == Some(user_id))
                .filter(|d| {
                    d.management_state.counts_toward_device_limit() && !body.exclude.contains(&d.id)
                })
                .count() as u32,
        })
        .collect();
    HttpResponse::Ok().json(DeviceCountsResponse { counts })
}

async fn received(
    service: &str,
    messages: &Mutex<Vec<(String, Value)>>,
    kind: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..250 {
        let found = messages
            .lock()
            .unwrap()
            .iter()
            .find(|(k, v)| k == kind && wanted(v))
            .map(|(_, v)| v.clone());
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{service} never received {kind}; it has {:?}",
        messages.lock().unwrap()
    );
}

fn record<M: Message + 'static>(
    into: Arc<Mutex<Vec<(String, Value)>>>,
) -> impl Fn(
    &mut mdm_store::DbConnection,
    &mdm_runtime::inbox::Delivery<'_>,
    M,
) -> Result<mdm_runtime::inbox::AfterCommit, mdm_runtime::inbox::HandlerError>
+ Send
+ Sync
+ 'static {
    move |_, _, message| {
        into.lock()
            .unwrap()
            .push((M::KIND.to_owned(), serde_json::to_value(&message).unwrap()));
        Ok(None)
    }
}

type AndroidState = web::Data<(Arc<Mutex<Vec<(String, Value)>>>, Arc<Mutex<Option<u16>>>)>;

fn refusal(status: u16) -> HttpResponse {
    let problem = Problem::new(
        ErrorCode::ValidationFailed,
        Some("Invalid enterprise token".into()),
    );
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(problem)
}

async fn signup(state: AndroidState, body: web::Json<CreateSignupUrl>) -> HttpResponse {
    state
        .0
        .lock()
        .unwrap()
        .push(("signupUrls".into(), serde_json::to_value(&*body).unwrap()));
    if let Some(status) = *state.1.lock().unwrap() {
        return refusal(status);
    }
    HttpResponse::Ok().json(SignupUrl {
        name: "signupUrls/C1234".into(),
        url: format!(
            "https://enterprise.google.com/signup?token=x&callback={}",
            body.callback_url
        ),
    })
}

async fn enterprises(state: AndroidState, body: web::Json<BindEnterprise>) -> HttpResponse {
    state
        .0
        .lock()
        .unwrap()
        .push(("enterprises".into(), serde_json::to_value(&*body).unwrap()));
    if let Some(status) = *state.1.lock().unwrap() {
        return refusal(status);
    }
    let name = body
        .enterprise_name
        .clone()
        .unwrap_or_else(|| "enterprises/LC0abcdef".into());
    HttpResponse::Ok().json(BoundEnterprise {
        enterprise_name: name,
    })
}
