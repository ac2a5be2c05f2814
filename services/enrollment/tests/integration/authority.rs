//! The MDM authority: every value, every change between them.

use mdm_domain::{ManagementState, MdmAuthority, Platform};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::gate::{allow_everything, gate_one};
use crate::{Harness, assert_problem};

test_on_both_backends! {
    async fn a_new_tenant_starts_at_none_and_none_blocks_enrollment(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let (status, body) = h.call(Method::GET, "/api/v1/organization/mdmAuthority", &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({ "mobileDeviceManagementAuthority": "none" }));
        let decision = gate_one(&h, tenant, Platform::Android, None).await;
        assert_eq!(decision["allowed"], false);
        assert_eq!(decision["denial"], "authority_disallows_enrollment");
        assert!(decision["detail"].as_str().unwrap().contains("authority"));
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn every_change_between_authorities_keeps_enrollments(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Fabrikam").await;
        allow_everything(&h, tenant, &admin).await;
        let devices: Vec<_> = [Platform::Ios, Platform::MacOs, Platform::Android, Platform::Windows]
            .into_iter()
            .map(|p| h.fakes.add_device(tenant, p, None, ManagementState::Managed))
            .collect();
        let authorities = MdmAuthority::ALL;
        for from in authorities {
            for to in authorities {
                set(&h, &admin, *from).await;
                set(&h, &admin, *to).await;
                let (status, body) = h.call(Method::GET, "/api/v1/organization/mdmAuthority", &admin, None).await;
                assert_eq!((status.as_u16(), body["mobileDeviceManagementAuthority"].as_str()), (200, Some(to.as_str())));

                // Nothing is asked of devices: they keep their enrollment.
                let still: Vec<_> = h.fakes.devices.lock().unwrap().iter().map(|d| (d.id, d.management_state)).collect();
                assert_eq!(still.len(), devices.len());
                assert!(still.iter().all(|(_, s)| *s == ManagementState::Managed));

                // The new capability set applies at once: enrollment follows the authority.
                let mac = gate_one(&h, tenant, Platform::MacOs, None).await;
                let android = gate_one(&h, tenant, Platform::Android, None).await;
                match to {
                    MdmAuthority::None => {
                        assert_eq!(android["denial"], "authority_disallows_enrollment");
                        assert_eq!(mac["denial"], "authority_disallows_enrollment");
                    }
                    MdmAuthority::Office365 => {
                        assert_eq!(android["allowed"], true);
                        assert_eq!(mac["denial"], "platform_not_allowed", "no macOS under office365");
                    }
                    MdmAuthority::Standalone | MdmAuthority::Hybrid => {
                        assert_eq!(android["allowed"], true);
                        assert_eq!(mac["allowed"], true);
                    }
                }
            }
        }
        // Each change told the services that cache tenant policy, and the audit trail.
        let for_tenant = |m: &serde_json::Value| m["tenantId"] == tenant.to_string();
        let to_dispatch = h.fakes.dispatch_received("enrollment.policy_changed", for_tenant).await;
        assert_eq!(to_dispatch["consumer"], "dispatch");
        let to_inventory = h.fakes.inventory_received("enrollment.policy_changed", for_tenant).await;
        assert_eq!(to_inventory["consumer"], "inventory");
        let audited = h.fakes.dispatch_received("dispatch.audit_event", |m| m["activity"] == "authority.changed").await;
        assert!(audited["detail"]["from"].is_string() && audited["detail"]["to"].is_string());
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn only_settings_managers_change_the_authority(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant("Litware").await;
        let reader = h.token(mdm_domain::Role::Reader, Some(tenant)).await;
        let reader = reader["secret"].as_str().unwrap();
        let body = json!({ "mobileDeviceManagementAuthority": "standalone" });
        assert_problem(&h.call(Method::PUT, "/api/v1/organization/mdmAuthority", reader, Some(body)).await, 403, "forbidden");
        let bad = json!({ "mobileDeviceManagementAuthority": "intune" });
        let (admin_tenant, admin) = h.admin("Other").await;
        let _ = admin_tenant;
        assert_problem(&h.call(Method::PUT, "/api/v1/organization/mdmAuthority", &admin, Some(bad)).await, 422, "validation_failed");
        // An operator must name the tenant.
        let (status, body) = h.call(Method::GET, "/api/v1/organization/mdmAuthority", &h.operator, None).await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("tenant_required")));
        h.app.stop().await;
    }
}

pub async fn set(h: &Harness, admin: &str, authority: MdmAuthority) {
    let body = json!({ "mobileDeviceManagementAuthority": authority });
    let (status, answer) = h
        .call(
            Method::PUT,
            "/api/v1/organization/mdmAuthority",
            admin,
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}
