//! The breakout executor's narrow handle: what one project's jobs read and write.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::sql::{bind_cell, text, Dialect};
use super::{forget_chunks, Breakout, BreakoutDictionary, CommittedChunk, Result};
use crate::cspro::data::Case;
use crate::cspro::layout::{Layout, TableKind};
use crate::domain::breakout::InTheWay;
use crate::domain::ids::{OperationId, ProjectId};
use crate::store::{sized_chunks, to_ms};

/// Bound parameters per statement, under SQLite's, PostgreSQL's and MySQL's limits.
const MAX_PARAMS: usize = 30_000;
const MAX_ROWS_PER_INSERT: usize = 512;
/// How many times a chunk rolled back by a deadlock is written again.
const DEADLOCK_RETRIES: u32 = 5;
/// Case ids per `DELETE … IN (…)`.
const IDS_PER_DELETE: usize = 1000;

/// Where a chunk goes and what it is.
#[derive(Debug, Clone, Copy)]
pub struct ChunkKey<'a> {
    pub dictionary: &'a str,
    pub operation: OperationId,
    pub chunk: i64,
    pub fingerprint: &'a str,
}

/// A run as `p_cspro_jobs` and `p_cspro_meta` record it when it starts.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    /// The run's row in the jobs table: a serial id from [`BreakoutSink::next_ids`].
    pub job: i64,
    pub cases_to_process: u64,
    pub cspro_version: &'a str,
    pub dictionary_text: &'a str,
    /// Unix seconds.
    pub source_modified: Option<i64>,
}

/// A run as its jobs row says once it is done.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub job: i64,
    pub start_caseid: Option<&'a str>,
    pub start_revision: Option<i64>,
    pub end_caseid: Option<&'a str>,
    pub end_revision: Option<i64>,
    pub cases_processed: u64,
}

/// CSWeb's job status for a run that finished.
const JOB_DONE: i64 = 2;
const JOB_RUNNING: i64 = 1;

/// What a breakout job reads and writes, for one project: its registered dictionaries and
/// their uploaded data, and in the analytics database the tables with the record of the
/// chunks written into them. The breakout executor gets this, not the whole store.
#[derive(Clone)]
pub struct BreakoutSink {
    pub(super) breakout: Breakout,
    pub(super) project: ProjectId,
}

impl BreakoutSink {
    fn schema(&self) -> Option<String> {
        self.breakout.schema(self.project)
    }

    fn dialect(&self) -> Dialect {
        self.breakout.analytics.dialect
    }

    fn pool(&self) -> &sqlx::AnyPool {
        &self.breakout.analytics.pool
    }

    fn table(&self, name: &str) -> String {
        self.dialect().qualified(self.schema().as_deref(), name)
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
        let rows = sqlx::query(&self.dialect().sql(
            "SELECT chunk, operation_id, fingerprint, cases, issues FROM breakout_chunks
             WHERE project_id = $1 AND dictionary = $2 ORDER BY chunk",
        ))
        .bind(self.project.db())
        .bind(dictionary)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CommittedChunk {
                    chunk: row.try_get("chunk")?,
                    operation_id: row.try_get("operation_id")?,
                    fingerprint: row.try_get("fingerprint")?,
                    cases: row.try_get::<i64, _>("cases")? as u64,
                    issues: text(row, "issues")?,
                })
            })
            .collect()
    }

    /// Creates the layout's tables (dropping them first when `replace`), in one
    /// transaction (MySQL commits each DDL statement by itself), and records them as the
    /// dictionary's breakout output. On PostgreSQL and MySQL the tables come without
    /// their foreign keys ([`BreakoutSink::ensure_foreign_keys`] adds them). Tells whether
    /// the tables are new, none of them there before.
    pub async fn create_tables(
        &self,
        dictionary: &str,
        layout: &Layout,
        replace: bool,
        operation: OperationId,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (schema, dialect) = (self.schema(), self.dialect());
        let names: Vec<String> = layout.table_names().map(str::to_owned).collect();
        let new = replace
            || self
                .breakout
                .existing_tables(self.project, &names)
                .await?
                .is_empty();
        let mut tx = self.pool().begin().await?;
        if let Some(schema) = &schema {
            sqlx::query(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                dialect.quote(schema)
            ))
            .execute(&mut *tx)
            .await?;
        }
        if replace {
            for table in layout.tables.iter().rev() {
                sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.table(&table.name)))
                    .execute(&mut *tx)
                    .await?;
            }
            forget_chunks(&mut tx, dialect, self.project, dictionary).await?;
        }
        for table in &layout.tables {
            for statement in dialect.table_ddl(table, schema.as_deref()) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
        }
        let upsert = dialect.upsert(
            &["project_id", "dictionary"],
            &["tables", "operation_id", "created_at"],
        );
        sqlx::query(&dialect.sql(&format!(
            "INSERT INTO breakout_outputs (project_id, dictionary, tables, operation_id, created_at)
             VALUES ($1, $2, $3, $4, $5){upsert}"
        )))
        .bind(self.project.db())
        .bind(dictionary)
        .bind(crate::store::to_json(&names))
        .bind(operation.db())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Adds the foreign keys the tables lack (all of them after a load into new tables;
    /// none once they are there), each checking every row in one pass.
    pub async fn ensure_foreign_keys(&self, layout: &Layout) -> Result<()> {
        let schema = self.schema();
        for table in &layout.tables {
            for (name, sql) in self.dialect().foreign_key_ddl(table, schema.as_deref()) {
                if !self.foreign_key_exists(&name).await? {
                    sqlx::query(&sql).execute(self.pool()).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the tables have their foreign keys (SQLite's always do), so that deleting
    /// a case takes its rows with it; new tables being loaded have none yet.
    pub async fn has_foreign_keys(&self, layout: &Layout) -> Result<bool> {
        let schema = self.schema();
        for table in &layout.tables {
            for (name, _) in self.dialect().foreign_key_ddl(table, schema.as_deref()) {
                if !self.foreign_key_exists(&name).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn foreign_key_exists(&self, name: &str) -> Result<bool> {
        let exists = match self.dialect() {
            Dialect::Sqlite => return Ok(true),
            Dialect::Postgres => {
                "SELECT 1 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                 WHERE c.conname = $1 AND n.nspname = COALESCE($2, current_schema())"
            }
            Dialect::Mysql => {
                "SELECT 1 FROM information_schema.table_constraints WHERE constraint_name = ?
                 AND constraint_type = 'FOREIGN KEY' AND constraint_schema = COALESCE(?, DATABASE())"
            }
        };
        Ok(sqlx::query(exists)
            .bind(name)
            .bind(self.schema())
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    /// The next serial id of each table (by index in `layout.tables`; 0 for a table
    /// without one): past every row already there, so that the ids a run gives never
    /// meet the ids of the rows it keeps.
    pub async fn next_ids(&self, layout: &Layout) -> Result<Vec<i64>> {
        let mut next = Vec::with_capacity(layout.tables.len());
        for table in &layout.tables {
            let Some(key) = &table.primary_key else {
                next.push(0);
                continue;
            };
            let max: i64 = sqlx::query(&format!(
                "SELECT CAST(COALESCE(MAX({}), 0) AS {}) AS n FROM {}",
                self.dialect().quote(key),
                if self.dialect() == Dialect::Mysql {
                    "SIGNED"
                } else {
                    "BIGINT"
                },
                self.table(&table.name)
            ))
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
            next.push(max + 1);
        }
        Ok(next)
    }

    /// Records the run's start: its row in the jobs table (status 1, running) and the
    /// dictionary in the meta table, which keeps one row.
    pub async fn start_run(&self, layout: &Layout, run: RunStart<'_>) -> Result<()> {
        let dialect = self.dialect();
        let mut tx = self.pool().begin().await?;
        sqlx::query(&dialect.sql(&format!(
            "INSERT INTO {} (id, cases_to_process, cases_processed, status) VALUES ($1, $2, 0, $3)",
            self.table(&layout.jobs_table().name)
        )))
        .bind(run.job)
        .bind(run.cases_to_process as i64)
        .bind(JOB_RUNNING)
        .execute(&mut *tx)
        .await?;
        let meta = self.table(&layout.meta_table().name);
        sqlx::query(&format!("DELETE FROM {meta}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {meta} (id, cspro_version, dictionary, source_modified_time)
             VALUES (1, {}, {}, {})",
            dialect.placeholder(1),
            dialect.placeholder(2),
            dialect.time_param(3)
        ))
        .bind(run.cspro_version)
        .bind(run.dictionary_text)
        .bind(run.source_modified)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes one chunk of cases in one transaction: when `rewrite`, the rows their ids
    /// had are deleted (the cascade takes their nodes, records and notes; a load into new
    /// tables has none to delete, and PostgreSQL would scan the table for them, having no
    /// statistics yet to plan by), the new ones inserted with the
    /// serial ids from `first_ids` on, and the chunk recorded with its fingerprint, so a
    /// job that dies resumes after the chunks it committed and a later run skips the
    /// chunks that did not change.
    ///
    /// Chunks written side by side can deadlock on MySQL (InnoDB locks the index ranges
    /// that the deletes and the foreign key checks touch): the loser is rolled back whole,
    /// so it is simply written again.
    pub async fn write_chunk(
        &self,
        layout: &Layout,
        key: ChunkKey<'_>,
        cases: &[Case],
        first_ids: &[i64],
        issues: &str,
        rewrite: bool,
    ) -> Result<()> {
        let mut tries = 0;
        loop {
            match self
                .write_chunk_once(layout, key, cases, first_ids, issues, rewrite)
                .await
            {
                Err(e) if e.is_deadlock() && tries < DEADLOCK_RETRIES => tries += 1,
                done => return done,
            }
        }
    }

    async fn write_chunk_once(
        &self,
        layout: &Layout,
        key: ChunkKey<'_>,
        cases: &[Case],
        first_ids: &[i64],
        issues: &str,
        rewrite: bool,
    ) -> Result<()> {
        let (schema, dialect) = (self.schema(), self.dialect());
        let mut tx = self.pool().begin().await?;
        if rewrite {
            let ids: Vec<&str> = cases.iter().filter_map(|c| c.uuid.as_deref()).collect();
            let table = self.table(&layout.cases_table().name);
            delete_cases(&mut tx, dialect, &table, &ids).await?;
        }
        let mut next = first_ids.to_vec();
        let rows = layout.chunk_rows(cases, &mut next);
        for (table, rows) in layout.tables.iter().zip(&rows) {
            let per_statement = (MAX_PARAMS / table.columns.len().max(1)).min(MAX_ROWS_PER_INSERT);
            for batch in sized_chunks(rows, per_statement) {
                let sql = dialect.insert_sql(table, schema.as_deref(), batch.len());
                let mut query = sqlx::query(&sql);
                for row in batch {
                    for (cell, column) in row.cells().zip(&table.columns) {
                        query = bind_cell(query, column.column_type, cell);
                    }
                }
                query.execute(&mut *tx).await?;
            }
        }
        let upsert = dialect.upsert(
            &["project_id", "dictionary", "chunk"],
            &[
                "operation_id",
                "fingerprint",
                "cases",
                "issues",
                "committed_at",
            ],
        );
        sqlx::query(&dialect.sql(&format!(
            "INSERT INTO breakout_chunks (project_id, dictionary, chunk, operation_id, fingerprint,
               cases, issues, committed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8){upsert}"
        )))
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

    /// The ids of every case in the cases table.
    pub async fn stored_cases(&self, layout: &Layout) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT id FROM {}",
            self.table(&layout.cases_table().name)
        ))
        .fetch_all(self.pool())
        .await?)
    }

    /// After a run in `chunks` chunks: deletes the cases the data no longer has (`gone`),
    /// forgets the chunks past the end, and marks the run's jobs row done with its
    /// counts. On PostgreSQL, the serial sequences then move past the ids given.
    pub async fn finish(
        &self,
        layout: &Layout,
        dictionary: &str,
        gone: &[String],
        chunks: i64,
        run: RunEnd<'_>,
    ) -> Result<()> {
        let dialect = self.dialect();
        let mut tx = self.pool().begin().await?;
        let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
        delete_cases(
            &mut tx,
            dialect,
            &self.table(&layout.cases_table().name),
            &ids,
        )
        .await?;
        sqlx::query(&dialect.sql(
            "DELETE FROM breakout_chunks WHERE project_id = $1 AND dictionary = $2 AND chunk >= $3",
        ))
        .bind(self.project.db())
        .bind(dictionary)
        .bind(chunks)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&dialect.sql(&format!(
            "UPDATE {} SET start_caseid = $1, start_revision = $2, end_caseid = $3,
               end_revision = $4, cases_processed = $5, status = $6,
               modified_time = CURRENT_TIMESTAMP WHERE id = $7",
            self.table(&layout.jobs_table().name)
        )))
        .bind(run.start_caseid)
        .bind(run.start_revision)
        .bind(run.end_caseid)
        .bind(run.end_revision)
        .bind(run.cases_processed as i64)
        .bind(JOB_DONE)
        .bind(run.job)
        .execute(&mut *tx)
        .await?;
        if dialect == Dialect::Postgres {
            for table in layout.tables.iter().filter(|t| t.kind != TableKind::Cases) {
                let Some(key) = &table.primary_key else {
                    continue;
                };
                let name = self.table(&table.name);
                sqlx::query(&format!(
                    "SELECT CAST(setval(pg_get_serial_sequence($1, $2),
                       COALESCE((SELECT MAX({}) FROM {name}), 0) + 1, false) AS BIGINT)",
                    dialect.quote(key)
                ))
                .bind(&name)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes these cases from the cases table; the foreign keys' cascade takes the rest.
async fn delete_cases(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    table: &str,
    ids: &[&str],
) -> Result<()> {
    for batch in sized_chunks(ids, IDS_PER_DELETE) {
        let placeholders: Vec<String> = (1..=batch.len()).map(|i| dialect.placeholder(i)).collect();
        let sql = format!(
            "DELETE FROM {table} WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in batch {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
