//! A user leaves abruptly: every device of theirs is locked at once (one bulk action),
//! passcodes are reset, then every device is wiped.

use std::collections::BTreeMap;

use mdm_domain::DeviceId;
use mdm_e2e::apple::{DeviceState, Model};
use mdm_e2e::windows::{Edition, Lifecycle};
use mdm_store::test_on_both_backends;
use plist::Value as Plist;
use serde_json::{Value, json};

use crate::world::World;

fn tally(view: &Value) -> BTreeMap<String, u64> {
    view["refusals"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

test_on_both_backends! {
    async fn abrupt_departure(db) {
        let w = World::start(db).await;
        let bob = w.user("bob").await;
        let mut iphone = w.enrol_apple(Model::IPhone, "company", Some(&bob)).await;
        let mut mac = w.enrol_apple(Model::Mac, "company", Some(&bob)).await;
        let android = w.enrol_android("corporateFullyManaged", Some(&bob)).await;
        let mut mobile = w.enrol_windows(Edition::Mobile, &bob).await;
        let mut desktop = w.enrol_windows(Edition::Desktop, &bob).await;
        let all: Vec<DeviceId> = vec![iphone.id, mac.id, android.id, mobile.id, desktop.id];
        let (iphone_id, mac_id, mobile_id) = (iphone.id, mac.id, mobile.id);
        let unlock_token = iphone.sim.unlock_token.clone();

        // 1. Lock everything at once. A Windows desktop cannot be locked: refused, nothing sent.
        let job = w.bulk("remoteLock", &all, json!({ "message": "Return this device to IT" })).await;
        let view = w.bulk_checked(&job).await;
        assert_eq!((view["accepted"].as_u64(), view["refused"].as_u64()), (Some(4), Some(1)), "{view}");
        assert_eq!(tally(&view), BTreeMap::from([("action_not_supported".to_owned(), 1)]), "{view}");
        assert_eq!(World::bulk_outcome(&view, desktop.id), Err("action_not_supported".to_owned()));
        let lock = |id| World::bulk_outcome(&view, id).unwrap();

        w.apple_pushed(&iphone, 2).await;
        assert_eq!(w.apple_until_final(&mut iphone, lock(iphone_id)).await["actionState"], "done");
        let sent = iphone.sim.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        assert_eq!(sent.command.get("Message").and_then(Plist::as_string), Some("Return this device to IT"));
        assert!(sent.command.get("PIN").is_none());
        assert!(iphone.sim.locked);

        w.apple_pushed(&mac, 2).await;
        assert_eq!(w.apple_until_final(&mut mac, lock(mac_id)).await["actionState"], "done");
        let sent = mac.sim.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        let pin = sent.command.get("PIN").and_then(Plist::as_string).unwrap().to_owned();
        assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()), "{pin}");
        // The admin reads the Mac's PIN back from inventory.
        let seen = w.device(mac.id).await.unwrap();
        assert_eq!(seen["lockPin"]["pin"], pin.as_str(), "{seen}");

        w.wait_action(android.id, lock(android.id), "done").await;
        let commands = w.android_commands(&android);
        assert_eq!(commands.iter().map(|c| c["type"].as_str().unwrap()).collect::<Vec<_>>(), ["LOCK"]);
        assert!(android.sim.state().locked);

        w.windows_pushed(&mobile, 1).await;
        let (executed, result) = w.windows_until_final(&mut mobile, lock(mobile_id)).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert_eq!(executed, [("Exec".to_owned(), "./Device/Vendor/MSFT/RemoteLock/Lock".to_owned(), 200)]);
        // The desktop got nothing: its session carries no command.
        assert!(w.windows_session(&mut desktop).await.is_empty());
        assert_eq!(w.wns_pushes(&desktop), 0);

        let (_, done) = w.get(&format!("/api/v1/deviceManagement/bulkActions/{job}")).await;
        assert_eq!(done["actionStates"]["done"], 4, "{done}");

        // 2. Reset the passcodes: a Mac and a Windows desktop have no remote reset.
        let job = w.bulk("resetPasscode", &all, json!({})).await;
        let view = w.bulk_checked(&job).await;
        assert_eq!((view["accepted"].as_u64(), view["refused"].as_u64()), (Some(3), Some(2)), "{view}");
        for id in [mac.id, desktop.id] {
            assert_eq!(World::bulk_outcome(&view, id), Err("action_not_supported".to_owned()));
        }
        let reset = |id| World::bulk_outcome(&view, id).unwrap();
        w.apple_pushed(&iphone, 3).await;
        assert_eq!(w.apple_until_final(&mut iphone, reset(iphone_id)).await["actionState"], "done");
        let clear = iphone.sim.received.iter().find(|r| r.request_type == "ClearPasscode").unwrap();
        assert_eq!(clear.command.get("UnlockToken").and_then(Plist::as_data), unlock_token.as_deref());
        assert!(!iphone.sim.passcode_present);
        assert!(!mac.sim.received.iter().any(|r| r.request_type == "ClearPasscode"));

        w.wait_action(android.id, reset(android.id), "done").await;
        let commands = w.android_commands(&android);
        assert_eq!(commands.last().unwrap()["type"], "RESET_PASSWORD");

        let pin_before = mobile.sim.pin.clone();
        w.windows_pushed(&mobile, 2).await;
        let (executed, result) = w.windows_until_final(&mut mobile, reset(mobile_id)).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert_eq!(executed[0], ("Exec".to_owned(), "./Device/Vendor/MSFT/RemoteLock/LockAndResetPIN".to_owned(), 200));
        assert_ne!(mobile.sim.pin, pin_before);

        // 3. Wipe everything.
        let job = w.bulk("wipe", &all, json!({})).await;
        let view = w.bulk_checked(&job).await;
        assert_eq!((view["accepted"].as_u64(), view["refused"].as_u64()), (Some(5), Some(0)), "{view}");
        let wipe = |id| World::bulk_outcome(&view, id).unwrap();
        w.apple_pushed(&iphone, 4).await;
        assert_eq!(w.apple_until_final(&mut iphone, wipe(iphone_id)).await["actionState"], "done");
        assert_eq!(iphone.sim.state, DeviceState::Wiped);
        assert_eq!(w.apple_until_final(&mut mac, wipe(mac_id)).await["actionState"], "done");
        let erase = mac.sim.received.iter().find(|r| r.request_type == "EraseDevice").unwrap();
        assert!(erase.command.get("PIN").and_then(Plist::as_string).is_some_and(|p| p.len() == 6));
        assert_eq!(mac.sim.state, DeviceState::Wiped);
        w.wait_action(android.id, wipe(android.id), "done").await;
        assert_eq!(w.android_commands(&android).last().unwrap()["type"], "WIPE");
        assert!(android.sim.state().factory_reset);
        for device in [&mut mobile, &mut desktop] {
            let (executed, result) = w.windows_until_final(device, wipe(device.id)).await;
            assert_eq!(result["actionState"], "done", "{result}");
            assert!(executed.contains(&("Exec".to_owned(), "./Device/Vendor/MSFT/RemoteWipe/doWipe".to_owned(), 200)), "{executed:?}");
            assert_eq!(device.sim.lifecycle, Lifecycle::Wiped);
        }
        for id in all {
            w.wait_device(id, |d| d.is_none_or(|d| d["managementState"] == "wiped")).await;
        }
    }
}
