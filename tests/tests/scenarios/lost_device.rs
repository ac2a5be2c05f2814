//! A device is lost: lock it and reset its passcode. A Mac gets a 6-digit PIN, which the
//! admin reads back, and which is gone after 30 days.

use mdm_e2e::apple::Model;
use mdm_e2e::windows::Edition;
use mdm_store::test_on_both_backends;
use plist::Value as Plist;
use serde_json::json;

use crate::world::{Options, World};

test_on_both_backends! {
    async fn lost_device(db) {
        let w = World::start_with(db, Options { maintenance_secs: 1, ..Options::default() }).await;
        let ann = w.user("ann").await;
        let mut iphone = w.enrol_apple(Model::IPhone, "company", Some(&ann)).await;
        let mut mac = w.enrol_apple(Model::Mac, "company", Some(&ann)).await;
        let android = w.enrol_android("corporateWorkProfile", Some(&ann)).await;
        let mut mobile = w.enrol_windows(Edition::Mobile, &ann).await;

        // The iPhone: lock with a message and a number to call, then clear the passcode.
        let (lock, answer) = w.act(iphone.id, "remoteLock", json!({ "message": "Found me? Call", "phoneNumber": "+31 20 555 0100" })).await;
        assert_eq!(answer["actionName"], "remoteLock", "{answer}");
        assert!(answer["lockPin"].is_null(), "no PIN for an iPhone: {answer}");
        w.apple_pushed(&iphone, 2).await;
        assert_eq!(w.apple_until_final(&mut iphone, lock).await["actionState"], "done");
        let sent = iphone.sim.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        assert_eq!(sent.command.get("Message").and_then(Plist::as_string), Some("Found me? Call"));
        assert_eq!(sent.command.get("PhoneNumber").and_then(Plist::as_string), Some("+31 20 555 0100"));
        assert!(iphone.sim.locked);
        let (reset, _) = w.act(iphone.id, "resetPasscode", json!({})).await;
        w.apple_pushed(&iphone, 3).await;
        assert_eq!(w.apple_until_final(&mut iphone, reset).await["actionState"], "done");
        assert!(iphone.sim.received.iter().any(|r| r.request_type == "ClearPasscode"));
        assert!(!iphone.sim.passcode_present);

        // Android and Windows mobile: the platform's lock and passcode reset.
        let (lock, _) = w.act(android.id, "remoteLock", json!({})).await;
        w.wait_action(android.id, lock, "done").await;
        let (reset, _) = w.act(android.id, "resetPasscode", json!({})).await;
        w.wait_action(android.id, reset, "done").await;
        let types: Vec<_> = w.android_commands(&android).iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, ["LOCK", "RESET_PASSWORD"]);
        assert!(android.sim.state().locked);

        let (lock, _) = w.act(mobile.id, "remoteLock", json!({})).await;
        let (executed, result) = w.windows_until_final(&mut mobile, lock).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert_eq!(executed, [("Exec".to_owned(), "./Device/Vendor/MSFT/RemoteLock/Lock".to_owned(), 200)]);
        let pin_before = mobile.sim.pin.clone();
        let (reset, _) = w.act(mobile.id, "resetPasscode", json!({})).await;
        let (executed, result) = w.windows_until_final(&mut mobile, reset).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert!(executed.iter().any(|e| e.1 == "./Device/Vendor/MSFT/RemoteLock/LockAndResetPIN"), "{executed:?}");
        assert_ne!(mobile.sim.pin, pin_before);

        // The Mac: the answer shows its PIN once; the Mac gets the same PIN.
        let (lock, answer) = w.act(mac.id, "remoteLock", json!({})).await;
        let pin = answer["lockPin"].as_str().unwrap_or_else(|| panic!("no PIN in {answer}")).to_owned();
        assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()), "{pin}");
        w.apple_pushed(&mac, 2).await;
        assert_eq!(w.apple_until_final(&mut mac, lock).await["actionState"], "done");
        let sent = mac.sim.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        assert_eq!(sent.command.get("PIN").and_then(Plist::as_string), Some(pin.as_str()));
        // The admin reads it back; a second lock while it is unused is refused.
        let seen = w.device(mac.id).await.unwrap();
        assert_eq!(seen["lockPin"]["pin"], pin.as_str(), "{seen}");
        assert_eq!(seen["lockPin"]["actionId"], lock.to_string());
        let (status, refused) = w.try_act(mac.id, "remoteLock", json!({})).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "unlock_pin_outstanding");
        // Macs have no passcode reset: refused, nothing sent.
        let (status, refused) = w.try_act(mac.id, "resetPasscode", json!({})).await;
        assert!(status == 409 || status == 422, "{status} {refused}");
        assert_eq!(refused["code"], "action_not_supported");

        // 29 days later the PIN is still shown; after 30 days it is gone.
        w.advance(chrono::Duration::days(29));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(w.device(mac.id).await.unwrap()["lockPin"]["pin"], pin.as_str());
        w.advance(chrono::Duration::days(1) + chrono::Duration::minutes(1));
        let gone = w.wait_device(mac.id, |d| d.is_some_and(|d| d["lockPin"].is_null())).await.unwrap();
        assert_eq!(gone["managementState"], "managed");
        // And a new lock is no longer blocked by it.
        let (_, answer) = w.act(mac.id, "remoteLock", json!({})).await;
        assert!(answer["lockPin"].as_str().is_some_and(|p| p.len() == 6), "{answer}");
        assert!(mac.sim.received.iter().all(|r| r.request_type != "ClearPasscode"));
    }
}
