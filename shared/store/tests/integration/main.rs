//! The store on both backends: migrations, the schema, transactions, type mapping and
//! the SQLite writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::prelude::*;
use mdm_domain::{MdmAuthority, Role, TenantId, TokenId};
use mdm_store::models::enrollment::{ApiTokenRow, TenantRow};
use mdm_store::schema::{enr_api_tokens, enr_tenants};
use mdm_store::testing::{TestBackend, TestDatabase};
use mdm_store::{Backend, DbConnection, PoolOptions, Store, StoreError, test_on_both_backends};

fn tenant(name: &str) -> TenantRow {
    TenantRow {
        id: TenantId::new(),
        name: name.to_owned(),
        mdm_authority: MdmAuthority::None,
        authority_changed_at: None,
        created_at: 1_700_000_000_000,
        device_limit_per_user: 5,
    }
}

async fn migrations_apply_from_empty(backend: TestBackend) {
    let Some(db) = TestDatabase::empty(backend) else {
        return;
    };
    let store = db.store();
    let (pg, sqlite) = mdm_store::migrations::names().unwrap();
    let expected = match store.backend() {
        Backend::Postgres => pg,
        Backend::Sqlite => sqlite,
    };
    assert_eq!(store.pending_migrations().await.unwrap(), expected);
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), expected.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    // Running again is a no-op.
    assert!(store.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn migrations_apply_from_empty_on_sqlite() {
    migrations_apply_from_empty(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn migrations_apply_from_empty_on_postgres() {
    migrations_apply_from_empty(TestBackend::Postgres).await;
}

#[test]
fn both_backends_have_the_same_migrations() {
    let (pg, sqlite) = mdm_store::migrations::names().unwrap();
    assert_eq!(pg, sqlite);
    assert!(!pg.is_empty());
}

test_on_both_backends! {
    async fn ids_and_enums_round_trip(db) {
        let store = db.store();
        let row = tenant("Contoso");
        let id = row.id;
        store
            .write(move |c| {
                diesel::insert_into(enr_tenants::table).values(&row).execute(c)?;
                let token = ApiTokenRow {
                    id: TokenId::new(),
                    tenant_id: Some(id),
                    role: Role::Helpdesk,
                    user_id: None,
                    description: "desk".into(),
                    secret_hash: vec![0u8, 1, 2, 255],
                    created_at: 1,
                    expires_at: None,
                    revoked_at: None,
                };
                diesel::insert_into(enr_api_tokens::table).values(&token).execute(c)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let (found, token): (TenantRow, ApiTokenRow) = store
            .read(move |c| {
                let t = enr_tenants::table.find(id).select(TenantRow::as_select()).first(c)?;
                let k = enr_api_tokens::table
                    .filter(enr_api_tokens::tenant_id.eq(id))
                    .select(ApiTokenRow::as_select())
                    .first(c)?;
                Ok::<_, StoreError>((t, k))
            })
            .await
            .unwrap();
        assert_eq!(found.id, id);
        assert_eq!(found.name, "Contoso");
        assert_eq!(found.mdm_authority, MdmAuthority::None);
        assert_eq!(token.role, Role::Helpdesk);
        assert_eq!(token.secret_hash, vec![0u8, 1, 2, 255]);
    }
}

test_on_both_backends! {
    async fn a_failed_write_leaves_nothing(db) {
        let store = db.store();
        let row = tenant("Fabrikam");
        let result: Result<(), StoreError> = store
            .write(move |c| {
                diesel::insert_into(enr_tenants::table).values(&row).execute(c)?;
                Err(StoreError::Config("changed my mind".into()))
            })
            .await;
        assert!(result.is_err());
        let count: i64 = store
            .read(|c| enr_tenants::table.count().get_result(c).map_err(StoreError::from))
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}

test_on_both_backends! {
    async fn unique_violations_are_recognised(db) {
        let store = db.store();
        store.write(|c| insert(c, tenant("Northwind"))).await.unwrap();
        let err = store.write(|c| insert(c, tenant("NORTHWIND"))).await.unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
    }
}

fn insert(c: &mut DbConnection, row: TenantRow) -> Result<(), StoreError> {
    diesel::insert_into(enr_tenants::table)
        .values(&row)
        .execute(c)?;
    Ok(())
}

test_on_both_backends! {
    async fn concurrent_writes_all_land(db) {
        let store = db.store().clone();
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.write(move |c| insert(c, tenant(&format!("tenant {i}")))).await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        let count: i64 = store
            .read(|c| enr_tenants::table.count().get_result(c).map_err(StoreError::from))
            .await
            .unwrap();
        assert_eq!(count, 64);
    }
}

/// A server and CLI commands starting on a new SQLite file at once all migrate it: each
/// migration runs once, the others wait and find nothing left to do (instead of running
/// a migration again: "table already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_migrating_one_sqlite_file_at_once_run_each_migration_once() {
    let (_, names) = mdm_store::migrations::names().unwrap();
    for _ in 0..5 {
        let db = TestDatabase::empty(TestBackend::Sqlite).unwrap();
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let store = Store::open(db.url(), &PoolOptions::default()).unwrap();
                tokio::spawn(async move { store.migrate().await })
            })
            .collect();
        let mut applied = 0;
        for run in runs {
            applied += run.await.unwrap().unwrap().len();
        }
        assert_eq!(applied, names.len());
    }
}

/// Two processes on one SQLite file (a server and a CLI command): a write transaction
/// that read first waits for the other process's write instead of failing with
/// "database is locked". Both writes land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_writing_the_same_sqlite_file_waits_for_the_lock() {
    let db = TestDatabase::new(TestBackend::Sqlite).await.unwrap();
    let server = db.store().clone();
    let cli = Store::open(db.url(), &PoolOptions::default()).unwrap();
    let (read_done, go) = std::sync::mpsc::channel::<()>();
    let other = tokio::spawn(async move {
        tokio::task::spawn_blocking(move || go.recv().unwrap())
            .await
            .unwrap();
        cli.write(|c| insert(c, tenant("written by the CLI"))).await
    });
    server
        .write(move |c| {
            // Read, let the other process write meanwhile, then write.
            enr_tenants::table.count().get_result::<i64>(c)?;
            read_done.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            insert(c, tenant("written by the server"))
        })
        .await
        .unwrap();
    other.await.unwrap().unwrap();
    let count: i64 = server
        .read(|c| {
            enr_tenants::table
                .count()
                .get_result(c)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_not_fatal() {
    let options = PoolOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
    };
    // Port 1 on loopback: nothing listens there.
    let store = Store::open("postgres://mdm@127.0.0.1:1/mdm", &options).unwrap();
    let err = store.ping(Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_transient());
}

#[test]
fn unsupported_urls_are_refused_before_connecting() {
    let err = Store::open("mysql://root@localhost/mdm", &PoolOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Config(_)));
}

// ---- schema.rs against the migrated databases ----------------------------------------

/// Column type names as schema.rs spells them (without `Nullable<>`), with nullability.
type Columns = BTreeMap<String, (String, bool)>;

/// Reads the `diesel::table!` blocks of the files in `src/schema/`.
fn declared_schema() -> BTreeMap<String, Columns> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/schema");
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        text.push('\n');
    }
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Columns)> = None;
    for line in text.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" (").filter(|_| line.ends_with('{')) {
            current = Some((name.to_owned(), Columns::new()));
        } else if let (Some((_, columns)), Some((column, ty))) =
            (current.as_mut(), line.split_once(" -> "))
        {
            let ty = ty.trim_end_matches(',');
            let (ty, nullable) = match ty.strip_prefix("Nullable<") {
                Some(inner) => (inner.trim_end_matches('>'), true),
                None => (ty, false),
            };
            columns.insert(column.to_owned(), (ty.to_owned(), nullable));
        } else if line == "}"
            && let Some((name, columns)) = current.take().filter(|(_, c)| !c.is_empty())
        {
            tables.insert(name, columns);
        }
    }
    tables
}

#[derive(QueryableByName)]
struct ColumnInfo {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data_type: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    nullable: bool,
}

fn actual_schema(c: &mut DbConnection) -> BTreeMap<String, Columns> {
    let (query, types): (&str, &[(&str, &str)]) = match c.backend() {
        Backend::Postgres => (
            "SELECT table_name::text AS table_name, column_name::text AS column_name,
                    data_type::text AS data_type, (is_nullable = 'YES') AS nullable
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
            &[
                ("text", "Text"),
                ("bigint", "BigInt"),
                ("integer", "Integer"),
                ("smallint", "SmallInt"),
                ("boolean", "Bool"),
                ("bytea", "Binary"),
                ("double precision", "Double"),
            ],
        ),
        Backend::Sqlite => (
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type,
                    (p.\"notnull\" = 0 AND NOT (p.pk = 1 AND p.type = 'INTEGER')) AS nullable
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
               AND m.name <> '__diesel_schema_migrations'",
            &[
                ("TEXT", "Text"),
                ("BIGINT", "BigInt"),
                // `INTEGER PRIMARY KEY` is SQLite's 64-bit rowid.
                ("INTEGER", "Integer"),
                ("SMALLINT", "SmallInt"),
                ("BOOLEAN", "Bool"),
                ("BLOB", "Binary"),
                ("DOUBLE", "Double"),
            ],
        ),
    };
    let rows: Vec<ColumnInfo> = diesel::sql_query(query).load(c).unwrap();
    let mut tables: BTreeMap<String, Columns> = BTreeMap::new();
    for row in rows {
        let ty = types
            .iter()
            .find(|(sql, _)| sql.eq_ignore_ascii_case(&row.data_type))
            .map_or_else(
                || format!("unknown SQL type {}", row.data_type),
                |(_, t)| (*t).to_owned(),
            );
        tables
            .entry(row.table_name)
            .or_default()
            .insert(row.column_name, (ty, row.nullable));
    }
    tables
}

test_on_both_backends! {
    async fn schema_matches_migrations(db) {
        let backend = db.store().backend();
        let mut actual = db.store().read(|c| Ok::<_, StoreError>(actual_schema(c))).await.unwrap();
        let declared = declared_schema();
        if backend == Backend::Sqlite {
            // SQLite's rowid primary key is INTEGER in SQL and 64-bit: schema.rs says BigInt.
            for (table, columns) in &declared {
                for (column, (ty, _)) in columns {
                    if let Some(found) = actual.get_mut(table).and_then(|t| t.get_mut(column))
                        && ty == "BigInt" && found.0 == "Integer" && column == "id" {
                            found.0 = "BigInt".into();
                        }
                }
            }
        }
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            actual.keys().collect::<Vec<_>>(),
            "tables differ on {backend}"
        );
        for (table, columns) in &declared {
            assert_eq!(Some(columns), actual.get(table), "columns of {table} differ on {backend}");
        }
    }
}
