//! `mdm`: the device management server and its command line.

mod cli;
mod config;
mod demo;
mod modules;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mdm_api::Service;
use mdm_api::public::CreateToken;
use mdm_domain::{Role, TenantId, TokenId, UserId};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::{Application, Clock, SystemClock, telemetry};
use mdm_store::{PoolOptions, Store};

use crate::config::MdmConfig;

#[derive(Parser)]
#[command(
    name = "mdm",
    version,
    about = "Self-hosted device management server",
    after_help = "Exit codes: 0 done, 1 failed, 2 usage, 3 not found, 4 refused, 5 no valid token or not permitted, 6 server unreachable or failing."
)]
struct Cli {
    /// Configuration file (TOML). Without one, defaults apply: SQLite under ./data and
    /// the public listener on 127.0.0.1:8080. `MDM_` environment variables override it.
    #[arg(long, global = true, env = "MDM_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    api: cli::Api,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: every service and adapter, or those named with --only.
    Serve {
        /// Comma-separated services to run: enrollment, inventory, dispatch, apple,
        /// android, windows.
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<Service>>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants directly in the database.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// API tokens: with --token (or MDM_TOKEN) through the API, otherwise directly in the
    /// database (the first operator token).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The outbox of this database: pending and dead messages, and retrying dead ones.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Simulated devices that enrol against a running server and keep checking in
    /// (answering its commands) until Ctrl-C. `mdm simulate --help` tells what the server
    /// needs for each platform.
    Simulate(simulate::Args),
    /// Try it: the server on a temporary SQLite database with mocked Apple, Google and
    /// Microsoft services, a tenant and simulated devices of every platform; prints an
    /// admin token and commands to try.
    Demo(demo::Args),
    /// Print the admin API's OpenAPI document (JSON), as `GET /api/v1/openapi.json`
    /// serves it.
    Openapi,
    #[command(flatten)]
    Api(cli::ApiCommand),
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Messages waiting, dead letters, the oldest waiting message.
    Status,
    /// Make every dead letter pending again (after its cause is fixed).
    RetryDead,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant and print it.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token and print its secret (shown only this once). Its tenant is --tenant.
    Create(CreateTokenArgs),
    /// List tokens (through the API).
    List,
    /// Revoke a token (through the API).
    Revoke { id: TokenId },
}

#[derive(Args)]
struct CreateTokenArgs {
    /// operator, admin, helpdesk, reader, connector or user.
    #[arg(long)]
    role: Role,
    /// The user a `user` token acts for.
    #[arg(long)]
    user: Option<UserId>,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long)]
    expires_in_days: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), cli::CliError> {
    let failed = |e: anyhow::Error| cli::CliError::Failed(format!("{e:#}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(e.into()))?;
    // Commands that only call the API need no server configuration.
    let api = cli.api.clone();
    let via_api = |command| {
        runtime.block_on(async { cli::tokens_via_api(&api.client()?, &api.out(), command).await })
    };
    let command = match cli.command {
        Command::Api(command) => return runtime.block_on(cli::run(&api, command)),
        Command::Openapi => return print_openapi().map_err(failed),
        Command::Simulate(args) => {
            return runtime
                .block_on(async { simulate::run(&api.client()?, &api.server, args).await });
        }
        Command::Tokens(TokensCommand::List) => return via_api(cli::TokensViaApi::List),
        Command::Tokens(TokensCommand::Revoke { id }) => {
            return via_api(cli::TokensViaApi::Revoke(id));
        }
        Command::Tokens(TokensCommand::Create(args)) if api.token.is_some() => {
            return via_api(cli::TokensViaApi::Create(CreateToken {
                role: args.role,
                tenant_id: api.tenant,
                user_id: args.user,
                description: args.description,
                expires_in_days: args.expires_in_days,
            }));
        }
        other => other,
    };
    let mut config = MdmConfig::load(cli.config.as_deref()).map_err(|e| failed(e.into()))?;
    if matches!(command, Command::Demo(_)) {
        // The demo's own output matters more than the server's routine log.
        config.log.level = "warn".into();
    }
    telemetry::init(&config.log);
    let result = match command {
        Command::Serve { only } => runtime.block_on(serve(config, only)),
        Command::Migrate => runtime.block_on(migrate(&config)),
        Command::Tenants(command) => runtime.block_on(tenants(&config, command)),
        Command::Tokens(TokensCommand::Create(args)) => {
            runtime.block_on(create_token(&config, args, api.tenant))
        }
        Command::Outbox(command) => runtime.block_on(outbox(&config, command)),
        Command::Demo(args) => runtime.block_on(demo::run(config, args)),
        Command::Tokens(_) | Command::Api(_) | Command::Simulate(_) | Command::Openapi => Ok(()),
    };
    // Database work still waiting for a connection (the database is down) cannot be
    // interrupted; do not wait for it longer than this.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.map_err(failed)
}

async fn serve(config: MdmConfig, only: Option<Vec<Service>>) -> anyhow::Result<()> {
    let services = only.unwrap_or_else(|| Service::ALL.to_vec());
    let clock = Arc::new(SystemClock);
    let app = Application::build(config.runtime(), clock, &services, |context| {
        modules::build(context, &config, &services)
    })?;
    app.shutdown_handle().trigger_on_signals()?;
    tracing::info!(
        public = %app.public_addr(),
        internal = %app.internal_addr(),
        services = ?services.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "serving"
    );
    app.run().await
}

/// Opens the configured database.
fn open_store(config: &MdmConfig) -> anyhow::Result<Store> {
    let runtime = config.runtime();
    let options = PoolOptions {
        max_connections: 2,
        acquire_timeout: runtime.database.acquire_timeout(),
    };
    Ok(Store::open(&runtime.database_url(), &options)?)
}

async fn migrate(config: &MdmConfig) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let applied = store.migrate().await.context("migrating the database")?;
    if applied.is_empty() {
        eprintln!("the database at {} is up to date", store.url());
    } else {
        eprintln!("applied {} migrations to {}", applied.len(), store.url());
    }
    Ok(())
}

/// The store for a command that needs the schema: migrated first, as `serve` would.
async fn ready_store(config: &MdmConfig) -> anyhow::Result<Store> {
    let store = open_store(config)?;
    if config.database.migrate_on_start {
        store.migrate().await.context("migrating the database")?;
    } else if !store.pending_migrations().await?.is_empty() {
        anyhow::bail!("the database has pending migrations: run `mdm migrate` first");
    }
    Ok(store)
}

fn print_openapi() -> anyhow::Result<()> {
    use std::io::Write as _;
    let document = modules::api_document().to_pretty_json()?;
    match writeln!(std::io::stdout().lock(), "{document}") {
        // Read by a pager or `head` that stopped early.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

#[allow(clippy::print_stdout)]
async fn tenants(config: &MdmConfig, command: TenantsCommand) -> anyhow::Result<()> {
    let store = ready_store(config).await?;
    let now = SystemClock.now();
    match command {
        TenantsCommand::Create { name } => {
            let tenant = store
                .write(move |c| mdm_enrollment::tenants::create(c, &name, now))
                .await?;
            println!("{}", serde_json::to_string_pretty(&tenant)?);
        }
        TenantsCommand::List => {
            let tenants = store.read(mdm_enrollment::tenants::list).await?;
            println!("{}", serde_json::to_string_pretty(&tenants)?);
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn outbox(config: &MdmConfig, command: OutboxCommand) -> anyhow::Result<()> {
    let store = ready_store(config).await?;
    match command {
        OutboxCommand::Status => {
            let status = store.read(mdm_runtime::outbox::status).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        OutboxCommand::RetryDead => {
            let now = SystemClock.now();
            let revived = store
                .write(move |c| mdm_runtime::outbox::retry_dead(c, now))
                .await?;
            eprintln!("{revived} dead letters are pending again");
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn create_token(
    config: &MdmConfig,
    args: CreateTokenArgs,
    tenant: Option<TenantId>,
) -> anyhow::Result<()> {
    let store = ready_store(config).await?;
    let request = CreateToken {
        role: args.role,
        tenant_id: tenant,
        user_id: args.user,
        description: args.description,
        expires_in_days: args.expires_in_days,
    };
    let now = SystemClock.now();
    let created = store
        .write(move |c| mdm_enrollment::tokens::create(c, Issuer::CommandLine, request, now))
        .await?;
    eprintln!(
        "created {} token {} (the secret below is shown only once)",
        created.token.role, created.token.id
    );
    println!("{}", created.secret);
    Ok(())
}
