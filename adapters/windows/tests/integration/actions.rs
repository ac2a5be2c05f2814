//! Every action through the admin-API-shaped route: its LocURI on the device, and how the
//! device's status codes become action states.

use mdm_domain::ActionState;
use mdm_e2e::windows::{Edition, Lifecycle};
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::*;

/// Acts, syncs, and answers the LocURIs the device executed for the action.
async fn perform(
    h: &Harness,
    device: &mut mdm_e2e::windows::WindowsDevice,
    action: &str,
    params: serde_json::Value,
) -> (mdm_domain::ActionId, Vec<(String, String, u16)>) {
    let id = h.act(device, action, params).await;
    // Refused before queuing (not supported here) or queued.
    let fixture = h.fixture.clone();
    let state = wait_for(|| {
        fixture
            .reports_of(id)
            .into_iter()
            .map(|r| r.state)
            .find(|s| *s == ActionState::Sent || s.is_terminal())
    })
    .await;
    if state != ActionState::Sent {
        return (id, Vec::new());
    }
    let report = device.sync().await.unwrap();
    let executed = report
        .executed
        .into_iter()
        .filter(|e| {
            !e.loc_uri.contains("DevDetail")
                && !e.loc_uri.contains("DeviceStatus")
                && !e.loc_uri.ends_with("ChannelURI")
        })
        .map(|e| (e.verb, e.loc_uri, e.status))
        .collect();
    (id, executed)
}

test_on_both_backends! {
    async fn wipes_use_the_node_their_options_ask_for(db) {
        let h = Harness::start(db).await;
        for (params, node, ends) in [
            (json!({}), "./Device/Vendor/MSFT/RemoteWipe/doWipe", true),
            (json!({"useProtectedWipe": true}), "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected", true),
            (json!({"keepEnrollmentData": true}), "./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData", false),
            (json!({"keepEnrollmentData": true, "keepUserData": true}), "./Device/Vendor/MSFT/RemoteWipe/doWipePersistUserData", false),
        ] {
            let mut device = h.enrolled(Edition::Desktop).await;
            device.sync().await.unwrap();
            let (id, executed) = perform(&h, &mut device, "wipe", params.clone()).await;
            assert_eq!(executed, [("Exec".to_owned(), node.to_owned(), 200)], "{params}");
            let reports: Vec<ActionState> = h.fixture.reports_of(id).into_iter().map(|r| r.state).collect();
            wait_for(|| h.fixture.report(id, ActionState::Done)).await;
            let reports_now: Vec<ActionState> = h.fixture.reports_of(id).into_iter().map(|r| r.state).collect();
            assert!(reports_now.starts_with(&[ActionState::Sent]), "{reports:?}");
            assert!(reports_now.contains(&ActionState::Active));
            if ends {
                assert_eq!(device.lifecycle, Lifecycle::Wiped);
            } else {
                // The enrollment survives a wipe that keeps it.
                device.sync().await.unwrap();
            }
        }
        // Keeping user data needs 1709: an older desktop is refused before anything is sent.
        let mut old = h.enrolled(Edition::Desktop).await;
        old.build = 15063;
        old.sync().await.unwrap();
        let (id, executed) = perform(&h, &mut old, "wipe", json!({"keepEnrollmentData": true, "keepUserData": true})).await;
        assert!(executed.is_empty());
        let refused = h.action_state(id, ActionState::NotSupported).await;
        assert!(refused.error_detail.unwrap().contains("16299"));
    }
}

test_on_both_backends! {
    async fn retire_delete_and_reboot(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        let (id, executed) = perform(&h, &mut device, "rebootNow", json!({})).await;
        assert_eq!(executed, [("Exec".into(), "./Device/Vendor/MSFT/Reboot/RebootNow".into(), 200)]);
        h.action_state(id, ActionState::Done).await;
        assert_eq!(device.reboots, 1);

        let (id, executed) = perform(&h, &mut device, "retire", json!({})).await;
        assert_eq!(executed, [("Exec".into(), "./Device/Vendor/MSFT/DMClient/Provider/MDMServer/Unenroll".into(), 200)]);
        h.action_state(id, ActionState::Done).await;
        assert_eq!(device.lifecycle, Lifecycle::Unenrolled);

        let mut other = h.enrolled(Edition::Mobile).await;
        let (id, executed) = perform(&h, &mut other, "delete", json!({})).await;
        assert_eq!(executed[0].1, "./Device/Vendor/MSFT/DMClient/Provider/MDMServer/Unenroll");
        h.action_state(id, ActionState::Done).await;

        // A synced device needs no command: the session is the action.
        let mut third = h.enrolled(Edition::Desktop).await;
        let (id, executed) = perform(&h, &mut third, "syncDevice", json!({})).await;
        assert!(executed.is_empty());
        h.action_state(id, ActionState::Done).await;
    }
}

test_on_both_backends! {
    async fn lock_and_pin_reset_on_mobiles_only(db) {
        let h = Harness::start(db).await;
        let mut mobile = h.enrolled(Edition::Mobile).await;
        let (id, executed) = perform(&h, &mut mobile, "remoteLock", json!({})).await;
        assert_eq!(executed, [("Exec".into(), "./Device/Vendor/MSFT/RemoteLock/Lock".into(), 200)]);
        h.action_state(id, ActionState::Done).await;

        let before = mobile.pin.clone();
        let (id, executed) = perform(&h, &mut mobile, "resetPasscode", json!({})).await;
        assert_eq!(
            executed,
            [
                ("Exec".into(), "./Device/Vendor/MSFT/RemoteLock/LockAndResetPIN".into(), 200),
                ("Get".into(), "./Device/Vendor/MSFT/RemoteLock/NewPINValue".into(), 200),
            ]
        );
        h.action_state(id, ActionState::Done).await;
        assert_ne!(mobile.pin, before);
        // The new PIN is kept sealed, never in the clear.
        let pin = mobile.pin.clone().unwrap();
        let sealed: Vec<u8> = {
            use diesel::prelude::*;
            use mdm_store::schema::win_commands;
            let action = id;
            h.app.context.store.read(move |c| {
                win_commands::table
                    .filter(win_commands::action_id.eq(action))
                    .filter(win_commands::step.eq(1))
                    .select(win_commands::sealed_result)
                    .first::<Option<Vec<u8>>>(c)
                    .map_err(mdm_store::StoreError::from)
            }).await.unwrap().unwrap()
        };
        assert!(!sealed.windows(pin.len()).any(|w| w == pin.as_bytes()));
        assert_eq!(h.app.context.secrets.open(mdm_windows::RESULT_PURPOSE, &sealed).unwrap(), pin.as_bytes());

        // A mobile without a PIN answers 405 to Lock: not supported.
        mobile.pin = None;
        let (id, executed) = perform(&h, &mut mobile, "remoteLock", json!({})).await;
        assert_eq!(executed[0].2, 405);
        let report = h.action_state(id, ActionState::NotSupported).await;
        assert_eq!(report.error_code.as_deref(), Some("405"));

        // Desktops: refused before anything is sent.
        let mut desktop = h.enrolled(Edition::Desktop).await;
        for action in ["remoteLock", "resetPasscode"] {
            let (id, executed) = perform(&h, &mut desktop, action, json!({})).await;
            assert!(executed.is_empty());
            h.action_state(id, ActionState::NotSupported).await;
        }
    }
}

test_on_both_backends! {
    async fn status_codes_become_action_states(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        for (code, state) in [(406, ActionState::NotSupported), (404, ActionState::Failed), (500, ActionState::Failed), (202, ActionState::Done)] {
            device.overrides.insert("./Vendor/MSFT/Reboot/RebootNow".into(), code);
            let (id, executed) = perform(&h, &mut device, "rebootNow", json!({})).await;
            assert_eq!(executed[0].2, code);
            let report = h.action_state(id, state).await;
            if state == ActionState::Done {
                assert_eq!(report.error_code, None);
            } else {
                assert_eq!(report.error_code, Some(code.to_string()));
            }
        }
        // A failed first step of a PIN reset: the Get is never sent.
        let mut mobile = h.enrolled(Edition::Mobile).await;
        mobile.overrides.insert("./Vendor/MSFT/RemoteLock/LockAndResetPIN".into(), 500);
        let (id, executed) = perform(&h, &mut mobile, "resetPasscode", json!({})).await;
        assert_eq!(executed.len(), 2, "both steps go in one message");
        h.action_state(id, ActionState::Failed).await;
        let report = mobile.sync().await.unwrap();
        assert!(report.executed.iter().all(|e| !e.loc_uri.contains("RemoteLock")));
    }
}

test_on_both_backends! {
    async fn queue_order_cancel_and_expiry(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.sync().await.unwrap();
        // A reboot queued before a wipe goes after it: wipe has the priority lane.
        let reboot = h.act(&device, "rebootNow", json!({})).await;
        h.queued(reboot).await;
        let wipe = h.act(&device, "wipe", json!({"keepEnrollmentData": true})).await;
        h.queued(wipe).await;
        let report = device.sync().await.unwrap();
        let order: Vec<&str> = report.executed.iter().map(|e| e.loc_uri.as_str()).filter(|l| !l.ends_with("ChannelURI")).collect();
        assert_eq!(order, ["./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData", "./Device/Vendor/MSFT/Reboot/RebootNow"]);

        // Cancel before delivery.
        let canceled = h.act(&device, "rebootNow", json!({})).await;
        h.queued(canceled).await;
        let response = h.http.post(h.url(&format!("/api/v1/deviceManagement/managedDevices/{}/deviceActionResults/{canceled}/cancel", Harness::device_id(&device)))).send().await.unwrap();
        assert_eq!(response.status(), 202);
        h.action_state(canceled, ActionState::Canceled).await;
        let report = device.sync().await.unwrap();
        assert!(report.executed.iter().all(|e| !e.loc_uri.ends_with("RebootNow")));

        // Expiry: queued but never fetched.
        let expiring = h.act(&device, "rebootNow", json!({"expiresInMinutes": 30})).await;
        h.queued(expiring).await;
        h.app.clock.advance(chrono::Duration::minutes(31));
        assert_eq!(h.adapter.expire_commands().await.unwrap(), 1);
        h.action_state(expiring, ActionState::Expired).await;
        let report = device.sync().await.unwrap();
        assert!(report.executed.iter().all(|e| !e.loc_uri.ends_with("RebootNow")));

        // Removed from inventory: the queue goes, the device is answered as unknown.
        let late = h.act(&device, "rebootNow", json!({})).await;
        h.queued(late).await;
        let response = h.http.post(h.url(&format!("/api/v1/deviceManagement/managedDevices/{}/remove", Harness::device_id(&device)))).send().await.unwrap();
        assert_eq!(response.status(), 202);
        let adapter = h.adapter.clone();
        wait_for(|| (adapter.devices_in_memory() == 0).then_some(())).await;
        assert!(device.sync().await.is_err());
        // An action for a device with no enrollment fails at once.
        let none = h.act(&device, "rebootNow", json!({})).await;
        h.action_state(none, ActionState::Failed).await;
    }
}

test_on_both_backends! {
    async fn a_message_sent_again_gets_the_commands_of_its_lost_answer(db) {
        // The answer carrying the restart is lost on its way (the server was killed after
        // recording the delivery, say); the DM client sends its message again and must
        // get the restart then, once.
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.sync().await.unwrap();
        let id = h.act(&device, "rebootNow", json!({})).await;
        h.queued(id).await;
        device.retries = 1;
        device.lose_answers = 1;
        device.sync().await.unwrap();
        h.action_state(id, ActionState::Done).await;
        assert_eq!(device.reboots, 1);
    }
}
