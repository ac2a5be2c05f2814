//! Authentication of API callers (bearer tokens with a role and a tenant) and of services
//! (the service credential on the internal listener).
//!
//! Tokens belong to the enrollment service, which answers what a token grants through its
//! internal API; every service asks it through [`RemoteVerifier`] behind a short cache,
//! whether or not the enrollment service runs in the same process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::{BoxFuture, LocalBoxFuture};
use mdm_api::internal::Grant;
use mdm_api::{ErrorCode, InternalClient};
use mdm_domain::{Permission, Role, TenantId, TokenId, UserId};

use crate::crypto::{constant_time_eq, sha256};
use crate::error::ApiError;

/// The header with which an operator names the tenant a call is about.
pub const TENANT_HEADER: &str = "X-Mdm-Tenant";

/// Answers what a bearer token grants: `None` for an unknown, revoked or expired token.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<Grant>, ApiError>>;
}

/// Asks the enrollment service's internal API.
pub struct RemoteVerifier {
    client: InternalClient,
}

impl RemoteVerifier {
    pub fn new(client: InternalClient) -> Self {
        Self { client }
    }
}

impl TokenVerifier for RemoteVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<Grant>, ApiError>> {
        Box::pin(async move {
            let answer = self.client.introspect(token).await?;
            Ok(answer.grant.filter(|_| answer.active))
        })
    }
}

/// Remembers answers for a while: valid tokens for `ttl`, unknown ones for a few
/// seconds (so that a client retrying a bad token does not reach the database each time).
/// Keys are hashes of the tokens; the tokens themselves are not kept.
pub struct CachedVerifier {
    inner: Arc<dyn TokenVerifier>,
    ttl: Duration,
    negative_ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], CacheEntry>>,
}

/// When an answer stops being trusted, and the answer.
type CacheEntry = (Instant, Option<Grant>);

const CACHE_CAPACITY: usize = 10_000;

impl CachedVerifier {
    pub fn new(inner: Arc<dyn TokenVerifier>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            negative_ttl: ttl.min(Duration::from_secs(5)),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Option<Grant>> {
        let entries = self.entries.lock().ok()?;
        let (expires, grant) = entries.get(key)?;
        (Instant::now() < *expires).then(|| grant.clone())
    }

    fn remember(&self, key: [u8; 32], grant: Option<Grant>) {
        let ttl = if grant.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_CAPACITY {
                let now = Instant::now();
                entries.retain(|_, (expires, _)| *expires > now);
                if entries.len() >= CACHE_CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now() + ttl, grant));
        }
    }
}

impl TokenVerifier for CachedVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<Grant>, ApiError>> {
        Box::pin(async move {
            let key = sha256(token.as_bytes());
            if let Some(grant) = self.cached(&key) {
                return Ok(grant);
            }
            let grant = self.inner.verify(token).await?;
            self.remember(key, grant.clone());
            Ok(grant)
        })
    }
}

/// The verifier the [`Caller`] extractor uses, as application data.
#[derive(Clone)]
pub struct Authenticator(pub Arc<dyn TokenVerifier>);

/// An authenticated API caller. Extracting it answers 401 without a valid bearer token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: TokenId,
    pub role: Role,
    /// The tenant the call is about: the token's own, or for an operator the one named in
    /// the `X-Mdm-Tenant` header.
    tenant: Option<TenantId>,
    pub user_id: Option<UserId>,
    /// Where the call came from, for the audit trail.
    pub remote_addr: Option<String>,
}

impl Caller {
    /// The tenant this call acts on. Operators must name one with `X-Mdm-Tenant`.
    pub fn tenant(&self) -> Result<TenantId, ApiError> {
        self.tenant
            .ok_or_else(|| ApiError::bare(ErrorCode::TenantRequired))
    }

    /// The tenant, if the call names one.
    pub fn tenant_opt(&self) -> Option<TenantId> {
        self.tenant
    }

    /// 403 unless the caller's role has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.can(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not {}",
                self.role,
                permission.as_str()
            )))
        }
    }

    /// The tenant, after checking that the caller may do `permission` in it.
    pub fn tenant_with(&self, permission: Permission) -> Result<TenantId, ApiError> {
        self.require(permission)?;
        self.tenant()
    }

    /// A caller for code paths that act on behalf of a known grant (tests, the CLI).
    pub fn from_grant(grant: Grant) -> Self {
        Self {
            token_id: grant.token_id,
            role: grant.role,
            tenant: grant.tenant_id,
            user_id: grant.user_id,
            remote_addr: None,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(caller) = req.extensions().get::<Caller>() {
                return Ok(caller.clone());
            }
            let token = bearer(&req).ok_or_else(|| ApiError::bare(ErrorCode::Unauthorized))?;
            let authenticator = req
                .app_data::<web::Data<Authenticator>>()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no authenticator configured")))?
                .clone();
            let grant = authenticator
                .0
                .verify(&token)
                .await?
                .ok_or_else(|| ApiError::bare(ErrorCode::Unauthorized))?;
            let tenant = match grant.tenant_id {
                Some(tenant) => Some(tenant),
                None => named_tenant(&req)?,
            };
            let caller = Caller {
                token_id: grant.token_id,
                role: grant.role,
                tenant,
                user_id: grant.user_id,
                remote_addr: req
                    .connection_info()
                    .realip_remote_addr()
                    .map(str::to_owned),
            };
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        })
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_owned())
}

fn named_tenant(req: &HttpRequest) -> Result<Option<TenantId>, ApiError> {
    let Some(value) = req.headers().get(TENANT_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    text.parse().map(Some).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{TENANT_HEADER} is not a tenant id"),
        )
    })
}

/// The service credential, as application data of the internal listener.
#[derive(Clone)]
pub struct ServiceCredential(pub Arc<str>);

/// Middleware of the internal listener: only callers presenting the service credential
/// get through. No API token, whatever its role, is accepted here.
pub async fn require_service_credential(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<ServiceCredential>>()
        .map(|c| c.0.clone());
    let presented = bearer(req.request());
    let allowed = match (expected, presented) {
        (Some(expected), Some(presented)) => {
            constant_time_eq(expected.as_bytes(), presented.as_bytes())
        }
        _ => false,
    };
    if !allowed {
        return Err(ApiError::bare(ErrorCode::Unauthorized).into());
    }
    next.call(req).await
}
