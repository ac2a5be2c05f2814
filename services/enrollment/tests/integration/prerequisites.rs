//! Platform prerequisites: the Apple push certificate, Android Enterprise, Windows.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use mdm_domain::{ManagementState, Platform};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Harness, assert_problem};

const TOPIC: &str = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555";
const OTHER_TOPIC: &str = "com.apple.mgmt.External.99999999-8888-7777-6666-555555555555";
const PUSH_PATH: &str = "/api/v1/deviceManagement/applePushNotificationCertificate";

/// An Apple-shaped MDM push certificate (subject UID = topic) valid from `now` for
/// `days`: PEM certificate and key.
pub fn push_certificate(topic: &str, now: DateTime<Utc>, days: i64) -> (String, String) {
    let (certificate, key) = build_certificate(Some(topic), now, days);
    (
        String::from_utf8(certificate.to_pem().unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

fn build_certificate(
    topic: Option<&str>,
    now: DateTime<Utc>,
    days: i64,
) -> (X509, PKey<openssl::pkey::Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    if let Some(topic) = topic {
        name.append_entry_by_nid(Nid::USERID, topic).unwrap();
        name.append_entry_by_text("CN", &format!("APSP:{}", &topic[topic.len() - 36..]))
            .unwrap();
    } else {
        name.append_entry_by_text("CN", "not an APNs certificate")
            .unwrap();
    }
    let name = name.build();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::from_unix((now - Duration::days(1)).timestamp()).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::from_unix((now + Duration::days(days)).timestamp()).unwrap())
        .unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    (builder.build(), key)
}

pub async fn upload(h: &Harness, admin: &str, body: Value) -> (StatusCode, Value) {
    h.call(Method::PUT, PUSH_PATH, admin, Some(body)).await
}

test_on_both_backends! {
    async fn push_certificates_from_pem_and_pkcs12(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let now = h.app.clock.now();
        let (certificate, key) = build_certificate(Some(TOPIC), now, 365);

        // Consent first.
        let pem = String::from_utf8(certificate.to_pem().unwrap()).unwrap();
        let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let without = upload(&h, &admin, json!({ "certificate": pem, "privateKey": key_pem })).await;
        assert_problem(&without, 422, "data_sharing_consent_required");

        // PKCS#12 with its password.
        let p12 = Pkcs12::builder().name("apns").pkey(&key).cert(&certificate).build2("s3cret").unwrap();
        let p12 = base64::engine::general_purpose::STANDARD.encode(p12.to_der().unwrap());
        let wrong = upload(&h, &admin, json!({ "certificate": p12, "password": "nope", "dataSharingConsent": true })).await;
        assert_problem(&wrong, 422, "invalid_certificate");
        let (status, body) = upload(&h, &admin, json!({ "certificate": p12, "password": "s3cret", "dataSharingConsent": true })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["topicIdentifier"], TOPIC);
        assert_eq!(body["daysToExpiry"], 365);
        assert_eq!(body["expiringSoon"], false);
        assert!(body["certificateSerialNumber"].as_str().unwrap().len() >= 8);
        assert!(body["dataSharingConsent"]["consentedBy"].is_string());
        assert!(body.get("privateKey").is_none());

        // The same certificate as PEM, key after the certificate.
        let (status, _) = upload(&h, &admin, json!({ "certificate": format!("{pem}{key_pem}"), "dataSharingConsent": true })).await;
        assert_eq!(status, 200);

        // The Apple adapter reads it with its key through the internal API.
        let (status, internal) = h.internal(Method::GET, &format!("/tenants/{tenant}/apple/pushCertificate"), None).await;
        assert_eq!(status, 200);
        assert_eq!(internal["topic"], TOPIC);
        assert!(internal["privateKeyPem"].as_str().unwrap().contains("PRIVATE KEY"));
        let (_, policy) = h.internal(Method::GET, &format!("/tenants/{tenant}/policy"), None).await;
        assert_eq!(policy["applePushTopic"], TOPIC);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn unusable_certificates_are_refused(db) {
        let h = Harness::start(db).await;
        let (_, admin) = h.admin("Contoso").await;
        let now = h.app.clock.now();
        let refused = |answer: (StatusCode, Value)| assert_problem(&answer, 422, "invalid_certificate");

        let (no_uid, no_uid_key) = build_certificate(None, now, 365);
        let pem = |c: &X509| String::from_utf8(c.to_pem().unwrap()).unwrap();
        let key_pem = |k: &PKey<openssl::pkey::Private>| String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap();
        refused(upload(&h, &admin, json!({ "certificate": pem(&no_uid), "privateKey": key_pem(&no_uid_key), "dataSharingConsent": true })).await);

        let (wrong_topic, wrong_key) = build_certificate(Some("com.example.push.11111111-2222-3333-4444-555555555555"), now, 365);
        refused(upload(&h, &admin, json!({ "certificate": pem(&wrong_topic), "privateKey": key_pem(&wrong_key), "dataSharingConsent": true })).await);

        let (good, _) = build_certificate(Some(TOPIC), now, 365);
        let (_, other_key) = build_certificate(Some(TOPIC), now, 365);
        refused(upload(&h, &admin, json!({ "certificate": pem(&good), "privateKey": key_pem(&other_key), "dataSharingConsent": true })).await);
        refused(upload(&h, &admin, json!({ "certificate": pem(&good), "dataSharingConsent": true })).await);
        refused(upload(&h, &admin, json!({ "certificate": "bm90IGEgY2VydGlmaWNhdGU=", "dataSharingConsent": true })).await);

        let (expired, expired_key) = build_certificate(Some(TOPIC), now - Duration::days(400), 30);
        refused(upload(&h, &admin, json!({ "certificate": pem(&expired), "privateKey": key_pem(&expired_key), "dataSharingConsent": true })).await);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_topic_change_is_refused_while_devices_use_the_old_topic(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let now = h.app.clock.now();
        let (cert, key) = push_certificate(TOPIC, now, 365);
        assert_eq!(upload(&h, &admin, json!({ "certificate": cert, "privateKey": key, "dataSharingConsent": true })).await.0, 200);

        // No Apple device yet: a different topic is fine.
        let (other, other_key) = push_certificate(OTHER_TOPIC, now, 365);
        assert_eq!(upload(&h, &admin, json!({ "certificate": other, "privateKey": other_key, "dataSharingConsent": true })).await.0, 200);

        // Devices enrolled with OTHER_TOPIC: going back to TOPIC would silently stop their pushes.
        h.fakes.add_device(tenant, Platform::Ios, None, ManagementState::Managed);
        h.fakes.add_device(tenant, Platform::MacOs, None, ManagementState::Managed);
        h.fakes.add_device(tenant, Platform::Android, None, ManagementState::Managed);
        let (cert, key) = push_certificate(TOPIC, now, 365);
        let answer = upload(&h, &admin, json!({ "certificate": cert, "privateKey": key, "dataSharingConsent": true })).await;
        assert_problem(&answer, 409, "push_certificate_topic_mismatch");
        assert_eq!(answer.1["enrolledDevices"], 2);
        assert_eq!(answer.1["currentTopic"], OTHER_TOPIC);

        // A renewal with the same topic is always fine; a forced change goes through.
        let (renewal, renewal_key) = push_certificate(OTHER_TOPIC, now, 700);
        assert_eq!(upload(&h, &admin, json!({ "certificate": renewal, "privateKey": renewal_key, "dataSharingConsent": true })).await.0, 200);
        let forced = upload(&h, &admin, json!({ "certificate": cert, "privateKey": key, "dataSharingConsent": true, "force": true })).await;
        assert_eq!(forced.0, 200);
        assert_eq!(forced.1["topicIdentifier"], TOPIC);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn expiry_is_reported_with_a_moved_clock(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let (cert, key) = push_certificate(TOPIC, h.app.clock.now(), 60);
        assert_eq!(upload(&h, &admin, json!({ "certificate": cert, "privateKey": key, "dataSharingConsent": true })).await.0, 200);
        let read = || async { h.call(Method::GET, PUSH_PATH, &admin, None).await.1 };

        assert_eq!((read().await["daysToExpiry"].clone(), read().await["expiringSoon"].clone()), (json!(60), json!(false)));
        h.app.clock.advance(Duration::days(31));
        assert_eq!((read().await["daysToExpiry"].clone(), read().await["expiringSoon"].clone()), (json!(29), json!(true)));
        let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains(&format!("mdm_apple_push_certificate_days_to_expiry{{tenant=\"{tenant}\"}} 29")),
            "{metrics}"
        );

        // Once expired, Apple enrollment stops.
        h.app.clock.advance(Duration::days(30));
        assert_eq!(read().await["daysToExpiry"], -1);
        let (_, policy) = h.internal(Method::GET, &format!("/tenants/{tenant}/policy"), None).await;
        assert!(policy["applePushTopic"].is_null());
        crate::authority::set(&h, &admin, mdm_domain::MdmAuthority::Standalone).await;
        let decision = crate::gate::gate_one(&h, tenant, Platform::Ios, None).await;
        assert_eq!(decision["denial"], "prerequisite_missing");
        h.app.stop().await;
    }
}

const SERVICE_ACCOUNT_KEY: &str = r#"{"type":"service_account","project_id":"p","client_email":"mdm@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"http://127.0.0.1:9/token"}"#;

/// Binds an existing enterprise through the fake adapter.
pub async fn bind_android(h: &Harness, admin: &str) {
    let body = json!({
        "enterpriseName": "enterprises/LC0existing",
        "serviceAccountKey": SERVICE_ACCOUNT_KEY,
        "pubsubTopic": "projects/p/topics/mdm",
        "notificationTypes": ["ENROLLMENT", "STATUS_REPORT", "COMMAND"],
        "dataSharingConsent": true,
    });
    let (status, answer) = h
        .call(
            Method::PUT,
            "/api/v1/deviceManagement/androidEnterprise",
            admin,
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

test_on_both_backends! {
    async fn android_enterprise_signup_and_binding(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let path = "/api/v1/deviceManagement/androidEnterprise";
        let unbound = h.call(Method::GET, path, &admin, None).await.1;
        assert_eq!(unbound["bindingState"], "notBound");
        assert_eq!(unbound["missing"], json!(["enterprise", "pubsubTopic"]));

        let signup = |consent: bool, key: &str| json!({ "serviceAccountKey": key, "dataSharingConsent": consent });
        assert_problem(&h.call(Method::POST, &format!("{path}/signupUrl"), &admin, Some(signup(false, SERVICE_ACCOUNT_KEY))).await, 422, "data_sharing_consent_required");
        assert_problem(&h.call(Method::POST, &format!("{path}/signupUrl"), &admin, Some(signup(true, "{}"))).await, 422, "validation_failed");
        let mut with_topic = signup(true, SERVICE_ACCOUNT_KEY);
        with_topic["pubsubTopic"] = json!("topics/amapi");
        assert_problem(&h.call(Method::POST, &format!("{path}/signupUrl"), &admin, Some(with_topic.clone())).await, 422, "validation_failed");
        with_topic["pubsubTopic"] = json!("projects/contoso-mdm/topics/amapi");
        let (status, url) = h.call(Method::POST, &format!("{path}/signupUrl"), &admin, Some(with_topic)).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(url["name"], "signupUrls/C1234");
        let calls = h.fakes.android_calls.lock().unwrap().clone();
        assert!(calls[0].1["callbackUrl"].as_str().unwrap().ends_with(&format!("/mdm/enrollment/android/callback/{tenant}")));
        let pending = h.call(Method::GET, path, &admin, None).await.1;
        assert_eq!(pending["bindingState"], "pendingSignup");
        assert_eq!(pending["missing"], json!(["enterprise"]));

        // Google refuses a bad token: the admin hears why.
        *h.fakes.android_refuses.lock().unwrap() = Some(400);
        let refused = h.call(Method::PUT, path, &admin, Some(json!({ "enterpriseToken": "bad", "dataSharingConsent": true }))).await;
        assert_problem(&refused, 422, "android_binding_failed");
        *h.fakes.android_refuses.lock().unwrap() = None;

        // Google sends the admin back to our callback with the token: the binding completes.
        let callback = h.http.get(h.url(&format!("/mdm/enrollment/android/callback/{tenant}?enterpriseToken=tok"))).send().await.unwrap();
        assert_eq!(callback.status(), 200);
        let bind_call = h.fakes.android_calls.lock().unwrap().last().cloned().unwrap();
        assert_eq!(bind_call.1["signupUrlName"], "signupUrls/C1234");
        assert_eq!(bind_call.1["enterpriseToken"], "tok");
        assert_eq!(bind_call.1["pubsubTopic"], "projects/contoso-mdm/topics/amapi", "the signup's topic is set on the enterprise");
        let state = h.call(Method::GET, path, &admin, None).await.1;
        assert_eq!(state["pubsubTopic"], "projects/contoso-mdm/topics/amapi");
        assert_eq!(state["missing"], json!([]));
        assert_eq!((state["bindingState"].as_str(), state["enterpriseName"].as_str()), (Some("bound"), Some("enterprises/LC0abcdef")));
        assert!(state["dataSharingConsent"]["consentedDateTime"].is_string());
        assert!(state.get("serviceAccountKey").is_none());

        let (status, binding) = h.internal(Method::GET, &format!("/tenants/{tenant}/android"), None).await;
        assert_eq!(status, 200);
        assert_eq!(binding["serviceAccountKey"], SERVICE_ACCOUNT_KEY);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn windows_enrollment_settings_and_bulk_credentials(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let path = "/api/v1/deviceManagement/windowsEnrollment";
        let (_, initial) = h.call(Method::GET, path, &admin, None).await;
        assert_eq!(initial["automaticEnrollment"], true);
        assert_eq!(initial["authenticationPolicy"], "OnPremise");

        let bad = json!({ "automaticEnrollment": true, "authenticationPolicy": "Certificate", "bulkEnrollmentCertificateThumbprints": ["zz"] });
        assert_problem(&h.call(Method::PUT, path, &admin, Some(bad)).await, 422, "validation_failed");
        let thumbprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01";
        let good = json!({ "automaticEnrollment": false, "authenticationPolicy": "Certificate", "bulkEnrollmentCertificateThumbprints": [thumbprint] });
        let (status, saved) = h.call(Method::PUT, path, &admin, Some(good)).await;
        assert_eq!(status, 200, "{saved}");
        assert_eq!(saved["bulkEnrollmentCertificateThumbprints"][0], "abcdef0123456789abcdef0123456789abcdef01");

        let (status, secret) = h.call(Method::POST, &format!("{path}/bulkEnrollmentSecret"), &admin, None).await;
        assert_eq!(status, 200);
        let secret = secret["secret"].as_str().unwrap().to_owned();
        assert_eq!(h.call(Method::GET, path, &admin, None).await.1["bulkEnrollmentSecretConfigured"], true);

        let auth = |body: Value| h.internal(Method::POST, "/windows/bulk/authenticate", Some(body));
        assert_eq!(auth(json!({ "secret": secret })).await.1["tenantId"], tenant.to_string());
        assert_eq!(auth(json!({ "certificateThumbprint": "abcdef0123456789abcdef0123456789abcdef01" })).await.1["tenantId"], tenant.to_string());
        assert_eq!(auth(json!({ "secret": "guess" })).await.0, 401);
        assert_eq!(auth(json!({})).await.0, 401);

        let (_, settings) = h.internal(Method::GET, &format!("/tenants/{tenant}/windows"), None).await;
        assert_eq!(settings, json!({ "automaticEnrollment": false, "authPolicy": "Certificate", "bulkEnrollment": true }));
        h.app.stop().await;
    }
}
