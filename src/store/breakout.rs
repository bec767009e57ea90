//! CSPro breakout: registered dictionaries, the DDL and rows of the tables a breakout
//! writes (planned by [`crate::cspro::layout`]), the chunks a job committed (its cursor),
//! and what the tables weigh.
//!
//! The tables live in the analytics database (the main one unless configured apart).
//! Identifiers are always quoted. Numeric items are
//! `NUMERIC(p,s)`: whole ones are bound as integers, the others as their exact decimal
//! text (`CAST($n AS NUMERIC(p,s))` on PostgreSQL; SQLite's NUMERIC affinity converts the
//! text itself), never as a float.
//! Rows go in multi-row `INSERT`s whose row counts are powers of two, so each connection
//! prepares a handful of statements and reuses them.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};

use super::{from_ms, sized_chunks, to_ms, Backend, Result, StoreError};
use crate::cspro::data::Case;
use crate::cspro::layout::{Cell, ColumnType, Layout, Table};
use crate::domain::breakout::{in_the_way, own_tables, InTheWay, OtherClaim};
use crate::domain::ids::{OperationId, ProjectId, TenantId, UploadId};

mod uploads;

pub use uploads::{UploadError, UPLOAD_CHUNK_BYTES};

/// Bound parameters per statement, under SQLite's and PostgreSQL's limits.
const MAX_PARAMS: usize = 30_000;
const MAX_ROWS_PER_INSERT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Fixed-width text, one record per line.
    Dat,
    /// A CSPro SQLite data file.
    Csdb,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dat => "dat",
            Self::Csdb => "csdb",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "dat" => Some(Self::Dat),
            "csdb" => Some(Self::Csdb),
            _ => None,
        }
    }
}

/// Where a registered dictionary's data is.
#[derive(Debug, Clone, PartialEq)]
pub enum BreakoutData {
    /// A file on the server, by the path it resolved to at registration.
    ServerFile(String),
    /// A file uploaded with the dictionary, kept in the database (so that every replica
    /// can run the job).
    Upload(UploadId),
}

/// A dictionary registered by a project, with where its data is.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakoutDictionary {
    pub tenant: TenantId,
    pub project: ProjectId,
    pub name: String,
    pub label: String,
    pub dictionary: String,
    pub data_kind: DataKind,
    pub data: BreakoutData,
    pub created_at: DateTime<Utc>,
}

/// The tables a breakout of a dictionary created.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakoutOutput {
    pub tables: Vec<String>,
    pub operation_id: String,
    pub created_at: DateTime<Utc>,
}

/// One chunk of cases written into a dictionary's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedChunk {
    pub chunk: i64,
    pub operation_id: String,
    pub fingerprint: String,
    pub cases: u64,
    pub issues: String,
}

/// Where a chunk goes and what it is.
#[derive(Debug, Clone, Copy)]
pub struct ChunkKey<'a> {
    pub dictionary: &'a str,
    pub operation: OperationId,
    pub chunk: i64,
    pub fingerprint: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableStats {
    pub name: String,
    pub row_count: i64,
    pub size_bytes: i64,
}

const DICTIONARY_COLUMNS: &str =
    "tenant_id, project_id, name, label, dictionary, data_kind, data_path, upload_id, created_at";

fn decode_dictionary(row: &sqlx::any::AnyRow) -> Result<BreakoutDictionary> {
    let tenant: String = row.try_get("tenant_id")?;
    let project: String = row.try_get("project_id")?;
    let kind: String = row.try_get("data_kind")?;
    let data = match row.try_get::<Option<String>, _>("upload_id")? {
        Some(upload) => BreakoutData::Upload(
            upload
                .parse()
                .map_err(|_| StoreError::corrupt(format!("upload id {upload}")))?,
        ),
        None => BreakoutData::ServerFile(row.try_get("data_path")?),
    };
    Ok(BreakoutDictionary {
        tenant: tenant
            .parse()
            .map_err(|_| StoreError::corrupt(format!("tenant id {tenant}")))?,
        project: project
            .parse()
            .map_err(|_| StoreError::corrupt(format!("project id {project}")))?,
        name: row.try_get("name")?,
        label: row.try_get("label")?,
        dictionary: row.try_get("dictionary")?,
        data_kind: DataKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("data kind {kind}")))?,
        data,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

/// The record of what was written into breakout tables lives beside them: in a separate
/// analytics database, these are created there (the main database has them by migration).
pub(super) const ANALYTICS_BOOKKEEPING: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS breakout_outputs (
        project_id TEXT NOT NULL,
        dictionary TEXT NOT NULL,
        tables TEXT NOT NULL,
        operation_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (project_id, dictionary)
    )",
    "CREATE TABLE IF NOT EXISTS breakout_chunks (
        project_id TEXT NOT NULL,
        dictionary TEXT NOT NULL,
        chunk BIGINT NOT NULL,
        operation_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        cases BIGINT NOT NULL,
        issues TEXT NOT NULL,
        committed_at BIGINT NOT NULL,
        PRIMARY KEY (project_id, dictionary, chunk)
    )",
];

/// `"name"`, with inner quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A breakout table as statements name it: `"name"` in the database's current schema,
/// `"schema"."name"` in a project's own.
fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(name),
    }
}

fn column_type(t: ColumnType) -> String {
    match t {
        ColumnType::Integer => "BIGINT".into(),
        ColumnType::Text => "TEXT".into(),
        ColumnType::Decimal { precision, scale } => {
            format!(
                "NUMERIC({}, {})",
                precision.max(1),
                scale.min(precision.max(1))
            )
        }
    }
}

/// `CREATE TABLE` and `CREATE INDEX` statements for one table (in `schema`, if given).
pub fn table_ddl(table: &Table, schema: Option<&str>) -> Vec<String> {
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                quote(&c.name),
                column_type(c.column_type),
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    let key: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    let mut statements = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        qualified(schema, &table.name),
        columns.join(", ")
    )];
    for index in &table.indexes {
        let cols: Vec<String> = index.columns.iter().map(|c| quote(c)).collect();
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote(&index.name),
            qualified(schema, &table.name),
            cols.join(", ")
        ));
    }
    statements
}

/// The placeholders of one row: numeric values are cast from their exact text on
/// PostgreSQL; SQLite gets positional `?`s.
fn row_placeholders(table: &Table, backend: Backend, first: usize) -> String {
    let cells: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match (c.column_type, backend) {
            (ColumnType::Decimal { scale, .. }, Backend::Postgres) if scale > 0 => {
                format!("CAST(${} AS {})", first + i, column_type(c.column_type))
            }
            (_, Backend::Postgres) => format!("${}", first + i),
            // Anonymous parameters: SQLite finds a named one (`$7`) by a linear search,
            // which makes binding a statement of thousands of them quadratic.
            (_, Backend::Sqlite) => "?".to_owned(),
        })
        .collect();
    format!("({})", cells.join(", "))
}

fn insert_sql(table: &Table, schema: Option<&str>, backend: Backend, rows: usize) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let n = table.columns.len();
    let values: Vec<String> = (0..rows)
        .map(|r| row_placeholders(table, backend, 1 + r * n))
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        qualified(schema, &table.name),
        columns.join(", "),
        values.join(", ")
    )
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_cell<'q>(query: AnyQuery<'q>, column: ColumnType, cell: Cell<'q>) -> AnyQuery<'q> {
    match column {
        ColumnType::Integer => query.bind(match cell {
            Cell::Integer(i) => Some(i),
            Cell::Number(n) => n.as_i64(),
            Cell::Text(t) => t.trim().parse().ok(),
            Cell::Null => None,
        }),
        // Whole numbers go as integers (PostgreSQL assigns `bigint` to `numeric` itself,
        // and parses no text); fractions as their exact decimal text.
        ColumnType::Decimal { scale: 0, .. } => query.bind(match cell {
            Cell::Integer(i) => Some(i),
            Cell::Number(n) => n.as_i64(),
            Cell::Text(t) => t.trim().parse().ok(),
            Cell::Null => None,
        }),
        ColumnType::Decimal { .. } => query.bind(match cell {
            Cell::Integer(i) => Some(i.to_string()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Text(t) => Some(t.trim().to_owned()).filter(|t| !t.is_empty()),
            Cell::Null => None,
        }),
        ColumnType::Text => match cell {
            Cell::Text(t) => query.bind(Some(t)),
            Cell::Integer(i) => query.bind(Some(i.to_string())),
            Cell::Number(n) => query.bind(Some(n.to_string())),
            Cell::Null => query.bind(None::<String>),
        },
    }
}

/// Where breakout tables are written: the main database unless configured apart.
pub(super) struct Analytics {
    pool: AnyPool,
    backend: Backend,
    /// Where it is, for error reports: host and port, or file (never the credentials).
    location: String,
    /// On PostgreSQL, each project's breakout tables in a schema of its own.
    schema_per_project: bool,
}

impl Analytics {
    pub(super) fn new(pool: AnyPool, backend: Backend, url: &str) -> Arc<Self> {
        let location = match backend {
            Backend::Postgres => sqlx::postgres::PgConnectOptions::from_str(url).map_or_else(
                |_| "PostgreSQL".to_owned(),
                |o| format!("Host: {}, Port: {}", o.get_host(), o.get_port()),
            ),
            Backend::Sqlite => sqlx::sqlite::SqliteConnectOptions::from_str(url).map_or_else(
                |_| "SQLite".to_owned(),
                |o| format!("File: {}", o.get_filename().display()),
            ),
        };
        Arc::new(Analytics {
            pool,
            backend,
            location,
            schema_per_project: false,
        })
    }

    /// The same database, each project's breakout tables in a schema of its own
    /// (`breakout_<project>`), so that projects never share a table name. PostgreSQL only.
    pub(super) fn with_schema_per_project(&self) -> std::result::Result<Arc<Self>, String> {
        if self.backend != Backend::Postgres {
            return Err("a schema per project needs a PostgreSQL analytics database".to_owned());
        }
        Ok(Arc::new(Analytics {
            pool: self.pool.clone(),
            backend: self.backend,
            location: self.location.clone(),
            schema_per_project: true,
        }))
    }
}

/// CSPro breakout: the registered dictionaries and their uploaded data (in the main
/// database), and the tables breakouts write with the record of their chunks (in the
/// analytics database).
#[derive(Clone)]
pub struct Breakout {
    pool: AnyPool,
    backend: Backend,
    /// The main database's URL: SQLite's file name names the tables' database.
    url: Arc<str>,
    analytics: Arc<Analytics>,
}

impl Breakout {
    pub(super) fn analytics(&self) -> &Analytics {
        &self.analytics
    }

    pub(super) fn new(
        pool: AnyPool,
        backend: Backend,
        url: Arc<str>,
        analytics: Arc<Analytics>,
    ) -> Self {
        Breakout {
            pool,
            backend,
            url,
            analytics,
        }
    }

    /// Where breakout tables go, as error reports name it: `Host: …, Port: …` or `File: …`.
    pub fn location(&self) -> &str {
        &self.analytics.location
    }

    /// Registers a dictionary, replacing one of the same name in the project (and the
    /// upload that one's data was, unless it is this one's too).
    pub async fn put_dictionary(&self, d: &BreakoutDictionary) -> Result<()> {
        let (path, upload) = match &d.data {
            BreakoutData::ServerFile(path) => (path.as_str(), None),
            BreakoutData::Upload(upload) => ("", Some(upload.db())),
        };
        let mut tx = self.pool.begin().await?;
        let replaced: Option<Option<String>> = sqlx::query_scalar(&format!(
            "SELECT upload_id FROM breakout_dictionaries WHERE project_id = $1 AND name = $2{}",
            self.backend.for_update()
        ))
        .bind(d.project.db())
        .bind(&d.name)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO breakout_dictionaries ({DICTIONARY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (project_id, name) DO UPDATE SET label = excluded.label,
               dictionary = excluded.dictionary, data_kind = excluded.data_kind,
               data_path = excluded.data_path, upload_id = excluded.upload_id,
               created_at = excluded.created_at"
        ))
        .bind(d.tenant.db())
        .bind(d.project.db())
        .bind(&d.name)
        .bind(&d.label)
        .bind(&d.dictionary)
        .bind(d.data_kind.as_str())
        .bind(path)
        .bind(&upload)
        .bind(to_ms(d.created_at))
        .execute(&mut *tx)
        .await?;
        if let Some(old) = replaced
            .flatten()
            .filter(|old| Some(old) != upload.as_ref())
        {
            uploads::delete(&mut tx, &old).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn dictionaries(&self, project: ProjectId) -> Result<Vec<BreakoutDictionary>> {
        let rows = sqlx::query(&format!(
            "SELECT {DICTIONARY_COLUMNS} FROM breakout_dictionaries WHERE project_id = $1 ORDER BY name"
        ))
        .bind(project.db())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_dictionary).collect()
    }

    pub async fn dictionary(
        &self,
        project: ProjectId,
        name: &str,
    ) -> Result<Option<BreakoutDictionary>> {
        let row = sqlx::query(&format!(
            "SELECT {DICTIONARY_COLUMNS} FROM breakout_dictionaries WHERE project_id = $1 AND name = $2"
        ))
        .bind(project.db())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_dictionary).transpose()
    }

    /// Forgets a dictionary, and its uploaded data if it had some.
    pub async fn delete_dictionary(&self, project: ProjectId, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted: Option<Option<String>> = sqlx::query_scalar(
            "DELETE FROM breakout_dictionaries WHERE project_id = $1 AND name = $2
             RETURNING upload_id",
        )
        .bind(project.db())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(upload) = deleted.clone().flatten() {
            uploads::delete(&mut tx, &upload).await?;
        }
        tx.commit().await?;
        Ok(deleted.is_some())
    }

    /// The breakout executor's handle on the project's dictionaries and tables.
    pub fn sink(&self, project: ProjectId) -> BreakoutSink {
        BreakoutSink {
            breakout: self.clone(),
            project,
        }
    }

    /// Tables of the layout that exist but are not the project's own breakout of this
    /// dictionary (another project's, or not breakout tables at all): never dropped nor
    /// written into, and named only when no project's breakout recorded them.
    pub async fn foreign_tables(
        &self,
        project: ProjectId,
        dictionary: &str,
        layout: &Layout,
    ) -> Result<InTheWay> {
        let names: Vec<String> = layout.table_names().map(str::to_owned).collect();
        let existing = self.existing_tables(project, &names).await?;
        if existing.is_empty() {
            return Ok(InTheWay::default());
        }
        let own = self
            .own_output(project, dictionary)
            .await?
            .map(|o| o.tables)
            .unwrap_or_default();
        let foreign: Vec<String> = existing.into_iter().filter(|t| !own.contains(t)).collect();
        let others = self.other_breakout_claims(project, &foreign).await?;
        Ok(in_the_way(foreign, &others))
    }

    /// The project's breakout output of the dictionary, with only the tables that are
    /// still its own (`domain::breakout::own_tables`); `None` when it recorded none.
    pub async fn own_output(
        &self,
        project: ProjectId,
        dictionary: &str,
    ) -> Result<Option<BreakoutOutput>> {
        let Some(mut output) = self.output(project, dictionary).await? else {
            return Ok(None);
        };
        let existing = self.existing_tables(project, &output.tables).await?;
        let others = self.other_breakout_claims(project, &existing).await?;
        output.tables = own_tables(&output.tables, output.created_at, &existing, &others);
        Ok(Some(output))
    }

    /// Which of these tables other projects' breakouts recorded, and when. In a schema of
    /// the project's own, none: another project's tables of the same name are elsewhere.
    async fn other_breakout_claims(
        &self,
        project: ProjectId,
        tables: &[String],
    ) -> Result<Vec<OtherClaim>> {
        if tables.is_empty() || self.analytics.schema_per_project {
            return Ok(Vec::new());
        }
        let rows =
            sqlx::query("SELECT tables, created_at FROM breakout_outputs WHERE project_id <> $1")
                .bind(project.db())
                .fetch_all(&self.analytics.pool)
                .await?;
        let mut claims = Vec::new();
        for row in rows {
            let recorded: Vec<String> = super::from_json(
                &row.try_get::<String, _>("tables")?,
                "breakout_outputs.tables",
            )?;
            let at = from_ms(row.try_get("created_at")?)?;
            claims.extend(
                recorded
                    .into_iter()
                    .filter(|t| tables.contains(t))
                    .map(|table| OtherClaim { table, at }),
            );
        }
        Ok(claims)
    }

    /// The schema of the project's breakout tables on PostgreSQL when each project has its
    /// own (`RELAIS_BREAKOUT_SCHEMA_PER_PROJECT`); else they share the current schema.
    pub fn schema(&self, project: ProjectId) -> Option<String> {
        self.analytics
            .schema_per_project
            .then(|| format!("breakout_{}", project.uuid().simple()))
    }

    /// Which of these tables exist where the project's breakout tables go.
    pub async fn existing_tables(
        &self,
        project: ProjectId,
        names: &[String],
    ) -> Result<Vec<String>> {
        let schema = self.schema(project);
        let sql = match (self.analytics.backend, &schema) {
            (Backend::Postgres, None) => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
            (Backend::Postgres, Some(_)) => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables
                 WHERE table_schema = $2 AND table_name = $1"
            }
            (Backend::Sqlite, _) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
        };
        let mut found = Vec::new();
        for name in names {
            let mut query = sqlx::query(sql).bind(name);
            if let Some(schema) = &schema {
                query = query.bind(schema);
            }
            if query.fetch_optional(&self.analytics.pool).await?.is_some() {
                found.push(name.clone());
            }
        }
        Ok(found)
    }

    pub async fn output(
        &self,
        project: ProjectId,
        dictionary: &str,
    ) -> Result<Option<BreakoutOutput>> {
        let row = sqlx::query(
            "SELECT tables, operation_id, created_at FROM breakout_outputs
             WHERE project_id = $1 AND dictionary = $2",
        )
        .bind(project.db())
        .bind(dictionary)
        .fetch_optional(&self.analytics.pool)
        .await?;
        row.map(|row| {
            let tables: String = row.try_get("tables")?;
            Ok(BreakoutOutput {
                tables: super::from_json(&tables, "breakout_outputs.tables")?,
                operation_id: row.try_get("operation_id")?,
                created_at: from_ms(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    /// Row counts and sizes measured from the database: `pg_total_relation_size` (table,
    /// indexes and TOAST) on PostgreSQL; on SQLite the pages of the table and its indexes
    /// from `dbstat` when the library has it, else the summed length of the stored values
    /// (an estimate that leaves out page overhead and indexes).
    pub async fn table_stats(
        &self,
        project: ProjectId,
        tables: &[String],
    ) -> Result<Vec<TableStats>> {
        let schema = self.schema(project);
        let mut stats = Vec::new();
        for name in tables {
            let table = qualified(schema.as_deref(), name);
            let row_count: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?;
            let size_bytes = match self.analytics.backend {
                Backend::Postgres => sqlx::query(
                    "SELECT CAST(pg_total_relation_size(CAST($1 AS regclass)) AS BIGINT) AS n",
                )
                .bind(&table)
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?,
                Backend::Sqlite => self.sqlite_table_size(name).await?,
            };
            stats.push(TableStats {
                name: name.clone(),
                row_count,
                size_bytes,
            });
        }
        Ok(stats)
    }

    async fn sqlite_table_size(&self, name: &str) -> Result<i64> {
        let pages = sqlx::query(
            "SELECT CAST(COALESCE(SUM(pgsize), 0) AS BIGINT) AS n FROM dbstat
             WHERE name = $1 OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1)",
        )
        .bind(name)
        .fetch_one(&self.analytics.pool)
        .await;
        if let Ok(row) = pages {
            return Ok(row.try_get("n")?);
        }
        let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info($1)")
            .bind(name)
            .fetch_all(&self.analytics.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<std::result::Result<_, _>>()?;
        if columns.is_empty() {
            return Ok(0);
        }
        let lengths: Vec<String> = columns
            .iter()
            .map(|c| format!("COALESCE(LENGTH(CAST({} AS BLOB)), 0)", quote(c)))
            .collect();
        let row = sqlx::query(&format!(
            "SELECT CAST(COALESCE(SUM({}), 0) AS BIGINT) AS n FROM {}",
            lengths.join(" + "),
            quote(name)
        ))
        .fetch_one(&self.analytics.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The name of the database the tables are in: PostgreSQL's `current_database()`,
    /// SQLite's file name.
    pub async fn database_name(&self) -> Result<String> {
        match self.analytics.backend {
            Backend::Postgres => Ok(sqlx::query("SELECT CAST(current_database() AS TEXT) AS n")
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?),
            Backend::Sqlite => {
                let path = self
                    .url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//");
                let path = path.split('?').next().unwrap_or(path);
                Ok(std::path::Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "main".into()))
            }
        }
    }

    /// Drops the tables and forgets the dictionary's breakout output.
    pub async fn drop_tables(
        &self,
        project: ProjectId,
        dictionary: &str,
        tables: &[String],
    ) -> Result<()> {
        let schema = self.schema(project);
        let mut tx = self.analytics.pool.begin().await?;
        for name in tables.iter().rev() {
            sqlx::query(&format!(
                "DROP TABLE IF EXISTS {}",
                qualified(schema.as_deref(), name)
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM breakout_outputs WHERE project_id = $1 AND dictionary = $2")
            .bind(project.db())
            .bind(dictionary)
            .execute(&mut *tx)
            .await?;
        forget_chunks(&mut tx, project, dictionary).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops every breakout table of the project (when it is deleted); gives their names.
    pub(super) async fn drop_tables_of_project(&self, project: ProjectId) -> Result<Vec<String>> {
        let dictionaries: Vec<String> =
            sqlx::query_scalar("SELECT dictionary FROM breakout_outputs WHERE project_id = $1")
                .bind(project.db())
                .fetch_all(&self.analytics.pool)
                .await?;
        let mut dropped = Vec::new();
        for dictionary in dictionaries {
            // Only its own: a table another project recorded since is that one's.
            let tables = self
                .own_output(project, &dictionary)
                .await?
                .map(|o| o.tables)
                .unwrap_or_default();
            self.drop_tables(project, &dictionary, &tables).await?;
            dropped.extend(tables);
        }
        Ok(dropped)
    }
}

/// What a breakout job reads and writes, for one project: its registered dictionaries and
/// their uploaded data, and in the analytics database the tables with the record of the
/// chunks written into them. The breakout executor gets this, not the whole store.
#[derive(Clone)]
pub struct BreakoutSink {
    breakout: Breakout,
    project: ProjectId,
}

impl BreakoutSink {
    fn schema(&self) -> Option<String> {
        self.breakout.schema(self.project)
    }

    /// Where the tables go, as error reports name it: `Host: …, Port: …` or `File: …`.
    pub fn location(&self) -> &str {
        self.breakout.location()
    }

    pub async fn dictionary(&self, name: &str) -> Result<Option<BreakoutDictionary>> {
        self.breakout.dictionary(self.project, name).await
    }

    /// Tables of the layout that exist but are not this project's breakout of this
    /// dictionary.
    pub async fn foreign_tables(&self, dictionary: &str, layout: &Layout) -> Result<InTheWay> {
        self.breakout
            .foreign_tables(self.project, dictionary, layout)
            .await
    }

    /// The chunks written into the dictionary's tables, in chunk order.
    pub async fn committed_chunks(&self, dictionary: &str) -> Result<Vec<CommittedChunk>> {
        let rows = sqlx::query(
            "SELECT chunk, operation_id, fingerprint, cases, issues FROM breakout_chunks
             WHERE project_id = $1 AND dictionary = $2 ORDER BY chunk",
        )
        .bind(self.project.db())
        .bind(dictionary)
        .fetch_all(&self.breakout.analytics.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CommittedChunk {
                    chunk: row.try_get("chunk")?,
                    operation_id: row.try_get("operation_id")?,
                    fingerprint: row.try_get("fingerprint")?,
                    cases: row.try_get::<i64, _>("cases")? as u64,
                    issues: row.try_get("issues")?,
                })
            })
            .collect()
    }

    /// Creates the layout's tables (dropping them first when `replace`), in one
    /// transaction, and records them as the dictionary's breakout output.
    pub async fn create_tables(
        &self,
        dictionary: &str,
        layout: &Layout,
        replace: bool,
        operation: OperationId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let schema = self.schema();
        let mut tx = self.breakout.analytics.pool.begin().await?;
        if let Some(schema) = &schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))
                .execute(&mut *tx)
                .await?;
        }
        if replace {
            for table in layout.tables.iter().rev() {
                sqlx::query(&format!(
                    "DROP TABLE IF EXISTS {}",
                    qualified(schema.as_deref(), &table.name)
                ))
                .execute(&mut *tx)
                .await?;
            }
            forget_chunks(&mut tx, self.project, dictionary).await?;
        }
        for table in &layout.tables {
            for statement in table_ddl(table, schema.as_deref()) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
        }
        let names: Vec<&str> = layout.table_names().collect();
        sqlx::query(
            "INSERT INTO breakout_outputs (project_id, dictionary, tables, operation_id, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id, dictionary) DO UPDATE SET tables = excluded.tables,
               operation_id = excluded.operation_id, created_at = excluded.created_at",
        )
        .bind(self.project.db())
        .bind(dictionary)
        .bind(super::to_json(&names))
        .bind(operation.db())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes one chunk of cases (numbers `first..=last`) in one transaction: their old
    /// rows are deleted, the new ones inserted, and the chunk recorded with its
    /// fingerprint, so a job that dies resumes after the chunks it committed and a later
    /// run skips the chunks that did not change.
    pub async fn write_chunk(
        &self,
        layout: &Layout,
        key: ChunkKey<'_>,
        first: u64,
        last: u64,
        cases: &[Case],
        issues: &str,
    ) -> Result<()> {
        let schema = self.schema();
        let mut tx = self.breakout.analytics.pool.begin().await?;
        for table in layout.tables.iter().rev() {
            sqlx::query(&format!(
                "DELETE FROM {} WHERE case_id >= $1 AND case_id <= $2",
                qualified(schema.as_deref(), &table.name)
            ))
            .bind(first as i64)
            .bind(last as i64)
            .execute(&mut *tx)
            .await?;
        }
        for table in &layout.tables {
            let rows: Vec<_> = cases
                .iter()
                .flat_map(|case| layout.table_rows(table, case))
                .collect();
            let per_statement = (MAX_PARAMS / table.columns.len().max(1)).min(MAX_ROWS_PER_INSERT);
            for batch in sized_chunks(&rows, per_statement) {
                let sql = insert_sql(
                    table,
                    schema.as_deref(),
                    self.breakout.analytics.backend,
                    batch.len(),
                );
                let mut query = sqlx::query(&sql);
                for row in batch {
                    for (cell, column) in row.cells().zip(&table.columns) {
                        query = bind_cell(query, column.column_type, cell);
                    }
                }
                query.execute(&mut *tx).await?;
            }
        }
        sqlx::query(
            "INSERT INTO breakout_chunks (project_id, dictionary, chunk, operation_id, fingerprint,
               cases, issues, committed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (project_id, dictionary, chunk) DO UPDATE SET
               operation_id = excluded.operation_id, fingerprint = excluded.fingerprint,
               cases = excluded.cases, issues = excluded.issues, committed_at = excluded.committed_at",
        )
        .bind(self.project.db())
        .bind(key.dictionary)
        .bind(key.chunk)
        .bind(key.operation.db())
        .bind(key.fingerprint)
        .bind(cases.len() as i64)
        .bind(issues)
        .bind(to_ms(crate::clock::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// After a run over `cases` cases in `chunks` chunks: removes the rows of cases the
    /// data no longer has, and the chunks past the end.
    pub async fn finish(
        &self,
        layout: &Layout,
        dictionary: &str,
        cases: u64,
        chunks: i64,
    ) -> Result<()> {
        let schema = self.schema();
        let mut tx = self.breakout.analytics.pool.begin().await?;
        for table in layout.tables.iter().rev() {
            sqlx::query(&format!(
                "DELETE FROM {} WHERE case_id > $1",
                qualified(schema.as_deref(), &table.name)
            ))
            .bind(cases as i64)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM breakout_chunks WHERE project_id = $1 AND dictionary = $2 AND chunk >= $3",
        )
        .bind(self.project.db())
        .bind(dictionary)
        .bind(chunks)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn forget_chunks(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: ProjectId,
    dictionary: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM breakout_chunks WHERE project_id = $1 AND dictionary = $2")
        .bind(project.db())
        .bind(dictionary)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cspro::dictionary::Dictionary;

    #[test]
    fn ddl_quotes_names_and_types_numbers_exactly() {
        let text = include_str!("../../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
        let layout = Layout::new(&Dictionary::parse(text).unwrap()).unwrap();
        let ddl = table_ddl(layout.cases_table(), None);
        assert!(ddl[0].starts_with(
            "CREATE TABLE IF NOT EXISTS \"cen2000_cases\" (\"case_id\" BIGINT NOT NULL"
        ));
        assert!(ddl[0].ends_with("PRIMARY KEY (\"case_id\"))"), "{}", ddl[0]);
        assert!(ddl.iter().any(|s| s.contains("(\"case_key\")")));
        // Popstan's ids are whole numbers: bound as integers, no cast.
        let sql = insert_sql(layout.cases_table(), None, Backend::Postgres, 2);
        assert!(!sql.contains("CAST") && sql.contains("$22"), "{sql}");
        // An item with decimals is cast from its exact text.
        let text = include_str!("../../fixtures/cspro/cspro_ThreeLevelTest_HOUSEHOLD_DICT.dcf");
        let layout = Layout::new(&Dictionary::parse(text).unwrap()).unwrap();
        let table = layout
            .tables
            .iter()
            .find(|t| {
                t.columns
                    .iter()
                    .any(|c| matches!(c.column_type, ColumnType::Decimal { scale: 1.., .. }))
            })
            .expect("a table with a decimal item");
        let sql = insert_sql(table, None, Backend::Postgres, 1);
        assert!(sql.contains("AS NUMERIC("), "{sql}");
        let sql = insert_sql(layout.cases_table(), None, Backend::Sqlite, 1);
        let ddl = table_ddl(layout.cases_table(), Some("breakout_p1"));
        let in_schema = format!(
            "CREATE TABLE IF NOT EXISTS \"breakout_p1\".\"{}\"",
            layout.cases_table().name
        );
        assert!(ddl[0].starts_with(&in_schema), "{}", ddl[0]);
        assert!(ddl[1..].iter().all(|s| s.contains("ON \"breakout_p1\".")));
        assert!(!sql.contains("CAST") && !sql.contains('$'), "{sql}");
    }
}
