//! A device is offline when the admin acts: the action waits and is delivered when the
//! device returns, or expires (and is reported as expired) if it stays away too long.

use mdm_e2e::apple::Model;
use mdm_e2e::windows::Edition;
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::world::{Options, World};

test_on_both_backends! {
    async fn offline_device(db) {
        let w = World::start_with(db, Options { maintenance_secs: 1, ..Options::default() }).await;
        let kim = w.user("kim").await;
        let mut iphone = w.enrol_apple(Model::IPhone, "company", Some(&kim)).await;
        let android = w.enrol_android("corporateFullyManaged", Some(&kim)).await;
        let mut mobile = w.enrol_windows(Edition::Mobile, &kim).await;

        // Delivered on return. The iPhone is pushed but does not check in: the action
        // waits at the adapter.
        let (lock, _) = w.act(iphone.id, "remoteLock", json!({})).await;
        w.apple_pushed(&iphone, 2).await;
        assert_eq!(w.wait_handed_over(iphone.id, lock).await, "sent");
        assert!(!iphone.sim.locked);
        // The Android phone is off: AMAPI has the command, the phone has not run it.
        android.sim.set_online(false);
        let (android_lock, _) = w.act(android.id, "remoteLock", json!({})).await;
        for _ in 0..400 {
            if !w.android_commands(&android).is_empty() { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(w.android_commands(&android).len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let state = w.action_state(android.id, android_lock).await;
        assert!(state == "sent" || state == "active", "{state}");
        assert!(!android.sim.state().locked);

        // Back online: both are carried out and reported done.
        assert_eq!(w.apple_until_final(&mut iphone, lock).await["actionState"], "done");
        assert!(iphone.sim.locked);
        android.sim.set_online(true);
        android.sim.process_commands().await;
        w.wait_action(android.id, android_lock, "done").await;
        assert!(android.sim.state().locked);

        // Expired. The Windows phone and the iPhone stay away past the action's lifetime
        // (7 days for a lock or a passcode reset, and a day's grace).
        let (win_lock, _) = w.act(mobile.id, "remoteLock", json!({})).await;
        w.windows_pushed(&mobile, 1).await;
        let (reset, _) = w.act(iphone.id, "resetPasscode", json!({})).await;
        w.apple_pushed(&iphone, 3).await;
        assert_eq!(w.wait_handed_over(mobile.id, win_lock).await, "sent");
        w.advance(chrono::Duration::days(8) + chrono::Duration::hours(1));
        let expired = w.wait_action(mobile.id, win_lock, "expired").await;
        assert_eq!(expired["errorCode"], "expired", "{expired}");
        let expired = w.wait_action(iphone.id, reset, "expired").await;
        assert_eq!(expired["errorCode"], "expired", "{expired}");
        // The tenant's action view reports them as expired too.
        let (status, view) = w
            .get("/api/v1/deviceManagement/deviceActions?state=expired")
            .await;
        assert_eq!(status, 200, "{view}");
        let listed = view["value"].as_array().unwrap();
        assert!(listed.iter().all(|a| a["actionState"] == "expired"), "{view}");
        let ids: Vec<&str> = listed.iter().filter_map(|a| a["id"].as_str()).collect();
        assert_eq!(ids.len(), 2, "{view}");
        assert!(
            ids.contains(&win_lock.to_string().as_str()) && ids.contains(&reset.to_string().as_str()),
            "{view}"
        );

        // When they return, the expired actions are not carried out.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let executed = w.windows_session(&mut mobile).await;
        assert!(!executed.iter().any(|e| e.1.contains("RemoteLock")), "{executed:?}");
        iphone.sim.poll().await.unwrap();
        assert!(!iphone.sim.received.iter().any(|r| r.request_type == "ClearPasscode"));
        assert!(iphone.sim.passcode_present);
        assert_eq!(w.action_state(mobile.id, win_lock).await, "expired");
        assert_eq!(w.action_state(iphone.id, reset).await, "expired");
    }
}
