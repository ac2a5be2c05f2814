//! The enrollment service in a running process, on both backends, beside fake inventory,
//! dispatch and Android-adapter modules that answer the internal APIs it calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authority;
mod ca;
mod fakes;
mod gate;
mod prerequisites;
mod tokens;
mod users;

use mdm_api::public::CreateToken;
use mdm_domain::{Role, TenantId};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::Clock;
use mdm_runtime::testing::TestApp;
use mdm_store::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fakes::Fakes;

/// A process running the enrollment service and the fakes, with an operator token.
pub struct Harness {
    pub app: TestApp,
    pub operator: String,
    pub http: reqwest::Client,
    pub fakes: Fakes,
}

impl Harness {
    pub async fn start(db: TestDatabase) -> Self {
        let fakes = Fakes::default();
        let modules = fakes.clone();
        let config = mdm_enrollment::Config {
            password_hash_iterations: 1000,
            ..mdm_enrollment::Config::default()
        };
        let app = TestApp::spawn_on(
            db,
            |_| {},
            move |ctx| {
                let mut all = vec![mdm_enrollment::module(ctx, &config)];
                all.extend(modules.modules());
                Ok(all)
            },
        )
        .await;
        let now = app.clock.now();
        let operator = app
            .context
            .store
            .write(move |c| {
                mdm_enrollment::tokens::create(
                    c,
                    Issuer::CommandLine,
                    CreateToken {
                        role: Role::Operator,
                        tenant_id: None,
                        user_id: None,
                        description: "bootstrap".into(),
                        expires_in_days: None,
                    },
                    now,
                )
            })
            .await
            .unwrap()
            .secret;
        Self {
            app,
            operator,
            http: mdm_runtime::testing::http_client(),
            fakes,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    /// Creates a tenant as the operator.
    pub async fn tenant(&self, name: &str) -> TenantId {
        let response = self
            .http
            .post(self.url("/api/v1/tenants"))
            .bearer_auth(&self.operator)
            .json(&json!({ "displayName": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Creates a token as the operator; answers the created token's body.
    pub async fn token(&self, role: Role, tenant: Option<TenantId>) -> Value {
        let response = self
            .http
            .post(self.url("/api/v1/tokens"))
            .bearer_auth(&self.operator)
            .json(&json!({ "role": role, "tenantId": tenant }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// A tenant with an admin token: (tenant, admin secret).
    pub async fn admin(&self, name: &str) -> (TenantId, String) {
        let tenant = self.tenant(name).await;
        let token = self.token(Role::Admin, Some(tenant)).await;
        (tenant, token["secret"].as_str().unwrap().to_owned())
    }

    /// A call with a bearer token: (status, JSON body or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call to the enrollment service's internal API with the service credential.
    pub async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let credential = self
            .app
            .context
            .config
            .security
            .service_token
            .clone()
            .unwrap();
        let mut request = self
            .http
            .request(
                method,
                format!("{}/internal/v1/enrollment{path}", self.app.internal_url),
            )
            .bearer_auth(credential.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Asserts a problem answer's status and code.
pub fn assert_problem(answer: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(answer.0.as_u16(), status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}
