//! The transactional outbox.
//!
//! A service that changes something another service must hear about writes the message
//! with [`Outbox::enqueue`] inside the same transaction as the change: either both are
//! committed or neither is. The [`Relay`] then delivers pending messages over HTTP, in
//! batches, to the destination's `/internal/v1/<service>/messages` endpoint, where an
//! [`crate::inbox::Inbox`] applies each message key once.
//!
//! Delivery is at least once: a relay that crashes after delivering and before recording
//! it delivers again later, and the receiver recognises the key. Failed deliveries are
//! retried with exponential backoff and jitter; after `max_attempts` (or when the
//! receiver says the message can never be applied) the message becomes a dead letter and
//! stays in the table for an operator. Messages that share an ordering key are delivered
//! one after another in the order they were written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use futures_util::StreamExt;
use mdm_api::internal::{DeliveryResult, Envelope, Message, MessageBatch, MessageOutcome};
use mdm_api::{InternalClient, Service};
use mdm_store::models::runtime::{NewOutboxRow, OutboxRow};
use mdm_store::schema::rt_outbox;
use mdm_store::{DbConnection, Store, StoreError, on_backend, to_millis};
use rand::Rng;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::config::OutboxConfig;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

const PENDING: &str = "pending";
const DEAD: &str = "dead";

/// Writes messages into the outbox of the caller's transaction.
#[derive(Clone)]
pub struct Outbox {
    producer: Service,
    clock: SharedClock,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(producer: Service, clock: SharedClock, wake: Arc<Notify>) -> Self {
        Self {
            producer,
            clock,
            wake,
        }
    }

    /// Adds `message` to the transaction of `conn`. `key` is its idempotency key, unique
    /// for good: enqueuing the same key again does nothing. Messages with the same
    /// `ordering_key` reach the destination in the order they were enqueued.
    pub fn enqueue<M: Message>(
        &self,
        conn: &mut DbConnection,
        key: &str,
        ordering_key: Option<&str>,
        message: &M,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(message)
            .map_err(|e| StoreError::Config(format!("unserializable {} message: {e}", M::KIND)))?;
        let now = to_millis(self.clock.now());
        let row = NewOutboxRow {
            producer: self.producer.as_str(),
            destination: message.destination().as_str(),
            kind: M::KIND,
            message_key: key,
            ordering_key,
            payload: &payload,
            next_attempt_at: now,
            created_at: now,
        };
        on_backend!(conn, c => diesel::insert_into(rt_outbox::table)
            .values(&row)
            .on_conflict(rt_outbox::message_key)
            .do_nothing()
            .execute(c))?;
        // The relay looks at once instead of at its next poll; if it looks before this
        // transaction commits it finds nothing and the poll picks the message up.
        self.wake.notify_one();
        Ok(())
    }
}

impl Outbox {
    /// Adds many messages at once (one multi-row insert per chunk), for bulk work.
    /// Each entry is `(key, ordering key, message)`.
    pub fn enqueue_many<M: Message>(
        &self,
        conn: &mut DbConnection,
        messages: &[(String, Option<String>, M)],
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = to_millis(self.clock.now());
        let payloads = messages
            .iter()
            .map(|(_, _, m)| serde_json::to_string(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Config(format!("unserializable {} message: {e}", M::KIND)))?;
        let destinations: Vec<_> = messages.iter().map(|(_, _, m)| m.destination()).collect();
        let rows: Vec<NewOutboxRow<'_>> = messages
            .iter()
            .zip(&payloads)
            .zip(&destinations)
            .map(
                |(((key, ordering_key, _), payload), destination)| NewOutboxRow {
                    producer: self.producer.as_str(),
                    destination: destination.as_str(),
                    kind: M::KIND,
                    message_key: key,
                    ordering_key: ordering_key.as_deref(),
                    payload,
                    next_attempt_at: now,
                    created_at: now,
                },
            )
            .collect();
        // SQLite allows at most 32,766 bound values per statement; 500 rows of 8 is well within.
        for chunk in rows.chunks(500) {
            on_backend!(conn, c => diesel::insert_into(rt_outbox::table)
                .values(chunk)
                .on_conflict(rt_outbox::message_key)
                .do_nothing()
                .execute(c))?;
        }
        self.wake.notify_one();
        Ok(())
    }
}

/// Delivers outbox messages. Every process runs one; several relays on one database
/// share the work through short leases on the rows they claim.
pub struct Relay {
    store: Store,
    client: InternalClient,
    clock: SharedClock,
    config: OutboxConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

/// What one pass of the relay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayPass {
    pub claimed: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

impl Relay {
    pub fn new(
        store: Store,
        client: InternalClient,
        clock: SharedClock,
        config: OutboxConfig,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            client,
            clock,
            config,
            metrics,
            wake,
        }
    }

    /// Delivers until shutdown: whenever woken, and every poll interval.
    pub async fn run(self, shutdown: Shutdown) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let mut last_gauges = Instant::now() - Duration::from_secs(3600);
        loop {
            loop {
                if shutdown.is_triggered() {
                    return;
                }
                match self.run_once().await {
                    Ok(pass) if pass.claimed > 0 => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "outbox relay pass failed");
                        break;
                    }
                }
            }
            if last_gauges.elapsed() > Duration::from_secs(10) {
                last_gauges = Instant::now();
                if let Err(error) = self.update_gauges().await {
                    tracing::debug!(%error, "outbox gauges not updated");
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Claims one batch of due messages, delivers it and records the outcomes.
    pub async fn run_once(&self) -> Result<RelayPass, StoreError> {
        let now = self.clock.now();
        let lease_until = to_millis(now) + (self.config.lease_secs as i64) * 1000;
        let limit = i64::from(self.config.batch_size.max(1));
        let claimed = self
            .store
            .write(move |c| claim(c, to_millis(now), lease_until, limit))
            .await?;
        if claimed.is_empty() {
            return Ok(RelayPass::default());
        }
        let outcomes = self.deliver(claimed).await;
        let pass = self.record(outcomes).await?;
        if pass.delivered > 0 {
            self.metrics.outbox_delivered.inc_by(pass.delivered as u64);
        }
        Ok(pass)
    }

    /// Sends the claimed messages, grouped by destination and in requests of at most
    /// `messages_per_request`, several requests at once. Answers each row with its outcome.
    async fn deliver(&self, claimed: Vec<OutboxRow>) -> Vec<(OutboxRow, MessageOutcome)> {
        let mut by_destination: BTreeMap<String, Vec<OutboxRow>> = BTreeMap::new();
        for row in claimed {
            by_destination
                .entry(row.destination.clone())
                .or_default()
                .push(row);
        }
        let per_request = self.config.messages_per_request.max(1);
        let mut requests = Vec::new();
        for (destination, rows) in by_destination {
            let service = destination.parse::<Service>().ok();
            // A key's messages travel together, in id order, so the receiver applies them
            // in order; a request may exceed the size to keep a key whole.
            let mut groups: BTreeMap<Option<String>, Vec<OutboxRow>> = BTreeMap::new();
            let mut unordered = Vec::new();
            for row in rows {
                match row.ordering_key.clone() {
                    Some(key) => groups.entry(Some(key)).or_default().push(row),
                    None => unordered.push(row),
                }
            }
            let mut current: Vec<OutboxRow> = Vec::new();
            for group in groups
                .into_values()
                .chain(unordered.into_iter().map(|row| vec![row]))
            {
                if !current.is_empty() && current.len() + group.len() > per_request {
                    requests.push((service, std::mem::take(&mut current)));
                }
                current.extend(group);
            }
            if !current.is_empty() {
                requests.push((service, current));
            }
        }
        let results: Vec<Vec<(OutboxRow, MessageOutcome)>> = futures_util::stream::iter(requests)
            .map(|(service, rows)| self.deliver_request(service, rows))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    async fn deliver_request(
        &self,
        service: Option<Service>,
        rows: Vec<OutboxRow>,
    ) -> Vec<(OutboxRow, MessageOutcome)> {
        let answer_all = |rows: Vec<OutboxRow>, result: DeliveryResult, error: String| {
            rows.into_iter()
                .map(|row| {
                    let outcome = MessageOutcome {
                        key: row.message_key.clone(),
                        result,
                        error: Some(error.clone()),
                    };
                    (row, outcome)
                })
                .collect::<Vec<_>>()
        };
        let Some(service) = service else {
            let error = format!(
                "unknown destination `{}`",
                rows.first().map_or("", |r| r.destination.as_str())
            );
            return answer_all(rows, DeliveryResult::Rejected, error);
        };
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            match RawValue::from_string(row.payload.clone()) {
                Ok(payload) => messages.push(Envelope {
                    key: row.message_key.clone(),
                    kind: row.kind.clone(),
                    ordering_key: row.ordering_key.clone(),
                    payload,
                }),
                Err(e) => {
                    let error = format!("stored payload of {} is not JSON: {e}", row.message_key);
                    return answer_all(rows, DeliveryResult::Retry, error);
                }
            }
        }
        let producer = rows
            .first()
            .and_then(|row| row.producer.parse::<Service>().ok())
            .unwrap_or(service);
        let batch = MessageBatch { producer, messages };
        match self.client.deliver(service, &batch).await {
            Ok(answer) => {
                let mut by_key: BTreeMap<String, MessageOutcome> = answer
                    .outcomes
                    .into_iter()
                    .map(|o| (o.key.clone(), o))
                    .collect();
                rows.into_iter()
                    .map(|row| {
                        let outcome = by_key.remove(&row.message_key).unwrap_or(MessageOutcome {
                            key: row.message_key.clone(),
                            result: DeliveryResult::Retry,
                            error: Some("the receiver gave no outcome".into()),
                        });
                        (row, outcome)
                    })
                    .collect()
            }
            Err(error) => answer_all(rows, DeliveryResult::Retry, error.to_string()),
        }
    }

    async fn record(
        &self,
        outcomes: Vec<(OutboxRow, MessageOutcome)>,
    ) -> Result<RelayPass, StoreError> {
        let now = self.clock.now();
        let mut pass = RelayPass {
            claimed: outcomes.len(),
            ..RelayPass::default()
        };
        let mut delivered = Vec::new();
        let mut changes = Vec::new();
        for (row, MessageOutcome { result, error, .. }) in &outcomes {
            let error = error.clone();
            match result {
                DeliveryResult::Applied | DeliveryResult::Duplicate => {
                    delivered.push(row.id);
                    let age = (now - mdm_store::from_millis(row.created_at)).num_milliseconds();
                    self.metrics
                        .outbox_delivery_seconds
                        .observe(age.max(0) as f64 / 1000.0);
                }
                DeliveryResult::Rejected => {
                    pass.dead += 1;
                    tracing::error!(key = %row.message_key, kind = %row.kind, destination = %row.destination,
                        error = error.as_deref().unwrap_or(""), "outbox message rejected: now a dead letter");
                    changes.push(Change::dead(row, error));
                }
                DeliveryResult::Retry => {
                    let attempts = row.attempts.saturating_add(1);
                    if attempts as u32 >= self.config.max_attempts {
                        pass.dead += 1;
                        tracing::error!(key = %row.message_key, kind = %row.kind, destination = %row.destination,
                            attempts, error = error.as_deref().unwrap_or(""), "outbox message undeliverable: now a dead letter");
                        changes.push(Change::dead(row, error));
                    } else {
                        pass.retried += 1;
                        let next = now + backoff(&self.config, attempts as u32);
                        tracing::debug!(key = %row.message_key, attempts, "outbox delivery failed; will retry");
                        changes.push(Change::retry(row, attempts, to_millis(next), error));
                    }
                }
            }
        }
        pass.delivered = delivered.len();
        self.metrics
            .outbox_failed_attempts
            .inc_by(pass.retried as u64);
        self.metrics.outbox_dead_lettered.inc_by(pass.dead as u64);
        self.store
            .write(move |c| {
                for ids in delivered.chunks(500) {
                    diesel::delete(rt_outbox::table.filter(rt_outbox::id.eq_any(ids)))
                        .execute(c)?;
                }
                for change in changes {
                    diesel::update(rt_outbox::table.find(change.id))
                        .set((
                            rt_outbox::state.eq(change.state),
                            rt_outbox::attempts.eq(change.attempts),
                            rt_outbox::next_attempt_at.eq(change.next_attempt_at),
                            rt_outbox::lease_until.eq(None::<i64>),
                            rt_outbox::last_error.eq(change.error),
                        ))
                        .execute(c)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(pass)
    }

    async fn update_gauges(&self) -> Result<(), StoreError> {
        let counts: Vec<(String, i64)> = self
            .store
            .read(|c| {
                rt_outbox::table
                    .group_by(rt_outbox::state)
                    .select((rt_outbox::state, diesel::dsl::count_star()))
                    .load(c)
                    .map_err(StoreError::from)
            })
            .await?;
        let count = |state: &str| {
            counts
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n)
        };
        self.metrics.outbox_pending.set(count(PENDING));
        self.metrics.outbox_dead.set(count(DEAD));
        Ok(())
    }
}

struct Change {
    id: i64,
    state: &'static str,
    attempts: i32,
    next_attempt_at: i64,
    error: Option<String>,
}

impl Change {
    fn dead(row: &OutboxRow, error: Option<String>) -> Self {
        Self {
            id: row.id,
            state: DEAD,
            attempts: row.attempts.saturating_add(1),
            next_attempt_at: row.next_attempt_at,
            error: error.map(truncate),
        }
    }

    fn retry(row: &OutboxRow, attempts: i32, next_attempt_at: i64, error: Option<String>) -> Self {
        Self {
            id: row.id,
            state: PENDING,
            attempts,
            next_attempt_at,
            error: error.map(truncate),
        }
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > 1000 {
        let mut end = 1000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The delay before attempt `attempts + 1`: the base delay doubled per failed attempt, at
/// most the maximum, then scaled by a random factor in [0.5, 1] so that messages that
/// failed together do not come back together.
pub fn backoff(config: &OutboxConfig, attempts: u32) -> chrono::Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let uncapped = config.base_delay_ms.saturating_mul(1u64 << exponent);
    let capped = uncapped.min(config.max_delay_secs.saturating_mul(1000));
    let jitter = rand::rng().random_range(0.5..=1.0);
    chrono::Duration::milliseconds((capped as f64 * jitter) as i64)
}

/// Serializes claims of several relays on one PostgreSQL database.
const PG_CLAIM_LOCK: i64 = 0x6d64_6d5f_6f75_7462; // "mdm_outb"

/// Reserves up to `limit` due messages for this relay until `lease_until`. A message is
/// due when it is pending, its next attempt time has come, and no other relay holds it;
/// a message with an ordering key also waits while an earlier message with that key is
/// held by another relay or waiting for a retry. Earlier due messages of the key are
/// claimed in the same pass, and the relay keeps them in one request, in order.
///
/// The one backend difference: on PostgreSQL claims take a transaction-level advisory
/// lock, so concurrent relays cannot both see an earlier message as free; SQLite has a
/// single writer, so nothing competes.
fn claim(
    conn: &mut DbConnection,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    use diesel::sql_types::BigInt;
    const CLAIM: &str = "UPDATE rt_outbox SET lease_until = $1
        WHERE id IN (
            SELECT o.id FROM rt_outbox o
            WHERE o.state = 'pending' AND o.next_attempt_at <= $2
              AND (o.lease_until IS NULL OR o.lease_until <= $2)
              AND (o.ordering_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM rt_outbox e
                    WHERE e.ordering_key = o.ordering_key AND e.state = 'pending' AND e.id < o.id
                      AND (e.next_attempt_at > $2 OR e.lease_until > $2)))
            ORDER BY o.id
            LIMIT $3)
        RETURNING *";
    let mut rows: Vec<OutboxRow> = match conn {
        DbConnection::Pg(c) => {
            // Relays claim one at a time, so that two never split one ordering key's
            // messages between them.
            c.batch_execute(&format!("SELECT pg_advisory_xact_lock({PG_CLAIM_LOCK})"))?;
            diesel::sql_query(CLAIM)
                .bind::<BigInt, _>(lease_until)
                .bind::<BigInt, _>(now)
                .bind::<BigInt, _>(limit)
                .load(c)?
        }
        DbConnection::Sqlite(c) => diesel::sql_query(CLAIM.replace('$', "?"))
            .bind::<BigInt, _>(lease_until)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .load(c)?,
    };
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Takes back a message that has not left yet (pending, not claimed by a relay): answers
/// whether it was still there. A cancel that withdraws the delivery sends nothing at all.
pub fn withdraw(
    conn: &mut DbConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let now = to_millis(now);
    let removed = diesel::delete(
        rt_outbox::table
            .filter(rt_outbox::message_key.eq(key))
            .filter(rt_outbox::state.eq(PENDING))
            .filter(
                rt_outbox::lease_until
                    .is_null()
                    .or(rt_outbox::lease_until.le(now)),
            ),
    )
    .execute(conn)?;
    Ok(removed > 0)
}

/// Dead letters and the oldest pending message, for operators.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStatus {
    pub pending: i64,
    pub dead: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// Counts pending and dead messages.
pub fn status(conn: &mut DbConnection) -> Result<OutboxStatus, StoreError> {
    let pending = rt_outbox::table
        .filter(rt_outbox::state.eq(PENDING))
        .count()
        .get_result(conn)?;
    let dead = rt_outbox::table
        .filter(rt_outbox::state.eq(DEAD))
        .count()
        .get_result(conn)?;
    let oldest: Option<i64> = rt_outbox::table
        .filter(rt_outbox::state.eq(PENDING))
        .select(diesel::dsl::min(rt_outbox::created_at))
        .first(conn)?;
    Ok(OutboxStatus {
        pending,
        dead,
        oldest_pending: oldest.map(mdm_store::from_millis),
    })
}

/// Makes dead letters pending again (after an operator fixed the cause); answers how many.
pub fn retry_dead(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(
        diesel::update(rt_outbox::table.filter(rt_outbox::state.eq(DEAD)))
            .set((
                rt_outbox::state.eq(PENDING),
                rt_outbox::attempts.eq(0),
                rt_outbox::next_attempt_at.eq(to_millis(now)),
                rt_outbox::lease_until.eq(None::<i64>),
            ))
            .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = OutboxConfig {
            base_delay_ms: 1000,
            max_delay_secs: 60,
            ..OutboxConfig::default()
        };
        for attempts in 1..20 {
            let delay = backoff(&config, attempts).num_milliseconds();
            let full = (1000u64 << (attempts - 1).min(30)).min(60_000) as i64;
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempts}: {delay} not in [{}, {full}]",
                full / 2
            );
        }
    }
}
