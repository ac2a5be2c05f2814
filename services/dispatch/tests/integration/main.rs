//! The dispatch service in a running process, on both backends, with the real enrollment
//! service (tokens, authority, licences) and fake inventory and adapters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod bulk;
mod crash;
mod fakes;
mod lifecycle;
mod messages;
mod pins;

use mdm_api::Service;
use mdm_api::internal::{Envelope, Message, MessageBatch};
use mdm_api::public::CreateToken;
use mdm_domain::{ActionId, ActionState, DeviceId, MdmAuthority, Role, TenantId, UserId};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::Clock;
use mdm_runtime::config::RuntimeConfig;
use mdm_runtime::testing::TestApp;
use mdm_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fakes::Fakes;

pub struct Harness {
    pub app: TestApp,
    pub fakes: Fakes,
    pub http: reqwest::Client,
    pub tenant: TenantId,
    pub admin: String,
    pub operator: String,
}

pub fn dispatch_config() -> mdm_dispatch::Config {
    mdm_dispatch::Config {
        policy_cache_secs: 0,
        bulk_chunk: 50,
        maintenance_secs: 1,
        ..mdm_dispatch::Config::default()
    }
}

impl Harness {
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TestDatabase, adjust: impl FnOnce(&mut RuntimeConfig)) -> Self {
        Self::start_configured(db, adjust, dispatch_config()).await
    }

    pub async fn start_configured(
        db: TestDatabase,
        adjust: impl FnOnce(&mut RuntimeConfig),
        dispatch: mdm_dispatch::Config,
    ) -> Self {
        let fakes = Fakes::default();
        let modules = fakes.clone();
        let app = TestApp::spawn_on(db, adjust, move |ctx| {
            let mut all = vec![
                mdm_enrollment::module(
                    ctx,
                    &mdm_enrollment::Config {
                        password_hash_iterations: 1000,
                        ..Default::default()
                    },
                ),
                mdm_dispatch::module(ctx, &dispatch),
            ];
            all.extend(modules.modules());
            Ok(all)
        })
        .await;
        let now = app.clock.now();
        let store = app.context.store.clone();
        let (tenant, admin, operator) = store
            .write(move |c| {
                let tenant = mdm_enrollment::tenants::create(c, "Contoso", now)?;
                mdm_enrollment::tenants::set_authority(
                    c,
                    tenant.id,
                    MdmAuthority::Standalone,
                    now,
                )?;
                let token = |role: Role, tenant_id: Option<TenantId>| CreateToken {
                    role,
                    tenant_id,
                    user_id: None,
                    description: String::new(),
                    expires_in_days: None,
                };
                let admin = mdm_enrollment::tokens::create(
                    c,
                    Issuer::CommandLine,
                    token(Role::Admin, Some(tenant.id)),
                    now,
                )?;
                let operator = mdm_enrollment::tokens::create(
                    c,
                    Issuer::CommandLine,
                    token(Role::Operator, None),
                    now,
                )?;
                Ok::<_, mdm_enrollment::Error>((tenant.id, admin.secret, operator.secret))
            })
            .await
            .unwrap();
        Self {
            app,
            fakes,
            http: mdm_runtime::testing::http_client(),
            tenant,
            admin,
            operator,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    pub async fn call(
        &self,
        method: Method,
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

    /// `POST .../managedDevices/{device}/{action}` as the admin.
    pub async fn act(
        &self,
        device: DeviceId,
        action: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.act_as(&self.admin, device, action, body).await
    }

    pub async fn act_as(
        &self,
        token: &str,
        device: DeviceId,
        action: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/deviceManagement/managedDevices/{device}/{action}"),
            token,
            body,
        )
        .await
    }

    /// A token of another role in the tenant.
    pub async fn token(&self, role: Role, user: Option<UserId>) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                &self.admin,
                Some(json!({ "role": role, "userId": user })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }

    pub async fn set_authority(&self, authority: MdmAuthority) {
        let body = json!({ "mobileDeviceManagementAuthority": authority });
        let (status, _) = self
            .call(
                Method::PUT,
                "/api/v1/organization/mdmAuthority",
                &self.admin,
                Some(body),
            )
            .await;
        assert_eq!(status, 200);
    }

    /// A user of the tenant, licensed or not.
    pub async fn user(&self, upn: &str, licensed: bool) -> UserId {
        let body = json!({ "userPrincipalName": upn, "displayName": upn, "licensed": licensed });
        let (status, user) = self
            .call(Method::POST, "/api/v1/users", &self.admin, Some(body))
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_str().unwrap().parse().unwrap()
    }

    /// Sends dispatch a message as `producer` would through its outbox.
    pub async fn send<M: Message>(&self, producer: Service, key: &str, message: &M) -> Value {
        let envelope = Envelope {
            key: key.to_owned(),
            kind: M::KIND.to_owned(),
            ordering_key: None,
            payload: serde_json::value::to_raw_value(message).unwrap(),
        };
        let batch = MessageBatch {
            producer,
            messages: vec![envelope],
        };
        let credential = self
            .app
            .context
            .config
            .security
            .service_token
            .clone()
            .unwrap();
        let response = self
            .http
            .post(format!(
                "{}/internal/v1/dispatch/messages",
                self.app.internal_url
            ))
            .bearer_auth(credential.expose())
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["outcomes"][0].clone()
    }

    /// An adapter's report on an action.
    pub async fn report(
        &self,
        action: ActionId,
        device: DeviceId,
        state: ActionState,
        error: Option<&str>,
    ) {
        let report = mdm_api::internal::dispatch::ActionReport {
            action_id: action,
            device_id: device,
            state,
            error_code: error.map(str::to_owned),
            error_detail: error.map(|e| format!("the device answered {e}")),
            at: self.app.clock.now(),
        };
        let outcome = self
            .send(Service::Apple, &format!("report:{action}:{state}"), &report)
            .await;
        assert!(
            matches!(outcome["result"].as_str(), Some("applied" | "duplicate")),
            "{outcome}"
        );
    }

    /// The device's actions as `deviceActionResults` lists them.
    pub async fn results(&self, device: DeviceId) -> Vec<Value> {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/api/v1/deviceManagement/managedDevices/{device}/deviceActionResults"),
                &self.admin,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    }

    pub async fn action_state(&self, device: DeviceId, action: &str) -> String {
        let results = self.results(device).await;
        let found = results
            .iter()
            .find(|r| r["id"] == action)
            .unwrap_or_else(|| panic!("no action {action} in {results:?}"));
        found["actionState"].as_str().unwrap().to_owned()
    }
}

/// Asserts a problem answer's status and code.
pub fn assert_problem(answer: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(answer.0.as_u16(), status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

/// Polls until `condition` holds (messages travel through the relay).
pub async fn eventually<F: Fn() -> bool>(what: &str, condition: F) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}
