//! `mdm devices ...` and `mdm actions`.

use std::io::Write;

use clap::Subcommand;
use mdm_api::public::{
    DeviceAction, DeviceActionResult, ManagedDevice, Page, RemoteLockRequest, WipeRequest,
};
use mdm_domain::{
    ActionId, ActionKind, ActionState, DeviceId, ManagementState, Ownership, Platform,
};
use serde_json::{Value, json};

use super::client::{ApiClient, CliError};
use super::output::{Out, fields, or_dash, table};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List devices (filters combine).
    List(ListArgs),
    /// Show one device, with its actions.
    Show { id: DeviceId },
    /// Lock the device (a Mac gets a 6-digit PIN, printed once).
    Lock {
        id: DeviceId,
        #[arg(long)]
        message: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// Lock a Mac again although its last PIN was not used.
        #[arg(long)]
        force: bool,
    },
    /// Clear or reset the passcode.
    ResetPasscode { id: DeviceId },
    /// Factory reset.
    Wipe {
        id: DeviceId,
        /// Keep the enrollment (Windows 10 1709 and later, with --keep-user-data).
        #[arg(long)]
        keep_enrollment_data: bool,
        /// Keep user accounts and data (Windows 10 1709 and later).
        #[arg(long)]
        keep_user_data: bool,
        /// A Mac's 6-digit unlock code (one is generated otherwise).
        #[arg(long)]
        mac_os_unlock_code: Option<String>,
        #[arg(long)]
        persist_esim_data_plan: bool,
        /// Windows protected wipe.
        #[arg(long)]
        protected: bool,
    },
    /// Remove company data; personal data stays.
    Retire { id: DeviceId },
    /// Restart the device.
    Reboot { id: DeviceId },
    /// Ask the device to check in now.
    Sync { id: DeviceId },
    /// Remove the device from management (company data goes at its next check-in).
    Delete { id: DeviceId },
    /// The device's actions.
    Actions { id: DeviceId },
    /// Cancel an action the device has not received yet.
    Cancel { id: DeviceId, action: ActionId },
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub os: Option<Platform>,
    #[arg(long)]
    pub owner: Option<Ownership>,
    #[arg(long)]
    pub state: Option<ManagementState>,
    #[arg(long)]
    pub user: Option<String>,
    /// Devices not seen since (RFC 3339, e.g. 2026-08-01T00:00:00Z).
    #[arg(long)]
    pub last_sync_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Devices per page.
    #[arg(long, default_value_t = 100)]
    pub top: u32,
    /// Follow every page.
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct ActionsArgs {
    #[arg(long)]
    pub state: Option<ActionState>,
    #[arg(long)]
    pub action: Option<ActionKind>,
    #[arg(long, default_value_t = 50)]
    pub top: u32,
}

const DEVICES: &str = "/api/v1/deviceManagement/managedDevices";

pub async fn run(client: &ApiClient, out: &Out, command: Command) -> Result<(), CliError> {
    match command {
        Command::List(args) => list(client, out, args).await,
        Command::Show { id } => show(client, out, id).await,
        Command::Lock {
            id,
            message,
            phone,
            force,
        } => {
            let body = RemoteLockRequest {
                message,
                phone_number: phone,
                force,
            };
            act(client, out, id, "remoteLock", json!(body)).await
        }
        Command::ResetPasscode { id } => act(client, out, id, "resetPasscode", json!({})).await,
        Command::Wipe {
            id,
            keep_enrollment_data,
            keep_user_data,
            mac_os_unlock_code,
            persist_esim_data_plan,
            protected,
        } => {
            let body = WipeRequest {
                keep_enrollment_data,
                keep_user_data,
                mac_os_unlock_code,
                persist_esim_data_plan,
                use_protected_wipe: protected,
            };
            act(client, out, id, "wipe", json!(body)).await
        }
        Command::Retire { id } => act(client, out, id, "retire", json!({})).await,
        Command::Reboot { id } => act(client, out, id, "rebootNow", json!({})).await,
        Command::Sync { id } => act(client, out, id, "syncDevice", json!({})).await,
        Command::Delete { id } => {
            let device: ManagedDevice = client.delete(&format!("{DEVICES}/{id}")).await?;
            out.emit(&device, |w| {
                writeln!(
                    w,
                    "{} is {}: company data goes at its next check-in",
                    device.id, device.management_state
                )
            })
        }
        Command::Actions { id } => {
            let page: Page<DeviceActionResult> = client
                .get(&format!("{DEVICES}/{id}/deviceActionResults"))
                .await?;
            out.emit(&page, |w| {
                let rows = page.value.iter().map(result_row).collect::<Vec<_>>();
                table(w, &["ACTION", "NAME", "STATE", "STARTED", "ERROR"], &rows)
            })
        }
        Command::Cancel { id, action } => {
            let action: DeviceAction = client
                .post(
                    &format!("{DEVICES}/{id}/deviceActionResults/{action}/cancel"),
                    &json!({}),
                )
                .await?;
            out.emit(&action, |w| {
                writeln!(
                    w,
                    "{} {} is {}",
                    action.result.action_name, action.result.id, action.result.action_state
                )
            })
        }
    }
}

async fn list(client: &ApiClient, out: &Out, args: ListArgs) -> Result<(), CliError> {
    let mut query = vec![format!("top={}", args.top)];
    let mut add = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            query.push(format!("{key}={}", urlencode(&value)));
        }
    };
    add("operatingSystem", args.os.map(|p| p.to_string()));
    add("ownerType", args.owner.map(|o| o.to_string()));
    add("managementState", args.state.map(|s| s.to_string()));
    add("userPrincipalName", args.user);
    add(
        "lastSyncBefore",
        args.last_sync_before
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    let mut link = Some(format!("{DEVICES}?{}", query.join("&")));
    let mut devices = Vec::new();
    let mut next = None;
    while let Some(path) = link.take() {
        let page: Page<ManagedDevice> = client.get(&path).await?;
        devices.extend(page.value);
        next = page.next_link.clone();
        if args.all {
            link = page.next_link;
        }
    }
    let page = Page {
        value: devices,
        next_link: next,
    };
    out.emit(&page, |w| {
        let rows: Vec<Vec<String>> = page
            .value
            .iter()
            .map(|d| {
                vec![
                    d.id.to_string(),
                    or_dash(&d.device_name),
                    d.operating_system.to_string(),
                    or_dash(&d.os_version),
                    d.managed_device_owner_type.to_string(),
                    d.management_state.to_string(),
                    or_dash(&d.user_principal_name),
                    or_dash(
                        &d.last_sync_date_time
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string()),
                    ),
                ]
            })
            .collect();
        table(
            w,
            &[
                "ID",
                "NAME",
                "OS",
                "VERSION",
                "OWNER",
                "STATE",
                "USER",
                "LAST SYNC",
            ],
            &rows,
        )?;
        if let Some(next) = &page.next_link {
            writeln!(w, "more: --all, or {next}")?;
        }
        Ok(())
    })
}

async fn show(client: &ApiClient, out: &Out, id: DeviceId) -> Result<(), CliError> {
    let device: ManagedDevice = client.get(&format!("{DEVICES}/{id}")).await?;
    out.emit(&device, |w| {
        fields(
            w,
            &[
                ("id", device.id.to_string()),
                ("name", or_dash(&device.device_name)),
                (
                    "operating system",
                    format!(
                        "{} {}",
                        device.operating_system,
                        or_dash(&device.os_version)
                    ),
                ),
                (
                    "model",
                    format!(
                        "{} {}",
                        or_dash(&device.manufacturer),
                        or_dash(&device.model)
                    ),
                ),
                ("serial number", or_dash(&device.serial_number)),
                ("owner", device.managed_device_owner_type.to_string()),
                ("management mode", or_dash(&device.management_mode)),
                ("management state", device.management_state.to_string()),
                ("user", or_dash(&device.user_principal_name)),
                ("passcode", or_dash(&device.is_passcode_present)),
                ("enrolled", device.enrolled_date_time.to_rfc3339()),
                (
                    "last sync",
                    or_dash(&device.last_sync_date_time.map(|t| t.to_rfc3339())),
                ),
                (
                    "unlock PIN",
                    or_dash(
                        &device
                            .lock_pin
                            .as_ref()
                            .map(|p| format!("{} (until {})", p.pin, p.expiration_date_time)),
                    ),
                ),
            ],
        )?;
        if let Some(results) = &device.device_action_results {
            writeln!(w)?;
            let rows = results.iter().map(result_row).collect::<Vec<_>>();
            table(w, &["ACTION", "NAME", "STATE", "STARTED", "ERROR"], &rows)?;
        }
        Ok(())
    })
}

async fn act(
    client: &ApiClient,
    out: &Out,
    id: DeviceId,
    action: &str,
    body: Value,
) -> Result<(), CliError> {
    let action: DeviceAction = client
        .post(&format!("{DEVICES}/{id}/{action}"), &body)
        .await?;
    out.emit(&action, |w| {
        writeln!(w, "{} {} accepted ({})", action.result.action_name, action.result.id, action.result.action_state)?;
        if let Some(pin) = &action.lock_pin {
            writeln!(w, "unlock PIN: {pin} (note it: it is shown until another action is sent or 30 days pass)")?;
        }
        Ok(())
    })
}

pub async fn actions(client: &ApiClient, out: &Out, args: ActionsArgs) -> Result<(), CliError> {
    let mut path = format!("/api/v1/deviceManagement/deviceActions?top={}", args.top);
    if let Some(state) = args.state {
        path.push_str(&format!("&state={state}"));
    }
    if let Some(action) = args.action {
        path.push_str(&format!("&action={action}"));
    }
    let page: Page<DeviceAction> = client.get(&path).await?;
    out.emit(&page, |w| {
        let rows: Vec<Vec<String>> = page
            .value
            .iter()
            .map(|a| {
                let mut row = result_row(&a.result);
                row.insert(1, or_dash(&a.device_name));
                row
            })
            .collect();
        table(
            w,
            &["ACTION", "DEVICE", "NAME", "STATE", "STARTED", "ERROR"],
            &rows,
        )
    })
}

fn result_row(r: &DeviceActionResult) -> Vec<String> {
    vec![
        r.id.to_string(),
        r.action_name.to_string(),
        r.action_state.to_string(),
        r.start_date_time.format("%Y-%m-%d %H:%M").to_string(),
        match (&r.error_code, &r.error_detail) {
            (Some(code), Some(detail)) => format!("{code}: {detail}"),
            (Some(code), None) => code.clone(),
            _ => String::new(),
        },
    ]
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
