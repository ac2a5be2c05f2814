//! Deleting a device: capability check, `deletePending`, dispatch's retire, the record's
//! removal, and the clean-up of deletes the device never completes.

use chrono::Duration;
use mdm_api::Service;
use mdm_api::internal::enrollment::PolicyChanged;
use mdm_api::internal::inventory::{DevicesSeen, ManagementStateChanged, Seen};
use mdm_domain::{ActionId, DeviceId, ManagementState, MdmAuthority, Platform, Role};
use mdm_inventory::cleanup::INACTIVITY_JOB;
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Enrol, Harness, assert_problem, eager, quiet};

const DEVICES: &str = "/api/v1/deviceManagement/managedDevices";

async fn delete(h: &Harness, id: DeviceId, token: &str) -> (reqwest::StatusCode, Value) {
    h.call(Method::DELETE, &format!("{DEVICES}/{id}"), token, None)
        .await
}

test_on_both_backends! {
    async fn a_delete_retires_through_dispatch_then_removes_the_record(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let id = h.enrol(Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example")).await;
        let (_, group) = h.call(Method::POST, "/api/v1/groups", &admin, Some(json!({ "displayName": "Sales" }))).await;
        let group = group["id"].as_str().unwrap().to_owned();
        assert_eq!(h.call(Method::POST, &format!("/api/v1/groups/{group}/members/{id}"), &admin, None).await.0, 204);

        let (status, device) = delete(&h, id, &admin).await;
        assert_eq!(status, 202, "{device}");
        assert_eq!(device["managementState"], "deletePending");
        let requested = h.fakes.wait_for(Service::Dispatch, "dispatch.delete_requested", |m| m["deviceId"] == id.to_string()).await;
        assert_eq!(requested["tenantId"], tenant.to_string());
        let audit = h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "device.delete").await;
        assert_eq!((audit["deviceId"].clone(), audit["outcome"].clone()), (json!(id), json!("success")));

        // A second delete while the first is pending.
        let again = delete(&h, id, &admin).await;
        assert_problem(&again, 409, "device_removal_pending");
        h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["outcome"] == "refused" && m["detail"]["code"] == "device_removal_pending").await;

        // The device still checks in (and holds its slot) until dispatch reports the retire done.
        let (_, counts) = h.internal(Method::POST, "/users/deviceCounts", Some(json!({ "tenantId": tenant, "userIds": [ada] }))).await;
        assert_eq!(counts["counts"][0]["count"], 1);
        let done = ManagementStateChanged { device_id: id, state: ManagementState::Retired, action_id: Some(ActionId::new()), remove_record: true, at: h.now() };
        h.send(Service::Dispatch, std::slice::from_ref(&done)).await;
        assert_problem(&h.get(&format!("{DEVICES}/{id}"), &admin).await, 404, "not_found");
        let (_, counts) = h.internal(Method::POST, "/users/deviceCounts", Some(json!({ "tenantId": tenant, "userIds": [ada] }))).await;
        assert_eq!(counts["counts"][0]["count"], 0, "the slot is free");
        let (_, group) = h.get(&format!("/api/v1/groups/{group}"), &admin).await;
        assert_eq!(group["memberCount"], 0);
        let removed = h.fakes.wait_for(Service::Apple, "adapter.device_removed", |m| m["deviceId"] == id.to_string()).await;
        assert_eq!(removed["family"], "apple");
        // Dispatch sending it again (a redelivery under a new key) changes nothing.
        h.send(Service::Dispatch, &[done]).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn an_authority_change_applies_at_once_despite_the_policy_cache(db) {
        let config = mdm_inventory::Config { policy_cache_secs: 3600, ..quiet() };
        let h = Harness::start_with(db, config, |_| {}).await;
        let (tenant, admin) = h.admin();
        let first = h.enrol(Enrol::new(tenant, Platform::Ios)).await;
        let second = h.enrol(Enrol::new(tenant, Platform::Ios)).await;
        assert_eq!(delete(&h, first, &admin).await.0, 202, "standalone, now cached for an hour");

        h.fakes.set_authority(tenant, MdmAuthority::Hybrid);
        assert_eq!(delete(&h, second, &admin).await.0, 202, "the cached policy still answers");
        let third = h.enrol(Enrol::new(tenant, Platform::Ios)).await;
        let changed = PolicyChanged { tenant_id: tenant, consumer: Service::Inventory };
        h.send(Service::Enrollment, &[changed]).await;
        assert_problem(&delete(&h, third, &admin).await, 409, "hybrid_authority_read_only");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_delete_is_refused_by_the_capability_rules(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let id = h.enrol(Enrol::new(tenant, Platform::MacOs)).await;

        assert_problem(&delete(&h, id, &h.token(Role::Helpdesk, tenant)).await, 403, "forbidden");
        assert_problem(&delete(&h, id, &h.token(Role::Reader, tenant)).await, 403, "forbidden");
        let (_, stranger) = h.admin();
        assert_problem(&delete(&h, id, &stranger).await, 404, "not_found");

        // Under hybrid authority admins are read-only for device actions; the
        // configuration manager's connector token may delete.
        h.fakes.set_authority(tenant, MdmAuthority::Hybrid);
        let refused = delete(&h, id, &admin).await;
        assert_problem(&refused, 409, "hybrid_authority_read_only");
        let (_, device) = h.get(&format!("{DEVICES}/{id}"), &admin).await;
        assert_eq!(device["managementState"], "managed", "nothing changed");
        assert!(h.fakes.messages(Service::Dispatch, "dispatch.delete_requested").is_empty());
        let connector = h.token(Role::Connector, tenant);
        assert_eq!(delete(&h, id, &connector).await.0, 202);

        // Office 365 authority does not manage Macs at all.
        let o365 = h.fakes.tenant(MdmAuthority::Office365);
        let mac = h.enrol(Enrol::new(o365, Platform::MacOs)).await;
        let refused = delete(&h, mac, &h.token(Role::Admin, o365)).await;
        assert_problem(&refused, 409, "authority_disallows_action");
        // Authority `none` still allows a delete.
        let none = h.fakes.tenant(MdmAuthority::None);
        let phone = h.enrol(Enrol::new(none, Platform::Android)).await;
        assert_eq!(delete(&h, phone, &h.token(Role::Admin, none)).await.0, 202);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_delete_the_device_never_completes_is_cleaned_up(db) {
        let h = Harness::start_with(db, eager(), |_| {}).await;
        // Tenant A has no inactivity rule: the fallback window is 90 days.
        let (a, admin_a) = h.admin();
        let silent = h.enrol(Enrol::new(a, Platform::Android)).await;
        let talking = h.enrol(Enrol::new(a, Platform::Android)).await;
        // Tenant B's rule is 180 days: its deletes wait that long.
        let (b, admin_b) = h.admin();
        let (status, _) = h.call(Method::PUT, "/api/v1/deviceManagement/managedDeviceCleanupSettings", &admin_b,
            Some(json!({ "deviceInactivityBeforeRetirementInDays": 180 }))).await;
        assert_eq!(status, 200);
        let slow = h.enrol(Enrol::new(b, Platform::Windows)).await;
        for (id, token) in [(silent, &admin_a), (talking, &admin_a), (slow, &admin_b)] {
            assert_eq!(delete(&h, id, token).await.0, 202);
        }

        h.app.clock.advance(Duration::days(60));
        // `talking` checks in (its retire is still on its way to it).
        let at = h.now();
        h.send(Service::Android, &[DevicesSeen { seen: vec![Seen { device_id: talking, at }] }]).await;
        h.app.clock.advance(Duration::days(31));
        h.run_job(INACTIVITY_JOB).await;
        assert_problem(&h.get(&format!("{DEVICES}/{silent}"), &admin_a).await, 404, "not_found");
        assert_eq!(h.get(&format!("{DEVICES}/{talking}"), &admin_a).await.0, 200, "it checked in 31 days ago");
        assert_eq!(h.get(&format!("{DEVICES}/{slow}"), &admin_b).await.1["managementState"], "deletePending");
        let removed = h.fakes.wait_for(Service::Dispatch, "dispatch.devices_removed", |m| m["deviceIds"] == json!([silent])).await;
        assert_eq!(removed["tenantId"], a.to_string());
        h.fakes.wait_for(Service::Android, "adapter.device_removed", |m| m["deviceId"] == silent.to_string()).await;
        let audit = h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "device.cleanedUp").await;
        assert_eq!((audit["actor"].clone(), audit["detail"]["rule"].clone()), (json!("system"), json!("deletePending")));

        h.app.clock.advance(Duration::days(90));
        h.run_job(INACTIVITY_JOB).await;
        assert_problem(&h.get(&format!("{DEVICES}/{slow}"), &admin_b).await, 404, "not_found");
        assert_problem(&h.get(&format!("{DEVICES}/{talking}"), &admin_a).await, 404, "not_found");
        h.app.stop().await;
    }
}
