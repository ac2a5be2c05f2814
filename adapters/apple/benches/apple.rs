//! Apple adapter benchmark (not a test): 10,000 simulated devices against a server
//! process of its own, on SQLite and on PostgreSQL (when MDM_TEST_DATABASE_URL is set).
//!
//! The server (the Apple adapter with small stand-ins for enrollment, inventory and
//! dispatch that only count) runs in a child process, so that its RSS is measured alone;
//! this process is the load generator (64 keep-alive HTTP/1.1 connections, like the
//! NanoMDM comparison) and the APNs mock. Devices present their certificate in the
//! forwarded `Client-Cert` header (RFC 9440); a last phase uses Mdm-Signature instead.
//!
//! `cargo bench -p mdm-apple --bench apple` (`APPLE_BENCH_DEVICES` to change the count).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::Service;
use mdm_api::internal::adapter::{ActionParams, DeliverAction};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::{GateDecision, GateRequest, GateResponse, PushCertificate};
use mdm_api::internal::inventory::{
    DeviceEnrolled, DeviceFactsReported, DeviceUnenrolled, DevicesSeen,
};
use mdm_domain::{ActionId, ActionKind, DeviceId, PlatformFamily, TenantId};
use mdm_e2e::apple::{MockApns, TestCa};
use mdm_runtime::Module;
use mdm_runtime::inbox::Inbox;
use mdm_store::testing::{TestBackend, TestDatabase};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::{X509, X509NameBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EPOCH_2026: i64 = 1_767_225_600;
const CONNECTIONS: usize = 64;

fn main() {
    if std::env::var("APPLE_BENCH_SERVER").is_ok() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(server());
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let devices: usize = std::env::var("APPLE_BENCH_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        println!("Apple adapter benchmark: {devices} devices, {CONNECTIONS} connections, 2 cores shared by server and load generator\n");
        run("sqlite", devices).await;
        if std::env::var("MDM_TEST_DATABASE_URL").is_ok() {
            run("postgres", devices).await;
        } else {
            println!("postgres: skipped (MDM_TEST_DATABASE_URL is not set)");
        }
    });
}

// ---- the server process ------------------------------------------------------------

fn counting(service: Service, counter: Arc<AtomicUsize>) -> Module {
    let (a, b, c, d, e) = (
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter,
    );
    let inbox = match service {
        Service::Dispatch => Inbox::new(service).on::<ActionReport, _>(move |_, _, _| {
            a.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }),
        _ => Inbox::new(service)
            .on::<DeviceEnrolled, _>(move |_, _, _| {
                b.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            })
            .on::<DeviceFactsReported, _>(move |_, _, _| {
                c.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            })
            .on::<DevicesSeen, _>(move |_, _, _| {
                d.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            })
            .on::<DeviceUnenrolled, _>(move |_, _, _| {
                e.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }),
    };
    Module::new(service).inbox(inbox)
}

async fn server() {
    let dir = std::path::PathBuf::from(std::env::var("APPLE_BENCH_DIR").unwrap());
    let backend = if std::env::var("APPLE_BENCH_BACKEND").unwrap() == "postgres" {
        TestBackend::Postgres
    } else {
        TestBackend::Sqlite
    };
    let tenant: TenantId = std::fs::read_to_string(dir.join("tenant"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let push = PushCertificate {
        topic: std::fs::read_to_string(dir.join("topic"))
            .unwrap()
            .trim()
            .to_owned(),
        certificate_pem: std::fs::read_to_string(dir.join("push.pem")).unwrap(),
        private_key_pem: std::fs::read_to_string(dir.join("push.key")).unwrap(),
        not_after: mdm_store::from_millis((EPOCH_2026 + 3650 * 86_400) * 1000),
    };
    // The enrollment service's own device CA (unused here: devices carry enterprise
    // identities).
    let ca_pem = TestCa::new("Enrollment device CA", EPOCH_2026)
        .unwrap()
        .cert
        .to_pem()
        .unwrap();
    let db = TestDatabase::new(backend).await.unwrap();
    let config = mdm_apple::Config {
        apns_url: std::fs::read_to_string(dir.join("apns_url"))
            .unwrap()
            .trim()
            .to_owned(),
        apns_ca_file: Some(dir.join("apns_ca.pem")),
        trust_forwarded_client_cert: true,
        trusted_identity_cas: vec![mdm_apple::config::TrustedCa {
            file: dir.join("ca.pem"),
            tenant_id: tenant,
        }],
        ..mdm_apple::Config::default()
    };
    let counter = Arc::new(AtomicUsize::new(0));
    let push = Arc::new(push);
    let app = mdm_runtime::testing::TestApp::spawn_on(
        db,
        |c| {
            c.server.workers = 2;
            c.server.keep_alive_secs = 75;
            c.database.max_connections = 8;
            c.outbox.poll_interval_ms = 100;
        },
        move |ctx| {
            let (module, _) = mdm_apple::module(ctx, &config)?;
            let ca = ca_pem.clone();
            let push = push.clone();
            let enrollment = Module::new(Service::Enrollment).internal(move |cfg| {
                let push = push.clone();
                let ca = ca.clone();
                cfg.service(web::resource("/gate").post(
                    |body: web::Json<GateRequest>| async move {
                        HttpResponse::Ok().json(GateResponse {
                            decisions: body
                                .checks
                                .iter()
                                .map(|_| GateDecision::allow(None))
                                .collect(),
                        })
                    },
                ))
                .service(
                    web::resource("/tenants/{id}/apple/pushCertificate").get(move || {
                        let push = push.clone();
                        async move { HttpResponse::Ok().json(&*push) }
                    }),
                )
                .service(web::resource("/ca/certificate").get(move || {
                    let der = X509::from_pem(&ca).unwrap().to_der().unwrap();
                    async move {
                        HttpResponse::Ok()
                            .json(serde_json::json!({ "certificate": STANDARD.encode(der) }))
                    }
                }));
            });
            Ok(vec![
                enrollment,
                counting(Service::Inventory, counter.clone()),
                counting(Service::Dispatch, counter.clone()),
                module,
            ])
        },
    )
    .await;
    app.wait_until_ready().await;
    let token = app
        .context
        .config
        .security
        .service_token
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    println!("READY {} {} {}", app.url, app.internal_url, token);
    std::io::stdout().flush().unwrap();
    // Until the parent closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await;
    let _ = app.stop().await;
}

// ---- the load generator ------------------------------------------------------------

struct Device {
    udid: String,
    header: String,
    cert: X509,
    key: PKey<Private>,
    device_id: Option<DeviceId>,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn issue(ca: &TestCa, key: &PKey<Private>, cn: &str) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = openssl::bn::BigNum::from_u32(rand::random::<u32>())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::from_unix(EPOCH_2026 - 86_400 * 30).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::from_unix(EPOCH_2026 + 86_400 * 3650).unwrap())
        .unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    b.build()
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            host: addr.to_owned(),
        }
    }

    async fn put(&mut self, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut request = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{headers}\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request).await.unwrap();
        self.read().await
    }

    async fn read(&mut self) -> (u16, Vec<u8>) {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap().to_owned();
                let status: u16 = head[9..12].parse().unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill().await;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return (status, body);
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn checkin(kind: &str, device: &Device, topic: &str) -> Vec<u8> {
    let extra = match kind {
        "Authenticate" => "<key>OSVersion</key><string>17.5.1</string><key>ProductName</key><string>iPhone15,2</string><key>SerialNumber</key><string>C02BENCH</string>".to_owned(),
        _ => format!(
            "<key>Token</key><data>{}</data><key>PushMagic</key><string>{}</string>",
            STANDARD.encode(openssl::sha::sha256(device.udid.as_bytes())),
            uuid::Uuid::new_v4()
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict><key>MessageType</key><string>{kind}</string><key>Topic</key><string>{topic}</string><key>UDID</key><string>{}</string>{extra}</dict></plist>",
        device.udid
    )
    .into_bytes()
}

fn report(udid: &str, status: &str, uuid: Option<&str>) -> Vec<u8> {
    let uuid = uuid
        .map(|u| format!("<key>CommandUUID</key><string>{u}</string>"))
        .unwrap_or_default();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict><key>Status</key><string>{status}</string><key>UDID</key><string>{udid}</string>{uuid}</dict></plist>").into_bytes()
}

fn command_uuid(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("<key>CommandUUID</key>")?;
    let rest = &text[at..];
    let start = rest.find("<string>")? + 8;
    let end = rest[start..].find("</string>")?;
    Some(rest[start..start + end].to_owned())
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// Runs `work` for every device over CONNECTIONS connections; answers the elapsed time
/// and the per-item latencies.
async fn phase<F, Fut>(addr: &str, devices: &Arc<Vec<Device>>, work: F) -> (Duration, Vec<Duration>)
where
    F: Fn(Conn, Arc<Vec<Device>>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Duration>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let conn = Conn::open(addr).await;
        let devices = devices.clone();
        let work = work.clone();
        tasks.push(tokio::spawn(
            async move { work(conn, devices, worker).await },
        ));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (elapsed, latencies)
}

async fn run(backend: &str, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa {
        key: ec_key(),
        cert: X509::builder().unwrap().build(),
    };
    // An EC CA (fast to issue 10,000 identities with), trusted as an enterprise CA.
    let ca = {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "Bench device CA")
            .unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(
            &openssl::bn::BigNum::from_u32(1)
                .unwrap()
                .to_asn1_integer()
                .unwrap(),
        )
        .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&ca.key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::from_unix(EPOCH_2026 - 86_400 * 365).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::from_unix(EPOCH_2026 + 86_400 * 3650).unwrap())
            .unwrap();
        b.append_extension(
            openssl::x509::extension::BasicConstraints::new()
                .critical()
                .ca()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        TestCa {
            cert: b.build(),
            key: ca.key,
        }
    };
    let push_ca = TestCa::new("Push CA", EPOCH_2026).unwrap();
    let apns = MockApns::start(&push_ca.cert, EPOCH_2026).await.unwrap();
    let tenant = TenantId::new();
    let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
    let (push_cert, push_key) = push_ca.push_cert(&topic, EPOCH_2026, 3650).unwrap();
    let write = |name: &str, data: &[u8]| std::fs::write(dir.path().join(name), data).unwrap();
    write("tenant", tenant.to_string().as_bytes());
    write("topic", topic.as_bytes());
    write("push.pem", &push_cert.to_pem().unwrap());
    write("push.key", &push_key.private_key_to_pem_pkcs8().unwrap());
    write("ca.pem", &ca.cert.to_pem().unwrap());
    write("apns_url", apns.url.as_bytes());
    write("apns_ca.pem", apns.tls_ca_pem.as_bytes());

    let started = Instant::now();
    let devices: Vec<Device> = (0..count)
        .map(|i| {
            let key = ec_key();
            let udid = format!("00008110-{:016X}", 0xBE00_0000_0000u64 + i as u64);
            let cert = issue(&ca, &key, &udid);
            let header = format!(
                "Client-Cert: :{}:\r\n",
                STANDARD.encode(cert.to_der().unwrap())
            );
            Device {
                udid,
                header,
                cert,
                key,
                device_id: None,
            }
        })
        .collect();
    let mut devices = Arc::new(devices);
    println!(
        "[{backend}] {count} device identities made in {:.1?}",
        started.elapsed()
    );

    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .env("APPLE_BENCH_SERVER", "1")
        .env("APPLE_BENCH_DIR", dir.path())
        .env("APPLE_BENCH_BACKEND", backend)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        parts.first(),
        Some(&"READY"),
        "the server did not start: {line}"
    );
    let addr = parts[1].trim_start_matches("http://").to_owned();
    let internal = parts[2].to_owned();
    let token = parts[3].to_owned();
    let mut peak = rss_kb(pid);

    // 1. Enrollment: Authenticate + TokenUpdate.
    let t = topic.clone();
    let (elapsed, _) = phase(&addr, &devices, move |mut conn, devices, worker| {
        let topic = t.clone();
        async move {
            for device in devices.iter().skip(worker).step_by(CONNECTIONS) {
                let headers = format!(
                    "Content-Type: application/x-apple-aspen-mdm-checkin\r\n{}",
                    device.header
                );
                let (status, body) = conn
                    .put(
                        "/mdm/apple/checkin",
                        &headers,
                        &checkin("Authenticate", device, &topic),
                    )
                    .await;
                assert_eq!(
                    status,
                    200,
                    "Authenticate: {}",
                    String::from_utf8_lossy(&body)
                );
                let (status, _) = conn
                    .put(
                        "/mdm/apple/checkin",
                        &headers,
                        &checkin("TokenUpdate", device, &topic),
                    )
                    .await;
                assert_eq!(status, 200);
            }
            Vec::new()
        }
    })
    .await;
    peak = peak.max(rss_kb(pid));
    println!(
        "[{backend}] enrollments (Authenticate + TokenUpdate): {:>8.0}/s  ({count} in {elapsed:.2?})",
        count as f64 / elapsed.as_secs_f64()
    );

    // The enrollment queued five inventory queries per device: answer them (a round trip
    // each, with facts reported to inventory).
    let (elapsed, _) = phase(&addr, &devices, |mut conn, devices, worker| async move {
        for device in devices.iter().skip(worker).step_by(CONNECTIONS) {
            let (_, mut body) = conn
                .put(
                    "/mdm/apple/connect",
                    &device.header,
                    &report(&device.udid, "Idle", None),
                )
                .await;
            while let Some(uuid) = command_uuid(&body) {
                body = conn
                    .put(
                        "/mdm/apple/connect",
                        &device.header,
                        &report(&device.udid, "Acknowledged", Some(&uuid)),
                    )
                    .await
                    .1;
            }
        }
        Vec::new()
    })
    .await;
    peak = peak.max(rss_kb(pid));
    println!(
        "[{backend}] inventory queries answered: {:>8.0} round trips/s",
        (count * 5) as f64 / elapsed.as_secs_f64()
    );

    // The device ids the server minted, then one action (rebootNow) per device through
    // the internal API.
    let http = reqwest::Client::new();
    let ids: Vec<DeviceId> = futures_util::stream::iter(devices.iter().map(|d| {
        let http = http.clone();
        let url = format!("{internal}/internal/v1/apple/channels/{}", d.udid);
        let token = token.clone();
        async move {
            let status: serde_json::Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status["deviceId"]
                .as_str()
                .unwrap()
                .parse::<DeviceId>()
                .unwrap()
        }
    }))
    .buffered(32)
    .collect()
    .await;
    Arc::get_mut(&mut devices)
        .unwrap()
        .iter_mut()
        .zip(ids)
        .for_each(|(d, id)| d.device_id = Some(id));
    let queued_at = Instant::now();
    futures_util::stream::iter(devices.iter().map(|d| {
        let http = http.clone();
        let token = token.clone();
        let internal = internal.clone();
        let id = d.device_id.unwrap();
        async move {
            let action = DeliverAction {
                action_id: ActionId::new(),
                tenant_id: tenant,
                device_id: id,
                family: PlatformFamily::Apple,
                kind: ActionKind::RebootNow,
                params: ActionParams::default(),
                priority: false,
                expires_at: mdm_store::from_millis((EPOCH_2026 + 86_400 * 30) * 1000),
                requested_at: mdm_store::from_millis(EPOCH_2026 * 1000),
            };
            let response = http
                .post(format!(
                    "{internal}/internal/v1/apple/devices/{id}/commands"
                ))
                .bearer_auth(&token)
                .json(&action)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    println!(
        "[{backend}] {count} actions queued through the internal API in {:.2?}",
        queued_at.elapsed()
    );

    // 2. Command round trips: Idle → command → Acknowledged → empty.
    let (elapsed, latencies) = phase(&addr, &devices, |mut conn, devices, worker| async move {
        let mut latencies = Vec::new();
        for device in devices.iter().skip(worker).step_by(CONNECTIONS) {
            let started = Instant::now();
            let (status, body) = conn
                .put(
                    "/mdm/apple/connect",
                    &device.header,
                    &report(&device.udid, "Idle", None),
                )
                .await;
            assert_eq!(status, 200);
            let uuid = command_uuid(&body).expect("a command");
            let (status, body) = conn
                .put(
                    "/mdm/apple/connect",
                    &device.header,
                    &report(&device.udid, "Acknowledged", Some(&uuid)),
                )
                .await;
            assert_eq!((status, body.len()), (200, 0));
            latencies.push(started.elapsed());
        }
        latencies
    })
    .await;
    peak = peak.max(rss_kb(pid));
    println!(
        "[{backend}] command round trips:       {:>8.0}/s  p50 {:.2?}  p99 {:.2?}",
        count as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );

    // 3. Idle polls with an empty queue (several rounds over all devices).
    let rounds = 5;
    let (elapsed, _) = phase(
        &addr,
        &devices,
        move |mut conn, devices, worker| async move {
            for _ in 0..rounds {
                for device in devices.iter().skip(worker).step_by(CONNECTIONS) {
                    let (status, body) = conn
                        .put(
                            "/mdm/apple/connect",
                            &device.header,
                            &report(&device.udid, "Idle", None),
                        )
                        .await;
                    assert_eq!((status, body.len()), (200, 0));
                }
            }
            Vec::new()
        },
    )
    .await;
    peak = peak.max(rss_kb(pid));
    println!(
        "[{backend}] idle polls (empty queue):  {:>8.0}/s",
        (count * rounds) as f64 / elapsed.as_secs_f64()
    );

    // 4. The same idle polls signed with Mdm-Signature (CMS, verified per request).
    let (elapsed, _) = phase(&addr, &devices, |mut conn, devices, worker| async move {
        for device in devices.iter().skip(worker).step_by(CONNECTIONS) {
            let body = report(&device.udid, "Idle", None);
            let none: Stack<X509> = Stack::new().unwrap();
            let signature = Pkcs7::sign(
                &device.cert,
                &device.key,
                &none,
                &body,
                Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY,
            )
            .unwrap();
            let header = format!(
                "Mdm-Signature: {}\r\n",
                STANDARD.encode(signature.to_der().unwrap())
            );
            let (status, _) = conn.put("/mdm/apple/connect", &header, &body).await;
            assert_eq!(status, 200);
        }
        Vec::new()
    })
    .await;
    peak = peak.max(rss_kb(pid));
    println!(
        "[{backend}] idle polls, Mdm-Signature: {:>8.0}/s (signing in the load generator included)",
        count as f64 / elapsed.as_secs_f64()
    );
    println!(
        "[{backend}] server RSS: {:.1} MB now, {:.1} MB peak (pushes sent to the mock: {})\n",
        rss_kb(pid) as f64 / 1024.0,
        peak as f64 / 1024.0,
        apns.pushes().len()
    );

    drop(child.stdin.take());
    let _ = child.wait();
}

use futures_util::StreamExt;
