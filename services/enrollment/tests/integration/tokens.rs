//! Tokens: authentication, tenant isolation and roles.

use mdm_domain::Role;
use mdm_store::test_on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Harness;

async fn code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

test_on_both_backends! {
    async fn a_wrong_token_gets_401(db) {
        let h = Harness::start(db).await;
        let tenants = h.url("/api/v1/tenants");

        let none = h.http.get(&tenants).send().await.unwrap();
        assert_eq!(none.headers().get("www-authenticate").unwrap(), "Bearer");
        assert_eq!(code(none).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()));

        let good = h.operator.clone();
        let tampered = format!("{}x", &good[..good.len() - 1]);
        let unknown = format!("mdm_{}_{}", uuid::Uuid::new_v4().simple(), &good[37..]);
        for token in ["garbage", "mdm_", tampered.as_str(), unknown.as_str()] {
            let response = h.http.get(&tenants).bearer_auth(token).send().await.unwrap();
            assert_eq!(code(response).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()), "{token}");
        }
        let basic = h.http.get(&tenants).header("Authorization", format!("Basic {good}")).send().await.unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
        let ok = h.http.get(&tenants).bearer_auth(&good).send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn revoked_and_expired_tokens_stop_working(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant("Contoso").await;
        let reader = h.token(Role::Reader, Some(tenant)).await;
        let secret = reader["secret"].as_str().unwrap();
        let me = h.url(&format!("/api/v1/tenants/{tenant}"));
        assert_eq!(h.http.get(&me).bearer_auth(secret).send().await.unwrap().status(), StatusCode::OK);

        let id = reader["id"].as_str().unwrap();
        let revoked = h.http.delete(h.url(&format!("/api/v1/tokens/{id}"))).bearer_auth(&h.operator).send().await.unwrap();
        assert_eq!(revoked.status(), StatusCode::OK);
        assert!(revoked.json::<Value>().await.unwrap()["revokedDateTime"].is_string());
        assert_eq!(h.http.get(&me).bearer_auth(secret).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

        let expiring = h.http.post(h.url("/api/v1/tokens")).bearer_auth(&h.operator)
            .json(&json!({ "role": "reader", "tenantId": tenant, "expiresInDays": 1 }))
            .send().await.unwrap().json::<Value>().await.unwrap();
        let secret = expiring["secret"].as_str().unwrap();
        assert_eq!(h.http.get(&me).bearer_auth(secret).send().await.unwrap().status(), StatusCode::OK);
        h.app.clock.advance(chrono::Duration::hours(25));
        assert_eq!(h.http.get(&me).bearer_auth(secret).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_token_of_tenant_a_finds_nothing_of_tenant_b(db) {
        let h = Harness::start(db).await;
        let (a, b) = (h.tenant("Tenant A").await, h.tenant("Tenant B").await);
        let admin_a = h.token(Role::Admin, Some(a)).await;
        let admin_a = admin_a["secret"].as_str().unwrap();
        let reader_b = h.token(Role::Reader, Some(b)).await;
        let reader_b_id = reader_b["id"].as_str().unwrap();

        // Another tenant's objects do not exist for this token: 404, never 403.
        let tenant_b = h.http.get(h.url(&format!("/api/v1/tenants/{b}"))).bearer_auth(admin_a).send().await.unwrap();
        assert_eq!(code(tenant_b).await, (StatusCode::NOT_FOUND, "not_found".into()));
        let token_b = h.http.get(h.url(&format!("/api/v1/tokens/{reader_b_id}"))).bearer_auth(admin_a).send().await.unwrap();
        assert_eq!(code(token_b).await, (StatusCode::NOT_FOUND, "not_found".into()));
        let revoke_b = h.http.delete(h.url(&format!("/api/v1/tokens/{reader_b_id}"))).bearer_auth(admin_a).send().await.unwrap();
        assert_eq!(revoke_b.status(), StatusCode::NOT_FOUND);
        let mint_in_b = h.http.post(h.url("/api/v1/tokens")).bearer_auth(admin_a)
            .json(&json!({ "role": "reader", "tenantId": b })).send().await.unwrap();
        assert_eq!(mint_in_b.status(), StatusCode::NOT_FOUND);

        // Lists show only the caller's tenant.
        let tenants: Value = h.http.get(h.url("/api/v1/tenants")).bearer_auth(admin_a).send().await.unwrap().json().await.unwrap();
        assert_eq!(tenants["value"].as_array().unwrap().len(), 1);
        assert_eq!(tenants["value"][0]["id"], a.to_string());
        let tokens: Value = h.http.get(h.url("/api/v1/tokens")).bearer_auth(admin_a).send().await.unwrap().json().await.unwrap();
        assert!(tokens["value"].as_array().unwrap().iter().all(|t| t["tenantId"] == a.to_string()));

        // The operator sees both, and narrows to one tenant with X-Mdm-Tenant.
        let all: Value = h.http.get(h.url("/api/v1/tokens")).bearer_auth(&h.operator).send().await.unwrap().json().await.unwrap();
        assert_eq!(all["value"].as_array().unwrap().len(), 3);
        let only_b: Value = h.http.get(h.url("/api/v1/tokens")).bearer_auth(&h.operator)
            .header("X-Mdm-Tenant", b.to_string()).send().await.unwrap().json().await.unwrap();
        assert_eq!(only_b["value"].as_array().unwrap().len(), 1);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn roles_limit_what_a_token_may_do(db) {
        let h = Harness::start(db).await;
        let tenant = h.tenant("Fabrikam").await;
        let reader = h.token(Role::Reader, Some(tenant)).await;
        let admin = h.token(Role::Admin, Some(tenant)).await;
        let (reader, admin) = (reader["secret"].as_str().unwrap(), admin["secret"].as_str().unwrap());
        let tokens = h.url("/api/v1/tokens");

        let by_reader = h.http.post(&tokens).bearer_auth(reader).json(&json!({ "role": "reader" })).send().await.unwrap();
        assert_eq!(code(by_reader).await, (StatusCode::FORBIDDEN, "forbidden".into()));
        let operator_by_admin = h.http.post(&tokens).bearer_auth(admin).json(&json!({ "role": "operator" })).send().await.unwrap();
        assert_eq!(code(operator_by_admin).await, (StatusCode::FORBIDDEN, "role_not_grantable".into()));
        let tenant_by_admin = h.http.post(h.url("/api/v1/tenants")).bearer_auth(admin).json(&json!({ "displayName": "X" })).send().await.unwrap();
        assert_eq!(tenant_by_admin.status(), StatusCode::FORBIDDEN);

        // An admin's token lands in the admin's tenant; the secret is shown once.
        let created = h.http.post(&tokens).bearer_auth(admin).json(&json!({ "role": "helpdesk", "description": "desk" })).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["tenantId"], tenant.to_string());
        assert!(created["secret"].as_str().unwrap().starts_with("mdm_"));
        let shown: Value = h.http.get(h.url(&format!("/api/v1/tokens/{}", created["id"].as_str().unwrap())))
            .bearer_auth(admin).send().await.unwrap().json().await.unwrap();
        assert!(shown.get("secret").is_none());
        assert_eq!(shown["description"], "desk");

        // An operator must say which tenant a tenant-scoped token is for.
        let unscoped = h.http.post(&tokens).bearer_auth(&h.operator).json(&json!({ "role": "admin" })).send().await.unwrap();
        assert_eq!(code(unscoped).await, (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed".into()));
        let user_without_user = h.http.post(&tokens).bearer_auth(admin).json(&json!({ "role": "user" })).send().await.unwrap();
        assert_eq!(user_without_user.status(), StatusCode::UNPROCESSABLE_ENTITY);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn tenant_names_are_unique(db) {
        let h = Harness::start(db).await;
        h.tenant("Northwind").await;
        let again = h.http.post(h.url("/api/v1/tenants")).bearer_auth(&h.operator)
            .json(&json!({ "displayName": "northwind" })).send().await.unwrap();
        assert_eq!(code(again).await, (StatusCode::CONFLICT, "tenant_name_taken".into()));
        let empty = h.http.post(h.url("/api/v1/tenants")).bearer_auth(&h.operator)
            .json(&json!({ "displayName": "  " })).send().await.unwrap();
        assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_user_token_names_a_user_of_its_own_tenant(db) {
        let h = Harness::start(db).await;
        let (a, admin_a) = h.admin("Tenant A").await;
        let (_, admin_b) = h.admin("Tenant B").await;
        let user = |admin: &str, upn: &str| {
            let request = h.http.post(h.url("/api/v1/users")).bearer_auth(admin)
                .json(&json!({ "userPrincipalName": upn, "displayName": upn }));
            async move { request.send().await.unwrap().json::<Value>().await.unwrap()["id"].clone() }
        };
        let ada = user(&admin_a, "ada@a.example").await;
        let bob = user(&admin_b, "bob@b.example").await;
        let mint = |admin: &str, body: Value| {
            let request = h.http.post(h.url("/api/v1/tokens")).bearer_auth(admin).json(&body);
            async move { code(request.send().await.unwrap()).await }
        };

        // Another tenant's user, and a user that exists nowhere, are not found.
        assert_eq!(mint(&admin_a, json!({ "role": "user", "userId": bob })).await, (StatusCode::NOT_FOUND, "not_found".into()));
        let nobody = mdm_domain::UserId::new();
        assert_eq!(mint(&admin_a, json!({ "role": "user", "userId": nobody })).await, (StatusCode::NOT_FOUND, "not_found".into()));
        assert_eq!(mint(&h.operator, json!({ "role": "user", "tenantId": a, "userId": bob })).await, (StatusCode::NOT_FOUND, "not_found".into()));

        // The tenant's own user gets a token.
        let own = h.http.post(h.url("/api/v1/tokens")).bearer_auth(&admin_a)
            .json(&json!({ "role": "user", "userId": ada })).send().await.unwrap();
        assert_eq!(own.status(), StatusCode::CREATED);
        h.app.stop().await;
    }
}
