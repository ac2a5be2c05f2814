//! Users and licences.

use mdm_domain::{ManagementState, Platform, UserId};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Harness, assert_problem};

async fn create(h: &Harness, admin: &str, upn: &str, extra: Value) -> Value {
    let mut body = json!({ "userPrincipalName": upn, "displayName": "Someone" });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let (status, user) = h
        .call(Method::POST, "/api/v1/users", admin, Some(body))
        .await;
    assert_eq!(status, 201, "{user}");
    user
}

test_on_both_backends! {
    async fn users_are_created_listed_and_paged(db) {
        let h = Harness::start(db).await;
        let (_, admin) = h.admin("Contoso").await;
        for i in 0..5 {
            create(&h, &admin, &format!("user{i}@contoso.example"), json!({})).await;
        }
        let dup = h.call(Method::POST, "/api/v1/users", &admin, Some(json!({ "userPrincipalName": "USER0@contoso.example", "displayName": "x" }))).await;
        assert_problem(&dup, 409, "user_exists");
        assert_problem(&h.call(Method::POST, "/api/v1/users", &admin, Some(json!({ "userPrincipalName": "nobody", "displayName": "x" }))).await, 422, "validation_failed");
        assert_problem(&h.call(Method::POST, "/api/v1/users", &admin, Some(json!({ "userPrincipalName": "p@contoso.example", "displayName": "x", "password": "short" }))).await, 422, "validation_failed");

        let (_, first) = h.call(Method::GET, "/api/v1/users?top=2", &admin, None).await;
        assert_eq!(first["value"].as_array().unwrap().len(), 2);
        let mut seen = 2;
        let mut next = first["nextLink"].as_str().map(str::to_owned);
        while let Some(link) = next {
            let (_, page) = h.call(Method::GET, &link, &admin, None).await;
            seen += page["value"].as_array().unwrap().len();
            next = page["nextLink"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, 5);

        // Another tenant sees none of them.
        let (_, other) = h.admin("Fabrikam").await;
        let (_, list) = h.call(Method::GET, "/api/v1/users", &other, None).await;
        assert!(list["value"].as_array().unwrap().is_empty());
        let id = first["value"][0]["id"].as_str().unwrap();
        assert_problem(&h.call(Method::GET, &format!("/api/v1/users/{id}"), &other, None).await, 404, "not_found");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn removing_a_licence_unenrols_the_users_devices(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let user = create(&h, &admin, "ada@contoso.example", json!({})).await;
        assert_eq!(user["licensed"], false);
        let id = user["id"].as_str().unwrap();
        let (status, assigned) = h.call(Method::POST, &format!("/api/v1/users/{id}/assignLicense"), &admin, None).await;
        assert_eq!((status.as_u16(), assigned["licensed"].clone()), (200, json!(true)));

        let (status, removed) = h.call(Method::POST, &format!("/api/v1/users/{id}/removeLicense"), &admin, None).await;
        assert_eq!((status.as_u16(), removed["licensed"].clone()), (200, json!(false)));
        let message = h.fakes.dispatch_received("dispatch.unenroll_user", |m| m["userId"] == id).await;
        assert_eq!(message["tenantId"], tenant.to_string());

        // Removing it again changes nothing and sends nothing.
        h.call(Method::POST, &format!("/api/v1/users/{id}/removeLicense"), &admin, None).await;
        h.fakes.dispatch_received("dispatch.audit_event", |m| m["activity"] == "user.licenseRemoved").await;
        let unenrolls = h.fakes.dispatch.lock().unwrap().iter().filter(|(k, _)| k == "dispatch.unenroll_user").count();
        assert_eq!(unenrolls, 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_user_with_managed_devices_is_not_deleted_unless_forced(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let user = create(&h, &admin, "ada@contoso.example", json!({ "licensed": true })).await;
        let id: UserId = user["id"].as_str().unwrap().parse().unwrap();
        let phone = h.fakes.add_device(tenant, Platform::Ios, Some(id), ManagementState::Managed);
        h.fakes.add_device(tenant, Platform::Android, Some(id), ManagementState::Retired);

        let refused = h.call(Method::DELETE, &format!("/api/v1/users/{id}"), &admin, None).await;
        assert_problem(&refused, 409, "user_has_managed_devices");
        let devices = refused.1["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1, "retired devices do not count");
        assert_eq!(devices[0]["id"], phone.to_string());
        assert_eq!(devices[0]["managementState"], "managed");

        let (status, _) = h.call(Method::DELETE, &format!("/api/v1/users/{id}?force=true"), &admin, None).await;
        assert_eq!(status, 204);
        assert_problem(&h.call(Method::GET, &format!("/api/v1/users/{id}"), &admin, None).await, 404, "not_found");

        // Without managed devices no force is needed.
        let other = create(&h, &admin, "grace@contoso.example", json!({})).await;
        let (status, _) = h.call(Method::DELETE, &format!("/api/v1/users/{}", other["id"].as_str().unwrap()), &admin, None).await;
        assert_eq!(status, 204);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn enrollment_passwords_and_principal_names(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin("Contoso").await;
        let user = create(&h, &admin, "Ada.Lovelace@Contoso.example", json!({ "password": "correct horse battery", "licensed": true })).await;
        let auth = |upn: &str, password: &str| {
            h.internal(Method::POST, "/users/authenticate", Some(json!({ "userPrincipalName": upn, "password": password })))
        };
        let (status, resolved) = auth("ada.lovelace@contoso.example", "correct horse battery").await;
        assert_eq!(status, 200);
        assert_eq!(resolved["tenantId"], tenant.to_string());
        assert_eq!(resolved["userId"], user["id"]);
        assert_eq!(resolved["licensed"], true);
        assert_eq!(auth("ada.lovelace@contoso.example", "wrong").await.0, 401);
        assert_eq!(auth("nobody@contoso.example", "correct horse battery").await.0, 401);

        let nopass = create(&h, &admin, "grace@contoso.example", json!({})).await;
        assert_eq!(auth("grace@contoso.example", "").await.0, 401);
        let id = nopass["id"].as_str().unwrap();
        let (status, _) = h.call(Method::PATCH, &format!("/api/v1/users/{id}"), &admin, Some(json!({ "password": "a new password" }))).await;
        assert_eq!(status, 200);
        assert_eq!(auth("grace@contoso.example", "a new password").await.0, 200);

        let (status, found) = h.internal(Method::POST, "/users/resolve", Some(json!({ "userPrincipalName": "GRACE@contoso.example" }))).await;
        assert_eq!((status.as_u16(), found["userId"].clone()), (200, nopass["id"].clone()));
        assert_eq!(h.internal(Method::POST, "/users/resolve", Some(json!({ "userPrincipalName": "x@y.example" }))).await.0, 404);

        let (_, lookup) = h.internal(Method::POST, "/users/lookup", Some(json!({ "tenantId": tenant, "userIds": [id, UserId::new()] }))).await;
        assert_eq!(lookup["users"].as_array().unwrap().len(), 1);
        assert_eq!(lookup["users"][0]["licensed"], false);
        h.app.stop().await;
    }
}
