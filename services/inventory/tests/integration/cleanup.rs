//! Clean-up rules: the tenant's inactivity window, the certificate rule, their settings,
//! and that two replicas never run a rule at once.

use std::time::Duration as StdDuration;

use chrono::Duration;
use mdm_api::Service;
use mdm_api::internal::inventory::{DevicesSeen, Seen};
use mdm_domain::{DeviceId, Platform, Role, TenantId};
use mdm_inventory::cleanup::{CERTIFICATE_JOB, INACTIVITY_JOB};
use mdm_runtime::testing::TestApp;
use mdm_store::test_on_both_backends;
use mdm_store::testing::{TestBackend, TestDatabase};
use reqwest::Method;
use serde_json::json;

use crate::fakes::Fakes;
use crate::{Enrol, Harness, assert_problem, eager, job_runs};

const SETTINGS: &str = "/api/v1/deviceManagement/managedDeviceCleanupSettings";
const DEVICES: &str = "/api/v1/deviceManagement/managedDevices";

async fn exists(h: &Harness, token: &str, id: DeviceId) -> bool {
    let (status, _) = h.get(&format!("{DEVICES}/{id}"), token).await;
    assert!(status == 200 || status == 404, "{status}");
    status == 200
}

async fn check_in(h: &Harness, ids: &[DeviceId]) {
    let at = h.now();
    let seen = ids
        .iter()
        .map(|&device_id| Seen { device_id, at })
        .collect();
    h.send(Service::Apple, &[DevicesSeen { seen }]).await;
}

test_on_both_backends! {
    async fn the_inactivity_window_is_off_or_90_to_270_days(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let (status, settings) = h.get(SETTINGS, &admin).await;
        assert_eq!(status, 200);
        assert_eq!(settings, json!({ "deviceInactivityBeforeRetirementInDays": null }), "off by default");
        for days in [90, 270, 120] {
            let body = json!({ "deviceInactivityBeforeRetirementInDays": days });
            let (status, answer) = h.call(Method::PUT, SETTINGS, &admin, Some(body.clone())).await;
            assert_eq!((status.as_u16(), answer), (200, body.clone()));
            assert_eq!(h.get(SETTINGS, &admin).await.1, body);
        }
        for bad in [json!(89), json!(271), json!(0), json!(-5), json!("ninety")] {
            let answer = h.call(Method::PUT, SETTINGS, &admin, Some(json!({ "deviceInactivityBeforeRetirementInDays": bad }))).await;
            assert_problem(&answer, 422, "validation_failed");
        }
        assert_eq!(h.get(SETTINGS, &admin).await.1["deviceInactivityBeforeRetirementInDays"], 120, "unchanged");
        let off = json!({ "deviceInactivityBeforeRetirementInDays": null });
        assert_eq!(h.call(Method::PUT, SETTINGS, &admin, Some(off.clone())).await.0, 200);
        assert_eq!(h.get(SETTINGS, &admin).await.1, off);

        assert_problem(&h.call(Method::PUT, SETTINGS, &h.token(Role::Helpdesk, tenant), Some(off)).await, 403, "forbidden");
        assert_eq!(h.get(SETTINGS, &h.token(Role::Reader, tenant)).await.0, 200);
        let (_, other) = h.admin();
        assert!(h.get(SETTINGS, &other).await.1["deviceInactivityBeforeRetirementInDays"].is_null(), "per tenant");
        h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "cleanupSettings.updated" && m["detail"]["after"] == 270).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn devices_silent_for_longer_than_the_window_are_removed(db) {
        let h = Harness::start_with(db, eager(), |_| {}).await;
        let (tenant, admin) = h.admin();
        let (lax, lax_admin) = h.admin();
        let (status, _) = h.call(Method::PUT, SETTINGS, &admin, Some(json!({ "deviceInactivityBeforeRetirementInDays": 100 }))).await;
        assert_eq!(status, 200);
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let stale = h.enrol(Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example")).await;
        let fresh = h.enrol(Enrol::new(tenant, Platform::MacOs)).await;
        let windows = h.enrol(Enrol::new(tenant, Platform::Windows)).await;
        let untouched = h.enrol(Enrol::new(lax, Platform::Ios)).await;

        h.app.clock.advance(Duration::days(50));
        check_in(&h, &[fresh]).await;
        h.app.clock.advance(Duration::days(50));
        h.run_job(INACTIVITY_JOB).await;
        // Day 100: nothing is older than 100 days yet.
        for id in [stale, fresh, windows] {
            assert!(exists(&h, &admin, id).await);
        }
        h.app.clock.advance(Duration::days(1));
        h.run_job(INACTIVITY_JOB).await;
        assert!(!exists(&h, &admin, stale).await);
        assert!(!exists(&h, &admin, windows).await);
        assert!(exists(&h, &admin, fresh).await, "checked in 51 days ago");
        assert!(exists(&h, &lax_admin, untouched).await, "that tenant has no rule");

        let removed = h.fakes.wait_for(Service::Dispatch, "dispatch.devices_removed", |m| m["deviceIds"].as_array().unwrap().len() == 2).await;
        assert_eq!(removed["tenantId"], tenant.to_string());
        h.fakes.wait_for(Service::Apple, "adapter.device_removed", |m| m["deviceId"] == stale.to_string()).await;
        h.fakes.wait_for(Service::Windows, "adapter.device_removed", |m| m["deviceId"] == windows.to_string()).await;
        let audit = h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "device.cleanedUp" && m["deviceId"] == stale.to_string()).await;
        assert_eq!(audit["detail"]["rule"], "inactivity");
        let (_, counts) = h.internal(Method::POST, "/users/deviceCounts", Some(json!({ "tenantId": tenant, "userIds": [ada] }))).await;
        assert_eq!(counts["counts"][0]["count"], 0, "the directory record went with it");
        let metrics = h.http.get(format!("{}/metrics", h.app.url)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("mdm_inventory_devices_removed_total{rule=\"inactivity\"} 2"), "{metrics}");

        // Turning the rule off stops it.
        let (status, _) = h.call(Method::PUT, SETTINGS, &admin, Some(json!({ "deviceInactivityBeforeRetirementInDays": null }))).await;
        assert_eq!(status, 200);
        h.app.clock.advance(Duration::days(200));
        h.run_job(INACTIVITY_JOB).await;
        assert!(exists(&h, &admin, fresh).await);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn devices_180_days_past_their_certificate_are_removed(db) {
        let h = Harness::start_with(db, eager(), |_| {}).await;
        let (tenant, admin) = h.admin();
        let expires = h.now() + Duration::days(10);
        let expired = h.enrol(Enrol::new(tenant, Platform::Ios).certificate_expires(expires)).await;
        let renewed = h.enrol(Enrol::new(tenant, Platform::Ios).certificate_expires(expires)).await;
        let late_talker = h.enrol(Enrol::new(tenant, Platform::Ios).certificate_expires(expires)).await;
        let unknown = h.enrol(Enrol::new(tenant, Platform::Android)).await;

        // `renewed` got a new certificate; `late_talker` checked in after its expired.
        h.app.clock.advance(Duration::days(9));
        let facts = mdm_api::internal::inventory::DeviceFactsReported {
            device_id: renewed,
            facts: mdm_api::internal::inventory::DeviceFacts {
                identity_certificate_expires_at: Some(h.now() + Duration::days(365)),
                ..Default::default()
            },
            at: h.now(),
        };
        h.send(Service::Apple, &[facts]).await;
        h.app.clock.advance(Duration::days(31));
        check_in(&h, &[late_talker]).await;

        // 180 days after expiry: only `expired` had no contact since.
        h.app.clock.set(expires + Duration::days(179));
        h.run_job(CERTIFICATE_JOB).await;
        assert!(exists(&h, &admin, expired).await, "179 days");
        h.app.clock.set(expires + Duration::days(180));
        h.run_job(CERTIFICATE_JOB).await;
        assert!(!exists(&h, &admin, expired).await);
        for id in [renewed, late_talker, unknown] {
            assert!(exists(&h, &admin, id).await);
        }
        let audit = h.fakes.wait_for(Service::Dispatch, "dispatch.audit_event", |m| m["activity"] == "device.cleanedUp").await;
        assert_eq!(audit["detail"]["rule"], "certificate");
        h.fakes.wait_for(Service::Dispatch, "dispatch.devices_removed", |m| m["deviceIds"] == json!([expired])).await;

        // 180 days after its last check-in, the late talker goes too.
        h.app.clock.set(expires + Duration::days(30 + 180));
        h.run_job(CERTIFICATE_JOB).await;
        assert!(!exists(&h, &admin, late_talker).await);
        assert!(exists(&h, &admin, renewed).await);
        h.app.stop().await;
    }
}

/// Two replicas on one PostgreSQL database with the same security settings, running the
/// clean-up every 50 ms: each rule runs in one of them only; when that one stops, the
/// other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_run_a_cleanup() {
    let Some(db) = TestDatabase::new(TestBackend::Postgres).await else {
        return;
    };
    let url = db.url().to_owned();
    let fakes = Fakes::default();
    let first = Harness::start_with_fakes(db, eager(), |_| {}, fakes.clone()).await;
    let security = first.app.context.config.security.clone();
    // The second process gets a database of its own from the helper, then is pointed at
    // the first one's.
    let spare = TestDatabase::new(TestBackend::Postgres).await.unwrap();
    let second = Harness::start_with_fakes(
        spare,
        eager(),
        move |config| {
            config.database.url = Some(mdm_runtime::config::Secret::new(url));
            config.security = security;
        },
        fakes.clone(),
    )
    .await;

    // A device to clean up, so that the runs do work.
    let tenant: TenantId = fakes.tenant(mdm_domain::MdmAuthority::Standalone);
    let admin = fakes.token(Role::Admin, Some(tenant), None);
    let (status, _) = first
        .call(
            Method::PUT,
            SETTINGS,
            &admin,
            Some(json!({ "deviceInactivityBeforeRetirementInDays": 90 })),
        )
        .await;
    assert_eq!(status, 200);
    let old = first.enrol(Enrol::new(tenant, Platform::Ios)).await;

    // Both processes try every 50 ms; let one of them run each rule five times.
    for job in [INACTIVITY_JOB, CERTIFICATE_JOB] {
        for _ in 0..1500 {
            if job_runs(&first.app, job).max(job_runs(&second.app, job)) >= 5 {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        let runs = (job_runs(&first.app, job), job_runs(&second.app, job));
        assert!(runs.0.max(runs.1) >= 5, "{job} did not run: {runs:?}");
        assert!(
            runs.0 == 0 || runs.1 == 0,
            "{job} ran in both replicas: {runs:?}"
        );
    }
    for app in [&first.app, &second.app] {
        app.clock.advance(Duration::days(91));
    }
    for _ in 0..1500 {
        if first.get(&format!("{DEVICES}/{old}"), &admin).await.0 == 404 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(first.get(&format!("{DEVICES}/{old}"), &admin).await.0, 404);
    let removed = |app: &TestApp| {
        app.context
            .metrics
            .render()
            .split(|&b| b == b'\n')
            .filter_map(|line| std::str::from_utf8(line).ok())
            .filter(|line| {
                line.starts_with("mdm_inventory_devices_removed_total{rule=\"inactivity\"}")
            })
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        removed(&first.app) + removed(&second.app),
        1,
        "removed once, by one replica"
    );

    // The holder of the inactivity rule stops; the other takes over at its next period.
    let (holder, other) = if job_runs(&first.app, INACTIVITY_JOB) > 0 {
        (first, second)
    } else {
        (second, first)
    };
    let before = job_runs(&other.app, INACTIVITY_JOB);
    holder.app.stop().await;
    for _ in 0..1500 {
        if job_runs(&other.app, INACTIVITY_JOB) > before + 2 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(
        job_runs(&other.app, INACTIVITY_JOB) > before + 2,
        "the other replica took over"
    );
    other.app.stop().await;
}
