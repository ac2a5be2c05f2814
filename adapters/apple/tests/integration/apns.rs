//! APNs: the pushes' shape, and how each class of error is handled.

use std::time::Duration;

use mdm_api::internal::adapter::ActionParams;
use mdm_domain::ActionKind;
use mdm_e2e::apple::{AuthMode, Model};
use mdm_store::test_on_both_backends;

use crate::fakes::Got;
use crate::{Harness, Options};

fn forwarded() -> AuthMode {
    AuthMode::Forwarded {
        header: "Client-Cert".into(),
        rfc9440: true,
    }
}

async fn push_state(h: &Harness, udid: &str) -> String {
    let udid = udid.to_owned();
    h.app
        .context
        .store
        .read(move |c| mdm_apple::store::enrollment(c, &udid))
        .await
        .unwrap()
        .unwrap()
        .push_state
}

test_on_both_backends! {
    async fn pushes_carry_apples_headers_and_the_push_magic(db) {
        let h = Harness::start(db, Options::default()).await;
        let (iphone, _) = h.enroll(Model::IPhone, forwarded()).await;
        assert!(h.apns.wait_for(&iphone.token_hex(), 1, Duration::from_secs(10)).await);
        let push = h.apns.pushes_to(&iphone.token_hex()).remove(0);
        assert_eq!(push.topic, h.topic);
        assert_eq!(push.push_type, "mdm");
        assert_eq!(push.priority, "10");
        assert_eq!(push.magic, iphone.push_magic);
        assert!(push.expiration.parse::<i64>().unwrap() > h.now());
    }
}

test_on_both_backends! {
    async fn transient_errors_are_retried_on_a_new_connection(db) {
        let h = Harness::start(db, Options::default()).await;
        h.apns.fail_next(429, "TooManyRequests");
        h.apns.fail_next(503, "ServiceUnavailable");
        let (iphone, _) = h.enroll(Model::IPhone, forwarded()).await;
        assert!(h.apns.wait_for(&iphone.token_hex(), 1, Duration::from_secs(10)).await);
        let statuses: Vec<u16> = h.apns.pushes_to(&iphone.token_hex()).iter().map(|p| p.status).collect();
        assert_eq!(statuses, [429, 503, 200]);
        // A GOAWAY: the push is sent again on a fresh connection.
        let (mut mac, mac_id) = h.enroll(Model::Mac, forwarded()).await;
        assert!(h.apns.wait_for(&mac.token_hex(), 1, Duration::from_secs(10)).await);
        h.drain(&mut mac).await;
        h.apns.goaway_next();
        h.deliver(mac_id, ActionKind::SyncDevice, ActionParams::default()).await;
        assert!(h.apns.wait_for(&mac.token_hex(), 2, Duration::from_secs(10)).await);
        assert!(h.apns.connections() >= 1);
        assert_eq!(push_state(&h, &mac.udid).await, "ok");
    }
}

test_on_both_backends! {
    async fn permanent_errors_mark_the_push_state(db) {
        let h = Harness::start(db, Options::default()).await;
        // 410 Unregistered: the device left; inventory hears it vanished.
        let (mut iphone, id) = h.enroll(Model::IPhone, forwarded()).await;
        assert!(h.apns.wait_for(&iphone.token_hex(), 1, Duration::from_secs(10)).await);
        h.drain(&mut iphone).await;
        h.apns.fail_token(&iphone.token_hex(), 410, "Unregistered");
        h.deliver(id, ActionKind::SyncDevice, ActionParams::default()).await;
        assert!(crate::eventually(|| h.apns.pushes_to(&iphone.token_hex()).iter().any(|p| p.status == 410)).await);
        let mut state = String::new();
        for _ in 0..100 {
            state = push_state(&h, &iphone.udid).await;
            if state != "ok" { break; }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(state, "unregistered");
        let vanished = h.wait_for(|g| match g { Got::Unenrolled(u) if u.device_id == id => Some(u.reason), _ => None }).await;
        assert_eq!(vanished, Some(mdm_api::internal::inventory::UnenrollReason::Vanished));
        // Not retried: exactly one attempt for that push.
        assert_eq!(h.apns.pushes_to(&iphone.token_hex()).iter().filter(|p| p.status == 410).count(), 1);
        // A TokenUpdate with a new token heals it.
        h.apns.heal_token(&iphone.token_hex());
        iphone.push_token = vec![3; 32];
        assert_eq!(iphone.token_update().await.unwrap(), 200);
        assert_eq!(push_state(&h, &iphone.udid).await, "ok");

        for (status, reason, expected) in [
            (400u16, "BadDeviceToken", "badDeviceToken"),
            (400, "DeviceTokenNotForTopic", "deviceTokenNotForTopic"),
            (403, "BadCertificate", "certificate"),
        ] {
            let (mut device, id) = h.enroll(Model::IPad, forwarded()).await;
            assert!(h.apns.wait_for(&device.token_hex(), 1, Duration::from_secs(10)).await);
            h.drain(&mut device).await;
            h.apns.fail_token(&device.token_hex(), status, reason);
            h.deliver(id, ActionKind::SyncDevice, ActionParams::default()).await;
            let mut state = String::new();
            for _ in 0..200 {
                state = push_state(&h, &device.udid).await;
                if state != "ok" { break; }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(state, expected, "{reason}");
        }
    }
}

test_on_both_backends! {
    async fn devices_that_do_not_come_are_pushed_again(db) {
        let h = Harness::start(db, Options::default()).await;
        let (iphone, _) = h.enroll(Model::IPhone, forwarded()).await;
        assert!(h.apns.wait_for(&iphone.token_hex(), 1, Duration::from_secs(10)).await);
        // Too early: nothing.
        assert_eq!(mdm_apple::jobs::run_repush(&h.apple).await.unwrap(), 0);
        h.app.clock.advance(chrono::Duration::minutes(20));
        assert_eq!(mdm_apple::jobs::run_repush(&h.apple).await.unwrap(), 1);
        assert!(h.apns.wait_for(&iphone.token_hex(), 2, Duration::from_secs(10)).await);
    }
}
