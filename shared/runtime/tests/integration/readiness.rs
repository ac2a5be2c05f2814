//! Readiness and shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use mdm_api::Service;
use mdm_api::internal::{Envelope, Message, MessageBatch};
use mdm_runtime::testing::{TestApp, test_config};
use mdm_runtime::{Application, Context, ManualClock, Module};
use mdm_store::test_on_both_backends;
use mdm_store::testing::{TestBackend, TestDatabase};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Behaviour, Ping, Receiver, held, modules};

async fn readyz(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn unready_while_the_database_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the database is down from the start.
    let mut config = test_config("postgres://mdm@127.0.0.1:1/mdm", dir.path());
    config.database.acquire_timeout_secs = 1;
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let receiver = Receiver::new(Behaviour::Apply);
    let app = Application::build(config, clock, &Service::ALL, modules(&receiver)).unwrap();
    let url = format!("http://{}", app.public_addr());
    let shutdown = app.shutdown_handle();
    let running = tokio::spawn(app.run());

    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );
    let (status, body) = readyz(&url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "database unreachable");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn unready_until_migrated(backend: TestBackend) {
    let Some(db) = TestDatabase::empty(backend) else {
        return;
    };
    let receiver = Receiver::new(Behaviour::Apply);
    let app = TestApp::spawn_on(
        db,
        |c| c.database.migrate_on_start = false,
        modules(&receiver),
    )
    .await;
    let (status, body) = readyz(&app.url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "database migrations pending");

    // A migration job runs (`mdm migrate`), and the server becomes ready.
    app.db().store().migrate().await.unwrap();
    app.wait_until_ready().await;
    app.stop().await;
}

#[tokio::test]
async fn unready_until_migrated_on_sqlite() {
    unready_until_migrated(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn unready_until_migrated_on_postgres() {
    unready_until_migrated(TestBackend::Postgres).await;
}

test_on_both_backends! {
    async fn shutdown_turns_unready_and_finishes_requests_in_flight(db) {
        let receiver = Receiver::new(Behaviour::Apply);
        // A drain delay longer than the test: it ends when the test hurries the shutdown.
        let app = TestApp::spawn_on(db, |c| c.server.drain_delay_secs = 3600, modules(&receiver)).await;
        app.wait_until_ready().await;

        let tag = app.url.rsplit(':').next().unwrap().to_owned();
        let slow = tokio::spawn(reqwest::get(format!("{}/api/test/slow?{tag}", app.url)));
        held().started(&tag).await;
        app.begin_shutdown();

        // During the drain delay the process still answers, but as unready.
        let (status, body) = readyz(&app.url).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "shutting down");

        // The request that was in flight when the listener closed completes normally.
        app.hurry_shutdown();
        wait_until_refused(&app.url).await;
        held().release(&tag);
        let response = slow.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "finished");

        app.stop().await;
    }
}

/// Waits until the public listener refuses new connections: it has stopped accepting.
async fn wait_until_refused(url: &str) {
    // A new connection each time: a kept-alive one would outlive the listener.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{url}/healthz")).send().await.is_ok() {
        assert!(Instant::now() < deadline, "the listener still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A public route that, like the services' handlers, calls another service's internal
/// API at the end of its work, once its test releases it: it delivers a ping to the
/// receiver.
fn calling_module(context: &Context) -> Module {
    let client = context.client.clone();
    Module::new(Service::Dispatch).public(move |cfg| {
        let client = client.clone();
        cfg.service(web::resource("/api/test/slow-call").get(
            move |req: actix_web::HttpRequest| {
                let client = client.clone();
                async move {
                    let tag = req.query_string().to_owned();
                    held().enter(&tag).await;
                    let batch = MessageBatch {
                        producer: Service::Dispatch,
                        messages: vec![Envelope {
                            key: tag,
                            kind: Ping::KIND.into(),
                            ordering_key: None,
                            payload: RawValue::from_string(r#"{"n":1}"#.into()).unwrap(),
                        }],
                    };
                    match client.deliver(Service::Inventory, &batch).await {
                        Ok(_) => HttpResponse::Ok().body("finished"),
                        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
                    }
                }
            },
        ));
    })
}

test_on_both_backends! {
    async fn requests_in_flight_reach_other_services_while_draining(db) {
        let receiver = Receiver::new(Behaviour::Apply);
        let probe = modules(&receiver);
        let app = TestApp::spawn_on(db, |c| c.server.drain_delay_secs = 3600, move |context| {
            let mut all = probe(context)?;
            all.push(calling_module(context));
            Ok(all)
        })
        .await;
        app.wait_until_ready().await;

        let tag = format!("call-{}", app.url.rsplit(':').next().unwrap());
        let slow = tokio::spawn(reqwest::get(format!("{}/api/test/slow-call?{tag}", app.url)));
        held().started(&tag).await;
        app.hurry_shutdown();

        // The call to the internal listener comes when the public listener has stopped
        // accepting: the internal one still answers it.
        wait_until_refused(&app.url).await;
        held().release(&tag);
        let response = slow.await.unwrap().unwrap();
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
        assert_eq!(receiver.applied(), 1);
        app.stop().await;
    }
}
