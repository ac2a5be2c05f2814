//! Autopilot registrations and the Managed Desktop removal.

use chrono::Duration;
use mdm_api::Service;
use mdm_api::internal::inventory::{DeviceFacts, DeviceFactsReported};
use mdm_domain::{MdmAuthority, Platform, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Enrol, Harness, assert_problem};

const IDENTITIES: &str = "/api/v1/deviceManagement/windowsAutopilotDeviceIdentities";
const DESKTOPS: &str = "/api/v1/deviceManagement/managedDesktopDevices";
/// A stand-in hardware hash (base64).
const HASH: &str = "T0EzMBAAHAAAAAoAHgAAAAAAAAAAAAA=";

async fn register(h: &Harness, token: &str, serial: &str) -> Value {
    let body = json!({ "serialNumber": serial, "hardwareIdentifier": HASH, "groupTag": "Sales" });
    let (status, identity) = h.call(Method::POST, IDENTITIES, token, Some(body)).await;
    assert_eq!(status, 201, "{identity}");
    identity
}

test_on_both_backends! {
    async fn registrations_are_pending_then_registered_and_find_their_device(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let early = h.enrol(Enrol::new(tenant, Platform::Windows).serial("SN-EARLY")).await;
        // An iOS device with the same serial is not an Autopilot device.
        h.enrol(Enrol::new(tenant, Platform::Ios).serial("SN-LATE")).await;

        let first = register(&h, &admin, "SN-EARLY").await;
        assert_eq!(first["state"], "pending");
        assert_eq!(first["managedDeviceId"], early.to_string(), "linked at registration");
        assert_eq!(first["groupTag"], "Sales");
        let second = register(&h, &admin, "SN-LATE").await;
        assert!(second["managedDeviceId"].is_null());
        let path = format!("{IDENTITIES}/{}", second["id"].as_str().unwrap());

        // Linked when the Windows device enrols, or reports its serial number later.
        let late = h.enrol(Enrol::new(tenant, Platform::Windows)).await;
        h.send(Service::Windows, &[DeviceFactsReported { device_id: late, facts: DeviceFacts { serial_number: Some("SN-LATE".into()), ..DeviceFacts::default() }, at: h.now() }]).await;
        let (_, identity) = h.get(&path, &admin).await;
        assert_eq!(identity["managedDeviceId"], late.to_string());

        // Pending until processed (300 s by default), then registered: the clock decides.
        assert_problem(&h.call(Method::DELETE, &path, &admin, None).await, 409, "registration_pending");
        h.app.clock.advance(Duration::seconds(301));
        assert_eq!(h.get(&path, &admin).await.1["state"], "registered");
        let (_, all) = h.get(IDENTITIES, &admin).await;
        assert_eq!(all["value"].as_array().unwrap().len(), 2);

        // Serial numbers are unique per tenant; fields are checked.
        let dup = h.call(Method::POST, IDENTITIES, &admin, Some(json!({ "serialNumber": "SN-EARLY", "hardwareIdentifier": HASH }))).await;
        assert_problem(&dup, 409, "serial_number_registered");
        let (other_tenant, other) = h.admin();
        register(&h, &other, "SN-EARLY").await;
        for bad in [json!({ "serialNumber": "", "hardwareIdentifier": HASH }), json!({ "serialNumber": "X", "hardwareIdentifier": "not base64!" })] {
            assert_problem(&h.call(Method::POST, IDENTITIES, &admin, Some(bad)).await, 422, "validation_failed");
        }
        assert_problem(&h.call(Method::POST, IDENTITIES, &h.token(Role::Helpdesk, tenant), Some(json!({ "serialNumber": "Y", "hardwareIdentifier": HASH }))).await, 403, "forbidden");
        assert_problem(&h.get(&path, &other).await, 404, "not_found");

        assert_eq!(h.call(Method::DELETE, &path, &admin, None).await.0, 204);
        assert_problem(&h.get(&path, &admin).await, 404, "not_found");
        let _ = other_tenant;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn managed_desktop_removal_takes_registration_groups_and_optionally_management(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let kept = h.enrol(Enrol::new(tenant, Platform::Windows).serial("SN-1").user(ada, "ada@contoso.example")).await;
        let dropped = h.enrol(Enrol::new(tenant, Platform::Windows).serial("SN-2").user(ada, "ada@contoso.example")).await;
        let one = register(&h, &admin, "SN-1").await;
        let two = register(&h, &admin, "SN-2").await;
        let (_, group) = h.call(Method::POST, "/api/v1/groups", &admin, Some(json!({ "displayName": "Modern Workplace" }))).await;
        let group = group["id"].as_str().unwrap().to_owned();
        for device in [kept, dropped] {
            assert_eq!(h.call(Method::POST, &format!("/api/v1/groups/{group}/members/{device}"), &admin, None).await.0, 204);
        }
        let (status, list) = h.get(DESKTOPS, &admin).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["value"][0]["managedDeviceId"], kept.to_string());
        assert_eq!(list["value"][0]["registrationState"], "pending");
        assert_eq!(list["value"][0]["userPrincipalName"], "ada@contoso.example");

        let remove = |id: &Value| format!("{DESKTOPS}/{}/remove", id["id"].as_str().unwrap());
        let refused = h.call(Method::POST, &remove(&one), &admin, Some(json!({}))).await;
        assert_problem(&refused, 409, "registration_pending");
        h.app.clock.advance(Duration::minutes(6));
        assert_problem(&h.call(Method::POST, &remove(&one), &h.token(Role::Helpdesk, tenant), Some(json!({}))).await, 403, "forbidden");

        // Without the option: the registration and the memberships go, the rest stays.
        let (status, outcome) = h.call(Method::POST, &remove(&one), &admin, Some(json!({}))).await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["groupMembershipsRemoved"], 1);
        assert_eq!(outcome["managementRemovalRequested"], false);
        assert_problem(&h.get(&format!("{IDENTITIES}/{}", one["id"].as_str().unwrap()), &admin).await, 404, "not_found");
        let (_, device) = h.get(&format!("/api/v1/deviceManagement/managedDevices/{kept}"), &admin).await;
        assert_eq!(device["managementState"], "managed");
        let (_, records) = h.get(&format!("/api/v1/directory/devices?userId={ada}"), &admin).await;
        assert_eq!(records["value"].as_array().unwrap().len(), 2);

        // Under hybrid authority the admin may not delete: nothing at all is removed.
        h.fakes.set_authority(tenant, MdmAuthority::Hybrid);
        let also = json!({ "alsoDeleteFromDirectoryAndManagement": true });
        let refused = h.call(Method::POST, &remove(&two), &admin, Some(also.clone())).await;
        assert_problem(&refused, 409, "hybrid_authority_read_only");
        assert_eq!(h.get(&format!("/api/v1/groups/{group}"), &admin).await.1["memberCount"], 1);
        assert_eq!(h.get(&format!("{IDENTITIES}/{}", two["id"].as_str().unwrap()), &admin).await.0, 200);

        // With the option: also the directory record and management (deletePending).
        h.fakes.set_authority(tenant, MdmAuthority::Standalone);
        let (status, outcome) = h.call(Method::POST, &remove(&two), &admin, Some(also)).await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!((outcome["directoryRecordRemoved"].clone(), outcome["managementRemovalRequested"].clone()), (json!(true), json!(true)));
        assert_eq!(h.get(&format!("/api/v1/groups/{group}"), &admin).await.1["memberCount"], 0);
        let (_, device) = h.get(&format!("/api/v1/deviceManagement/managedDevices/{dropped}"), &admin).await;
        assert_eq!(device["managementState"], "deletePending");
        let (_, records) = h.get(&format!("/api/v1/directory/devices?userId={ada}"), &admin).await;
        assert_eq!(records["value"].as_array().unwrap().len(), 1);
        h.fakes.wait_for(Service::Dispatch, "dispatch.delete_requested", |m| m["deviceId"] == dropped.to_string()).await;
        h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "managedDesktopDevice.removed" && m["deviceId"] == dropped.to_string()).await;
        let (_, list) = h.get(DESKTOPS, &admin).await;
        assert!(list["value"].as_array().unwrap().is_empty(), "{list}");
        h.app.stop().await;
    }
}
