//! Simulated Android phones: Google's side (the Android Management API, its OAuth server
//! and Pub/Sub push) is the `mdm-e2e` mock running in this process; the tenant is bound
//! to a new mock enterprise, devices are provisioned with an enrollment token and carry
//! out commands as soon as the server issues them (as Android Device Policy does), and
//! report their status every interval.

use std::net::TcpListener;
use std::sync::Arc;

use mdm_api::public::BindAndroidEnterprise;
use mdm_e2e::android::{Hardware, MockGoogle, PushAuth, PushSubscription, Setup, SimulatedDevice};
use mdm_runtime::{Clock, SystemClock};
use serde_json::{Value, json};

use super::{CheckIns, failed};
use crate::cli::{ApiClient, CliError};

/// The Google Cloud project of the mock's service account and topic.
const PROJECT: &str = "mdm-simulated";

/// Starts the mock on `listener`.
pub async fn start_google(listener: TcpListener) -> Result<MockGoogle, CliError> {
    MockGoogle::start_on(listener, Arc::new(|| SystemClock.now()))
        .await
        .map_err(failed("starting the mock Android Management API"))
}

/// Subscribes `server` to the mock's notifications: Pub/Sub pushes them to the server's
/// endpoint with `secret` (its `android.pubsub.token`) in the URL.
pub fn push_to_server(google: &MockGoogle, server: &str, secret: &str) {
    google.push_to(PushSubscription {
        endpoint: format!(
            "{}{}",
            server.trim_end_matches('/'),
            mdm_android::PUBSUB_PATH
        ),
        auth: PushAuth::QueryToken(secret.to_owned()),
        subscription: format!("projects/{PROJECT}/subscriptions/mdm"),
    });
}

/// Binds the tenant to a new enterprise of the mock.
pub async fn bind_enterprise(client: &ApiClient, google: &MockGoogle) -> Result<(), CliError> {
    let key = google
        .service_account(PROJECT)
        .map_err(failed("making a service account"))?;
    let binding = BindAndroidEnterprise {
        enterprise_token: None,
        enterprise_name: Some(google.create_enterprise(PROJECT)),
        service_account_key: Some(key),
        pubsub_topic: Some(format!("projects/{PROJECT}/topics/mdm")),
        notification_types: Vec::new(),
        data_sharing_consent: true,
    };
    let _: Value = client
        .put("/api/v1/deviceManagement/androidEnterprise", &binding)
        .await?;
    Ok(())
}

/// A reusable enrollment token for company-owned, fully managed devices.
pub async fn enrollment_token(client: &ApiClient) -> Result<String, CliError> {
    let token: Value = client
        .post(
            mdm_android::TOKENS_PATH,
            &json!({ "profile": "corporateFullyManaged" }),
        )
        .await?;
    token["value"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Failed("the enrollment token has no value".into()))
}

/// Provisions the `n`th device (Pixels and Galaxies in turn) with `token`.
pub async fn enrol(google: &MockGoogle, token: &str, n: u32) -> Result<SimulatedDevice, CliError> {
    let hardware = if n.is_multiple_of(2) {
        Hardware::pixel()
    } else {
        Hardware::samsung()
    };
    google
        .enroll(token, Setup::CompanyDevice, hardware)
        .await
        .map_err(|e| CliError::Refused(format!("Google refused the enrollment: {e}")))
}

/// Reports status every interval and tells what the device carried out, until the fleet
/// stops or the device leaves management.
pub async fn keep_checking_in(device: SimulatedDevice, check_ins: CheckIns) {
    let mut executed = 0;
    while check_ins.pause().await {
        tell_carried_out(&device, &mut executed);
        if device.resource().is_none() {
            eprintln!("Android {}: left management", device.name());
            return;
        }
        device.report_status().await;
    }
    tell_carried_out(&device, &mut executed);
}

/// Prints the commands carried out since the first `executed` ones.
fn tell_carried_out(device: &SimulatedDevice, executed: &mut usize) {
    let state = device.state();
    if state.executed.len() > *executed {
        eprintln!(
            "Android {}: carried out {}",
            device.name(),
            state.executed[*executed..].join(", ")
        );
        *executed = state.executed.len();
    }
}
