//! The admin command line: the public API with a token, for people and scripts.
//!
//! Human output by default, `--output json` for scripts. Exit codes: 0 done, 1 failed,
//! 2 usage, 3 not found, 4 refused (not allowed, or invalid), 5 no valid token or not
//! permitted, 6 the server is unreachable or failing.

mod bulk;
mod client;
mod devices;
mod output;
mod settings;

use clap::{Args, Subcommand};
use mdm_domain::TenantId;

pub use client::{ApiClient, CliError};
pub use output::{Format, Out};

/// How to reach the API.
#[derive(Args, Debug, Clone)]
pub struct Api {
    /// The server's public URL.
    #[arg(
        long,
        global = true,
        env = "MDM_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// An API token (`mdm tokens create` prints one).
    #[arg(long, global = true, env = "MDM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For operator tokens: the tenant to act in.
    #[arg(long, global = true, env = "MDM_TENANT")]
    pub tenant: Option<TenantId>,
    /// `human` or `json`.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub output: Format,
}

impl Api {
    pub fn client(&self) -> Result<ApiClient, CliError> {
        ApiClient::new(&self.server, self.token.as_deref(), self.tenant)
    }

    pub fn out(&self) -> Out {
        Out {
            format: self.output,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ApiCommand {
    /// Managed devices and the actions on them.
    #[command(subcommand)]
    Devices(devices::Command),
    /// One action on many devices, with a progress bar until every device is checked.
    Bulk(bulk::Args),
    /// The tenant's device actions, newest first.
    Actions(devices::ActionsArgs),
    /// The clean-up rule for devices that stopped checking in.
    #[command(subcommand)]
    Cleanup(settings::CleanupCommand),
    /// The tenant's MDM authority.
    #[command(subcommand)]
    Authority(settings::AuthorityCommand),
}

pub async fn run(api: &Api, command: ApiCommand) -> Result<(), CliError> {
    let client = api.client()?;
    let out = api.out();
    match command {
        ApiCommand::Devices(command) => devices::run(&client, &out, command).await,
        ApiCommand::Bulk(args) => bulk::run(&client, &out, args).await,
        ApiCommand::Actions(args) => devices::actions(&client, &out, args).await,
        ApiCommand::Cleanup(command) => settings::cleanup(&client, &out, command).await,
        ApiCommand::Authority(command) => settings::authority(&client, &out, command).await,
    }
}

pub use settings::{TokensViaApi, tokens_via_api};
