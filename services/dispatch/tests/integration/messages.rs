//! Messages from the other services.

use std::time::Duration;

use mdm_api::Service;
use mdm_api::internal::dispatch::{AuditEvent, DeleteRequested, DevicesRemoved};
use mdm_domain::{ActionState, DeviceId, ManagementMode, MdmAuthority, Platform};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fakes::NewDevice;
use crate::{Harness, assert_problem, dispatch_config, eventually};

async fn actions_of(h: &Harness, device: DeviceId) -> Vec<Value> {
    h.results(device).await
}

test_on_both_backends! {
    async fn a_delete_from_inventory_retires_then_removes_the_record(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let now = h.app.clock.now();
        let message = DeleteRequested { tenant_id: h.tenant, device_id: phone, requested_by: "token".into(), at: now };
        h.send(Service::Inventory, "delete-1", &message).await;
        eventually("the delete is sent", || h.fakes.delivered.lock().unwrap().iter().any(|d| d.device_id == phone && d.kind == mdm_domain::ActionKind::Delete)).await;
        let action = h.fakes.delivered.lock().unwrap().iter().find(|d| d.device_id == phone).unwrap().action_id;
        h.report(action, phone, ActionState::Done, None).await;
        eventually("the record goes", || h.fakes.states_of(phone).iter().any(|(_, remove)| *remove)).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_removed_licence_unenrols_the_users_devices(db) {
        let h = Harness::start(db).await;
        let ada = h.user("ada@contoso.example", true).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios).user(ada));
        let mac = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs).user(ada));
        let kiosk = h.fakes.add(h.tenant, NewDevice::new(Platform::Android).mode(ManagementMode::Dedicated).user(ada));
        let (status, _) = h.call(Method::POST, &format!("/api/v1/users/{ada}/removeLicense"), &h.admin, None).await;
        assert_eq!(status, 200);
        // Enrollment tells dispatch through its outbox; every device that can be retired is.
        eventually("retires sent", || {
            let delivered = h.fakes.delivered.lock().unwrap();
            [phone, mac].iter().all(|d| delivered.iter().any(|a| a.device_id == *d && a.kind == mdm_domain::ActionKind::Retire))
        })
        .await;
        assert!(!h.fakes.delivered.lock().unwrap().iter().any(|a| a.device_id == kiosk), "a kiosk cannot be retired");
        let retire = &actions_of(&h, phone).await[0];
        assert_eq!(retire["actionName"], "retire");
        // From now on nothing reaches them.
        assert_problem(&h.act(phone, "remoteLock", None).await, 409, "user_not_licensed");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn removed_devices_end_their_open_actions(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let (_, lock) = h.act(phone, "remoteLock", None).await;
        let message = DevicesRemoved { tenant_id: h.tenant, device_ids: vec![phone], at: h.app.clock.now() };
        h.send(Service::Inventory, "removed-1", &message).await;
        let results = actions_of(&h, phone).await;
        assert_eq!(results[0]["id"], lock["id"]);
        assert_eq!((results[0]["actionState"].as_str(), results[0]["errorCode"].as_str()), (Some("canceled"), Some("device_removed")));
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn every_services_audit_events_land_in_one_trail(db) {
        let h = Harness::start(db).await;
        let event = AuditEvent {
            id: uuid::Uuid::now_v7(),
            tenant_id: Some(h.tenant),
            actor: "token-x".into(),
            actor_role: Some("admin".into()),
            activity: "directoryDevice.deleted".into(),
            target_type: "directoryDevice".into(),
            target_id: "d-1".into(),
            device_id: None,
            outcome: "success".into(),
            detail: json!({ "note": "from inventory" }),
            remote_addr: Some("10.0.0.1".into()),
            at: h.app.clock.now(),
        };
        h.send(Service::Inventory, &format!("audit:{}", event.id), &event).await;
        // The same event again is kept once.
        h.send(Service::Inventory, &format!("audit:{}:again", event.id), &event).await;
        let (_, trail) = h.call(Method::GET, "/api/v1/auditEvents?activity=directoryDevice.deleted", &h.admin, None).await;
        let found = trail["value"].as_array().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0]["actor"].as_str(), found[0]["remoteAddress"].as_str()), (Some("token-x"), Some("10.0.0.1")));
        // Enrollment's own events arrive through its outbox (the authority change below).
        h.set_authority(MdmAuthority::Office365).await;
        let mut seen = false;
        for _ in 0..200 {
            let (_, trail) = h.call(Method::GET, "/api/v1/auditEvents?activity=authority.changed", &h.admin, None).await;
            if !trail["value"].as_array().unwrap().is_empty() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen);
        // Another tenant sees none of it.
        let (_, other) = h.call(Method::GET, "/api/v1/auditEvents", &h.operator, None).await;
        assert_eq!(other["code"], "tenant_required");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn an_authority_change_applies_at_once_despite_the_cache(db) {
        let config = mdm_dispatch::Config { policy_cache_secs: 3600, ..dispatch_config() };
        let h = Harness::start_configured(db, |_| {}, config).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        assert_eq!(h.act(phone, "syncDevice", None).await.0, 202, "standalone, now cached for an hour");
        h.set_authority(MdmAuthority::Office365).await;
        let mut refused = false;
        for _ in 0..200 {
            if h.act(phone, "syncDevice", None).await.0 == 409 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "the policy_changed message invalidated the cache");
        h.app.stop().await;
    }
}
