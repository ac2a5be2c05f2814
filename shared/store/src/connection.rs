//! The connection type shared by every service, and how connections are made.

use std::fmt;
use std::path::PathBuf;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;

/// One connection to either backend. Queries written once against this type run on both;
/// where the backends need different SQL, match on the variant (see [`crate::on_backend!`]).
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Pg(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Runs the same diesel code on the concrete connection of either backend, for the few
/// queries the multi-backend query builder does not express (`ON CONFLICT`, `SKIP LOCKED`).
///
/// ```ignore
/// on_backend!(conn, c => diesel::insert_into(t).values(&v).on_conflict_do_nothing().execute(c))
/// ```
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::DbConnection::Pg($c) => $body,
            $crate::DbConnection::Sqlite($c) => $body,
        }
    };
}

/// Which database a [`DatabaseUrl`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        })
    }
}

/// A parsed database URL: `postgres://…` / `postgresql://…`, or `sqlite:<path>` /
/// `sqlite://<path>` (a relative path is relative to the working directory;
/// `sqlite:///var/lib/mdm/mdm.sqlite3` is absolute).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

/// The URL names no supported database.
#[derive(Debug, thiserror::Error)]
#[error("unsupported database URL (expected postgres://… or sqlite:<path>): {0}")]
pub struct UnsupportedUrl(String);

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, UnsupportedUrl> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|path| !path.is_empty() && *path != ":memory:")
            .ok_or_else(|| UnsupportedUrl(redact(url)))?;
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub(crate) fn connect(&self) -> diesel::ConnectionResult<DbConnection> {
        match self {
            Self::Postgres(url) => {
                let mut conn = PgConnection::establish(url)?;
                conn.batch_execute("SET application_name = 'mdm'")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Pg(conn))
            }
            Self::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    diesel::ConnectionError::BadConnection("the SQLite path is not UTF-8".into())
                })?;
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// Applied to every SQLite connection. WAL lets readers run beside the one writer;
/// `synchronous = NORMAL` is durable across process crashes in WAL mode (only a power
/// loss can drop the last transactions); the busy timeout covers a second process such as
/// `mdm migrate` or a CLI command, and comes first, since switching to WAL needs a lock too.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA temp_store = MEMORY;";

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shows the URL without its password.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => f.write_str(&redact(url)),
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; a `password=`
/// query parameter is hidden too.
fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find('/')
            .map_or(shown.len(), |i| authority_start + i);
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let userinfo = &shown[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                shown.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(start) = shown.find("password=") {
        let value_start = start + "password=".len();
        let value_end = shown[value_start..]
            .find('&')
            .map_or(shown.len(), |i| value_start + i);
        shown.replace_range(value_start..value_end, "***");
    }
    shown
}

/// Makes connections for r2d2, choosing the backend from the URL (rather than trying each
/// backend in turn, which could turn a mistyped PostgreSQL URL into a new SQLite file).
pub(crate) struct ConnectionManager {
    pub(crate) url: DatabaseUrl,
}

impl diesel::r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.url
            .connect()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_backends() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/mdm.sqlite3").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("data/mdm.sqlite3"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/mdm.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/mdm.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@localhost/mdm")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("mysql://localhost/mdm").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn never_shows_a_password() {
        let url = DatabaseUrl::parse("postgres://mdm:hunter2@db:5432/mdm?sslmode=require").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://mdm:***@db:5432/mdm?sslmode=require"
        );
        let url = DatabaseUrl::parse("postgresql://db/mdm?user=mdm&password=hunter2&x=1").unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://db/mdm?user=mdm&password=***&x=1"
        );
        let err = DatabaseUrl::parse("mysql://root:hunter2@db/x").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
