//! Locks 10,000 simulated devices through the mock AMAPI, with the client-side rate
//! limiter off and at its default (1,000 requests per 100 s per project), and prints the
//! request rate, the total time, and the most requests any 100-second window held.
//!
//! `cargo bench -p mdm-android` (both runs; the limited one takes about 15 minutes, as the
//! quota demands). `ANDROID_BENCH_DEVICES` changes the number of devices,
//! `ANDROID_BENCH_MODES=off` (or `default`) runs one mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use mdm_android::Config;
use mdm_api::Service;
use mdm_api::internal::adapter::{ActionParams, DeliverAction};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::{
    AndroidBinding, GateDecision, GateRequest, GateResponse, PlatformRestriction, TenantPolicy,
};
use mdm_api::internal::inventory::{DeviceEnrolled, DevicesSeen};
use mdm_api::internal::{Grant, IntrospectRequest, IntrospectResponse};
use mdm_domain::{
    ActionId, ActionKind, ActionState, DeviceId, MdmAuthority, Platform, PlatformFamily, Role,
    TenantId, TokenId,
};
use mdm_e2e::android::{Hardware, MockGoogle, PushAuth, PushSubscription, Setup};
use mdm_runtime::config::Secret;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, ManualClock, Module};
use mdm_store::testing::{TestBackend, TestDatabase};
use serde_json::json;

const PROJECT: &str = "bench-project";
const SECRET: &str = "bench-push-secret";

#[derive(Default)]
struct Counters {
    enrolled: std::sync::Mutex<Vec<DeviceId>>,
    sent: AtomicUsize,
    done: AtomicUsize,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let devices: usize = std::env::var("ANDROID_BENCH_DEVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let modes = std::env::var("ANDROID_BENCH_MODES").unwrap_or_else(|_| "off,default".into());
    println!("android: issueCommand LOCK to {devices} simulated devices through the mock AMAPI");
    for mode in modes.split(',') {
        let limit = match mode.trim() {
            "off" => 0,
            "default" => Config::default().rate_limit_requests,
            other => panic!("unknown mode {other}"),
        };
        runtime.block_on(run(devices, limit));
    }
}

async fn run(devices: usize, limit: u32) {
    let clock_cell: Arc<OnceLock<ManualClock>> = Arc::new(OnceLock::new());
    let now_cell = clock_cell.clone();
    let mock = MockGoogle::start(Arc::new(move || {
        now_cell
            .get()
            .map_or_else(|| ManualClock::at_epoch_2026().now(), Clock::now)
    }))
    .await
    .unwrap();
    mock.set_auto_execute(false);
    mock.set_record_bodies(false);
    let key = mock.service_account(PROJECT).unwrap();
    let enterprise = mock.create_enterprise(PROJECT);
    let tenant = TenantId::new();

    let mut config = Config {
        api_base_url: mock.url(),
        rate_limit_requests: limit,
        worker_poll_ms: 20,
        worker_concurrency: 32,
        ..Config::default()
    };
    config.pubsub.token = Some(Secret::new(SECRET));
    let counters = Arc::new(Counters::default());
    let binding = AndroidBinding {
        enterprise_name: enterprise.clone(),
        service_account_key: key.clone(),
        pubsub_topic: None,
        notification_types: Vec::new(),
    };
    let db = TestDatabase::new(TestBackend::Sqlite).await.unwrap();
    let c = counters.clone();
    let app = TestApp::spawn_on(
        db,
        |config| {
            config.server.workers = 2;
            config.outbox.batch_size = 500;
        },
        move |ctx| {
            let android = mdm_android::module(ctx, &config)?;
            Ok(vec![
                android,
                enrollment(tenant, binding),
                inventory(c.clone()),
                dispatch(c),
            ])
        },
    )
    .await;
    let _ = clock_cell.set(app.clock.clone());
    app.wait_until_ready().await;
    mock.push_to(PushSubscription {
        endpoint: format!("{}{}", app.url, mdm_android::PUBSUB_PATH),
        auth: PushAuth::QueryToken(SECRET.into()),
        subscription: "projects/bench/subscriptions/push".into(),
    });

    // Attach the enterprise, make one token, enrol the devices (ENROLLMENT pushes).
    let http = reqwest::Client::new();
    let service = app.context.config.security.service_token.clone().unwrap();
    let bound = http
        .post(format!(
            "{}/internal/v1/android/enterprises",
            app.internal_url
        ))
        .bearer_auth(service.expose())
        .json(&json!({"tenantId": tenant, "serviceAccountKey": key, "enterpriseName": enterprise}))
        .send()
        .await
        .unwrap();
    assert_eq!(bound.status(), 200);
    let token: serde_json::Value = http
        .post(format!("{}{}", app.url, mdm_android::TOKENS_PATH))
        .bearer_auth(format!("admin-{tenant}"))
        .json(&json!({"profile": "corporateFullyManaged"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let value = token["value"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let enrolling: Vec<_> = (0..16)
        .map(|_| {
            let (mock, value, next) = (mock.clone(), value.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < devices {
                    mock.enroll(&value, Setup::CompanyDevice, Hardware::pixel())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in enrolling {
        task.await.unwrap();
    }
    wait(
        || counters.enrolled.lock().unwrap().len() >= devices,
        Duration::from_secs(300),
    )
    .await;
    println!(
        "  enrolled {devices} devices in {:.1} s (ENROLLMENT pushes, gate, DeviceEnrolled)",
        started.elapsed().as_secs_f64()
    );

    // Dispatch sends a lock to every device, through its outbox.
    mock.clear_requests();
    let targets = counters.enrolled.lock().unwrap().clone();
    let now = app.clock.now();
    let started = Instant::now();
    for chunk in targets.chunks(1000) {
        let outbox = app.context.outbox(Service::Dispatch);
        let chunk = chunk.to_vec();
        app.context
            .store
            .write(move |c| {
                for device in chunk {
                    let action = ActionId::new();
                    outbox.enqueue(
                        c,
                        &format!("bench:{action}"),
                        Some(&device.to_string()),
                        &DeliverAction {
                            action_id: action,
                            tenant_id: tenant,
                            device_id: device,
                            family: PlatformFamily::Android,
                            kind: ActionKind::RemoteLock,
                            params: ActionParams::default(),
                            priority: true,
                            expires_at: now + chrono::Duration::days(1),
                            requested_at: now,
                        },
                    )?;
                }
                Ok::<_, mdm_store::StoreError>(())
            })
            .await
            .unwrap();
    }
    wait(
        || counters.sent.load(Ordering::SeqCst) >= devices,
        Duration::from_secs(3600),
    )
    .await;
    let total = started.elapsed();
    let requests = mock.requests_to("devices.issueCommand");
    let ok = requests.iter().filter(|r| r.status == 200).count();
    let mut times: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    times.sort();
    let window = Duration::from_secs(100);
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    let span = times
        .last()
        .zip(times.first())
        .map_or(Duration::ZERO, |(l, f)| *l - *f);
    let label = if limit == 0 {
        "limiter off".to_owned()
    } else {
        format!("limiter at {limit} per 100 s")
    };
    println!(
        "  {label}: {ok} locks issued in {:.1} s total ({:.1} s between the first and last request): {:.1} requests/s; busiest 100-s window: {busiest} requests{}",
        total.as_secs_f64(),
        span.as_secs_f64(),
        ok as f64 / total.as_secs_f64(),
        if limit > 0 {
            if busiest <= limit as usize {
                " (limit honoured)"
            } else {
                " (LIMIT EXCEEDED)"
            }
        } else {
            ""
        },
    );
    app.stop().await;
    mock.stop().await;
}

async fn wait(done: impl Fn() -> bool, limit: Duration) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "the benchmark stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn enrollment(tenant: TenantId, binding: AndroidBinding) -> Module {
    let data = web::Data::new(binding);
    Module::new(Service::Enrollment).internal(move |cfg| {
        cfg.app_data(data.clone())
            .service(web::resource("/tenants/{id}/android").get(
                |b: web::Data<AndroidBinding>| async move { HttpResponse::Ok().json(b.get_ref()) },
            ))
            .service(
                web::resource("/tenants/{id}/policy").get(move || async move {
                    HttpResponse::Ok().json(TenantPolicy {
                        tenant_id: tenant,
                        authority: MdmAuthority::Standalone,
                        device_limit_per_user: 15,
                        platforms: vec![PlatformRestriction {
                            platform: Platform::Android,
                            allowed: true,
                            personal_allowed: true,
                        }],
                        apple_push_topic: None,
                        android_enterprise: None,
                        windows_enrollment_enabled: false,
                    })
                }),
            )
            .service(
                web::resource("/gate").post(|r: web::Json<GateRequest>| async move {
                    HttpResponse::Ok().json(GateResponse {
                        decisions: r.checks.iter().map(|_| GateDecision::allow(None)).collect(),
                    })
                }),
            )
            .service(web::resource("/tokens/introspect").post(
                |r: web::Json<IntrospectRequest>| async move {
                    let grant = r
                        .token
                        .strip_prefix("admin-")
                        .and_then(|t| t.parse::<TenantId>().ok())
                        .map(|t| Grant {
                            token_id: TokenId::new(),
                            role: Role::Admin,
                            tenant_id: Some(t),
                            user_id: None,
                        });
                    HttpResponse::Ok().json(IntrospectResponse {
                        active: grant.is_some(),
                        grant,
                    })
                },
            ));
    })
}

fn inventory(counters: Arc<Counters>) -> Module {
    Module::new(Service::Inventory).inbox(
        Inbox::new(Service::Inventory)
            .on::<DeviceEnrolled, _>(move |_, _, m| {
                counters.enrolled.lock().unwrap().push(m.device_id);
                Ok(None)
            })
            .on::<DevicesSeen, _>(|_, _, _| Ok(None)),
    )
}

fn dispatch(counters: Arc<Counters>) -> Module {
    Module::new(Service::Dispatch).inbox(Inbox::new(Service::Dispatch).on::<ActionReport, _>(
        move |_, _, m| {
            match m.state {
                ActionState::Sent => counters.sent.fetch_add(1, Ordering::SeqCst),
                _ => counters.done.fetch_add(1, Ordering::SeqCst),
            };
            Ok(None)
        },
    ))
}
