//! The runtime in a running process: health and readiness, shutdown, errors, the
//! internal listener, idempotency keys, and the outbox against real receivers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http;
mod outbox;
mod readiness;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{HttpResponse, post, web};
use mdm_api::Service;
use mdm_api::internal::Message;
use mdm_runtime::inbox::{HandlerError, Inbox};
use mdm_runtime::{ApiRoutes, Context, Module};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The message the tests send around.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: u32,
}

impl Message for Ping {
    const KIND: &'static str = "test.ping";
    fn destination(&self) -> Service {
        Service::Inventory
    }
}

/// What the test receiver does with a ping.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Apply,
    /// Apply, but hold the transaction (and so the answer) this long first.
    ApplySlowly(Duration),
    Retry,
    /// Retry the ping with this number, apply the others.
    RetryOnly(u32),
    Reject,
}

/// A receiver that counts the pings it applied.
#[derive(Clone)]
pub struct Receiver {
    pub applied: Arc<AtomicUsize>,
    pub behaviour: Arc<std::sync::Mutex<Behaviour>>,
    /// Called when a ping is being applied (inside the transaction).
    pub entered: Arc<tokio::sync::Notify>,
    /// The pings applied, in order.
    pub order: Arc<std::sync::Mutex<Vec<u32>>>,
}

impl Receiver {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            applied: Arc::new(AtomicUsize::new(0)),
            behaviour: Arc::new(std::sync::Mutex::new(behaviour)),
            entered: Arc::new(tokio::sync::Notify::new()),
            order: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    pub fn applied(&self) -> usize {
        self.applied.load(Ordering::SeqCst)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn module(&self) -> Module {
        let me = self.clone();
        let inbox = Inbox::new(Service::Inventory).on::<Ping, _>(move |_conn, _delivery, ping| {
            me.entered.notify_one();
            let behaviour = *me.behaviour.lock().unwrap();
            match behaviour {
                Behaviour::Apply => {}
                Behaviour::ApplySlowly(pause) => std::thread::sleep(pause),
                Behaviour::Retry => return Err(HandlerError::Retry("not now".into())),
                Behaviour::RetryOnly(n) if n == ping.n => {
                    return Err(HandlerError::Retry("not now".into()));
                }
                Behaviour::RetryOnly(_) => {}
                Behaviour::Reject => return Err(HandlerError::Reject("never".into())),
            }
            me.applied.fetch_add(1, Ordering::SeqCst);
            me.order.lock().unwrap().push(ping.n);
            Ok(None)
        });
        Module::new(Service::Inventory)
            .inbox(inbox)
            .api(api_routes)
            .public(probe_routes)
    }
}

/// Public routes for the HTTP tests.
fn probe_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/test/slow").get(|req: actix_web::HttpRequest| async move {
            held().enter(req.query_string()).await;
            HttpResponse::Ok().body("finished")
        }),
    );
}

/// Admin API routes for the HTTP tests: idempotency keys apply to them.
fn api_routes(routes: &mut ApiRoutes) {
    routes.service(counter).service(echo);
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Requests held in their handler until their test releases them, so that a test decides
/// when they end relative to a shutdown, whatever the machine's load. Tests run side by
/// side in this process, so each tags its own requests.
#[derive(Default)]
pub struct Held {
    started: watch::Sender<HashSet<String>>,
    released: watch::Sender<HashSet<String>>,
}

pub fn held() -> &'static Held {
    static HELD: OnceLock<Held> = OnceLock::new();
    HELD.get_or_init(Held::default)
}

impl Held {
    /// Called by a handler: says that `tag` has started, then waits for its release.
    pub async fn enter(&self, tag: &str) {
        self.started.send_modify(|started| {
            started.insert(tag.to_owned());
        });
        let mut released = self.released.subscribe();
        released.wait_for(|r| r.contains(tag)).await.unwrap();
    }

    /// Waits until the request tagged `tag` is in its handler.
    pub async fn started(&self, tag: &str) {
        let mut started = self.started.subscribe();
        started.wait_for(|s| s.contains(tag)).await.unwrap();
    }

    pub fn release(&self, tag: &str) {
        self.released.send_modify(|released| {
            released.insert(tag.to_owned());
        });
    }
}

#[utoipa::path(tag = "test", responses((status = 201, description = "The next number.")))]
#[post("/api/test/counter")]
async fn counter() -> HttpResponse {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Created().json(serde_json::json!({ "n": n }))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Echo {
    text: String,
}

#[utoipa::path(tag = "test", request_body = Echo, responses((status = 200, description = "The body.", body = Echo)))]
#[post("/api/test/echo")]
async fn echo(body: web::Json<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

/// Builds the probe modules for a test app.
pub fn modules(
    receiver: &Receiver,
) -> impl FnOnce(&Context) -> anyhow::Result<Vec<Module>> + use<> {
    let receiver = receiver.clone();
    move |_| Ok(vec![receiver.module()])
}
