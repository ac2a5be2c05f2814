//! The registry at scale: loads 1,000,000 devices into PostgreSQL, runs the inventory
//! service in-process, and prints latency percentiles of the list with filters (first
//! page and a deep page reached by `skipToken`), of a single-device read, of a bulk
//! selection, and the rate of batched check-ins.
//!
//! `MDM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench -p mdm-inventory`
//! (skipped with a message without it). Set `INVENTORY_BENCH_DEVICES` for another size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/integration/fakes.rs"]
mod fakes;

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use mdm_api::Service;
use mdm_api::internal::inventory::{DevicesSeen, Seen};
use mdm_api::internal::{Envelope, MessageBatch};
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementMode, ManagementState, MdmAuthority, Ownership, Platform,
    Role, TenantId, UserId,
};
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, ManualClock};
use mdm_store::schema::inv_devices;
use mdm_store::testing::{TEST_DATABASE_URL, TestBackend, TestDatabase};
use mdm_store::{DbConnection, StoreError, to_millis};

const TENANTS: usize = 10;
const SEQUENTIAL: usize = 2000;
const CONCURRENT_TASKS: usize = 8;
const CONCURRENT_EACH: usize = 250;

/// A device row as COPY writes it (every column explicit: no defaults).
#[derive(Insertable)]
#[diesel(table_name = inv_devices, treat_none_as_default_value = false)]
struct NewDevice {
    id: DeviceId,
    tenant_id: TenantId,
    enrollment_id: EnrollmentId,
    platform: Platform,
    os_version: Option<String>,
    ownership: Ownership,
    management_mode: Option<ManagementMode>,
    management_state: ManagementState,
    user_id: Option<UserId>,
    user_principal_name: Option<String>,
    device_name: Option<String>,
    model: Option<String>,
    manufacturer: Option<String>,
    serial_number: Option<String>,
    imei: Option<String>,
    is_passcode_present: Option<bool>,
    is_supervised: Option<bool>,
    is_encrypted: Option<bool>,
    directory_joined: bool,
    identity_certificate_expires_at: Option<i64>,
    enrolled_at: i64,
    last_sync_at: Option<i64>,
    state_changed_at: i64,
    updated_at: i64,
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn device(i: usize, tenants: &[TenantId], now: i64, rng: &mut Rng) -> NewDevice {
    const DAY: i64 = 86_400_000;
    // Windows 30 %, iOS 25 %, Android 25 %, macOS 12 %, iPadOS 8 %.
    let (platform, mode, os) = match rng.below(100) {
        0..30 => (
            Platform::Windows,
            Some(ManagementMode::Desktop),
            "10.0.22631.2861",
        ),
        30..55 => (Platform::Ios, None, "17.4.1"),
        55..80 => (Platform::Android, Some(ManagementMode::FullyManaged), "14"),
        80..92 => (Platform::MacOs, None, "14.4"),
        _ => (Platform::IPadOs, None, "17.4"),
    };
    let enrolled_at = now - (400 + rng.below(400) as i64) * DAY;
    let user = UserId::new();
    NewDevice {
        id: DeviceId::new(),
        tenant_id: tenants[i % tenants.len()],
        enrollment_id: EnrollmentId::new(),
        platform,
        os_version: Some(os.to_owned()),
        ownership: if rng.below(4) == 0 {
            Ownership::Personal
        } else {
            Ownership::Company
        },
        management_mode: mode,
        management_state: if rng.below(50) == 0 {
            ManagementState::Retired
        } else {
            ManagementState::Managed
        },
        user_id: Some(user),
        user_principal_name: Some(format!("user{i}@contoso.example")),
        device_name: Some(format!("{platform}-{i:07}")),
        model: Some("Model".to_owned()),
        manufacturer: Some("Maker".to_owned()),
        serial_number: Some(format!("SN{i:09}")),
        imei: None,
        is_passcode_present: Some(true),
        is_supervised: Some(false),
        is_encrypted: Some(true),
        directory_joined: platform == Platform::Windows,
        identity_certificate_expires_at: Some(now + 200 * DAY),
        enrolled_at,
        // Last check-ins spread over the past year.
        last_sync_at: Some(now - rng.below(365 * DAY as u64) as i64),
        state_changed_at: enrolled_at,
        updated_at: enrolled_at,
    }
}

/// COPYs `count` devices in transactions of 50,000.
async fn load(db: &TestDatabase, tenants: &[TenantId], count: usize, now: i64) {
    const CHUNK: usize = 50_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut done = 0;
    while done < count {
        let rows: Vec<NewDevice> = (done..(done + CHUNK).min(count))
            .map(|i| device(i, tenants, now, &mut rng))
            .collect();
        done += rows.len();
        db.store()
            .write(move |c| match c {
                DbConnection::Pg(pg) => diesel::copy_from(inv_devices::table)
                    .from_insertable(rows)
                    .execute(pg)
                    .map_err(StoreError::from),
                DbConnection::Sqlite(_) => Err(StoreError::Config("PostgreSQL only".into())),
            })
            .await
            .unwrap();
    }
    // What autovacuum does to a table in steady state: statistics, and the visibility
    // map that lets index-only scans skip the heap. VACUUM runs outside a transaction.
    db.store()
        .read(|c| {
            diesel::sql_query("VACUUM ANALYZE inv_devices")
                .execute(c)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
}

/// PostgreSQL's plan of `sql`, with timings and buffers.
async fn explain(db: &TestDatabase, sql: String) -> String {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let lines: Vec<Line> = db
        .store()
        .read(move |c| {
            diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
                .load(c)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    lines
        .into_iter()
        .map(|l| format!("    {}\n", l.line))
        .collect()
}

/// A bytea literal.
fn bytes(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("'\\x{hex}'::bytea")
}

/// Sorted latencies.
struct Sample(Vec<Duration>);

impl Sample {
    fn percentile(&self, p: usize) -> Duration {
        let index = (self.0.len() * p / 100).min(self.0.len() - 1);
        self.0[index]
    }

    fn line(&self, name: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{name:<58} n={:<5} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
            self.0.len(),
            ms(self.percentile(50)),
            ms(self.percentile(99)),
            ms(*self.0.last().unwrap()),
        )
    }
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Duration {
    let started = Instant::now();
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    let took = started.elapsed();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    took
}

/// Requests each of `urls` in turn (round robin), `SEQUENTIAL` times, one at a time.
async fn sequential(http: &reqwest::Client, urls: &[String], token: &str) -> Sample {
    let mut times = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        times.push(get(http, &urls[i % urls.len()], token).await);
    }
    times.sort();
    Sample(times)
}

/// `CONCURRENT_TASKS` clients at once, `CONCURRENT_EACH` requests each.
async fn concurrent(http: &reqwest::Client, urls: &[String], token: &str) -> Sample {
    let mut tasks = Vec::new();
    for t in 0..CONCURRENT_TASKS {
        let (http, urls, token) = (http.clone(), urls.to_vec(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(CONCURRENT_EACH);
            for i in 0..CONCURRENT_EACH {
                times.push(get(&http, &urls[(t * 7 + i) % urls.len()], &token).await);
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap());
    }
    times.sort();
    Sample(times)
}

#[tokio::main]
async fn main() {
    if std::env::var(TEST_DATABASE_URL).is_err() {
        println!(
            "inventory benchmark skipped: set {TEST_DATABASE_URL} (e.g. postgres://postgres@127.0.0.1/postgres)"
        );
        return;
    }
    let count: usize = std::env::var("INVENTORY_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = TestDatabase::new(TestBackend::Postgres).await.unwrap();
    let fakes = fakes::Fakes::default();
    let tenants: Vec<TenantId> = (0..TENANTS)
        .map(|_| fakes.tenant(MdmAuthority::Standalone))
        .collect();
    let now: DateTime<Utc> = ManualClock::at_epoch_2026().now();

    println!(
        "loading {count} devices across {TENANTS} tenants into PostgreSQL (COPY, 50,000 per transaction)..."
    );
    let started = Instant::now();
    load(&db, &tenants, count, to_millis(now)).await;
    let load_time = started.elapsed();
    println!(
        "loaded in {:.1} s ({:.0} devices/s), indexes included, then VACUUM ANALYZE",
        load_time.as_secs_f64(),
        count as f64 / load_time.as_secs_f64()
    );

    // The probes: tenant 0's Windows devices that have not checked in for 30 days.
    let tenant = tenants[0];
    let before = now - chrono::Duration::days(30);
    let before_ms = to_millis(before);
    let (matching, deep_token, tenant_ids): (i64, DeviceId, Vec<DeviceId>) = db
        .store()
        .read(move |c| {
            let filter = inv_devices::table
                .filter(inv_devices::tenant_id.eq(tenant))
                .filter(inv_devices::platform.eq(Platform::Windows))
                .filter(inv_devices::last_sync_at.lt(before_ms));
            let matching: i64 = filter.count().get_result(c)?;
            let deep: DeviceId = filter
                .select(inv_devices::id)
                .order(inv_devices::id)
                .offset(matching * 9 / 10)
                .first(c)?;
            let ids: Vec<DeviceId> = inv_devices::table
                .filter(inv_devices::tenant_id.eq(tenant))
                .select(inv_devices::id)
                .order(inv_devices::id)
                .load::<DeviceId>(c)?;
            Ok::<_, StoreError>((matching, deep, ids))
        })
        .await
        .unwrap();

    let sample_ids: Vec<DeviceId> = tenant_ids.iter().step_by(97).take(1000).copied().collect();
    // The plans of the list's query (as the service sends it: all columns, limit top + 1).
    let list_sql = |after: Option<DeviceId>| {
        let after = after.map_or(String::new(), |id| {
            format!(" AND id > {}", bytes(id.as_bytes()))
        });
        format!(
            "SELECT * FROM inv_devices WHERE tenant_id = {} AND platform = 'Windows' \
             AND last_sync_at < {before_ms}{after} ORDER BY id LIMIT 101",
            bytes(tenant.as_bytes())
        )
    };
    println!(
        "plan of the first page:\n{}",
        explain(&db, list_sql(None)).await
    );
    println!(
        "plan of the deep page:\n{}",
        explain(&db, list_sql(Some(deep_token))).await
    );
    let modules = fakes.clone();
    let app = TestApp::spawn_on(
        db,
        |config| {
            config.server.workers = 2;
            config.database.max_connections = 10;
        },
        move |ctx| {
            let config = mdm_inventory::Config::default();
            let mut all = vec![mdm_inventory::module(ctx, &config)];
            all.extend(modules.modules());
            Ok(all)
        },
    )
    .await;
    app.wait_until_ready().await;
    let token = fakes.token(Role::Admin, Some(tenant), None);
    let http = reqwest::Client::new();
    let list = format!("{}/api/v1/deviceManagement/managedDevices", app.url);
    let filter = format!(
        "operatingSystem=Windows&lastSyncBefore={}",
        before.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let first_page = vec![format!("{list}?{filter}")];
    let deep_page = vec![format!("{list}?{filter}&skipToken={deep_token}")];
    let single: Vec<String> = sample_ids.iter().map(|id| format!("{list}/{id}")).collect();
    let page: serde_json::Value = http
        .get(&deep_page[0])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "tenant 0: {} devices; {matching} match the filter; the deep page starts after match #{} and holds {} devices",
        count / TENANTS,
        matching * 9 / 10,
        page["value"].as_array().map_or(0, Vec::len),
    );

    // Warm up the connections, caches and plans.
    for urls in [&first_page, &deep_page, &single] {
        for url in urls.iter().take(50).cycle().take(100) {
            get(&http, url, &token).await;
        }
    }
    println!();
    println!("sequential ({SEQUENTIAL} requests each, one at a time):");
    println!(
        "{}",
        sequential(&http, &first_page, &token)
            .await
            .line("  list, operatingSystem + lastSyncBefore, first page")
    );
    println!(
        "{}",
        sequential(&http, &deep_page, &token)
            .await
            .line("  list, same filter, deep page (skipToken)")
    );
    println!(
        "{}",
        sequential(&http, &single, &token)
            .await
            .line("  one device (+ fake dispatch summary from memory)")
    );
    println!();
    println!("concurrent ({CONCURRENT_TASKS} clients x {CONCURRENT_EACH} requests):");
    println!(
        "{}",
        concurrent(&http, &first_page, &token)
            .await
            .line("  list, operatingSystem + lastSyncBefore, first page")
    );
    println!(
        "{}",
        concurrent(&http, &deep_page, &token)
            .await
            .line("  list, same filter, deep page (skipToken)")
    );
    println!(
        "{}",
        concurrent(&http, &single, &token)
            .await
            .line("  one device (+ fake dispatch summary from memory)")
    );

    // Bulk selection of a whole tenant (internal API), as bulk actions over a filter use it.
    let internal_token = app.context.config.security.service_token.clone().unwrap();
    let select = format!("{}/internal/v1/inventory/devices/select", app.internal_url);
    let mut times = Vec::new();
    let mut selected = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let answer: serde_json::Value = http
            .post(&select)
            .bearer_auth(internal_token.expose())
            .json(&serde_json::json!({ "tenantId": tenant, "filter": {} }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        times.push(started.elapsed());
        selected = answer["deviceIds"].as_array().map_or(0, Vec::len);
    }
    times.sort();
    println!();
    println!(
        "{}",
        Sample(times).line(&format!(
            "  internal devices/select, all {selected} devices of a tenant"
        ))
    );

    // Check-ins: batches of 5,000 as the adapters send them.
    let messages = format!("{}/internal/v1/inventory/messages", app.internal_url);
    let mut rng = Rng(42);
    let mut times = Vec::new();
    for round in 0..20 {
        let at = now + chrono::Duration::minutes(round);
        let seen: Vec<Seen> = (0..5000)
            .map(|_| Seen {
                device_id: tenant_ids[rng.below(tenant_ids.len() as u64) as usize],
                at,
            })
            .collect();
        let batch = MessageBatch {
            producer: Service::Apple,
            messages: vec![Envelope {
                key: format!("bench:seen:{}", uuid::Uuid::now_v7()),
                kind: "inventory.devices_seen".into(),
                ordering_key: None,
                payload: serde_json::value::to_raw_value(&DevicesSeen { seen }).unwrap(),
            }],
        };
        let started = Instant::now();
        let response = http
            .post(&messages)
            .bearer_auth(internal_token.expose())
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        times.push(started.elapsed());
    }
    times.sort();
    let sample = Sample(times);
    println!(
        "{}",
        sample.line("  DevicesSeen message of 5,000 check-ins (inbox, one transaction)")
    );
    println!(
        "  => about {:.0} check-ins/s at the median",
        5000.0 / sample.percentile(50).as_secs_f64()
    );
    // How many of those updates touched no index (heap-only); statistics arrive late.
    tokio::time::sleep(Duration::from_secs(2)).await;
    #[derive(QueryableByName)]
    struct Updates {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        updates: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        hot: i64,
    }
    let updates: Updates = app
        .context
        .store
        .read(|c| {
            diesel::sql_query(
                "SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot \
                 FROM pg_stat_user_tables WHERE relname = 'inv_devices'",
            )
            .get_result(c)
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    println!(
        "  => {} of {} device updates were heap-only (no index touched)",
        updates.hot, updates.updates
    );
    println!();
    println!("target: p99 under 50 ms for the list and the single read on this machine");
    app.stop().await;
}
