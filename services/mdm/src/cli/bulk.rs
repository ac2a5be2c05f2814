//! `mdm bulk`: one action on many devices, with a progress bar while the server checks
//! them, then a summary of what was accepted and why the rest was refused.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mdm_api::internal::inventory::DeviceFilter;
use mdm_api::public::{BulkAction, BulkActionRequest, BulkParameters};
use mdm_domain::{ActionKind, DeviceId, ManagementState, Ownership, Platform};

use super::client::{ApiClient, CliError};
use super::output::{Format, Out};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// remoteLock, resetPasscode, wipe, retire, rebootNow, syncDevice or delete.
    pub action: ActionKind,
    /// The devices, comma-separated (or use the filters).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<DeviceId>,
    /// Select the devices of one operating system: iOS, iPadOS, macOS, Android, Windows.
    #[arg(long)]
    pub os: Option<Platform>,
    /// Select company or personal devices.
    #[arg(long)]
    pub owner: Option<Ownership>,
    /// Select by management state (managed, retirePending, wipePending, ...).
    #[arg(long)]
    pub state: Option<ManagementState>,
    /// Select one user's devices, by user principal name.
    #[arg(long)]
    pub user: Option<String>,
    /// Select the devices whose last check-in was before this time (RFC 3339).
    #[arg(long)]
    pub last_sync_before: Option<chrono::DateTime<chrono::Utc>>,
    /// remoteLock: the message on the lock screen.
    #[arg(long)]
    pub message: Option<String>,
    /// remoteLock: the phone number on the lock screen.
    #[arg(long)]
    pub phone: Option<String>,
    /// remoteLock: lock a Mac again although its last unlock PIN was not used.
    #[arg(long)]
    pub force: bool,
    /// wipe: keep the enrollment (with --keep-user-data; Windows 10 1709 and later).
    #[arg(long)]
    pub keep_enrollment_data: bool,
    /// wipe: keep the user accounts and their data.
    #[arg(long)]
    pub keep_user_data: bool,
    /// wipe: keep the eSIM data plan.
    #[arg(long)]
    pub persist_esim_data_plan: bool,
    /// wipe: a protected wipe (Windows), which cannot be interrupted.
    #[arg(long)]
    pub protected: bool,
    /// Answer as soon as the server accepted the job.
    #[arg(long)]
    pub no_wait: bool,
}

const SELECTORS: &str = "name the devices with --devices, or select them with filters \
     (--os, --owner, --state, --user, --last-sync-before)";

pub async fn run(client: &ApiClient, out: &Out, args: Args) -> Result<(), CliError> {
    let filtered = args.os.is_some()
        || args.owner.is_some()
        || args.state.is_some()
        || args.user.is_some()
        || args.last_sync_before.is_some();
    let (device_ids, filter) = match (args.devices.is_empty(), filtered) {
        (false, false) => (Some(args.devices.clone()), None),
        (true, true) => (
            None,
            Some(DeviceFilter {
                operating_system: args.os,
                owner_type: args.owner,
                management_state: args.state,
                user_principal_name: args.user.clone(),
                user_id: None,
                last_sync_before: args.last_sync_before,
            }),
        ),
        (true, false) => {
            return Err(CliError::Refused(format!(
                "a selector is needed: {SELECTORS}"
            )));
        }
        (false, true) => return Err(CliError::Refused(format!("{SELECTORS}, not both"))),
    };
    let request = BulkActionRequest {
        action: args.action,
        device_ids,
        filter,
        parameters: BulkParameters {
            message: args.message,
            phone_number: args.phone,
            force: args.force,
            keep_enrollment_data: args.keep_enrollment_data,
            keep_user_data: args.keep_user_data,
            persist_esim_data_plan: args.persist_esim_data_plan,
            use_protected_wipe: args.protected,
        },
    };
    let mut job: BulkAction = client
        .post(
            "/api/v1/deviceManagement/managedDevices/bulkAction",
            &request,
        )
        .await?;
    if !args.no_wait {
        let bar = (out.format == Format::Human && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(u64::from(job.total_devices.max(1)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} checking devices [{bar:40}] {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        let path = format!("/api/v1/deviceManagement/bulkActions/{}?top=1", job.id);
        while job.state != "completed" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            job = client.get(&path).await?;
            if let Some(bar) = &bar {
                bar.set_length(u64::from(job.total_devices.max(1)));
                bar.set_position(u64::from(job.accepted + job.refused));
                bar.set_message(format!(
                    "{} accepted, {} refused",
                    job.accepted, job.refused
                ));
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
    out.emit(&job, |w| {
        writeln!(
            w,
            "bulk {} {}: {}, {} accepted, {} refused ({})",
            job.action,
            job.id,
            count(job.total_devices, "device"),
            job.accepted,
            job.refused,
            job.state
        )?;
        for (code, count) in &job.refusals {
            writeln!(w, "  refused {count}: {code}")?;
        }
        for (state, count) in &job.action_states {
            writeln!(w, "  {state}: {count}")?;
        }
        Ok(())
    })?;
    if job.state == "completed" && job.accepted == 0 && job.refused > 0 {
        return Err(CliError::Refused("every device was refused".into()));
    }
    Ok(())
}

/// `1 device`, `2 devices`.
fn count(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use clap::Args as _;

    use super::{Args, count};

    #[test]
    fn every_option_says_what_it_does() {
        let command = Args::augment_args(clap::Command::new("bulk"));
        for argument in command.get_arguments() {
            assert!(
                argument.get_help().is_some(),
                "--{} has no help text",
                argument.get_id()
            );
        }
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "device"), "1 device");
        assert_eq!(count(0, "device"), "0 devices");
        assert_eq!(count(2, "device"), "2 devices");
    }
}
