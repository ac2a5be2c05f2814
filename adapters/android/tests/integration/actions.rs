//! Every action in every management mode, through dispatch's messages, carried out by
//! simulated devices; refusals, cancels, expiry, and operations without news.

use mdm_api::internal::adapter::ActionParams;
use mdm_api::internal::dispatch::AuditEvent;
use mdm_api::internal::inventory::DeviceUnenrolled;
use mdm_domain::{ActionKind, ActionState};
use mdm_e2e::android::{Hardware, PushAuth, PushSubscription};
use mdm_store::test_on_both_backends;
use serde_json::Value;

use crate::Harness;

/// (profile, action, params, outcome, factory reset, work profile removed, eSIMs wiped,
/// the command sent).
type Case = (
    &'static str,
    ActionKind,
    ActionParams,
    ActionState,
    bool,
    bool,
    bool,
    Option<&'static str>,
);

const MODES: [&str; 4] = [
    "corporateFullyManaged",
    "personalWorkProfile",
    "corporateWorkProfile",
    "dedicated",
];

test_on_both_backends! {
    async fn lock_reset_reboot_and_sync_in_each_mode(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        for profile in MODES {
            let (device, id) = h.enrol(&tenant, profile, Hardware::pixel()).await;

            let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
            h.wait_report(lock, ActionState::Done).await;
            assert_eq!(h.reports_of(lock), [ActionState::Sent, ActionState::Done], "{profile}");
            assert!(device.state().locked, "{profile}");

            let reset = h.deliver(&tenant, id, ActionKind::ResetPasscode, ActionParams::default()).await;
            h.wait_report(reset, ActionState::Done).await;
            let shown: Value = h.http
                .get(h.url(&format!("/api/v1/deviceManagement/managedDevices/{id}/androidResetPasscode")))
                .bearer_auth(&tenant.admin).send().await.unwrap().json().await.unwrap();
            assert_eq!(shown["passcode"].as_str(), device.state().password.as_deref(), "{profile}");
            assert_eq!(shown["passcode"].as_str().unwrap().len(), 16);
            let read = h.wait_message::<AuditEvent>(|e| e.activity == "device.resetPasscodeRead" && e.device_id == Some(id)).await;
            assert!(!read.detail.to_string().contains(shown["passcode"].as_str().unwrap()), "never the passcode");
            let sent = h.mock.requests_to("devices.issueCommand");
            let body = &sent.last().unwrap().body;
            assert_eq!(body["type"], "RESET_PASSWORD");
            assert_eq!(body["resetPasswordFlags"], serde_json::json!(["REQUIRE_ENTRY", "LOCK_NOW"]));

            let before = h.amapi_calls("devices.issueCommand");
            let reboot = h.deliver(&tenant, id, ActionKind::RebootNow, ActionParams::default()).await;
            if matches!(profile, "corporateFullyManaged" | "dedicated") {
                h.wait_report(reboot, ActionState::Done).await;
                assert_eq!(device.state().reboots, 1);
            } else {
                let report = h.wait_report(reboot, ActionState::NotSupported).await;
                assert!(report.error_detail.unwrap().contains("fully managed"));
                assert_eq!(h.amapi_calls("devices.issueCommand"), before, "nothing sent for a refusal");
            }

            let sync = h.deliver(&tenant, id, ActionKind::SyncDevice, ActionParams::default()).await;
            h.wait_report(sync, ActionState::NotSupported).await;
        }
        // A reader may not see passcodes.
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn wipe_and_retire_in_each_mode(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let keep_esims = ActionParams { persist_esim_data_plan: true, ..ActionParams::default() };
        // (profile, action, params, expected outcome, factory reset, work profile removed, eSIMs wiped, command)
        let cases: [Case; 8] = [
            ("corporateFullyManaged", ActionKind::Wipe, ActionParams::default(), ActionState::Done, true, true, true, Some("WIPE")),
            ("corporateFullyManaged", ActionKind::Retire, ActionParams::default(), ActionState::NotSupported, false, false, false, None),
            ("dedicated", ActionKind::Wipe, keep_esims.clone(), ActionState::Done, true, true, false, Some("WIPE")),
            ("dedicated", ActionKind::Retire, ActionParams::default(), ActionState::NotSupported, false, false, false, None),
            ("corporateWorkProfile", ActionKind::Retire, ActionParams::default(), ActionState::Done, false, true, false, Some("RELINQUISH_OWNERSHIP")),
            ("corporateWorkProfile", ActionKind::Wipe, ActionParams::default(), ActionState::Done, true, true, true, Some("WIPE")),
            ("personalWorkProfile", ActionKind::Wipe, ActionParams::default(), ActionState::NotSupported, false, false, false, None),
            ("personalWorkProfile", ActionKind::Retire, ActionParams::default(), ActionState::Done, false, true, false, Some("WIPE")),
        ];
        for (profile, kind, params, outcome, reset, profile_gone, esims, command) in cases {
            let (device, id) = h.enrol(&tenant, profile, Hardware::pixel()).await;
            let before = h.amapi_calls("devices.issueCommand");
            let action = h.deliver(&tenant, id, kind, params).await;
            h.wait_report(action, outcome).await;
            let state = device.state();
            assert_eq!(state.factory_reset, reset, "{kind} on {profile}");
            assert_eq!(state.work_profile_removed, profile_gone, "{kind} on {profile}");
            assert_eq!(state.esims_wiped, esims, "{kind} on {profile}");
            match command {
                Some(command) => {
                    let sent = h.mock.requests_to("devices.issueCommand");
                    let body = &sent.last().unwrap().body;
                    assert_eq!(body["type"], command);
                    assert!(device.resource().is_none(), "the device left management");
                    let row = h.device_row(device.name()).await.unwrap();
                    assert_eq!(row.state, "removed");
                    if kind == ActionKind::Retire && profile == "personalWorkProfile" {
                        // Personal eSIMs and data stay: no flags.
                        assert!(body["wipeParams"].get("wipeDataFlags").is_none());
                    }
                }
                None => assert_eq!(h.amapi_calls("devices.issueCommand"), before),
            }
        }
        // A device that left after its own wipe is not reported as vanished.
        assert!(h.messages::<DeviceUnenrolled>().is_empty());
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn delete_and_removal_end_management_at_google(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "personalWorkProfile", Hardware::pixel()).await;
        let delete = h.deliver(&tenant, id, ActionKind::Delete, ActionParams::default()).await;
        h.wait_report(delete, ActionState::Done).await;
        assert!(device.resource().is_none());
        assert_eq!(h.amapi_calls("devices.delete"), 1);

        // Inventory removed a record (clean-up): the device is deleted at Google too.
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        h.remove(id).await;
        for _ in 0..400 {
            if device.resource().is_none() { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(device.resource().is_none());
        assert!(device.state().factory_reset);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_command_without_news_is_looked_up(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        // Notifications get lost from now on.
        h.mock.push_to(PushSubscription {
            endpoint: "http://127.0.0.1:9/nowhere".into(),
            auth: PushAuth::None,
            subscription: "projects/p/subscriptions/lost".into(),
        });
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.wait_report(lock, ActionState::Sent).await;
        for _ in 0..200 {
            if device.state().locked { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(device.state().locked);
        assert_eq!(h.amapi_calls("operations.get"), 0);
        h.advance(chrono::Duration::seconds(599)).await;
        assert_eq!(h.amapi_calls("operations.get"), 0);
        h.advance(chrono::Duration::seconds(2)).await;
        h.wait_report(lock, ActionState::Done).await;
        assert_eq!(h.amapi_calls("operations.get"), 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn cancel_before_and_after_issue_and_expiry(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        device.set_online(false);

        // Issued, not yet carried out: canceled at Google.
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.wait_report(lock, ActionState::Sent).await;
        h.cancel(lock, id).await;
        h.wait_report(lock, ActionState::Canceled).await;
        assert_eq!(h.amapi_calls("operations.cancel"), 1);
        let ops = h.mock.operations(device.name());
        assert_eq!(ops[0]["error"]["code"], 1);

        // Still queued (Google unavailable): canceled here, nothing sent.
        h.mock.inject(mdm_e2e::android::Fault::new(mdm_e2e::android::FaultKind::Unavailable, "devices.issueCommand", 100));
        let reboot = h.deliver(&tenant, id, ActionKind::RebootNow, ActionParams::default()).await;
        for _ in 0..200 {
            if h.amapi_calls("devices.issueCommand") >= 2 { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        h.cancel(reboot, id).await;
        h.wait_report(reboot, ActionState::Canceled).await;
        assert_eq!(h.reports_of(reboot), [ActionState::Canceled]);
        h.mock.clear_faults();
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn an_action_the_device_never_gets_expires(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "dedicated", Hardware::pixel()).await;
        device.set_online(false);
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.wait_report(lock, ActionState::Sent).await;
        let sent = h.mock.requests_to("devices.issueCommand");
        // Google keeps the command as long as the action lives.
        assert_eq!(sent[0].body["duration"], "86400s");
        h.advance(chrono::Duration::hours(23)).await;
        assert!(!h.reports_of(lock).contains(&ActionState::Expired));
        h.advance(chrono::Duration::hours(2)).await;
        h.wait_report(lock, ActionState::Expired).await;
        assert!(!device.state().locked);
        h.app.stop().await;
    }
}
