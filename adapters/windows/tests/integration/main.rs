//! The Windows adapter in a running process, on both backends, with small fakes of the
//! enrollment service (users, gate, a real openssl CA), inventory and dispatch (which
//! takes actions through a public route shaped like the admin API and delivers them
//! through its outbox), the mock WNS and simulated Windows devices of `mdm-e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod enrollment;
mod fakes;
mod push;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use mdm_api::internal::enrollment::WindowsAuthPolicy;
use mdm_e2e::windows::{Edition, MockWns, WindowsDevice};
use mdm_runtime::config::Secret;
use mdm_runtime::testing::TestApp;
use mdm_store::testing::TestDatabase;
use mdm_windows::{Adapter, Config};

pub use fakes::{Fixture, Recorded};

pub const CERT_HEADER: &str = "X-Client-Cert";
pub const WNS_ID: &str = "ms-app://s-1-15-2-1234";
pub const WNS_SECRET: &str = "wns-secret";
pub const PASSWORD: &str = "correct horse";

/// A process running the Windows adapter and its fakes.
pub struct Harness {
    pub app: TestApp,
    pub fixture: Arc<Fixture>,
    pub adapter: Arc<Adapter>,
    pub wns: Arc<MockWns>,
    pub http: reqwest::Client,
}

/// Knobs of a harness.
#[derive(Clone)]
pub struct Options {
    pub push: bool,
    pub max_commands_per_message: usize,
    pub max_message_bytes: usize,
    pub wns_secret: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            push: true,
            max_commands_per_message: 16,
            max_message_bytes: 512 * 1024,
            wns_secret: WNS_SECRET.into(),
        }
    }
}

impl Harness {
    pub async fn start(db: TestDatabase) -> Self {
        Self::with(db, Options::default()).await
    }

    pub async fn with(db: TestDatabase, options: Options) -> Self {
        let wns = Arc::new(MockWns::start(WNS_ID, WNS_SECRET).await.unwrap());
        let fixture = Arc::new(Fixture::new());
        let mut config = Config {
            client_cert_header: Some(CERT_HEADER.into()),
            seen_flush_secs: 1,
            replica_sync_ms: 200,
            max_commands_per_message: options.max_commands_per_message,
            max_message_bytes: options.max_message_bytes,
            wns_retry_base_ms: 20,
            ..Config::default()
        };
        if options.push {
            config.wns_token_url = wns.token_url();
            config.wns_client_id = Some(WNS_ID.into());
            config.wns_client_secret = Some(Secret::new(options.wns_secret.clone()));
            config.push_pfn = Some("Contoso.MDM_8wekyb3d8bbwe".into());
            config.wns_channel_hosts = vec!["127.0.0.1".into()];
            config.wns_allow_http = true;
        }
        let slot: Arc<std::sync::Mutex<Option<Arc<Adapter>>>> = Arc::default();
        let built = slot.clone();
        let fx = fixture.clone();
        let app = TestApp::spawn_on(
            db,
            |_| {},
            move |ctx| {
                let adapter = Arc::new(Adapter::new(ctx, &config)?);
                *built.lock().unwrap() = Some(adapter.clone());
                Ok(vec![
                    fakes::enrollment(ctx, fx.clone()),
                    fakes::inventory(fx.clone()),
                    fakes::dispatch(ctx, fx.clone()),
                    mdm_windows::module_for(adapter),
                ])
            },
        )
        .await;
        app.wait_until_ready().await;
        let adapter = slot.lock().unwrap().clone().unwrap();
        Self {
            app,
            fixture,
            adapter,
            wns,
            http: mdm_runtime::testing::http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    /// A simulated device of this server (not yet enrolled).
    pub fn device(&self, edition: Edition) -> WindowsDevice {
        WindowsDevice::new(&self.app.url, CERT_HEADER, edition).unwrap()
    }

    /// A user of the fixture tenant.
    pub fn user(&self, upn: &str) -> String {
        self.fixture.add_user(upn, PASSWORD);
        upn.to_owned()
    }

    /// An enrolled device with a push channel.
    pub async fn enrolled(&self, edition: Edition) -> WindowsDevice {
        let mut device = self.device(edition);
        let upn = self.user(&format!(
            "user-{}@contoso.com",
            device.device_id.to_lowercase()
        ));
        device.enroll(&upn, PASSWORD).await.unwrap();
        if device.enrollment.as_ref().unwrap().pfn.is_some() {
            device.channel = Some(self.wns.new_channel());
        }
        device
    }

    /// The inventory's DeviceId of an enrolled simulated device (DMClient EntDMID).
    pub fn device_id(device: &WindowsDevice) -> mdm_domain::DeviceId {
        device
            .enrollment
            .as_ref()
            .unwrap()
            .ent_dm_id
            .parse()
            .unwrap()
    }

    /// Asks the fake dispatch to act (as the admin API would).
    pub async fn act(
        &self,
        device: &WindowsDevice,
        action: &str,
        params: serde_json::Value,
    ) -> mdm_domain::ActionId {
        let response = self
            .http
            .post(self.url(&format!(
                "/api/v1/deviceManagement/managedDevices/{}/{action}",
                Self::device_id(device)
            )))
            .json(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until the action reached `state` at dispatch; answers its last report.
    pub async fn action_state(
        &self,
        action: mdm_domain::ActionId,
        state: mdm_domain::ActionState,
    ) -> mdm_api::internal::dispatch::ActionReport {
        let fixture = self.fixture.clone();
        wait_for(move || fixture.report(action, state)).await
    }

    /// Waits until the adapter has the queued action (the relay delivered it).
    pub async fn queued(&self, action: mdm_domain::ActionId) {
        self.action_state(action, mdm_domain::ActionState::Sent)
            .await;
    }
}

/// Polls `check` until it answers `Some`, for at most 20 seconds.
pub async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..800 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting");
}

/// The policy a tenant's Windows settings announce.
pub fn set_policy(harness: &Harness, policy: WindowsAuthPolicy) {
    harness.fixture.state.lock().unwrap().settings.auth_policy = policy;
}
