//! [`Store`]: the connection pools, and the one way services run database work.

use std::sync::Arc;
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{Pool, PooledConnection};

use crate::connection::{Backend, ConnectionManager, DatabaseUrl, DbConnection};
use crate::error::StoreError;
use crate::migrations;

/// How the pools are sized and how long a caller waits for a connection.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Connections in the pool (on SQLite: the readers; writes share one connection).
    pub max_connections: u32,
    /// How long a caller waits for a free connection (or a new one) before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Connection usage, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    pub max: u32,
    pub open: u32,
    pub idle: u32,
}

/// The database of a service. Cheap to clone.
///
/// All work runs on tokio's blocking thread pool, never on the async executor: pass a
/// closure to [`Store::read`] or [`Store::write`]. On SQLite, writes go through a single
/// connection (SQLite allows one writer at a time; queuing them here avoids busy errors
/// and lock upgrades), while reads use a pool beside it under WAL. On PostgreSQL both use
/// the same pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    url: DatabaseUrl,
    readers: Pool<ConnectionManager>,
    /// `Some` on SQLite only.
    writer: Option<Pool<ConnectionManager>>,
    max_connections: u32,
}

impl Store {
    /// Prepares the pools without connecting, so that a server can start (and report
    /// itself unready) while its database is down. On SQLite the database file's
    /// directory is created.
    pub fn open(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let url = DatabaseUrl::parse(url).map_err(|e| StoreError::Config(e.to_string()))?;
        if let DatabaseUrl::Sqlite(path) = &url
            && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let build = |size: u32| {
            Pool::builder()
                .max_size(size)
                .min_idle(Some(0))
                .connection_timeout(options.acquire_timeout)
                // A broken connection is detected when it fails; testing every checkout
                // would cost a round trip on the hot path.
                .test_on_check_out(false)
                .idle_timeout(Some(Duration::from_secs(600)))
                .max_lifetime(Some(Duration::from_secs(1800)))
                .error_handler(Box::new(LogErrors))
                .build_unchecked(ConnectionManager { url: url.clone() })
        };
        let max_connections = options.max_connections.max(1);
        let (readers, writer) = match url.backend() {
            Backend::Postgres => (build(max_connections), None),
            Backend::Sqlite => (build(max_connections), Some(build(1))),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                readers,
                writer,
                max_connections,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.url.backend()
    }

    /// The URL without its password, for logs.
    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.url
    }

    /// Runs `f` on a connection, outside any explicit transaction. Use it for reads.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || {
            let mut conn = store.reader()?;
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` in one transaction on the write connection: committed when `f` returns
    /// `Ok`, rolled back when it returns `Err` (or panics).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || store.write_blocking(f)).await
    }

    /// [`Store::write`] for code that already runs on a blocking thread (the CLI).
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E>,
        E: From<StoreError> + From<diesel::result::Error>,
    {
        let mut conn = self.writer()?;
        match &mut *conn {
            DbConnection::Sqlite(_) => immediate_transaction(&mut conn, f),
            DbConnection::Pg(_) => (*conn).transaction(f),
        }
    }

    /// [`Store::read`] for code that already runs on a blocking thread.
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E>,
        E: From<StoreError>,
    {
        let mut conn = self.reader()?;
        f(&mut conn)
    }

    /// Checks that the database answers, waiting at most `timeout` for a connection.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let store = self.clone();
        run_blocking(move || {
            let mut conn = store
                .inner
                .readers
                .get_timeout(timeout)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            conn.batch_execute("SELECT 1").map_err(StoreError::from)
        })
        .await
    }

    /// Applies every pending migration; answers the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let store = self.clone();
        run_blocking(move || migrations::run_pending(&mut *store.writer()?)).await
    }

    /// The versions of the migrations embedded in this binary that the database lacks.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let store = self.clone();
        run_blocking(move || migrations::pending(&mut *store.reader()?)).await
    }

    pub fn usage(&self) -> PoolUsage {
        let state = self.inner.readers.state();
        PoolUsage {
            max: self.inner.max_connections,
            open: state.connections,
            idle: state.idle_connections,
        }
    }

    fn reader(&self) -> Result<PooledConnection<ConnectionManager>, StoreError> {
        self.inner
            .readers
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    fn writer(&self) -> Result<PooledConnection<ConnectionManager>, StoreError> {
        self.inner
            .writer
            .as_ref()
            .unwrap_or(&self.inner.readers)
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// A SQLite transaction that takes the write lock when it begins (`BEGIN IMMEDIATE`), as
/// diesel's `SqliteConnection::immediate_transaction` does, but handing `f` the shared
/// connection type. A deferred transaction that reads and then writes cannot wait for
/// another process's write (the `mdm` CLI beside a running server): SQLite answers
/// "database is locked" at once instead of honouring the busy timeout, since the snapshot
/// it read may be stale. An immediate one waits for the lock up to the busy timeout.
pub(crate) fn immediate_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    fn sqlite(conn: &mut DbConnection) -> &mut diesel::SqliteConnection {
        match conn {
            DbConnection::Sqlite(c) => c,
            DbConnection::Pg(_) => unreachable!("called on SQLite connections only"),
        }
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn), "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(sqlite(conn))?;
            Ok(value)
        }
        Err(error) => {
            AnsiTransactionManager::rollback_transaction(sqlite(conn))?;
            Err(error)
        }
    }
}

/// Runs blocking database work on tokio's blocking pool; a panic becomes an error.
async fn run_blocking<T, E, F>(f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(StoreError::Panicked(join.to_string()).into()))
}

/// Sends r2d2's connection errors to the log instead of its default `log` output.
#[derive(Debug)]
struct LogErrors;

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for LogErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::warn!(%error, "database connection failed");
    }
}
