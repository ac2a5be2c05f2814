//! The outbox and its relay against a real receiving process.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use mdm_api::{InternalClient, Service, ServiceUrls};
use mdm_runtime::Clock;
use mdm_runtime::config::OutboxConfig;
use mdm_runtime::metrics::Metrics;
use mdm_runtime::outbox::{Outbox, Relay, RelayPass};
use mdm_runtime::testing::TestApp;
use mdm_store::models::runtime::OutboxRow;
use mdm_store::schema::rt_outbox;
use mdm_store::testing::{TestBackend, TestDatabase};
use mdm_store::{StoreError, test_on_both_backends};
use tokio::sync::Notify;

use crate::{Behaviour, Ping, Receiver, modules};

/// A producer's database with a relay that the test drives by hand, and a receiving
/// process with its own database. Both share the receiver's manual clock.
struct Rig {
    receiver: Receiver,
    app: TestApp,
    producer: TestDatabase,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    config: OutboxConfig,
}

impl Rig {
    async fn new(db: TestDatabase, behaviour: Behaviour) -> Self {
        let backend = match db.store().backend() {
            mdm_store::Backend::Postgres => TestBackend::Postgres,
            mdm_store::Backend::Sqlite => TestBackend::Sqlite,
        };
        let producer = TestDatabase::new(backend).await.unwrap();
        let receiver = Receiver::new(behaviour);
        let app = TestApp::spawn_on(db, |_| {}, modules(&receiver)).await;
        let outbox = Outbox::new(
            Service::Dispatch,
            Arc::new(app.clock.clone()),
            Arc::new(Notify::new()),
        );
        let config = OutboxConfig {
            base_delay_ms: 1000,
            max_delay_secs: 60,
            max_attempts: 5,
            lease_secs: 60,
            request_timeout_secs: 5,
            ..OutboxConfig::default()
        };
        Self {
            receiver,
            app,
            producer,
            outbox,
            metrics: Metrics::new().unwrap(),
            config,
        }
    }

    /// A relay of the producer's outbox, as a process would start one.
    fn relay(&self) -> Relay {
        let mut urls = ServiceUrls::new();
        urls.set(Service::Inventory, &self.app.internal_url);
        let credential = self
            .app
            .context
            .config
            .security
            .service_token
            .clone()
            .unwrap();
        let client =
            InternalClient::new(urls, credential.expose().to_owned(), Duration::from_secs(5))
                .unwrap();
        Relay::new(
            self.producer.store().clone(),
            client,
            Arc::new(self.app.clock.clone()),
            self.config.clone(),
            self.metrics.clone(),
            Arc::new(Notify::new()),
        )
    }

    async fn send(&self, key: &str, ordering_key: Option<&str>, n: u32) {
        let (outbox, key, ordering_key) = (
            self.outbox.clone(),
            key.to_owned(),
            ordering_key.map(str::to_owned),
        );
        self.producer
            .store()
            .write(move |c| outbox.enqueue(c, &key, ordering_key.as_deref(), &Ping { n }))
            .await
            .unwrap();
    }

    async fn rows(&self) -> Vec<OutboxRow> {
        self.producer
            .store()
            .read(|c| {
                rt_outbox::table
                    .order(rt_outbox::id)
                    .select(OutboxRow::as_select())
                    .load(c)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap()
    }
}

test_on_both_backends! {
    async fn a_message_is_delivered_and_applied_once(db) {
        let rig = Rig::new(db, Behaviour::Apply).await;
        rig.send("ping-1", None, 1).await;
        // Enqueuing the same key again changes nothing.
        rig.send("ping-1", None, 1).await;
        assert_eq!(rig.rows().await.len(), 1);

        let pass = rig.relay().run_once().await.unwrap();
        assert_eq!(pass, RelayPass { claimed: 1, delivered: 1, retried: 0, dead: 0 });
        assert_eq!(rig.receiver.applied(), 1);
        assert!(rig.rows().await.is_empty(), "delivered messages leave the outbox");
        assert_eq!(rig.metrics.outbox_delivered.get(), 1);
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_message_survives_a_relay_crash_and_is_applied_once(db) {
        let rig = Rig::new(db, Behaviour::ApplySlowly(Duration::from_millis(700))).await;
        rig.send("ping-crash", None, 7).await;

        // The relay delivers; while the receiver is applying, the relay dies before it
        // can record the delivery.
        let relay = rig.relay();
        let doomed = tokio::spawn(async move { relay.run_once().await });
        rig.receiver.entered.notified().await;
        doomed.abort();
        assert!(doomed.await.unwrap_err().is_cancelled());

        // The receiver applied it; the producer still has it, leased to the dead relay.
        for _ in 0..100 {
            if rig.receiver.applied() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rig.receiver.applied(), 1);
        let rows = rig.rows().await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].lease_until.is_some());

        // A new relay waits for the dead one's lease to run out, then delivers again;
        // the receiver recognises the key and does not apply it twice.
        rig.receiver.set(Behaviour::Apply);
        let restarted = rig.relay();
        assert_eq!(restarted.run_once().await.unwrap().claimed, 0);
        rig.app.clock.advance(chrono::Duration::seconds(61));
        let pass = restarted.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.delivered), (1, 1));
        assert_eq!(rig.receiver.applied(), 1, "applied exactly once");
        assert!(rig.rows().await.is_empty());
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_failing_receiver_sees_growing_delays_then_a_dead_letter(db) {
        let rig = Rig::new(db, Behaviour::Retry).await;
        rig.send("ping-fail", None, 3).await;
        let relay = rig.relay();
        let mut delays = Vec::new();
        for attempt in 1..rig.config.max_attempts {
            let pass = relay.run_once().await.unwrap();
            assert_eq!((pass.claimed, pass.retried, pass.dead), (1, 1, 0), "attempt {attempt}");
            let row = rig.rows().await.remove(0);
            assert_eq!(row.attempts as u32, attempt);
            assert_eq!(row.state, "pending");
            assert_eq!(row.last_error.as_deref(), Some("not now"));
            let now = mdm_store::to_millis(rig.app.clock.now());
            let delay = row.next_attempt_at - now;
            // Doubling from one second, scaled by a jitter factor in [0.5, 1].
            let full = 1000i64 << (attempt - 1);
            assert!((full / 2..=full).contains(&delay), "attempt {attempt}: delay {delay} ms");
            delays.push(delay);
            // Not retried before its time.
            assert_eq!(relay.run_once().await.unwrap().claimed, 0);
            rig.app.clock.advance(chrono::Duration::milliseconds(delay));
        }
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "delays grow: {delays:?}");

        // The last attempt fails too: the message becomes a dead letter.
        let pass = relay.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.dead), (1, 1));
        let row = rig.rows().await.remove(0);
        assert_eq!(row.state, "dead");
        assert_eq!(row.attempts as u32, rig.config.max_attempts);
        assert_eq!(rig.metrics.outbox_dead_lettered.get(), 1);
        rig.app.clock.advance(chrono::Duration::days(1));
        assert_eq!(relay.run_once().await.unwrap().claimed, 0, "dead letters are not retried");
        assert_eq!(rig.receiver.applied(), 0);

        // An operator retries the dead letters once the receiver is fixed.
        rig.receiver.set(Behaviour::Apply);
        let now = rig.app.clock.now();
        let revived = rig.producer.store().write(move |c| mdm_runtime::outbox::retry_dead(c, now)).await.unwrap();
        assert_eq!(revived, 1);
        assert_eq!(relay.run_once().await.unwrap().delivered, 1);
        assert_eq!(rig.receiver.applied(), 1);
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_rejected_message_is_dead_at_once(db) {
        let rig = Rig::new(db, Behaviour::Reject).await;
        rig.send("ping-reject", None, 4).await;
        let pass = rig.relay().run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.dead), (1, 1));
        let row = rig.rows().await.remove(0);
        assert_eq!((row.state.as_str(), row.last_error.as_deref()), ("dead", Some("never")));
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_key_waits_while_an_earlier_message_waits_for_its_retry(db) {
        let rig = Rig::new(db, Behaviour::Retry).await;
        rig.send("a", Some("device-1"), 1).await;
        let relay = rig.relay();
        assert_eq!(relay.run_once().await.unwrap().retried, 1);

        rig.receiver.set(Behaviour::Apply);
        rig.send("b", Some("device-1"), 2).await;
        rig.send("c", None, 3).await;
        // "a" waits for its retry, so "b" waits behind it; "c" has no key and goes.
        let pass = relay.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.delivered), (1, 1));
        rig.app.clock.advance(chrono::Duration::seconds(5));
        let pass = relay.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.delivered), (2, 2), "a key's due messages travel together");
        assert_eq!(*rig.receiver.order.lock().unwrap(), [3, 1, 2]);
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_receiver_stops_a_key_at_its_first_failure(db) {
        let rig = Rig::new(db, Behaviour::RetryOnly(1)).await;
        rig.send("a", Some("device-1"), 1).await;
        rig.send("b", Some("device-1"), 2).await;
        rig.send("c", Some("device-2"), 3).await;
        let relay = rig.relay();
        let pass = relay.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.delivered, pass.retried), (3, 1, 2));
        let b = rig.rows().await.into_iter().find(|r| r.message_key == "b").unwrap();
        assert!(b.last_error.unwrap().contains("earlier message for device-1"));

        rig.receiver.set(Behaviour::Apply);
        rig.app.clock.advance(chrono::Duration::seconds(5));
        assert_eq!(relay.run_once().await.unwrap().delivered, 2);
        assert_eq!(*rig.receiver.order.lock().unwrap(), [3, 1, 2]);
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_process_relays_its_own_messages(db) {
        let receiver = Receiver::new(Behaviour::Apply);
        let app = TestApp::spawn_on(db, |_| {}, modules(&receiver)).await;
        app.wait_until_ready().await;
        let outbox = app.context.outbox(Service::Dispatch);
        app.context
            .store
            .write(move |c| outbox.enqueue(c, "self-1", None, &Ping { n: 9 }))
            .await
            .unwrap();
        for _ in 0..250 {
            if receiver.applied() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(receiver.applied(), 1);
        app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_message_not_yet_claimed_can_be_withdrawn(db) {
        let rig = Rig::new(db, Behaviour::Apply).await;
        rig.send("ping-withdrawn", None, 1).await;
        let now = rig.app.clock.now();
        let withdrawn = rig
            .producer
            .store()
            .write(move |c| mdm_runtime::outbox::withdraw(c, "ping-withdrawn", now))
            .await
            .unwrap();
        assert!(withdrawn);
        assert_eq!(rig.relay().run_once().await.unwrap().claimed, 0);
        assert_eq!(rig.receiver.applied(), 0);
        let again = rig.producer.store().write(move |c| mdm_runtime::outbox::withdraw(c, "ping-withdrawn", now)).await.unwrap();
        assert!(!again, "nothing left to withdraw");
        rig.app.stop().await;
    }
}

test_on_both_backends! {
    async fn many_messages_are_enqueued_at_once(db) {
        let rig = Rig::new(db, Behaviour::Apply).await;
        let messages: Vec<_> = (0..1200u32).map(|n| (format!("bulk-{n}"), Some(format!("device-{}", n % 7)), Ping { n })).collect();
        let outbox = rig.outbox.clone();
        rig.producer.store().write(move |c| outbox.enqueue_many(c, &messages)).await.unwrap();
        assert_eq!(rig.rows().await.len(), 1200);
        let relay = rig.relay();
        let mut delivered = 0;
        for _ in 0..20 {
            delivered += relay.run_once().await.unwrap().delivered;
            if delivered == 1200 {
                break;
            }
        }
        assert_eq!(delivered, 1200);
        assert_eq!(rig.receiver.applied(), 1200);
        rig.app.stop().await;
    }
}
