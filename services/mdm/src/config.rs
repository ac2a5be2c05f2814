//! The whole configuration file: the runtime's sections plus one per service and adapter.

use std::path::{Path, PathBuf};

use mdm_runtime::config::{
    ConfigError, DatabaseConfig, LogConfig, OutboxConfig, RuntimeConfig, SecurityConfig,
    ServerConfig, ServicesConfig, default_data_dir,
};
use serde::Deserialize;

/// `mdm.toml`. Every key can also be set from the environment: `MDM_SERVER__LISTEN`,
/// `MDM_DATABASE__URL`, ... (see the README).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdmConfig {
    /// Where the embedded database and generated secrets live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub services: ServicesConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub enrollment: mdm_enrollment::Config,
    #[serde(default)]
    pub inventory: mdm_inventory::Config,
    #[serde(default)]
    pub dispatch: mdm_dispatch::Config,
    #[serde(default)]
    pub apple: mdm_apple::Config,
    #[serde(default)]
    pub android: mdm_android::Config,
    #[serde(default)]
    pub windows: mdm_windows::Config,
}

impl MdmConfig {
    /// Reads `file` (when given) and the `MDM_` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        mdm_runtime::config::load(file, std::env::vars())
    }

    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            data_dir: self.data_dir.clone(),
            server: self.server.clone(),
            database: self.database.clone(),
            security: self.security.clone(),
            services: self.services.clone(),
            outbox: self.outbox.clone(),
            log: self.log.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_means_sqlite_under_data_on_port_8080() {
        let config: MdmConfig = mdm_runtime::config::load(None, Vec::new()).unwrap();
        let runtime = config.runtime();
        assert_eq!(runtime.database_url(), "sqlite://data/mdm.sqlite3");
        assert_eq!(runtime.server.listen, "127.0.0.1:8080");
        assert_eq!(runtime.server.internal_listen, "127.0.0.1:8081");
        assert!(runtime.server.tls.is_none());
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/mdm.example.toml");
        let config: MdmConfig = mdm_runtime::config::load(Some(&example), Vec::new()).unwrap();
        assert_eq!(config.runtime().database_url(), "sqlite://data/mdm.sqlite3");
    }
}
