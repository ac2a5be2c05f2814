//! `mdm demo`: the whole server in this process on a throw-away SQLite database, with the
//! vendor services replaced by the `mdm-e2e` mocks (APNs, Google's Android Management
//! API with its OAuth server and Pub/Sub, WNS) on loopback ports, a tenant, and simulated
//! devices of every platform that keep checking in. It prints an admin token and
//! commands to try, and runs until Ctrl-C or SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mdm_api::Service;
use mdm_api::public::{CreateToken, ManagedDevice, MdmAuthorityBody, Page};
use mdm_domain::{MdmAuthority, Platform, Role};
use mdm_e2e::apple::{MockApns, Model, TestCa};
use mdm_e2e::windows::{Edition, MockWns};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::config::Secret;
use mdm_runtime::{Application, Clock, Shutdown, SystemClock};
use tokio::task::JoinSet;

use crate::cli::{ApiClient, CliError};
use crate::config::MdmConfig;
use crate::modules;
use crate::simulate::{self, CheckIns, WINDOWS_CERT_HEADER, android, apple, windows};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the public API (and the devices' endpoints) listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Keep the database here; by default a temporary directory, removed at exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds between the devices' check-ins (they also check in when pushed).
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
}

const WNS_CLIENT_ID: &str = "ms-app://s-1-15-2-demo";
const PUSH_PFN: &str = "Contoso.MDM_8wekyb3d8bbwe";

/// The vendor services, mocked on loopback ports.
struct Vendors {
    push_ca: TestCa,
    apns: MockApns,
    google: mdm_e2e::android::MockGoogle,
    wns: Arc<MockWns>,
    wns_secret: String,
    pubsub_secret: String,
}

impl Vendors {
    async fn start() -> anyhow::Result<Self> {
        let push_ca = apple::push_ca()?;
        let apns = MockApns::start(&push_ca.cert, simulate::unix_now()).await?;
        let google = android::start_google(std::net::TcpListener::bind("127.0.0.1:0")?).await?;
        let wns_secret = mdm_runtime::crypto::random_token::<24>();
        let wns = Arc::new(MockWns::start(WNS_CLIENT_ID, &wns_secret).await?);
        Ok(Self {
            push_ca,
            apns,
            google,
            wns,
            wns_secret,
            pubsub_secret: mdm_runtime::crypto::random_token::<24>(),
        })
    }

    /// Points the adapters at the mocks.
    fn configure(&self, config: &mut MdmConfig, data_dir: &Path) -> anyhow::Result<()> {
        let apns_ca = data_dir.join("apns-mock-ca.pem");
        std::fs::write(&apns_ca, &self.apns.tls_ca_pem).context("writing the APNs mock's CA")?;
        config.apple.apns_url = self.apns.url.clone();
        config.apple.apns_ca_file = Some(apns_ca);
        config.android.api_base_url = self.google.url();
        config.android.pubsub.token = Some(Secret::new(self.pubsub_secret.clone()));
        config.windows.client_cert_header = Some(WINDOWS_CERT_HEADER.into());
        config.windows.wns_token_url = self.wns.token_url();
        config.windows.wns_client_id = Some(WNS_CLIENT_ID.into());
        config.windows.wns_client_secret = Some(Secret::new(self.wns_secret.clone()));
        config.windows.push_pfn = Some(PUSH_PFN.into());
        config.windows.wns_channel_hosts = vec!["127.0.0.1".into()];
        config.windows.wns_allow_http = true;
        Ok(())
    }
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(mut config: MdmConfig, args: Args) -> anyhow::Result<()> {
    let temporary = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("making a temporary directory")?),
    };
    let data_dir = match (&args.data_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_owned(),
        (None, None) => anyhow::bail!("no data directory"),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let vendors = Vendors::start().await?;
    config.data_dir = data_dir.clone();
    config.database.url = None;
    config.server.listen = args.listen.clone();
    config.server.internal_listen = "127.0.0.1:0".into();
    config.server.public_url = None;
    vendors.configure(&mut config, &data_dir)?;

    let services = Service::ALL.to_vec();
    let app = Application::build(config.runtime(), Arc::new(SystemClock), &services, |ctx| {
        modules::build(ctx, &config, &services)
    })?;
    let shutdown = app.shutdown_handle();
    shutdown.trigger_on_signals()?;
    let url = app.context().public_url.clone();
    let store = app.context().store.clone();
    let check_ins = CheckIns {
        every: Duration::from_secs(args.interval.max(1)),
        stop: shutdown.clone(),
    };
    let demo = async {
        let result = prepare(&vendors, &store, &url, &check_ins).await;
        match result {
            Ok((fleet, admin, devices)) => {
                print_welcome(&url, &data_dir, &admin, &devices, temporary.is_some());
                shutdown.wait().await;
                let mut fleet = fleet;
                while fleet.join_next().await.is_some() {}
                Ok(())
            }
            Err(error) => {
                shutdown.trigger();
                Err(error)
            }
        }
    };
    let (served, demo) = tokio::join!(app.run(), demo);
    vendors.google.stop().await;
    served.and(demo)
}

/// The tenant, its settings and its devices; answers the running devices, the admin
/// token and the devices as inventory lists them.
async fn prepare(
    vendors: &Vendors,
    store: &mdm_store::Store,
    url: &str,
    check_ins: &CheckIns,
) -> anyhow::Result<(JoinSet<()>, String, Vec<ManagedDevice>)> {
    wait_until_ready(url, &check_ins.stop).await?;
    let now = SystemClock.now();
    let name = format!("Contoso (demo of {})", now.format("%Y-%m-%d %H:%M:%S"));
    let tenant = store
        .write(move |c| mdm_enrollment::tenants::create(c, &name, now))
        .await?;
    let request = CreateToken {
        role: Role::Admin,
        tenant_id: Some(tenant.id),
        user_id: None,
        description: "mdm demo".into(),
        expires_in_days: None,
    };
    let admin = store
        .write(move |c| mdm_enrollment::tokens::create(c, Issuer::CommandLine, request, now))
        .await?
        .secret;
    let client = ApiClient::new(url, Some(&admin), None)?;
    let _: MdmAuthorityBody = client
        .put(
            "/api/v1/organization/mdmAuthority",
            &MdmAuthorityBody {
                mobile_device_management_authority: MdmAuthority::Standalone,
            },
        )
        .await?;
    apple::upload_push_certificate(&client, &vendors.push_ca).await?;
    android::push_to_server(&vendors.google, url, &vendors.pubsub_secret);
    android::bind_enterprise(&client, &vendors.google).await?;

    let mut fleet = JoinSet::new();
    for model in [Model::IPhone, Model::IPhone, Model::Mac] {
        let device = apple::enrol(&client, model).await?;
        eprintln!("enrolled {}", apple::label(&device));
        let apns = Some(vendors.apns.clone());
        fleet.spawn(apple::keep_checking_in(device, apns, check_ins.clone()));
    }
    let token = android::enrollment_token(&client).await?;
    for n in 0..2 {
        let device = android::enrol(&vendors.google, &token, n).await?;
        eprintln!("enrolled Android {}", device.name());
        fleet.spawn(android::keep_checking_in(device, check_ins.clone()));
    }
    for edition in [Edition::Desktop, Edition::Mobile] {
        let user = windows::create_user(&client).await?;
        let mut device = windows::enrol(url, &user, edition).await?;
        windows::open_channel(&mut device, &vendors.wns);
        eprintln!("enrolled Windows {}", device.name);
        let wns = Some(vendors.wns.clone());
        fleet.spawn(windows::keep_checking_in(device, wns, check_ins.clone()));
    }
    let devices = wait_for_inventory(&client, 7).await?;
    Ok((fleet, admin, devices))
}

/// Waits for /readyz (the schema is migrated in the background).
async fn wait_until_ready(url: &str, stop: &Shutdown) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if stop.is_triggered() {
            anyhow::bail!("stopped before the server was ready");
        }
        let ready = http.get(format!("{url}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not become ready within a minute")
}

/// Waits (up to 30 s) until inventory lists `count` devices; answers what it lists.
async fn wait_for_inventory(
    client: &ApiClient,
    count: usize,
) -> Result<Vec<ManagedDevice>, CliError> {
    let mut devices = Vec::new();
    for _ in 0..300 {
        let page: Page<ManagedDevice> = client
            .get("/api/v1/deviceManagement/managedDevices?top=100")
            .await?;
        devices = page.value;
        if devices.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(devices)
}

fn print_welcome(
    url: &str,
    data_dir: &Path,
    admin: &str,
    devices: &[ManagedDevice],
    temporary: bool,
) {
    let iphone = devices
        .iter()
        .find(|d| d.operating_system == Platform::Ios)
        .map_or_else(|| "<device id>".to_owned(), |d| d.id.to_string());
    let kept = if temporary {
        "a temporary directory, removed at exit"
    } else {
        "kept"
    };
    let text = format!(
        "\nThe mdm demo runs at {url} with {count} simulated devices.\n\
         Database: {dir} ({kept}).\n\
         admin token: {admin}\n\n\
         Try, in another terminal:\n\
         \x20 export MDM_SERVER={url} MDM_TOKEN={admin}\n\
         \x20 mdm devices list\n\
         \x20 mdm devices show {iphone}\n\
         \x20 mdm devices lock {iphone} --message 'Found? Call 555-0100'\n\
         \x20 mdm devices actions {iphone}\n\
         \x20 mdm bulk syncDevice --os windows\n\
         \x20 mdm actions\n\
         \x20 mdm cleanup show\n\
         \x20 mdm authority show\n\n\
         Ctrl-C stops the demo.\n",
        count = devices.len(),
        dir = data_dir.display(),
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
