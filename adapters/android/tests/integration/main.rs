//! The Android adapter in a running process, against the mock of Google's side (AMAPI,
//! OAuth, Pub/Sub) and simulated devices from mdm-e2e, on both backends. The enrollment
//! service, inventory and dispatch are small fakes serving the same internal paths and
//! message kinds as the real ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod binding;
mod enrollment;
mod faults;
mod notifications;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use futures_util::future::BoxFuture;
use mdm_android::{Config, Handle};
use mdm_api::Service;
use mdm_api::internal::adapter::{ActionParams, CancelAction, DeliverAction, DeviceRemoved};
use mdm_api::internal::dispatch::{ActionReport, AuditEvent};
use mdm_api::internal::enrollment::{
    AndroidBinding, GateDecision, GateDenial, GateRequest, GateResponse, PlatformRestriction,
    TenantPolicy,
};
use mdm_api::internal::inventory::{
    DeviceEnrolled, DeviceFactsReported, DeviceUnenrolled, DevicesSeen,
};
use mdm_api::internal::{Grant, IntrospectRequest, IntrospectResponse, Message};
use mdm_domain::{
    ActionId, ActionKind, ActionState, DeviceId, MdmAuthority, Platform, PlatformFamily, Role,
    TenantId, TokenId, UserId,
};
use mdm_e2e::android::{Hardware, MockGoogle, PushAuth, PushSubscription, Setup, SimulatedDevice};
use mdm_runtime::config::Secret;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, ManualClock, Module};
use mdm_store::models::android::DeviceRow;
use mdm_store::schema::and_devices;
use mdm_store::testing::TestDatabase;
use mdm_store::{DbConnection, StoreError};
use serde_json::{Value, json};

pub const PROJECT: &str = "mdm-test-project";
pub const PUSH_SECRET: &str = "push-secret-0123456789";
pub const AUDIENCE: &str = "https://mdm.example/android/pubsub";
pub const PUBSUB_EMAIL: &str = "pubsub-push@mdm-test-project.iam.gserviceaccount.com";

/// What the fake services received.
#[derive(Default)]
pub struct Received {
    pub messages: Vec<(String, Value)>,
    pub gate_checks: usize,
}

/// The fake enrollment service's state.
#[derive(Default)]
pub struct EnrollmentFake {
    pub bindings: HashMap<TenantId, AndroidBinding>,
    pub policies: HashMap<TenantId, TenantPolicy>,
    pub denied_users: HashSet<UserId>,
    pub refuse_all: bool,
}

/// Waits between in-place retries by moving the test clock instead of sleeping.
struct ClockPause {
    clock: Arc<OnceLock<ManualClock>>,
    waits: Arc<Mutex<Vec<Duration>>>,
}

impl mdm_android::amapi::Pause for ClockPause {
    fn pause(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.waits.lock().unwrap().push(duration);
        if let Some(clock) = self.clock.get() {
            clock.advance(chrono::Duration::from_std(duration).unwrap());
        }
        Box::pin(async {})
    }
}

pub struct Harness {
    pub app: TestApp,
    pub mock: MockGoogle,
    pub android: Handle,
    pub received: Arc<Mutex<Received>>,
    pub enrollment: Arc<Mutex<EnrollmentFake>>,
    pub pauses: Arc<Mutex<Vec<Duration>>>,
    pub http: reqwest::Client,
}

/// A tenant bound to an enterprise at the mock.
#[derive(Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub enterprise: String,
    pub admin: String,
    pub key: String,
}

impl Harness {
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let clock_cell: Arc<OnceLock<ManualClock>> = Arc::new(OnceLock::new());
        let now_cell = clock_cell.clone();
        let mock = MockGoogle::start(Arc::new(move || {
            now_cell
                .get()
                .map_or_else(|| ManualClock::at_epoch_2026().now(), Clock::now)
        }))
        .await
        .unwrap();
        let mut config = Config {
            api_base_url: mock.url(),
            request_timeout_secs: 2,
            worker_poll_ms: 50,
            ..Config::default()
        };
        config.pubsub.token = Some(Secret::new(PUSH_SECRET));
        config.pubsub.oidc_audience = Some(AUDIENCE.into());
        config.pubsub.oidc_jwks_url = mock.jwks_uri();
        config.pubsub.oidc_email = Some(PUBSUB_EMAIL.into());
        adjust(&mut config);

        let received = Arc::new(Mutex::new(Received::default()));
        let enrollment = Arc::new(Mutex::new(EnrollmentFake::default()));
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let handle_cell: Arc<OnceLock<Handle>> = Arc::new(OnceLock::new());
        let (r, e, h, p, c) = (
            received.clone(),
            enrollment.clone(),
            handle_cell.clone(),
            pauses.clone(),
            clock_cell.clone(),
        );
        let app = TestApp::spawn_on(
            db,
            |_| {},
            move |ctx| {
                let pause = Arc::new(ClockPause { clock: c, waits: p });
                let (android, handle) =
                    mdm_android::module_with_pause(ctx, &config, pause).unwrap();
                let _ = h.set(handle);
                Ok(vec![
                    android,
                    fake_enrollment(e, r.clone()),
                    fake_inventory(r.clone()),
                    fake_dispatch(r),
                ])
            },
        )
        .await;
        let _ = clock_cell.set(app.clock.clone());
        mock.push_to(PushSubscription {
            endpoint: format!("{}{}", app.url, mdm_android::PUBSUB_PATH),
            auth: PushAuth::QueryToken(PUSH_SECRET.into()),
            subscription: format!("projects/{PROJECT}/subscriptions/amapi-push"),
        });
        app.wait_until_ready().await;
        Self {
            android: handle_cell.get().unwrap().clone(),
            app,
            mock,
            received,
            enrollment,
            pauses,
            http: mdm_runtime::testing::http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    pub fn service_token(&self) -> String {
        self.app
            .context
            .config
            .security
            .service_token
            .as_ref()
            .unwrap()
            .expose()
            .to_owned()
    }

    /// POST to the adapter's internal API.
    pub async fn internal(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/internal/v1/android{path}",
                self.app.internal_url
            ))
            .bearer_auth(self.service_token())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A tenant whose existing enterprise is attached through the internal API, with a
    /// standalone authority and Android allowed (personal devices too).
    pub async fn tenant(&self) -> Tenant {
        let id = TenantId::new();
        let key = self.mock.service_account(PROJECT).unwrap();
        let enterprise = self.mock.create_enterprise(PROJECT);
        self.allow(id, true, MdmAuthority::Standalone);
        let response = self
            .internal(
                "/enterprises",
                &json!({
                    "tenantId": id,
                    "serviceAccountKey": key,
                    "enterpriseName": enterprise,
                    "pubsubTopic": format!("projects/{PROJECT}/topics/amapi"),
                }),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        self.enrollment.lock().unwrap().bindings.insert(
            id,
            AndroidBinding {
                enterprise_name: enterprise.clone(),
                service_account_key: key.clone(),
                pubsub_topic: Some(format!("projects/{PROJECT}/topics/amapi")),
                notification_types: Vec::new(),
            },
        );
        Tenant {
            id,
            enterprise,
            admin: format!("admin-{id}"),
            key,
        }
    }

    pub fn allow(&self, tenant: TenantId, personal: bool, authority: MdmAuthority) {
        self.enrollment.lock().unwrap().policies.insert(
            tenant,
            TenantPolicy {
                tenant_id: tenant,
                authority,
                device_limit_per_user: 5,
                platforms: vec![PlatformRestriction {
                    platform: Platform::Android,
                    allowed: true,
                    personal_allowed: personal,
                }],
                apple_push_topic: None,
                android_enterprise: None,
                windows_enrollment_enabled: false,
            },
        );
    }

    /// Creates an enrollment token through the admin API; answers the body.
    pub async fn token(&self, tenant: &Tenant, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(mdm_android::TOKENS_PATH))
            .bearer_auth(&tenant.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Enrols a simulated device with a new token for `profile`, and waits until
    /// inventory heard of it. Answers the device and its id.
    pub async fn enrol(
        &self,
        tenant: &Tenant,
        profile: &str,
        hardware: Hardware,
    ) -> (SimulatedDevice, DeviceId) {
        let (status, token) = self.token(tenant, json!({ "profile": profile })).await;
        assert_eq!(status, 201, "{token}");
        let setup = if profile == "personalWorkProfile" {
            Setup::PersonalDevice
        } else {
            Setup::CompanyDevice
        };
        let device = self
            .mock
            .enroll(token["value"].as_str().unwrap(), setup, hardware)
            .await
            .unwrap();
        let id = self.wait_device_id(device.name()).await;
        self.wait_message::<DeviceEnrolled>(|m| m.device_id == id)
            .await;
        (device, id)
    }

    pub async fn device_row(&self, name: &str) -> Option<DeviceRow> {
        let name = name.to_owned();
        self.app
            .context
            .store
            .read(move |c: &mut DbConnection| {
                Ok::<_, StoreError>(
                    and_devices::table
                        .filter(and_devices::amapi_name.eq(name))
                        .select(DeviceRow::as_select())
                        .first(c)
                        .optional()?,
                )
            })
            .await
            .unwrap()
    }

    pub async fn wait_device_id(&self, name: &str) -> DeviceId {
        for _ in 0..400 {
            if let Some(row) = self.device_row(name).await {
                return row.device_id;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the adapter never recorded {name}");
    }

    /// Messages of type `M` the fakes received.
    pub fn messages<M: Message>(&self) -> Vec<M> {
        self.received
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(kind, _)| kind == M::KIND)
            .map(|(_, v)| serde_json::from_value(v.clone()).unwrap())
            .collect()
    }

    /// Waits (up to 10 s) for a message of type `M` that `matches`.
    pub async fn wait_message<M: Message>(&self, matches: impl Fn(&M) -> bool) -> M {
        for _ in 0..400 {
            if let Some(found) = self.messages::<M>().into_iter().find(|m| matches(m)) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let seen: Vec<String> = self
            .received
            .lock()
            .unwrap()
            .messages
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        panic!(
            "no matching {} message arrived; received: {seen:#?}",
            M::KIND
        );
    }

    /// Waits for dispatch to hear that `action` reached `state`.
    pub async fn wait_report(&self, action: ActionId, state: ActionState) -> ActionReport {
        self.wait_message::<ActionReport>(|r| r.action_id == action && r.state == state)
            .await
    }

    pub fn reports_of(&self, action: ActionId) -> Vec<ActionState> {
        self.messages::<ActionReport>()
            .into_iter()
            .filter(|r| r.action_id == action)
            .map(|r| r.state)
            .collect()
    }

    /// Dispatch sends an action (through its outbox, as the real one does).
    pub async fn deliver(
        &self,
        tenant: &Tenant,
        device: DeviceId,
        kind: ActionKind,
        params: ActionParams,
    ) -> ActionId {
        let action = ActionId::new();
        let now = self.app.clock.now();
        let message = DeliverAction {
            action_id: action,
            tenant_id: tenant.id,
            device_id: device,
            family: PlatformFamily::Android,
            kind,
            params,
            priority: kind.is_priority(),
            expires_at: now + chrono::Duration::days(1),
            requested_at: now,
        };
        self.send_from_dispatch(&format!("test:deliver:{action}"), device, message)
            .await;
        action
    }

    pub async fn cancel(&self, action: ActionId, device: DeviceId) {
        let message = CancelAction {
            action_id: action,
            device_id: device,
            family: PlatformFamily::Android,
        };
        self.send_from_dispatch(&format!("test:cancel:{action}"), device, message)
            .await;
    }

    pub async fn remove(&self, device: DeviceId) {
        let message = DeviceRemoved {
            device_id: device,
            family: PlatformFamily::Android,
            at: self.app.clock.now(),
        };
        let outbox = self.app.context.outbox(Service::Inventory);
        self.app
            .context
            .store
            .write(move |c| outbox.enqueue(c, &format!("test:removed:{device}"), None, &message))
            .await
            .unwrap();
    }

    pub async fn send_from_dispatch<M: Message + Send + 'static>(
        &self,
        key: &str,
        device: DeviceId,
        message: M,
    ) {
        let outbox = self.app.context.outbox(Service::Dispatch);
        let key = key.to_owned();
        self.app
            .context
            .store
            .write(move |c| outbox.enqueue(c, &key, Some(&device.to_string()), &message))
            .await
            .unwrap();
    }

    /// Moves the test clock and runs the worker once.
    pub async fn advance(&self, by: chrono::Duration) {
        self.app.clock.advance(by);
        self.android.run_worker_once().await.unwrap();
    }

    /// The status of a push of `body` with the subscription's authentication.
    pub async fn push(&self, body: &Value) -> u16 {
        self.mock.push_raw(&body.to_string()).await
    }

    pub fn amapi_calls(&self, method: &str) -> usize {
        self.mock.requests_to(method).len()
    }
}

/// A Pub/Sub push body.
pub fn push_body(message_id: &str, kind: &str, data: Option<&Value>) -> Value {
    use base64::Engine;
    let mut message = json!({
        "attributes": { "notificationType": kind },
        "messageId": message_id,
        "publishTime": "2026-01-01T00:00:00Z",
    });
    if let Some(data) = data {
        message["data"] = json!(base64::engine::general_purpose::STANDARD.encode(data.to_string()));
    }
    json!({ "message": message, "subscription": "projects/p/subscriptions/s" })
}

fn record<M: Message + 'static>(inbox: Inbox, received: Arc<Mutex<Received>>) -> Inbox {
    inbox.on::<M, _>(move |_, _, message| {
        received
            .lock()
            .unwrap()
            .messages
            .push((M::KIND.to_owned(), serde_json::to_value(&message).unwrap()));
        Ok(None)
    })
}

fn fake_inventory(received: Arc<Mutex<Received>>) -> Module {
    let inbox = Inbox::new(Service::Inventory);
    let inbox = record::<DeviceEnrolled>(inbox, received.clone());
    let inbox = record::<DeviceFactsReported>(inbox, received.clone());
    let inbox = record::<DevicesSeen>(inbox, received.clone());
    let inbox = record::<DeviceUnenrolled>(inbox, received);
    Module::new(Service::Inventory).inbox(inbox)
}

fn fake_dispatch(received: Arc<Mutex<Received>>) -> Module {
    let inbox = Inbox::new(Service::Dispatch);
    let inbox = record::<ActionReport>(inbox, received.clone());
    let inbox = record::<AuditEvent>(inbox, received);
    Module::new(Service::Dispatch).inbox(inbox)
}

fn fake_enrollment(state: Arc<Mutex<EnrollmentFake>>, received: Arc<Mutex<Received>>) -> Module {
    let data = web::Data::new((state, received));
    Module::new(Service::Enrollment).internal(move |cfg| {
        cfg.app_data(data.clone())
            .service(web::resource("/tenants/{id}/android").get(binding))
            .service(web::resource("/tenants/{id}/policy").get(policy))
            .service(web::resource("/gate").post(gate))
            .service(web::resource("/tokens/introspect").post(introspect));
    })
}

type Shared = web::Data<(Arc<Mutex<EnrollmentFake>>, Arc<Mutex<Received>>)>;

async fn binding(state: Shared, id: web::Path<TenantId>) -> HttpResponse {
    match state.0.lock().unwrap().bindings.get(&id) {
        Some(binding) => HttpResponse::Ok().json(binding),
        None => HttpResponse::NotFound()
            .content_type("application/problem+json")
            .json(json!({"type": "x", "title": "x", "status": 404, "code": "not_found"})),
    }
}

async fn policy(state: Shared, id: web::Path<TenantId>) -> HttpResponse {
    match state.0.lock().unwrap().policies.get(&id) {
        Some(policy) => HttpResponse::Ok().json(policy),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn gate(state: Shared, body: web::Json<GateRequest>) -> HttpResponse {
    let fake = state.0.lock().unwrap();
    state.1.lock().unwrap().gate_checks += body.checks.len();
    let decisions = body
        .checks
        .iter()
        .map(|check| {
            let denied = fake.refuse_all
                || check
                    .user_id
                    .is_some_and(|u| fake.denied_users.contains(&u));
            if denied {
                GateDecision::deny(
                    GateDenial::DeviceLimitReached,
                    "the user has too many devices",
                )
            } else {
                GateDecision::allow(check.user_id.map(|u| format!("{u}@contoso.example")))
            }
        })
        .collect();
    HttpResponse::Ok().json(GateResponse { decisions })
}

async fn introspect(body: web::Json<IntrospectRequest>) -> HttpResponse {
    let grant = body
        .token
        .strip_prefix("admin-")
        .and_then(|t| t.parse::<TenantId>().ok())
        .map(|tenant| Grant {
            token_id: TokenId::new(),
            role: Role::Admin,
            tenant_id: Some(tenant),
            user_id: None,
        });
    let grant = grant.or_else(|| {
        body.token
            .strip_prefix("reader-")
            .and_then(|t| t.parse::<TenantId>().ok())
            .map(|tenant| Grant {
                token_id: TokenId::new(),
                role: Role::Reader,
                tenant_id: Some(tenant),
                user_id: None,
            })
    });
    HttpResponse::Ok().json(IntrospectResponse {
        active: grant.is_some(),
        grant,
    })
}
