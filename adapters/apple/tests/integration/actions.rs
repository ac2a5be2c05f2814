//! Every action's command, carried out by simulated devices, and the retire sequence.

use mdm_api::internal::adapter::ActionParams;
use mdm_domain::{ActionKind, ActionState};
use mdm_e2e::apple::{Answer, AuthMode, DeviceState, Model};
use mdm_store::test_on_both_backends;
use plist::Value;

use crate::{Harness, Options};

fn forwarded() -> AuthMode {
    AuthMode::Forwarded {
        header: "Client-Cert".into(),
        rfc9440: true,
    }
}

test_on_both_backends! {
    async fn remote_lock_reaches_an_iphone_and_a_mac_with_its_pin(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, iphone_id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let params = ActionParams { message: Some("Call IT".into()), phone_number: Some("+31 20 555 0100".into()), ..Default::default() };
        let action = h.deliver(iphone_id, ActionKind::RemoteLock, params).await;
        h.report(action, ActionState::Sent).await;
        h.push_and_poll(&mut iphone, 2).await;
        h.report(action, ActionState::Done).await;
        let lock = iphone.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        assert_eq!(lock.command.get("Message").and_then(Value::as_string), Some("Call IT"));
        assert_eq!(lock.command.get("PhoneNumber").and_then(Value::as_string), Some("+31 20 555 0100"));
        assert!(lock.command.get("PIN").is_none(), "no PIN on iOS");
        assert!(iphone.locked);

        let (mut mac, mac_id) = h.enroll(Model::Mac, forwarded()).await;
        h.drain(&mut mac).await;
        let params = ActionParams { sealed_unlock_pin: Some(h.seal_pin("482915")), ..Default::default() };
        let action = h.deliver(mac_id, ActionKind::RemoteLock, params).await;
        h.push_and_poll(&mut mac, 2).await;
        h.report(action, ActionState::Done).await;
        let lock = mac.received.iter().find(|r| r.request_type == "DeviceLock").unwrap();
        assert_eq!(lock.command.get("PIN").and_then(Value::as_string), Some("482915"));
    }
}

test_on_both_backends! {
    async fn reset_passcode_uses_the_unlock_token_or_is_refused(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let action = h.deliver(id, ActionKind::ResetPasscode, ActionParams::default()).await;
        h.push_and_poll(&mut iphone, 2).await;
        h.report(action, ActionState::Done).await;
        let clear = iphone.received.iter().find(|r| r.request_type == "ClearPasscode").unwrap();
        assert_eq!(clear.command.get("UnlockToken").and_then(Value::as_data), iphone.unlock_token.as_deref());
        assert!(!iphone.passcode_present);

        // A Mac has no ClearPasscode; an iPad that sent no UnlockToken cannot be cleared.
        let (_mac, mac_id) = h.enroll(Model::Mac, forwarded()).await;
        let refused = h.deliver(mac_id, ActionKind::ResetPasscode, ActionParams::default()).await;
        let report = h.report(refused, ActionState::NotSupported).await;
        assert_eq!(report.error_code.as_deref(), Some("action_not_supported"));
        let url = h.profile_url(serde_json::json!({})).await;
        let mut ipad = mdm_e2e::apple::SimulatedDevice::new(Model::IPad, forwarded());
        ipad.unlock_token = None;
        ipad.enroll(&url, h.now()).await.unwrap();
        let ipad_id = h.device_id(&ipad).await;
        let refused = h.deliver(ipad_id, ActionKind::ResetPasscode, ActionParams::default()).await;
        let report = h.report(refused, ActionState::NotSupported).await;
        assert_eq!(report.error_code.as_deref(), Some("unlock_token_missing"));
        assert!(!h.queued(&ipad).await.contains(&"ClearPasscode".to_owned()));
    }
}

test_on_both_backends! {
    async fn wipe_erases_with_the_platforms_options_and_ends_the_enrollment(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let params = ActionParams { persist_esim_data_plan: true, ..Default::default() };
        let action = h.deliver(id, ActionKind::Wipe, params).await;
        h.push_and_poll(&mut iphone, 2).await;
        h.report(action, ActionState::Done).await;
        let erase = iphone.received.iter().find(|r| r.request_type == "EraseDevice").unwrap();
        assert_eq!(erase.command.get("PreserveDataPlan").and_then(Value::as_boolean), Some(true));
        assert!(erase.command.get("PIN").is_none());
        assert!(erase.command.get("ObliterationBehavior").is_none());
        assert_eq!(iphone.state, DeviceState::Wiped);
        // The enrollment ended: a later request is answered as from an unknown device.
        iphone.state = DeviceState::Enrolled;
        iphone.poll().await.unwrap();
        assert_eq!(iphone.last_status, 403);
        let body: serde_json::Value = serde_json::from_slice(&iphone.last_body).unwrap();
        assert_eq!(body["code"], "com.apple.unrecognized.device");

        let (mut mac, mac_id) = h.enroll(Model::Mac, forwarded()).await;
        h.drain(&mut mac).await;
        let params = ActionParams { sealed_unlock_pin: Some(h.seal_pin("135790")), ..Default::default() };
        let action = h.deliver(mac_id, ActionKind::Wipe, params).await;
        h.push_and_poll(&mut mac, 2).await;
        h.report(action, ActionState::Done).await;
        let erase = mac.received.iter().find(|r| r.request_type == "EraseDevice").unwrap();
        assert_eq!(erase.command.get("PIN").and_then(Value::as_string), Some("135790"));
        assert_eq!(erase.command.get("ObliterationBehavior").and_then(Value::as_string), Some("Default"));
        assert!(erase.command.get("PreserveDataPlan").is_none());
    }
}

test_on_both_backends! {
    async fn reboot_and_sync(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut mac, id) = h.enroll(Model::Mac, forwarded()).await;
        h.drain(&mut mac).await;
        let reboot = h.deliver(id, ActionKind::RebootNow, ActionParams::default()).await;
        h.push_and_poll(&mut mac, 2).await;
        h.report(reboot, ActionState::Done).await;
        assert!(mac.received.iter().any(|r| r.request_type == "RestartDevice"));
        let sync = h.deliver(id, ActionKind::SyncDevice, ActionParams::default()).await;
        h.push_and_poll(&mut mac, 3).await;
        h.report(sync, ActionState::Done).await;
        // An unsupervised iPhone refuses RestartDevice: the action fails with its error.
        let (mut iphone, iphone_id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let reboot = h.deliver(iphone_id, ActionKind::RebootNow, ActionParams::default()).await;
        h.push_and_poll(&mut iphone, 2).await;
        let failed = h.report(reboot, ActionState::Failed).await;
        assert_eq!(failed.error_code.as_deref(), Some("12081"));
    }
}

test_on_both_backends! {
    async fn retire_removes_company_data_then_management_on_an_iphone(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let mdm_profile = iphone.mdm_profile().unwrap();
        let action = h.deliver(id, ActionKind::Retire, ActionParams::default()).await;
        h.report(action, ActionState::Sent).await;
        assert!(h.apns.wait_for(&iphone.token_hex(), 2, std::time::Duration::from_secs(10)).await);
        // Work through the steps; each answer may queue the next ones.
        for _ in 0..5 {
            iphone.poll().await.unwrap();
            if iphone.state != DeviceState::Enrolled {
                break;
            }
        }
        let types: Vec<_> = iphone.received.iter().skip(5).map(|r| r.request_type.clone()).collect();
        assert_eq!(
            types,
            ["ProfileList", "ManagedApplicationList", "RemoveProfile", "RemoveApplication", "RemoveApplication", "RemoveProfile"],
        );
        assert!(iphone.managed_apps.is_empty(), "managed apps and their data are gone");
        assert_eq!(iphone.profiles.len(), 0, "the Wi-Fi profile and the MDM profile are gone");
        let last = iphone.received.last().unwrap();
        assert_eq!(last.command.get("Identifier").and_then(Value::as_string), Some(mdm_profile.as_str()));
        assert_eq!(iphone.state, DeviceState::Unenrolled, "the device checked out");
        h.report(action, ActionState::Done).await;
        // Completed by the retire, not reported as a device-side unenrollment.
        assert!(!h.got.lock().unwrap().iter().any(|g| matches!(g, crate::fakes::Got::Unenrolled(u) if u.device_id == id)));
    }
}

test_on_both_backends! {
    async fn retire_on_a_mac_removes_profiles_and_completes_on_acknowledgement(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut mac, id) = h.enroll(Model::Mac, forwarded()).await;
        h.drain(&mut mac).await;
        // This Mac acknowledges the removal of its MDM profile instead of checking out.
        mac.check_out_when_removed = false;
        let action = h.deliver(id, ActionKind::Retire, ActionParams::default()).await;
        h.push_and_poll(&mut mac, 2).await;
        for _ in 0..3 {
            mac.poll().await.unwrap();
        }
        let types: Vec<_> = mac.received.iter().skip(4).map(|r| r.request_type.clone()).collect();
        assert_eq!(types, ["ProfileList", "RemoveProfile", "RemoveProfile"]);
        h.report(action, ActionState::Done).await;
        let _ = Answer::Acknowledge;
    }
}
