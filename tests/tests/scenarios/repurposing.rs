//! A device is repurposed: a factory reset that keeps the enrollment and the user's data
//! on Windows 10 1709 (build 16299) and later, refused below it; a full reset elsewhere.

use mdm_e2e::apple::{DeviceState, Model};
use mdm_e2e::windows::{Edition, Lifecycle};
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::world::World;

const KEEP: &str = "./Device/Vendor/MSFT/RemoteWipe/doWipePersistUserData";

test_on_both_backends! {
    async fn repurposing(db) {
        let w = World::start(db).await;
        let lee = w.user("lee").await;
        let mut current = w.enrol_windows(Edition::Desktop, &lee).await;
        let mut old = w.enrol_windows_build(Edition::Desktop, &lee, Some(15063)).await;
        w.wait_device(old.id, |d| d.is_some_and(|d| d["osVersion"].as_str().is_some_and(|v| v.contains("15063")))).await;
        let mut iphone = w.enrol_apple(Model::IPhone, "company", Some(&lee)).await;
        let android = w.enrol_android("corporateFullyManaged", Some(&lee)).await;
        let keep = json!({ "keepEnrollmentData": true, "keepUserData": true });

        // What the admin is told before acting.
        let (status, preview) = w.get(&format!("/api/v1/deviceManagement/managedDevices/{}/wipePreview?keepEnrollmentData=true&keepUserData=true", current.id)).await;
        assert_eq!(status, 200, "{preview}");

        // Windows 10 1709+: the reset keeps the enrollment and the user's data.
        assert!(current.sim.build >= 16299);
        let (wipe, _) = w.act(current.id, "wipe", keep.clone()).await;
        w.windows_pushed(&current, 1).await;
        let (executed, result) = w.windows_until_final(&mut current, wipe).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert_eq!(executed, [("Exec".to_owned(), KEEP.to_owned(), 200)]);
        assert_eq!(current.sim.lifecycle, Lifecycle::Enrolled, "the enrollment survives");
        // Still managed afterwards: it keeps checking in and takes further actions.
        w.windows_session(&mut current).await;
        let (sync, _) = w.act(current.id, "syncDevice", json!({})).await;
        let (_, result) = w.windows_until_final(&mut current, sync).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert!(w.device(current.id).await.unwrap()["managementState"] != "wiped");

        // Below build 16299 the same request is refused, and nothing reaches the device.
        let (status, refused) = w.try_act(old.id, "wipe", keep.clone()).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["code"], "requires_windows_1709", "{refused}");
        assert!(refused["detail"].as_str().unwrap_or_default().contains("16299"), "{refused}");
        let executed = w.windows_session(&mut old).await;
        assert!(executed.is_empty(), "{executed:?}");
        assert_eq!(w.wns_pushes(&old), 0);

        // Elsewhere a factory reset is a full reset: keeping enrollment data is Windows only.
        let (status, refused) = w.try_act(iphone.id, "wipe", keep.clone()).await;
        assert!(status == 409 || status == 422, "{status} {refused}");
        let (wipe, _) = w.act(iphone.id, "wipe", json!({})).await;
        w.apple_pushed(&iphone, 2).await;
        assert_eq!(w.apple_until_final(&mut iphone, wipe).await["actionState"], "done");
        let erase: Vec<_> = iphone.sim.received.iter().filter(|r| r.request_type == "EraseDevice").collect();
        assert_eq!(erase.len(), 1);
        assert_eq!(iphone.sim.state, DeviceState::Wiped);
        let (wipe, _) = w.act(android.id, "wipe", json!({})).await;
        w.wait_action(android.id, wipe, "done").await;
        let commands = w.android_commands(&android);
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0]["type"], "WIPE");
        assert!(android.sim.state().factory_reset);
        for id in [iphone.id, android.id] {
            w.wait_device(id, |d| d.is_none_or(|d| d["managementState"] == "wiped")).await;
        }
    }
}
