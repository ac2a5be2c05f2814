//! Enrollment tokens per profile and the enrollment of simulated devices in each mode.

use mdm_api::internal::dispatch::AuditEvent;
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFactsReported, DevicesSeen};
use mdm_domain::{ManagementMode, MdmAuthority, Ownership, UserId};
use mdm_e2e::android::{Hardware, Setup};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use serde_json::{Value, json};

use crate::Harness;

test_on_both_backends! {
    async fn tokens_carry_the_profile_rules(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let user = UserId::new();
        for (profile, usage) in [
            ("personalWorkProfile", "PERSONAL_USAGE_ALLOWED"),
            ("corporateFullyManaged", "PERSONAL_USAGE_DISALLOWED"),
            ("corporateWorkProfile", "PERSONAL_USAGE_ALLOWED"),
            ("dedicated", "PERSONAL_USAGE_DISALLOWED_USERLESS"),
        ] {
            let body = if profile == "dedicated" {
                json!({ "profile": profile, "durationSeconds": 3600 })
            } else {
                json!({ "profile": profile, "userId": user, "durationSeconds": 3600 })
            };
            let (status, token) = h.token(&tenant, body).await;
            assert_eq!(status, 201, "{token}");
            let value = token["value"].as_str().unwrap();
            assert_eq!(token["profile"], profile);
            assert!(token["qrCode"].as_str().unwrap().contains(value));
            assert_eq!(token["enrollmentLink"], format!("https://enterprise.google.com/android/enroll?et={value}"));
            assert_eq!(token["expirationDateTime"], "2026-01-01T01:00:00Z");
            let at_google = h.mock.enrollment_token(token["name"].as_str().unwrap()).unwrap();
            assert_eq!(at_google["allowPersonalUsage"], usage, "{profile}");
            assert_eq!(at_google["policyName"], format!("{}/policies/mdm-default", tenant.enterprise));
            assert_eq!(at_google["duration"], "3600s");
            let data: Value = serde_json::from_str(at_google["additionalData"].as_str().unwrap()).unwrap();
            assert_eq!(data["profile"], profile);
            let id = token["id"].as_str().unwrap().to_owned();
            let audited = h.wait_message::<AuditEvent>(|e| e.target_id == id).await;
            assert_eq!((audited.activity.as_str(), audited.detail["profile"].as_str()), ("androidEnrollmentToken.created", Some(profile)));
            assert!(!audited.detail.to_string().contains(value), "never the token's value");
        }
        // Listed without their values.
        let list: Value = h.http.get(h.url(mdm_android::TOKENS_PATH)).bearer_auth(&tenant.admin)
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(list["value"].as_array().unwrap().len(), 4);
        assert!(list["value"][0].get("value").is_none());
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn tokens_are_refused_when_restrictions_say_no(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        h.allow(tenant.id, false, MdmAuthority::Standalone);
        let (status, problem) = h.token(&tenant, json!({ "profile": "personalWorkProfile" })).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("android_enrollment_not_allowed")));
        let (status, _) = h.token(&tenant, json!({ "profile": "corporateWorkProfile" })).await;
        assert_eq!(status, 201);
        h.allow(tenant.id, true, MdmAuthority::None);
        let (status, problem) = h.token(&tenant, json!({ "profile": "dedicated" })).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("authority_disallows_enrollment")));
        h.allow(tenant.id, true, MdmAuthority::Standalone);

        for bad in [
            json!({ "profile": "dedicated", "userId": UserId::new() }),
            json!({ "profile": "kiosk" }),
            json!({ "profile": "dedicated", "durationSeconds": 10 }),
            json!({ "profile": "dedicated", "durationSeconds": 9_000_000 }),
            json!({ "profile": "dedicated", "colour": "red" }),
        ] {
            let (status, _) = h.token(&tenant, bad.clone()).await;
            assert_eq!(status, 422, "{bad}");
        }
        // A reader may not; another tenant's admin has no enterprise.
        let reader = h.http.post(h.url(mdm_android::TOKENS_PATH)).bearer_auth(format!("reader-{}", tenant.id))
            .json(&json!({"profile": "dedicated"})).send().await.unwrap();
        assert_eq!(reader.status(), 403);
        let stranger = mdm_domain::TenantId::new();
        h.allow(stranger, true, MdmAuthority::Standalone);
        let response = h.http.post(h.url(mdm_android::TOKENS_PATH)).bearer_auth(format!("admin-{stranger}"))
            .json(&json!({"profile": "dedicated"})).send().await.unwrap();
        assert_eq!(response.status(), 409);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "android_enterprise_not_bound");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_revoked_token_is_gone_at_google_and_stays_listed_as_revoked(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (_, token) = h.token(&tenant, json!({ "profile": "dedicated" })).await;
        let (id, name) = (token["id"].as_str().unwrap().to_owned(), token["name"].as_str().unwrap().to_owned());
        let path = h.url(&format!("{}/{id}", mdm_android::TOKENS_PATH));
        let reader = h.http.delete(&path).bearer_auth(format!("reader-{}", tenant.id)).send().await.unwrap();
        assert_eq!(reader.status(), 403);
        assert!(h.mock.enrollment_token(&name).is_some());

        let revoked = h.http.delete(&path).bearer_auth(&tenant.admin).send().await.unwrap();
        assert_eq!(revoked.status(), 204);
        assert!(h.mock.enrollment_token(&name).is_none(), "deleted at Google");
        let shown: Value = h.http.get(&path).bearer_auth(&tenant.admin).send().await.unwrap().json().await.unwrap();
        assert!(shown["revokedDateTime"].is_string(), "{shown}");
        let audited = h.wait_message::<AuditEvent>(|e| e.activity == "androidEnrollmentToken.revoked").await;
        assert_eq!(audited.target_id, id);

        // Again: nothing more to do, nothing sent.
        let calls = h.amapi_calls("enrollmentTokens.delete");
        let again = h.http.delete(&path).bearer_auth(&tenant.admin).send().await.unwrap();
        assert_eq!(again.status(), 204);
        assert_eq!(h.amapi_calls("enrollmentTokens.delete"), calls);
        let unknown = h.url(&format!("{}/{}", mdm_android::TOKENS_PATH, uuid::Uuid::now_v7()));
        assert_eq!(h.http.delete(&unknown).bearer_auth(&tenant.admin).send().await.unwrap().status(), 404);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn devices_enrol_in_each_mode(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        for (profile, mode, ownership) in [
            ("personalWorkProfile", ManagementMode::WorkProfile, Ownership::Personal),
            ("corporateFullyManaged", ManagementMode::FullyManaged, Ownership::Company),
            ("corporateWorkProfile", ManagementMode::CorporateWorkProfile, Ownership::Company),
            ("dedicated", ManagementMode::Dedicated, Ownership::Company),
        ] {
            let (device, id) = h.enrol(&tenant, profile, Hardware::samsung()).await;
            let enrolled = h.wait_message::<DeviceEnrolled>(|m| m.device_id == id).await;
            assert_eq!(enrolled.management_mode, Some(mode), "{profile}");
            assert_eq!(enrolled.ownership, ownership, "{profile}");
            assert_eq!(enrolled.tenant_id, tenant.id);
            assert_eq!(enrolled.facts.manufacturer.as_deref(), Some("samsung"));
            assert_eq!(enrolled.facts.os_version.map(|v| v.to_string()).as_deref(), Some("13"));
            assert!(enrolled.facts.imei.is_some());
            assert_eq!(enrolled.facts.is_passcode_present, Some(true));
            let resource = device.resource().unwrap();
            assert_eq!(resource["state"], "ACTIVE");
        }
        // A personal device cannot use a fully managed token.
        let (_, token) = h.token(&tenant, json!({"profile": "corporateFullyManaged"})).await;
        assert!(h.mock.enroll(token["value"].as_str().unwrap(), Setup::PersonalDevice, Hardware::pixel()).await.is_err());
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_device_the_gate_refuses_is_deleted_at_google(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let user = UserId::new();
        h.enrollment.lock().unwrap().denied_users.insert(user);
        let (_, token) = h.token(&tenant, json!({"profile": "personalWorkProfile", "userId": user})).await;
        let device = h.mock.enroll(token["value"].as_str().unwrap(), Setup::PersonalDevice, Hardware::pixel()).await.unwrap();
        for _ in 0..400 {
            if device.resource().is_none() { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(device.resource().is_none(), "the refused device is still managed at Google");
        assert!(device.state().work_profile_removed);
        let mut state = String::new();
        for _ in 0..200 {
            state = h.device_row(device.name()).await.unwrap().state;
            if state == "refused" { break; }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(state, "refused");
        assert!(h.messages::<DeviceEnrolled>().is_empty());
        assert_eq!(h.received.lock().unwrap().gate_checks, 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn status_reports_become_facts_and_sightings(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant().await;
        let (device, id) = h.enrol(&tenant, "corporateFullyManaged", Hardware::pixel()).await;
        h.app.clock.advance(chrono::Duration::hours(1));
        device.update(|d| {
            d["softwareInfo"]["androidVersion"] = json!("15");
            d["apiLevel"] = json!(35);
            d["deviceSettings"]["isDeviceSecure"] = json!(false);
        });
        assert_eq!(device.report_status().await.status, 204);
        let facts = h.wait_message::<DeviceFactsReported>(|m| m.device_id == id).await;
        assert_eq!(facts.facts.os_version.unwrap().to_string(), "15");
        assert_eq!(facts.facts.is_passcode_present, Some(false));
        assert_eq!(facts.facts.model.as_deref(), Some("Pixel 8"));
        // The same facts again: no new message.
        h.app.clock.advance(chrono::Duration::hours(1));
        device.report_status().await;
        h.android.flush_seen().await.unwrap();
        let seen = h.wait_message::<DevicesSeen>(|m| m.seen.iter().any(|s| s.device_id == id)).await;
        let at = seen.seen.iter().find(|s| s.device_id == id).unwrap().at;
        assert_eq!(at, h.app.clock.now());
        assert_eq!(h.messages::<DeviceFactsReported>().len(), 1);
        let row = h.device_row(device.name()).await.unwrap();
        assert_eq!(row.api_level, Some(35));
        h.app.stop().await;
    }
}
