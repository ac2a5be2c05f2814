//! Enterprise binding through the internal API the enrollment service calls.

use mdm_store::test_on_both_backends;
use serde_json::{Value, json};

use crate::{Harness, PROJECT};

test_on_both_backends! {
    async fn signup_then_create_sets_pubsub_and_the_default_policy(db) {
        let h = Harness::start(db).await;
        let key = h.mock.service_account(PROJECT).unwrap();
        let tenant = mdm_domain::TenantId::new();
        let response = h.internal("/signupUrls", &json!({
            "tenantId": tenant,
            "callbackUrl": "https://mdm.example/android/callback",
            "serviceAccountKey": key,
            "adminEmail": "admin@contoso.example",
        })).await;
        assert_eq!(response.status(), 200);
        let signup: Value = response.json().await.unwrap();
        let name = signup["name"].as_str().unwrap();
        assert!(name.starts_with("signupUrls/C"));
        assert!(signup["url"].as_str().unwrap().starts_with("https://"));
        let query = &h.mock.requests_to("signupUrls.create")[0].query;
        assert!(query.contains(&("projectId".into(), PROJECT.into())));
        assert!(query.contains(&("adminEmail".into(), "admin@contoso.example".into())));

        // The admin finishes Google's page; Google calls back with a token.
        let enterprise_token = h.mock.complete_signup(name).unwrap();
        let response = h.internal("/enterprises", &json!({
            "tenantId": tenant,
            "serviceAccountKey": key,
            "signupUrlName": name,
            "enterpriseToken": enterprise_token,
            "displayName": "Contoso",
            "pubsubTopic": format!("projects/{PROJECT}/topics/amapi"),
        })).await;
        assert_eq!(response.status(), 200);
        let bound: Value = response.json().await.unwrap();
        let enterprise = bound["enterpriseName"].as_str().unwrap();
        let at_google = h.mock.enterprise(enterprise).unwrap();
        assert_eq!(at_google["enterpriseDisplayName"], "Contoso");
        assert_eq!(at_google["pubsubTopic"], format!("projects/{PROJECT}/topics/amapi"));
        assert_eq!(
            at_google["enabledNotificationTypes"],
            json!(["ENROLLMENT", "STATUS_REPORT", "COMMAND", "USAGE_LOGS", "ENTERPRISE_UPGRADE"])
        );
        let policy = h.mock.policy(&format!("{enterprise}/policies/mdm-default")).unwrap();
        assert_eq!(policy["statusReportingSettings"]["softwareInfoEnabled"], true);
        assert_eq!(policy["statusReportingSettings"]["deviceSettingsEnabled"], true);
        assert_eq!(policy["statusReportingSettings"]["networkInfoEnabled"], true);
        // Every request validated against the discovery document.
        assert!(h.mock.requests().iter().all(|r| r.status == 200), "{:?}", h.mock.requests());

        // A used enterprise token does not work twice.
        let again = h.internal("/enterprises", &json!({
            "tenantId": tenant, "serviceAccountKey": key,
            "signupUrlName": name, "enterpriseToken": enterprise_token,
        })).await;
        assert_eq!(again.status(), 422);
        let problem: Value = again.json().await.unwrap();
        assert_eq!(problem["code"], "android_request_rejected");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn bad_keys_and_foreign_enterprises_are_refused(db) {
        let h = Harness::start(db).await;
        let tenant = mdm_domain::TenantId::new();
        let response = h.internal("/signupUrls", &json!({
            "tenantId": tenant, "callbackUrl": "https://x.example", "serviceAccountKey": "{\"not\": \"a key\"}",
        })).await;
        assert_eq!(response.status(), 422);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "android_service_account_invalid");

        // An enterprise of another project: Google answers 403, we do not retry it.
        let key = h.mock.service_account(PROJECT).unwrap();
        let other = h.mock.create_enterprise("someone-elses-project");
        let response = h.internal("/enterprises", &json!({
            "tenantId": tenant, "serviceAccountKey": key, "enterpriseName": other,
        })).await;
        assert_eq!(response.status(), 422);
        assert_eq!(h.mock.requests_to("enterprises.get").len(), 1);

        let response = h.internal("/enterprises", &json!({
            "tenantId": tenant, "serviceAccountKey": key,
        })).await;
        assert_eq!(response.status(), 422);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_internal_api_needs_the_service_credential(db) {
        let h = Harness::start(db).await;
        let response = h.http
            .post(format!("{}/internal/v1/android/signupUrls", h.app.internal_url))
            .bearer_auth("admin-token")
            .json(&json!({}))
            .send().await.unwrap();
        assert_eq!(response.status(), 401);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_key_google_refuses_is_named_at_once(db) {
        let h = Harness::start(db).await;
        let tenant = mdm_domain::TenantId::new();
        h.allow(tenant, true, mdm_domain::MdmAuthority::Standalone);
        // A key of an account Google no longer has (deleted since it was downloaded).
        let mut key: Value = serde_json::from_str(&h.mock.service_account(PROJECT).unwrap()).unwrap();
        key["client_email"] = json!(format!("deleted@{PROJECT}.iam.gserviceaccount.com"));
        let before = h.mock.token_refusals();
        let response = h
            .internal(
                "/enterprises",
                &json!({
                    "tenantId": tenant,
                    "serviceAccountKey": key.to_string(),
                    "enterpriseName": h.mock.create_enterprise(PROJECT),
                    "pubsubTopic": format!("projects/{PROJECT}/topics/amapi"),
                }),
            )
            .await;
        assert_eq!(response.status(), 422);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "android_service_account_invalid", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("deleted@{PROJECT}")) && detail.contains("invalid_grant"), "{detail}");
        assert_eq!(h.mock.token_refusals() - before, 1, "a refusal is not retried");
        h.app.stop().await;
    }
}
