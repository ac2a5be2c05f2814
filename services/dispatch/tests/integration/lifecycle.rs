//! The life of an action: reports, supersede, cancel, expiry.

use chrono::Duration;
use mdm_domain::{ActionId, ActionState, DeviceId, ManagementState, Platform};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::fakes::NewDevice;
use crate::{Harness, assert_problem, eventually};

async fn act(h: &Harness, device: DeviceId, action: &str) -> ActionId {
    let (status, body) = h.act(device, action, None).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn cancel(
    h: &Harness,
    device: DeviceId,
    action: ActionId,
) -> (reqwest::StatusCode, serde_json::Value) {
    h.call(
        Method::POST,
        &format!(
            "/api/v1/deviceManagement/managedDevices/{device}/deviceActionResults/{action}/cancel"
        ),
        &h.admin,
        None,
    )
    .await
}

test_on_both_backends! {
    async fn reports_move_an_action_forward_only(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let retire = act(&h, phone, "retire").await;
        assert_eq!(h.action_state(phone, &retire.to_string()).await, "pending");
        h.report(retire, phone, ActionState::Sent, None).await;
        assert_eq!(h.action_state(phone, &retire.to_string()).await, "sent");
        h.report(retire, phone, ActionState::Active, None).await;
        eventually("retireIssued", || h.fakes.states_of(phone).contains(&(ManagementState::RetireIssued, false))).await;
        h.report(retire, phone, ActionState::Done, None).await;
        assert_eq!(h.action_state(phone, &retire.to_string()).await, "done");
        eventually("retired", || h.fakes.states_of(phone).contains(&(ManagementState::Retired, false))).await;
        // A late or repeated report changes nothing.
        h.report(retire, phone, ActionState::Active, None).await;
        h.report(retire, phone, ActionState::Failed, Some("500")).await;
        assert_eq!(h.action_state(phone, &retire.to_string()).await, "done");

        // Failures carry the device's code.
        let lock = act(&h, phone, "rebootNow").await;
        h.report(lock, phone, ActionState::NotSupported, Some("405")).await;
        let results = h.results(phone).await;
        let reboot = results.iter().find(|r| r["id"] == lock.to_string()).unwrap();
        assert_eq!((reboot["actionState"].as_str(), reboot["errorCode"].as_str()), (Some("notSupported"), Some("405")));

        // A factory reset that keeps the enrollment leaves the device managed.
        let pc = h.fakes.add(h.tenant, NewDevice::new(Platform::Windows));
        let (_, wipe) = h.act(pc, "wipe", Some(json!({ "keepEnrollmentData": true, "keepUserData": true }))).await;
        let wipe: ActionId = wipe["id"].as_str().unwrap().parse().unwrap();
        h.report(wipe, pc, ActionState::Done, None).await;
        eventually("still managed", || h.fakes.states_of(pc).last() == Some(&(ManagementState::Managed, false))).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn an_undelivered_action_is_withdrawn_by_cancel_and_by_a_wipe(db) {
        // No relay: deliveries wait in the outbox, as when the adapter is unreachable.
        let h = Harness::start_with(db, |c| c.outbox.relay = false).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let sync = act(&h, phone, "syncDevice").await;
        let (status, canceled) = cancel(&h, phone, sync).await;
        assert_eq!((status.as_u16(), canceled["actionState"].as_str()), (202, Some("canceled")));

        let lock = act(&h, phone, "remoteLock").await;
        let reboot = act(&h, phone, "rebootNow").await;
        let wipe = act(&h, phone, "wipe").await;
        for superseded in [lock, reboot] {
            let results = h.results(phone).await;
            let result = results.iter().find(|r| r["id"] == superseded.to_string()).unwrap();
            assert_eq!((result["actionState"].as_str(), result["errorCode"].as_str()), (Some("canceled"), Some("superseded")));
        }
        assert_eq!(h.action_state(phone, &wipe.to_string()).await, "pending");
        let undelivered: i64 = h
            .app
            .context
            .store
            .read(|c| {
                use diesel::prelude::*;
                mdm_store::schema::rt_outbox::table
                    .filter(mdm_store::schema::rt_outbox::kind.eq("adapter.deliver_action"))
                    .count()
                    .get_result(c)
                    .map_err(mdm_store::StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(undelivered, 1, "only the wipe is still to be sent");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_delivered_action_is_canceled_by_its_adapter_until_the_device_has_it(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let lock = act(&h, phone, "remoteLock").await;
        eventually("delivered", || h.fakes.delivered_for(lock) == 1).await;
        h.report(lock, phone, ActionState::Sent, None).await;
        let (status, body) = cancel(&h, phone, lock).await;
        assert_eq!((status.as_u16(), body["actionState"].as_str()), (202, Some("sent")));
        eventually("the adapter is asked to cancel", || h.fakes.canceled_for(lock) == 1).await;
        h.report(lock, phone, ActionState::Canceled, None).await;
        assert_eq!(h.action_state(phone, &lock.to_string()).await, "canceled");

        // A wipe supersedes what the adapter still holds.
        let reboot = act(&h, phone, "rebootNow").await;
        eventually("delivered", || h.fakes.delivered_for(reboot) == 1).await;
        h.report(reboot, phone, ActionState::Sent, None).await;
        act(&h, phone, "wipe").await;
        eventually("superseded at the adapter", || h.fakes.canceled_for(reboot) == 1).await;

        // Once the device has it, it cannot be canceled.
        let sync = act(&h, phone, "syncDevice").await;
        h.report(sync, phone, ActionState::Active, None).await;
        assert_problem(&cancel(&h, phone, sync).await, 409, "action_not_cancelable");
        h.report(sync, phone, ActionState::Done, None).await;
        assert_problem(&cancel(&h, phone, sync).await, 409, "action_not_cancelable");
        assert_problem(&cancel(&h, phone, ActionId::new()).await, 404, "not_found");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn actions_expire_per_kind(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let sync = act(&h, phone, "syncDevice").await;
        let retire = act(&h, phone, "retire").await;
        eventually("delivered", || h.fakes.delivered_for(sync) == 1 && h.fakes.delivered_for(retire) == 1).await;
        h.report(sync, phone, ActionState::Sent, None).await;
        h.report(retire, phone, ActionState::Sent, None).await;

        // A sync waits a day; its adapter gets a grace day to report the expiry itself.
        h.app.clock.advance(Duration::hours(25));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(h.action_state(phone, &sync.to_string()).await, "sent", "the adapter reports first");
        h.app.clock.advance(Duration::hours(24));
        let mut expired = false;
        for _ in 0..100 {
            if h.action_state(phone, &sync.to_string()).await == "expired" {
                expired = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(expired);
        eventually("the adapter drops it", || h.fakes.canceled_for(sync) == 1).await;
        // A retire waits 30 days.
        assert_eq!(h.action_state(phone, &retire.to_string()).await, "sent");
        h.app.stop().await;
    }
}
