//! The command queue: order, priority lane, NotNow, expiry, cancellation, idempotency.

use mdm_api::internal::adapter::ActionParams;
use mdm_domain::{ActionKind, ActionState};
use mdm_e2e::apple::{Answer, AuthMode, Model};
use mdm_store::test_on_both_backends;

use crate::{Harness, Options};

fn forwarded() -> AuthMode {
    AuthMode::Forwarded {
        header: "Client-Cert".into(),
        rfc9440: true,
    }
}

test_on_both_backends! {
    async fn lock_and_wipe_overtake_the_queue(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        // The inventory queries wait; a sync and a lock arrive.
        let sync = h.deliver(id, ActionKind::SyncDevice, ActionParams::default()).await;
        h.report(sync, ActionState::Sent).await;
        let lock = h.deliver(id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.report(lock, ActionState::Sent).await;
        iphone.poll().await.unwrap();
        let types: Vec<_> = iphone.received.iter().map(|r| r.request_type.as_str()).collect();
        assert_eq!(types[0], "DeviceLock", "priority first: {types:?}");
        assert_eq!(types.last(), Some(&"DeviceInformation"), "the sync's query after the inventory");
        h.report(lock, ActionState::Done).await;
        h.report(sync, ActionState::Done).await;
    }
}

test_on_both_backends! {
    async fn not_now_is_skipped_for_the_exchange_and_retried_after_idle(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        iphone.script("DeviceInformation", &[Answer::NotNow]);
        let handled = iphone.poll().await.unwrap();
        assert_eq!(handled, 5);
        assert_eq!(h.queued(&iphone).await, ["DeviceInformation"], "put back, not lost");
        let types: Vec<_> = iphone.received.iter().map(|r| r.request_type.as_str()).collect();
        assert_eq!(types.iter().filter(|t| **t == "DeviceInformation").count(), 1, "not offered again in the exchange");
        // The next Idle starts a new exchange: offered again.
        assert_eq!(iphone.poll().await.unwrap(), 1);
        assert_eq!(iphone.received.last().unwrap().request_type, "DeviceInformation");
        assert!(h.queued(&iphone).await.is_empty());
        let _ = id;
    }
}

test_on_both_backends! {
    async fn errors_and_format_errors_end_actions(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut mac, id) = h.enroll(Model::Mac, forwarded()).await;
        h.drain(&mut mac).await;
        mac.script("DeviceLock", &[Answer::Error { code: 12_005, domain: "MCMDMErrorDomain".into(), description: "Locked out".into() }]);
        let failed = h.deliver(id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.push_and_poll(&mut mac, 2).await;
        let report = h.report(failed, ActionState::Failed).await;
        assert_eq!(report.error_code.as_deref(), Some("12005"));
        assert_eq!(report.error_detail.as_deref(), Some("Locked out"));
        mac.script("RestartDevice", &[Answer::FormatError]);
        let unsupported = h.deliver(id, ActionKind::RebootNow, ActionParams::default()).await;
        h.push_and_poll(&mut mac, 3).await;
        h.report(unsupported, ActionState::NotSupported).await;
        let results = h.app.context.store.read({
            let udid = mac.udid.clone();
            move |c| mdm_apple::store::results_of(c, &udid, 100)
        }).await.unwrap();
        assert!(results.iter().any(|r| r.status == "Error" && r.error_chain.as_deref().is_some_and(|e| e.contains("12005"))));
        assert!(results.iter().any(|r| r.status == "CommandFormatError"));
    }
}

test_on_both_backends! {
    async fn unanswered_commands_expire_and_dispatch_hears_it(db) {
        let h = Harness::start(db, Options::default()).await;
        let (iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        let action = h.deliver(id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.report(action, ActionState::Sent).await;
        h.app.clock.advance(chrono::Duration::days(8));
        let report = mdm_apple::jobs::expiry(h.apple.clone()).run_now().await.unwrap();
        assert!(report.contains("1 actions"), "{report}");
        h.report(action, ActionState::Expired).await;
        assert!(!h.queued(&iphone).await.contains(&"DeviceLock".to_owned()));
    }
}

test_on_both_backends! {
    async fn an_undelivered_action_can_be_canceled_a_delivered_one_not(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let action = h.deliver(id, ActionKind::RebootNow, ActionParams::default()).await;
        h.report(action, ActionState::Sent).await;
        let outbox = h.app.context.outbox(mdm_api::Service::Dispatch);
        let cancel = mdm_api::internal::adapter::CancelAction { action_id: action, device_id: id, family: mdm_domain::PlatformFamily::Apple };
        h.app.context.store.write(move |c| {
            outbox.enqueue(c, &format!("dispatch:cancel:{action}"), Some(&id.to_string()), &cancel)?;
            Ok::<_, mdm_store::StoreError>(())
        }).await.unwrap();
        h.report(action, ActionState::Canceled).await;
        iphone.poll().await.unwrap();
        assert!(!iphone.received.iter().any(|r| r.request_type == "RestartDevice"));
        // Delivered: the internal API refuses to cancel.
        let lock = h.deliver(id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.push_and_poll(&mut iphone, 3).await;
        h.report(lock, ActionState::Done).await;
        let response = mdm_runtime::testing::http_client()
            .post(format!("{}/internal/v1/apple/actions/{lock}/cancel", h.app.internal_url))
            .bearer_auth(h.app.context.config.security.service_token.as_ref().unwrap().expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);
    }
}

test_on_both_backends! {
    async fn a_repeated_answer_is_recorded_once(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        h.drain(&mut iphone).await;
        let action = h.deliver(id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.push_and_poll(&mut iphone, 2).await;
        h.report(action, ActionState::Done).await;
        let uuid = iphone.received.last().unwrap().uuid.clone();
        let mut again = plist::Dictionary::new();
        again.insert("Status".into(), "Acknowledged".into());
        again.insert("UDID".into(), iphone.udid.clone().into());
        again.insert("CommandUUID".into(), uuid.into());
        let url = iphone.server_url.clone();
        let (status, body) = iphone.send_raw(&url, mdm_e2e::apple::device::to_xml(&again), false).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(h.reports(action).iter().filter(|s| **s == ActionState::Done).count(), 1);
        // Results are pruned after the retention period.
        h.app.clock.advance(chrono::Duration::days(31));
        mdm_apple::jobs::retention(h.apple.clone()).run_now().await.unwrap();
        let udid = iphone.udid.clone();
        let left = h.app.context.store.read(move |c| mdm_apple::store::results_of(c, &udid, 100)).await.unwrap();
        assert!(left.is_empty());
    }
}
