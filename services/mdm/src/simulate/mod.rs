//! `mdm simulate`: simulated devices that enrol against a running server and keep
//! checking in (answering its commands) until Ctrl-C or SIGTERM. `mdm demo` uses the same
//! fleets in-process.
//!
//! The devices are the protocol simulators of `mdm-e2e`, written independently of the
//! server's adapters; the vendor services they need (Google's side of Android
//! Enterprise) run in this process.

pub mod android;
pub mod apple;
pub mod windows;

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use mdm_runtime::{Clock, Shutdown, SystemClock};
use tokio::task::JoinSet;

use crate::cli::{ApiClient, CliError};

/// The header in which simulated Windows devices send their client certificate (the
/// server's `windows.client_cert_header` must name it: plain HTTP has no client TLS).
pub const WINDOWS_CERT_HEADER: &str = "X-Client-Cert";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulatedPlatform {
    /// iPhones, iPads and Macs, in turn.
    Apple,
    /// Company-owned, fully managed Android phones.
    Android,
    /// Windows 10 desktops.
    Windows,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "What the server needs (the token must be an admin's, or an operator's with --tenant):

  all       the tenant's MDM authority allows enrollment (mdm authority set standalone).
  apple     a push certificate: when the tenant has none, a test one is uploaded (with
            dataSharingConsent). Devices check in every --interval seconds; the server's
            pushes go to its apple.apns_url, so point that at a local address
            (MDM_APPLE__APNS_URL=https://127.0.0.1:9) to keep them from leaving the machine.
  android   the server talks to the mock Android Management API and OAuth server that this
            command serves on --amapi-listen: start the server with
              MDM_ANDROID__API_BASE_URL=http://127.0.0.1:8090/
              MDM_ANDROID__PUBSUB__TOKEN=<the same as --pubsub-token>
            The tenant is bound to a new mock enterprise (with dataSharingConsent); the mock
            pushes device news to the server's Pub/Sub endpoint with that token.
  windows   plain HTTP carries no client certificate: start the server with
              MDM_WINDOWS__CLIENT_CERT_HEADER=X-Client-Cert
            One directory user (with a password and a licence) is created per device;
            devices enrol with it (on-premise authentication) and sync every --interval
            seconds."
)]
pub struct Args {
    #[arg(long, value_enum)]
    pub platform: SimulatedPlatform,
    /// How many devices.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Seconds between check-ins.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Android: where to serve the mock Android Management API and OAuth server.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub amapi_listen: SocketAddr,
    /// Android: the shared secret of the Pub/Sub push endpoint (the server's
    /// `android.pubsub.token`).
    #[arg(long)]
    pub pubsub_token: Option<String>,
}

/// How a fleet of simulated devices runs: how often each checks in, and the trigger that
/// stops them.
#[derive(Clone)]
pub struct CheckIns {
    pub every: Duration,
    pub stop: Shutdown,
}

impl CheckIns {
    /// Sleeps one interval; answers false once the fleet should stop.
    pub async fn pause(&self) -> bool {
        tokio::select! {
            () = self.stop.wait() => false,
            () = tokio::time::sleep(self.every) => true,
        }
    }
}

/// Wall-clock seconds, for the certificates the simulators make.
pub fn unix_now() -> i64 {
    SystemClock.now().timestamp()
}

/// A simulator's failure as the command line reports it.
pub fn failed(what: &str) -> impl Fn(anyhow::Error) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e:#}"))
}

pub async fn run(client: &ApiClient, server: &str, args: Args) -> Result<(), CliError> {
    let stop = Shutdown::new();
    stop.trigger_on_signals()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let check_ins = CheckIns {
        every: Duration::from_secs(args.interval.max(1)),
        stop: stop.clone(),
    };
    let mut fleet = JoinSet::new();
    // Keeps the mock Google alive as long as the devices it manages.
    let mut _google = None;
    match args.platform {
        SimulatedPlatform::Apple => {
            apple::ensure_push_certificate(client).await?;
            for i in 0..args.count {
                let model = apple::MODELS[i as usize % apple::MODELS.len()];
                let device = apple::enrol(client, model).await?;
                eprintln!(
                    "enrolled {} ({}/{})",
                    apple::label(&device),
                    i + 1,
                    args.count
                );
                fleet.spawn(apple::keep_checking_in(device, None, check_ins.clone()));
            }
        }
        SimulatedPlatform::Android => {
            let secret = args.pubsub_token.clone().ok_or_else(|| {
                CliError::Refused(
                    "--pubsub-token is required for Android (the server's android.pubsub.token)"
                        .into(),
                )
            })?;
            let listener = std::net::TcpListener::bind(args.amapi_listen).map_err(|e| {
                CliError::Failed(format!("cannot listen on {}: {e}", args.amapi_listen))
            })?;
            let google = android::start_google(listener).await?;
            android::push_to_server(&google, server, &secret);
            eprintln!("mock Android Management API at {}", google.url());
            android::bind_enterprise(client, &google).await?;
            let token = android::enrollment_token(client).await?;
            for i in 0..args.count {
                let device = android::enrol(&google, &token, i).await?;
                eprintln!(
                    "enrolled Android {} ({}/{})",
                    device.name(),
                    i + 1,
                    args.count
                );
                fleet.spawn(android::keep_checking_in(device, check_ins.clone()));
            }
            _google = Some(google);
        }
        SimulatedPlatform::Windows => {
            for i in 0..args.count {
                let user = windows::create_user(client).await?;
                let device =
                    windows::enrol(server, &user, mdm_e2e::windows::Edition::Desktop).await?;
                eprintln!(
                    "enrolled Windows {} for {} ({}/{})",
                    device.name,
                    user.user_principal_name,
                    i + 1,
                    args.count
                );
                fleet.spawn(windows::keep_checking_in(device, None, check_ins.clone()));
            }
        }
    }
    eprintln!(
        "{} devices check in every {} s; Ctrl-C stops them",
        args.count,
        check_ins.every.as_secs()
    );
    stop.wait().await;
    while fleet.join_next().await.is_some() {}
    eprintln!("stopped");
    Ok(())
}
