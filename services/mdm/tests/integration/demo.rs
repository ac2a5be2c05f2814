//! `mdm demo` as someone trying the project runs it: the printed token works, the
//! simulated devices appear, and a remote lock sent through the CLI reaches `done`.

use std::time::{Duration, Instant};

use crate::{Running, cli, free_port, mdm};

#[test]
fn demo_devices_appear_and_carry_out_a_remote_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{}", free_port());
    let mut demo = Running::spawn(
        mdm(dir.path()).args([
            "demo",
            "--listen",
            server.trim_start_matches("http://"),
            "--interval",
            "2",
        ]),
        true,
    );
    let line = demo.wait_for_line("admin token: ", Duration::from_secs(120));
    let token = line.rsplit(' ').next().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    let devices = loop {
        let listed = cli(
            dir.path(),
            &server,
            &token,
            &["devices", "list", "--output", "json"],
        );
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        let devices = listed.json()["value"].as_array().unwrap().clone();
        if devices.len() == 7 || Instant::now() > deadline {
            break devices;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let systems: Vec<&str> = devices
        .iter()
        .map(|d| d["operatingSystem"].as_str().unwrap())
        .collect();
    for (os, count) in [("iOS", 2), ("macOS", 1), ("Android", 2), ("Windows", 2)] {
        assert_eq!(
            systems.iter().filter(|s| **s == os).count(),
            count,
            "{systems:?}"
        );
    }

    let iphone = devices
        .iter()
        .find(|d| d["operatingSystem"] == "iOS")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let locked = cli(
        dir.path(),
        &server,
        &token,
        &["devices", "lock", &iphone, "--output", "json"],
    );
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    let action = locked.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let actions = cli(
            dir.path(),
            &server,
            &token,
            &["devices", "actions", &iphone, "--output", "json"],
        );
        assert_eq!(actions.code, 0, "{}", actions.stderr);
        let state = actions.json()["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == action.as_str())
            .map(|a| a["actionState"].as_str().unwrap().to_owned());
        if state.as_deref() == Some("done") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock never reached done: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        demo.terminate(Duration::from_secs(30)),
        "the demo exits cleanly on SIGTERM"
    );
}
