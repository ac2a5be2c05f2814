//! Enrollment: profiles, identities (SCEP and PKCS#12), Authenticate and TokenUpdate,
//! the gate, inventory after enrollment.

use mdm_api::internal::enrollment::GateDenial;
use mdm_domain::{Ownership, Platform};
use mdm_e2e::apple::{AuthMode, DeviceState, Model, SimulatedDevice};
use mdm_store::test_on_both_backends;

use crate::fakes::Got;
use crate::{Harness, Options};

test_on_both_backends! {
    async fn an_iphone_enrols_by_scep_signs_its_messages_and_reports_its_inventory(db) {
        let h = Harness::start(db, Options { forwarded: false, ..Options::default() }).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, AuthMode::Signature).await;
        let enrolled = h
            .wait_for(|g| match g { Got::Enrolled(e) if e.device_id == id => Some(e.clone()), _ => None })
            .await
            .expect("DeviceEnrolled reached inventory");
        assert_eq!(enrolled.platform, Platform::Ios);
        assert_eq!(enrolled.tenant_id, h.tenant);
        assert_eq!(enrolled.ownership, Ownership::Company);
        assert_eq!(enrolled.facts.serial_number.as_deref(), Some(iphone.serial.as_str()));
        assert!(enrolled.facts.identity_certificate_expires_at.is_some());
        assert_eq!(h.enrollment.lock().unwrap().signed, 1, "one certificate signed by the CA");
        // Enrollment is followed by a push and the inventory queries.
        let handled = h.push_and_poll(&mut iphone, 1).await;
        assert_eq!(handled, 5, "{:?}", iphone.received.iter().map(|r| &r.request_type).collect::<Vec<_>>());
        let types: Vec<_> = iphone.received.iter().map(|r| r.request_type.as_str()).collect();
        assert_eq!(types, ["DeviceInformation", "SecurityInfo", "ProfileList", "InstalledApplicationList", "ManagedApplicationList"]);
        let facts = h
            .wait_for(|g| match g { Got::Facts(f) if f.device_id == id && f.facts.device_name.is_some() => Some(f.clone()), _ => None })
            .await
            .unwrap();
        assert_eq!(facts.facts.os_version.unwrap().to_string(), "17.5.1");
        assert_eq!(facts.facts.imei.as_deref(), Some("35 208706 123456 7"));
        assert_eq!(facts.facts.is_supervised, Some(false));
        let security = h
            .wait_for(|g| match g { Got::Facts(f) if f.device_id == id && f.facts.is_passcode_present.is_some() => Some(f.clone()), _ => None })
            .await
            .unwrap();
        assert_eq!(security.facts.is_passcode_present, Some(true));
        assert_eq!(security.facts.is_encrypted, Some(true));
        assert!(h.queued(&iphone).await.is_empty());
        // Polls are seen without a write each: one DevicesSeen message carries them.
        let seen = h
            .wait_for(|g| match g { Got::Seen(s) if s.seen.iter().any(|s| s.device_id == id) => Some(s.clone()), _ => None })
            .await;
        assert!(seen.is_some(), "DevicesSeen flushed");
    }
}

test_on_both_backends! {
    async fn a_mac_enrols_with_a_pkcs12_identity_behind_an_ingress(db) {
        let h = Harness::start(db, Options { scep: false, ..Options::default() }).await;
        for rfc9440 in [true, false] {
            let auth = AuthMode::Forwarded { header: "Client-Cert".into(), rfc9440 };
            let (mut mac, id) = h.enroll(Model::Mac, auth).await;
            let enrolled = h
                .wait_for(|g| match g { Got::Enrolled(e) if e.device_id == id => Some(e.clone()), _ => None })
                .await
                .unwrap();
            assert_eq!(enrolled.platform, Platform::MacOs);
            assert_eq!(mac.state, DeviceState::Enrolled);
            assert!(mac.poll().await.unwrap() >= 4);
            // A Mac is not asked for its managed apps (none are in the seed's macOS table).
            assert!(!mac.received.iter().any(|r| r.request_type == "ManagedApplicationList"));
        }
    }
}

test_on_both_backends! {
    async fn a_profile_downloads_once(db) {
        let h = Harness::start(db, Options::default()).await;
        let url = h.profile_url(serde_json::json!({})).await;
        let first = h.http.get(&url).send().await.unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["content-type"], "application/x-apple-aspen-config");
        let body = first.bytes().await.unwrap();
        let profile: plist::Value = plist::from_bytes(&body).unwrap();
        let payloads = profile.as_dictionary().unwrap()["PayloadContent"].as_array().unwrap();
        let mdm = payloads
            .iter()
            .map(|p| p.as_dictionary().unwrap())
            .find(|p| p["PayloadType"].as_string() == Some("com.apple.mdm"))
            .unwrap();
        assert_eq!(mdm["Topic"].as_string(), Some(h.topic.as_str()));
        assert_eq!(mdm["SignMessage"].as_boolean(), Some(true));
        assert_eq!(mdm["CheckOutWhenRemoved"].as_boolean(), Some(true));
        assert_eq!(mdm["AccessRights"].as_signed_integer(), Some(8191));
        assert!(mdm["ServerURL"].as_string().unwrap().ends_with("/mdm/apple/connect"));
        assert!(mdm["CheckInURL"].as_string().unwrap().ends_with("/mdm/apple/checkin"));
        let capabilities = mdm["ServerCapabilities"].as_array().unwrap();
        assert!(!capabilities.iter().any(|c| c.as_string() == Some("com.apple.mdm.per-user-connections")));
        let identity = mdm["IdentityCertificateUUID"].as_string().unwrap();
        let scep = payloads
            .iter()
            .map(|p| p.as_dictionary().unwrap())
            .find(|p| p["PayloadUUID"].as_string() == Some(identity))
            .unwrap();
        assert_eq!(scep["PayloadType"].as_string(), Some("com.apple.security.scep"));
        let second = h.http.get(&url).send().await.unwrap();
        assert_eq!(second.status(), 410);
        let bogus = h.http.get(h.url("/mdm/apple/enroll/nope")).send().await.unwrap();
        assert_eq!(bogus.status(), 410);
    }
}

test_on_both_backends! {
    async fn a_scep_challenge_works_once(db) {
        let h = Harness::start(db, Options::default()).await;
        let url = h.profile_url(serde_json::json!({})).await;
        let body = h.http.get(&url).send().await.unwrap().bytes().await.unwrap();
        let mut first = SimulatedDevice::new(Model::IPad, AuthMode::Signature);
        first.install(&body, h.now()).await.unwrap();
        let mut second = SimulatedDevice::new(Model::IPad, AuthMode::Signature);
        let refused = second.install(&body, h.now()).await.unwrap_err();
        assert!(refused.to_string().contains("refused"), "{refused}");
    }
}

test_on_both_backends! {
    async fn the_gate_refuses_with_403_and_the_device_stays_out(db) {
        let h = Harness::start(db, Options::default()).await;
        h.enrollment.lock().unwrap().deny = Some(GateDenial::DeviceLimitReached);
        let url = h.profile_url(serde_json::json!({ "ownership": "personal" })).await;
        let mut device = SimulatedDevice::new(Model::IPhone, AuthMode::Signature);
        let error = device.enroll(&url, h.now()).await.unwrap_err();
        assert!(error.to_string().contains("Authenticate answered 403"), "{error}");
        let body: serde_json::Value = serde_json::from_slice(&device.last_body).unwrap();
        assert_eq!(body["code"], "apple_enrollment_refused");
        assert_eq!(body["detail"], "device_limit_reached");
        // Nothing further works for it.
        assert_eq!(device.token_update().await.unwrap(), 403);
    }
}

test_on_both_backends! {
    async fn concurrent_authenticates_share_gate_calls(db) {
        let h = Harness::start(db, Options::default()).await;
        let mut devices = Vec::new();
        for _ in 0..12 {
            let url = h.profile_url(serde_json::json!({})).await;
            let mut device = SimulatedDevice::new(Model::IPhone, AuthMode::Forwarded { header: "Client-Cert".into(), rfc9440: true });
            let body = h.http.get(&url).send().await.unwrap().bytes().await.unwrap();
            device.install(&body, h.now()).await.unwrap();
            devices.push(device);
        }
        let results = futures_util::future::join_all(devices.iter_mut().map(|d| d.authenticate())).await;
        assert!(results.into_iter().all(|r| r.unwrap() == 200));
        let state = h.enrollment.lock().unwrap();
        assert_eq!(state.gate_checks, 12);
        assert!(state.gate_calls <= 12);
    }
}

test_on_both_backends! {
    async fn users_create_profiles_for_themselves_only(db) {
        let h = Harness::start(db, Options::default()).await;
        let url = h.url("/api/v1/deviceManagement/appleEnrollmentProfiles");
        let own = h.http.post(&url).bearer_auth(&h.user_token).json(&serde_json::json!({})).send().await.unwrap();
        assert_eq!(own.status(), 201);
        let body: serde_json::Value = own.json().await.unwrap();
        assert_eq!(body["ownership"], "personal");
        assert_eq!(body["userId"], h.user_id.to_string());
        let id = body["id"].as_str().unwrap().to_owned();
        let audited = h
            .wait_for(|got| match got {
                Got::Audit(event) if event.target_id == id => Some(event.clone()),
                _ => None,
            })
            .await
            .expect("the creation is audited");
        assert_eq!(audited.activity, "appleEnrollmentProfile.created");
        assert_eq!(audited.detail["ownership"], "personal");
        let other = h
            .http
            .post(&url)
            .bearer_auth(&h.user_token)
            .json(&serde_json::json!({ "userId": mdm_domain::UserId::new() }))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 403);
        let anonymous = h.http.post(&url).json(&serde_json::json!({})).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let bad = h.http.post(&url).bearer_auth(&h.admin).json(&serde_json::json!({ "platform": "Android" })).send().await.unwrap();
        assert_eq!(bad.status(), 422);
        let list: serde_json::Value = h.http.get(&url).bearer_auth(&h.admin).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["value"].as_array().unwrap().len(), 1);
        assert!(list["value"][0].get("profileUrl").is_none(), "the URL is shown once");
    }
}

test_on_both_backends! {
    async fn a_user_enrolled_profile_carries_the_user_to_inventory(db) {
        let h = Harness::start(db, Options::default()).await;
        let url = h.profile_url(serde_json::json!({ "userId": h.user_id, "ownership": "personal" })).await;
        let mut device = SimulatedDevice::new(Model::IPhone, AuthMode::Signature);
        device.enroll(&url, h.now()).await.unwrap();
        let id = h.device_id(&device).await;
        let enrolled = h
            .wait_for(|g| match g { Got::Enrolled(e) if e.device_id == id => Some(e.clone()), _ => None })
            .await
            .unwrap();
        assert_eq!(enrolled.user_id, Some(h.user_id));
        assert_eq!(enrolled.ownership, Ownership::Personal);
        assert_eq!(enrolled.user_principal_name.as_deref(), Some("jane@contoso.example"));
    }
}

test_on_both_backends! {
    async fn an_authenticate_naming_another_topic_is_refused(db) {
        let h = Harness::start(db, Options::default()).await;
        let url = h.profile_url(serde_json::json!({})).await;
        let mut device = SimulatedDevice::new(Model::IPhone, AuthMode::Signature);
        let body = h.http.get(&url).send().await.unwrap().bytes().await.unwrap();
        device.install(&body, h.now()).await.unwrap();
        let ours = device.topic.clone();
        // A profile made for another push certificate: the device would never be pushed.
        device.topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000".into();
        assert_eq!(device.authenticate().await.unwrap(), 403);
        let body: serde_json::Value = serde_json::from_slice(&device.last_body).unwrap();
        assert_eq!(body["code"], "apple_enrollment_refused");
        assert_eq!(body["detail"], "push_topic_mismatch");
        assert_eq!(device.token_update().await.unwrap(), 403, "nothing further works for it");
        // With the certificate's own topic, the same device enrols.
        device.topic = ours;
        assert_eq!(device.authenticate().await.unwrap(), 200);
    }
}
