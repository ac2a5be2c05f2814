//! The Pub/Sub push endpoint, `POST /mdm/android/pubsub`: authenticated (a shared secret
//! in the push URL, or Google's OIDC token), idempotent by message id, and forgiving: a
//! message that cannot be used is acknowledged and counted, never left to be retried
//! forever. Each message is applied in one transaction with its receipt, so a crash
//! before the answer makes Pub/Sub deliver it again and nothing is applied twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use mdm_api::ErrorCode;
use mdm_runtime::ApiError;
use mdm_runtime::crypto::constant_time_eq;
use mdm_store::models::android::PubsubReceiptRow;
use mdm_store::{DbConnection, StoreError, to_millis};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde::Deserialize;
use serde_json::Value;

use crate::actions;
use crate::adapter::Adapter;
use crate::amapi::types::{BatchUsageLogEvents, Device, EnterpriseUpgradeEvent, Operation};
use crate::devices::{self, parse_time};
use crate::store::{self, device_state};

/// The push endpoint's path on the public listener.
pub const PATH: &str = "/mdm/android/pubsub";

#[derive(Debug, Deserialize)]
struct Push {
    message: Option<PushMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushMessage {
    #[serde(default)]
    attributes: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(default)]
    publish_time: Option<String>,
}

/// `POST /mdm/android/pubsub`.
pub async fn receive(
    adapter: web::Data<Arc<Adapter>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !authenticated(&adapter, &req).await {
        return Err(ApiError::bare(ErrorCode::Unauthorized));
    }
    let count = |kind: &str, outcome: &str| {
        adapter
            .metrics
            .notifications
            .with_label_values(&[kind, outcome])
            .inc();
    };
    if body.len() > adapter.config.pubsub.max_body_bytes {
        count("unknown", "too_large");
        return Ok(HttpResponse::NoContent().finish());
    }
    let Ok(Push {
        message: Some(message),
    }) = serde_json::from_slice::<Push>(&body)
    else {
        tracing::warn!("unreadable Pub/Sub push acknowledged");
        count("unknown", "malformed");
        return Ok(HttpResponse::NoContent().finish());
    };
    let kind = message
        .attributes
        .as_ref()
        .and_then(|a| a.get("notificationType"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(40)
        .collect::<String>();
    let label = match kind.as_str() {
        "ENROLLMENT" | "STATUS_REPORT" | "COMMAND" | "USAGE_LOGS" | "ENTERPRISE_UPGRADE"
        | "test" => kind.as_str(),
        _ => "other",
    };
    let Some(message_id) = message
        .message_id
        .clone()
        .or_else(|| message.message_id_snake.clone())
        .filter(|id| !id.is_empty() && id.len() <= 128)
    else {
        count(label, "malformed");
        return Ok(HttpResponse::NoContent().finish());
    };
    let data = match message.data.as_deref().map(|d| STANDARD.decode(d.trim())) {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(_)) => {
            count(label, "malformed");
            return Ok(HttpResponse::NoContent().finish());
        }
        None => None,
    };
    let now = adapter.now();
    let publish_time = parse_time(message.publish_time.as_deref());
    let worker = adapter.get_ref().clone();
    let kind_owned = kind.clone();
    let outcome = adapter
        .store
        .write(move |c| {
            let receipt = PubsubReceiptRow {
                message_id: message_id.clone(),
                notification_type: kind_owned.clone(),
                outcome: "pending".into(),
                received_at: to_millis(now),
            };
            if !store::insert_receipt(c, &receipt)? {
                return Ok::<_, StoreError>("duplicate");
            }
            let outcome = apply(
                &worker,
                c,
                &kind_owned,
                &message_id,
                data.as_deref(),
                publish_time,
                now,
            )?;
            store::set_receipt_outcome(c, &message_id, outcome)?;
            Ok(outcome)
        })
        .await?;
    count(label, outcome);
    if outcome == "enrolling" {
        adapter.wake.notify_one();
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Applies one notification; answers the outcome for the metrics.
fn apply(
    adapter: &Adapter,
    c: &mut DbConnection,
    kind: &str,
    message_id: &str,
    data: Option<&[u8]>,
    publish_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<&'static str, StoreError> {
    fn parse<T: for<'de> Deserialize<'de>>(data: Option<&[u8]>) -> Option<T> {
        serde_json::from_slice(data?).ok()
    }
    match kind {
        "ENROLLMENT" | "STATUS_REPORT" => {
            let Some(device) = parse::<Device>(data) else {
                return Ok("malformed");
            };
            device_news(adapter, c, &device, message_id, publish_time, now)
        }
        "COMMAND" => {
            let Some(operation) = parse::<Operation>(data) else {
                return Ok("malformed");
            };
            let Some(name) = operation.name.as_deref() else {
                return Ok("malformed");
            };
            let device = name.split("/operations/").next().unwrap_or_default();
            store::lock_device(c, device)?;
            let Some(action) = store::action_by_operation(c, name)? else {
                // A fast device can answer before issueCommand's answer is recorded: keep
                // the news of our own devices for the worker.
                if name.len() <= 512 && store::device_by_name(c, device)?.is_some() {
                    let payload = serde_json::to_string(&operation).unwrap_or_default();
                    store::keep_early_operation(
                        c,
                        &mdm_store::models::android::EarlyOperationRow {
                            operation_name: name.to_owned(),
                            payload,
                            received_at: to_millis(now),
                        },
                    )?;
                    return Ok("early");
                }
                return Ok("unknown_operation");
            };
            if actions::apply_operation(adapter, c, &action, &operation, now)? {
                Ok("applied")
            } else {
                Ok("in_progress")
            }
        }
        "USAGE_LOGS" => {
            let Some(logs) = parse::<BatchUsageLogEvents>(data) else {
                return Ok("malformed");
            };
            let Some(device) = logs.device.as_deref() else {
                return Ok("ignored");
            };
            match store::device_by_name(c, device)? {
                Some(row) if row.state == device_state::MANAGED => {
                    let at = parse_time(logs.retrieval_time.as_deref())
                        .or(publish_time)
                        .unwrap_or(now);
                    store::mark_seen(c, row.device_id, to_millis(at.min(now)))?;
                    Ok("applied")
                }
                _ => Ok("unknown_device"),
            }
        }
        "ENTERPRISE_UPGRADE" => {
            let Some(event) = parse::<EnterpriseUpgradeEvent>(data) else {
                return Ok("malformed");
            };
            match (event.enterprise.as_deref(), event.upgrade_state.as_deref()) {
                (Some(name), Some("UPGRADE_STATE_SUCCEEDED")) => {
                    if store::mark_upgraded(c, name, to_millis(now))? == 1 {
                        tracing::info!(
                            enterprise = name,
                            "Android Enterprise upgraded to a managed Google domain"
                        );
                        Ok("applied")
                    } else {
                        Ok("unknown_enterprise")
                    }
                }
                _ => Ok("ignored"),
            }
        }
        "test" => Ok("test"),
        _ => Ok("unknown_type"),
    }
}

/// ENROLLMENT and STATUS_REPORT: a new device is recorded for the gate; a known one gets
/// its facts updated (or leaves, when Google says it was deleted).
fn device_news(
    adapter: &Adapter,
    c: &mut DbConnection,
    device: &Device,
    message_id: &str,
    _publish_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<&'static str, StoreError> {
    let Some(name) = device.name.as_deref().filter(|n| n.len() <= 256) else {
        return Ok("malformed");
    };
    match store::device_by_name(c, name)? {
        Some(row) => {
            if device.state.as_deref() == Some("DELETED") {
                devices::vanished(&adapter.outbox, c, &row, now)?;
                return Ok("deleted");
            }
            if row.state == device_state::MANAGED || row.state == device_state::ENROLLING {
                devices::apply_report(&adapter.outbox, c, &row, device, message_id, now)?;
                Ok("applied")
            } else {
                Ok("device_gone")
            }
        }
        None => {
            let Some(enterprise_name) = name.split("/devices/").next() else {
                return Ok("malformed");
            };
            let Some(enterprise) = store::enterprise_by_name(c, enterprise_name)? else {
                return Ok("unknown_enterprise");
            };
            if device.state.as_deref() == Some("DELETED") {
                return Ok("device_gone");
            }
            devices::register(c, enterprise.tenant_id, name, device, now)?;
            Ok("enrolling")
        }
    }
}

// ---- authentication ----------------------------------------------------------------------

async fn authenticated(adapter: &Adapter, req: &HttpRequest) -> bool {
    let settings = &adapter.config.pubsub;
    if let Some(expected) = &settings.token {
        let presented = req
            .query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .unwrap_or_default();
        if !presented.is_empty()
            && constant_time_eq(presented.as_bytes(), expected.expose().as_bytes())
        {
            return true;
        }
    }
    if let Some(audience) = &settings.oidc_audience {
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            match verify_oidc(adapter, token, audience).await {
                Ok(()) => return true,
                Err(why) => tracing::warn!(reason = why, "Pub/Sub push token refused"),
            }
        }
    }
    false
}

async fn verify_oidc(adapter: &Adapter, token: &str, audience: &str) -> Result<(), &'static str> {
    if token.len() > 8192 {
        return Err("token too long");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT");
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| "bad base64")
    };
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| "bad header")?;
    let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|_| "bad claims")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("alg is not RS256");
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = adapter.jwks.key(kid).await.ok_or("unknown signing key")?;
    let signature = decode(s)?;
    let valid = Verifier::new(MessageDigest::sha256(), &key)
        .and_then(|mut v| {
            v.update(format!("{h}.{p}").as_bytes())?;
            v.verify(&signature)
        })
        .unwrap_or(false);
    if !valid {
        return Err("bad signature");
    }
    let settings = &adapter.config.pubsub;
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let bare_issuer = settings.oidc_issuer.trim_start_matches("https://");
    if issuer != settings.oidc_issuer && issuer != bare_issuer {
        return Err("wrong issuer");
    }
    if claims.get("aud").and_then(Value::as_str) != Some(audience) {
        return Err("wrong audience");
    }
    let now = adapter.now().timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("no exp")?;
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
    // A little leeway for clocks that disagree.
    if exp < now - 60 || iat > now + 300 {
        return Err("expired or not yet valid");
    }
    if let Some(email) = &settings.oidc_email {
        if claims.get("email").and_then(Value::as_str) != Some(email.as_str()) {
            return Err("wrong service account");
        }
        if claims.get("email_verified") != Some(&Value::Bool(true)) {
            return Err("e-mail not verified");
        }
    }
    Ok(())
}

/// A key id and its public key.
type SigningKey = (String, PKey<Public>);

/// Google's signing keys, fetched from the JWKS URL and cached.
pub struct Jwks {
    url: String,
    ttl: Duration,
    http: reqwest::Client,
    cache: Mutex<Option<(Instant, Vec<SigningKey>)>>,
}

impl Jwks {
    pub fn new(url: String, ttl: Duration) -> Self {
        Self {
            url,
            ttl,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: Mutex::new(None),
        }
    }

    /// The key with id `kid`; an unknown id refetches the document (keys rotate), at most
    /// once every ten seconds.
    async fn key(&self, kid: &str) -> Option<PKey<Public>> {
        let fetch_allowed = {
            let cache = self.cache.lock().ok()?;
            match cache.as_ref() {
                Some((at, keys)) => {
                    if let Some((_, key)) = keys.iter().find(|(id, _)| id == kid)
                        && at.elapsed() < self.ttl
                    {
                        return Some(key.clone());
                    }
                    at.elapsed() > Duration::from_secs(10)
                }
                None => true,
            }
        };
        if fetch_allowed
            && let Some(keys) = self.fetch().await
            && let Ok(mut cache) = self.cache.lock()
        {
            *cache = Some((Instant::now(), keys));
        }
        let cache = self.cache.lock().ok()?;
        cache
            .as_ref()?
            .1
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key.clone())
    }

    async fn fetch(&self) -> Option<Vec<SigningKey>> {
        let response = self.http.get(&self.url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.bytes().await.ok()?;
        if body.len() > 256 * 1024 {
            return None;
        }
        let doc: Value = serde_json::from_slice(&body).ok()?;
        let mut keys = Vec::new();
        for jwk in doc.get("keys")?.as_array()?.iter().take(32) {
            let text = |k: &str| jwk.get(k).and_then(Value::as_str);
            if text("kty") != Some("RSA") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (text("kid"), text("n"), text("e")) else {
                continue;
            };
            let component = |v: &str| {
                URL_SAFE_NO_PAD
                    .decode(v.trim_end_matches('='))
                    .ok()
                    .and_then(|b| BigNum::from_slice(&b).ok())
            };
            let (Some(n), Some(e)) = (component(n), component(e)) else {
                continue;
            };
            if let Some(key) = Rsa::from_public_components(n, e)
                .ok()
                .and_then(|rsa| PKey::from_rsa(rsa).ok())
            {
                keys.push((kid.to_owned(), key));
            }
        }
        Some(keys)
    }
}
