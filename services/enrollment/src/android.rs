//! The tenant's Android Enterprise binding. Every AMAPI call belongs to the Android
//! adapter; this module keeps the binding's state and the sealed service-account key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::enrollment::AndroidBinding;
use mdm_api::public::{AndroidEnterprise, DataSharingConsent};
use mdm_domain::TenantId;
use mdm_runtime::crypto::SecretBox;
use mdm_store::models::enrollment::AndroidBindingRow;
use mdm_store::schema::enr_android_bindings;
use mdm_store::{DbConnection, StoreError, from_millis, to_millis};

use crate::error::{Error, Result};

const KEY_PURPOSE: &str = "android-service-account-key";
pub const PENDING: &str = "pendingSignup";
pub const BOUND: &str = "bound";

/// Checks that `key` is a Google service-account key file.
pub fn validate_service_account_key(key: &str) -> Result<()> {
    let parsed: serde_json::Value = serde_json::from_str(key)
        .map_err(|_| Error::invalid("serviceAccountKey must be the JSON key file"))?;
    let field = |name: &str| {
        parsed
            .get(name)
            .and_then(|v| v.as_str())
            .is_some_and(|v| !v.is_empty())
    };
    if parsed.get("type").and_then(|v| v.as_str()) != Some("service_account")
        || !["client_email", "private_key", "token_uri"]
            .iter()
            .all(|name| field(name))
    {
        return Err(Error::invalid(
            "serviceAccountKey must be a service-account key file (type service_account, client_email, private_key, token_uri)",
        ));
    }
    Ok(())
}

/// Checks that `topic` names a Pub/Sub topic: `projects/<project>/topics/<topic>`.
pub fn validate_pubsub_topic(topic: &str) -> Result<()> {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["projects", project, "topics", name] if !project.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(Error::invalid(
            "pubsubTopic must be a Pub/Sub topic name: projects/<project>/topics/<topic>",
        )),
    }
}

pub fn current(conn: &mut DbConnection, tenant: TenantId) -> Result<Option<AndroidBindingRow>> {
    Ok(enr_android_bindings::table
        .find(tenant)
        .select(AndroidBindingRow::as_select())
        .first(conn)
        .optional()?)
}

/// Records a started signup (or a binding) for the tenant, replacing any earlier one.
#[allow(clippy::too_many_arguments)]
pub fn save(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    tenant: TenantId,
    state: &str,
    enterprise_name: Option<String>,
    signup_url_name: Option<String>,
    service_account_key: &str,
    pubsub_topic: Option<String>,
    notification_types: &[String],
    consented_by: &str,
    now: DateTime<Utc>,
) -> Result<AndroidBindingRow> {
    let sealed = secrets
        .seal(KEY_PURPOSE, service_account_key.as_bytes())
        .map_err(|e| Error::Store(StoreError::Config(e.to_string())))?;
    let row = AndroidBindingRow {
        tenant_id: tenant,
        state: state.to_owned(),
        enterprise_name,
        signup_url_name,
        sealed_service_account_key: sealed,
        pubsub_topic,
        notification_types: serde_json::to_string(notification_types)
            .unwrap_or_else(|_| "[]".into()),
        consented_by: consented_by.to_owned(),
        consented_at: to_millis(now),
        bound_at: (state == BOUND).then(|| to_millis(now)),
    };
    diesel::delete(enr_android_bindings::table.find(tenant)).execute(conn)?;
    diesel::insert_into(enr_android_bindings::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}

pub fn service_account_key(row: &AndroidBindingRow, secrets: &SecretBox) -> Result<String> {
    let key = secrets
        .open(KEY_PURPOSE, &row.sealed_service_account_key)
        .map_err(|e| {
            Error::Store(StoreError::Config(format!(
                "the service-account key cannot be opened: {e}"
            )))
        })?;
    String::from_utf8(key).map_err(|_| {
        Error::Store(StoreError::Config(
            "the service-account key is not text".into(),
        ))
    })
}

/// The binding with its key, for the Android adapter; `None` unless bound.
pub fn binding(row: &AndroidBindingRow, secrets: &SecretBox) -> Result<Option<AndroidBinding>> {
    let Some(enterprise_name) = row.enterprise_name.clone().filter(|_| row.state == BOUND) else {
        return Ok(None);
    };
    Ok(Some(AndroidBinding {
        enterprise_name,
        service_account_key: service_account_key(row, secrets)?,
        pubsub_topic: row.pubsub_topic.clone(),
        notification_types: notification_types(row),
    }))
}

fn notification_types(row: &AndroidBindingRow) -> Vec<String> {
    serde_json::from_str(&row.notification_types).unwrap_or_default()
}

/// The signup's Pub/Sub settings, for completing it: (topic, notification types).
pub fn pending_pubsub(row: Option<&AndroidBindingRow>) -> (Option<String>, Vec<String>) {
    match row.filter(|row| row.state == PENDING) {
        Some(row) => (row.pubsub_topic.clone(), notification_types(row)),
        None => (None, Vec::new()),
    }
}

pub fn to_wire(row: Option<&AndroidBindingRow>) -> AndroidEnterprise {
    let mut missing = Vec::new();
    if row.is_none_or(|row| row.state != BOUND) {
        missing.push("enterprise".to_owned());
    }
    if row.is_none_or(|row| row.pubsub_topic.is_none()) {
        missing.push("pubsubTopic".to_owned());
    }
    match row {
        None => AndroidEnterprise {
            binding_state: "notBound".into(),
            enterprise_name: None,
            pubsub_topic: None,
            notification_types: Vec::new(),
            bound_date_time: None,
            data_sharing_consent: None,
            missing,
        },
        Some(row) => AndroidEnterprise {
            missing,
            binding_state: row.state.clone(),
            enterprise_name: row.enterprise_name.clone(),
            pubsub_topic: row.pubsub_topic.clone(),
            notification_types: notification_types(row),
            bound_date_time: row.bound_at.map(from_millis),
            data_sharing_consent: Some(DataSharingConsent {
                consented_by: row.consented_by.clone(),
                consented_date_time: from_millis(row.consented_at),
            }),
        },
    }
}
