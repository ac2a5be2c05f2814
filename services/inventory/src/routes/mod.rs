//! HTTP routes of the inventory service.
//!
//! Paths with an id only match a UUID's characters (`{id:[0-9a-fA-F-]+}`), so that a
//! neighbour's route under the same prefix (`.../managedDevices/bulkAction` of dispatch)
//! is never hidden by one of these resources.

mod autopilot;
mod devices;
mod directory;
mod groups;
mod internal;
mod settings;

use std::fmt::Display;
use std::sync::Arc;

use actix_web::web;
use mdm_api::InternalClient;
use mdm_api::cache::PolicyCache;
use mdm_api::internal::dispatch::AuditEvent;
use mdm_runtime::outbox::Outbox;
use mdm_runtime::{ApiRoutes, SharedClock, audit};
use mdm_store::{DbConnection, Store, StoreError};

use crate::config::Config;
use crate::metrics::InventoryMetrics;

/// The pattern of an id path segment: a hyphenated UUID.
pub const UUID: &str =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

/// What the handlers, the message handlers and the jobs share.
pub struct State {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub client: InternalClient,
    pub outbox: Outbox,
    /// Tenants' MDM authority, for the capability check of a delete.
    pub policies: PolicyCache,
    pub metrics: InventoryMetrics,
}

impl State {
    pub fn audit(&self, conn: &mut DbConnection, event: &AuditEvent) -> Result<(), StoreError> {
        audit::record(&self.outbox, conn, event)
    }
}

pub type Shared = web::Data<Arc<State>>;

/// The admin API's routes.
pub fn api(routes: &mut ApiRoutes) {
    devices::routes(routes);
    directory::routes(routes);
    autopilot::routes(routes);
    groups::routes(routes);
    settings::routes(routes);
}

/// The state the admin API's handlers share.
pub fn public(state: Arc<State>) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(state.clone()));
    }
}

pub fn internal(state: Arc<State>) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(state.clone()));
        internal::routes(cfg);
    }
}

/// A path with an id segment: `prefix` + `/{name:UUID}` + `suffix`.
fn with_id(prefix: &str, name: &str, suffix: &str) -> String {
    format!("{prefix}/{{{name}:{UUID}}}{suffix}")
}

/// Page sizes: `top` as asked within 1 to `max`, `default` when not asked.
pub fn page_size(top: Option<i64>, default: i64, max: i64) -> i64 {
    top.unwrap_or(default).clamp(1, max)
}

/// Keeps the first `top` of `rows` (one more was fetched to learn whether another page
/// follows) and answers the next page's link, made from the last row kept.
pub fn paged<T>(
    mut rows: Vec<T>,
    top: i64,
    next: impl FnOnce(&T) -> String,
) -> mdm_api::public::Page<T> {
    let keep = usize::try_from(top).unwrap_or(usize::MAX);
    let more = rows.len() > keep;
    rows.truncate(keep);
    let next_link = if more { rows.last().map(next) } else { None };
    mdm_api::public::Page {
        value: rows,
        next_link,
    }
}

/// A query string for next-page links, values percent-encoded.
#[derive(Default)]
pub struct QueryString(String);

impl QueryString {
    pub fn push(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(key);
        self.0.push('=');
        for byte in value.to_string().bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                self.0.push(char::from(byte));
            } else {
                self.0.push_str(&format!("%{byte:02X}"));
            }
        }
        self
    }

    pub fn push_opt(&mut self, key: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    pub fn finish(&self, path: &str) -> String {
        format!("{path}{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        let mut query = QueryString::default();
        query
            .push("top", 10)
            .push("userPrincipalName", "a+b@x.example")
            .push_opt("skipToken", None::<&str>)
            .push("lastSyncBefore", "2026-01-01T00:00:00.000Z");
        assert_eq!(
            query.finish("/p"),
            "/p?top=10&userPrincipalName=a%2Bb%40x.example&lastSyncBefore=2026-01-01T00%3A00%3A00.000Z"
        );
    }

    #[test]
    fn pages_know_whether_more_follow() {
        let page = paged(vec![1, 2, 3], 2, |last| format!("after {last}"));
        assert_eq!(page.value, vec![1, 2]);
        assert_eq!(page.next_link.as_deref(), Some("after 2"));
        let page = paged(vec![1, 2], 2, |last| format!("after {last}"));
        assert_eq!(page.next_link, None);
    }
}
