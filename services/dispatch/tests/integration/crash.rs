//! A relay killed between commit and delivery: every action still reaches its adapter,
//! exactly once in effect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdm_api::internal::adapter::DeliverAction;
use mdm_api::{InternalClient, Service, ServiceUrls};
use mdm_domain::{ActionId, Platform};
use mdm_runtime::config::OutboxConfig;
use mdm_runtime::inbox::Inbox;
use mdm_runtime::metrics::Metrics;
use mdm_runtime::outbox::Relay;
use mdm_runtime::testing::TestApp;
use mdm_runtime::{Clock, Module};
use mdm_store::test_on_both_backends;
use mdm_store::testing::{TestBackend, TestDatabase};

use crate::Harness;
use crate::fakes::NewDevice;

/// An Apple adapter that applies deliveries slowly on request and counts each action.
#[derive(Clone, Default)]
struct SlowAdapter {
    applied: Arc<Mutex<Vec<ActionId>>>,
    slow: Arc<AtomicBool>,
    entered: Arc<AtomicUsize>,
}

impl SlowAdapter {
    fn module(&self) -> Module {
        let me = self.clone();
        let inbox = Inbox::new(Service::Apple).on::<DeliverAction, _>(move |_, _, message| {
            me.entered.fetch_add(1, Ordering::SeqCst);
            // The first message of the batch holds the transaction (and the answer) a while.
            if me.slow.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(800));
            }
            me.applied.lock().unwrap().push(message.action_id);
            Ok(None)
        });
        Module::new(Service::Apple).inbox(inbox)
    }
}

test_on_both_backends! {
    async fn a_relay_crash_loses_and_doubles_nothing(db) {
        // Dispatch writes deliveries; its own relay is off so the test drives one by hand.
        let backend = match db.store().backend() {
            mdm_store::Backend::Postgres => TestBackend::Postgres,
            mdm_store::Backend::Sqlite => TestBackend::Sqlite,
        };
        let h = Harness::start_with(db, |c| c.outbox.relay = false).await;
        let adapter = SlowAdapter::default();
        let modules = adapter.clone();
        let adapter_app = TestApp::spawn_on(TestDatabase::new(backend).await.unwrap(), |_| {}, move |_| Ok(vec![modules.module()])).await;

        let mut actions = Vec::new();
        for _ in 0..20 {
            let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
            let (status, body) = h.act(phone, "remoteLock", None).await;
            assert_eq!(status, 202);
            actions.push(body["id"].as_str().unwrap().parse::<ActionId>().unwrap());
        }

        let relay = || {
            let mut urls = ServiceUrls::new();
            urls.set(Service::Apple, &adapter_app.internal_url);
            let credential = adapter_app.context.config.security.service_token.clone().unwrap();
            let client = InternalClient::new(urls, credential.expose().to_owned(), Duration::from_secs(5)).unwrap();
            Relay::new(
                h.app.context.store.clone(),
                client,
                Arc::new(h.app.clock.clone()),
                OutboxConfig { lease_secs: 60, ..OutboxConfig::default() },
                Metrics::new().unwrap(),
                Arc::new(tokio::sync::Notify::new()),
            )
        };

        // The relay hands the batch over and dies before it can record the delivery.
        adapter.slow.store(true, Ordering::SeqCst);
        let doomed = relay();
        let running = tokio::spawn(async move { doomed.run_once().await });
        while adapter.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        for _ in 0..200 {
            if adapter.applied.lock().unwrap().len() == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(adapter.applied.lock().unwrap().len(), 20, "the adapter committed the batch");

        // Restarted, the relay delivers again once the dead one's lease is over; the adapter
        // recognises every key.
        let restarted = relay();
        assert_eq!(restarted.run_once().await.unwrap().claimed, 0, "the lease still holds");
        h.app.clock.advance(chrono::Duration::seconds(61));
        let pass = restarted.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.delivered), (20, 20));
        assert_eq!(restarted.run_once().await.unwrap().claimed, 0, "nothing left");
        let applied = adapter.applied.lock().unwrap().clone();
        for action in &actions {
            assert_eq!(applied.iter().filter(|a| *a == action).count(), 1, "action {action} applied exactly once");
        }
        let _ = h.app.clock.now();
        adapter_app.stop().await;
        h.app.stop().await;
    }
}
