//! The whole server in one process (the real enrollment, inventory and dispatch services
//! and the three platform adapters) against the vendor mocks, with helpers to enrol
//! simulated devices of each platform and to use the admin API as an admin would.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mdm_api::public::CreateToken;
use mdm_domain::{ActionId, DeviceId, Role, TenantId, UserId};
use mdm_e2e::android::{self, Hardware, MockGoogle, PushAuth, PushSubscription, Setup};
use mdm_e2e::apple::{self, AuthMode, MockApns, Model, TestCa};
use mdm_e2e::windows::{Edition, Lifecycle, MockWns, WindowsDevice};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::config::Secret;
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, ManualClock};
use mdm_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// 2026-01-01, the manual clock's start: the mock APNs' TLS and the push certificate are
/// valid ten years either side of it.
pub const EPOCH_2026: i64 = 1_767_225_600;
pub const PROJECT: &str = "mdm-e2e-project";
pub const PUSH_SECRET: &str = "e2e-push-secret-0123456789";
pub const WNS_ID: &str = "ms-app://s-1-15-2-4242";
pub const WNS_SECRET: &str = "e2e-wns-secret";
pub const WINDOWS_CERT_HEADER: &str = "X-Client-Cert";
pub const PASSWORD: &str = "correct horse battery";

/// Knobs a scenario may turn before the server starts.
pub struct Options {
    /// Milliseconds between two runs of inventory's clean-up rules.
    pub cleanup_period_ms: u64,
    /// Seconds between two runs of dispatch's expiry and PIN clean-up.
    pub maintenance_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cleanup_period_ms: 3_600_000,
            maintenance_secs: 3600,
        }
    }
}

/// A running server, its mocks, and one tenant with an admin.
pub struct World {
    pub app: TestApp,
    pub http: reqwest::Client,
    pub operator: String,
    pub tenant: TenantId,
    pub admin: String,
    pub apns: MockApns,
    pub google: MockGoogle,
    pub enterprise: String,
    pub wns: Arc<MockWns>,
    pub topic: String,
    _dir: tempfile::TempDir,
}

/// An enrolled Apple device.
pub struct AppleDevice {
    pub sim: apple::SimulatedDevice,
    pub id: DeviceId,
}

/// An enrolled Android device.
pub struct AndroidDevice {
    pub sim: android::SimulatedDevice,
    pub id: DeviceId,
}

/// An enrolled Windows device.
pub struct WinDevice {
    pub sim: WindowsDevice,
    pub id: DeviceId,
}

/// A directory user who may enrol Windows devices with a password.
#[derive(Clone)]
pub struct User {
    pub id: UserId,
    pub upn: String,
}

impl World {
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, Options::default()).await
    }

    pub async fn start_with(db: TestDatabase, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Apple: the mock APNs trusts the push CA that issues the tenant's certificate.
        let push_ca = TestCa::new("Apple push CA (e2e)", EPOCH_2026).unwrap();
        let apns = MockApns::start(&push_ca.cert, EPOCH_2026).await.unwrap();
        let ca_file = dir.path().join("apns-ca.pem");
        std::fs::write(&ca_file, &apns.tls_ca_pem).unwrap();
        let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
        let (push_cert, push_key) = push_ca.push_cert(&topic, EPOCH_2026, 3650).unwrap();

        // Google: the mock's idea of "now" is the server's manual clock.
        let clock_cell: Arc<OnceLock<ManualClock>> = Arc::new(OnceLock::new());
        let now_cell = clock_cell.clone();
        let google = MockGoogle::start(Arc::new(move || {
            now_cell
                .get()
                .map_or_else(|| ManualClock::at_epoch_2026().now(), Clock::now)
        }))
        .await
        .unwrap();
        let wns = Arc::new(MockWns::start(WNS_ID, WNS_SECRET).await.unwrap());

        let enrollment = mdm_enrollment::Config {
            password_hash_iterations: 1000,
            ..mdm_enrollment::Config::default()
        };
        let inventory = mdm_inventory::Config {
            cleanup_period_ms: options.cleanup_period_ms,
            policy_cache_secs: 0,
            autopilot_processing_secs: 300,
            ..mdm_inventory::Config::default()
        };
        let dispatch = mdm_dispatch::Config {
            policy_cache_secs: 0,
            maintenance_secs: options.maintenance_secs,
            ..mdm_dispatch::Config::default()
        };
        let apple = mdm_apple::Config {
            apns_url: apns.url.clone(),
            apns_ca_file: Some(ca_file),
            push_retry_base_ms: 10,
            push_retry_max_secs: 1,
            trust_forwarded_client_cert: true,
            scep: true,
            seen_flush_secs: 1,
            ..mdm_apple::Config::default()
        };
        let mut android = mdm_android::Config {
            api_base_url: google.url(),
            request_timeout_secs: 2,
            worker_poll_ms: 50,
            seen_flush_secs: 1,
            ..mdm_android::Config::default()
        };
        android.pubsub.token = Some(Secret::new(PUSH_SECRET));
        let windows = mdm_windows::Config {
            client_cert_header: Some(WINDOWS_CERT_HEADER.into()),
            seen_flush_secs: 1,
            replica_sync_ms: 200,
            wns_retry_base_ms: 20,
            wns_token_url: wns.token_url(),
            wns_client_id: Some(WNS_ID.into()),
            wns_client_secret: Some(Secret::new(WNS_SECRET)),
            push_pfn: Some("Contoso.MDM_8wekyb3d8bbwe".into()),
            wns_channel_hosts: vec!["127.0.0.1".into()],
            wns_allow_http: true,
            ..mdm_windows::Config::default()
        };

        // The same modules, in the same order, as the binary builds them.
        let app = TestApp::spawn_on(
            db,
            // The simulators' and mocks' HTTP clients keep idle connections for a while;
            // a server that drops them after a second races with their next request.
            |config| config.server.keep_alive_secs = 60,
            move |ctx| {
                Ok(vec![
                    mdm_enrollment::module(ctx, &enrollment),
                    mdm_inventory::module(ctx, &inventory),
                    mdm_dispatch::module(ctx, &dispatch),
                    mdm_apple::module(ctx, &apple)?.0,
                    mdm_android::module(ctx, &android)?,
                    mdm_windows::module(ctx, &windows)?,
                ])
            },
        )
        .await;
        let _ = clock_cell.set(app.clock.clone());
        google.push_to(PushSubscription {
            endpoint: format!("{}{}", app.url, mdm_android::PUBSUB_PATH),
            auth: PushAuth::QueryToken(PUSH_SECRET.into()),
            subscription: format!("projects/{PROJECT}/subscriptions/amapi-push"),
        });
        app.wait_until_ready().await;

        // The first operator token comes from the command line, as in the README.
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
        // Never reuse a connection the server may be closing.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let mut world = Self {
            app,
            http,
            operator,
            tenant: TenantId::new(),
            admin: String::new(),
            apns,
            enterprise: google.create_enterprise(PROJECT),
            google,
            wns,
            topic,
            _dir: dir,
        };

        // The operator creates the tenant and its admin.
        let (status, tenant) = world
            .call_as(
                &world.operator.clone(),
                Method::POST,
                "/api/v1/tenants",
                Some(json!({ "displayName": "Contoso" })),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        world.tenant = tenant["id"].as_str().unwrap().parse().unwrap();
        let (status, token) = world
            .call_as(
                &world.operator.clone(),
                Method::POST,
                "/api/v1/tokens",
                Some(json!({ "role": "admin", "tenantId": world.tenant, "description": "e2e admin" })),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        world.admin = token["secret"].as_str().unwrap().to_owned();

        // The admin sets up the tenant: authority and each platform's prerequisites.
        world.set_authority("standalone").await;
        let (status, body) = world
            .put(
                "/api/v1/deviceManagement/applePushNotificationCertificate",
                json!({
                    "certificate": String::from_utf8(push_cert.to_pem().unwrap()).unwrap(),
                    "privateKey": String::from_utf8(push_key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
                    "dataSharingConsent": true,
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["topicIdentifier"], world.topic);
        let key = world.google.service_account(PROJECT).unwrap();
        let (status, body) = world
            .put(
                "/api/v1/deviceManagement/androidEnterprise",
                json!({
                    "enterpriseName": world.enterprise,
                    "serviceAccountKey": key,
                    "pubsubTopic": format!("projects/{PROJECT}/topics/amapi"),
                    "dataSharingConsent": true,
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = world
            .put(
                "/api/v1/deviceManagement/windowsEnrollment",
                json!({ "automaticEnrollment": true, "authenticationPolicy": "OnPremise" }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        world
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.app.clock.now()
    }

    /// Moves the server's clock (and with it the mocks').
    pub fn advance(&self, by: chrono::Duration) {
        self.app.clock.advance(by);
    }

    // ---- the admin API ----

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
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

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.admin, method, path, body).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn set_authority(&self, authority: &str) {
        let (status, body) = self
            .put(
                "/api/v1/organization/mdmAuthority",
                json!({ "mobileDeviceManagementAuthority": authority }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mobileDeviceManagementAuthority"], authority);
    }

    /// A licensed directory user with an enrollment password.
    pub async fn user(&self, name: &str) -> User {
        let upn = format!("{name}@contoso.example");
        let (status, body) = self
            .post(
                "/api/v1/users",
                json!({
                    "userPrincipalName": upn,
                    "displayName": name,
                    "password": PASSWORD,
                    "licensed": true,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        User {
            id: body["id"].as_str().unwrap().parse().unwrap(),
            upn,
        }
    }

    /// Requests an action on a device: answers the HTTP answer as is.
    pub async fn try_act(
        &self,
        device: DeviceId,
        action: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/deviceManagement/managedDevices/{device}/{action}"),
            body,
        )
        .await
    }

    /// Requests an action that must be accepted; answers its id and the answer's body.
    pub async fn act(&self, device: DeviceId, action: &str, body: Value) -> (ActionId, Value) {
        let (status, answer) = self.try_act(device, action, body).await;
        assert_eq!(status, 202, "{action} on {device}: {answer}");
        (answer["id"].as_str().unwrap().parse().unwrap(), answer)
    }

    /// The device as the admin sees it (`None` once it is gone: 404).
    pub async fn device(&self, id: DeviceId) -> Option<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/deviceManagement/managedDevices/{id}"))
            .await;
        match status.as_u16() {
            200 => Some(body),
            404 => None,
            other => panic!("reading {id} answered {other}: {body}"),
        }
    }

    /// The device's action results as the admin sees them.
    pub async fn results(&self, id: DeviceId) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/api/v1/deviceManagement/managedDevices/{id}/deviceActionResults"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().cloned().unwrap_or_default()
    }

    /// The admin's view of one action (from the device's action results).
    pub async fn result(&self, device: DeviceId, action: ActionId) -> Option<Value> {
        let action = action.to_string();
        self.results(device)
            .await
            .into_iter()
            .find(|r| r["id"].as_str() == Some(action.as_str()))
    }

    pub async fn action_state(&self, device: DeviceId, action: ActionId) -> String {
        self.result(device, action)
            .await
            .map(|r| r["actionState"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Waits until the admin sees `action` in `state`; answers the result.
    pub async fn wait_action(&self, device: DeviceId, action: ActionId, state: &str) -> Value {
        let mut last = None;
        for _ in 0..400 {
            last = self.result(device, action).await;
            if last.as_ref().is_some_and(|r| r["actionState"] == state) {
                return last.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{action} on {device} never became {state}; last seen {last:?}");
    }

    /// Waits until the device's record satisfies `check` (or is gone, if `check` accepts
    /// `None`).
    pub async fn wait_device(
        &self,
        id: DeviceId,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let mut last = None;
        for _ in 0..400 {
            last = self.device(id).await;
            if check(last.as_ref()) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{id} never reached the expected state; last seen {last:?}");
    }

    /// Every device of the tenant in the admin's list (all pages).
    pub async fn devices(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut path = "/api/v1/deviceManagement/managedDevices?top=100".to_owned();
        loop {
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["value"].as_array().cloned().unwrap_or_default());
            match body["nextLink"].as_str() {
                Some(next) => {
                    path = next.strip_prefix(&self.app.url).unwrap_or(next).to_owned();
                }
                None => return all,
            }
        }
    }

    /// Waits until inventory lists a device with this serial number; answers its id.
    pub async fn wait_serial(&self, serial: &str) -> DeviceId {
        for _ in 0..400 {
            let found = self
                .devices()
                .await
                .into_iter()
                .find(|d| d["serialNumber"].as_str() == Some(serial));
            if let Some(device) = found {
                return device["id"].as_str().unwrap().parse().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("inventory never listed the device with serial {serial}");
    }

    /// Starts a bulk action; answers the job's id.
    pub async fn bulk(&self, action: &str, devices: &[DeviceId], parameters: Value) -> String {
        let (status, job) = self
            .post(
                "/api/v1/deviceManagement/managedDevices/bulkAction",
                json!({ "action": action, "deviceIds": devices, "parameters": parameters }),
            )
            .await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["totalDevices"], devices.len());
        job["id"].as_str().unwrap().to_owned()
    }

    /// Waits until every device of a bulk job was checked (accepted or refused).
    pub async fn bulk_checked(&self, job: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            let (status, view) = self
                .get(&format!(
                    "/api/v1/deviceManagement/bulkActions/{job}?top=1000"
                ))
                .await;
            assert_eq!(status, 200, "{view}");
            if view["pending"] == 0 {
                return view;
            }
            last = view;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("bulk action {job} never checked every device: {last}");
    }

    /// The bulk job's action id for a device, or its refusal code.
    pub fn bulk_outcome(view: &Value, device: DeviceId) -> Result<ActionId, String> {
        let entry = view["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deviceId"] == device.to_string())
            .unwrap_or_else(|| panic!("{device} is not in the job: {view}"));
        match entry["actionId"].as_str() {
            Some(id) if entry["outcome"] == "accepted" => Ok(id.parse().unwrap()),
            _ => Err(entry["refusalCode"].as_str().unwrap_or_default().to_owned()),
        }
    }

    /// Waits until the Managed Desktop entry `registration` names `device`.
    pub async fn wait_until_linked(&self, registration: &str, device: DeviceId) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            let (status, page) = self
                .get("/api/v1/deviceManagement/managedDesktopDevices")
                .await;
            assert_eq!(status, 200, "{page}");
            if let Some(entry) = page["value"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == registration)
            {
                if entry["managedDeviceId"] == device.to_string() {
                    return entry.clone();
                }
                last = entry.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("registration {registration} never named {device}: {last}");
    }

    // ---- Apple ----

    /// Enrols a simulated Apple device through a profile the admin creates, and lets it
    /// answer the first inventory queries.
    pub async fn enrol_apple(
        &self,
        model: Model,
        ownership: &str,
        user: Option<&User>,
    ) -> AppleDevice {
        let mut body = json!({ "ownership": ownership });
        if let Some(user) = user {
            body["userId"] = json!(user.id);
        }
        let (status, created) = self
            .post("/api/v1/deviceManagement/appleEnrollmentProfiles", body)
            .await;
        assert_eq!(status, 201, "{created}");
        let url = created["profileUrl"].as_str().unwrap().to_owned();
        let mut sim = apple::SimulatedDevice::new(
            model,
            AuthMode::Forwarded {
                header: "Client-Cert".into(),
                rfc9440: true,
            },
        );
        sim.enroll(&url, self.now().timestamp()).await.unwrap();
        let id = self.wait_serial(&sim.serial.clone()).await;
        sim.poll().await.unwrap();
        AppleDevice { sim, id }
    }

    /// Waits for the `n`th push to the device at the mock APNs.
    pub async fn apple_pushed(&self, device: &AppleDevice, n: usize) {
        assert!(
            self.apns
                .wait_for(&device.sim.token_hex(), n, Duration::from_secs(10))
                .await,
            "push {n} never reached {}; pushes: {:?}",
            device.id,
            self.apns.pushes_to(&device.sim.token_hex())
        );
    }

    /// The device answers pushes until `action` is in a final state at dispatch.
    pub async fn apple_until_final(&self, device: &mut AppleDevice, action: ActionId) -> Value {
        for _ in 0..200 {
            device.sim.poll().await.unwrap();
            if let Some(result) = self.result(device.id, action).await {
                let state = result["actionState"].as_str().unwrap_or_default();
                if ["done", "failed", "notSupported", "canceled", "expired"].contains(&state) {
                    return result;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{action} never ended on {}", device.id);
    }

    // ---- Android ----

    /// Enrols a simulated Android device with a token the admin creates for `profile`.
    pub async fn enrol_android(&self, profile: &str, user: Option<&User>) -> AndroidDevice {
        let mut body = json!({ "profile": profile });
        if let Some(user) = user {
            body["userId"] = json!(user.id);
        }
        let (status, token) = self.post(mdm_android::TOKENS_PATH, body).await;
        assert_eq!(status, 201, "{token}");
        let setup = if profile == "personalWorkProfile" {
            Setup::PersonalDevice
        } else {
            Setup::CompanyDevice
        };
        let hardware = Hardware::pixel();
        let serial = hardware.serial_number.clone();
        let sim = self
            .google
            .enroll(token["value"].as_str().unwrap(), setup, hardware)
            .await
            .unwrap();
        let id = self.wait_serial(&serial).await;
        AndroidDevice { sim, id }
    }

    /// The commands AMAPI was asked to issue to the device, by type.
    pub fn android_commands(&self, device: &AndroidDevice) -> Vec<Value> {
        self.google
            .requests_to("issueCommand")
            .into_iter()
            .filter(|r| r.path.contains(device.sim.name()))
            .map(|r| r.body)
            .collect()
    }

    // ---- Windows ----

    /// Enrols a simulated Windows device as `user`, with a WNS channel.
    pub async fn enrol_windows(&self, edition: Edition, user: &User) -> WinDevice {
        self.enrol_windows_build(edition, user, None).await
    }

    /// Enrols a simulated Windows device of a given build (the simulator's own otherwise).
    pub async fn enrol_windows_build(
        &self,
        edition: Edition,
        user: &User,
        build: Option<u32>,
    ) -> WinDevice {
        let mut sim = self.windows_device(edition);
        if let Some(build) = build {
            sim.build = build;
        }
        self.enrol_windows_sim(sim, user).await
    }

    /// A simulated Windows device of this server, not yet enrolled.
    pub fn windows_device(&self, edition: Edition) -> WindowsDevice {
        WindowsDevice::new(&self.app.url, WINDOWS_CERT_HEADER, edition).unwrap()
    }

    /// Enrols a given simulated Windows device as `user`, with a WNS channel.
    pub async fn enrol_windows_sim(&self, mut sim: WindowsDevice, user: &User) -> WinDevice {
        sim.enroll(&user.upn, PASSWORD).await.unwrap();
        if sim.enrollment.as_ref().unwrap().pfn.is_some() {
            sim.channel = Some(self.wns.new_channel());
        }
        let id: DeviceId = sim.enrollment.as_ref().unwrap().ent_dm_id.parse().unwrap();
        sim.sync().await.unwrap();
        self.wait_device(id, |d| d.is_some()).await;
        WinDevice { sim, id }
    }

    /// The device holds sessions until `action` is final at dispatch; answers the
    /// LocURIs executed on the way and the action's result.
    pub async fn windows_until_final(
        &self,
        device: &mut WinDevice,
        action: ActionId,
    ) -> (Vec<(String, String, u16)>, Value) {
        let mut executed = Vec::new();
        for _ in 0..100 {
            if let Some(result) = self.result(device.id, action).await {
                let state = result["actionState"].as_str().unwrap_or_default();
                if ["done", "failed", "notSupported", "canceled", "expired"].contains(&state) {
                    return (executed, result);
                }
            }
            if device.sim.lifecycle == Lifecycle::Enrolled {
                executed.extend(self.windows_session(device).await);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{action} never ended on {}", device.id);
    }

    /// WNS notifications sent to the device's channel.
    pub fn wns_pushes(&self, device: &WinDevice) -> usize {
        device
            .sim
            .channel
            .as_deref()
            .map_or(0, |uri| self.wns.notifications(uri))
    }

    /// Waits for the `n`th WNS notification to the device.
    pub async fn windows_pushed(&self, device: &WinDevice, n: usize) {
        let uri = device.sim.channel.clone().unwrap();
        assert!(
            self.wns.wait_for(&uri, n, Duration::from_secs(10)).await,
            "WNS push {n} never reached {}",
            device.id
        );
    }

    /// Waits until the action left `pending` (the adapter has it), or ended.
    pub async fn wait_handed_over(&self, device: DeviceId, action: ActionId) -> String {
        for _ in 0..400 {
            let state = self.action_state(device, action).await;
            if !state.is_empty() && state != "pending" {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{action} on {device} stayed pending");
    }

    /// The LocURIs a session executed, leaving out the inventory reads of every session.
    pub async fn windows_session(&self, device: &mut WinDevice) -> Vec<(String, String, u16)> {
        let report = device.sim.sync().await.unwrap();
        report
            .executed
            .into_iter()
            .filter(|e| {
                !e.loc_uri.contains("DevDetail")
                    && !e.loc_uri.contains("DeviceStatus")
                    && !e.loc_uri.ends_with("ChannelURI")
            })
            .map(|e| (e.verb, e.loc_uri, e.status))
            .collect()
    }
}
