//! The enrollment gate through the internal API: every reason it denies.

use mdm_domain::{DeviceId, ManagementState, MdmAuthority, Ownership, Platform, TenantId, UserId};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::Harness;
use crate::authority::set;
use crate::prerequisites::{bind_android, push_certificate, upload};

/// Asks the gate about one device.
pub async fn gate_one(
    h: &Harness,
    tenant: TenantId,
    platform: Platform,
    user: Option<UserId>,
) -> Value {
    let check =
        json!({ "tenantId": tenant, "platform": platform, "ownership": "company", "userId": user });
    let (status, body) = h
        .internal(Method::POST, "/gate", Some(json!({ "checks": [check] })))
        .await;
    assert_eq!(status, 200, "{body}");
    body["decisions"][0].clone()
}

async fn gate(h: &Harness, checks: Vec<Value>) -> Vec<Value> {
    let (status, body) = h
        .internal(Method::POST, "/gate", Some(json!({ "checks": checks })))
        .await;
    assert_eq!(status, 200, "{body}");
    body["decisions"].as_array().unwrap().clone()
}

/// Standalone authority with every platform's prerequisite in place.
pub async fn allow_everything(h: &Harness, tenant: TenantId, admin: &str) {
    set(h, admin, MdmAuthority::Standalone).await;
    let (cert, key) = push_certificate(
        "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555",
        h.app.clock.now(),
        365,
    );
    let (status, body) = upload(
        h,
        admin,
        json!({ "certificate": cert, "privateKey": key, "dataSharingConsent": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    bind_android(h, admin).await;
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/deviceManagement/windowsEnrollment/bulkEnrollmentSecret",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let _ = tenant;
}

async fn user(h: &Harness, admin: &str, upn: &str, licensed: bool) -> UserId {
    let body = json!({ "userPrincipalName": upn, "displayName": upn, "licensed": licensed });
    let (status, user) = h
        .call(Method::POST, "/api/v1/users", admin, Some(body))
        .await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_str().unwrap().parse().unwrap()
}

test_on_both_backends! {
    async fn the_gate_allows_a_device_that_meets_everything(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        allow_everything(&h, tenant, &admin).await;
        let ada = user(&h, &admin, "ada@contoso.example", true).await;
        for platform in Platform::ALL {
            let decision = gate_one(&h, tenant, *platform, Some(ada)).await;
            assert_eq!(decision["allowed"], true, "{platform}: {decision}");
            assert_eq!(decision["userPrincipalName"], "ada@contoso.example");
        }
        // Userless devices (kiosks, bulk-enrolled PCs) need no user checks.
        assert_eq!(gate_one(&h, tenant, Platform::Windows, None).await["allowed"], true);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn each_denial_reason(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let denial = |d: Value| d["denial"].as_str().unwrap_or("allowed").to_owned();

        assert_eq!(denial(gate_one(&h, TenantId::new(), Platform::Ios, None).await), "tenant_unknown");
        assert_eq!(denial(gate_one(&h, tenant, Platform::Ios, None).await), "authority_disallows_enrollment");

        set(&h, &admin, MdmAuthority::Standalone).await;
        // No APNs certificate, no Android Enterprise, no bulk credentials yet.
        assert_eq!(denial(gate_one(&h, tenant, Platform::Ios, None).await), "prerequisite_missing");
        assert_eq!(denial(gate_one(&h, tenant, Platform::Android, None).await), "prerequisite_missing");
        assert_eq!(denial(gate_one(&h, tenant, Platform::Windows, None).await), "prerequisite_missing");
        let ada = user(&h, &admin, "ada@contoso.example", true).await;
        assert_eq!(denial(gate_one(&h, tenant, Platform::Windows, Some(ada)).await), "allowed", "Windows enrollment is on by default");
        let off = json!({ "automaticEnrollment": false, "authenticationPolicy": "OnPremise" });
        assert_eq!(h.call(Method::PUT, "/api/v1/deviceManagement/windowsEnrollment", &admin, Some(off)).await.0, 200);
        assert_eq!(denial(gate_one(&h, tenant, Platform::Windows, Some(ada)).await), "prerequisite_missing");

        allow_everything(&h, tenant, &admin).await;
        let restrictions = json!({ "deviceLimitPerUser": 2, "platforms": [
            { "platform": "iOS", "allowed": false, "personalDevicesAllowed": false },
            { "platform": "Android", "allowed": true, "personalDevicesAllowed": false },
        ]});
        let (status, body) = h.call(Method::PUT, "/api/v1/deviceManagement/enrollmentRestrictions", &admin, Some(restrictions)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(denial(gate_one(&h, tenant, Platform::Ios, None).await), "platform_not_allowed");
        let personal = json!({ "tenantId": tenant, "platform": "Android", "ownership": Ownership::Personal });
        assert_eq!(denial(gate(&h, vec![personal]).await.remove(0)), "personal_devices_not_allowed");

        assert_eq!(denial(gate_one(&h, tenant, Platform::MacOs, Some(UserId::new())).await), "user_unknown");
        let grace = user(&h, &admin, "grace@contoso.example", false).await;
        assert_eq!(denial(gate_one(&h, tenant, Platform::MacOs, Some(grace)).await), "user_not_licensed");

        // The limit counts the user's slots in inventory, and the batch's own allowances.
        h.fakes.add_device(tenant, Platform::Android, Some(ada), ManagementState::Managed);
        let check = json!({ "tenantId": tenant, "platform": "macOS", "ownership": "company", "userId": ada });
        let decisions = gate(&h, vec![check.clone(), check.clone()]).await;
        assert_eq!((denial(decisions[0].clone()), denial(decisions[1].clone())), ("allowed".into(), "device_limit_reached".into()));
        assert!(decisions[1]["detail"].as_str().unwrap().contains("limit is 2"));

        // Retired, wiped and unenrolled devices give their slot back.
        h.fakes.add_device(tenant, Platform::Ios, Some(ada), ManagementState::Retired);
        h.fakes.add_device(tenant, Platform::Ios, Some(ada), ManagementState::Wiped);
        assert_eq!(denial(gate_one(&h, tenant, Platform::MacOs, Some(ada)).await), "allowed");

        // A device enrolling again already holds its slot.
        let second = h.fakes.add_device(tenant, Platform::MacOs, Some(ada), ManagementState::Managed);
        assert_eq!(denial(gate_one(&h, tenant, Platform::MacOs, Some(ada)).await), "device_limit_reached");
        let again = json!({ "tenantId": tenant, "platform": "macOS", "ownership": "company", "userId": ada, "deviceId": second });
        assert_eq!(denial(gate(&h, vec![again]).await.remove(0)), "allowed");
        let _ = DeviceId::new();
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_device_limit_is_1_to_15(db) {
        let h = Harness::start(db).await;
        let (_, admin) = h.admin("Contoso").await;
        for bad in [0, 16] {
            let body = json!({ "deviceLimitPerUser": bad, "platforms": [] });
            let answer = h.call(Method::PUT, "/api/v1/deviceManagement/enrollmentRestrictions", &admin, Some(body)).await;
            crate::assert_problem(&answer, 422, "validation_failed");
        }
        let (status, body) = h.call(Method::GET, "/api/v1/deviceManagement/enrollmentRestrictions", &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["deviceLimitPerUser"], 5, "the default");
        assert_eq!(body["platforms"].as_array().unwrap().len(), 5);
        h.app.stop().await;
    }
}
