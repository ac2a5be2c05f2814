//! A whole process for one test: its own database, free ports, a manual clock, fast
//! outbox retries. Available with the `testing` feature.

use std::sync::Arc;
use std::time::Duration;

use mdm_api::Service;
use mdm_store::testing::{TestBackend, TestDatabase};
use tokio::task::JoinHandle;

use crate::clock::ManualClock;
use crate::config::{OutboxConfig, RuntimeConfig, Secret};
use crate::crypto::{SecretBox, random_token};
use crate::server::{Application, Context, Module};
use crate::shutdown::Shutdown;

/// A client for talking to test servers. It drops idle connections after 0.5 s, well
/// before the servers' 5 s keep-alive closes them: a client that keeps them longer (the
/// default is 90 s) sometimes sends a request on a connection at the moment the server
/// closes it, and a POST is not retried (`IncompleteMessage`).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("no HTTP client: {e}"))
}

/// The configuration tests start from: loopback on free ports, one worker, quick outbox.
pub fn test_config(database_url: &str, data_dir: &std::path::Path) -> RuntimeConfig {
    let mut config = RuntimeConfig {
        data_dir: data_dir.to_owned(),
        ..RuntimeConfig::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.server.internal_listen = "127.0.0.1:0".into();
    config.server.workers = 1;
    config.server.shutdown_timeout_secs = 10;
    // As in production, and far above every test client's pool idle time (0.8 s at most):
    // a client starved long enough between reading an answer and sending its next request
    // on that connection otherwise met the server's keep-alive timer (2 s used to leave a
    // margin that a loaded 2-core machine overran: "connection reset" on an Apple device's
    // SCEP request). Clients close their idle connections, so a stopping server does not
    // wait on them.
    config.server.keep_alive_secs = 5;
    config.database.url = Some(Secret::new(database_url));
    config.database.max_connections = 4;
    config.security.secret_key = Some(Secret::new(SecretBox::generate_key()));
    config.security.service_token = Some(Secret::new(random_token::<32>()));
    config.security.token_cache_secs = 0;
    config.outbox = OutboxConfig {
        poll_interval_ms: 20,
        base_delay_ms: 50,
        max_delay_secs: 2,
        max_attempts: 5,
        request_timeout_secs: 5,
        ..OutboxConfig::default()
    };
    config
}

/// A running process in a test.
pub struct TestApp {
    /// `http://127.0.0.1:<port>` of the public listener (`https` with TLS).
    pub url: String,
    /// `http://127.0.0.1:<port>` of the internal listener.
    pub internal_url: String,
    pub clock: ManualClock,
    pub context: Context,
    shutdown: Shutdown,
    running: Option<JoinHandle<anyhow::Result<()>>>,
    db: Option<TestDatabase>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts the modules built by `modules` for all services on a fresh, migrated
    /// database on `backend`; `None` when that backend is not configured for tests.
    pub async fn spawn<F>(backend: TestBackend, modules: F) -> Option<Self>
    where
        F: FnOnce(&Context) -> anyhow::Result<Vec<Module>>,
    {
        let db = TestDatabase::new(backend).await?;
        Some(Self::spawn_on(db, |_| {}, modules).await)
    }

    /// Starts on a given database, after `adjust` has changed the test configuration.
    pub async fn spawn_on<F>(
        db: TestDatabase,
        adjust: impl FnOnce(&mut RuntimeConfig),
        modules: F,
    ) -> Self
    where
        F: FnOnce(&Context) -> anyhow::Result<Vec<Module>>,
    {
        let data_dir =
            tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let mut config = test_config(db.url(), data_dir.path());
        adjust(&mut config);
        let clock = ManualClock::at_epoch_2026();
        let app = Application::build(config, Arc::new(clock.clone()), &Service::ALL, modules)
            .unwrap_or_else(|e| panic!("the test app did not build: {e:#}"));
        let url = app.context().public_url.clone();
        let internal_url = format!("http://{}", app.internal_addr());
        let context = app.context().clone();
        let shutdown = app.shutdown_handle();
        let running = tokio::spawn(app.run());
        let test_app = Self {
            url,
            internal_url,
            clock,
            context,
            shutdown,
            running: Some(running),
            db: Some(db),
            _data_dir: data_dir,
        };
        test_app.wait_until_listening().await;
        test_app
    }

    async fn wait_until_listening(&self) {
        let address = self.url.split("://").nth(1).unwrap_or_default().to_owned();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the test app did not start listening");
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_until_ready(&self) {
        let client = http_client();
        for _ in 0..400 {
            let ready = client.get(format!("{}/readyz", self.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the test app did not become ready");
    }

    /// The test's database.
    pub fn db(&self) -> &TestDatabase {
        self.db
            .as_ref()
            .unwrap_or_else(|| unreachable!("the database lives as long as the app"))
    }

    /// Begins an orderly shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Ends the drain delay of a shutdown begun (as a second SIGTERM does).
    pub fn hurry_shutdown(&self) {
        self.shutdown.hurry();
    }

    /// Shuts down and waits for the process to stop; answers its database (to start
    /// another process on it).
    pub async fn stop(mut self) -> TestDatabase {
        self.shutdown.trigger();
        if let Some(running) = self.running.take() {
            match tokio::time::timeout(Duration::from_secs(30), running).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("the test app failed: {e:#}"),
                Ok(Err(e)) => panic!("the test app panicked: {e}"),
                Err(_) => panic!("the test app did not stop within 30 s"),
            }
        }
        self.db
            .take()
            .unwrap_or_else(|| unreachable!("the database lives as long as the app"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
