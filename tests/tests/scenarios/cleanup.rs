//! Clean-up rules: devices that stopped checking in are removed after the tenant's
//! inactivity window; a device whose identity certificate expired is removed 180 days
//! later.

use chrono::{DateTime, Duration, Utc};
use mdm_domain::DeviceId;
use mdm_e2e::apple::Model;
use mdm_e2e::windows::Edition;
use mdm_store::test_on_both_backends;
use serde_json::json;

use crate::world::{Options, World};

const SETTINGS: &str = "/api/v1/deviceManagement/managedDeviceCleanupSettings";

fn last_sync(device: &serde_json::Value) -> Option<DateTime<Utc>> {
    device["lastSyncDateTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
}

/// Gives the clean-up jobs (every 100 ms) time to run on the present clock.
async fn let_jobs_run() {
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
}

async fn present(w: &World, ids: &[DeviceId]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(w.device(*id).await.is_some());
    }
    out
}

test_on_both_backends! {
    async fn cleanup_rules(db) {
        let w = World::start_with(db, Options { cleanup_period_ms: 100, ..Options::default() }).await;
        let (status, body) = w.put(SETTINGS, json!({ "deviceInactivityBeforeRetirementInDays": 90 })).await;
        assert_eq!(status, 200, "{body}");
        let sam = w.user("sam").await;
        let t0 = w.now();
        let stale_iphone = w.enrol_apple(Model::IPhone, "company", Some(&sam)).await;
        let stale_android = w.enrol_android("corporateFullyManaged", Some(&sam)).await;
        let stale_pc = w.enrol_windows(Edition::Desktop, &sam).await;
        let mut mac = w.enrol_apple(Model::Mac, "company", Some(&sam)).await;
        let mut mobile = w.enrol_windows(Edition::Mobile, &sam).await;
        let stale = [stale_iphone.id, stale_android.id, stale_pc.id];
        let fresh = [mac.id, mobile.id];

        // Day 60: the Mac and the phone check in; the others stay silent.
        w.advance(Duration::days(60));
        mac.sim.poll().await.unwrap();
        w.windows_session(&mut mobile).await;
        for id in fresh {
            w.wait_device(id, |d| d.and_then(last_sync).is_some_and(|t| t >= t0 + Duration::days(60))).await;
        }
        let_jobs_run().await;
        assert_eq!(present(&w, &stale).await, [true; 3], "89 days of silence is within the window");

        // Day 91: the silent ones are past the 90 days and removed; the others stay.
        w.advance(Duration::days(31));
        for id in stale {
            w.wait_device(id, |d| d.is_none()).await;
        }
        assert_eq!(present(&w, &fresh).await, [true; 2]);
        // The removed Android phone left management at Google too.
        for _ in 0..200 {
            if stale_android.sim.resource().is_none() { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(stale_android.sim.resource().is_none(), "the stale phone is still enrolled at Google");

        // The certificate rule: with the inactivity rule off, the Mac whose identity
        // certificate (365 days from enrollment) expired goes 180 days after the expiry.
        let (status, _) = w.put(SETTINGS, json!({ "deviceInactivityBeforeRetirementInDays": null })).await;
        assert_eq!(status, 200);
        let to = |day: i64| t0 + Duration::days(day) - w.now();
        w.advance(to(365 + 179));
        let_jobs_run().await;
        assert!(w.device(mac.id).await.is_some(), "179 days after the certificate expired");
        w.advance(to(365 + 181));
        w.wait_device(mac.id, |d| d.is_none()).await;
        // The audit trail says which rule removed each device.
        for (id, rule) in [(stale_iphone.id, "inactivity"), (stale_android.id, "inactivity"), (stale_pc.id, "inactivity"), (mac.id, "certificate")] {
            let mut found = None;
            for _ in 0..200 {
                let (status, audit) = w.get("/api/v1/auditEvents?top=200").await;
                assert_eq!(status, 200, "{audit}");
                found = audit["value"].as_array().unwrap().iter()
                    .find(|e| e["activity"] == "device.cleanedUp" && e["deviceId"] == id.to_string())
                    .cloned();
                if found.is_some() { break; }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            let event = found.unwrap_or_else(|| panic!("no clean-up event for {id}"));
            assert_eq!(event["detail"]["rule"], rule, "{event}");
        }
    }
}
