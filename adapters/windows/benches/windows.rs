//! Management sessions per second with 10,000 simulated Windows devices.
//!
//! The benchmark runs the server in a child process (this executable again, with
//! `BENCH_ROLE=server`), so that the server's RSS is its own: the Windows adapter with
//! lean stand-ins for the enrollment service (gate, an EC CA), inventory and dispatch
//! (they count what they receive). The parent enrols the devices through the real
//! endpoints with the simulated client of `mdm-e2e`, runs one inventory session per
//! device, queues one action per device through dispatch's outbox, then measures: each
//! session is the device's opening message (Alert 1201, 1224, DevInfo), the server's
//! answer carrying the queued Exec, and the device's Status for it, recorded (committed)
//! before the server answers. The load generator speaks raw HTTP/1.1 with keep-alive.
//!
//! Run: `cargo bench -p mdm-windows --bench windows` (SQLite), with
//! `MDM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres` for PostgreSQL too.
//! `BENCH_DEVICES` (10000) and `BENCH_CONNECTIONS` (64) change the load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::internal::adapter::{ActionParams, DeliverAction};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::{
    AuthenticateUser, GateDecision, GateRequest, GateResponse, ResolvedUser, SignRequest,
    SignedCertificate, WindowsAuthPolicy, WindowsEnrollmentSettings,
};
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFactsReported, DevicesSeen};
use mdm_api::{ErrorCode, Service};
use mdm_domain::{ActionId, ActionKind, ActionState, DeviceId, PlatformFamily, TenantId, UserId};
use mdm_e2e::windows::{Edition, WindowsDevice};
use mdm_runtime::config::Secret;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::{ApiError, Application, Context, Module, SystemClock};
use mdm_store::testing::{TestBackend, TestDatabase};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::ExtendedKeyUsage;
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Req};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER: &str = "X-Client-Cert";
const PASSWORD: &str = "bench-password";

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("server") {
        server();
        return;
    }
    let devices: usize = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let db = runtime.block_on(TestDatabase::new(backend));
        let Some(db) = db else {
            println!("postgres: skipped (set MDM_TEST_DATABASE_URL)");
            continue;
        };
        runtime.block_on(run(backend, db, devices, connections));
    }
}

// ---- the server process ------------------------------------------------------------

struct Counters {
    sent: AtomicUsize,
    active: AtomicUsize,
    done: AtomicUsize,
    other: AtomicUsize,
    enrolled: AtomicUsize,
    facts: AtomicUsize,
    seen: AtomicUsize,
}

struct Ca {
    cert: X509,
    key: PKey<Private>,
}

fn ca() -> Ca {
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "Bench CA").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    Ca {
        cert: b.build(),
        key,
    }
}

fn sign(ca: &Ca, request: &SignRequest) -> SignedCertificate {
    let csr = X509Req::from_der(&STANDARD.decode(&request.csr).unwrap()).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", &request.common_name)
        .unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&csr.public_key().unwrap()).unwrap();
    let now = Asn1Time::days_from_now(0).unwrap();
    let end = Asn1Time::days_from_now(365).unwrap();
    b.set_not_before(&now).unwrap();
    b.set_not_after(&end).unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
        .unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now();
    SignedCertificate {
        serial: serial.to_hex_str().unwrap().to_string(),
        certificate: STANDARD.encode(b.build().to_der().unwrap()),
        ca_certificate: STANDARD.encode(ca.cert.to_der().unwrap()),
        not_before: now,
        not_after: now + chrono::Duration::days(365),
    }
}

fn lean_modules(ctx: &Context, counters: Arc<Counters>) -> Vec<Module> {
    let ca = Arc::new(ca());
    let tenant = TenantId::new();
    let user = UserId::new();
    let enrollment = Module::new(Service::Enrollment).internal(move |cfg| {
        let ca = ca.clone();
        cfg.route(
            "/gate",
            web::post().to(|body: web::Json<GateRequest>| async move {
                HttpResponse::Ok().json(GateResponse {
                    decisions: body
                        .checks
                        .iter()
                        .map(|_| GateDecision::allow(Some("bench@contoso.com".into())))
                        .collect(),
                })
            }),
        )
        .route(
            "/ca/sign",
            web::post().to(move |body: web::Json<SignRequest>| {
                let ca = ca.clone();
                async move { HttpResponse::Ok().json(sign(&ca, &body)) }
            }),
        )
        .route(
            "/users/resolve",
            web::post().to(move || async move {
                HttpResponse::Ok().json(ResolvedUser {
                    tenant_id: tenant,
                    user_id: user,
                    user_principal_name: "bench@contoso.com".into(),
                    licensed: true,
                })
            }),
        )
        .route(
            "/users/authenticate",
            web::post().to(move |body: web::Json<AuthenticateUser>| async move {
                if body.password == PASSWORD {
                    Ok(HttpResponse::Ok().json(ResolvedUser {
                        tenant_id: tenant,
                        user_id: user,
                        user_principal_name: body.user_principal_name.clone(),
                        licensed: true,
                    }))
                } else {
                    Err(ApiError::bare(ErrorCode::Unauthorized))
                }
            }),
        )
        .route(
            "/tenants/{id}/windows",
            web::get().to(|| async {
                HttpResponse::Ok().json(WindowsEnrollmentSettings {
                    automatic_enrollment: true,
                    auth_policy: WindowsAuthPolicy::OnPremise,
                    bulk_enrollment: false,
                })
            }),
        );
    });
    let (a, b, c) = (counters.clone(), counters.clone(), counters.clone());
    let inventory = Module::new(Service::Inventory).inbox(
        Inbox::new(Service::Inventory)
            .on::<DeviceEnrolled, _>(move |_, _, _| {
                a.enrolled.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            })
            .on::<DeviceFactsReported, _>(move |_, _, _| {
                b.facts.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            })
            .on::<DevicesSeen, _>(move |_, _, m| {
                c.seen.fetch_add(m.seen.len(), Ordering::Relaxed);
                Ok(None)
            }),
    );
    let reports = counters.clone();
    let stats = counters;
    let queue_ctx = ctx.clone();
    let dispatch = Module::new(Service::Dispatch)
        .inbox(Inbox::new(Service::Dispatch).on::<ActionReport, _>(move |_, _, m| {
            let counter = match m.state {
                ActionState::Sent => &reports.sent,
                ActionState::Active => &reports.active,
                ActionState::Done => &reports.done,
                _ => &reports.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }))
        .public(move |cfg| {
            let stats = stats.clone();
            let ctx = queue_ctx.clone();
            cfg.route("/bench/stats", web::get().to(move || {
                let s = stats.clone();
                async move {
                    HttpResponse::Ok().json(serde_json::json!({
                        "sent": s.sent.load(Ordering::Relaxed), "active": s.active.load(Ordering::Relaxed),
                        "done": s.done.load(Ordering::Relaxed), "other": s.other.load(Ordering::Relaxed),
                        "enrolled": s.enrolled.load(Ordering::Relaxed), "facts": s.facts.load(Ordering::Relaxed),
                        "seen": s.seen.load(Ordering::Relaxed),
                    }))
                }
            }))
            .route("/bench/queue", web::post().to(move |body: web::Json<Vec<DeviceId>>| {
                let ctx = ctx.clone();
                async move {
                    let outbox = ctx.outbox(Service::Dispatch);
                    let now = ctx.clock.now();
                    ctx.store.write(move |c| {
                        for device in body.iter() {
                            let id = ActionId::new();
                            outbox.enqueue(c, &format!("dispatch:deliver:{id}"), Some(&device.to_string()), &DeliverAction {
                                action_id: id, tenant_id: tenant, device_id: *device, family: PlatformFamily::Windows,
                                kind: ActionKind::RebootNow, params: ActionParams::default(), priority: false,
                                expires_at: now + chrono::Duration::days(1), requested_at: now,
                            })?;
                        }
                        Ok::<_, mdm_store::StoreError>(())
                    }).await.map_err(ApiError::from)?;
                    Ok::<_, ApiError>(HttpResponse::Accepted().finish())
                }
            }));
        });
    vec![enrollment, inventory, dispatch]
}

fn server() {
    let url = std::env::var("BENCH_DATABASE_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = mdm_runtime::testing::test_config(&url, dir.path());
        config.server.workers = 2;
        config.server.keep_alive_secs = 30;
        config.database.max_connections = 4;
        config.outbox = mdm_runtime::config::OutboxConfig::default();
        let windows = mdm_windows::Config {
            client_cert_header: Some(HEADER.into()),
            replica_sync_ms: 0,
            wns_token_url: "https://127.0.0.1:9/accesstoken.srf".into(),
            wns_client_id: Some("ms-app://s-1-15-2-1".into()),
            wns_client_secret: Some(Secret::new("x")),
            push_pfn: Some("Bench.MDM_8wekyb3d8bbwe".into()),
            ..mdm_windows::Config::default()
        };
        let counters = Arc::new(Counters {
            sent: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            other: AtomicUsize::new(0),
            enrolled: AtomicUsize::new(0),
            facts: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
        });
        let app = Application::build(config, Arc::new(SystemClock), &Service::ALL, |ctx| {
            let mut modules = lean_modules(ctx, counters.clone());
            modules.push(mdm_windows::module(ctx, &windows)?);
            Ok(modules)
        })
        .unwrap();
        let shutdown = app.shutdown_handle();
        println!("READY http://{}", app.public_addr());
        std::io::stdout().flush().unwrap();
        let running = tokio::spawn(app.run());
        // The parent closes stdin when it is done.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await
        .unwrap();
        shutdown.trigger();
        let _ = running.await;
    });
}

// ---- the load generator --------------------------------------------------------------

struct Child {
    process: std::process::Child,
    url: String,
}

fn spawn_server(database_url: &str) -> Child {
    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "server")
        .env("BENCH_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(url) = line.strip_prefix("READY ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Child { process, url }
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the load generator keeps per device.
struct Sim {
    device_id: String,
    inventory_id: DeviceId,
    cert_header: String,
    session: AtomicU64,
}

async fn stats(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(format!("{url}/bench/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_stat(http: &reqwest::Client, url: &str, key: &str, target: u64) {
    let started = Instant::now();
    while stats(http, url).await[key].as_u64().unwrap_or(0) < target {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{key} never reached {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(backend: TestBackend, db: TestDatabase, count: usize, connections: usize) {
    let name = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres => "postgres",
    };
    let mut child = spawn_server(db.url());
    let url = child.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let (idle_rss, _) = rss_kib(child.process.id());

    // Enrol through the real endpoints with the simulated client (one shared key).
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let sims: Arc<std::sync::Mutex<Vec<Sim>>> = Arc::default();
    let mut enrolling = Vec::new();
    for _ in 0..16 {
        let (url, key, next, sims, http) = (
            url.clone(),
            key.clone(),
            next.clone(),
            sims.clone(),
            http.clone(),
        );
        enrolling.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let mut device = WindowsDevice::with_client(
                    &url,
                    HEADER,
                    Edition::Desktop,
                    key.clone(),
                    http.clone(),
                );
                device.enroll("bench@contoso.com", PASSWORD).await.unwrap();
                let sim = Sim {
                    device_id: device.device_id.clone(),
                    inventory_id: device
                        .enrollment
                        .as_ref()
                        .unwrap()
                        .ent_dm_id
                        .parse()
                        .unwrap(),
                    cert_header: device.certificate_header().unwrap(),
                    session: AtomicU64::new(0),
                };
                sims.lock().unwrap().push(sim);
            }
        }));
    }
    for task in enrolling {
        task.await.unwrap();
    }
    let enrolled_in = started.elapsed();
    let sims: Arc<Vec<Sim>> = Arc::new(std::mem::take(&mut *sims.lock().unwrap()));
    let (after_enroll_rss, _) = rss_kib(child.process.id());

    let addr = url.trim_start_matches("http://").to_owned();
    // First sessions: each device answers its inventory Gets.
    let (warm, warm_latencies) = sessions(&addr, &sims, connections, Round::Inventory).await;
    // Extra rounds before the measured one (BENCH_EXTRA_ROUNDS, for profiling).
    let extra: u64 = std::env::var("BENCH_EXTRA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for round in 0..extra {
        queue(&http, &url, &sims).await;
        wait_stat(&http, &url, "sent", count as u64 * (round + 1)).await;
        sessions(&addr, &sims, connections, Round::Command).await;
    }
    // One action per device, through dispatch's outbox and the adapter's inbox.
    queue(&http, &url, &sims).await;
    wait_stat(&http, &url, "sent", count as u64 * (extra + 1)).await;
    // The measured round.
    let child_pid = child.process.id().to_string();
    let (server_cpu, generator_cpu) = (cpu_seconds(&child_pid), cpu_seconds("self"));
    let (elapsed, mut latencies) = sessions(&addr, &sims, connections, Round::Command).await;
    let server_cpu = cpu_seconds(&child_pid) - server_cpu;
    let generator_cpu = cpu_seconds("self") - generator_cpu;
    let (rss, peak) = rss_kib(child.process.id());
    let server_threads = threads(child.process.id());
    let done_at = Instant::now();
    wait_stat(&http, &url, "done", count as u64 * (extra + 1)).await;
    let relay_lag = done_at.elapsed();
    // Every status is in the database.
    let recorded: i64 = db
        .store()
        .read(|c| {
            use diesel::prelude::*;
            use mdm_store::schema::win_commands;
            win_commands::table
                .filter(win_commands::state.eq("done"))
                .count()
                .get_result(c)
                .map_err(mdm_store::StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(
        recorded as u64,
        count as u64 * (extra + 1),
        "every status recorded"
    );
    latencies.sort_unstable();
    let mut warm_latencies = warm_latencies;
    warm_latencies.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "windows/{name}: {count} devices enrolled in {:.1} s ({:.0}/s)",
        enrolled_in.as_secs_f64(),
        count as f64 / enrolled_in.as_secs_f64()
    );
    println!(
        "windows/{name}: inventory sessions (7 Gets answered): {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        count as f64 / warm.as_secs_f64(),
        pct(&warm_latencies, 0.5),
        pct(&warm_latencies, 0.99)
    );
    println!(
        "windows/{name}: management sessions (one queued command delivered, its status recorded): {:.0}/s over {} sessions with {connections} connections, p50 {:.2} ms, p99 {:.2} ms",
        count as f64 / elapsed.as_secs_f64(),
        count,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99)
    );
    println!(
        "windows/{name}: CPU per session: server {:.0} µs, load generator {:.0} µs: {:.0} sessions/s if both had the 2 cores to themselves (load average now {})",
        server_cpu * 1e6 / count as f64,
        generator_cpu * 1e6 / count as f64,
        2.0 * count as f64 / (server_cpu + generator_cpu),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    println!(
        "windows/{name}: server RSS {:.1} MiB at {count} devices (peak {:.1} MiB; idle {:.1} MiB, after enrollment {:.1} MiB; {server_threads} threads; MALLOC_ARENA_MAX={}); reports reached dispatch {:.1} s after the last session",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        after_enroll_rss as f64 / 1024.0,
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into()),
        relay_lag.as_secs_f64()
    );
    drop(child.process.stdin.take());
    let _ = child.process.wait();
}

async fn queue(http: &reqwest::Client, url: &str, sims: &[Sim]) {
    for chunk in sims.chunks(1000) {
        let ids: Vec<DeviceId> = chunk.iter().map(|s| s.inventory_id).collect();
        let response = http
            .post(format!("{url}/bench/queue"))
            .json(&ids)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    Inventory,
    Command,
}

/// Runs one session per device over `connections` keep-alive connections; answers the
/// time taken and each session's latency in microseconds.
async fn sessions(
    addr: &str,
    sims: &Arc<Vec<Sim>>,
    connections: usize,
    round: Round,
) -> (Duration, Vec<u64>) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, sims, next) = (addr.to_owned(), sims.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buffer = Vec::with_capacity(16 * 1024);
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sim) = sims.get(i) else { break };
                let began = Instant::now();
                session(&mut stream, &addr, &mut buffer, sim, round).await;
                latencies.push(began.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (started.elapsed(), latencies)
}

async fn post(
    stream: &mut TcpStream,
    addr: &str,
    buffer: &mut Vec<u8>,
    cert: &str,
    body: &str,
) -> String {
    let request = format!(
        "POST /ManagementServer/MDM.svc?mode=Maintenance&Platform=WoA HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.syncml.dm+xml\r\nUser-Agent: MSFT OMA DM Client/1.2.0.1\r\n{HEADER}: {cert}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    buffer.clear();
    let (head_end, length) = loop {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap();
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buffer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned()
}

/// The CmdIDs and LocURIs of the commands in a server message (a load generator's quick
/// scan, not a parser).
fn commands(answer: &str) -> Vec<(&'static str, String, String)> {
    let mut found = Vec::new();
    for verb in ["Exec", "Get"] {
        let open = format!("<{verb}><CmdID>");
        let mut rest = answer;
        while let Some(at) = rest.find(&open) {
            let after = &rest[at + open.len()..];
            let id = &after[..after.find('<').unwrap()];
            let loc_at = after.find("<LocURI>").unwrap() + "<LocURI>".len();
            let loc = &after[loc_at..loc_at + after[loc_at..].find('<').unwrap()];
            found.push((
                if verb == "Exec" { "Exec" } else { "Get" },
                id.to_owned(),
                loc.to_owned(),
            ));
            rest = after;
        }
    }
    found
}

async fn session(
    stream: &mut TcpStream,
    addr: &str,
    buffer: &mut Vec<u8>,
    sim: &Sim,
    round: Round,
) {
    let session = sim.session.fetch_add(1, Ordering::Relaxed) + 1;
    let header = |msg: u32| {
        format!(
            "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg}</MsgID><Target><LocURI>http://{addr}/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>{}</LocURI></Source></SyncHdr>",
            sim.device_id
        )
    };
    let opening = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type></Meta><Data>user</Data></Item></Alert><Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{}</Data></Item><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>VMware, Inc.</Data></Item><Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data>VMware7,1</Data></Item><Item><Source><LocURI>./DevInfo/DmV</LocURI></Source><Data>1.3</Data></Item><Item><Source><LocURI>./DevInfo/Lang</LocURI></Source><Data>en-US</Data></Item></Replace><Final/></SyncBody></SyncML>"#,
        header(1),
        sim.device_id
    );
    let answer = post(stream, addr, buffer, &sim.cert_header, &opening).await;
    let sent = commands(&answer);
    if round == Round::Command {
        assert!(
            sent.iter()
                .any(|(verb, _, loc)| *verb == "Exec" && loc.ends_with("RebootNow")),
            "{answer}"
        );
    }
    let mut reply = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#,
        header(2)
    );
    let mut id = 2;
    for (verb, cmd_id, loc) in &sent {
        let (code, value) = match (*verb, loc.as_str()) {
            ("Exec", _) => (200, None),
            ("Get", l) if l.ends_with("ChannelURI") => (404, None),
            ("Get", "./DevDetail/SwV") => (200, Some("10.0.19043.2364")),
            ("Get", _) => (200, Some("bench")),
            _ => (406, None),
        };
        reply.push_str(&format!("<Status><CmdID>{id}</CmdID><MsgRef>1</MsgRef><CmdRef>{cmd_id}</CmdRef><Cmd>{verb}</Cmd><Data>{code}</Data></Status>"));
        id += 1;
        if let Some(value) = value {
            reply.push_str(&format!("<Results><CmdID>{id}</CmdID><MsgRef>1</MsgRef><CmdRef>{cmd_id}</CmdRef><Item><Source><LocURI>{loc}</LocURI></Source><Data>{value}</Data></Item></Results>"));
            id += 1;
        }
    }
    reply.push_str("<Final/></SyncBody></SyncML>");
    let end = post(stream, addr, buffer, &sim.cert_header, &reply).await;
    assert!(
        !end.contains("<Exec>") && !end.contains("<Get>"),
        "the session did not end: {end}"
    );
}
