//! The `mdm` binary as an operator runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod crash;
mod demo;
mod openapi;
mod restart;
mod serve;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdm_store::testing::TestDatabase;

/// `mdm` with a clean environment: only what the test sets.
pub fn mdm(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdm"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// Points `command` at `db` (SQLite tests use the default under ./data instead).
pub fn with_database(command: &mut Command, db: Option<&TestDatabase>) {
    if let Some(db) = db {
        command.env("MDM_DATABASE__URL", db.url());
    }
}

/// A tenant with the standalone authority and an admin token, made by the operator.
pub async fn tenant_admin(dir: &Path, db: Option<&TestDatabase>, server: &str) -> String {
    serve::bootstrap_operator(dir, db);
    let mut create = mdm(dir);
    create.args(["tenants", "create", "--name", "Contoso"]);
    with_database(&mut create, db);
    let (ok, stdout, stderr) = serve::output(&mut create);
    assert!(ok, "{stderr}");
    let tenant: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut admin = mdm(dir);
    admin.args(["tokens", "create", "--role", "admin", "--tenant"]);
    admin.arg(tenant["id"].as_str().unwrap());
    with_database(&mut admin, db);
    let (ok, token, stderr) = serve::output(&mut admin);
    assert!(ok, "{stderr}");
    let token = token.trim().to_owned();
    let set = mdm_runtime::testing::http_client()
        .put(format!("{server}/api/v1/organization/mdmAuthority"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "mobileDeviceManagementAuthority": "standalone" }))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{}", set.text().await.unwrap());
    token
}

/// A server started with `mdm serve` on free ports. Its log is kept: a test that fails
/// prints the warnings and errors it holds, and its last lines.
pub struct Server {
    pub child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(dir: &Path, db: Option<&TestDatabase>, extra: &[(&str, &str)]) -> Self {
        let mut command = mdm(dir);
        command
            .arg("serve")
            .env("MDM_SERVER__LISTEN", "127.0.0.1:0")
            .env("MDM_SERVER__INTERNAL_LISTEN", "127.0.0.1:0")
            .env("MDM_LOG__FORMAT", "json")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        with_database(&mut command, db);
        for (key, value) in extra {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server never said it was serving");
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["message"] == "serving" {
                break format!("http://{}", event["public"].as_str().unwrap());
            }
        };
        Self { child, url, log }
    }

    /// What a failing test shows of the log: its warnings and errors, and its last lines.
    fn print_log(&self) {
        let log = self.log.lock().unwrap();
        let last = log.len().saturating_sub(20);
        eprintln!(
            "--- mdm serve {}: warnings, errors and the last lines",
            self.url
        );
        for (n, line) in log.iter().enumerate() {
            let level = serde_json::from_str::<serde_json::Value>(line)
                .map(|event| event["level"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            if n >= last || !matches!(level.as_str(), "INFO" | "DEBUG" | "TRACE") {
                eprintln!("{line}");
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; answers whether it exited successfully.
    pub fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not exit within {limit:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.print_log();
        }
    }
}

/// A loopback port free right now (for a process configured with it before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a finished command said: exit code, stdout, stderr.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs an admin command line against `server` with `token`.
pub fn cli(dir: &Path, server: &str, token: &str, args: &[&str]) -> Ran {
    let out = mdm(dir)
        .args(["--server", server])
        .env("MDM_TOKEN", token)
        .args(args)
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A child process whose output lines arrive on a channel; killed when dropped.
pub struct Running {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Spawns `command` and follows its stdout (`from_stdout`) or stderr.
    pub fn spawn(command: &mut Command, from_stdout: bool) -> Self {
        if from_stdout {
            command.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        let reader: Box<dyn std::io::Read + Send> = if from_stdout {
            Box::new(child.stdout.take().unwrap())
        } else {
            Box::new(child.stderr.take().unwrap())
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// Waits (up to `limit`) for a line containing `text`; answers it.
    pub fn wait_for_line(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no line with {text:?} within {limit:?}; saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; answers whether it exited successfully.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the process did not exit within {limit:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
