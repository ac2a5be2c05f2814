//! The Apple adapter in a running process with fakes of enrollment, inventory and
//! dispatch, the APNs mock and simulated devices, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod apns;
mod enrollment;
mod fakes;
mod protocol;
mod queue;
mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::Service;
use mdm_api::internal::Grant;
use mdm_api::internal::adapter::{ActionParams, DeliverAction};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::PushCertificate;
use mdm_domain::{
    ActionId, ActionKind, ActionState, DeviceId, PlatformFamily, Role, TenantId, TokenId,
};
use mdm_e2e::apple::{AuthMode, MockApns, Model, SimulatedDevice, TestCa};
use mdm_runtime::Clock;
use mdm_runtime::testing::TestApp;
use mdm_store::StoreError;
use mdm_store::testing::TestDatabase;

use fakes::{Got, Inboxes};

/// 2026-01-01, near the manual clock's start: certificates made for the mock's TLS and
/// the push certificate are valid ten years either side, covering the real time too.
pub const EPOCH_2026: i64 = 1_767_225_600;

pub struct Options {
    pub scep: bool,
    pub forwarded: bool,
    pub user_channels: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scep: true,
            forwarded: true,
            user_channels: false,
        }
    }
}

pub struct Harness {
    pub app: TestApp,
    pub apple: Arc<mdm_apple::Apple>,
    pub apns: MockApns,
    pub enrollment: fakes::Enrollment,
    pub got: Inboxes,
    pub tenant: TenantId,
    pub admin: String,
    pub user_token: String,
    pub user_id: mdm_domain::UserId,
    pub topic: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(db: TestDatabase, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let push_ca = TestCa::new("Apple push CA (test)", EPOCH_2026).unwrap();
        let apns = MockApns::start(&push_ca.cert, EPOCH_2026).await.unwrap();
        let ca_file = dir.path().join("apns-ca.pem");
        std::fs::write(&ca_file, &apns.tls_ca_pem).unwrap();
        let tenant = TenantId::new();
        let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
        let (push_cert, push_key) = push_ca.push_cert(&topic, EPOCH_2026, 3650).unwrap();
        let admin = format!("mdm_admin_{}", uuid::Uuid::new_v4().simple());
        let user_token = format!("mdm_user_{}", uuid::Uuid::new_v4().simple());
        let user_id = mdm_domain::UserId::new();
        let mut tokens = HashMap::new();
        tokens.insert(
            admin.clone(),
            Grant {
                token_id: TokenId::new(),
                role: Role::Admin,
                tenant_id: Some(tenant),
                user_id: None,
            },
        );
        tokens.insert(
            user_token.clone(),
            Grant {
                token_id: TokenId::new(),
                role: Role::User,
                tenant_id: Some(tenant),
                user_id: Some(user_id),
            },
        );
        let mut push = HashMap::new();
        push.insert(
            tenant,
            PushCertificate {
                topic: topic.clone(),
                certificate_pem: String::from_utf8(push_cert.to_pem().unwrap()).unwrap(),
                private_key_pem: String::from_utf8(push_key.private_key_to_pem_pkcs8().unwrap())
                    .unwrap(),
                not_after: mdm_store::from_millis((EPOCH_2026 + 3650 * 86_400) * 1000),
            },
        );
        let enrollment = Arc::new(Mutex::new(fakes::EnrollmentState {
            ca: TestCa::new("Device identity CA (test)", EPOCH_2026 - 86_400 * 30).unwrap(),
            push,
            deny: None,
            tokens,
            gate_calls: 0,
            gate_checks: 0,
            signed: 0,
            clock: None,
        }));
        let got: Inboxes = Arc::default();
        let config = mdm_apple::Config {
            apns_url: apns.url.clone(),
            apns_ca_file: Some(ca_file),
            push_retry_base_ms: 10,
            push_retry_max_secs: 1,
            trust_forwarded_client_cert: options.forwarded,
            scep: options.scep,
            user_channels: options.user_channels,
            seen_flush_secs: 1,
            ..mdm_apple::Config::default()
        };
        let slot: Arc<Mutex<Option<Arc<mdm_apple::Apple>>>> = Arc::default();
        let (e, g, s) = (enrollment.clone(), got.clone(), slot.clone());
        let app = TestApp::spawn_on(
            db,
            |_| {},
            move |ctx| {
                let (module, apple) = mdm_apple::module(ctx, &config)?;
                *s.lock().unwrap() = Some(apple);
                Ok(vec![
                    fakes::enrollment_module(e, ctx.clock.clone()),
                    fakes::inventory_module(g.clone()),
                    fakes::dispatch_module(g),
                    module,
                ])
            },
        )
        .await;
        app.wait_until_ready().await;
        let apple = slot.lock().unwrap().clone().unwrap();
        Self {
            app,
            apple,
            apns,
            enrollment,
            got,
            tenant,
            admin,
            user_token,
            user_id,
            topic,
            http: mdm_runtime::testing::http_client(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    pub fn now(&self) -> i64 {
        self.app.clock.now().timestamp()
    }

    /// Creates an enrollment profile as the admin; answers its download URL.
    pub async fn profile_url(&self, body: serde_json::Value) -> String {
        let response = self
            .http
            .post(self.url("/api/v1/deviceManagement/appleEnrollmentProfiles"))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        body["profileUrl"].as_str().unwrap().to_owned()
    }

    /// A device of `model` enrolled through a new profile; answers it and its device id.
    pub async fn enroll(&self, model: Model, auth: AuthMode) -> (SimulatedDevice, DeviceId) {
        let url = self
            .profile_url(serde_json::json!({ "ownership": "company" }))
            .await;
        let mut device = SimulatedDevice::new(model, auth);
        device.enroll(&url, self.now()).await.unwrap();
        let id = self.device_id(&device).await;
        (device, id)
    }

    pub async fn device_id(&self, device: &SimulatedDevice) -> DeviceId {
        let udid = device.udid.clone();
        self.app
            .context
            .store
            .read(move |c| mdm_apple::store::enrollment(c, &udid))
            .await
            .unwrap()
            .unwrap()
            .device_id
    }

    /// Sends an action as dispatch would, through dispatch's outbox.
    pub async fn deliver(
        &self,
        device: DeviceId,
        kind: ActionKind,
        params: ActionParams,
    ) -> ActionId {
        let action = ActionId::new();
        let now = self.app.clock.now();
        let message = DeliverAction {
            action_id: action,
            tenant_id: self.tenant,
            device_id: device,
            family: PlatformFamily::Apple,
            kind,
            params,
            priority: kind.is_priority(),
            expires_at: now + chrono::Duration::days(7),
            requested_at: now,
        };
        let outbox = self.app.context.outbox(Service::Dispatch);
        self.app
            .context
            .store
            .write(move |c| {
                outbox.enqueue(
                    c,
                    &format!("dispatch:deliver:{action}"),
                    Some(&device.to_string()),
                    &message,
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        action
    }

    /// Waits for a report of `action` in `state`.
    pub async fn report(&self, action: ActionId, state: ActionState) -> ActionReport {
        self.wait_for(|got| match got {
            Got::Report(r) if r.action_id == action && r.state == state => Some(r.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {state} report for {action}; got {:?}",
                self.reports(action)
            )
        })
    }

    pub fn reports(&self, action: ActionId) -> Vec<ActionState> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| match g {
                Got::Report(r) if r.action_id == action => Some(r.state),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to 10 s) until `f` finds something in the messages received.
    pub async fn wait_for<T>(&self, f: impl Fn(&Got) -> Option<T>) -> Option<T> {
        for _ in 0..500 {
            if let Some(found) = self.got.lock().unwrap().iter().find_map(&f) {
                return Some(found);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Waits for the device's `n`th accepted push, then lets it poll.
    pub async fn push_and_poll(&self, device: &mut SimulatedDevice, n: usize) -> usize {
        assert!(
            self.apns
                .wait_for(&device.token_hex(), n, Duration::from_secs(10))
                .await,
            "push {n} never reached the device; pushes: {:?}",
            self.apns.pushes_to(&device.token_hex())
        );
        device.poll().await.unwrap()
    }

    /// Lets the device work through its queue (pushes aside).
    pub async fn drain(&self, device: &mut SimulatedDevice) -> usize {
        device.poll().await.unwrap()
    }

    pub fn seal_pin(&self, pin: &str) -> String {
        let sealed = self
            .app
            .context
            .secrets
            .seal(
                mdm_api::internal::adapter::UNLOCK_PIN_PURPOSE,
                pin.as_bytes(),
            )
            .unwrap();
        STANDARD.encode(sealed)
    }

    pub async fn queued(&self, device: &SimulatedDevice) -> Vec<String> {
        let udid = device.udid.clone();
        self.app
            .context
            .store
            .read(move |c| mdm_apple::store::commands_of(c, &udid))
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.request_type)
            .collect()
    }
}

/// Waits for `f` to turn true (up to 30 s: the machine may be busy).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
