//! A short-lived cache of tenant policy, for the services that read it on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdm_domain::TenantId;

use crate::client::{ClientError, InternalClient};
use crate::internal::enrollment::TenantPolicy;
use crate::service::Service;

/// Tenant policy from the enrollment service, kept for `ttl`. A change announced by an
/// `enrollment.policy_changed` message is applied at once with [`PolicyCache::invalidate`];
/// other replicas see it within the TTL.
pub struct PolicyCache {
    client: InternalClient,
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, (Instant, Arc<TenantPolicy>)>>,
}

impl PolicyCache {
    pub fn new(client: InternalClient, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(&self, tenant: TenantId) -> Result<Arc<TenantPolicy>, ClientError> {
        if let Some(policy) = self.cached(tenant) {
            return Ok(policy);
        }
        let policy: TenantPolicy = self
            .client
            .get(Service::Enrollment, &format!("/tenants/{tenant}/policy"))
            .await?;
        let policy = Arc::new(policy);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(tenant, (Instant::now() + self.ttl, policy.clone()));
        }
        Ok(policy)
    }

    pub fn invalidate(&self, tenant: TenantId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&tenant);
        }
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<TenantPolicy>> {
        let entries = self.entries.lock().ok()?;
        let (expires, policy) = entries.get(&tenant)?;
        (Instant::now() < *expires).then(|| policy.clone())
    }
}
