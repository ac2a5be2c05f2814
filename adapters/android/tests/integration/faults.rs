//! Each fault the mock injects, OAuth token refresh, and the reconcile of a vanished device.

use std::time::Duration;

use mdm_api::internal::adapter::ActionParams;
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceUnenrolled, UnenrollReason};
use mdm_domain::{ActionKind, ActionState};
use mdm_e2e::android::{Fault, FaultKind, Hardware, PushAuth, PushSubscription, Setup};
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::Harness;

async fn settle(h: &Harness) {
    // Let the worker's own loop finish what it is doing.
    for _ in 0..3 {
        h.android.run_worker_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

test_on_both_backends! {
    async fn after_a_429_nothing_is_sent_for_a_minute(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        h.mock.inject(Fault::new(FaultKind::RateLimited, "devices.issueCommand", 1));
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        for _ in 0..200 {
            if h.amapi_calls("devices.issueCommand") == 1 { break; }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        settle(&h).await;
        assert_eq!(h.amapi_calls("devices.issueCommand"), 1);
        // Other calls for the same project wait too: an enrollment token is refused at once,
        // saying how long the wait really is.
        let response = h.http.post(h.url(mdm_android::TOKENS_PATH)).bearer_auth(&tenant.admin)
            .json(&json!({"profile": "dedicated"})).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((55..=60).contains(&retry_after), "Retry-After: {retry_after}");
        let problem: serde_json::Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("resume in {retry_after} seconds")), "{detail}");
        assert_eq!(h.amapi_calls("enrollmentTokens.create"), 1, "the enrollment's token, none since");
        h.advance(chrono::Duration::seconds(59)).await;
        settle(&h).await;
        assert_eq!(h.amapi_calls("devices.issueCommand"), 1, "sent again within a minute of a 429");
        h.advance(chrono::Duration::seconds(17)).await;
        h.wait_report(lock, ActionState::Done).await;
        assert_eq!(h.amapi_calls("devices.issueCommand"), 2);
        assert!(device.state().locked);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn unavailable_and_timeouts_back_off_and_succeed(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "dedicated", Hardware::pixel()).await;
        h.mock.inject(Fault::new(FaultKind::Unavailable, "devices.issueCommand", 1));
        h.mock.inject(Fault::new(FaultKind::Stall(Duration::from_secs(3)), "devices.issueCommand", 1));
        let reboot = h.deliver(&tenant, id, ActionKind::RebootNow, ActionParams::default()).await;
        for _ in 0..200 {
            if h.amapi_calls("devices.issueCommand") == 1 { break; }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        settle(&h).await;
        assert_eq!(h.amapi_calls("devices.issueCommand"), 1);
        // The first backoff is at most a second.
        h.advance(chrono::Duration::seconds(1)).await;
        // The stalled request times out (2 s): its fate is unknown...
        for _ in 0..200 {
            if h.amapi_calls("devices.issueCommand") == 2 { break; }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // ...so the next attempt first asks Google what the device got.
        h.advance(chrono::Duration::seconds(2)).await;
        h.wait_report(reboot, ActionState::Done).await;
        assert_eq!(h.amapi_calls("operations.list"), 1);
        assert_eq!(device.state().reboots, 1, "rebooted once");

        // In-place retries of an admin call: two 503s, then the token is made.
        h.mock.inject(Fault::new(FaultKind::Unavailable, "enrollmentTokens.create", 2));
        let (status, _) = h.token(&tenant, json!({"profile": "dedicated"})).await;
        assert_eq!(status, 201);
        let waits = h.pauses.lock().unwrap().clone();
        assert_eq!(waits.len(), 2);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(10)));
        assert!(waits[1] >= waits[0] / 2);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_404_or_the_500_quirk_means_the_device_left(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        for fault in [FaultKind::NotFound, FaultKind::EntityNotFound500] {
            let (_, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
            h.mock.inject(Fault::new(fault, "devices.issueCommand", 1));
            let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
            let report = h.wait_report(lock, ActionState::Failed).await;
            assert_eq!(report.error_code.as_deref(), Some("NOT_FOUND"));
            let gone = h.wait_message::<DeviceUnenrolled>(|m| m.device_id == id).await;
            assert_eq!(gone.reason, UnenrollReason::Vanished);
            // Not retried.
            settle(&h).await;
        }
        assert_eq!(h.amapi_calls("devices.issueCommand"), 2);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn oauth_tokens_are_refreshed(db) {
        let h = Harness::start(db).await;
        // A token that lives 60 s is stale at once for yup-oauth2 (a minute's margin).
        h.mock.set_token_lifetime(60);
        let tenant = h.tenant().await;
        let before = h.mock.token_requests();
        for _ in 0..2 {
            let (status, _) = h.token(&tenant, json!({"profile": "dedicated"})).await;
            assert_eq!(status, 201);
        }
        assert_eq!(h.mock.token_requests(), before + 2);
        h.mock.set_token_lifetime(3599);
        let (status, _) = h.token(&tenant, json!({"profile": "dedicated"})).await;
        assert_eq!(status, 201);
        let (status, _) = h.token(&tenant, json!({"profile": "dedicated"})).await;
        assert_eq!(status, 201);
        assert_eq!(h.mock.token_requests(), before + 3, "a live token is reused");
        // Google forgets the token: the 401 brings a fresh one, and the call succeeds.
        h.mock.revoke_tokens();
        let (status, _) = h.token(&tenant, json!({"profile": "dedicated"})).await;
        assert_eq!(status, 201);
        assert_eq!(h.mock.token_requests(), before + 4);
        let statuses: Vec<u16> = h.mock.requests_to("enrollmentTokens.create").iter().map(|r| r.status).collect();
        assert_eq!(&statuses[statuses.len() - 2..], [401, 200]);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn reconcile_finds_vanished_and_unknown_devices(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "personalWorkProfile", Hardware::pixel()).await;
        let (_kept, kept_id) = h.enrol(&tenant, "corporateWorkProfile", Hardware::pixel()).await;
        // An action waits for a device that the user then resets.
        device.set_online(false);
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        h.wait_report(lock, ActionState::Sent).await;
        device.vanish();

        // A device enrols while notifications are lost.
        h.mock.push_to(PushSubscription {
            endpoint: "http://127.0.0.1:9/nowhere".into(),
            auth: PushAuth::None,
            subscription: "projects/p/subscriptions/lost".into(),
        });
        let (_, token) = h.token(&tenant, json!({"profile": "dedicated"})).await;
        let unknown = h.mock.enroll(token["value"].as_str().unwrap(), Setup::CompanyDevice, Hardware::pixel()).await.unwrap();
        assert!(h.device_row(unknown.name()).await.is_none());

        let summary = h.android.reconcile().await.unwrap();
        assert!(summary.contains("1 devices left management, 1 unknown devices found"), "{summary}");
        let gone = h.wait_message::<DeviceUnenrolled>(|m| m.device_id == id).await;
        assert_eq!(gone.reason, UnenrollReason::Vanished);
        assert!(h.messages::<DeviceUnenrolled>().iter().all(|m| m.device_id != kept_id));
        h.wait_report(lock, ActionState::Failed).await;
        let found = h.wait_device_id(unknown.name()).await;
        let enrolled = h.wait_message::<DeviceEnrolled>(|m| m.device_id == found).await;
        assert_eq!(enrolled.management_mode, Some(mdm_domain::ManagementMode::Dedicated));
        // A second run finds nothing new.
        let summary = h.android.reconcile().await.unwrap();
        assert!(summary.contains("0 devices left management, 0 unknown"), "{summary}");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_command_whose_record_was_lost_is_not_sent_again(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        mdm_store::testing::refuse_updates(&h.app.context.store, "and_actions", "NEW.phase = 'issued'").await;
        let lock = h.deliver(&tenant, id, ActionKind::RemoteLock, ActionParams::default()).await;
        for _ in 0..200 {
            if h.amapi_calls("devices.issueCommand") == 1 { break; }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        settle(&h).await;
        assert_eq!(h.amapi_calls("devices.issueCommand"), 1);
        assert!(device.state().locked, "Google carried the command out");
        mdm_store::testing::stop_refusing_updates(&h.app.context.store, "and_actions").await;

        // Once the claim lapses, the next attempt asks Google what the device got first.
        h.advance(chrono::Duration::minutes(3)).await;
        h.wait_report(lock, ActionState::Done).await;
        assert_eq!(h.amapi_calls("operations.list"), 1);
        assert_eq!(h.amapi_calls("devices.issueCommand"), 1, "issued once");
        assert_eq!(h.mock.operations(device.name()).len(), 1);
        h.app.stop().await;
    }
}
