//! Directory records: created at enrollment, separate from management, counted for the
//! device limit.

use mdm_api::Service;
use mdm_api::internal::inventory::{DeviceUnenrolled, ManagementStateChanged, UnenrollReason};
use mdm_domain::{ManagementState, Platform, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Enrol, Harness, assert_problem, ids};

const RECORDS: &str = "/api/v1/directory/devices";

async fn slots(
    h: &Harness,
    tenant: mdm_domain::TenantId,
    users: &[mdm_domain::UserId],
    exclude: &[mdm_domain::DeviceId],
) -> Vec<u64> {
    let (status, body) = h
        .internal(
            Method::POST,
            "/users/deviceCounts",
            Some(json!({ "tenantId": tenant, "userIds": users, "exclude": exclude })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .collect()
}

fn record_of(page: &Value, device: mdm_domain::DeviceId) -> Value {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["managedDeviceId"] == device.to_string())
        .cloned()
        .unwrap_or(Value::Null)
}

test_on_both_backends! {
    async fn deleting_a_directory_record_frees_the_slot_but_keeps_management(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let grace = h.fakes.user(tenant, "grace@contoso.example");
        let phone = h.enrol(Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example")).await;
        let laptop = h.enrol(Enrol::new(tenant, Platform::Windows).user(ada, "ada@contoso.example")).await;
        let kiosk = h.enrol(Enrol::new(tenant, Platform::Android)).await;
        assert_eq!(slots(&h, tenant, &[ada, grace], &[]).await, vec![2, 0]);
        assert_eq!(slots(&h, tenant, &[ada], &[laptop]).await, vec![1], "a device enrolling again keeps its own slot");
        let (other_tenant, other) = h.admin();
        assert_eq!(slots(&h, other_tenant, &[ada], &[]).await, vec![0], "slots are per tenant");

        let (status, page) = h.get(RECORDS, &admin).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["value"].as_array().unwrap().len(), 3);
        let record = record_of(&page, phone);
        assert_eq!(record["displayName"], "iOS device");
        assert_eq!(record["operatingSystem"], "iOS");
        assert_eq!(record["userId"], ada.to_string());
        let (_, mine) = h.get(&format!("{RECORDS}?userId={ada}"), &admin).await;
        assert_eq!(mine["value"].as_array().unwrap().len(), 2);
        let (_, first) = h.get(&format!("{RECORDS}?top=2"), &admin).await;
        let (_, second) = h.get(first["nextLink"].as_str().unwrap(), &admin).await;
        assert_eq!(ids(&first).len() + ids(&second).len(), 3);
        assert!(second["nextLink"].is_null());

        // Deleting the record: at once, the slot is free, management untouched.
        let record_id = record["id"].as_str().unwrap().to_owned();
        assert_problem(&h.call(Method::DELETE, &format!("{RECORDS}/{record_id}"), &h.token(Role::Helpdesk, tenant), None).await, 403, "forbidden");
        assert_problem(&h.call(Method::DELETE, &format!("{RECORDS}/{record_id}"), &other, None).await, 404, "not_found");
        assert_eq!(h.call(Method::DELETE, &format!("{RECORDS}/{record_id}"), &admin, None).await.0, 204);
        assert_eq!(slots(&h, tenant, &[ada], &[]).await, vec![1]);
        let (_, device) = h.get(&format!("/api/v1/deviceManagement/managedDevices/{phone}"), &admin).await;
        assert_eq!(device["managementState"], "managed");
        assert_problem(&h.call(Method::DELETE, &format!("{RECORDS}/{record_id}"), &admin, None).await, 404, "not_found");
        h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "directoryDevice.deleted" && m["deviceId"] == phone.to_string()).await;

        // Enrolling again gives the device a record again.
        let again = Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example").message(phone, h.now());
        h.send(Service::Apple, &[again]).await;
        assert_eq!(slots(&h, tenant, &[ada], &[]).await, vec![2]);
        let _ = kiosk;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn retire_wipe_and_unenrollment_remove_the_record(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let enrol = Enrol::new(tenant, Platform::Android).user(ada, "ada@contoso.example");
        let retired = h.enrol(enrol.clone()).await;
        let wiped = h.enrol(enrol.clone()).await;
        let gone = h.enrol(enrol.clone()).await;
        let pending = h.enrol(enrol).await;
        assert_eq!(slots(&h, tenant, &[ada], &[]).await, vec![4]);

        let change = |device, state| ManagementStateChanged { device_id: device, state, action_id: None, remove_record: false, at: h.now() };
        // A retire under way keeps the slot; done, it frees it.
        h.send(Service::Dispatch, &[change(pending, ManagementState::RetirePending), change(retired, ManagementState::Retired), change(wiped, ManagementState::Wiped)]).await;
        h.send(Service::Android, &[DeviceUnenrolled { device_id: gone, reason: UnenrollReason::Vanished, at: h.now() }]).await;
        assert_eq!(slots(&h, tenant, &[ada], &[]).await, vec![1]);
        let (_, page) = h.get(RECORDS, &admin).await;
        assert_eq!(page["value"].as_array().unwrap().len(), 1);
        assert!(!record_of(&page, pending).is_null());
        for (device, state) in [(retired, "retired"), (wiped, "wiped"), (gone, "unenrolled"), (pending, "retirePending")] {
            let (_, body) = h.get(&format!("/api/v1/deviceManagement/managedDevices/{device}"), &admin).await;
            assert_eq!(body["managementState"], state, "the managed device stays visible");
        }
        h.app.stop().await;
    }
}
