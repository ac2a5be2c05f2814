//! Typed configuration of the runtime: listeners, database, secrets, service URLs, the
//! outbox and logging. Services and adapters add their own sections; the `mdm` binary
//! composes them into one file.

mod load;
mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use load::{ConfigError, ENV_PREFIX, load};
pub use secret::Secret;

/// The runtime's part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub security: SecurityConfig,
    pub services: ServicesConfig,
    pub outbox: OutboxConfig,
    pub log: LogConfig,
}

impl RuntimeConfig {
    /// The database URL: the configured one, or SQLite under the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("mdm.sqlite3").display()),
        }
    }
}

/// The default data directory, `./data`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `[server]`: the listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The public listener: admin API, device endpoints, health and metrics.
    pub listen: String,
    /// The internal listener: service-to-service APIs, authenticated with the service
    /// credential. Keep it on loopback or a private network.
    pub internal_listen: String,
    /// The URL at which devices and admins reach the public listener, used in enrollment
    /// profiles and discovery answers. Defaults to the listen address.
    pub public_url: Option<String>,
    /// HTTP worker threads per listener; 0 means one per CPU core.
    pub workers: usize,
    /// The largest JSON request body accepted, in bytes.
    pub json_limit_bytes: usize,
    /// Seconds an idle client connection stays open. At shutdown, idle connections are
    /// waited for at most this long.
    pub keep_alive_secs: u64,
    /// Seconds that requests in flight get to finish once shutdown begins.
    pub shutdown_timeout_secs: u64,
    /// Seconds between readiness turning 503 and the listeners closing, so that load
    /// balancers stop sending new requests first.
    pub drain_delay_secs: u64,
    /// Serve the public listener over TLS.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            internal_listen: "127.0.0.1:8081".into(),
            public_url: None,
            workers: 0,
            json_limit_bytes: 256 * 1024,
            keep_alive_secs: 5,
            shutdown_timeout_secs: 30,
            drain_delay_secs: 0,
            tls: None,
        }
    }
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db` or `sqlite:<path>`; SQLite under the data
    /// directory when absent.
    pub url: Option<Secret>,
    /// Pool size (on SQLite: readers; writes share one connection).
    pub max_connections: u32,
    /// Seconds a request waits for a free connection.
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations when the server starts. Turn off when a migration job
    /// runs them (`mdm migrate`); the server then stays unready until they are applied.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            acquire_timeout_secs: 10,
            migrate_on_start: true,
        }
    }
}

impl DatabaseConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_secs)
    }
}

/// `[security]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Base64 of 32 random bytes: the key that encrypts secrets at rest (push-certificate
    /// keys, service-account keys, the CA key, unlock PINs). Generated into the data
    /// directory when absent; every replica must share the same key.
    pub secret_key: Option<Secret>,
    /// The credential of the internal APIs. Generated into the data directory when
    /// absent; required when services run in separate processes.
    pub service_token: Option<Secret>,
    /// Seconds a verified API token stays cached (a revoked token works at most this long).
    pub token_cache_secs: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            secret_key: None,
            service_token: None,
            token_cache_secs: 30,
        }
    }
}

/// `[services]`: the internal base URL of each service that does not run in this
/// process (`http://inventory:8081`). Services in this process are reached through its
/// own internal listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    pub enrollment: Option<String>,
    pub inventory: Option<String>,
    pub dispatch: Option<String>,
    pub apple: Option<String>,
    pub android: Option<String>,
    pub windows: Option<String>,
}

impl ServicesConfig {
    pub fn get(&self, service: mdm_api::Service) -> Option<&str> {
        use mdm_api::Service::*;
        match service {
            Enrollment => self.enrollment.as_deref(),
            Inventory => self.inventory.as_deref(),
            Dispatch => self.dispatch.as_deref(),
            Apple => self.apple.as_deref(),
            Android => self.android.as_deref(),
            Windows => self.windows.as_deref(),
        }
    }
}

/// `[outbox]`: delivery of messages between services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Run the relay in this process. Turn it off only where another process relays the
    /// messages of the same database.
    pub relay: bool,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// The first retry delay in milliseconds; it doubles with every attempt.
    pub base_delay_ms: u64,
    /// The longest retry delay, in seconds.
    pub max_delay_secs: u64,
    /// How often the relay looks for due messages when idle, in milliseconds.
    pub poll_interval_ms: u64,
    /// Messages claimed at once.
    pub batch_size: u32,
    /// Messages per delivery request.
    pub messages_per_request: usize,
    /// Delivery requests in flight at once.
    pub concurrency: usize,
    /// Seconds a claimed message is reserved for one relay (longer than a delivery).
    pub lease_secs: u64,
    /// Seconds a delivery request may take.
    pub request_timeout_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay: true,
            max_attempts: 12,
            base_delay_ms: 500,
            max_delay_secs: 900,
            poll_interval_ms: 100,
            batch_size: 1000,
            messages_per_request: 250,
            concurrency: 4,
            lease_secs: 60,
            request_timeout_secs: 20,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (one object per line), `pretty`, or `auto`: pretty on a terminal, JSON
    /// otherwise.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,mdm_apple=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// Reads a secret from `configured`, or from `file` under the data directory, creating
/// it with `generate` (readable by the owner only) when neither exists.
pub fn secret_or_file(
    configured: Option<&Secret>,
    file: &Path,
    generate: impl FnOnce() -> String,
) -> Result<Secret, ConfigError> {
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Secret::new(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = generate();
            write_private(file, &value).map_err(|source| ConfigError::Read {
                path: file.display().to_string(),
                source,
            })?;
            tracing::info!(file = %file.display(), "generated a secret (it is not logged)");
            Ok(Secret::new(value))
        }
        Err(source) => Err(ConfigError::Read {
            path: file.display().to_string(),
            source,
        }),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
