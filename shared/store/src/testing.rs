//! A fresh database for every test, on either backend, dropped afterwards, so that tests
//! run in parallel without sharing state.
//!
//! PostgreSQL tests need `MDM_TEST_DATABASE_URL` (a server where the user may create
//! databases, e.g. `postgres://postgres@127.0.0.1/postgres`); without it they print once
//! that they were skipped and pass. SQLite tests always run, on a temporary file.

use std::io::Write;
use std::sync::Once;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use rand::Rng;

use crate::{PoolOptions, Store};

/// The environment variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL: &str = "MDM_TEST_DATABASE_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    store: Store,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A migrated database on `backend`, or `None` when PostgreSQL is not configured.
    pub async fn new(backend: TestBackend) -> Option<Self> {
        let db = Self::empty(backend)?;
        if let Err(e) = db.store.migrate().await {
            panic!("migrating the test database failed: {e}");
        }
        Some(db)
    }

    /// An empty database (no migrations applied), or `None` when PostgreSQL is not
    /// configured.
    pub fn empty(backend: TestBackend) -> Option<Self> {
        match backend {
            TestBackend::Sqlite => Some(Self::sqlite()),
            TestBackend::Postgres => Self::postgres(),
        }
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let url = format!("sqlite://{}", dir.path().join("test.sqlite3").display());
        let store = open(&url);
        Self {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Written to stderr directly: the test harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: {TEST_DATABASE_URL} is not set: the PostgreSQL half of these tests \
                     is skipped (SQLite still runs)"
                );
            });
            return None;
        };
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| drop_leftovers(&admin_url));
        let name = format!(
            "mdm_test_{}_{:016x}",
            std::process::id(),
            rand::rng().random::<u64>()
        );
        let mut admin = connect_admin(&admin_url);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        let store = open(&url);
        Some(Self {
            store,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The database's URL, for a server process started by the test.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn open(url: &str) -> Store {
    let options = PoolOptions {
        max_connections: 8,
        ..PoolOptions::default()
    };
    Store::open(url, &options).unwrap_or_else(|e| panic!("cannot open test database: {e}"))
}

fn connect_admin(admin_url: &str) -> PgConnection {
    PgConnection::establish(admin_url)
        .unwrap_or_else(|e| panic!("cannot reach {TEST_DATABASE_URL}: {e}"))
}

/// Drops test databases left behind by test processes that no longer run (a test that
/// was killed cannot drop its own).
fn drop_leftovers(admin_url: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut admin = connect_admin(admin_url);
    let Ok(names) =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'mdm_test_%'")
            .load::<Name>(&mut admin)
    else {
        return;
    };
    for Name { datname } in names {
        let pid = datname
            .split('_')
            .nth(2)
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"));
        }
    }
}

/// `postgres://u@h:5432/postgres?x=y` with database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Declares an async test that runs once on SQLite and once on PostgreSQL, as
/// `<name>::sqlite` and `<name>::postgres`, each with its own migrated database:
///
/// ```ignore
/// mdm_store::test_on_both_backends! {
///     async fn tenants_are_listed(db) {
///         let store = db.store();
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! test_on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: $crate::testing::TestDatabase) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(db) = $crate::testing::TestDatabase::new(
                    $crate::testing::TestBackend::Sqlite,
                ).await {
                    run(db).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::testing::TestDatabase::new(
                    $crate::testing::TestBackend::Postgres,
                ).await {
                    run(db).await;
                }
            }
        }
    };
}

/// Makes the database refuse every `UPDATE` of `table` whose new row matches `condition`
/// (SQL over `NEW`), as when a connection is lost between an effect and its record; a
/// test's fault injection on both backends. Undone by [`stop_refusing_updates`].
pub async fn refuse_updates(store: &Store, table: &str, condition: &str) {
    let sql = match store.backend() {
        crate::Backend::Sqlite => format!(
            "CREATE TRIGGER refuse_{table} BEFORE UPDATE ON {table} WHEN {condition}
             BEGIN SELECT RAISE(ABORT, 'injected: the write is lost'); END;"
        ),
        crate::Backend::Postgres => format!(
            "CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'injected: the write is lost'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse_{table} BEFORE UPDATE ON {table} FOR EACH ROW
             WHEN ({condition}) EXECUTE FUNCTION refuse_{table}();"
        ),
    };
    run(store, sql).await;
}

/// Undoes [`refuse_updates`].
pub async fn stop_refusing_updates(store: &Store, table: &str) {
    let sql = match store.backend() {
        crate::Backend::Sqlite => format!("DROP TRIGGER refuse_{table};"),
        crate::Backend::Postgres => format!("DROP TRIGGER refuse_{table} ON {table};"),
    };
    run(store, sql).await;
}

async fn run(store: &Store, sql: String) {
    store
        .write(move |c| c.batch_execute(&sql).map_err(crate::StoreError::from))
        .await
        .unwrap_or_else(|e| panic!("fault injection failed: {e}"));
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1/postgres", "t1"),
            "postgres://postgres@127.0.0.1/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/db?sslmode=disable", "t2"),
            "postgres://u:p@h:5432/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
