//! Batches: their rows, members and edges. A member's own transitions (lease,
//! complete, fail…) are ordinary operation writes; what follows from them for the rest
//! of the batch is written by the scheduler pass in [`schedule`], under the batch row's
//! lock. The decisions (what a pass, a cancel or a retry changes) are
//! `domain::batch`'s; this module loads what they need and writes what they return.

mod schedule;

pub(super) use schedule::members_to_settle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::events::{current_request, StagedEvent};
use super::idempotency::{take_idempotency_key, IdempotencyRecord};
use super::operations::{bind_params, decode_operation, insert_operations, stage, Param, COLUMNS};
use super::signals::{Announce, Signals};
use super::{
    from_json, from_ms, key_chunks, one_of, placeholders, sized_chunks, to_json, to_ms,
    values_placeholders, Backend, CreateOutcome, Operations, Result, StoreError,
};
use crate::domain::batch::rerun;
use crate::domain::batch::{
    self, Batch, BatchFinished, BatchNotFinished, BatchStatus, Edge, UNSTARTED,
};
use crate::domain::event::{Event, EventDraft};
use crate::domain::ids::{BatchId, OperationId, ProjectId, TenantId};
use crate::domain::operation::{Operation, OperationStatus};

const BATCH_COLUMNS: &str = "id, tenant_id, project_id, name, description, status, \
    failure_policy, callbacks, retry_policy, total, cancel_requested, retry_number, event_seq, \
    created_at, updated_at, finished_at, notifications";
const BATCH_COLUMN_COUNT: usize = 17;
/// Keys per `IN (…)` list.
const KEYS_PER_QUERY: usize = 512;

/// A member to write: its operation and the keys it depends on.
pub(crate) type Member = (Operation, Vec<String>);

/// One member of a batch, as the batch shows it.
#[derive(Debug, Clone)]
pub struct BatchMember {
    pub key: String,
    pub dependencies: Vec<String>,
    pub operation: Operation,
}

pub struct BatchPage {
    pub batches: Vec<(Batch, Vec<(OperationStatus, i64)>)>,
    pub has_next_page: bool,
}

/// Why a batch retry did nothing.
#[derive(Debug, thiserror::Error)]
pub enum BatchRetryError {
    #[error(transparent)]
    NotFinished(#[from] BatchNotFinished),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a batch cancel did nothing.
#[derive(Debug, thiserror::Error)]
pub enum BatchCancelError {
    #[error(transparent)]
    AlreadyFinished(#[from] BatchFinished),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn member_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Batches: their rows, members and edges, the scheduler's passes, cancel and retry.
/// Member operations are written through the operations' write path.
#[derive(Clone)]
pub struct Batches {
    pool: AnyPool,
    backend: Backend,
    operations: Operations,
    signals: Signals,
    statistics: Arc<Statistics>,
}

/// Members from which a stored batch is a bulk load that PostgreSQL's statistics must
/// learn of. Until an `ANALYZE` has seen a batch, PostgreSQL estimates its id matches
/// about one row of `batch_members` and `batch_edges` (none when the statistics list
/// every batch they saw), and the scheduler's lookups of a few members' edges then read
/// every edge and member of the batch instead: 2 to 1,800 ms a lookup on a 10,000-member
/// batch, more with each batch stored, where 0.1–0.3 ms is right.
const BULK_MEMBERS: usize = 1000;

/// One `ANALYZE` of the batch tables at a time per process; a bulk load committed while
/// one runs asks for another after it, and any number of them ask for one.
#[derive(Default)]
struct Statistics {
    running: AtomicBool,
    again: AtomicBool,
}

impl Batches {
    pub(super) fn new(
        pool: AnyPool,
        backend: Backend,
        operations: Operations,
        signals: Signals,
    ) -> Self {
        Batches {
            pool,
            backend,
            operations,
            signals,
            statistics: Arc::default(),
        }
    }

    /// Has PostgreSQL sample the batch tables again, in the background: after a bulk load
    /// its statistics do not know the new batch (see [`BULK_MEMBERS`]).
    fn refresh_statistics(&self) {
        let statistics = self.statistics.clone();
        statistics.again.store(true, Ordering::Release);
        if statistics.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                while statistics.again.swap(false, Ordering::AcqRel) {
                    if let Err(e) = sqlx::query("ANALYZE batch_members, batch_edges")
                        .execute(&pool)
                        .await
                    {
                        // Only the scheduler's speed depends on it, and autovacuum
                        // analyzes the tables later anyway.
                        tracing::warn!(error = %e, "could not analyze the batch tables");
                    }
                }
                statistics.running.store(false, Ordering::Release);
                // A bulk load that asked after the last look, while `running` was still
                // set, would otherwise wait for the next bulk load.
                if !statistics.again.load(Ordering::Acquire)
                    || statistics.running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// Stores the batch, its members and their dependencies in one transaction, and
    /// emits `batch.started`; members without dependencies are claimable on commit.
    pub async fn create(
        &self,
        batch: &mut Batch,
        members: Vec<(Operation, Vec<String>)>,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<CreateOutcome> {
        let mut tx = self.pool.begin().await?;
        if let Some(record) = idempotency {
            if !take_idempotency_key(&mut tx, batch.project_id, &record, batch.created_at).await? {
                return Ok(CreateOutcome::IdempotencyKeyTaken);
            }
        }
        let bulk = members.len() >= BULK_MEMBERS;
        let announce = self.create_in(&mut tx, batch, members).await?;
        tx.commit().await?;
        if bulk && self.backend == Backend::Postgres {
            self.refresh_statistics();
        }
        self.signals.after_commit(announce);
        Ok(CreateOutcome::Created)
    }

    /// [`Batches::create`] within a transaction of the caller's (a notebook's run is
    /// recorded with its batch); what to announce once it commits.
    pub(super) async fn create_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &mut Batch,
        members: Vec<(Operation, Vec<String>)>,
    ) -> Result<Announce> {
        self.create_many_in(tx, vec![(batch, members)]).await
    }

    /// Several batches, each with its members, in a few multi-row statements (the cron
    /// ticks of many notebooks).
    pub(super) async fn create_many_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        batches: Vec<(&mut Batch, Vec<Member>)>,
    ) -> Result<Announce> {
        let Some(now) = batches.first().map(|(b, _)| b.created_at) else {
            return Ok(Announce::default());
        };
        let mut events = Vec::new();
        let mut rows = Vec::with_capacity(batches.len());
        for (batch, members) in batches {
            let (started, at) = (batch.started_event(), batch.created_at);
            events.extend(stage_batch(batch, vec![started], at));
            rows.push((&*batch, members));
        }
        let tx = &mut *tx;
        let shown: Vec<&Batch> = rows.iter().map(|(b, _)| *b).collect();
        for chunk in sized_chunks(&shown, 32) {
            let sql = format!(
                "INSERT INTO batches ({BATCH_COLUMNS}) VALUES {}",
                values_placeholders(chunk.len(), BATCH_COLUMN_COUNT, 1)
            );
            let mut query = sqlx::query(&sql);
            for batch in chunk {
                query = bind_batch(query, batch);
            }
            query.execute(&mut **tx).await?;
        }
        let ops: Vec<Operation> = rows
            .iter()
            .flat_map(|(_, members)| members.iter().map(|(op, _)| op.clone()))
            .collect();
        insert_operations(tx, self.backend, &ops).await?;
        let member_rows: Vec<(BatchId, usize, &Operation, &Vec<String>)> = rows
            .iter()
            .flat_map(|(batch, members)| {
                members
                    .iter()
                    .enumerate()
                    .map(move |(i, (op, deps))| (batch.id, i, op, deps))
            })
            .collect();
        for chunk in sized_chunks(&member_rows, 256) {
            let sql = format!(
                "INSERT INTO batch_members (batch_id, member_key, position, operation_id, dependencies, waiting) VALUES {}",
                values_placeholders(chunk.len(), 6, 1)
            );
            let mut query = sqlx::query(&sql);
            for (batch, position, op, deps) in chunk {
                let key = op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
                query = query
                    .bind(batch.db())
                    .bind(key)
                    .bind(*position as i64)
                    .bind(op.id.db())
                    .bind(to_json(deps))
                    .bind(deps.len() as i64);
            }
            query.execute(&mut **tx).await?;
        }
        let edges: Vec<(BatchId, String, &String)> = member_rows
            .iter()
            .flat_map(|(batch, _, op, deps)| {
                let key = op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
                deps.iter().map(move |d| (*batch, key.clone(), d))
            })
            .collect();
        for chunk in sized_chunks(&edges, 512) {
            let sql = format!(
                "INSERT INTO batch_edges (batch_id, upstream_key, downstream_key) VALUES {}",
                values_placeholders(chunk.len(), 3, 1)
            );
            let mut query = sqlx::query(&sql);
            for (batch, downstream, upstream) in chunk {
                query = query
                    .bind(batch.db())
                    .bind((*upstream).clone())
                    .bind(downstream.clone());
            }
            query.execute(&mut **tx).await?;
        }
        let mut announce = self.operations.write_changes(tx, &[], events, now).await?;
        announce.builtin_work = true;
        announce.worker_work = true;
        Ok(announce)
    }

    async fn write_batch_row(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &Batch,
        insert: bool,
    ) -> Result<()> {
        let sql = super::write_row_sql("batches", BATCH_COLUMNS, insert);
        bind_batch(sqlx::query(&sql), batch)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BatchId,
    ) -> Result<Option<(Batch, Vec<BatchMember>)>> {
        let row = sqlx::query(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
        ))
        .bind(id.db())
        .fetch_optional(&self.pool)
        .await?;
        let Some(batch) = row.as_ref().map(decode_batch).transpose()? else {
            return Ok(None);
        };
        if batch.tenant_id != tenant || batch.project_id != project {
            return Ok(None);
        }
        let sql = format!(
            "SELECT m.member_key, m.dependencies, {} FROM batch_members m
             JOIN operations o ON o.id = m.operation_id
             WHERE m.batch_id = $1 ORDER BY m.position",
            member_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(id.db())
            .fetch_all(&self.pool)
            .await?;
        let members = rows
            .iter()
            .map(|row| {
                Ok(BatchMember {
                    key: row.try_get("member_key")?,
                    dependencies: from_json(
                        &row.try_get::<String, _>("dependencies")?,
                        "dependencies",
                    )?,
                    operation: decode_operation(row)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((batch, members)))
    }

    /// A page of the project's batches, newest first, each with its members' counts.
    pub async fn list(
        &self,
        tenant: TenantId,
        project: ProjectId,
        status: Option<BatchStatus>,
        page: u32,
        page_size: u32,
    ) -> Result<BatchPage> {
        // Only final statuses are stored.
        let mut params = vec![Param::Text(project.db()), Param::Text(tenant.db())];
        let mut filter = String::new();
        match status {
            Some(s) if s.is_terminal() => {
                params.push(Param::Text(s.as_str().into()));
                filter = " AND status = $3".into();
            }
            // Not final yet: `Running` once a member has started (or after a retry),
            // the same rule as `Batch::status_given`, so pages are filtered in SQL.
            Some(s) => {
                let started = format!(
                    "(retry_number > 0 OR EXISTS (SELECT 1 FROM operations o \
                     WHERE o.batch_id = batches.id AND o.status NOT IN ({})))",
                    status_list(&UNSTARTED)
                );
                let negate = if s == BatchStatus::Running {
                    ""
                } else {
                    "NOT "
                };
                let terminal = BatchStatus::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .map(BatchStatus::as_str);
                filter = format!(
                    " AND status NOT IN ({}) AND {negate}{started}",
                    quoted(terminal)
                );
            }
            None => {}
        }
        let n = params.len();
        params.push(Param::Int(page_size as i64 + 1));
        params.push(Param::Int((page.max(1) as i64 - 1) * page_size as i64));
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE project_id = $1 AND tenant_id = $2{filter}
             ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows = bind_params(sqlx::query(&sql), params)
            .fetch_all(&self.pool)
            .await?;
        let has_next_page = rows.len() > page_size as usize;
        let page: Vec<Batch> = rows
            .iter()
            .take(page_size as usize)
            .map(decode_batch)
            .collect::<Result<_>>()?;
        let ids: Vec<BatchId> = page.iter().map(|b| b.id).collect();
        let mut counts = self.member_counts(&self.pool, &ids).await?;
        let batches = page
            .into_iter()
            .map(|b| {
                let of_batch = counts.remove(&b.id).unwrap_or_default();
                (b, of_batch)
            })
            .collect();
        Ok(BatchPage {
            batches,
            has_next_page,
        })
    }

    /// Each batch's members counted by status, in one query.
    async fn member_counts<'e, E>(
        &self,
        executor: E,
        batches: &[BatchId],
    ) -> Result<HashMap<BatchId, Vec<(OperationStatus, i64)>>>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let mut counts: HashMap<BatchId, Vec<(OperationStatus, i64)>> = HashMap::new();
        if batches.is_empty() {
            return Ok(counts);
        }
        let sql = format!(
            "SELECT m.batch_id, o.status, COUNT(*) AS n FROM batch_members m
             JOIN operations o ON o.id = m.operation_id
             WHERE m.batch_id IN ({}) GROUP BY m.batch_id, o.status",
            placeholders(1, batches.len())
        );
        let mut query = sqlx::query(&sql);
        for id in batches {
            query = query.bind(id.db());
        }
        for row in query.fetch_all(executor).await? {
            let batch: String = row.try_get("batch_id")?;
            let status: String = row.try_get("status")?;
            counts
                .entry(batch.parse().map_err(StoreError::corrupt)?)
                .or_default()
                .push((
                    OperationStatus::parse(&status)
                        .ok_or_else(|| StoreError::corrupt(format!("status {status}")))?,
                    row.try_get::<i64, _>("n")?,
                ));
        }
        Ok(counts)
    }

    async fn lock_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tenant: TenantId,
        project: ProjectId,
        id: BatchId,
    ) -> Result<Option<Batch>> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1{}",
            self.backend.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id.db())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row
            .as_ref()
            .map(decode_batch)
            .transpose()?
            .filter(|b| b.tenant_id == tenant && b.project_id == project))
    }

    /// Current members of the batch in the given states (only those with the given keys,
    /// if any), locked for update.
    async fn members_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        statuses: &[OperationStatus],
        keys: Option<&[String]>,
    ) -> Result<Vec<Operation>> {
        let mut ops = Vec::new();
        let chunks: Vec<Option<&[String]>> = match keys {
            Some(keys) => key_chunks(self.backend, keys, KEYS_PER_QUERY)
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None],
        };
        for chunk in chunks {
            let (key_filter, binds) = match chunk {
                Some(chunk) => {
                    let (condition, binds) = one_of(self.backend, "m.member_key", 2, chunk);
                    (format!(" AND {condition}"), binds)
                }
                None => (String::new(), Vec::new()),
            };
            let sql = format!(
                "SELECT {} FROM batch_members m JOIN operations o ON o.id = m.operation_id
                 WHERE m.batch_id = $1 AND o.status IN ({}){key_filter} ORDER BY o.id{}",
                member_columns(),
                status_list(statuses),
                self.backend.for_update_of("o")
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for value in binds {
                query = query.bind(value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                ops.push(decode_operation(&row)?);
            }
        }
        Ok(ops)
    }

    /// The edges whose downstream member is one of `keys`.
    async fn edges_into(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        keys: &[String],
    ) -> Result<Vec<Edge>> {
        let mut edges = Vec::new();
        for chunk in key_chunks(self.backend, keys, KEYS_PER_QUERY) {
            let (keys_in, binds) = one_of(self.backend, "downstream_key", 2, chunk);
            let sql = format!(
                "SELECT upstream_key, downstream_key FROM batch_edges WHERE batch_id = $1 AND {keys_in}"
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for value in binds {
                query = query.bind(value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                edges.push(decode_edge(&row)?);
            }
        }
        Ok(edges)
    }

    /// Cancels every member still live; the scheduler then ends the batch `Cancelled`.
    /// Completed members keep their results.
    pub async fn cancel(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BatchId,
        cancelled_by: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Batch>, BatchCancelError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let Some(mut batch) = self.lock_batch(&mut tx, tenant, project, id).await? else {
            return Ok(None);
        };
        batch.request_cancel(now)?;
        let live = self.members_in(&mut tx, id, &batch::LIVE, None).await?;
        let (ops, events) = stage_changes(batch::stop_members(live, &cancelled_by, now), now);
        self.write_batch_row(&mut tx, &batch, false).await?;
        let announce = self
            .operations
            .write_changes(&mut tx, &ops, events, now)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.signals.after_commit(announce);
        Ok(Some(batch))
    }

    /// Runs again every member that ended without completing, as new operations that
    /// take their keys (see [`rerun`]). Returns the batch and the (key, old id, new id)
    /// of each member run again.
    pub async fn retry(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BatchId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Batch, Vec<(String, OperationId, OperationId)>)>, BatchRetryError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let Some(mut batch) = self.lock_batch(&mut tx, tenant, project, id).await? else {
            return Ok(None);
        };
        batch.reopen(now)?;
        let old = self
            .members_in(&mut tx, id, &rerun::RUN_AGAIN, None)
            .await?;
        let keys: Vec<String> = old
            .iter()
            .filter_map(|op| op.batch.as_ref().map(|b| b.key.clone()))
            .collect();
        let edges = self.edges_into(&mut tx, id, &keys).await?;
        let reruns = rerun::rerun(&old, &edges, OperationId::new, now);
        let fresh: Vec<Operation> = reruns.iter().map(|r| r.operation.clone()).collect();
        insert_operations(&mut tx, self.backend, &fresh).await?;
        for run in &reruns {
            sqlx::query("UPDATE batch_members SET operation_id = $1, waiting = $4 WHERE batch_id = $2 AND member_key = $3")
                .bind(run.operation.id.db())
                .bind(id.db())
                .bind(run.key.clone())
                .bind(run.waiting)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        self.write_batch_row(&mut tx, &batch, false).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.signals.after_commit(Announce {
            builtin_work: true,
            worker_work: true,
            ..Announce::default()
        });
        let replaced = reruns
            .into_iter()
            .map(|r| (r.key, r.replaces, r.operation.id))
            .collect();
        Ok(Some((batch, replaced)))
    }
}

/// Hands each claimed member the results of its dependencies.
pub(super) async fn hand_batch_inputs(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ops: &mut [Operation],
) -> Result<()> {
    let mut by_batch: HashMap<BatchId, Vec<String>> = HashMap::new();
    for op in ops.iter() {
        if let Some(b) = &op.batch {
            by_batch.entry(b.batch_id).or_default().push(b.key.clone());
        }
    }
    for (batch, keys) in by_batch {
        let mut inputs = inputs_of(tx, backend, batch, &keys).await?;
        for op in ops.iter_mut() {
            if let Some(b) = op.batch.as_mut().filter(|b| b.batch_id == batch) {
                b.inputs = Some(Value::Object(inputs.remove(&b.key).unwrap_or_default()));
            }
        }
    }
    Ok(())
}

/// The results of the dependencies of each given member, by dependency key.
async fn inputs_of(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    batch: BatchId,
    keys: &[String],
) -> Result<HashMap<String, serde_json::Map<String, Value>>> {
    let mut inputs: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    for chunk in key_chunks(backend, keys, KEYS_PER_QUERY) {
        let (keys_in, binds) = one_of(backend, "e.downstream_key", 2, chunk);
        let sql = format!(
            "SELECT e.downstream_key, e.upstream_key, u.result FROM batch_edges e
             JOIN batch_members um ON um.batch_id = e.batch_id AND um.member_key = e.upstream_key
             JOIN operations u ON u.id = um.operation_id
             WHERE e.batch_id = $1 AND {keys_in}"
        );
        let mut query = sqlx::query(&sql).bind(batch.db());
        for value in binds {
            query = query.bind(value);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let result: Option<String> = row.try_get("result")?;
            let result = match result {
                Some(text) => from_json::<Value>(&text, "result")?,
                None => Value::Null,
            };
            inputs
                .entry(row.try_get("downstream_key")?)
                .or_default()
                .insert(row.try_get("upstream_key")?, result);
        }
    }
    Ok(inputs)
}

/// Each member's operation with the events its change caused, sealed in its sequence.
fn stage_changes(
    changes: Vec<(Operation, Vec<EventDraft>)>,
    now: DateTime<Utc>,
) -> (Vec<Operation>, Vec<StagedEvent>) {
    let mut events = Vec::new();
    let request = current_request();
    let ops = changes
        .into_iter()
        .map(|(mut op, drafts)| {
            if !drafts.is_empty() {
                events.extend(stage(&mut op, drafts, now, request.as_ref()));
            }
            op
        })
        .collect();
    (ops, events)
}

/// `statuses` as an SQL list of their column values.
fn status_list(statuses: &[OperationStatus]) -> String {
    quoted(statuses.iter().map(|s| s.as_str()))
}

fn quoted(values: impl IntoIterator<Item = &'static str>) -> String {
    values
        .into_iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_edge(row: &AnyRow) -> Result<Edge> {
    Ok(Edge {
        upstream: row.try_get("upstream_key")?,
        downstream: row.try_get("downstream_key")?,
    })
}

/// Seals batch events (subject: the batch) and routes each to its batch callback.
fn stage_batch(batch: &mut Batch, drafts: Vec<EventDraft>, now: DateTime<Utc>) -> Vec<StagedEvent> {
    let subject = batch.id.to_string();
    let request = current_request();
    Event::seal(
        drafts,
        batch.tenant_id,
        batch.project_id,
        &subject,
        &mut batch.event_seq,
        now,
        std::iter::repeat_with(crate::domain::ids::EventId::new),
    )
    .into_iter()
    .map(|e| {
        let callback = batch.callback_for(e.event_type).cloned();
        StagedEvent {
            notify: batch.notify_of(&e),
            event: e,
            callback,
            stop_notice: None,
            request: request.clone(),
            payload: Default::default(),
        }
    })
    .collect()
}

/// The batch's [`BATCH_COLUMNS`], in order.
fn bind_batch<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    batch: &Batch,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(batch.id.db())
        .bind(batch.tenant_id.db())
        .bind(batch.project_id.db())
        .bind(batch.name.clone())
        .bind(batch.description.clone())
        .bind(batch.status.as_str())
        .bind(to_json(&batch.failure_policy))
        .bind(to_json(&batch.callbacks))
        .bind(to_json(&batch.retry_policy))
        .bind(batch.total as i64)
        .bind(batch.cancel_requested as i64)
        .bind(batch.retry_number as i64)
        .bind(batch.event_seq)
        .bind(to_ms(batch.created_at))
        .bind(to_ms(batch.updated_at))
        .bind(batch.finished_at.map(to_ms))
        .bind(to_json(&batch.notifications))
}

fn decode_batch(row: &AnyRow) -> Result<Batch> {
    let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
    let int = |c: &str| -> Result<i64> { Ok(row.try_get::<i64, _>(c)?) };
    let status = text("status")?;
    Ok(Batch {
        id: text("id")?.parse().map_err(StoreError::corrupt)?,
        tenant_id: text("tenant_id")?.parse().map_err(StoreError::corrupt)?,
        project_id: text("project_id")?.parse().map_err(StoreError::corrupt)?,
        name: text("name")?,
        description: row.try_get("description")?,
        status: BatchStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("batch status {status}")))?,
        failure_policy: from_json(&text("failure_policy")?, "failure_policy")?,
        callbacks: from_json(&text("callbacks")?, "callbacks")?,
        retry_policy: from_json(&text("retry_policy")?, "retry_policy")?,
        total: int("total")?.max(0) as u32,
        cancel_requested: int("cancel_requested")? != 0,
        retry_number: int("retry_number")?.max(0) as u32,
        event_seq: int("event_seq")?,
        created_at: from_ms(int("created_at")?)?,
        updated_at: from_ms(int("updated_at")?)?,
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(from_ms)
            .transpose()?,
        // Batches stored before notifications existed have none.
        notifications: row
            .try_get::<Option<String>, _>("notifications")?
            .map(|n| from_json(&n, "notifications"))
            .transpose()?
            .unwrap_or_default(),
    })
}
