//! Managed Desktop removal: the Autopilot registration, the device's group memberships and
//! its device-list entry go (and on request its directory record and management);
//! refused while the registration is still pending.

use base64::Engine;
use mdm_e2e::windows::{Edition, Lifecycle};
use mdm_store::test_on_both_backends;
use serde_json::{Value, json};

use crate::world::World;

const IDENTITIES: &str = "/api/v1/deviceManagement/windowsAutopilotDeviceIdentities";
const DESKTOPS: &str = "/api/v1/deviceManagement/managedDesktopDevices";

async fn desktop_entry(w: &World, id: &str) -> Option<Value> {
    let (status, page) = w.get(DESKTOPS).await;
    assert_eq!(status, 200, "{page}");
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
}

async fn members(w: &World, group: &str) -> usize {
    let (status, page) = w.get(&format!("/api/v1/groups/{group}/members")).await;
    assert_eq!(status, 200, "{page}");
    page["value"].as_array().map_or(0, Vec::len)
}

test_on_both_backends! {
    async fn managed_desktop_removal(db) {
        let w = World::start(db).await;
        let max = w.user("max").await;
        let hash = base64::engine::general_purpose::STANDARD.encode([7u8; 512]);
        // Two PCs registered for Autopilot by their serial numbers, then enrolled.
        let mut pcs = Vec::new();
        let mut registrations = Vec::new();
        for _ in 0..2 {
            let sim = w.windows_device(Edition::Desktop);
            let (status, identity) = w.post(IDENTITIES, json!({ "serialNumber": sim.serial, "hardwareIdentifier": hash })).await;
            assert_eq!(status, 201, "{identity}");
            assert_eq!(identity["state"], "pending", "{identity}");
            registrations.push(identity["id"].as_str().unwrap().to_owned());
            pcs.push(w.enrol_windows_sim(sim, &max).await);
        }
        let (status, group) = w.post("/api/v1/groups", json!({ "displayName": "Finance PCs" })).await;
        assert_eq!(status, 201, "{group}");
        let group = group["id"].as_str().unwrap().to_owned();
        for pc in &pcs {
            let (status, body) = w.post(&format!("/api/v1/groups/{group}/members/{}", pc.id), json!({})).await;
            assert!(status.is_success(), "{status} {body}");
        }
        assert_eq!(members(&w, &group).await, 2);
        let entry = w.wait_until_linked(&registrations[0], pcs[0].id).await;
        assert_eq!(entry["registrationState"], "pending", "{entry}");

        // Pending: refused, and nothing changes.
        let (status, refused) = w.post(&format!("{DESKTOPS}/{}/remove", registrations[0]), json!({ "alsoDeleteFromDirectoryAndManagement": true })).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "registration_pending");
        assert!(desktop_entry(&w, &registrations[0]).await.is_some());
        assert_eq!(members(&w, &group).await, 2);
        assert_eq!(w.device(pcs[0].id).await.unwrap()["managementState"], "managed");

        // Once registered (the processing time passed), the removal goes through.
        w.advance(chrono::Duration::minutes(6));
        assert_eq!(desktop_entry(&w, &registrations[0]).await.unwrap()["registrationState"], "registered");
        // Without the directory and management: only the registration and memberships go.
        let (status, removal) = w.post(&format!("{DESKTOPS}/{}/remove", registrations[1]), json!({ "alsoDeleteFromDirectoryAndManagement": false })).await;
        assert_eq!(status, 200, "{removal}");
        assert_eq!(removal["groupMembershipsRemoved"], 1, "{removal}");
        assert_eq!(removal["managementRemovalRequested"], false, "{removal}");
        assert!(desktop_entry(&w, &registrations[1]).await.is_none());
        assert_eq!(w.device(pcs[1].id).await.unwrap()["managementState"], "managed");
        let (status, _) = w.get(&format!("{IDENTITIES}/{}", registrations[1])).await;
        assert_eq!(status, 404);

        // With them: the device also leaves management; it is unenrolled at its next session.
        let (status, removal) = w.post(&format!("{DESKTOPS}/{}/remove", registrations[0]), json!({ "alsoDeleteFromDirectoryAndManagement": true })).await;
        assert_eq!(status, 200, "{removal}");
        assert_eq!(removal["managedDeviceId"], pcs[0].id.to_string());
        assert_eq!(removal["groupMembershipsRemoved"], 1, "{removal}");
        assert_eq!(removal["managementRemovalRequested"], true, "{removal}");
        assert_eq!(members(&w, &group).await, 0);
        assert!(desktop_entry(&w, &registrations[0]).await.is_none());
        let (status, directory) = w.get("/api/v1/directory/devices").await;
        assert_eq!(status, 200);
        assert!(!directory["value"].as_array().unwrap().iter().any(|d| d["managedDeviceId"] == pcs[0].id.to_string()), "{directory}");
        let pc = &mut pcs[0];
        for _ in 0..100 {
            if pc.sim.lifecycle != Lifecycle::Enrolled { break; }
            w.windows_session(pc).await;
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(pc.sim.lifecycle, Lifecycle::Unenrolled);
        w.wait_device(pc.id, |d| d.is_none()).await;
        assert_eq!(w.device(pcs[1].id).await.unwrap()["managementState"], "managed");
    }
}
