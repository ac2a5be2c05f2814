//! Rows of mdm-runtime's infrastructure tables.

use diesel::prelude::*;

use crate::schema::{rt_idempotency, rt_inbox, rt_leases, rt_outbox};

/// A message waiting in the outbox (or dead).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = rt_outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub producer: String,
    pub destination: String,
    pub kind: String,
    pub message_key: String,
    pub ordering_key: Option<String>,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rt_outbox, treat_none_as_default_value = false)]
pub struct NewOutboxRow<'a> {
    pub producer: &'a str,
    pub destination: &'a str,
    pub kind: &'a str,
    pub message_key: &'a str,
    pub ordering_key: Option<&'a str>,
    pub payload: &'a str,
    pub next_attempt_at: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rt_inbox)]
pub struct NewInboxRow<'a> {
    pub receiver: &'a str,
    pub message_key: &'a str,
    pub received_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = rt_leases)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = rt_idempotency)]
pub struct IdempotencyRow {
    pub scope: String,
    pub idem_key: String,
    pub request_hash: String,
    pub status: Option<i32>,
    pub content_type: Option<String>,
    pub response_body: Option<Vec<u8>>,
    pub created_at: i64,
    /// The first answer's `Location` header.
    pub location: Option<String>,
}
