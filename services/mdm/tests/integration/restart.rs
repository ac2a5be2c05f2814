//! Zero-downtime restarts: two replicas of the whole server on one PostgreSQL database
//! behind a balancer that, like a Kubernetes Service, opens each new connection to a
//! ready replica. Simulated Windows devices check in and an admin keeps asking for
//! actions while one replica gets SIGTERM: no device session fails, every action asked
//! for is accepted and carried out, and the other replica takes over the background jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mdm_store::testing::{TestBackend, TestDatabase};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::{Running, Server, mdm, tenant_admin};

/// Seconds a stopping replica keeps serving, unready, before it closes its listener.
const DRAIN_SECS: &str = "3";

/// A replica as the balancer sees it.
struct Backend {
    address: String,
    ready: AtomicBool,
}

/// Sends every new connection to the first ready backend; a backend's readiness is its
/// `/readyz`, polled every 100 ms (as a readiness probe, only faster).
struct Balancer {
    url: String,
    listener: Option<TcpListener>,
}

impl Balancer {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self {
            url,
            listener: Some(listener),
        }
    }

    fn start(&mut self, urls: &[&str]) {
        let backends: Arc<Vec<Backend>> = Arc::new(
            urls.iter()
                .map(|url| Backend {
                    address: url.trim_start_matches("http://").to_owned(),
                    ready: AtomicBool::new(false),
                })
                .collect(),
        );
        let probed = backends.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                for backend in probed.iter() {
                    let ready = http
                        .get(format!("http://{}/readyz", backend.address))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    backend.ready.store(ready, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let listener = self.listener.take().unwrap();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Some(backend) = backends.iter().find(|b| b.ready.load(Ordering::SeqCst)) else {
                    continue; // no ready replica: the connection is refused
                };
                let address = backend.address.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&address).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }
}

/// The count of `mdm_job_runs_total` samples for `job` in a replica's metrics.
async fn job_runs(server_url: &str, job: &str) -> u64 {
    let text = reqwest::get(format!("{server_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("mdm_job_runs_total{") && line.contains(&format!("name=\"{job}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|runs| runs as u64)
        .sum()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stops_under_load_and_nothing_is_lost_on_postgres() {
    let Some(db) = TestDatabase::new(TestBackend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut balancer = Balancer::bind().await;
    let env = [
        ("MDM_SERVER__PUBLIC_URL", balancer.url.as_str()),
        ("MDM_SERVER__DRAIN_DELAY_SECS", DRAIN_SECS),
        ("MDM_WINDOWS__CLIENT_CERT_HEADER", "X-Client-Cert"),
    ];
    // The first replica generates the shared keys into the data directory and takes
    // every job's lease; the second shares the directory (the keys) and the database.
    let mut first = Server::start(d, Some(&db), &env);
    wait_until(
        "the first replica runs its jobs",
        Duration::from_secs(30),
        || {
            let url = first.url.clone();
            async move { job_runs(&url, "runtime-housekeeping").await > 0 }
        },
    )
    .await;
    let mut second = Server::start(d, Some(&db), &env);
    balancer.start(&[&first.url, &second.url]);
    let admin = tenant_admin(d, Some(&db), &balancer.url).await;

    let mut devices = Running::spawn(
        mdm(d)
            .args(["simulate", "--platform", "windows", "--count", "6"])
            .args(["--interval", "1", "--server", &balancer.url])
            .env("MDM_TOKEN", &admin),
        false,
    );
    devices.wait_for_line("Ctrl-C stops them", Duration::from_secs(120));
    let http = reqwest::Client::new();
    let mut ids: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.len() < 6 {
        assert!(Instant::now() < deadline, "the devices never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listed: Value = http
            .get(format!(
                "{}/api/v1/deviceManagement/managedDevices",
                balancer.url
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids = listed["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
    }
    assert_eq!(job_runs(&second.url, "runtime-housekeeping").await, 0);

    // The admin asks for an action every 100 ms, before, during and after the stop.
    let asking = Arc::new(AtomicBool::new(true));
    let admin_loop = {
        let (http, url, admin, ids, asking) = (
            http.clone(),
            balancer.url.clone(),
            admin.clone(),
            ids.clone(),
            asking.clone(),
        );
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut round = 0;
            while asking.load(Ordering::SeqCst) {
                let device = &ids[round % ids.len()];
                round += 1;
                let answer = http
                    .post(format!(
                        "{url}/api/v1/deviceManagement/managedDevices/{device}/syncDevice"
                    ))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("an admin request failed");
                let status = answer.status();
                let body: Value = answer.json().await.unwrap();
                assert_eq!(status, 202, "{body}");
                accepted.push((device.clone(), body["id"].as_str().unwrap().to_owned()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            accepted
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    first.signal("-TERM");
    let stopped = tokio::task::spawn_blocking(move || first.wait(Duration::from_secs(60)));
    assert!(stopped.await.unwrap(), "the stopped replica exits cleanly");
    tokio::time::sleep(Duration::from_secs(2)).await;
    asking.store(false, Ordering::SeqCst);
    let accepted = admin_loop.await.unwrap();
    assert!(accepted.len() > 30, "only {} actions asked", accepted.len());

    // Every accepted action reaches its device through the remaining replica.
    wait_until(
        "every accepted action done",
        Duration::from_secs(60),
        || {
            let (http, url, admin) = (http.clone(), second.url.clone(), admin.clone());
            let accepted = accepted.clone();
            async move {
                for device in ids_of(&accepted) {
                    let results: Value = http
                    .get(format!(
                        "{url}/api/v1/deviceManagement/managedDevices/{device}/deviceActionResults"
                    ))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                    let done = |id: &str| {
                        results["value"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r["id"].as_str() == Some(id) && r["actionState"] == "done")
                    };
                    if !accepted
                        .iter()
                        .filter(|(d, _)| *d == device)
                        .all(|(_, id)| done(id))
                    {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    // The remaining replica took the jobs over.
    wait_until(
        "the second replica runs the jobs",
        Duration::from_secs(30),
        || {
            let url = second.url.clone();
            async move { job_runs(&url, "runtime-housekeeping").await > 0 }
        },
    )
    .await;

    // No device session failed at any point.
    assert!(devices.terminate(Duration::from_secs(30)));
    let said: Vec<String> = devices.lines.try_iter().collect();
    let failures: Vec<&String> = said.iter().filter(|l| l.contains("failed")).collect();
    assert!(failures.is_empty(), "device requests failed: {failures:#?}");
    second.signal("-TERM");
    assert!(second.wait(Duration::from_secs(30)));
}

fn ids_of(accepted: &[(String, String)]) -> Vec<String> {
    let mut devices: Vec<String> = accepted.iter().map(|(d, _)| d.clone()).collect();
    devices.sort();
    devices.dedup();
    devices
}
