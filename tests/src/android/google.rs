//! The mock of Google's side: the Android Management API (every path of the discovery
//! document, bodies checked against its schemas), the OAuth token server for service
//! accounts, Pub/Sub push to a subscriber endpoint, and the devices Google manages.
//!
//! Time on the API side (token expiry of enrollment tokens, `publishTime`, status-report
//! times, OIDC push tokens) comes from the `Now` function the test gives, so that it
//! agrees with the server's injected clock. The OAuth server judges assertions against
//! real time, like Google's: yup-oauth2 stamps them with the system clock.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::device::{self, Hardware, SimulatedDevice};
use super::discovery::{Discovery, parse_duration};
use super::jwt::{self, KeyPair};

/// "Now" on the API side.
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The OAuth scope of the Android Management API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/androidmanagement";
/// The issuer of the OIDC tokens Pub/Sub signs for push.
pub const OIDC_ISSUER: &str = "https://accounts.google.com";

/// A fault the mock answers instead of the real answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 RESOURCE_EXHAUSTED.
    RateLimited,
    /// 503 UNAVAILABLE.
    Unavailable,
    /// 404 NOT_FOUND.
    NotFound,
    /// The quirk: 500 INTERNAL whose message says the entity was not found.
    EntityNotFound500,
    /// No answer for this long (a client timeout).
    Stall(Duration),
}

/// Answers `kind` to the next `times` requests of methods whose id ends with `method`
/// (`devices.issueCommand`; empty: every method).
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub method: String,
    pub times: u32,
}

impl Fault {
    pub fn new(kind: FaultKind, method: &str, times: u32) -> Self {
        Self {
            kind,
            method: method.to_owned(),
            times,
        }
    }
}

/// One API request the mock answered (faults included).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

/// How Pub/Sub authenticates its pushes to the subscriber.
#[derive(Debug, Clone)]
pub enum PushAuth {
    /// The endpoint URL carries `?token=<secret>` (the documented shared-secret pattern).
    QueryToken(String),
    /// `Authorization: Bearer <OIDC token>` signed by Google, with this audience and
    /// service-account e-mail.
    Oidc { audience: String, email: String },
    /// No authentication at all (for tests of refusal).
    None,
}

/// A push subscription on the enterprise's topic.
#[derive(Debug, Clone)]
pub struct PushSubscription {
    /// The subscriber's endpoint, e.g. `http://127.0.0.1:8080/mdm/android/pubsub`.
    pub endpoint: String,
    pub auth: PushAuth,
    /// `projects/p/subscriptions/s`.
    pub subscription: String,
}

/// What became of one pushed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub message_id: String,
    pub notification_type: String,
    pub attempts: u32,
    /// The last HTTP status the subscriber answered (0: no answer).
    pub status: u16,
}

pub(crate) struct ServiceAccountEntry {
    pub(crate) project_id: String,
    public: openssl::pkey::PKey<openssl::pkey::Public>,
}

struct AccessToken {
    email: String,
    expires: Instant,
}

pub(crate) struct DeviceEntry {
    pub(crate) resource: Value,
    pub(crate) sim: device::State,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) accounts: HashMap<String, ServiceAccountEntry>,
    tokens: HashMap<String, AccessToken>,
    pub(crate) token_lifetime_secs: i64,
    pub(crate) token_requests: u64,
    /// Token requests refused (a key the mock does not know, a bad assertion).
    pub(crate) token_refusals: u64,
    signups: HashMap<String, (String, Option<String>)>,
    pub(crate) enterprises: BTreeMap<String, (String, Value)>,
    pub(crate) policies: BTreeMap<String, Value>,
    pub(crate) enrollment_tokens: BTreeMap<String, Value>,
    pub(crate) devices: BTreeMap<String, DeviceEntry>,
    /// Devices that left (wiped, deleted, reset by their user), as they ended.
    pub(crate) gone: BTreeMap<String, device::State>,
    pub(crate) used_tokens: std::collections::HashSet<String>,
    pub(crate) operations: BTreeMap<String, Value>,
    faults: Vec<Fault>,
    pub(crate) requests: Vec<Recorded>,
    pub(crate) record_bodies: bool,
    pub(crate) push: Option<PushSubscription>,
    pub(crate) pushed: Vec<Pushed>,
    next_message: u64,
    pub(crate) auto_execute: bool,
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) now: Now,
    pub(crate) http: reqwest::Client,
    pub(crate) oidc_key: KeyPair,
    base_url: String,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.now)()
    }
}

/// The running mock. Cheap to clone.
#[derive(Clone)]
pub struct MockGoogle {
    pub(crate) inner: Arc<Inner>,
    handle: actix_web::dev::ServerHandle,
}

impl MockGoogle {
    /// Starts the mock on a free loopback port.
    pub async fn start(now: Now) -> anyhow::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0")?, now).await
    }

    /// Starts the mock on `listener` (a port chosen beforehand, for a server configured
    /// with the mock's URL before the mock runs).
    pub async fn start_on(listener: TcpListener, now: Now) -> anyhow::Result<Self> {
        let base_url = format!("http://{}/", listener.local_addr()?);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                token_lifetime_secs: 3599,
                auto_execute: true,
                record_bodies: true,
                ..State::default()
            }),
            now,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // Idle connections go long before a test server's keep-alive closes them.
                .pool_idle_timeout(std::time::Duration::from_millis(500))
                .build()?,
            oidc_key: KeyPair::generate(&format!("mock-{:08x}", rand::rng().random::<u32>()))?,
            base_url,
        });
        let data = web::Data::new(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { inner, handle })
    }

    /// The API's root URL (`http://127.0.0.1:<port>/`), like `https://androidmanagement.googleapis.com/`.
    pub fn url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The OAuth token endpoint, for service-account key files.
    pub fn token_uri(&self) -> String {
        format!("{}token", self.inner.base_url)
    }

    /// Google's JWKS document, whose keys sign Pub/Sub's OIDC push tokens.
    pub fn jwks_uri(&self) -> String {
        format!("{}oauth2/v3/certs", self.inner.base_url)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Creates a service account in `project_id` and answers its key file (JSON), whose
    /// `token_uri` points at this mock.
    pub fn service_account(&self, project_id: &str) -> anyhow::Result<String> {
        let suffix: u32 = rand::rng().random();
        let email = format!("mdm-{suffix:08x}@{project_id}.iam.gserviceaccount.com");
        let key = KeyPair::generate(&format!("{suffix:08x}"))?;
        self.inner.lock().accounts.insert(
            email.clone(),
            ServiceAccountEntry {
                project_id: project_id.to_owned(),
                public: key.public()?,
            },
        );
        Ok(json!({
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key.kid,
            "private_key": key.private_pem()?,
            "client_email": email,
            "client_id": format!("{}", rand::rng().random::<u64>()),
            "auth_uri": format!("{}o/oauth2/auth", self.inner.base_url),
            "token_uri": self.token_uri(),
        })
        .to_string())
    }

    /// Seconds that new access tokens live (`expires_in`); yup-oauth2 treats a token as
    /// expired a minute early, so 60 makes every call fetch a new one.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.inner.lock().token_lifetime_secs = secs;
    }

    /// Forgets every access token issued so far: the next API call answers 401.
    pub fn revoke_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Token requests answered with a token.
    pub fn token_requests(&self) -> u64 {
        self.inner.lock().token_requests
    }

    /// How many token requests were refused.
    pub fn token_refusals(&self) -> u64 {
        self.inner.lock().token_refusals
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.inner.lock().faults.push(fault);
    }

    /// Drops every injected fault not used up yet.
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// Whether devices carry out commands as soon as they are issued (default), or only
    /// when a test calls [`SimulatedDevice::process_commands`].
    pub fn set_auto_execute(&self, on: bool) {
        self.inner.lock().auto_execute = on;
    }

    /// Stop keeping request bodies (for the benchmark).
    pub fn set_record_bodies(&self, on: bool) {
        self.inner.lock().record_bodies = on;
    }

    /// The API requests answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    /// Requests to methods whose id ends with `method`.
    pub fn requests_to(&self, method: &str) -> Vec<Recorded> {
        self.inner
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.ends_with(method))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// The admin completes Google's signup page for `signup_url_name`: answers the
    /// `enterpriseToken` Google appends to the callback URL.
    pub fn complete_signup(&self, signup_url_name: &str) -> Option<String> {
        let mut state = self.inner.lock();
        let entry = state.signups.get_mut(signup_url_name)?;
        let token = format!("EAH{}", random_id(24));
        entry.1 = Some(token.clone());
        Some(token)
    }

    /// Creates an enterprise in `project_id` directly (as if signed up earlier).
    pub fn create_enterprise(&self, project_id: &str) -> String {
        let name = format!("enterprises/LC0{}", random_id(8).to_lowercase());
        let resource =
            json!({"name": name, "enterpriseType": "MANAGED_GOOGLE_PLAY_ACCOUNTS_ENTERPRISE"});
        self.inner
            .lock()
            .enterprises
            .insert(name.clone(), (project_id.to_owned(), resource));
        name
    }

    pub fn enterprise(&self, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .enterprises
            .get(name)
            .map(|(_, e)| e.clone())
    }

    pub fn policy(&self, name: &str) -> Option<Value> {
        self.inner.lock().policies.get(name).cloned()
    }

    pub fn enrollment_token(&self, name: &str) -> Option<Value> {
        self.inner.lock().enrollment_tokens.get(name).cloned()
    }

    /// The device resource, as `devices.get` would answer it.
    pub fn device(&self, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .devices
            .get(name)
            .map(|d| d.resource.clone())
    }

    /// The operations of a device.
    pub fn operations(&self, device: &str) -> Vec<Value> {
        let prefix = format!("{device}/operations/");
        self.inner
            .lock()
            .operations
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .map(|(_, op)| op.clone())
            .collect()
    }

    /// Subscribes `subscription` to every enterprise's topic.
    pub fn push_to(&self, subscription: PushSubscription) {
        self.inner.lock().push = Some(subscription);
    }

    /// Every message pushed so far and its fate.
    pub fn pushed(&self) -> Vec<Pushed> {
        self.inner.lock().pushed.clone()
    }

    /// Publishes a notification as AMAPI would and waits for the push to end (delivered,
    /// or given up after a few attempts).
    pub async fn publish(&self, notification_type: &str, data: Option<&Value>) -> Pushed {
        publish(&self.inner, notification_type, data, None).await
    }

    /// Pushes the same message id again (Pub/Sub delivers at least once).
    pub async fn republish(
        &self,
        message_id: &str,
        notification_type: &str,
        data: Option<&Value>,
    ) -> Pushed {
        publish(
            &self.inner,
            notification_type,
            data,
            Some(message_id.to_owned()),
        )
        .await
    }

    /// Posts a raw body to the subscriber with the subscription's authentication; answers
    /// the HTTP status.
    pub async fn push_raw(&self, body: &str) -> u16 {
        let Some(push) = self.inner.lock().push.clone() else {
            return 0;
        };
        deliver(&self.inner, &push, body.to_owned()).await
    }

    /// A device is provisioned with an enrollment token (the value typed in, scanned from
    /// the QR code, or carried by the enrollment link). Google refuses unknown, expired
    /// and used one-time tokens, and personal devices under a token that disallows
    /// personal usage. Publishes ENROLLMENT and waits for the push.
    pub async fn enroll(
        &self,
        token_value: &str,
        setup: device::Setup,
        hardware: Hardware,
    ) -> Result<SimulatedDevice, String> {
        let resource = device::provision(&self.inner, token_value, setup, &hardware)?;
        let name = resource["name"].as_str().unwrap_or_default().to_owned();
        publish(&self.inner, "ENROLLMENT", Some(&resource), None).await;
        Ok(SimulatedDevice::new(self.clone(), name))
    }

    /// A JWT that Pub/Sub would send for push authentication.
    pub fn oidc_token(&self, audience: &str, email: &str) -> String {
        oidc_token(&self.inner, audience, email).unwrap_or_default()
    }
}

// ---- HTTP ----------------------------------------------------------------------------

async fn handle(req: HttpRequest, body: web::Bytes, inner: web::Data<Arc<Inner>>) -> HttpResponse {
    let path = req.path().trim_start_matches('/').to_owned();
    match (req.method().as_str(), path.as_str()) {
        ("POST", "token") => token(&inner, &body),
        ("GET", "oauth2/v3/certs") => match inner.oidc_key.jwk() {
            Ok(jwk) => HttpResponse::Ok().json(json!({ "keys": [jwk] })),
            Err(_) => HttpResponse::InternalServerError().finish(),
        },
        _ => api(&inner, &req, &body, &path).await,
    }
}

/// The OAuth token endpoint: the JWT bearer grant of a service account.
fn token(inner: &Inner, body: &[u8]) -> HttpResponse {
    let response = grant_token(inner, body);
    if !response.status().is_success() {
        inner.lock().token_refusals += 1;
    }
    response
}

fn grant_token(inner: &Inner, body: &[u8]) -> HttpResponse {
    let form: Vec<(String, String)> = url_pairs(&String::from_utf8_lossy(body));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let refuse = |error: &str, description: &str| {
        HttpResponse::BadRequest().json(json!({"error": error, "error_description": description}))
    };
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return refuse("unsupported_grant_type", "Invalid grant_type");
    }
    let assertion = match jwt::decode(field("assertion")) {
        Ok(assertion) => assertion,
        Err(why) => return refuse("invalid_grant", &why),
    };
    let claims = &assertion.claims;
    let issuer = claims["iss"].as_str().unwrap_or_default();
    let mut state = inner.lock();
    let Some(account) = state.accounts.get(issuer) else {
        return refuse("invalid_grant", "Invalid JWT Signature.");
    };
    if assertion.verify(&account.public).is_err() {
        return refuse("invalid_grant", "Invalid JWT Signature.");
    }
    if claims["aud"].as_str() != Some(&format!("{}token", inner.base_url)) {
        return refuse(
            "invalid_grant",
            "Invalid JWT: audience does not match token_uri.",
        );
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == SCOPE) {
        return refuse(
            "invalid_scope",
            "The androidmanagement scope was not requested.",
        );
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refuse("invalid_grant", "Invalid JWT: iat and exp are required.");
    };
    let real_now = real_now().timestamp();
    if exp <= iat || exp - iat > 3600 || iat > real_now + 300 || exp < real_now - 300 {
        return refuse(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    let lifetime = state.token_lifetime_secs;
    let access_token = format!("ya29.mock-{}", random_id(40));
    state.tokens.insert(
        access_token.clone(),
        AccessToken {
            email: issuer.to_owned(),
            expires: Instant::now() + Duration::from_secs(u64::try_from(lifetime).unwrap_or(0)),
        },
    );
    state.token_requests += 1;
    HttpResponse::Ok().json(json!({
        "access_token": access_token,
        "expires_in": lifetime,
        "token_type": "Bearer",
    }))
}

/// Google's servers run on real time; the OAuth server judges yup-oauth2's assertions
/// (stamped with the system clock) by it.
#[allow(clippy::disallowed_methods)]
fn real_now() -> DateTime<Utc> {
    Utc::now()
}

/// A google.rpc.Status error answer.
pub(crate) fn status(code: u16, status: &str, message: &str) -> HttpResponse {
    let http = actix_web::http::StatusCode::from_u16(code)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(http).json(json!({
        "error": {"code": code, "message": message, "status": status}
    }))
}

fn invalid(message: &str) -> HttpResponse {
    status(400, "INVALID_ARGUMENT", message)
}

fn not_found(what: &str) -> HttpResponse {
    status(
        404,
        "NOT_FOUND",
        &format!("Requested entity was not found. ({what})"),
    )
}

async fn api(inner: &Arc<Inner>, req: &HttpRequest, body: &[u8], path: &str) -> HttpResponse {
    let discovery = Discovery::get();
    let matched = match discovery.route(req.method().as_str(), path) {
        Some(Ok(matched)) => matched,
        Some(Err(())) => return status(405, "UNIMPLEMENTED", "Method not allowed"),
        None => return not_found(path),
    };
    let method_id = matched.method.id.clone();
    let query = url_pairs(req.query_string());

    // Authentication: a bearer token from our token server, of the enterprise's project.
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let project = {
        let state = inner.lock();
        state
            .tokens
            .get(&bearer)
            .filter(|t| t.expires > Instant::now())
            .and_then(|t| state.accounts.get(&t.email))
            .map(|a| a.project_id.clone())
    };
    let Some(project) = project else {
        return record(
            inner,
            &method_id,
            path,
            &query,
            Value::Null,
            status(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ),
        );
    };

    if let Err(why) = discovery.check_query(matched.method, &query) {
        return record(inner, &method_id, path, &query, Value::Null, invalid(&why));
    }
    let fault = {
        let mut state = inner.lock();
        let found = state
            .faults
            .iter()
            .position(|f| f.times > 0 && method_id.ends_with(&f.method));
        found.map(|i| {
            state.faults[i].times -= 1;
            let kind = state.faults[i].kind;
            state.faults.retain(|f| f.times > 0);
            kind
        })
    };
    if let Some(kind) = fault {
        let answer = match kind {
            FaultKind::RateLimited => status(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per 100 seconds' of service 'androidmanagement.googleapis.com'.",
            ),
            FaultKind::Unavailable => {
                status(503, "UNAVAILABLE", "The service is currently unavailable.")
            }
            FaultKind::NotFound => not_found(path),
            FaultKind::EntityNotFound500 => {
                status(500, "INTERNAL", "Requested entity was not found.")
            }
            FaultKind::Stall(delay) => {
                tokio::time::sleep(delay).await;
                status(503, "UNAVAILABLE", "Deadline exceeded.")
            }
        };
        return record(inner, &method_id, path, &query, Value::Null, answer);
    }

    let body_value = if matched.method.request.is_some() {
        let text = String::from_utf8_lossy(body);
        let parsed: Result<Value, _> = if text.trim().is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_str(&text)
        };
        let value = match parsed {
            Ok(value) => value,
            Err(e) => {
                return record(
                    inner,
                    &method_id,
                    path,
                    &query,
                    Value::Null,
                    invalid(&format!("Invalid JSON payload received. {e}")),
                );
            }
        };
        let schema = matched.method.request.clone().unwrap_or_default();
        if let Err(why) = discovery.validate(&schema, &value) {
            return record(inner, &method_id, path, &query, value, invalid(&why));
        }
        value
    } else {
        Value::Null
    };

    let call = Call {
        inner,
        project: &project,
        query: &query,
        body: &body_value,
        enterprise: format!("enterprises/{}", matched.var("enterprisesId")),
    };
    // `enterprises/E/<collection>/<id of the path variable>`.
    let child = |collection: &str, var: &str| {
        format!("{}/{collection}/{}", call.enterprise, matched.var(var))
    };
    let short = method_id.trim_start_matches("androidmanagement.");
    let answer = match short {
        "signupUrls.create" => call.signup_url(),
        "enterprises.create" => call.create_enterprise(),
        "enterprises.get" => call.with_enterprise(|_, e| HttpResponse::Ok().json(e)),
        "enterprises.patch" => call.patch_enterprise(),
        "enterprises.delete" => call.delete_enterprise(),
        "enterprises.list" => call.list_enterprises(),
        "enterprises.policies.get" => {
            call.get_in(|s| &s.policies, &child("policies", "policiesId"))
        }
        "enterprises.policies.patch" => call.patch_policy(&child("policies", "policiesId")),
        "enterprises.policies.delete" => call.delete_policy(&child("policies", "policiesId")),
        "enterprises.policies.list" => call.list_in(|s| &s.policies, "policies"),
        "enterprises.enrollmentTokens.create" => call.create_enrollment_token(),
        "enterprises.enrollmentTokens.get" => call.get_in(
            |s| &s.enrollment_tokens,
            &child("enrollmentTokens", "enrollmentTokensId"),
        ),
        "enterprises.enrollmentTokens.delete" => {
            call.delete_enrollment_token(&child("enrollmentTokens", "enrollmentTokensId"))
        }
        "enterprises.enrollmentTokens.list" => {
            call.list_in(|s| &s.enrollment_tokens, "enrollmentTokens")
        }
        "enterprises.devices.get" => {
            let name = child("devices", "devicesId");
            call.with_enterprise(|state, _| match state.devices.get(&name) {
                Some(device) => HttpResponse::Ok().json(&device.resource),
                None => not_found(&name),
            })
        }
        "enterprises.devices.list" => call.list_devices(),
        "enterprises.devices.patch" => call.patch_device(&child("devices", "devicesId")),
        "enterprises.devices.delete" => call.delete_device(&child("devices", "devicesId")),
        "enterprises.devices.issueCommand" => call.issue_command(&child("devices", "devicesId")),
        "enterprises.devices.operations.get" => {
            let name = format!(
                "{}/devices/{}/operations/{}",
                call.enterprise,
                matched.var("devicesId"),
                matched.var("operationsId")
            );
            call.with_enterprise(|state, _| match state.operations.get(&name) {
                Some(op) => HttpResponse::Ok().json(op),
                None => not_found(&name),
            })
        }
        "enterprises.devices.operations.list" => {
            call.list_operations(&child("devices", "devicesId"))
        }
        "enterprises.devices.operations.cancel" => call.cancel_operation(&format!(
            "{}/devices/{}/operations/{}",
            call.enterprise,
            matched.var("devicesId"),
            matched.var("operationsId")
        )),
        _ => status(
            501,
            "UNIMPLEMENTED",
            &format!("{method_id} is not implemented by the mock"),
        ),
    };
    let device = child("devices", "devicesId");
    let answer = record(inner, &method_id, path, &query, body_value.clone(), answer);
    let execute = inner.lock().auto_execute;
    if short == "enterprises.devices.issueCommand" && answer.status().is_success() && execute {
        let inner = inner.clone();
        tokio::spawn(async move { device::execute_pending(&inner, &device).await });
    }
    answer
}

fn record(
    inner: &Inner,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Value,
    answer: HttpResponse,
) -> HttpResponse {
    let mut state = inner.lock();
    let body = if state.record_bodies {
        body
    } else {
        Value::Null
    };
    state.requests.push(Recorded {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_vec(),
        body,
        status: answer.status().as_u16(),
        at: Instant::now(),
    });
    answer
}

/// One authenticated API call being answered.
struct Call<'a> {
    inner: &'a Arc<Inner>,
    project: &'a str,
    query: &'a [(String, String)],
    body: &'a Value,
    enterprise: String,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn params(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Runs `f` when the enterprise exists and belongs to the caller's project.
    fn with_enterprise(&self, f: impl FnOnce(&mut State, &Value) -> HttpResponse) -> HttpResponse {
        let mut state = self.inner.lock();
        let Some((project, enterprise)) = state.enterprises.get(&self.enterprise).cloned() else {
            return status(
                403,
                "PERMISSION_DENIED",
                "Caller is not authorized to manage enterprise.",
            );
        };
        if project != self.project {
            return status(
                403,
                "PERMISSION_DENIED",
                "Caller is not authorized to manage enterprise.",
            );
        }
        f(&mut state, &enterprise)
    }

    fn signup_url(&self) -> HttpResponse {
        if self.param("projectId") != Some(self.project) {
            return status(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
            );
        }
        let Some(callback) = self.param("callbackUrl") else {
            return invalid("callbackUrl is required.");
        };
        let name = format!("signupUrls/C{}", random_id(16).to_lowercase());
        self.inner
            .lock()
            .signups
            .insert(name.clone(), (callback.to_owned(), None));
        HttpResponse::Ok().json(json!({
            "name": name,
            "url": format!("https://enterprise.google.com/signup/android/email?origin=android&thirdPartyToken={}", random_id(32)),
        }))
    }

    fn create_enterprise(&self) -> HttpResponse {
        if self.param("projectId") != Some(self.project) {
            return status(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
            );
        }
        let (Some(signup), Some(token)) =
            (self.param("signupUrlName"), self.param("enterpriseToken"))
        else {
            return invalid("signupUrlName and enterpriseToken are required.");
        };
        let mut state = self.inner.lock();
        match state.signups.get(signup) {
            Some((_, Some(expected))) if expected == token => {}
            _ => return invalid("The enterprise token is invalid or has expired."),
        }
        state.signups.remove(signup);
        let name = format!("enterprises/LC0{}", random_id(8).to_lowercase());
        let mut resource = self.body.clone();
        let object = resource.as_object_mut();
        if let Some(object) = object {
            object.insert("name".into(), json!(name));
            object.insert(
                "enterpriseType".into(),
                json!("MANAGED_GOOGLE_PLAY_ACCOUNTS_ENTERPRISE"),
            );
        }
        state
            .enterprises
            .insert(name, (self.project.to_owned(), resource.clone()));
        HttpResponse::Ok().json(resource)
    }

    fn patch_enterprise(&self) -> HttpResponse {
        let mask = self.param("updateMask").map(str::to_owned);
        let name = self.enterprise.clone();
        let body = self.body.clone();
        self.with_enterprise(|state, current| {
            let merged = apply_patch(current, &body, mask.as_deref());
            if let Some(topic) = merged.get("pubsubTopic").and_then(Value::as_str)
                && (!topic.starts_with("projects/") || !topic.contains("/topics/"))
            {
                return invalid("pubsubTopic must be projects/{project}/topics/{topic}.");
            }
            if let Some(entry) = state.enterprises.get_mut(&name) {
                entry.1 = merged.clone();
            }
            HttpResponse::Ok().json(merged)
        })
    }

    fn delete_enterprise(&self) -> HttpResponse {
        let name = self.enterprise.clone();
        self.with_enterprise(|state, _| {
            state.enterprises.remove(&name);
            HttpResponse::Ok().json(json!({}))
        })
    }

    fn list_enterprises(&self) -> HttpResponse {
        if self.param("projectId") != Some(self.project) {
            return status(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
            );
        }
        let state = self.inner.lock();
        let list: Vec<&Value> = state
            .enterprises
            .values()
            .filter(|(p, _)| p == self.project)
            .map(|(_, e)| e)
            .collect();
        HttpResponse::Ok().json(json!({ "enterprises": list }))
    }

    fn get_in(
        &self,
        collection: impl Fn(&State) -> &BTreeMap<String, Value>,
        name: &str,
    ) -> HttpResponse {
        self.with_enterprise(|state, _| match collection(state).get(name) {
            Some(value) => HttpResponse::Ok().json(value),
            None => not_found(name),
        })
    }

    fn list_in(
        &self,
        collection: impl Fn(&State) -> &BTreeMap<String, Value>,
        field: &str,
    ) -> HttpResponse {
        let prefix = format!("{}/", self.enterprise);
        self.with_enterprise(|state, _| {
            let items: Vec<&Value> = collection(state)
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect();
            HttpResponse::Ok().json(json!({ field: items }))
        })
    }

    fn patch_policy(&self, name: &str) -> HttpResponse {
        let mask = self.param("updateMask").map(str::to_owned);
        let body = self.body.clone();
        self.with_enterprise(|state, _| {
            let current = state
                .policies
                .get(name)
                .cloned()
                .unwrap_or_else(|| json!({}));
            let mut merged = apply_patch(&current, &body, mask.as_deref());
            let version = current["version"]
                .as_str()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            merged["name"] = json!(name);
            merged["version"] = json!(version.to_string());
            state.policies.insert(name.to_owned(), merged.clone());
            HttpResponse::Ok().json(merged)
        })
    }

    fn delete_policy(&self, name: &str) -> HttpResponse {
        self.with_enterprise(|state, _| {
            if state
                .devices
                .values()
                .any(|d| d.resource["policyName"] == name)
            {
                return status(
                    400,
                    "FAILED_PRECONDITION",
                    "The policy is applied to devices and cannot be deleted.",
                );
            }
            match state.policies.remove(name) {
                Some(_) => HttpResponse::Ok().json(json!({})),
                None => not_found(name),
            }
        })
    }

    fn create_enrollment_token(&self) -> HttpResponse {
        let body = self.body.clone();
        let enterprise = self.enterprise.clone();
        let now = self.inner.now();
        self.with_enterprise(|state, _| {
            let mut token = body;
            if let Some(policy) = token.get("policyName").and_then(Value::as_str) {
                let full = if policy.contains('/') {
                    policy.to_owned()
                } else {
                    format!("{enterprise}/policies/{policy}")
                };
                if !state.policies.contains_key(&full) {
                    return invalid(&format!("Policy {full} not found."));
                }
                token["policyName"] = json!(full);
            }
            if token
                .get("additionalData")
                .and_then(Value::as_str)
                .is_some_and(|d| d.len() > 1024)
            {
                return invalid("additionalData must be 1024 characters or less.");
            }
            let secs = match token.get("duration").and_then(Value::as_str) {
                Some(text) => match parse_duration(text) {
                    Some(s) if s >= 60.0 => s,
                    _ => return invalid("duration must be at least one minute."),
                },
                None => 3600.0,
            };
            // f64 seconds to whole milliseconds; durations above ~292 million years clamp.
            let millis = (secs * 1000.0).min(9.0e15) as i64;
            let expires = now + chrono::Duration::milliseconds(millis);
            let value: String = random_letters(20);
            let name = format!("{enterprise}/enrollmentTokens/{}", random_id(20).to_lowercase());
            token["name"] = json!(name);
            token["value"] = json!(value);
            token["duration"] = json!(format!("{secs}s"));
            token["expirationTimestamp"] = json!(rfc3339(expires));
            if token.get("allowPersonalUsage").is_none() {
                token["allowPersonalUsage"] = json!("PERSONAL_USAGE_ALLOWED");
            }
            token["qrCode"] = json!(
                json!({
                    "android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
                    "android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM": "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
                    "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": "https://play.google.com/managed/downloadManagingApp?identifier=setup",
                    "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE": {
                        "com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN": value
                    }
                })
                .to_string()
            );
            state.enrollment_tokens.insert(name, token.clone());
            HttpResponse::Ok().json(token)
        })
    }

    fn delete_enrollment_token(&self, name: &str) -> HttpResponse {
        self.with_enterprise(|state, _| match state.enrollment_tokens.remove(name) {
            Some(_) => HttpResponse::Ok().json(json!({})),
            None => not_found(name),
        })
    }

    fn list_devices(&self) -> HttpResponse {
        let page_size = self
            .param("pageSize")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(100)
            .min(100);
        let offset = self
            .param("pageToken")
            .and_then(|s| s.strip_prefix("p"))
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let prefix = format!("{}/devices/", self.enterprise);
        self.with_enterprise(|state, _| {
            let all: Vec<&Value> = state
                .devices
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, d)| &d.resource)
                .collect();
            let page: Vec<&Value> = all.iter().skip(offset).take(page_size).copied().collect();
            let mut answer = json!({ "devices": page });
            if offset + page_size < all.len() {
                answer["nextPageToken"] = json!(format!("p{}", offset + page_size));
            }
            HttpResponse::Ok().json(answer)
        })
    }

    fn patch_device(&self, name: &str) -> HttpResponse {
        let mask = self.param("updateMask").map(str::to_owned);
        let body = self.body.clone();
        self.with_enterprise(|state, _| {
            let Some(device) = state.devices.get_mut(name) else {
                return not_found(name);
            };
            let merged = apply_patch(&device.resource, &body, mask.as_deref());
            device.resource = merged.clone();
            HttpResponse::Ok().json(merged)
        })
    }

    fn delete_device(&self, name: &str) -> HttpResponse {
        let flags = self.params("wipeDataFlags");
        self.with_enterprise(|state, _| match state.devices.remove(name) {
            Some(mut entry) => {
                // The device is told to wipe itself; an offline device may never hear it.
                if entry.sim.online {
                    device::wipe(&mut entry.sim, &entry.resource, &flags);
                }
                state
                    .operations
                    .retain(|op, _| !op.starts_with(&format!("{name}/")));
                state.gone.insert(name.to_owned(), entry.sim);
                HttpResponse::Ok().json(json!({}))
            }
            None => not_found(name),
        })
    }

    fn issue_command(&self, name: &str) -> HttpResponse {
        let body = self.body.clone();
        let now = self.inner.now();
        self.with_enterprise(|state, _| {
            let Some(device) = state.devices.get_mut(name) else {
                return not_found(name);
            };
            if device.resource["state"] != "ACTIVE" {
                return status(
                    400,
                    "FAILED_PRECONDITION",
                    "Device is no longer being managed.",
                );
            }
            let mut command = body;
            if command.get("type").is_none() {
                return invalid("Command type is required.");
            }
            if command.get("duration").is_none() {
                command["duration"] = json!("600s");
            }
            command["createTime"] = json!(rfc3339(now));
            if let Some(user) = device.resource.get("userName").cloned() {
                command["userName"] = user;
            }
            command["@type"] =
                json!("type.googleapis.com/google.android.devicemanagement.v1.Command");
            let op_name = format!("{name}/operations/{}", rand::rng().random::<u64>());
            let operation = json!({ "name": op_name, "metadata": command });
            device.sim.pending.push(op_name.clone());
            state.operations.insert(op_name, operation.clone());
            HttpResponse::Ok().json(operation)
        })
    }

    fn list_operations(&self, device: &str) -> HttpResponse {
        let prefix = format!("{device}/operations/");
        self.with_enterprise(|state, _| {
            if !state.devices.contains_key(device) {
                return not_found(device);
            }
            let ops: Vec<&Value> = state
                .operations
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, op)| op)
                .collect();
            HttpResponse::Ok().json(json!({ "operations": ops }))
        })
    }

    fn cancel_operation(&self, name: &str) -> HttpResponse {
        self.with_enterprise(|state, _| {
            let Some(op) = state.operations.get_mut(name) else {
                return not_found(name);
            };
            if op["done"] == true {
                return status(
                    400,
                    "FAILED_PRECONDITION",
                    "The operation has already completed.",
                );
            }
            op["done"] = json!(true);
            op["error"] = json!({"code": 1, "message": "Operation cancelled by the caller."});
            let device = name
                .split("/operations/")
                .next()
                .unwrap_or_default()
                .to_owned();
            if let Some(entry) = state.devices.get_mut(&device) {
                entry.sim.pending.retain(|p| p != name);
            }
            HttpResponse::Ok().json(json!({}))
        })
    }
}

/// Applies a PATCH body: only the fields in `mask` (comma-separated, camelCase), or every
/// field in `body` when there is no mask.
fn apply_patch(current: &Value, body: &Value, mask: Option<&str>) -> Value {
    let mut merged = current.clone();
    if !merged.is_object() {
        merged = json!({});
    }
    let fields: Vec<String> = match mask {
        Some(mask) => mask.split(',').map(|f| f.trim().to_owned()).collect(),
        None => body
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    };
    for field in fields {
        match body.get(&field) {
            Some(value) => merged[&field] = value.clone(),
            None => {
                if let Some(object) = merged.as_object_mut() {
                    object.remove(&field);
                }
            }
        }
    }
    merged
}

// ---- Pub/Sub ---------------------------------------------------------------------------

pub(crate) async fn publish(
    inner: &Arc<Inner>,
    notification_type: &str,
    data: Option<&Value>,
    message_id: Option<String>,
) -> Pushed {
    let (push, message_id) = {
        let mut state = inner.lock();
        state.next_message += 1;
        let id = message_id.unwrap_or_else(|| format!("{}", 9_000_000_000u64 + state.next_message));
        (state.push.clone(), id)
    };
    let mut outcome = Pushed {
        message_id: message_id.clone(),
        notification_type: notification_type.to_owned(),
        attempts: 0,
        status: 0,
    };
    let Some(push) = push else {
        return outcome;
    };
    let publish_time = rfc3339(inner.now());
    let mut message = json!({
        "attributes": { "notificationType": notification_type },
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": publish_time,
        "publish_time": publish_time,
    });
    if let Some(data) = data {
        message["data"] = json!(STANDARD.encode(data.to_string()));
    }
    let body = json!({ "message": message, "subscription": push.subscription }).to_string();
    // Pub/Sub retries a push until it is acknowledged; the mock gives up after a few.
    for attempt in 1..=5u32 {
        outcome.attempts = attempt;
        outcome.status = deliver(inner, &push, body.clone()).await;
        if (200..300).contains(&outcome.status) || outcome.status == 0 && attempt == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt))).await;
    }
    inner.lock().pushed.push(outcome.clone());
    outcome
}

async fn deliver(inner: &Inner, push: &PushSubscription, body: String) -> u16 {
    let mut url = push.endpoint.clone();
    let mut request = inner.http.post(&url);
    match &push.auth {
        PushAuth::QueryToken(token) => {
            url = format!(
                "{}{}token={token}",
                url,
                if url.contains('?') { '&' } else { '?' }
            );
            request = inner.http.post(&url);
        }
        PushAuth::Oidc { audience, email } => {
            if let Ok(jwt) = oidc_token(inner, audience, email) {
                request = request.bearer_auth(jwt);
            }
        }
        PushAuth::None => {}
    }
    match request
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

fn oidc_token(inner: &Inner, audience: &str, email: &str) -> anyhow::Result<String> {
    let now = inner.now().timestamp();
    inner.oidc_key.sign(&json!({
        "iss": OIDC_ISSUER,
        "aud": audience,
        "azp": format!("{}", 100_000_000_000_000_000u64),
        "email": email,
        "email_verified": true,
        "sub": format!("{}", 100_000_000_000_000_001u64),
        "iat": now,
        "exp": now + 3600,
    }))
}

// ---- small helpers -------------------------------------------------------------------

pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn random_letters(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

/// `a=1&b=x%20y` → pairs (form and query encoding).
pub(crate) fn url_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Now {
        Arc::new(|| chrono::DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    async fn token_for(mock: &MockGoogle, key: &KeyPair, email: &str) -> reqwest::Response {
        let now = real_now().timestamp();
        let assertion = key
            .sign(&json!({
                "iss": email, "aud": mock.token_uri(), "scope": SCOPE, "iat": now, "exp": now + 3600,
            }))
            .unwrap();
        reqwest::Client::new()
            .post(mock.token_uri())
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tokens_only_for_a_correctly_signed_assertion() {
        let mock = MockGoogle::start(epoch()).await.unwrap();
        let file: Value = serde_json::from_str(&mock.service_account("p1").unwrap()).unwrap();
        let email = file["client_email"].as_str().unwrap();
        let right = KeyPair {
            kid: "k".into(),
            private: openssl::pkey::PKey::private_key_from_pem(
                file["private_key"].as_str().unwrap().as_bytes(),
            )
            .unwrap(),
        };
        let wrong = KeyPair::generate("other").unwrap();
        let refused = token_for(&mock, &wrong, email).await;
        assert_eq!(refused.status(), 400);
        assert_eq!(
            refused.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        let granted: Value = token_for(&mock, &right, email).await.json().await.unwrap();
        let access = granted["access_token"].as_str().unwrap().to_owned();
        assert_eq!(granted["token_type"], "Bearer");

        // The token opens the API; bodies are checked against the discovery document.
        let enterprise = mock.create_enterprise("p1");
        let http = reqwest::Client::new();
        let url = format!("{}v1/{enterprise}/policies/x", mock.url());
        let ok = http
            .patch(&url)
            .bearer_auth(&access)
            .json(&json!({"cameraDisabled": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let unknown = http
            .patch(&url)
            .bearer_auth(&access)
            .json(&json!({"colour": "red"}))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
        let body: Value = unknown.json().await.unwrap();
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let bad_query = http
            .patch(format!("{url}?nonsense=1"))
            .bearer_auth(&access)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad_query.status(), 400);
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        mock.stop().await;
    }

    #[test]
    fn decodes_forms() {
        assert_eq!(
            url_pairs("a=1&b=x%20y+z&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn patches_by_mask() {
        let current = json!({"a": 1, "b": 2});
        let body = json!({"a": 5, "c": 3});
        assert_eq!(
            apply_patch(&current, &body, Some("a")),
            json!({"a": 5, "b": 2})
        );
        assert_eq!(apply_patch(&current, &body, Some("b")), json!({"a": 1}));
        assert_eq!(
            apply_patch(&current, &body, None),
            json!({"a": 5, "b": 2, "c": 3})
        );
    }
}
