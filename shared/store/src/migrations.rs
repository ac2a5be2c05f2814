//! Migrations for both backends, embedded in the binary.
//!
//! Each backend has its own directory (`migrations/postgres`, `migrations/sqlite`) with
//! the same migration names; a test checks that they stay in step.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::DbConnection;
use crate::error::StoreError;

pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Serializes concurrent `mdm migrate` runs and replicas starting at once on PostgreSQL
/// (SQLite: the write lock, taken before the pending migrations are read).
const PG_MIGRATION_LOCK: i64 = 0x6d64_6d5f_6d69_6772; // "mdm_migr"

pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    match conn {
        DbConnection::Pg(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
            let applied = c
                .run_pending_migrations(POSTGRES)
                .map(versions)
                .map_err(failed);
            c.batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
            applied
        }
        // The write lock first, then the list of pending migrations: another process
        // (a CLI command beside the server) migrating the same file at that moment is
        // waited for, and its migrations are not run twice.
        DbConnection::Sqlite(_) => crate::store::immediate_transaction(conn, |conn| {
            let DbConnection::Sqlite(c) = conn else {
                unreachable!("matched above")
            };
            c.run_pending_migrations(SQLITE)
                .map(versions)
                .map_err(failed)
        }),
    }
}

pub(crate) fn pending(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    let names = match conn {
        DbConnection::Pg(c) => c
            .pending_migrations(POSTGRES)
            .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
        DbConnection::Sqlite(c) => c
            .pending_migrations(SQLITE)
            .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
    };
    names.map_err(failed)
}

fn versions(applied: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    applied.iter().map(ToString::to_string).collect()
}

/// The names of the embedded migrations of each backend, in order.
pub fn names() -> Result<(Vec<String>, Vec<String>), StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    let pg = MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES).map_err(failed)?;
    let sqlite = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE).map_err(failed)?;
    Ok((
        pg.iter().map(|m| m.name().to_string()).collect(),
        sqlite.iter().map(|m| m.name().to_string()).collect(),
    ))
}
