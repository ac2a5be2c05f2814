//! Inventory and the three adapters, as far as dispatch talks to them.

use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use mdm_api::Service;
use mdm_api::internal::adapter::{CancelAction, DeliverAction, DeviceRemoved};
use mdm_api::internal::inventory::{
    DeviceRecord, DevicesLookup, DevicesLookupResponse, DevicesSelect, DevicesSelectResponse,
    ManagementStateChanged,
};
use mdm_domain::{
    ActionId, DeviceId, EnrollmentId, ManagementMode, ManagementState, OsVersion, Ownership,
    Platform, TenantId, UserId,
};
use mdm_runtime::Module;
use mdm_runtime::inbox::Inbox;

#[derive(Clone, Default)]
pub struct Fakes {
    pub devices: Arc<Mutex<Vec<DeviceRecord>>>,
    pub states: Arc<Mutex<Vec<ManagementStateChanged>>>,
    pub delivered: Arc<Mutex<Vec<DeliverAction>>>,
    pub canceled: Arc<Mutex<Vec<CancelAction>>>,
}

/// A device to add to the fake inventory.
pub struct NewDevice {
    pub platform: Platform,
    pub mode: Option<ManagementMode>,
    pub ownership: Ownership,
    pub os: &'static str,
    pub user: Option<UserId>,
    pub passcode: Option<bool>,
    pub directory_joined: bool,
}

impl NewDevice {
    pub fn new(platform: Platform) -> Self {
        let (mode, os) = match platform {
            Platform::Android => (Some(ManagementMode::FullyManaged), "14"),
            Platform::Windows => (Some(ManagementMode::Desktop), "10.0.19045"),
            Platform::MacOs => (None, "15.1"),
            _ => (None, "18.1"),
        };
        Self {
            platform,
            mode,
            ownership: Ownership::Company,
            os,
            user: None,
            passcode: Some(true),
            directory_joined: false,
        }
    }

    pub fn mode(mut self, mode: ManagementMode) -> Self {
        self.mode = Some(mode);
        self
    }

    pub fn os(mut self, os: &'static str) -> Self {
        self.os = os;
        self
    }

    pub fn user(mut self, user: UserId) -> Self {
        self.user = Some(user);
        self
    }

    pub fn personal(mut self) -> Self {
        self.ownership = Ownership::Personal;
        self
    }

    pub fn passcode(mut self, passcode: Option<bool>) -> Self {
        self.passcode = passcode;
        self
    }
}

impl Fakes {
    pub fn modules(&self) -> Vec<Module> {
        let mut modules = vec![self.inventory()];
        for adapter in [Service::Apple, Service::Android, Service::Windows] {
            modules.push(self.adapter(adapter));
        }
        modules
    }

    pub fn add(&self, tenant: TenantId, device: NewDevice) -> DeviceId {
        let id = DeviceId::new();
        self.devices.lock().unwrap().push(DeviceRecord {
            id,
            tenant_id: tenant,
            enrollment_id: EnrollmentId::new(),
            platform: device.platform,
            os_version: Some(device.os.parse::<OsVersion>().unwrap()),
            ownership: device.ownership,
            management_mode: device.mode,
            management_state: ManagementState::Managed,
            user_id: device.user,
            user_principal_name: None,
            is_passcode_present: device.passcode,
            directory_joined: device.directory_joined,
            manufacturer: None,
            model: None,
            device_name: Some(format!("{} device", device.platform)),
            serial_number: None,
            enrolled_at: DateTime::<Utc>::default(),
            last_sync_at: None,
        });
        id
    }

    pub fn set_state(&self, device: DeviceId, state: ManagementState) {
        for record in self
            .devices
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|d| d.id == device)
        {
            record.management_state = state;
        }
    }

    pub fn delivered_for(&self, action: ActionId) -> usize {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.action_id == action)
            .count()
    }

    pub fn canceled_for(&self, action: ActionId) -> usize {
        self.canceled
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.action_id == action)
            .count()
    }

    pub fn states_of(&self, device: DeviceId) -> Vec<(ManagementState, bool)> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.device_id == device)
            .map(|s| (s.state, s.remove_record))
            .collect()
    }

    fn inventory(&self) -> Module {
        let devices = self.devices.clone();
        let states = self.states.clone();
        let inbox =
            Inbox::new(Service::Inventory).on::<ManagementStateChanged, _>(move |_, _, message| {
                states.lock().unwrap().push(message);
                Ok(None)
            });
        Module::new(Service::Inventory)
            .internal(move |cfg| {
                cfg.app_data(web::Data::new(devices.clone()))
                    .service(web::resource("/devices/lookup").post(lookup))
                    .service(web::resource("/devices/select").post(select));
            })
            .inbox(inbox)
    }

    fn adapter(&self, service: Service) -> Module {
        let delivered = self.delivered.clone();
        let canceled = self.canceled.clone();
        let inbox = Inbox::new(service)
            .on::<DeliverAction, _>(move |_, _, message| {
                delivered.lock().unwrap().push(message);
                Ok(None)
            })
            .on::<CancelAction, _>(move |_, _, message| {
                canceled.lock().unwrap().push(message);
                Ok(None)
            })
            .on::<DeviceRemoved, _>(|_, _, _| Ok(None));
        Module::new(service).inbox(inbox)
    }
}

type Devices = web::Data<Arc<Mutex<Vec<DeviceRecord>>>>;

async fn lookup(devices: Devices, body: web::Json<DevicesLookup>) -> HttpResponse {
    let devices = devices.lock().unwrap();
    let found = devices
        .iter()
        .filter(|d| d.tenant_id == body.tenant_id && body.device_ids.contains(&d.id))
        .cloned()
        .collect();
    HttpResponse::Ok().json(DevicesLookupResponse { devices: found })
}

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
