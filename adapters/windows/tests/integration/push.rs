//! WNS push: tokens, raw notifications to the channel the device reports, and the
//! errors WNS answers.

use std::time::Duration;

use mdm_domain::ActionState;
use mdm_e2e::windows::Edition;
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::*;

test_on_both_backends! {
    async fn an_action_pushes_and_the_device_comes_for_it(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        // The first session reads the channel.
        device.sync().await.unwrap();
        let channel = device.channel.clone().unwrap();
        let action = h.act(&device, "rebootNow", json!({})).await;
        assert!(h.wns.wait_for(&channel, 1, Duration::from_secs(20)).await, "no push");
        let report = device.sync_after_push().await.unwrap();
        assert!(report.executed.iter().any(|e| e.loc_uri.ends_with("RebootNow")));
        h.action_state(action, ActionState::Done).await;
        assert_eq!(h.wns.token_requests(), 1);

        // An expired token is fetched again once.
        h.wns.expire_tokens();
        h.act(&device, "rebootNow", json!({})).await;
        assert!(h.wns.wait_for(&channel, 2, Duration::from_secs(20)).await);
        assert_eq!(h.wns.token_requests(), 2);

        // 503 and 406 are retried.
        h.wns.fail_next(1, 503, Some(0));
        h.wns.fail_next(1, 406, None);
        h.act(&device, "rebootNow", json!({})).await;
        assert!(h.wns.wait_for(&channel, 3, Duration::from_secs(20)).await);
        // Retries inside one push are not counted apart: three pushes, all delivered.
        assert!(pushes_counted(&h, "delivered", 3).await);
        assert_eq!(pushed(&h, "transient"), 0);
    }
}

/// Waits until `outcome` has been counted `count` times (the count follows WNS' answer).
async fn pushes_counted(h: &Harness, outcome: &str, count: u64) -> bool {
    for _ in 0..400 {
        if pushed(h, outcome) >= count {
            return pushed(h, outcome) == count;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn pushed(h: &Harness, outcome: &str) -> u64 {
    h.adapter.metrics.pushes.with_label_values(&[outcome]).get()
}

test_on_both_backends! {
    async fn a_gone_channel_is_not_pushed_again_until_a_new_one_is_reported(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.sync().await.unwrap();
        let channel = device.channel.clone().unwrap();
        h.wns.expire_channel(&channel);
        let first = h.act(&device, "rebootNow", json!({})).await;
        h.queued(first).await;
        // The 410 is recorded: the channel is off.
        let store = h.app.context.store.clone();
        let id = Harness::device_id(&device);
        for _ in 0..400 {
            let state: Option<String> = store
                .read(move |c| {
                    use diesel::prelude::*;
                    use mdm_store::schema::win_enrollments;
                    win_enrollments::table
                        .filter(win_enrollments::device_id.eq(id))
                        .filter(win_enrollments::state.eq("active"))
                        .select(win_enrollments::channel_state)
                        .first::<Option<String>>(c)
                        .map_err(mdm_store::StoreError::from)
                })
                .await
                .unwrap();
            if state.as_deref() == Some("expired") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Polling still delivers.
        let report = device.sync().await.unwrap();
        assert!(report.executed.iter().any(|e| e.loc_uri.ends_with("RebootNow")));
        // The device renewed its channel: the session read it, pushes resume.
        let renewed = h.wns.new_channel();
        device.channel = Some(renewed.clone());
        device.sync().await.unwrap();
        h.act(&device, "rebootNow", json!({})).await;
        assert!(h.wns.wait_for(&renewed, 1, Duration::from_secs(20)).await);
        assert_eq!(h.wns.notifications(&channel), 0);
        assert!(pushes_counted(&h, "channel_gone", 1).await);
        assert!(pushes_counted(&h, "delivered", 1).await);
    }
}

test_on_both_backends! {
    async fn refused_credentials_leave_polling(db) {
        let h = Harness::with(db, Options { wns_secret: "wrong".into(), ..Options::default() }).await;
        let mut device = h.enrolled(Edition::Mobile).await;
        device.sync().await.unwrap();
        let channel = device.channel.clone().unwrap();
        let action = h.act(&device, "remoteLock", json!({})).await;
        h.queued(action).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.wns.notifications(&channel), 0);
        assert_eq!(h.wns.token_requests(), 1, "a refused credential is not retried");
        assert!(pushes_counted(&h, "permanent", 1).await);
        device.sync().await.unwrap();
        h.action_state(action, ActionState::Done).await;
    }
}

test_on_both_backends! {
    async fn without_push_configuration_no_pfn_and_no_channel_read(db) {
        let h = Harness::with(db, Options { push: false, ..Options::default() }).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        assert_eq!(device.enrollment.as_ref().unwrap().pfn, None);
        let report = device.sync().await.unwrap();
        assert!(report.executed.iter().all(|e| !e.loc_uri.ends_with("ChannelURI")));
    }
}
