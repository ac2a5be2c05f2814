//! A user leaves the company on good terms: retire the personal devices (company data
//! goes, personal data stays), wipe the corporate ones, remove the licence, delete the
//! user.

use mdm_e2e::apple::{DeviceState, Model};
use mdm_e2e::windows::{Edition, Lifecycle};
use mdm_store::test_on_both_backends;
use plist::Value as Plist;
use reqwest::Method;
use serde_json::json;

use crate::world::World;

test_on_both_backends! {
    async fn planned_departure(db) {
        let w = World::start(db).await;
        // Jane has six devices: more than a new tenant's limit of five per user.
        let (_, mut restrictions) = w.get("/api/v1/deviceManagement/enrollmentRestrictions").await;
        restrictions["deviceLimitPerUser"] = json!(10);
        let (status, body) = w.put("/api/v1/deviceManagement/enrollmentRestrictions", restrictions).await;
        assert_eq!(status, 200, "{body}");
        let jane = w.user("jane").await;
        // Personal: an iPhone, an Android phone with a work profile, a Windows laptop.
        let mut iphone = w.enrol_apple(Model::IPhone, "personal", Some(&jane)).await;
        let phone = w.enrol_android("personalWorkProfile", Some(&jane)).await;
        let mut laptop = w.enrol_windows(Edition::Desktop, &jane).await;
        // Corporate: a Mac and a fully managed Android phone.
        let mut mac = w.enrol_apple(Model::Mac, "company", Some(&jane)).await;
        let tablet = w.enrol_android("corporateFullyManaged", Some(&jane)).await;
        // And a personal iPad the admin does not know about.
        let mut ipad = w.enrol_apple(Model::IPad, "personal", Some(&jane)).await;
        for (id, owner) in [(iphone.id, "personal"), (phone.id, "personal"), (laptop.id, "personal"), (mac.id, "company"), (tablet.id, "company")] {
            let device = w.device(id).await.unwrap();
            assert_eq!(device["managedDeviceOwnerType"], owner, "{device}");
            assert_eq!(device["managementState"], "managed", "{device}");
        }

        // Deleting the user now is refused and names the devices still managed.
        let (status, refused) = w.call(Method::DELETE, &format!("/api/v1/users/{}", jane.id), None).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "user_has_managed_devices");
        assert_eq!(refused["devices"].as_array().map(Vec::len), Some(6), "{refused}");

        // Retire the personal devices.
        let mdm_profile = iphone.sim.mdm_profile().unwrap();
        let (retire_iphone, _) = w.act(iphone.id, "retire", json!({})).await;
        let (retire_phone, _) = w.act(phone.id, "retire", json!({})).await;
        let (retire_laptop, _) = w.act(laptop.id, "retire", json!({})).await;

        w.apple_pushed(&iphone, 2).await;
        let result = w.apple_until_final(&mut iphone, retire_iphone).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert!(iphone.sim.received.iter().any(|r| r.request_type == "RemoveProfile"
            && r.command.get("Identifier").and_then(Plist::as_string) == Some(mdm_profile.as_str())));
        assert!(!iphone.sim.received.iter().any(|r| r.request_type == "EraseDevice"), "a retire never erases");
        assert!(iphone.sim.managed_apps.is_empty(), "company apps are gone");
        assert_eq!(iphone.sim.state, DeviceState::Unenrolled);

        w.wait_action(phone.id, retire_phone, "done").await;
        let commands = w.android_commands(&phone);
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0]["type"], "WIPE", "a work profile is removed with WIPE");
        assert!(commands[0]["wipeParams"].get("wipeDataFlags").is_none(), "personal data and eSIMs stay");
        let state = phone.sim.state();
        assert!(state.work_profile_removed && !state.factory_reset, "{state:?}");

        w.wait_handed_over(laptop.id, retire_laptop).await;
        w.windows_pushed(&laptop, 1).await;
        let executed = w.windows_session(&mut laptop).await;
        assert_eq!(executed, [("Exec".to_owned(), "./Device/Vendor/MSFT/DMClient/Provider/MDMServer/Unenroll".to_owned(), 200)]);
        w.wait_action(laptop.id, retire_laptop, "done").await;
        assert_eq!(laptop.sim.lifecycle, Lifecycle::Unenrolled);

        for id in [iphone.id, phone.id, laptop.id] {
            w.wait_device(id, |d| d.is_none_or(|d| d["managementState"] == "retired")).await;
        }

        // Wipe the corporate devices.
        let (wipe_mac, answer) = w.act(mac.id, "wipe", json!({})).await;
        let (wipe_tablet, _) = w.act(tablet.id, "wipe", json!({})).await;
        w.apple_pushed(&mac, 2).await;
        let result = w.apple_until_final(&mut mac, wipe_mac).await;
        assert_eq!(result["actionState"], "done", "{result}");
        let erase = mac.sim.received.iter().find(|r| r.request_type == "EraseDevice").unwrap();
        let pin = erase.command.get("PIN").and_then(Plist::as_string).unwrap();
        assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()), "{pin}");
        // The admin was shown the PIN the Mac got (to unlock it after the erase).
        assert_eq!(answer["lockPin"], pin, "{answer}");
        assert_eq!(mac.sim.state, DeviceState::Wiped);

        w.wait_action(tablet.id, wipe_tablet, "done").await;
        let commands = w.android_commands(&tablet);
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0]["type"], "WIPE");
        assert!(tablet.sim.state().factory_reset);
        for id in [mac.id, tablet.id] {
            w.wait_device(id, |d| d.is_none_or(|d| d["managementState"] == "wiped")).await;
        }

        // Remove the licence: the forgotten iPad is unenrolled, and no action reaches it.
        let (status, user) = w.post(&format!("/api/v1/users/{}/removeLicense", jane.id), json!({})).await;
        assert_eq!(status, 200, "{user}");
        assert_eq!(user["licensed"], false);
        // The server retires it on its own; the iPad carries that out at its next check-in.
        let mut retire = None;
        for _ in 0..400 {
            retire = w.results(ipad.id).await.into_iter().find(|r| r["actionName"] == "retire");
            if retire.is_some() { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let retire: mdm_domain::ActionId = retire.expect("no retire after the licence went")["id"].as_str().unwrap().parse().unwrap();
        w.apple_pushed(&ipad, 2).await;
        assert_eq!(w.apple_until_final(&mut ipad, retire).await["actionState"], "done");
        assert_eq!(ipad.sim.state, DeviceState::Unenrolled);
        assert!(ipad.sim.received.iter().all(|r| r.request_type != "EraseDevice"), "personal data stays");
        w.wait_device(ipad.id, |d| d.is_none_or(|d| d["managementState"] == "retired" || d["managementState"] == "unenrolled")).await;
        let pushes = w.apns.pushes_to(&ipad.sim.token_hex()).len();
        let (status, refused) = w.try_act(ipad.id, "remoteLock", json!({})).await;
        assert!(status == 404 || status == 409, "{status} {refused}");
        ipad.sim.poll().await.unwrap();
        assert!(ipad.sim.received.iter().all(|r| r.request_type != "DeviceLock"));
        assert_eq!(w.apns.pushes_to(&ipad.sim.token_hex()).len(), pushes);
        // Then the user can be deleted: nothing of theirs is managed any more.
        let (status, body) = w.call(Method::DELETE, &format!("/api/v1/users/{}", jane.id), None).await;
        assert_eq!(status, 204, "{body}");
        let (status, _) = w.get(&format!("/api/v1/users/{}", jane.id)).await;
        assert_eq!(status, 404);
    }
}
