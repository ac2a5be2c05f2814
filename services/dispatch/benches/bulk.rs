//! Bulk lock of 100,000 devices: the time to accept the request, and the time until every
//! delivery message has been handed to the adapters. Prints numbers; asserts nothing.
//!
//! `cargo bench -p mdm-dispatch --bench bulk` (PostgreSQL too with MDM_TEST_DATABASE_URL).
//! Inventory and the adapters are stand-ins that answer from memory, so the numbers are
//! dispatch's own: the request, the worker's checks and writes, and the relay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use mdm_api::Service;
use mdm_api::internal::adapter::DeliverAction;
use mdm_api::internal::inventory::{
    DeviceRecord, DevicesLookup, DevicesLookupResponse, ManagementStateChanged,
};
use mdm_api::public::CreateToken;
use mdm_domain::{
    DeviceId, EnrollmentId, ManagementState, MdmAuthority, OsVersion, Ownership, Platform, Role,
    TenantId,
};
use mdm_enrollment::tokens::Issuer;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, Module};
use mdm_store::testing::{TestBackend, TestDatabase};

const DEVICES: usize = 100_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        runtime.block_on(run(backend));
    }
}

type Records = Arc<HashMap<DeviceId, DeviceRecord>>;

async fn run(backend: TestBackend) {
    let Some(db) = TestDatabase::new(backend).await else {
        println!("{backend:?}: skipped (set MDM_TEST_DATABASE_URL)");
        return;
    };
    let tenant = TenantId::new();
    let records: Records = Arc::new(
        (0..DEVICES)
            .map(|i| {
                let id = DeviceId::new();
                let record = DeviceRecord {
                    id,
                    tenant_id: tenant,
                    enrollment_id: EnrollmentId::new(),
                    platform: Platform::Ios,
                    os_version: Some("18.1".parse::<OsVersion>().unwrap()),
                    ownership: Ownership::Company,
                    management_mode: None,
                    management_state: ManagementState::Managed,
                    user_id: None,
                    user_principal_name: None,
                    is_passcode_present: Some(true),
                    directory_joined: false,
                    manufacturer: Some("Apple".into()),
                    model: Some("iPhone".into()),
                    device_name: Some(format!("iPhone {i}")),
                    serial_number: None,
                    enrolled_at: DateTime::<Utc>::default(),
                    last_sync_at: None,
                };
                (id, record)
            })
            .collect(),
    );
    let delivered = Arc::new(AtomicUsize::new(0));
    let (inventory_records, counter) = (records.clone(), delivered.clone());
    let app = TestApp::spawn_on(
        db,
        |c| {
            c.server.workers = 2;
            c.outbox.poll_interval_ms = 100;
            c.database.max_connections = 8;
        },
        move |ctx| {
            let dispatch = mdm_dispatch::Config {
                bulk_chunk: 5000,
                ..mdm_dispatch::Config::default()
            };
            Ok(vec![
                mdm_enrollment::module(ctx, &mdm_enrollment::Config::default()),
                mdm_dispatch::module(ctx, &dispatch),
                inventory(inventory_records),
                adapter(counter),
            ])
        },
    )
    .await;

    // The tenant of the devices, standalone, with an admin.
    let now = app.clock.now();
    let admin = app
        .context
        .store
        .write(move |c| {
            use diesel::prelude::*;
            diesel::insert_into(mdm_store::schema::enr_tenants::table)
                .values(mdm_store::models::enrollment::TenantRow {
                    id: tenant,
                    name: "Bench".into(),
                    mdm_authority: MdmAuthority::Standalone,
                    authority_changed_at: None,
                    created_at: mdm_store::to_millis(now),
                    device_limit_per_user: 5,
                })
                .execute(c)?;
            let token = CreateToken {
                role: Role::Admin,
                tenant_id: Some(tenant),
                user_id: None,
                description: String::new(),
                expires_in_days: None,
            };
            mdm_enrollment::tokens::create(c, Issuer::CommandLine, token, now)
        })
        .await
        .unwrap()
        .secret;

    let ids: Vec<DeviceId> = records.keys().copied().collect();
    let body = serde_json::json!({ "action": "remoteLock", "deviceIds": ids, "parameters": { "message": "Call IT" } });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = http
        .post(format!(
            "{}/api/v1/deviceManagement/managedDevices/bulkAction",
            app.url
        ))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let accepted = started.elapsed();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    while delivered.load(Ordering::SeqCst) < DEVICES {
        if started.elapsed() > Duration::from_secs(600) {
            println!(
                "{backend:?}: gave up after 10 minutes with {} delivered",
                delivered.load(Ordering::SeqCst)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handed_over = started.elapsed();
    println!(
        "{backend:?}: bulk lock of {DEVICES} devices accepted in {:.2} s (target 2 s); every delivery handed to the adapter after {:.2} s (target 10 s)",
        accepted.as_secs_f64(),
        handed_over.as_secs_f64()
    );
    app.stop().await;
}

fn inventory(records: Records) -> Module {
    let inbox = Inbox::new(Service::Inventory).on::<ManagementStateChanged, _>(|_, _, _| Ok(None));
    Module::new(Service::Inventory)
        .internal(move |cfg| {
            cfg.app_data(web::Data::new(records.clone()))
                .service(web::resource("/devices/lookup").post(lookup));
        })
        .inbox(inbox)
}

async fn lookup(records: web::Data<Records>, body: web::Json<DevicesLookup>) -> HttpResponse {
    let devices = body
        .device_ids
        .iter()
        .filter_map(|id| records.get(id).cloned())
        .collect();
    HttpResponse::Ok().json(DevicesLookupResponse { devices })
}

fn adapter(delivered: Arc<AtomicUsize>) -> Module {
    let inbox = Inbox::new(Service::Apple).on::<DeliverAction, _>(move |_, _, _| {
        delivered.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    });
    Module::new(Service::Apple).inbox(inbox)
}
