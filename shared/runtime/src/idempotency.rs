//! `Idempotency-Key` on mutating admin API calls: a repeat of a call with the same key
//! (from the same token) gets the first call's answer instead of doing the work again.
//!
//! The first call reserves the key, runs, and stores its answer. A repeat while it runs
//! gets 409 `idempotency_key_in_use`; a repeat with a different method, path or body gets
//! 422 `idempotency_key_reused`. Answers that ask for a retry anyway (401, 429, 5xx) are
//! not kept. Records are kept for a day.
//!
//! A handler whose effect is written in one transaction (a bulk job) records its answer in
//! that same transaction through [`ReservedKey`]: were the answer stored after the commit,
//! a crash in between would leave the effect with a key that has no answer, and a retry
//! once the reservation lapsed would make the effect again.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_store::models::runtime::IdempotencyRow;
use mdm_store::schema::rt_idempotency;
use mdm_store::{DbConnection, Store, StoreError, to_millis};

use crate::clock::SharedClock;
use crate::crypto::sha256;
use crate::error::ApiError;
use crate::openapi::AllowedMethods;

pub const HEADER: &str = "Idempotency-Key";

/// A reservation older than this belonged to a request that never finished (its process
/// died); the key may be used again.
const ABANDONED_AFTER_MS: i64 = 120_000;

/// Middleware for the public listener; only the admin API's mutating operations (those
/// of the OpenAPI document) with the header are affected.
pub async fn idempotent(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mutating = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Without credentials the call is refused (401) before its key matters (keys are
    // scoped to the credential that sent them); a method or path that is no operation is
    // refused (405, 404) whatever its key. Looked at in this order so that the calls
    // without a key (every device's) cost nothing here.
    let Some(key) = key.filter(|_| mutating) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let operation = req.headers().contains_key(header::AUTHORIZATION)
        && req
            .app_data::<web::Data<AllowedMethods>>()
            .is_some_and(|allowed| allowed.takes(req.path(), req.method().as_str()));
    if !operation {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "Idempotency-Key must be 1 to 255 characters",
        )
        .into());
    }
    let (Some(store), Some(clock)) = (
        req.app_data::<web::Data<Store>>()
            .map(|s| s.get_ref().clone()),
        req.app_data::<web::Data<SharedClock>>()
            .map(|c| c.get_ref().clone()),
    ) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // The key is scoped to the credential that sent it (stored hashed).
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let scope = STANDARD_NO_PAD.encode(sha256(&authorization));
    let body = req.extract::<web::Bytes>().await?;
    let fingerprint = {
        let mut material = format!("{} {}\n", req.method(), req.uri()).into_bytes();
        material.extend_from_slice(&body);
        STANDARD_NO_PAD.encode(sha256(&material))
    };
    req.set_payload(actix_web::dev::Payload::from(body));

    let now = clock.now();
    let reservation = {
        let (scope, key, fingerprint) = (scope.clone(), key.clone(), fingerprint.clone());
        store
            .write(move |c| reserve(c, &scope, &key, &fingerprint, now))
            .await
    };
    match reservation {
        Ok(Reservation::Reserved) => {
            req.extensions_mut().insert(ReservedKey {
                scope: scope.clone(),
                key: key.clone(),
            });
        }
        Ok(Reservation::Replay(row)) => return Ok(req.into_response(replay(row))),
        Ok(Reservation::InUse) => return Err(ApiError::bare(ErrorCode::IdempotencyKeyInUse).into()),
        Ok(Reservation::Reused) => {
            return Err(ApiError::bare(ErrorCode::IdempotencyKeyReused).into());
        }
        Err(error) => return Err(ApiError::from(error).into()),
    }

    let response = next.call(req).await;
    let response = match response {
        Ok(response) => response.map_into_boxed_body(),
        Err(error) => {
            let _ = store.write(move |c| release(c, &scope, &key)).await;
            return Err(error);
        }
    };
    let status = response.status();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, location) = (
        header_text(header::CONTENT_TYPE),
        header_text(header::LOCATION),
    );
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let keep = !(status == StatusCode::UNAUTHORIZED
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error());
    let stored = bytes.to_vec();
    let _ = store
        .write(move |c| {
            if keep {
                let answer = Answer {
                    status: status.as_u16(),
                    content_type,
                    location,
                    body: stored,
                };
                finish(c, &scope, &key, answer)
            } else {
                release(c, &scope, &key)
            }
        })
        .await;
    Ok(ServiceResponse::new(
        request,
        head.set_body(BoxBody::new(bytes)),
    ))
}

/// The key reserved for the request being handled, in its extensions; a handler takes it
/// with `Option<web::ReqData<ReservedKey>>` (absent without an `Idempotency-Key`).
#[derive(Clone, Debug)]
pub struct ReservedKey {
    scope: String,
    key: String,
}

impl ReservedKey {
    /// Stores the answer in the caller's transaction, the one that makes the effect.
    pub fn record(
        &self,
        c: &mut DbConnection,
        status: StatusCode,
        location: Option<&str>,
        json: &[u8],
    ) -> Result<(), StoreError> {
        let answer = Answer {
            status: status.as_u16(),
            content_type: Some("application/json".into()),
            location: location.map(str::to_owned),
            body: json.to_vec(),
        };
        finish(c, &self.scope, &self.key, answer)
    }
}

/// A stored answer.
struct Answer {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
}

enum Reservation {
    Reserved,
    Replay(IdempotencyRow),
    InUse,
    Reused,
}

fn reserve(
    c: &mut DbConnection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Reservation, StoreError> {
    let existing = rt_idempotency::table
        .find((scope, key))
        .select(IdempotencyRow::as_select())
        .first(c)
        .optional()?;
    if let Some(row) = existing {
        if row.request_hash != fingerprint {
            return Ok(Reservation::Reused);
        }
        if row.status.is_some() {
            return Ok(Reservation::Replay(row));
        }
        if to_millis(now) - row.created_at < ABANDONED_AFTER_MS {
            return Ok(Reservation::InUse);
        }
        release(c, scope, key)?;
    }
    let row = IdempotencyRow {
        scope: scope.to_owned(),
        idem_key: key.to_owned(),
        request_hash: fingerprint.to_owned(),
        status: None,
        content_type: None,
        response_body: None,
        created_at: to_millis(now),
        location: None,
    };
    match diesel::insert_into(rt_idempotency::table)
        .values(&row)
        .execute(c)
        .map_err(StoreError::from)
    {
        Ok(_) => Ok(Reservation::Reserved),
        Err(e) if e.is_unique_violation() => Ok(Reservation::InUse),
        Err(e) => Err(e),
    }
}

/// Stores the answer of a reserved key, unless the handler stored it already.
fn finish(c: &mut DbConnection, scope: &str, key: &str, answer: Answer) -> Result<(), StoreError> {
    diesel::update(
        rt_idempotency::table
            .find((scope, key))
            .filter(rt_idempotency::status.is_null()),
    )
    .set((
        rt_idempotency::status.eq(Some(i32::from(answer.status))),
        rt_idempotency::content_type.eq(answer.content_type),
        rt_idempotency::location.eq(answer.location),
        rt_idempotency::response_body.eq(Some(answer.body)),
    ))
    .execute(c)?;
    Ok(())
}

fn release(c: &mut DbConnection, scope: &str, key: &str) -> Result<(), StoreError> {
    diesel::delete(rt_idempotency::table.find((scope, key))).execute(c)?;
    Ok(())
}

fn replay(row: IdempotencyRow) -> HttpResponse {
    let status = row
        .status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = row
        .content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Some(location) = row.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.insert_header((header::LOCATION, location));
    }
    response.insert_header(("Idempotent-Replayed", "true"));
    response.body(row.response_body.unwrap_or_default())
}

/// Forgets records created before `before`.
pub fn prune(c: &mut DbConnection, before: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        rt_idempotency::table.filter(rt_idempotency::created_at.lt(to_millis(before))),
    )
    .execute(c)?)
}
