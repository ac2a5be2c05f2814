//! Exactly once across a crash: while bulk actions reach simulated devices of every
//! platform (`mdm simulate`, separate processes that outlive the server), `mdm serve` is
//! killed with SIGKILL and started again on the same database and port, twice. Every device
//! carries its action out exactly once (none lost, none twice), and every action ends
//! done. Apple and Android devices are locked; Windows desktops, which cannot be locked,
//! restart.
//!
//! The devices behave as the real ones do when a request fails: an Apple device sends
//! the report that did not get through at its next check-in, the Windows DM client sends
//! its message again, Google's Pub/Sub pushes notifications again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mdm_store::testing::TestBackend;
use serde_json::{Value, json};

use crate::serve::database;
use crate::{Running, Server, free_port, mdm, tenant_admin};

/// Simulated devices per platform.
const DEVICES: usize = 12;

/// Each platform's fleet: the `mdm simulate` platform, its devices' `operatingSystem`
/// values, the action asked, and what the simulator prints when a device carries it out.
struct Fleet {
    platform: &'static str,
    systems: &'static [&'static str],
    action: &'static str,
    carried_out: &'static str,
}

const FLEETS: [Fleet; 3] = [
    Fleet {
        platform: "android",
        systems: &["Android"],
        action: "remoteLock",
        carried_out: "LOCK",
    },
    Fleet {
        platform: "windows",
        systems: &["Windows"],
        action: "rebootNow",
        carried_out: "./Device/Vendor/MSFT/Reboot/RebootNow",
    },
    Fleet {
        platform: "apple",
        systems: &["iOS", "iPadOS", "macOS"],
        action: "remoteLock",
        carried_out: "DeviceLock",
    },
];

/// Starts one platform's simulated devices against `server`.
fn simulate(dir: &Path, server: &str, admin: &str, platform: &str, amapi: &str) -> Running {
    let mut command = mdm(dir);
    command
        .args(["simulate", "--platform", platform, "--interval", "1"])
        .args(["--count", &DEVICES.to_string(), "--server", server])
        .args(["--amapi-listen", amapi, "--pubsub-token", PUBSUB_TOKEN])
        .env("MDM_TOKEN", admin);
    Running::spawn(&mut command, false)
}

const PUBSUB_TOKEN: &str = "crash-test-pubsub-token";

/// How many times each device carried `command` out, by device, from a simulator's
/// output.
fn carried_out_by_device(lines: &[String], command: &str) -> BTreeMap<String, usize> {
    let mut times = BTreeMap::new();
    for line in lines {
        let Some((device, commands)) = line.split_once(": carried out ") else {
            continue;
        };
        let count = commands.split(", ").filter(|c| *c == command).count();
        if count > 0 {
            *times.entry(device.to_owned()).or_default() += count;
        }
    }
    times
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let answer = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    answer.json().await.unwrap()
}

/// The devices of a bulk job whose action is not done, with their platform and error.
async fn not_done(http: &reqwest::Client, url: &str, admin: &str, job: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for device in job["devices"].as_array().unwrap() {
        if device["actionState"] == "done" {
            continue;
        }
        let id = device["deviceId"].as_str().unwrap();
        let results = get(
            http,
            &format!("{url}/api/v1/deviceManagement/managedDevices/{id}/deviceActionResults"),
            admin,
        )
        .await;
        for result in results["value"].as_array().unwrap() {
            if result["id"] == device["actionId"] {
                lines.push(format!(
                    "{} {}: {} {} {}",
                    result["operatingSystem"],
                    id,
                    result["actionState"],
                    result["errorCode"],
                    result["errorDetail"]
                ));
            }
        }
    }
    lines
}

/// Asks for `action` on `devices` in one bulk job; answers the job's URL.
async fn bulk(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    action: &str,
    devices: &[&str],
) -> String {
    let asked = http
        .post(format!(
            "{url}/api/v1/deviceManagement/managedDevices/bulkAction"
        ))
        .bearer_auth(admin)
        .json(&json!({ "action": action, "deviceIds": devices }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    let job = asked.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("{url}/api/v1/deviceManagement/bulkActions/{job}")
}

async fn each_device_acts_once_although_the_server_was_killed(backend: TestBackend) {
    let Some(db) = database(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}");
    let amapi = format!("127.0.0.1:{}", free_port());
    let amapi_url = format!("http://{amapi}/");
    let env = [
        ("MDM_SERVER__LISTEN", listen.as_str()),
        ("MDM_SERVER__PUBLIC_URL", url.as_str()),
        // Nothing listens there: devices find their commands by checking in every second.
        ("MDM_APPLE__APNS_URL", "https://127.0.0.1:9"),
        ("MDM_ANDROID__API_BASE_URL", amapi_url.as_str()),
        ("MDM_ANDROID__PUBSUB__TOKEN", PUBSUB_TOKEN),
        ("MDM_WINDOWS__CLIENT_CERT_HEADER", "X-Client-Cert"),
        // A share of the test PostgreSQL's connections that leaves room for the others.
        ("MDM_DATABASE__MAX_CONNECTIONS", "6"),
        // The Windows users' passwords: hashed quickly, the test is not about them.
        ("MDM_ENROLLMENT__PASSWORD_HASH_ITERATIONS", "1000"),
        // What the killed process had claimed is taken over after seconds, not minutes;
        // a command whose notification was lost meanwhile is looked up after 2 s.
        ("MDM_OUTBOX__LEASE_SECS", "5"),
        ("MDM_OUTBOX__REQUEST_TIMEOUT_SECS", "2"),
        ("MDM_ANDROID__CLAIM_LEASE_SECS", "5"),
        ("MDM_ANDROID__REQUEST_TIMEOUT_SECS", "2"),
        ("MDM_ANDROID__OPERATION_POLL_SECS", "2"),
    ];
    let mut server = Server::start(d, db.as_ref(), &env);
    let admin = tenant_admin(d, db.as_ref(), &url).await;
    // One fleet enrols after the other: enrollment is the costly part of the test.
    let mut fleets = Vec::new();
    for fleet in &FLEETS {
        let running = simulate(d, &url, &admin, fleet.platform, &amapi);
        running.wait_for_line("Ctrl-C stops them", Duration::from_secs(300));
        fleets.push(running);
    }

    let http = mdm_runtime::testing::http_client();
    // Inventory learns of the enrolled devices through the outbox: wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let devices = loop {
        let listed = get(
            &http,
            &format!("{url}/api/v1/deviceManagement/managedDevices"),
            &admin,
        )
        .await;
        let devices = listed["value"].as_array().unwrap().clone();
        if devices.len() == 3 * DEVICES {
            break devices;
        }
        assert!(
            Instant::now() < deadline,
            "{} devices listed",
            devices.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut jobs = Vec::new();
    for fleet in &FLEETS {
        let ids: Vec<&str> = devices
            .iter()
            .filter(|d| {
                fleet
                    .systems
                    .contains(&d["operatingSystem"].as_str().unwrap())
            })
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), DEVICES, "{}", fleet.platform);
        jobs.push(bulk(&http, &url, &admin, fleet.action, &ids).await);
    }

    // Killed twice: once the first Android phone is locked (the others' commands are
    // on their way to Google), and again after the restart once the first Windows or
    // Apple device has acted (the others are being handed their commands).
    for watched in [0..1, 1..jobs.len()] {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut states = Vec::new();
            for job in &jobs {
                states.push(get(&http, job, &admin).await["actionStates"].clone());
            }
            if states[watched.clone()].iter().any(|s| !s["done"].is_null()) {
                eprintln!("killed with actions {states:?}");
                break;
            }
            assert!(Instant::now() < deadline, "no action done: {states:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(server); // SIGKILL, then wait for the process to be gone
        server = Server::start(d, db.as_ref(), &env);
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    for job in &jobs {
        loop {
            let progress = get(&http, job, &admin).await;
            let states = &progress["actionStates"];
            if progress["accepted"] == DEVICES && states["done"] == DEVICES {
                break;
            }
            // Ended: every device checked, and every accepted device's action over. (A
            // job whose devices are not yet checked has no action states at all.)
            let ended = progress["pending"] == 0
                && states
                    .as_object()
                    .unwrap()
                    .keys()
                    .all(|s| s == "done" || s == "failed");
            if ended || Instant::now() > deadline {
                let why = not_done(&http, &url, &admin, &progress).await;
                panic!("not every action done: {states}\n{}", why.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    for (fleet, running) in FLEETS.iter().zip(&mut fleets) {
        let platform = fleet.platform;
        assert!(running.terminate(Duration::from_secs(60)), "{platform}");
        // Everything it printed: the channel ends with its output.
        let lines: Vec<String> = running.lines.iter().collect();
        let times = carried_out_by_device(&lines, fleet.carried_out);
        let again: Vec<_> = times.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            again.is_empty(),
            "{platform} devices acted more than once: {again:?}"
        );
        assert_eq!(
            times.len(),
            DEVICES,
            "{platform}: only {} devices acted:\n{}",
            times.len(),
            lines.join("\n")
        );
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_acts_once_although_the_server_was_killed_sqlite() {
    each_device_acts_once_although_the_server_was_killed(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_acts_once_although_the_server_was_killed_postgres() {
    each_device_acts_once_although_the_server_was_killed(TestBackend::Postgres).await;
}
