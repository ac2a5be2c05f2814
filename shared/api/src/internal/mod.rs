//! Bodies of the internal (service-to-service) APIs.

use mdm_domain::{Role, TenantId, TokenId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::service::Service;

/// A message that one service sends another through its outbox. The receiver applies it
/// at most once per key.
pub trait Message: Serialize + DeserializeOwned {
    /// The stable name of this kind of message.
    const KIND: &'static str;
    /// The service that applies it (for messages to adapters, the device's platform
    /// decides which).
    fn destination(&self) -> Service;
}

/// Implements [`Message`] for a type always addressed to one service.
#[macro_export]
macro_rules! message {
    ($type:ty, $kind:literal, $destination:expr) => {
        impl $crate::internal::Message for $type {
            const KIND: &'static str = $kind;
            fn destination(&self) -> $crate::Service {
                $destination
            }
        }
    };
}

/// `POST /internal/v1/<service>/messages`: outbox messages delivered in a batch.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageBatch {
    pub producer: Service,
    pub messages: Vec<Envelope>,
}

/// One message as delivered.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The idempotency key: the receiver applies each key once.
    pub key: String,
    pub kind: String,
    /// Messages with the same ordering key are applied in order: once one is not applied,
    /// the later ones in the batch are not either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    pub payload: Box<RawValue>,
}

/// The receiver's answer: one outcome per message, in the batch's order.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub outcomes: Vec<MessageOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageOutcome {
    pub key: String,
    pub result: DeliveryResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryResult {
    /// Applied now.
    Applied,
    /// Applied before (the key was seen): nothing done again.
    Duplicate,
    /// Can never be applied (unknown kind, invalid payload, refers to nothing): the
    /// sender stops trying and keeps it as a dead letter.
    Rejected,
    /// Could not be applied now; the sender tries again later.
    Retry,
}

/// `POST /internal/v1/enrollment/tokens/introspect`: what a bearer token grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntrospectRequest {
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntrospectResponse {
    /// False for an unknown, revoked or expired token; the other fields are then absent.
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

/// What an authenticated caller may act as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub token_id: TokenId,
    pub role: Role,
    /// Absent for operators, who act across tenants.
    pub tenant_id: Option<TenantId>,
    /// The user a `user` token acts for.
    pub user_id: Option<UserId>,
}

pub mod adapter;
pub mod android;
pub mod dispatch;
pub mod enrollment;
pub mod inventory;
