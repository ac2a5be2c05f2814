//! Simulated Windows 10 devices: each enrols for its own directory user (on-premise
//! authentication with the user's password), then runs an OMA-DM session on each push
//! (when the WNS mock runs in this process) and every interval.

use mdm_api::public::{CreateUser, User};
use mdm_e2e::windows::{Edition, Lifecycle, MockWns, WindowsDevice};

use super::{CheckIns, WINDOWS_CERT_HEADER, failed};
use crate::cli::{ApiClient, CliError};

/// A directory user a device enrols for.
pub struct EnrollingUser {
    pub user_principal_name: String,
    password: String,
}

/// Creates a licensed user with a random password.
pub async fn create_user(client: &ApiClient) -> Result<EnrollingUser, CliError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let user_principal_name = format!("sim-{}@simulated.test", &id[..12]);
    let password = mdm_runtime::crypto::random_token::<18>();
    let _: User = client
        .post(
            "/api/v1/users",
            &CreateUser {
                user_principal_name: user_principal_name.clone(),
                display_name: format!("Simulated user {}", &id[..6]),
                password: Some(password.clone()),
                licensed: true,
            },
        )
        .await?;
    Ok(EnrollingUser {
        user_principal_name,
        password,
    })
}

/// A new device of `edition` enrolled against `server` for `user`.
pub async fn enrol(
    server: &str,
    user: &EnrollingUser,
    edition: Edition,
) -> Result<WindowsDevice, CliError> {
    let mut device = WindowsDevice::new(server, WINDOWS_CERT_HEADER, edition)
        .map_err(failed("making a Windows device"))?;
    // As the DM client, send a message again when the server cannot be reached (it is
    // restarting, say), here every second for half a minute.
    device.retries = 30;
    // As the enrollment client, try again when the server is busy (InMaintenance, a
    // request timed out): a few times, a second apart.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match device
            .enroll(&user.user_principal_name, &user.password)
            .await
        {
            Ok(_) => return Ok(device),
            Err(e) if attempts < 5 => {
                eprintln!(
                    "enrolling Windows {} failed ({e}); trying again",
                    device.name
                );
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(CliError::Failed(format!("enrolling a Windows device: {e}"))),
        }
    }
}

/// Gives an enrolled device a push channel of `wns` when the server provisioned push.
pub fn open_channel(device: &mut WindowsDevice, wns: &MockWns) {
    if device.enrollment.as_ref().is_some_and(|e| e.pfn.is_some()) {
        device.channel = Some(wns.new_channel());
    }
}

/// Syncs on each push (when `wns` is the mock the server pushes to) and every interval,
/// until the fleet stops or the device leaves management.
pub async fn keep_checking_in(
    mut device: WindowsDevice,
    wns: Option<std::sync::Arc<MockWns>>,
    check_ins: CheckIns,
) {
    let mut pushes = 0;
    loop {
        let pushed = match (&wns, device.channel.clone()) {
            (Some(wns), Some(channel)) => tokio::select! {
                () = check_ins.stop.wait() => return,
                got = wns.wait_for(&channel, pushes + 1, check_ins.every) => {
                    pushes = wns.notifications(&channel);
                    got
                }
            },
            _ => {
                if !check_ins.pause().await {
                    return;
                }
                false
            }
        };
        let executed = device.executed.len();
        let session = if pushed {
            device.sync_after_push().await
        } else {
            device.sync().await
        };
        if let Err(error) = session {
            eprintln!("Windows {}: sync failed: {error:#}", device.name);
        }
        // What it carried out, even in a session that failed afterwards.
        let actions: Vec<&str> = device.executed[executed..]
            .iter()
            .filter(|e| e.verb != "Get")
            .map(|e| e.loc_uri.as_str())
            .collect();
        if !actions.is_empty() {
            eprintln!(
                "Windows {}: carried out {}",
                device.name,
                actions.join(", ")
            );
        }
        if device.lifecycle != Lifecycle::Enrolled {
            eprintln!(
                "Windows {}: left management ({:?})",
                device.name, device.lifecycle
            );
            return;
        }
    }
}
