//! The receiving end of the outbox: applies each delivered message once.
//!
//! A service registers a handler per message kind. A delivered batch is applied in one
//! transaction, each message in its own savepoint together with its receipt in
//! `rt_inbox`: a key seen before is answered `duplicate` and not applied again, a handler
//! that fails rolls back only its own message.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use futures_util::future::BoxFuture;
use mdm_api::Service;
use mdm_api::internal::{BatchOutcome, DeliveryResult, Message, MessageBatch, MessageOutcome};
use mdm_store::models::runtime::NewInboxRow;
use mdm_store::schema::rt_inbox;
use mdm_store::{DbConnection, Store, StoreError, on_backend, to_millis};

use crate::clock::SharedClock;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Work to do once the transaction that applied a message has committed (a push to a
/// device, say). It runs after the answer is sent; losing it must be harmless.
pub type AfterCommit = Option<BoxFuture<'static, ()>>;

/// One message being applied.
pub struct Delivery<'a> {
    pub producer: Service,
    pub key: &'a str,
    pub kind: &'a str,
    pub now: DateTime<Utc>,
}

/// Why a message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// It can never be applied: the sender keeps it as a dead letter.
    #[error("rejected: {0}")]
    Reject(String),
    /// It may apply later: the sender retries.
    #[error("not applied yet: {0}")]
    Retry(String),
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        if error.is_not_found() {
            Self::Reject(error.to_string())
        } else {
            Self::Retry(error.to_string())
        }
    }
}

impl From<diesel::result::Error> for HandlerError {
    fn from(error: diesel::result::Error) -> Self {
        StoreError::from(error).into()
    }
}

type HandlerFn = dyn Fn(&mut DbConnection, &Delivery<'_>, &str) -> Result<AfterCommit, HandlerError>
    + Send
    + Sync;

/// The message handlers of one service.
pub struct Inbox {
    receiver: Service,
    handlers: HashMap<&'static str, Box<HandlerFn>>,
}

impl Inbox {
    pub fn new(receiver: Service) -> Self {
        Self {
            receiver,
            handlers: HashMap::new(),
        }
    }

    pub fn receiver(&self) -> Service {
        self.receiver
    }

    /// Handles messages of type `M`. The handler runs inside the receiver's transaction.
    pub fn on<M, F>(mut self, handler: F) -> Self
    where
        M: Message + 'static,
        F: Fn(&mut DbConnection, &Delivery<'_>, M) -> Result<AfterCommit, HandlerError>
            + Send
            + Sync
            + 'static,
    {
        let typed = move |conn: &mut DbConnection, delivery: &Delivery<'_>, payload: &str| {
            let message: M = serde_json::from_str(payload)
                .map_err(|e| HandlerError::Reject(format!("invalid {} payload: {e}", M::KIND)))?;
            handler(conn, delivery, message)
        };
        self.handlers.insert(M::KIND, Box::new(typed));
        self
    }

    /// Applies a batch in one transaction; answers an outcome per message and the work to
    /// run after commit.
    pub fn apply(
        &self,
        conn: &mut DbConnection,
        batch: &MessageBatch,
        now: DateTime<Utc>,
    ) -> Result<(Vec<MessageOutcome>, Vec<BoxFuture<'static, ()>>), StoreError> {
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        let mut after_commit = Vec::new();
        // Ordering keys whose message was not applied: their later messages wait too.
        let mut stopped: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for envelope in &batch.messages {
            if let Some(key) = envelope
                .ordering_key
                .as_deref()
                .filter(|k| stopped.contains(k))
            {
                outcomes.push(MessageOutcome {
                    key: envelope.key.clone(),
                    result: DeliveryResult::Retry,
                    error: Some(format!("an earlier message for {key} was not applied")),
                });
                continue;
            }
            let delivery = Delivery {
                producer: batch.producer,
                key: &envelope.key,
                kind: &envelope.kind,
                now,
            };
            let applied = conn.transaction(|c| {
                let receipt = NewInboxRow {
                    receiver: self.receiver.as_str(),
                    message_key: &envelope.key,
                    received_at: to_millis(now),
                };
                let inserted = on_backend!(c, cc => diesel::insert_into(rt_inbox::table)
                    .values(&receipt)
                    .on_conflict((rt_inbox::receiver, rt_inbox::message_key))
                    .do_nothing()
                    .execute(cc))
                .map_err(HandlerError::from)?;
                if inserted == 0 {
                    return Ok(None);
                }
                let handler = self.handlers.get(envelope.kind.as_str()).ok_or_else(|| {
                    HandlerError::Reject(format!(
                        "{} does not handle `{}` messages",
                        self.receiver, envelope.kind
                    ))
                })?;
                handler(c, &delivery, envelope.payload.get()).map(Some)
            });
            let (result, error) = match applied {
                Ok(Some(after)) => {
                    after_commit.extend(after);
                    (DeliveryResult::Applied, None)
                }
                Ok(None) => (DeliveryResult::Duplicate, None),
                Err(HandlerError::Reject(why)) => (DeliveryResult::Rejected, Some(why)),
                Err(HandlerError::Retry(why)) => (DeliveryResult::Retry, Some(why)),
            };
            if let Some(why) = &error {
                tracing::warn!(key = %envelope.key, kind = %envelope.kind, ?result, error = %why, "message not applied");
                if let (DeliveryResult::Retry, Some(key)) =
                    (result, envelope.ordering_key.as_deref())
                {
                    stopped.insert(key);
                }
            }
            outcomes.push(MessageOutcome {
                key: envelope.key.clone(),
                result,
                error,
            });
        }
        Ok((outcomes, after_commit))
    }
}

/// `POST /internal/v1/<service>/messages`.
pub async fn receive(
    inbox: web::Data<Arc<Inbox>>,
    store: web::Data<Store>,
    clock: web::Data<SharedClock>,
    metrics: web::Data<Arc<Metrics>>,
    batch: web::Json<MessageBatch>,
) -> Result<HttpResponse, ApiError> {
    let now = clock.now();
    let inbox = inbox.get_ref().clone();
    let batch = batch.into_inner();
    let kinds: Vec<String> = batch.messages.iter().map(|m| m.kind.clone()).collect();
    let (outcomes, after_commit) = store.write(move |c| inbox.apply(c, &batch, now)).await?;
    for (kind, outcome) in kinds.iter().zip(&outcomes) {
        let result = match outcome.result {
            DeliveryResult::Applied => "applied",
            DeliveryResult::Duplicate => "duplicate",
            DeliveryResult::Rejected => "rejected",
            DeliveryResult::Retry => "retry",
        };
        metrics
            .inbox_messages
            .with_label_values(&[kind, result])
            .inc();
    }
    for work in after_commit {
        tokio::spawn(work);
    }
    Ok(HttpResponse::Ok().json(BatchOutcome { outcomes }))
}

/// Forgets receipts older than `before` (senders stop retrying long before that).
pub fn prune(conn: &mut DbConnection, before: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(rt_inbox::table.filter(rt_inbox::received_at.lt(to_millis(before))))
            .execute(conn)?,
    )
}
