//! The inventory service in a running process, on both backends, beside fake
//! enrollment, dispatch and adapter modules. Devices are fed the way the adapters feed
//! them: message batches posted to the inventory inbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod autopilot;
mod cleanup;
mod delete;
mod devices;
mod directory;
mod fakes;
mod groups;

use std::time::Duration;

use chrono::{DateTime, Utc};
use mdm_api::Service;
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFacts};
use mdm_api::internal::{BatchOutcome, DeliveryResult, Envelope, Message, MessageBatch};
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementMode, MdmAuthority, Ownership, Platform, Role, TenantId,
    UserId,
};
use mdm_runtime::Clock;
use mdm_runtime::config::RuntimeConfig;
use mdm_runtime::testing::TestApp;
use mdm_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::fakes::Fakes;

/// A process running the inventory service and the fakes.
pub struct Harness {
    pub app: TestApp,
    pub http: reqwest::Client,
    pub fakes: Fakes,
}

/// The inventory configuration of the tests: clean-up rules that would not run again
/// during a test unless it asks for them, and tenant policy read afresh each time (tests
/// change a tenant's authority between calls).
pub fn quiet() -> mdm_inventory::Config {
    mdm_inventory::Config {
        cleanup_period_ms: 3_600_000,
        policy_cache_secs: 0,
        ..mdm_inventory::Config::default()
    }
}

/// Clean-up rules that run every 50 ms.
pub fn eager() -> mdm_inventory::Config {
    mdm_inventory::Config {
        cleanup_period_ms: 50,
        ..quiet()
    }
}

impl Harness {
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, quiet(), |_| {}).await
    }

    pub async fn start_with(
        db: TestDatabase,
        config: mdm_inventory::Config,
        adjust: impl FnOnce(&mut RuntimeConfig),
    ) -> Self {
        Self::start_with_fakes(db, config, adjust, Fakes::default()).await
    }

    pub async fn start_with_fakes(
        db: TestDatabase,
        config: mdm_inventory::Config,
        adjust: impl FnOnce(&mut RuntimeConfig),
        fakes: Fakes,
    ) -> Self {
        let modules = fakes.clone();
        let app = TestApp::spawn_on(db, adjust, move |ctx| {
            let mut all = vec![mdm_inventory::module(ctx, &config)];
            all.extend(modules.modules());
            Ok(all)
        })
        .await;
        app.wait_until_ready().await;
        Self {
            app,
            http: mdm_runtime::testing::http_client(),
            fakes,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    /// A tenant under standalone authority with an admin token: (tenant, token).
    pub fn admin(&self) -> (TenantId, String) {
        let tenant = self.fakes.tenant(MdmAuthority::Standalone);
        (tenant, self.fakes.token(Role::Admin, Some(tenant), None))
    }

    pub fn token(&self, role: Role, tenant: TenantId) -> String {
        self.fakes.token(role, Some(tenant), None)
    }

    /// A call with a bearer token: (status, JSON body or null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.app.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    fn service_token(&self) -> String {
        let security = &self.app.context.config.security;
        security.service_token.clone().unwrap().expose().to_owned()
    }

    /// A call to inventory's internal API with the service credential.
    pub async fn internal(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(
                method,
                format!("{}/internal/v1/inventory{path}", self.app.internal_url),
            )
            .bearer_auth(self.service_token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Delivers messages to inventory's inbox as `producer`'s outbox relay would; asserts
    /// that each was applied.
    pub async fn send<M: Message>(&self, producer: Service, messages: &[M]) {
        let outcome = self.deliver(producer, messages).await;
        for result in outcome.outcomes {
            assert_eq!(result.result, DeliveryResult::Applied, "{result:?}");
        }
    }

    pub async fn deliver<M: Message>(&self, producer: Service, messages: &[M]) -> BatchOutcome {
        let batch = MessageBatch {
            producer,
            messages: messages
                .iter()
                .map(|m| Envelope {
                    key: format!("test:{}", uuid::Uuid::now_v7()),
                    kind: M::KIND.to_owned(),
                    ordering_key: None,
                    payload: serde_json::value::to_raw_value(m).unwrap(),
                })
                .collect(),
        };
        let response = self
            .http
            .post(format!(
                "{}/internal/v1/inventory/messages",
                self.app.internal_url
            ))
            .bearer_auth(self.service_token())
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Enrols a device as its adapter would; answers its id.
    pub async fn enrol(&self, device: Enrol) -> DeviceId {
        let id = DeviceId::new();
        let message = device.message(id, self.now());
        let producer = match device.platform.family() {
            mdm_domain::PlatformFamily::Apple => Service::Apple,
            mdm_domain::PlatformFamily::Android => Service::Android,
            mdm_domain::PlatformFamily::Windows => Service::Windows,
        };
        self.send(producer, &[message]).await;
        id
    }

    /// Successful runs of a job in this process so far.
    pub fn job_runs(&self, job: &str) -> u64 {
        job_runs(&self.app, job)
    }

    /// Waits until `job` has completed two more runs than now: the second began after
    /// this call, so it saw everything done before.
    pub async fn run_job(&self, job: &str) {
        let start = self.job_runs(job);
        for _ in 0..3000 {
            if self.job_runs(job) >= start + 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the job {job} did not run");
    }
}

pub fn job_runs(app: &TestApp, job: &str) -> u64 {
    app.context
        .metrics
        .jobs_runs
        .with_label_values(&[job, "ok"])
        .get()
}

/// A device to enrol.
#[derive(Clone)]
pub struct Enrol {
    pub tenant: TenantId,
    pub platform: Platform,
    pub ownership: Ownership,
    pub mode: Option<ManagementMode>,
    pub user: Option<(UserId, String)>,
    pub facts: DeviceFacts,
}

impl Enrol {
    pub fn new(tenant: TenantId, platform: Platform) -> Self {
        let mode = match platform {
            Platform::Android => Some(ManagementMode::FullyManaged),
            Platform::Windows => Some(ManagementMode::Desktop),
            _ => None,
        };
        Self {
            tenant,
            platform,
            ownership: Ownership::Company,
            mode,
            user: None,
            facts: DeviceFacts {
                device_name: Some(format!("{platform} device")),
                ..DeviceFacts::default()
            },
        }
    }

    pub fn user(mut self, user: UserId, upn: &str) -> Self {
        self.user = Some((user, upn.to_owned()));
        self
    }

    pub fn personal(mut self) -> Self {
        self.ownership = Ownership::Personal;
        if self.platform == Platform::Android {
            self.mode = Some(ManagementMode::WorkProfile);
        }
        self
    }

    pub fn serial(mut self, serial: &str) -> Self {
        self.facts.serial_number = Some(serial.to_owned());
        self
    }

    pub fn certificate_expires(mut self, at: DateTime<Utc>) -> Self {
        self.facts.identity_certificate_expires_at = Some(at);
        self
    }

    pub fn message(&self, id: DeviceId, now: DateTime<Utc>) -> DeviceEnrolled {
        DeviceEnrolled {
            device_id: id,
            tenant_id: self.tenant,
            enrollment_id: EnrollmentId::new(),
            platform: self.platform,
            ownership: self.ownership,
            management_mode: self.mode,
            user_id: self.user.as_ref().map(|(u, _)| *u),
            user_principal_name: self.user.as_ref().map(|(_, upn)| upn.clone()),
            directory_joined: false,
            facts: self.facts.clone(),
            enrolled_at: now,
        }
    }
}

/// Asserts a problem answer's status and code.
pub fn assert_problem(answer: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(answer.0.as_u16(), status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

/// The ids in a page of devices (or of anything with an `id`).
pub fn ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}
