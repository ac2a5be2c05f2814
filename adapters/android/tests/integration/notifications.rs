//! Every notification type, duplicates, malformed messages and push authentication.

use mdm_api::internal::inventory::{DeviceFactsReported, DevicesSeen};
use mdm_e2e::android::{Hardware, PushAuth, PushSubscription};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use serde_json::{Value, json};

use crate::{AUDIENCE, Harness, PUBSUB_EMAIL, push_body};

async fn metrics(h: &Harness) -> String {
    h.http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn counted(text: &str, kind: &str, outcome: &str) -> u64 {
    text.lines()
        .find(|l| {
            l.starts_with("mdm_android_notifications_total")
                && l.contains(&format!("type=\"{kind}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

test_on_both_backends! {
    async fn a_duplicate_message_is_applied_once(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::samsung()).await;
        device.update(|d| d["softwareInfo"]["androidVersion"] = json!("14"));
        let first = device.report_status().await;
        assert_eq!(first.status, 204);
        // Pub/Sub delivers the same message again, with other facts inside.
        device.update(|d| d["softwareInfo"]["androidVersion"] = json!("15"));
        let again = h.mock.republish(&first.message_id, "STATUS_REPORT", device.resource().as_ref()).await;
        assert_eq!(again.status, 204);
        h.wait_message::<DeviceFactsReported>(|m| m.device_id == id).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let reported = h.messages::<DeviceFactsReported>();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].facts.os_version.unwrap().to_string(), "14");
        assert!(counted(&metrics(&h).await, "STATUS_REPORT", "duplicate") >= 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn malformed_messages_are_acknowledged_and_counted(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, _) = h.enrol(&tenant, "dedicated", Hardware::pixel()).await;
        let not_base64 = json!({"message": {"attributes": {"notificationType": "STATUS_REPORT"}, "data": "%%%", "messageId": "m1"}});
        let bodies = [
            json!("not an object"),
            json!({"subscription": "s"}),
            json!({"message": {"attributes": {"notificationType": "STATUS_REPORT"}}}),
            not_base64,
            push_body("m2", "STATUS_REPORT", Some(&json!("a string, not a Device"))),
            push_body("m3", "STATUS_REPORT", Some(&json!({"hardwareInfo": {"model": "x"}}))),
            push_body("m4", "COMMAND", Some(&json!({"done": true}))),
            push_body("m5", "STATUS_REPORT", Some(&json!({"name": device.name(), "apiLevel": "thirty"}))),
            push_body("m6", "SOMETHING_NEW", Some(&json!({}))),
            push_body("m7", "COMMAND", Some(&json!({"name": "enterprises/x/devices/y/operations/1", "done": true}))),
            push_body("m8", "STATUS_REPORT", Some(&json!({"name": "enterprises/unknown/devices/1"}))),
        ];
        for body in &bodies {
            assert_eq!(h.push(body).await, 204, "{body}");
        }
        let raw = h.mock.push_raw("{\"message\": ").await;
        assert_eq!(raw, 204);
        // Optional fields missing: still applied.
        let bare = push_body("m9", "STATUS_REPORT", Some(&json!({"name": device.name()})));
        assert_eq!(h.push(&bare).await, 204);
        let text = metrics(&h).await;
        assert!(counted(&text, "unknown", "malformed") >= 3, "{text}");
        assert!(counted(&text, "STATUS_REPORT", "malformed") >= 3);
        assert_eq!(counted(&text, "other", "unknown_type"), 1);
        assert_eq!(counted(&text, "COMMAND", "unknown_operation"), 1);
        assert_eq!(counted(&text, "STATUS_REPORT", "unknown_enterprise"), 1);
        assert!(counted(&text, "STATUS_REPORT", "applied") >= 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn usage_logs_upgrades_and_tests(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateWorkProfile", Hardware::pixel()).await;
        h.android.flush_seen().await.unwrap();
        h.app.clock.advance(chrono::Duration::hours(3));
        let now = h.app.clock.now();
        let logs = json!({"device": device.name(), "retrievalTime": now.to_rfc3339(), "usageLogEvents": [{"eventType": "KEYGUARD_DISMISSED"}]});
        assert_eq!(h.mock.publish("USAGE_LOGS", Some(&logs)).await.status, 204);
        h.android.flush_seen().await.unwrap();
        let seen = h.wait_message::<DevicesSeen>(|m| m.seen.iter().any(|s| s.device_id == id && s.at == now)).await;
        assert_eq!(seen.seen.len(), 1);

        let upgrade = json!({"enterprise": tenant.enterprise, "upgradeState": "UPGRADE_STATE_SUCCEEDED"});
        assert_eq!(h.mock.publish("ENTERPRISE_UPGRADE", Some(&upgrade)).await.status, 204);
        assert_eq!(h.mock.publish("test", None).await.status, 204);
        let text = metrics(&h).await;
        assert_eq!(counted(&text, "USAGE_LOGS", "applied"), 1);
        assert_eq!(counted(&text, "ENTERPRISE_UPGRADE", "applied"), 1);
        assert_eq!(counted(&text, "test", "test"), 1);
        assert_eq!(counted(&text, "ENROLLMENT", "enrolling"), 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn pushes_must_be_authenticated(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, _) = h.enrol(&tenant, "dedicated", Hardware::pixel()).await;
        let body = push_body("a1", "STATUS_REPORT", device.resource().as_ref()).to_string();
        let endpoint = h.url(mdm_android::PUBSUB_PATH);
        let post = |url: String, bearer: Option<String>| {
            let mut request = h.http.post(url).header("content-type", "application/json").body(body.clone());
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            request
        };
        assert_eq!(post(endpoint.clone(), None).send().await.unwrap().status(), 401);
        assert_eq!(post(format!("{endpoint}?token=wrong"), None).send().await.unwrap().status(), 401);
        let good = h.mock.oidc_token(AUDIENCE, PUBSUB_EMAIL);
        assert_eq!(post(endpoint.clone(), Some(good)).send().await.unwrap().status(), 204);
        for bad in [
            h.mock.oidc_token("https://someone-else.example", PUBSUB_EMAIL),
            h.mock.oidc_token(AUDIENCE, "intruder@evil.iam.gserviceaccount.com"),
            format!("{}x", h.mock.oidc_token(AUDIENCE, PUBSUB_EMAIL)),
            "a.b.c".into(),
        ] {
            assert_eq!(post(endpoint.clone(), Some(bad)).send().await.unwrap().status(), 401);
        }
        // An expired token.
        let stale = h.mock.oidc_token(AUDIENCE, PUBSUB_EMAIL);
        h.app.clock.advance(chrono::Duration::hours(2));
        assert_eq!(post(endpoint.clone(), Some(stale)).send().await.unwrap().status(), 401);
        // Pub/Sub with OIDC push: the whole flow.
        h.mock.push_to(PushSubscription {
            endpoint,
            auth: PushAuth::Oidc { audience: AUDIENCE.into(), email: PUBSUB_EMAIL.into() },
            subscription: "projects/p/subscriptions/oidc".into(),
        });
        assert_eq!(device.report_status().await.status, 204);
        let problem: Value = post(h.url(mdm_android::PUBSUB_PATH), None).send().await.unwrap().json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
        h.app.stop().await;
    }
}
