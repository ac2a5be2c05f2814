//! Assembling a process: the shared [`Context`], the [`Module`]s of the services and
//! adapters it runs, two listeners, background work, and an orderly shutdown.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use futures_util::future::BoxFuture;
use mdm_api::{InternalClient, Service, ServiceUrls};
use mdm_store::{PoolOptions, Store};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::auth::{Authenticator, CachedVerifier, RemoteVerifier, ServiceCredential};
use crate::clock::SharedClock;
use crate::config::{RuntimeConfig, secret_or_file};
use crate::crypto::{SecretBox, random_token};
use crate::error::{configure_extractors, not_found, problem_for_bare_errors};
use crate::health::{self, Readiness};
use crate::inbox::{self, Inbox};
use crate::jobs::{Job, Leases};
use crate::metrics::{ListenerName, Metrics, record_http};
use crate::openapi::{self, ApiRoutesFn};
use crate::outbox::{Outbox, Relay};
use crate::shutdown::Shutdown;
use crate::{auth, tls};

/// Everything a service needs from the process it runs in.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<RuntimeConfig>,
    pub store: Store,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Calls the other services' internal APIs.
    pub client: InternalClient,
    /// Encrypts secrets at rest.
    pub secrets: SecretBox,
    pub shutdown: Shutdown,
    pub leases: Leases,
    /// The URL at which devices and admins reach the public listener.
    pub public_url: String,
    outbox_wake: Arc<Notify>,
}

impl Context {
    /// The outbox through which `producer` sends messages.
    pub fn outbox(&self, producer: Service) -> Outbox {
        Outbox::new(producer, self.clock.clone(), self.outbox_wake.clone())
    }
}

/// Routes added to a listener.
pub type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A long-running background task; it must return once shutdown is triggered.
pub type Task = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// What one service or adapter contributes to a process.
///
/// Public routes are registered with their full paths (`/api/v1/...`): several modules
/// share the public listener, and a scope registered by one would hide the others' routes
/// under the same prefix. The admin API's routes are registered with their OpenAPI
/// operations (`api`); `public` holds the others (device protocols, browser redirects).
/// Internal routes are mounted under `/internal/v1/<service>`.
pub struct Module {
    pub service: Service,
    pub api: Option<ApiRoutesFn>,
    pub public: Option<Routes>,
    pub internal: Option<Routes>,
    /// Handlers of the messages other services send this one.
    pub inbox: Option<Inbox>,
    pub jobs: Vec<Job>,
    pub tasks: Vec<Task>,
}

impl Module {
    pub fn new(service: Service) -> Self {
        Self {
            service,
            api: None,
            public: None,
            internal: None,
            inbox: None,
            jobs: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// The module's admin API routes (see [`crate::openapi`]).
    pub fn api(mut self, routes: ApiRoutesFn) -> Self {
        self.api = Some(routes);
        self
    }

    pub fn public(
        mut self,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.public = Some(Arc::new(routes));
        self
    }

    pub fn internal(
        mut self,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.internal = Some(Arc::new(routes));
        self
    }

    pub fn inbox(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    pub fn job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    pub fn task(
        mut self,
        task: impl FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send + 'static,
    ) -> Self {
        self.tasks.push(Box::new(task));
        self
    }
}

/// A built process, its listeners bound, not yet serving.
pub struct Application {
    context: Context,
    readiness: Arc<Readiness>,
    public_addr: SocketAddr,
    internal_addr: SocketAddr,
    public: actix_web::dev::Server,
    internal: actix_web::dev::Server,
    jobs: Vec<Job>,
    tasks: Vec<Task>,
}

impl Application {
    /// Opens the database, binds both listeners (port 0 picks a free port) and builds the
    /// modules of `services` with `make_modules`.
    pub fn build<F>(
        config: RuntimeConfig,
        clock: SharedClock,
        services: &[Service],
        make_modules: F,
    ) -> anyhow::Result<Self>
    where
        F: FnOnce(&Context) -> anyhow::Result<Vec<Module>>,
    {
        let metrics = Metrics::new().context("metrics registry")?;
        let options = PoolOptions {
            max_connections: config.database.max_connections,
            acquire_timeout: config.database.acquire_timeout(),
        };
        let store = Store::open(&config.database_url(), &options)?;
        tracing::info!(database = %store.url(), "database configured");
        let readiness = Readiness::new(store.clone(), metrics.clone());

        let public_listener = TcpListener::bind(&config.server.listen)
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let internal_listener = TcpListener::bind(&config.server.internal_listen)
            .with_context(|| format!("cannot listen on {}", config.server.internal_listen))?;
        let public_addr = public_listener.local_addr()?;
        let internal_addr = internal_listener.local_addr()?;

        let urls = service_urls(&config, services, internal_addr)?;
        let split = services.len() < Service::ALL.len();
        if split && config.security.service_token.is_none() {
            anyhow::bail!(
                "security.service_token must be set when services run in separate processes (--only)"
            );
        }
        let service_token = secret_or_file(
            config.security.service_token.as_ref(),
            &config.data_dir.join("service.token"),
            random_token::<32>,
        )?;
        let secret_key = secret_or_file(
            config.security.secret_key.as_ref(),
            &config.data_dir.join("secret.key"),
            SecretBox::generate_key,
        )?;
        let secrets = SecretBox::from_base64(secret_key.expose()).context("security.secret_key")?;
        let client = InternalClient::new(
            urls,
            service_token.expose().to_owned(),
            Duration::from_secs(config.outbox.request_timeout_secs),
        )?;
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", reachable(public_addr)))
            .trim_end_matches('/')
            .to_owned();
        let shutdown = Shutdown::new();
        let instance = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "mdm".into()),
            &random_token::<6>()
        );
        let config = Arc::new(config);
        let context = Context {
            leases: Leases::new(store.clone(), clock.clone(), instance),
            config: config.clone(),
            store,
            clock,
            metrics,
            client,
            secrets,
            shutdown,
            public_url,
            outbox_wake: Arc::new(Notify::new()),
        };

        let mut modules = make_modules(&context)?;
        let jobs = modules
            .iter_mut()
            .flat_map(|m| std::mem::take(&mut m.jobs))
            .collect();
        let tasks = modules
            .iter_mut()
            .flat_map(|m| std::mem::take(&mut m.tasks))
            .collect();
        let verifier = CachedVerifier::new(
            Arc::new(RemoteVerifier::new(context.client.clone())),
            Duration::from_secs(config.security.token_cache_secs),
        );
        let shared = Shared {
            context: context.clone(),
            readiness: readiness.clone(),
            authenticator: Authenticator(Arc::new(verifier)),
            credential: ServiceCredential(service_token.expose().into()),
        };
        let public = public_server(&shared, &modules, public_listener)?;
        let internal = internal_server(&shared, modules, internal_listener)?;
        Ok(Self {
            context,
            readiness,
            public_addr,
            internal_addr,
            public,
            internal,
            jobs,
            tasks,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Triggering it starts the orderly shutdown of [`Application::run`].
    pub fn shutdown_handle(&self) -> Shutdown {
        self.context.shutdown.clone()
    }

    /// Serves until shutdown is triggered, then: readiness turns 503; after the drain
    /// delay (cut short when shutdown is hurried) the public listener stops accepting and
    /// its requests in flight finish (within the shutdown timeout); then the relay and the
    /// internal listener stop, and the other background work.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            context,
            readiness,
            public,
            internal,
            jobs,
            tasks,
            ..
        } = self;
        let shutdown = context.shutdown.clone();
        let public_handle = public.handle();
        let internal_handle = internal.handle();
        let servers = tokio::spawn(async move { tokio::try_join!(public, internal) });

        // The relay outlives the public listener's requests: they enqueue messages to the
        // end, and their answers promise that those messages are on their way.
        let relay_stop = Shutdown::new();
        let workers = tokio::spawn(start_background(
            context.clone(),
            jobs,
            tasks,
            relay_stop.clone(),
        ));

        shutdown.wait().await;
        readiness.begin_shutdown();
        tracing::info!("shutting down: readiness is now 503");
        let drain = Duration::from_secs(context.config.server.drain_delay_secs);
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            () = shutdown.wait_hurried() => tracing::info!("drain delay cut short"),
        }
        // Stop accepting; let requests in flight finish. Public requests call other
        // services through the internal listener until they are done, so it stops after
        // them (and after the relay, whose last delivery may be to this process).
        public_handle.stop(true).await;
        relay_stop.trigger();
        internal_handle.stop(true).await;
        match servers.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "listener failed"),
            Err(error) => tracing::error!(%error, "listener task failed"),
        }
        let grace = Duration::from_secs(context.config.server.shutdown_timeout_secs.max(1));
        if tokio::time::timeout(grace, workers).await.is_err() {
            tracing::warn!("background work did not stop in time");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Applies migrations (when configured), then runs the jobs and the tasks until shutdown
/// and the outbox relay until `relay_stop`. Nothing starts before the schema is in place.
async fn start_background(
    context: Context,
    jobs: Vec<Job>,
    tasks: Vec<Task>,
    relay_stop: Shutdown,
) {
    let shutdown = context.shutdown.clone();
    if !wait_for_schema(&context).await {
        return;
    }
    let relay = Relay::new(
        context.store.clone(),
        context.client.clone(),
        context.clock.clone(),
        context.config.outbox.clone(),
        context.metrics.clone(),
        context.outbox_wake.clone(),
    );
    let mut running = Vec::new();
    if context.config.outbox.relay {
        running.push(tokio::spawn(relay.run(relay_stop)));
    }
    for job in jobs.into_iter().chain([housekeeping(&context)]) {
        let leases = context.leases.clone();
        running.push(tokio::spawn(job.run_singleton(
            leases,
            context.metrics.clone(),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        running.push(tokio::spawn(task(shutdown.clone())));
    }
    for handle in running {
        let _ = handle.await;
    }
}

/// Waits until the database has every migration, applying them first when
/// `migrate_on_start` is set. False when shutdown came first.
async fn wait_for_schema(context: &Context) -> bool {
    let migrate = context.config.database.migrate_on_start;
    loop {
        let attempt = async {
            if migrate {
                context.store.migrate().await.map(|applied| {
                    if !applied.is_empty() {
                        tracing::info!(?applied, "database migrations applied");
                    }
                    true
                })
            } else {
                context
                    .store
                    .pending_migrations()
                    .await
                    .map(|pending| pending.is_empty())
            }
        };
        // An unreachable database makes the attempt wait for a connection; shutdown does
        // not wait for it.
        let outcome = tokio::select! {
            _ = context.shutdown.wait() => return false,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(true) => return true,
            Ok(false) => tracing::info!("waiting for database migrations (run `mdm migrate`)"),
            Err(error) => tracing::warn!(%error, "database not ready; retrying"),
        }
        tokio::select! {
            _ = context.shutdown.wait() => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Forgets inbox receipts after 30 days and idempotency records after a day.
fn housekeeping(context: &Context) -> Job {
    let store = context.store.clone();
    let clock = context.clock.clone();
    Job::new(
        "runtime-housekeeping",
        Duration::from_secs(3600),
        move || {
            let store = store.clone();
            let now = clock.now();
            async move {
                let (receipts, answers) = store
                    .write(move |c| {
                        let receipts = inbox::prune(c, now - chrono::Duration::days(30))?;
                        let answers =
                            crate::idempotency::prune(c, now - chrono::Duration::days(1))?;
                        Ok::<_, mdm_store::StoreError>((receipts, answers))
                    })
                    .await?;
                Ok(format!(
                    "pruned {receipts} inbox receipts and {answers} idempotency records"
                ))
            }
        },
    )
}

/// What every worker thread's app needs, cloned into each.
#[derive(Clone)]
struct Shared {
    context: Context,
    readiness: Arc<Readiness>,
    authenticator: Authenticator,
    credential: ServiceCredential,
}

fn public_server(
    shared: &Shared,
    modules: &[Module],
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    let routes: Vec<Routes> = modules.iter().filter_map(|m| m.public.clone()).collect();
    let api: Vec<ApiRoutesFn> = modules.iter().filter_map(|m| m.api).collect();
    let document = openapi::document(&api);
    let allowed = web::Data::new(openapi::AllowedMethods::of(&document));
    let document = document
        .to_json()
        .context("rendering the OpenAPI document")?;
    let document = web::Data::new(openapi::ApiDocument(document));
    let shared = shared.clone();
    let config = shared.context.config.clone();
    let json_limit = config.server.json_limit_bytes;
    let factory = move || {
        let ctx = &shared.context;
        let mut app = App::new()
            .app_data(web::Data::new(ctx.store.clone()))
            .app_data(web::Data::new(ctx.clock.clone()))
            .app_data(web::Data::new(ctx.metrics.clone()))
            .app_data(web::Data::new(shared.readiness.clone()))
            .app_data(web::Data::new(shared.authenticator.clone()))
            .app_data(web::Data::new(ListenerName("public")))
            .app_data(document.clone())
            .app_data(allowed.clone())
            .configure(|c| configure_extractors(c, json_limit))
            .configure(health::configure)
            .configure(|c| openapi::register(c, openapi::routes));
        for module in &api {
            app = app.configure(|c| openapi::register(c, *module));
        }
        for routes in &routes {
            app = app.configure(|c| routes(c));
        }
        app.default_service(web::to(openapi::unmatched))
            .wrap(from_fn(problem_for_bare_errors))
            .wrap(from_fn(crate::idempotency::idempotent))
            .wrap(from_fn(record_http))
            .wrap(from_fn(health::close_connections_while_draining))
            .wrap(from_fn(request_span))
    };
    let server = HttpServer::new(factory)
        .workers(worker_count(config.server.workers))
        .keep_alive(Duration::from_secs(config.server.keep_alive_secs))
        .disable_signals()
        .shutdown_timeout(config.server.shutdown_timeout_secs);
    let server = match &config.server.tls {
        Some(tls_config) => server.listen_openssl(listener, tls::acceptor(tls_config)?)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

fn internal_server(
    shared: &Shared,
    modules: Vec<Module>,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    struct Mounted {
        service: Service,
        routes: Option<Routes>,
        inbox: Option<Arc<Inbox>>,
    }
    let mounted: Arc<Vec<Mounted>> = Arc::new(
        modules
            .into_iter()
            .map(|m| Mounted {
                service: m.service,
                routes: m.internal,
                inbox: m.inbox.map(Arc::new),
            })
            .collect(),
    );
    let shared = shared.clone();
    let config = shared.context.config.clone();
    // Internal bodies are larger (batches of messages) but come only from our services.
    let json_limit = config.server.json_limit_bytes.max(16 * 1024 * 1024);
    let factory = move || {
        let ctx = &shared.context;
        let mut app = App::new()
            .app_data(web::Data::new(ctx.store.clone()))
            .app_data(web::Data::new(ctx.clock.clone()))
            .app_data(web::Data::new(ctx.metrics.clone()))
            .app_data(web::Data::new(shared.credential.clone()))
            .app_data(web::Data::new(shared.readiness.clone()))
            .app_data(web::Data::new(ListenerName("internal")))
            .configure(|c| configure_extractors(c, json_limit));
        for module in mounted.iter() {
            let mut scope = web::scope(&module.service.internal_prefix());
            if let Some(routes) = &module.routes {
                scope = scope.configure(|c| routes(c));
            }
            if let Some(inbox) = &module.inbox {
                scope = scope
                    .app_data(web::Data::new(inbox.clone()))
                    .service(web::resource("/messages").post(inbox::receive));
            }
            app = app.service(scope);
        }
        app.default_service(web::to(not_found))
            .wrap(from_fn(problem_for_bare_errors))
            .wrap(from_fn(auth::require_service_credential))
            .wrap(from_fn(record_http))
            .wrap(from_fn(health::close_connections_while_draining))
            .wrap(from_fn(request_span))
    };
    let server = HttpServer::new(factory)
        .workers(worker_count(config.server.workers).min(2))
        .keep_alive(Duration::from_secs(config.server.keep_alive_secs))
        .disable_signals()
        .shutdown_timeout(config.server.shutdown_timeout_secs)
        .listen(listener)?;
    Ok(server.run())
}

fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(2, usize::from)
    }
}

/// Where each service's internal API answers: this process's internal listener for the
/// services it runs, the configured URL for the others. Every service must be reachable,
/// since the outbox relay may deliver to any of them.
fn service_urls(
    config: &RuntimeConfig,
    local: &[Service],
    internal: SocketAddr,
) -> anyhow::Result<ServiceUrls> {
    let mut urls = ServiceUrls::new();
    let own = format!("http://{}", reachable(internal));
    let mut missing = Vec::new();
    for service in Service::ALL {
        match config.services.get(service) {
            Some(url) => urls.set(service, url),
            None if local.contains(&service) => urls.set(service, own.clone()),
            None => missing.push(service.as_str()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "no internal URL for {}: set [services] entries for the services this process does not run",
            missing.join(", ")
        );
    }
    Ok(urls)
}

/// A listen address as a client would dial it (an unspecified address means loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Middleware: a span with a request id (the caller's `X-Request-Id` when it sends a sane
/// one) around every request, and the id in the answer's headers.
async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let span = tracing::info_span!("request", method = %req.method(), path = %req.path(), request_id = %id);
    let mut response = next.call(req).instrument(span).await?;
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    Ok(response)
}
