//! Background jobs that exactly one replica runs at a time, coordinated through leases
//! in the database (`rt_leases`), on either backend.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use futures_util::future::BoxFuture;
use mdm_store::models::runtime::LeaseRow;
use mdm_store::schema::rt_leases;
use mdm_store::{Store, StoreError, to_millis};

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Leases held in the database under this process's name.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    clock: SharedClock,
    holder: Arc<str>,
}

impl Leases {
    pub fn new(store: Store, clock: SharedClock, holder: impl Into<Arc<str>>) -> Self {
        Self {
            store,
            clock,
            holder: holder.into(),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease `name` for `ttl`. True when this process holds it now:
    /// it was free, expired, or already ours. The conditional update is atomic on both
    /// backends; two processes inserting a new lease at once race on the primary key and
    /// one of them loses.
    pub async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = to_millis(self.clock.now());
        let expires_at = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let name = name.to_owned();
        let holder = self.holder.to_string();
        let result = self
            .store
            .write(move |c| {
                let updated = diesel::update(rt_leases::table.find(&name))
                    .filter(
                        rt_leases::expires_at
                            .le(now)
                            .or(rt_leases::holder.eq(&holder)),
                    )
                    .set((
                        rt_leases::holder.eq(&holder),
                        rt_leases::expires_at.eq(expires_at),
                    ))
                    .execute(c)?;
                if updated == 1 {
                    return Ok(true);
                }
                let exists = rt_leases::table.find(&name).count().get_result::<i64>(c)? > 0;
                if exists {
                    return Ok(false);
                }
                diesel::insert_into(rt_leases::table)
                    .values(LeaseRow {
                        name,
                        holder,
                        expires_at,
                    })
                    .execute(c)?;
                Ok::<_, StoreError>(true)
            })
            .await;
        match result {
            Err(e) if e.is_unique_violation() => Ok(false),
            other => other,
        }
    }

    /// Gives the lease up (at shutdown), so that another replica takes over at once.
    pub async fn release(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        let holder = self.holder.to_string();
        self.store
            .write(move |c| {
                diesel::update(rt_leases::table.find(&name))
                    .filter(rt_leases::holder.eq(&holder))
                    .set(rt_leases::expires_at.eq(0))
                    .execute(c)?;
                Ok::<_, StoreError>(())
            })
            .await
    }
}

/// A summary of one run, for the log.
pub type JobReport = String;

type JobFn = dyn Fn() -> BoxFuture<'static, anyhow::Result<JobReport>> + Send + Sync;

/// How often a replica that does not hold a job's lease tries to take it.
const STANDBY_POLL: Duration = Duration::from_secs(5);

/// A job run every `every` by whichever replica holds its lease.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    run: Arc<JobFn>,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<JobReport>> + Send + 'static,
    {
        Self {
            name,
            every,
            run: Arc::new(move || Box::pin(run())),
        }
    }

    /// Runs the job once, now, regardless of leases (for tests and the CLI).
    pub async fn run_now(&self) -> anyhow::Result<JobReport> {
        (self.run)().await
    }

    /// Runs the job every `every` while this process holds its lease, until shutdown;
    /// then gives the lease up. The lease lasts three periods (at least a minute), so a
    /// replica that dies is replaced within that time and one that lives renews it.
    pub async fn run_singleton(self, leases: Leases, metrics: Arc<Metrics>, shutdown: Shutdown) {
        let ttl = (self.every * 3).max(Duration::from_secs(60));
        let mut held = false;
        loop {
            match leases.try_acquire(self.name, ttl).await {
                Ok(true) => {
                    if !held {
                        tracing::info!(
                            job = self.name,
                            holder = leases.holder(),
                            "job lease acquired"
                        );
                    }
                    held = true;
                    let outcome = match (self.run)().await {
                        Ok(report) => {
                            tracing::info!(job = self.name, %report, "job ran");
                            "ok"
                        }
                        Err(error) => {
                            tracing::error!(
                                job = self.name,
                                error = format!("{error:#}"),
                                "job failed"
                            );
                            "error"
                        }
                    };
                    metrics
                        .jobs_runs
                        .with_label_values(&[self.name, outcome])
                        .inc();
                }
                Ok(false) => {
                    if held {
                        tracing::warn!(job = self.name, "job lease lost to another replica");
                    }
                    held = false;
                }
                Err(error) => tracing::warn!(job = self.name, %error, "job lease check failed"),
            }
            // A replica without the lease looks again soon, so that it takes over within
            // seconds of the holder's shutdown rather than one (maybe hourly) period later.
            let pause = if held {
                self.every
            } else {
                self.every.min(STANDBY_POLL)
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if held && let Err(error) = leases.release(self.name).await {
            tracing::warn!(job = self.name, %error, "job lease not released");
        }
    }
}
