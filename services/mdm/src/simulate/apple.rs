//! Simulated iPhones, iPads and Macs: a push certificate for the tenant, one enrollment
//! profile per device, then polls of the command endpoint (on each push when the APNs
//! mock runs in this process, and every interval).

use mdm_api::public::UploadPushCertificate;
use mdm_e2e::apple::{AuthMode, DeviceState, MockApns, Model, SimulatedDevice, TestCa};
use serde_json::{Value, json};

use super::{CheckIns, failed, unix_now};
use crate::cli::{ApiClient, CliError};

/// The models `mdm simulate --platform apple` cycles through.
pub const MODELS: [Model; 3] = [Model::IPhone, Model::IPad, Model::Mac];

const PUSH_CERTIFICATE: &str = "/api/v1/deviceManagement/applePushNotificationCertificate";
const PROFILES: &str = "/api/v1/deviceManagement/appleEnrollmentProfiles";

/// A CA standing in for Apple's push CA: it issues the tenant's push certificate, and the
/// APNs mock trusts it.
pub fn push_ca() -> Result<TestCa, CliError> {
    TestCa::new("Simulated Apple push CA", unix_now()).map_err(failed("making a push CA"))
}

/// Uploads a push certificate for a new topic, issued by `ca`.
pub async fn upload_push_certificate(client: &ApiClient, ca: &TestCa) -> Result<(), CliError> {
    let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
    let (certificate, key) = ca
        .push_cert(&topic, unix_now(), 365)
        .map_err(failed("making a push certificate"))?;
    let pem = |bytes: Result<Vec<u8>, openssl::error::ErrorStack>| {
        bytes
            .map_err(|e| CliError::Failed(e.to_string()))
            .and_then(|b| String::from_utf8(b).map_err(|e| CliError::Failed(e.to_string())))
    };
    let upload = UploadPushCertificate {
        certificate: pem(certificate.to_pem())?,
        password: None,
        private_key: Some(pem(key.private_key_to_pem_pkcs8())?),
        data_sharing_consent: true,
        force: false,
    };
    let _: Value = client.put(PUSH_CERTIFICATE, &upload).await?;
    Ok(())
}

/// Uploads a test push certificate unless the tenant has one.
pub async fn ensure_push_certificate(client: &ApiClient) -> Result<(), CliError> {
    match client.get::<Value>(PUSH_CERTIFICATE).await {
        Ok(_) => Ok(()),
        Err(CliError::NotFound(_)) => {
            eprintln!("the tenant has no push certificate: uploading a test one");
            upload_push_certificate(client, &push_ca()?).await
        }
        Err(other) => Err(other),
    }
}

/// A new device of `model`, enrolled through its own enrollment profile.
pub async fn enrol(client: &ApiClient, model: Model) -> Result<SimulatedDevice, CliError> {
    let profile: Value = client
        .post(PROFILES, &json!({ "ownership": "company" }))
        .await?;
    let url = profile["profileUrl"]
        .as_str()
        .ok_or_else(|| CliError::Failed("the enrollment profile has no profileUrl".into()))?;
    let mut device = SimulatedDevice::new(model, AuthMode::Signature);
    device
        .enroll(url, unix_now())
        .await
        .map_err(failed("enrolling an Apple device"))?;
    Ok(device)
}

/// `iPhone 00008110-…` for progress lines.
pub fn label(device: &SimulatedDevice) -> String {
    let model = match device.model {
        Model::IPhone => "iPhone",
        Model::IPad => "iPad",
        Model::Mac => "Mac",
    };
    format!("{model} {}", device.udid)
}

/// Polls the server on each push (when `apns` is the mock the server pushes to) and every
/// interval, until the fleet stops or the device leaves management.
pub async fn keep_checking_in(
    mut device: SimulatedDevice,
    apns: Option<MockApns>,
    check_ins: CheckIns,
) {
    let token = device.token_hex();
    let mut pushes = 0;
    loop {
        let carry_on = match &apns {
            Some(apns) => tokio::select! {
                () = check_ins.stop.wait() => false,
                _ = apns.wait_for(&token, pushes + 1, check_ins.every) => {
                    pushes = apns.pushes_to(&token).len();
                    true
                }
            },
            None => check_ins.pause().await,
        };
        if !carry_on {
            return;
        }
        let received = device.received.len();
        if let Err(error) = device.poll().await {
            eprintln!("{}: check-in failed: {error:#}", label(&device));
        }
        if device.received.len() > received {
            let commands: Vec<&str> = device.received[received..]
                .iter()
                .map(|r| r.request_type.as_str())
                .collect();
            eprintln!("{}: carried out {}", label(&device), commands.join(", "));
        }
        if device.state != DeviceState::Enrolled {
            eprintln!("{}: left management ({:?})", label(&device), device.state);
            return;
        }
    }
}
