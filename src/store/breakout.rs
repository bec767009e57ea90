//! CSPro breakout: registered dictionaries, the DDL and rows of the tables a breakout
//! writes (planned by [`crate::cspro::layout`]), the chunks a job committed (its cursor),
//! and what the tables weigh.
//!
//! The tables live in the analytics database (the main one unless configured apart; a
//! PostgreSQL, SQLite or MySQL/MariaDB database, whose differences are in [`sql`]).
//! Identifiers are always quoted. Numeric items are `NUMERIC(p,s)`: whole ones are bound
//! as integers, the others as their exact decimal text (`CAST($n AS NUMERIC(p,s))` on
//! PostgreSQL; SQLite and MySQL convert the text themselves), never as a float.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};

use super::{from_ms, to_ms, Backend, Result, StoreError};
use crate::cspro::layout::Layout;
use crate::domain::breakout::{in_the_way, own_tables, InTheWay, OtherClaim};
use crate::domain::ids::{ProjectId, TenantId, UploadId};

mod sink;
mod sql;
mod uploads;

pub use sink::{BreakoutSink, ChunkKey, RunEnd, RunStart};
pub use sql::Dialect;
pub use uploads::{UploadError, UPLOAD_CHUNK_BYTES};

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

/// Where breakout tables are written: the main database unless configured apart.
pub(super) struct Analytics {
    pool: AnyPool,
    dialect: Dialect,
    /// Where it is, for error reports: host and port, or file (never the credentials).
    location: String,
    /// On PostgreSQL, each project's breakout tables in a schema of its own.
    schema_per_project: bool,
}

impl Analytics {
    pub(super) fn new(pool: AnyPool, dialect: Dialect, url: &str) -> Arc<Self> {
        let location = match dialect {
            Dialect::Postgres => sqlx::postgres::PgConnectOptions::from_str(url).map_or_else(
                |_| "PostgreSQL".to_owned(),
                |o| format!("Host: {}, Port: {}", o.get_host(), o.get_port()),
            ),
            Dialect::Mysql => sqlx::mysql::MySqlConnectOptions::from_str(url).map_or_else(
                |_| "MySQL".to_owned(),
                |o| format!("Host: {}, Port: {}", o.get_host(), o.get_port()),
            ),
            Dialect::Sqlite => sqlx::sqlite::SqliteConnectOptions::from_str(url).map_or_else(
                |_| "SQLite".to_owned(),
                |o| format!("File: {}", o.get_filename().display()),
            ),
        };
        Arc::new(Analytics {
            pool,
            dialect,
            location,
            schema_per_project: false,
        })
    }

    /// The bookkeeping tables a separate analytics database needs.
    pub(super) async fn create_bookkeeping(&self) -> Result<()> {
        for statement in sql::bookkeeping(self.dialect) {
            sqlx::query(&statement).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The same database, each project's breakout tables in a schema of its own
    /// (`breakout_<project>`), so that projects never share a table name. PostgreSQL only.
    pub(super) fn with_schema_per_project(&self) -> std::result::Result<Arc<Self>, String> {
        if self.dialect != Dialect::Postgres {
            return Err("a schema per project needs a PostgreSQL analytics database".to_owned());
        }
        Ok(Arc::new(Analytics {
            pool: self.pool.clone(),
            dialect: self.dialect,
            location: self.location.clone(),
            schema_per_project: true,
        }))
    }

    fn quote(&self, name: &str) -> String {
        self.dialect.quote(name)
    }

    fn qualified(&self, schema: Option<&str>, name: &str) -> String {
        self.dialect.qualified(schema, name)
    }

    /// A statement written with `$n` placeholders, as this database takes it.
    fn sql(&self, text: &str) -> String {
        self.dialect.sql(text)
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

    /// The kind of database breakout tables go to.
    pub fn dialect(&self) -> Dialect {
        self.analytics.dialect
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
        let rows = sqlx::query(
            &self
                .analytics
                .sql("SELECT tables, created_at FROM breakout_outputs WHERE project_id <> $1"),
        )
        .bind(project.db())
        .fetch_all(&self.analytics.pool)
        .await?;
        let mut claims = Vec::new();
        for row in rows {
            let recorded: Vec<String> =
                super::from_json(&sql::text(&row, "tables")?, "breakout_outputs.tables")?;
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
        let sql = match (self.analytics.dialect, &schema) {
            (Dialect::Postgres, None) => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
            (Dialect::Postgres, Some(_)) => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables
                 WHERE table_schema = $2 AND table_name = $1"
            }
            (Dialect::Mysql, _) => {
                "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables
                 WHERE table_schema = DATABASE() AND table_name = ?"
            }
            (Dialect::Sqlite, _) => {
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
        let row = sqlx::query(&self.analytics.sql(
            "SELECT tables, operation_id, created_at FROM breakout_outputs
             WHERE project_id = $1 AND dictionary = $2",
        ))
        .bind(project.db())
        .bind(dictionary)
        .fetch_optional(&self.analytics.pool)
        .await?;
        row.map(|row| {
            let tables = sql::text(&row, "tables")?;
            Ok(BreakoutOutput {
                tables: super::from_json(&tables, "breakout_outputs.tables")?,
                operation_id: row.try_get("operation_id")?,
                created_at: from_ms(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    /// Row counts and sizes measured from the database: `pg_total_relation_size` (table,
    /// indexes and TOAST) on PostgreSQL; on MySQL the data and index length InnoDB gives
    /// once `ANALYZE TABLE` refreshed its statistics; on SQLite the pages of the table and
    /// its indexes from `dbstat` when the library has it, else the summed length of the
    /// stored values (an estimate that leaves out page overhead and indexes).
    pub async fn table_stats(
        &self,
        project: ProjectId,
        tables: &[String],
    ) -> Result<Vec<TableStats>> {
        let schema = self.schema(project);
        let mut stats = Vec::new();
        for name in tables {
            let table = self.analytics.qualified(schema.as_deref(), name);
            let row_count: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?;
            let size_bytes = match self.analytics.dialect {
                Dialect::Postgres => sqlx::query(
                    "SELECT CAST(pg_total_relation_size(CAST($1 AS regclass)) AS BIGINT) AS n",
                )
                .bind(&table)
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?,
                Dialect::Sqlite => self.sqlite_table_size(name).await?,
                Dialect::Mysql => {
                    sqlx::query(&format!("ANALYZE TABLE {table}"))
                        .fetch_all(&self.analytics.pool)
                        .await?;
                    sqlx::query(
                        "SELECT CAST(COALESCE(data_length, 0) + COALESCE(index_length, 0) AS SIGNED) AS n
                         FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                    )
                    .bind(name)
                    .fetch_optional(&self.analytics.pool)
                    .await?
                    .map(|row| row.try_get("n"))
                    .transpose()?
                    .unwrap_or(0)
                }
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
            .map(|c| {
                format!(
                    "COALESCE(LENGTH(CAST({} AS BLOB)), 0)",
                    self.analytics.quote(c)
                )
            })
            .collect();
        let row = sqlx::query(&format!(
            "SELECT CAST(COALESCE(SUM({}), 0) AS BIGINT) AS n FROM {}",
            lengths.join(" + "),
            self.analytics.quote(name)
        ))
        .fetch_one(&self.analytics.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The name of the database the tables are in: PostgreSQL's `current_database()`,
    /// MySQL's `DATABASE()`, SQLite's file name.
    pub async fn database_name(&self) -> Result<String> {
        let current = match self.analytics.dialect {
            Dialect::Postgres => "SELECT CAST(current_database() AS TEXT) AS n",
            Dialect::Mysql => "SELECT CAST(DATABASE() AS CHAR) AS n",
            Dialect::Sqlite => "",
        };
        match self.analytics.dialect {
            Dialect::Postgres | Dialect::Mysql => Ok(sqlx::query(current)
                .fetch_one(&self.analytics.pool)
                .await?
                .try_get("n")?),
            Dialect::Sqlite => {
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
                self.analytics.qualified(schema.as_deref(), name)
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            &self
                .analytics
                .sql("DELETE FROM breakout_outputs WHERE project_id = $1 AND dictionary = $2"),
        )
        .bind(project.db())
        .bind(dictionary)
        .execute(&mut *tx)
        .await?;
        forget_chunks(&mut tx, self.analytics.dialect, project, dictionary).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops every breakout table of the project (when it is deleted); gives their names.
    pub(super) async fn drop_tables_of_project(&self, project: ProjectId) -> Result<Vec<String>> {
        let dictionaries: Vec<String> = sqlx::query_scalar(
            &self
                .analytics
                .sql("SELECT dictionary FROM breakout_outputs WHERE project_id = $1"),
        )
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

pub(super) async fn forget_chunks(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    project: ProjectId,
    dictionary: &str,
) -> Result<()> {
    sqlx::query(
        &dialect.sql("DELETE FROM breakout_chunks WHERE project_id = $1 AND dictionary = $2"),
    )
    .bind(project.db())
    .bind(dictionary)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
