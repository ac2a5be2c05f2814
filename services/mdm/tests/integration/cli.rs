//! The admin command line against `mdm serve`, with devices from `mdm simulate`: human
//! and JSON output, and the exit codes scripts branch on (0 done, 2 usage, 3 not found,
//! 4 refused, 5 no valid token or not permitted, 6 server unreachable).

use std::path::Path;
use std::time::{Duration, Instant};

use mdm_store::testing::{TestBackend, TestDatabase};
use serde_json::Value;

use crate::serve::{bootstrap_operator, database, output};
use crate::{Ran, Running, Server, cli, free_port, mdm, with_database};

const PUBSUB_TOKEN: &str = "pubsub-secret-for-the-cli-tests";

/// A tenant's admin token, made on the command line as an operator would.
fn admin_token(dir: &Path, db: Option<&TestDatabase>) -> String {
    bootstrap_operator(dir, db);
    let mut create = mdm(dir);
    create.args(["tenants", "create", "--name", "Contoso"]);
    with_database(&mut create, db);
    let (ok, stdout, stderr) = output(&mut create);
    assert!(ok, "{stderr}");
    let tenant: Value = serde_json::from_str(&stdout).unwrap();
    let mut admin = mdm(dir);
    admin.args([
        "tokens",
        "create",
        "--role",
        "admin",
        "--tenant",
        tenant["id"].as_str().unwrap(),
    ]);
    with_database(&mut admin, db);
    let (ok, token, stderr) = output(&mut admin);
    assert!(ok, "{stderr}");
    token.trim().to_owned()
}

/// `mdm simulate` for `platform`, waiting until its devices are enrolled.
fn simulate(dir: &Path, server: &str, token: &str, extra: &[&str]) -> Running {
    let simulator = Running::spawn(
        mdm(dir)
            .args(["simulate", "--server", server, "--interval", "1"])
            .args(extra)
            .env("MDM_TOKEN", token),
        false,
    );
    simulator.wait_for_line("Ctrl-C stops them", Duration::from_secs(120));
    simulator
}

fn assert_code(ran: &Ran, code: i32) {
    assert_eq!(
        ran.code, code,
        "stdout: {}\nstderr: {}",
        ran.stdout, ran.stderr
    );
}

/// Devices of `os` as `devices list --os` shows them in JSON, once there are `count`.
fn devices_of(dir: &Path, server: &str, token: &str, os: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = cli(
            dir,
            server,
            token,
            &["devices", "list", "--os", os, "--output", "json"],
        );
        assert_code(&listed, 0);
        let ids: Vec<String> = listed.json()["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= count {
            return ids;
        }
        assert!(Instant::now() < deadline, "{os} devices never appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn admin_cli(backend: TestBackend) {
    let Some(db) = database(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = admin_token(d, db.as_ref());
    let amapi = format!("127.0.0.1:{}", free_port());
    let amapi_url = format!("http://{amapi}/");
    let mut server = Server::start(
        d,
        db.as_ref(),
        &[
            ("MDM_ANDROID__API_BASE_URL", amapi_url.as_str()),
            ("MDM_ANDROID__PUBSUB__TOKEN", PUBSUB_TOKEN),
            ("MDM_WINDOWS__CLIENT_CERT_HEADER", "X-Client-Cert"),
            // Pushes stay on this machine (and fail): the simulated devices poll.
            ("MDM_APPLE__APNS_URL", "https://127.0.0.1:9"),
            // A revoked token stops working within a second.
            ("MDM_SECURITY__TOKEN_CACHE_SECS", "1"),
        ],
    );
    let url = server.url.clone();
    let run = |args: &[&str]| cli(d, &url, &admin, args);

    // Authority: human and JSON.
    let shown = run(&["authority", "show"]);
    assert_code(&shown, 0);
    assert_eq!(shown.stdout, "MDM authority: none\n");
    let set = run(&["authority", "set", "standalone", "--output", "json"]);
    assert_code(&set, 0);
    assert_eq!(set.json()["mobileDeviceManagementAuthority"], "standalone");

    // Devices to act on.
    let mut android = simulate(
        d,
        &url,
        &admin,
        &[
            "--platform",
            "android",
            "--count",
            "2",
            "--amapi-listen",
            &amapi,
            "--pubsub-token",
            PUBSUB_TOKEN,
        ],
    );
    let mut windows = simulate(d, &url, &admin, &["--platform", "windows", "--count", "1"]);
    let phones = devices_of(d, &url, &admin, "android", 2);
    let desktop = devices_of(d, &url, &admin, "windows", 1).remove(0);

    // List and show.
    let listed = run(&["devices", "list"]);
    assert_code(&listed, 0);
    assert!(listed.stdout.starts_with("ID "), "{}", listed.stdout);
    assert_eq!(listed.stdout.lines().count(), 4, "{}", listed.stdout);
    assert!(listed.stdout.contains("Android") && listed.stdout.contains("Windows"));
    let shown = run(&["devices", "show", &desktop]);
    assert_code(&shown, 0);
    assert!(
        shown.stdout.contains("management state  managed"),
        "{}",
        shown.stdout
    );
    let shown = run(&["devices", "show", &phones[0], "--output", "json"]);
    assert_code(&shown, 0);
    assert_eq!(shown.json()["id"], phones[0].as_str());
    assert_eq!(shown.json()["operatingSystem"], "Android");

    // An action: accepted, then done once the phone carried it out.
    let locked = run(&["devices", "lock", &phones[0]]);
    assert_code(&locked, 0);
    assert!(
        locked.stdout.starts_with("remoteLock "),
        "{}",
        locked.stdout
    );
    assert!(locked.stdout.contains("accepted"), "{}", locked.stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let actions = run(&["devices", "actions", &phones[0], "--output", "json"]);
        assert_code(&actions, 0);
        if actions.json()["value"][0]["actionState"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", actions.stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    let actions = run(&["devices", "actions", &phones[0]]);
    assert_code(&actions, 0);
    let row = actions.stdout.lines().nth(1).unwrap();
    assert!(row.contains("remoteLock") && row.contains("done"), "{row}");

    // Refused (4): Windows desktops cannot be locked.
    let refused = run(&["devices", "lock", &desktop]);
    assert_code(&refused, 4);
    assert!(
        refused.stderr.contains("action_not_supported"),
        "{}",
        refused.stderr
    );

    // Bulk: the summary counts the refusals by reason.
    let devices = format!("{},{},{desktop}", phones[0], phones[1]);
    let bulk = run(&[
        "bulk",
        "syncDevice",
        "--devices",
        &devices,
        "--output",
        "json",
    ]);
    assert_code(&bulk, 0);
    let job = bulk.json();
    assert_eq!(job["state"], "completed");
    assert_eq!(
        (job["totalDevices"].as_u64(), job["accepted"].as_u64()),
        (Some(3), Some(3))
    );
    let bulk = run(&["bulk", "remoteLock", "--devices", &devices]);
    assert_code(&bulk, 0);
    assert!(
        bulk.stdout
            .contains("3 devices, 2 accepted, 1 refused (completed)"),
        "{}",
        bulk.stdout
    );
    assert!(
        bulk.stdout.contains("refused 1: action_not_supported"),
        "{}",
        bulk.stdout
    );
    let all_refused = run(&["bulk", "remoteLock", "--os", "windows"]);
    assert_code(&all_refused, 4);
    let both = run(&[
        "bulk",
        "remoteLock",
        "--devices",
        &desktop,
        "--os",
        "windows",
    ]);
    assert_code(&both, 4);
    assert!(both.stderr.contains("not both"), "{}", both.stderr);
    let neither = run(&["bulk", "remoteLock"]);
    assert_code(&neither, 4);
    assert!(
        neither.stderr.contains("a selector is needed") && !neither.stderr.contains("not both"),
        "{}",
        neither.stderr
    );

    // The tenant's actions view.
    let view = run(&["actions", "--action", "remoteLock", "--output", "json"]);
    assert_code(&view, 0);
    assert!(
        view.json()["value"].as_array().unwrap().len() >= 3,
        "{}",
        view.stdout
    );
    let view = run(&["actions"]);
    assert_code(&view, 0);
    assert!(view.stdout.starts_with("ACTION "), "{}", view.stdout);
    assert!(view.stdout.contains("syncDevice"), "{}", view.stdout);

    // Clean-up settings.
    let cleanup = run(&["cleanup", "show"]);
    assert_code(&cleanup, 0);
    assert_eq!(cleanup.stdout, "the clean-up rule is off\n");
    let cleanup = run(&["cleanup", "set", "120"]);
    assert_code(&cleanup, 0);
    assert_eq!(
        cleanup.stdout,
        "devices that have not checked in for 120 days are deleted\n"
    );
    assert_code(&run(&["cleanup", "set", "10"]), 4);
    let cleanup = run(&["cleanup", "show", "--output", "json"]);
    assert_eq!(
        cleanup.json()["deviceInactivityBeforeRetirementInDays"],
        120
    );
    assert_code(&run(&["cleanup", "off"]), 0);

    // Tokens through the API; a reader may not act (5), nor may a revoked token.
    let created = run(&["tokens", "create", "--role", "reader", "--output", "json"]);
    assert_code(&created, 0);
    let reader = created.json()["secret"].as_str().unwrap().to_owned();
    let reader_id = created.json()["id"].as_str().unwrap().to_owned();
    let tokens = run(&["tokens", "list"]);
    assert_code(&tokens, 0);
    assert!(
        tokens.stdout.contains("reader") && tokens.stdout.contains("active"),
        "{}",
        tokens.stdout
    );
    assert_code(&cli(d, &url, &reader, &["devices", "list"]), 0);
    assert_code(&cli(d, &url, &reader, &["devices", "sync", &desktop]), 5);
    let revoked = run(&["tokens", "revoke", &reader_id]);
    assert_code(&revoked, 0);
    assert_eq!(revoked.stdout, format!("token {reader_id} revoked\n"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while cli(d, &url, &reader, &["devices", "list"]).code != 5 {
        assert!(Instant::now() < deadline, "the revoked token still works");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Not found (3), bad token (5), usage (2).
    let missing = run(&["devices", "show", "01a20257-0000-7000-8000-000000000000"]);
    assert_code(&missing, 3);
    assert_code(&cli(d, &url, "mdm_not_a_token", &["devices", "list"]), 5);
    assert_code(&run(&["devices", "show", "not-a-device-id"]), 2);

    assert!(
        android.terminate(Duration::from_secs(20)),
        "simulate exits cleanly"
    );
    assert!(
        windows.terminate(Duration::from_secs(20)),
        "simulate exits cleanly"
    );
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(20)));
}

#[test]
fn admin_cli_on_sqlite() {
    admin_cli(TestBackend::Sqlite);
}

#[test]
fn admin_cli_on_postgres() {
    admin_cli(TestBackend::Postgres);
}

#[test]
fn without_a_server_or_token_the_exit_code_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = cli(
        dir.path(),
        "http://127.0.0.1:1",
        "mdm_x",
        &["devices", "list"],
    );
    assert_code(&unreachable, 6);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );
    let no_token = mdm(dir.path())
        .args(["--server", "http://127.0.0.1:1", "devices", "list"])
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(5));
    assert_code(
        &cli(
            dir.path(),
            "http://127.0.0.1:1",
            "mdm_x",
            &["devices", "frobnicate"],
        ),
        2,
    );
    assert_code(
        &cli(
            dir.path(),
            "http://127.0.0.1:1",
            "mdm_x",
            &["cleanup", "set", "many"],
        ),
        2,
    );
}
