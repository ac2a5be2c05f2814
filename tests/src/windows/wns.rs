//! A mock of the Windows Push Notification Services, shaped like the real one:
//!
//! - `POST /accesstoken.srf` (form: grant_type=client_credentials, client_id,
//!   client_secret, scope=notify.windows.com) answers `{"token_type":"bearer",
//!   "access_token":..,"expires_in":86400}`, or 400 `{"error":"invalid_client"}`.
//! - `POST /channels/<id>` (a channel URI) checks `Authorization: Bearer`, `X-WNS-Type:
//!   wns/raw` and `Content-Type: application/octet-stream`, then answers 200 with
//!   `X-WNS-Status: received` and `X-WNS-Msg-ID`; 401 with `WWW-Authenticate` for a
//!   missing or expired token; 404 for an unknown channel; 410 for an expired one; and
//!   whatever failure a test scripts (406 throttling, 503 with Retry-After, ...).

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    client_id: String,
    client_secret: String,
    tokens: Vec<String>,
    token_requests: usize,
    channels: HashMap<String, Channel>,
    /// Failures to answer before the next successes: (status, Retry-After).
    scripted: VecDeque<(u16, Option<u64>)>,
}

#[derive(Default)]
struct Channel {
    expired: bool,
    notifications: Vec<Vec<u8>>,
}

/// A running mock WNS.
pub struct MockWns {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    notified: Arc<Notify>,
    server: actix_web::dev::ServerHandle,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MockWns {
    /// Starts on a free loopback port, accepting these client credentials.
    pub async fn start(client_id: &str, client_secret: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            ..State::default()
        }));
        let notified = Arc::new(Notify::new());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app_state = state.clone();
        let app_notified = notified.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(web::Data::new(app_state.clone()))
                .app_data(web::Data::new(app_notified.clone()))
                .route("/accesstoken.srf", web::post().to(token))
                .route("/channels/{id}", web::post().to(notify))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            base_url,
            state,
            notified,
            server: handle,
        })
    }

    pub fn token_url(&self) -> String {
        format!("{}/accesstoken.srf", self.base_url)
    }

    /// A new channel, as a device gets from WNS.
    pub fn new_channel(&self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.state)
            .channels
            .insert(id.clone(), Channel::default());
        format!("{}/channels/{id}?token=Aw{id}", self.base_url)
    }

    fn channel_id(uri: &str) -> String {
        uri.split("/channels/")
            .nth(1)
            .and_then(|rest| rest.split('?').next())
            .unwrap_or_default()
            .to_owned()
    }

    /// The channel lived its 30 days.
    pub fn expire_channel(&self, uri: &str) {
        if let Some(channel) = lock(&self.state).channels.get_mut(&Self::channel_id(uri)) {
            channel.expired = true;
        }
    }

    /// The next `count` notifications fail with `status` (and Retry-After seconds).
    pub fn fail_next(&self, count: usize, status: u16, retry_after: Option<u64>) {
        let mut state = lock(&self.state);
        for _ in 0..count {
            state.scripted.push_back((status, retry_after));
        }
    }

    /// Every access token issued so far stops working.
    pub fn expire_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    pub fn token_requests(&self) -> usize {
        lock(&self.state).token_requests
    }

    /// Notifications a channel received.
    pub fn notifications(&self, uri: &str) -> usize {
        lock(&self.state)
            .channels
            .get(&Self::channel_id(uri))
            .map_or(0, |c| c.notifications.len())
    }

    /// Waits until `uri` has received at least `count` notifications.
    pub async fn wait_for(&self, uri: &str, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wait = self.notified.notified();
            if self.notifications(uri) >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return self.notifications(uri) >= count;
            }
        }
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn token(
    state: web::Data<Arc<Mutex<State>>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let mut state = lock(&state);
    state.token_requests += 1;
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" || field("scope") != "notify.windows.com" {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": "invalid_request"}));
    }
    if field("client_id") != state.client_id || field("client_secret") != state.client_secret {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": "invalid_client"}));
    }
    let token = format!("EgAcAQMAAAAALYAAY/c+Huwi{}", uuid::Uuid::new_v4().simple());
    state.tokens.push(token.clone());
    HttpResponse::Ok().json(serde_json::json!({
        "token_type": "bearer",
        "access_token": token,
        "expires_in": 86400,
    }))
}

async fn notify(
    state: web::Data<Arc<Mutex<State>>>,
    notified: web::Data<Arc<Notify>>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut state = lock(&state);
    let bearer = header("Authorization");
    let token = bearer.strip_prefix("Bearer ").unwrap_or("");
    if token.is_empty() || !state.tokens.iter().any(|t| t == token) {
        return HttpResponse::Unauthorized()
            .insert_header((
                "WWW-Authenticate",
                "Bearer error=\"invalid_token\",error_description=\"Token has expired\"",
            ))
            .finish();
    }
    if header("X-WNS-Type") != "wns/raw"
        || header("Content-Type") != "application/octet-stream"
        || body.len() > 5000
    {
        return HttpResponse::BadRequest()
            .insert_header(("X-WNS-Error-Description", "Invalid notification"))
            .finish();
    }
    if let Some((status, retry_after)) = state.scripted.pop_front() {
        let mut response = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE),
        );
        if let Some(seconds) = retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        return response.finish();
    }
    let Some(channel) = state.channels.get_mut(path.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    if channel.expired {
        return HttpResponse::Gone()
            .insert_header(("X-WNS-Error-Description", "Channel expired"))
            .finish();
    }
    channel.notifications.push(body.to_vec());
    drop(state);
    notified.notify_waiters();
    HttpResponse::Ok()
        .insert_header(("X-WNS-Status", "received"))
        .insert_header(("X-WNS-Msg-ID", uuid::Uuid::new_v4().simple().to_string()))
        .finish()
}
