//! `mdm serve`, `mdm migrate`, and bootstrapping tenants and tokens from the command line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mdm_store::testing::{TestBackend, TestDatabase};

use crate::{Server, mdm, with_database};

/// The database of a backend's test: `None` means SQLite under the working directory
/// (the embedded default).
pub fn database(backend: TestBackend) -> Option<Option<TestDatabase>> {
    match backend {
        TestBackend::Sqlite => Some(None),
        TestBackend::Postgres => TestDatabase::empty(TestBackend::Postgres).map(Some),
    }
}

pub fn output(command: &mut std::process::Command) -> (bool, String, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn bootstrap_operator(dir: &std::path::Path, db: Option<&TestDatabase>) -> String {
    let mut command = mdm(dir);
    command.args([
        "tokens",
        "create",
        "--role",
        "operator",
        "--description",
        "first",
    ]);
    with_database(&mut command, db);
    let (ok, stdout, stderr) = output(&mut command);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("shown only once"));
    stdout.trim().to_owned()
}

async fn serves_health_readiness_and_metrics(backend: TestBackend) {
    let Some(db) = database(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), db.as_ref(), &[]);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ready = false;
    for _ in 0..100 {
        if http
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready);
    let metrics = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"mdm_http_requests_total{listener="public",method="GET",route="/healthz",status="200"} 1"#), "{metrics}");
    assert!(metrics.contains("process_resident_memory_bytes"));
    if db.is_none() {
        assert!(
            dir.path().join("data/mdm.sqlite3").exists(),
            "SQLite under ./data by default"
        );
    }
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(20)));
}

#[tokio::test]
async fn serves_health_readiness_and_metrics_on_sqlite() {
    serves_health_readiness_and_metrics(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn serves_health_readiness_and_metrics_on_postgres() {
    serves_health_readiness_and_metrics(TestBackend::Postgres).await;
}

async fn cli_bootstrap(backend: TestBackend) {
    let Some(db) = database(backend) else { return };
    let dir = tempfile::tempdir().unwrap();

    let mut migrate = mdm(dir.path());
    migrate.arg("migrate");
    with_database(&mut migrate, db.as_ref());
    let (ok, _, stderr) = output(&mut migrate);
    assert!(ok && stderr.contains("applied"), "{stderr}");
    let (ok, _, stderr) = output(&mut migrate);
    assert!(ok && stderr.contains("up to date"), "{stderr}");

    let operator = bootstrap_operator(dir.path(), db.as_ref());
    let mut create = mdm(dir.path());
    create.args(["tenants", "create", "--name", "Contoso"]);
    with_database(&mut create, db.as_ref());
    let (ok, stdout, stderr) = output(&mut create);
    assert!(ok, "{stderr}");
    let tenant: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(tenant["mobileDeviceManagementAuthority"], "none");
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();

    let mut admin = mdm(dir.path());
    admin.args([
        "tokens", "create", "--role", "admin", "--tenant", &tenant_id,
    ]);
    with_database(&mut admin, db.as_ref());
    let (ok, admin_token, stderr) = output(&mut admin);
    assert!(ok, "{stderr}");

    let mut server = Server::start(dir.path(), db.as_ref(), &[]);
    let http = reqwest::Client::new();
    let mine: serde_json::Value = http
        .get(format!("{}/api/v1/tenants", server.url))
        .bearer_auth(admin_token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["value"][0]["displayName"], "Contoso");
    let all = http
        .get(format!("{}/api/v1/tenants", server.url))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 200);
    server.signal("-INT");
    assert!(server.wait(Duration::from_secs(20)));
}

#[tokio::test]
async fn cli_bootstrap_on_sqlite() {
    cli_bootstrap(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn cli_bootstrap_on_postgres() {
    cli_bootstrap(TestBackend::Postgres).await;
}

/// A request whose body is still arriving when SIGTERM comes completes normally; the
/// server answers 503 on /readyz while it drains; a second SIGTERM ends the drain delay,
/// and the request still completes although the listener has closed; then it exits
/// cleanly.
async fn sigterm_finishes_the_request_in_flight(backend: TestBackend) {
    let Some(db) = database(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let operator = bootstrap_operator(dir.path(), db.as_ref());
    // A drain delay longer than the test: the second SIGTERM ends it.
    let mut server = Server::start(
        dir.path(),
        db.as_ref(),
        &[("MDM_SERVER__DRAIN_DELAY_SECS", "3600")],
    );
    let address = server.url.trim_start_matches("http://").to_owned();
    // A new connection for each request, as a load balancer's probe makes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let readyz = async || {
        http.get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .status()
    };
    for _ in 0..100 {
        if readyz().await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = r#"{"displayName":"Created during shutdown"}"#;
    let (head, tail) = body.split_at(20);
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /api/v1/tenants HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {operator}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();

    server.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz().await != 503 {
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keep-alive connections are closed after their next answer, so that clients come
    // back through the load balancer to a ready replica.
    let mut probe = TcpStream::connect(&address).unwrap();
    write!(probe, "GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    server.signal("-TERM");
    while TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "the listener still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("Created during shutdown"));
    assert!(server.wait(Duration::from_secs(30)), "exits successfully");
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_on_sqlite() {
    sigterm_finishes_the_request_in_flight(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_on_postgres() {
    sigterm_finishes_the_request_in_flight(TestBackend::Postgres).await;
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = output(
        mdm(dir.path())
            .arg("migrate")
            .env("MDM_DATABSE__URL", "sqlite:x"),
    );
    assert!(!ok);
    assert!(stderr.contains("databse"), "{stderr}");

    std::fs::write(dir.path().join("mdm.toml"), "[server]\nlisten = 8080\n").unwrap();
    let (ok, _, stderr) = output(mdm(dir.path()).args(["--config", "mdm.toml", "migrate"]));
    assert!(!ok);
    assert!(stderr.contains("listen"), "{stderr}");

    let (ok, _, stderr) = output(mdm(dir.path()).args(["serve", "--only", "printers"]));
    assert!(!ok);
    assert!(stderr.contains("unknown service"), "{stderr}");
}

#[test]
fn secrets_are_not_printed_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = output(
        mdm(dir.path())
            .arg("migrate")
            .env(
                "MDM_DATABASE__URL",
                "postgres://mdm:hunter2@127.0.0.1:1/mdm",
            )
            .env("MDM_DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
    );
    assert!(!ok);
    assert!(
        !stderr.contains("hunter2") && !stdout.contains("hunter2"),
        "{stderr}"
    );
}
