//! Batches and the scheduling of their members. A member's own transitions (lease,
//! complete, fail…) are ordinary operation writes; what follows from them for the rest
//! of the batch is done here, by the batch scheduler, under the batch row's lock: so two
//! members finishing at once never both miss that a shared dependent became ready.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::idempotency::{take_idempotency_key, IdempotencyRecord};
use super::operations::{
    bind_params, decode_operation, insert_operations, stage, Announce, Param, StagedEvent, COLUMNS,
};
use super::{
    from_json, from_ms, placeholders, sized_chunks, to_json, to_ms, values_placeholders,
    CreateOutcome, Result, Store, StoreError,
};
use crate::domain::batch::{
    self, blocks_dependents, AfterFailure, Batch, BatchNotFinished, BatchStatus,
};
use crate::domain::event::{Event, EventDraft};
use crate::domain::ids::{BatchId, OperationId, ProjectId, TenantId};
use crate::domain::operation::{
    BatchMembership, CancelRequest, Operation, OperationError, OperationStatus,
};
use crate::domain::requests::OperationSpec;

const BATCH_COLUMNS: &str = "id, tenant_id, project_id, name, description, status, \
    failure_policy, callbacks, retry_policy, total, cancel_requested, retry_number, event_seq, \
    created_at, updated_at, finished_at";
const BATCH_COLUMN_COUNT: usize = 16;
/// Keys per `IN (…)` list.
const KEYS_PER_QUERY: usize = 512;
/// Members whose final state one scheduling pass acts on, per batch.
const SETTLE_PER_PASS: i64 = 2_000;
const TERMINAL: &str = "('Completed', 'Failed', 'Cancelled', 'Timeout', 'Skipped')";

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
    #[error("the batch is already {}", .0.as_str())]
    AlreadyFinished(BatchStatus),
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

impl Store {
    /// Stores the batch, its members and their dependencies in one transaction, and
    /// emits `batch.started`; members without dependencies are claimable on commit.
    pub async fn create_batch(
        &self,
        batch: &mut Batch,
        members: Vec<(Operation, Vec<String>)>,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<CreateOutcome> {
        let now = batch.created_at;
        let events = stage_batch(batch, vec![batch.started_event()], now);
        let mut tx = self.pool.begin().await?;
        if let Some(record) = idempotency {
            if !take_idempotency_key(&mut tx, batch.project_id, &record, now).await? {
                return Ok(CreateOutcome::IdempotencyKeyTaken);
            }
        }
        self.write_batch_row(&mut tx, batch, true).await?;
        let ops: Vec<Operation> = members.iter().map(|(op, _)| op.clone()).collect();
        insert_operations(&mut tx, &ops).await?;
        let rows: Vec<(usize, &Operation, &Vec<String>)> = members
            .iter()
            .enumerate()
            .map(|(i, (op, deps))| (i, op, deps))
            .collect();
        for chunk in sized_chunks(&rows, 256) {
            let sql = format!(
                "INSERT INTO batch_members (batch_id, member_key, position, operation_id, dependencies, waiting) VALUES {}",
                values_placeholders(chunk.len(), 6, 1)
            );
            let mut query = sqlx::query(&sql);
            for (position, op, deps) in chunk {
                let key = op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
                query = query
                    .bind(batch.id.db())
                    .bind(key)
                    .bind(*position as i64)
                    .bind(op.id.db())
                    .bind(to_json(deps))
                    .bind(deps.len() as i64);
            }
            query.execute(&mut *tx).await?;
        }
        let edges: Vec<(String, &String)> = members
            .iter()
            .flat_map(|(op, deps)| {
                let key = op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
                deps.iter().map(move |d| (key.clone(), d))
            })
            .collect();
        for chunk in sized_chunks(&edges, 512) {
            let sql = format!(
                "INSERT INTO batch_edges (batch_id, upstream_key, downstream_key) VALUES {}",
                values_placeholders(chunk.len(), 3, 1)
            );
            let mut query = sqlx::query(&sql);
            for (downstream, upstream) in chunk {
                query = query
                    .bind(batch.id.db())
                    .bind((*upstream).clone())
                    .bind(downstream.clone());
            }
            query.execute(&mut *tx).await?;
        }
        let mut announce = self.write_changes(&mut tx, &[], events, now).await?;
        announce.builtin_work = true;
        announce.worker_work = true;
        tx.commit().await?;
        self.after_commit(announce);
        Ok(CreateOutcome::Created)
    }

    async fn write_batch_row(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &Batch,
        insert: bool,
    ) -> Result<()> {
        let sql = if insert {
            format!(
                "INSERT INTO batches ({BATCH_COLUMNS}) VALUES {}",
                values_placeholders(1, BATCH_COLUMN_COUNT, 1)
            )
        } else {
            let assignments: Vec<String> = BATCH_COLUMNS
                .split(", ")
                .enumerate()
                .skip(1)
                .map(|(i, c)| format!("{c} = ${}", i + 1))
                .collect();
            format!(
                "UPDATE batches SET {} WHERE id = $1",
                assignments.join(", ")
            )
        };
        sqlx::query(&sql)
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
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn get_batch(
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
    pub async fn list_batches(
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
                let started = "(retry_number > 0 OR EXISTS (SELECT 1 FROM operations o \
                    WHERE o.batch_id = batches.id AND o.status NOT IN ('Pending', 'Initiated')))";
                let negate = if s == BatchStatus::Running {
                    ""
                } else {
                    "NOT "
                };
                filter = format!(
                    " AND status NOT IN ('Completed', 'Failed', 'Cancelled') AND {negate}{started}"
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

    /// Current members of the batch in the given states, locked for update.
    async fn members_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        statuses: &[OperationStatus],
        keys: Option<&[String]>,
    ) -> Result<Vec<Operation>> {
        self.members_in_where(tx, batch, statuses, keys, "").await
    }

    /// [`Self::members_in`], with a further condition on the member (`m`) or operation (`o`).
    async fn members_in_where(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        statuses: &[OperationStatus],
        keys: Option<&[String]>,
        condition: &str,
    ) -> Result<Vec<Operation>> {
        let status_list: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let mut ops = Vec::new();
        let chunks: Vec<Option<&[String]>> = match keys {
            Some(keys) => sized_chunks(keys, KEYS_PER_QUERY).map(Some).collect(),
            None => vec![None],
        };
        for chunk in chunks {
            let key_filter = match chunk {
                Some(chunk) => format!(" AND m.member_key IN ({})", placeholders(2, chunk.len())),
                None => String::new(),
            };
            let sql = format!(
                "SELECT {} FROM batch_members m JOIN operations o ON o.id = m.operation_id
                 WHERE m.batch_id = $1 AND o.status IN ({}){key_filter}{condition} ORDER BY o.id{}",
                member_columns(),
                status_list.join(", "),
                self.backend.for_update_of("o")
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for key in chunk.unwrap_or_default() {
                query = query.bind(key.clone());
            }
            for row in query.fetch_all(&mut **tx).await? {
                ops.push(decode_operation(&row)?);
            }
        }
        Ok(ops)
    }

    /// Cancels every member still pending or running; the scheduler then ends the batch
    /// `Cancelled`. Completed members keep their results.
    pub async fn cancel_batch(
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
        if batch.status.is_terminal() {
            return Err(BatchCancelError::AlreadyFinished(batch.status));
        }
        batch.cancel_requested = true;
        batch.updated_at = now;
        let live = [
            OperationStatus::Pending,
            OperationStatus::Initiated,
            OperationStatus::Running,
        ];
        let mut ops = self.members_in(&mut tx, id, &live, None).await?;
        let mut events = Vec::new();
        for op in &mut ops {
            let request = CancelRequest {
                reason: Some("the batch was cancelled".into()),
                preserve_partial_results: true,
                force_termination: false,
                notify_callbacks: true,
            };
            if let Ok(drafts) = op.cancel(now, request, cancelled_by.clone()) {
                events.extend(stage(op, drafts, now));
            }
        }
        self.write_batch_row(&mut tx, &batch, false).await?;
        let announce = self.write_changes(&mut tx, &ops, events, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.after_commit(announce);
        Ok(Some(batch))
    }

    /// Runs again every member that ended without completing, as new operations that
    /// take their keys; completed members and their results stay. Returns the batch and
    /// the (key, old id, new id) of each member run again.
    pub async fn retry_batch(
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
        let again = [
            OperationStatus::Failed,
            OperationStatus::Cancelled,
            OperationStatus::Timeout,
            OperationStatus::Skipped,
        ];
        let old = self.members_in(&mut tx, id, &again, None).await?;
        let rerun: HashSet<String> = old
            .iter()
            .filter_map(|op| op.batch.as_ref().map(|b| b.key.clone()))
            .collect();
        // A member waits if any of its dependencies is being run again.
        let keys: Vec<String> = rerun.iter().cloned().collect();
        // How many of its dependencies each member run again now waits for.
        let mut waits: HashMap<String, i64> = HashMap::new();
        for chunk in sized_chunks(&keys, KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT downstream_key, upstream_key FROM batch_edges WHERE batch_id = $1 AND downstream_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(id.db());
            for key in chunk {
                query = query.bind(key.clone());
            }
            for row in query.fetch_all(&mut *tx).await.map_err(StoreError::from)? {
                let upstream: String = row.try_get("upstream_key").map_err(StoreError::from)?;
                if rerun.contains(&upstream) {
                    *waits
                        .entry(row.try_get("downstream_key").map_err(StoreError::from)?)
                        .or_default() += 1;
                }
            }
        }
        let mut fresh = Vec::with_capacity(old.len());
        let mut replaced = Vec::with_capacity(old.len());
        for op in &old {
            let Some(membership) = &op.batch else {
                continue;
            };
            let spec = OperationSpec {
                operation_type: op.operation_type.clone(),
                operation_name: op.operation_name.clone(),
                description: op.description.clone(),
                priority: op.priority,
                parameters: op.parameters.clone(),
                callbacks: op.callbacks.clone(),
                notifications: op.notifications.clone(),
                timeout: op.timeout,
                retry_policy: op.retry_policy,
            };
            let mut new = Operation::member(
                OperationId::new(),
                op.tenant_id,
                op.project_id,
                spec,
                BatchMembership {
                    batch_id: id,
                    key: membership.key.clone(),
                    inputs: None,
                },
                waits.contains_key(&membership.key),
                now,
            );
            new.retry_of = Some(op.id);
            new.retry_number = op.retry_number + 1;
            if !waits.contains_key(&membership.key) {
                // Its dependencies all completed earlier: it can run at once.
                new.status = OperationStatus::Pending;
                new.release(now)
                    .map_err(|e| StoreError::corrupt(e.to_string()))?;
            }
            replaced.push((membership.key.clone(), op.id, new.id));
            fresh.push(new);
        }
        insert_operations(&mut tx, &fresh).await?;
        for (key, _, new_id) in &replaced {
            sqlx::query("UPDATE batch_members SET operation_id = $1, waiting = $4 WHERE batch_id = $2 AND member_key = $3")
                .bind(new_id.db())
                .bind(id.db())
                .bind(key.clone())
                .bind(waits.get(key).copied().unwrap_or(0))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        self.write_batch_row(&mut tx, &batch, false).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.after_commit(Announce {
            builtin_work: true,
            worker_work: true,
            ..Announce::default()
        });
        Ok(Some((batch, replaced)))
    }

    /// Gives each batch member among `ops` the results of its dependencies, by key, as
    /// it is handed out.
    pub(super) async fn hand_batch_inputs(
        &self,
        tx: &mut Transaction<'static, Any>,
        ops: &mut [Operation],
    ) -> Result<()> {
        let mut by_batch: HashMap<BatchId, Vec<String>> = HashMap::new();
        for op in ops.iter() {
            if let Some(b) = &op.batch {
                by_batch.entry(b.batch_id).or_default().push(b.key.clone());
            }
        }
        for (batch, keys) in by_batch {
            let mut inputs = self.inputs_of(tx, batch, &keys).await?;
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
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        keys: &[String],
    ) -> Result<HashMap<String, serde_json::Map<String, Value>>> {
        let mut inputs: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
        for chunk in sized_chunks(keys, KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT e.downstream_key, e.upstream_key, u.result FROM batch_edges e
                 JOIN batch_members um ON um.batch_id = e.batch_id AND um.member_key = e.upstream_key
                 JOIN operations u ON u.id = um.operation_id
                 WHERE e.batch_id = $1 AND e.downstream_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for key in chunk {
                query = query.bind(key.clone());
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

    /// One pass of the batch scheduler: for batches whose members reached a final state,
    /// releases the members that became ready, skips those that never can run, applies
    /// the failure policy, and ends batches with nothing left to do. Returns how many
    /// member outcomes it acted on (0: nothing to do).
    pub async fn schedule_batches(&self, now: DateTime<Utc>) -> Result<usize> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT batch_id FROM operations
             WHERE batch_id IS NOT NULL AND batch_settled = 0 AND status IN {TERMINAL} LIMIT 64"
        ))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("batch_id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut tx = self.pool.begin().await?;
        // Batches another replica is scheduling right now are left to it.
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id IN ({}) ORDER BY id{}",
            placeholders(1, ids.len()),
            self.backend.skip_locked()
        );
        let mut query = sqlx::query(&sql);
        for id in &ids {
            query = query.bind(id.clone());
        }
        let batches = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(decode_batch)
            .collect::<Result<Vec<_>>>()?;
        let mut acted = 0;
        let mut announce = Announce::default();
        for mut batch in batches {
            let (n, news) = self.schedule_batch(&mut tx, &mut batch, now).await?;
            acted += n;
            announce.absorb(news);
        }
        tx.commit().await?;
        self.after_commit(announce);
        Ok(acted)
    }

    async fn schedule_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &mut Batch,
        now: DateTime<Utc>,
    ) -> Result<(usize, Announce)> {
        let sql = format!(
            "SELECT {COLUMNS} FROM operations
             WHERE batch_id = $1 AND batch_settled = 0 AND status IN {TERMINAL}
             ORDER BY id LIMIT {SETTLE_PER_PASS}"
        );
        let finished: Vec<Operation> = sqlx::query(&sql)
            .bind(batch.id.db())
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(decode_operation)
            .collect::<Result<_>>()?;
        let key_of = |op: &Operation| op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
        let completed: Vec<String> = finished
            .iter()
            .filter(|op| op.status == OperationStatus::Completed)
            .map(key_of)
            .collect();
        let failed: Vec<&Operation> = finished
            .iter()
            .filter(|op| blocks_dependents(op.status) && op.status != OperationStatus::Skipped)
            .collect();

        let mut changed: Vec<Operation> = Vec::new();
        let mut op_events: Vec<StagedEvent> = Vec::new();
        let mut batch_drafts: Vec<EventDraft> = Vec::new();

        // What can no longer run: the dependents, transitively, of each final failure.
        let mut origin: HashMap<String, (String, OperationId)> = HashMap::new();
        let mut frontier: Vec<String> = failed.iter().map(|op| key_of(op)).collect();
        for op in &failed {
            origin.insert(key_of(op), (key_of(op), op.id));
        }
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for chunk in sized_chunks(&frontier, KEYS_PER_QUERY) {
                let sql = format!(
                    "SELECT upstream_key, downstream_key FROM batch_edges WHERE batch_id = $1 AND upstream_key IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(batch.id.db());
                for key in chunk {
                    query = query.bind(key.clone());
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let upstream: String = row.try_get("upstream_key")?;
                    let downstream: String = row.try_get("downstream_key")?;
                    if !origin.contains_key(&downstream) {
                        let cause = origin[&upstream].clone();
                        origin.insert(downstream.clone(), cause);
                        next.push(downstream);
                    }
                }
            }
            frontier = next;
        }
        let doomed: Vec<String> = origin
            .keys()
            .filter(|k| !failed.iter().any(|f| key_of(f) == **k))
            .cloned()
            .collect();
        for mut op in self
            .members_in(tx, batch.id, &[OperationStatus::Pending], Some(&doomed))
            .await?
        {
            let (key, id) = origin[&key_of(&op)].clone();
            if op.skip(upstream_failed(&key, id), now).is_ok() {
                changed.push(op);
            }
        }

        // The failure policy, unless the failures are the batch's own cancellation.
        let mut halting = batch.cancel_requested;
        if let (Some(first), false) = (failed.first(), batch.cancel_requested) {
            let (key, id) = (key_of(first), first.id);
            let already: HashSet<OperationId> = changed.iter().map(|op| op.id).collect();
            match batch.failure_policy.after_failure() {
                AfterFailure::Continue => {}
                AfterFailure::SkipUnstarted => {
                    halting = true;
                    let unstarted = [OperationStatus::Pending, OperationStatus::Initiated];
                    for mut op in self.members_in(tx, batch.id, &unstarted, None).await? {
                        if !already.contains(&op.id)
                            && op.lease.is_none()
                            && op.skip(halted_by(&key, id), now).is_ok()
                        {
                            changed.push(op);
                        }
                    }
                }
                AfterFailure::CancelEverything => {
                    halting = true;
                    let live = [
                        OperationStatus::Pending,
                        OperationStatus::Initiated,
                        OperationStatus::Running,
                    ];
                    for mut op in self.members_in(tx, batch.id, &live, None).await? {
                        if already.contains(&op.id) {
                            continue;
                        }
                        let request = CancelRequest {
                            reason: Some(format!(
                                "stopOnFirstFailure: batch member `{key}` ({id}) failed"
                            )),
                            preserve_partial_results: true,
                            force_termination: false,
                            notify_callbacks: true,
                        };
                        if let Ok(drafts) = op.cancel(now, request, "batch".into()) {
                            op_events.extend(stage(&mut op, drafts, now));
                            changed.push(op);
                        }
                    }
                }
            }
        }

        // Each completion counts down its dependents' `waiting`; a member whose count
        // reaches 0 had its last dependency complete and is released (unless the batch
        // is halting, or it was dealt with above). Exact, because only this scheduler,
        // under the batch's lock, counts, and each outcome is counted once (settled).
        let counted_down = self.count_down(tx, batch.id, &completed).await?;
        if !halting && !counted_down.is_empty() {
            let handled: HashSet<OperationId> = changed.iter().map(|op| op.id).collect();
            let mut ready = self
                .members_in_where(
                    tx,
                    batch.id,
                    &[OperationStatus::Pending],
                    Some(&counted_down),
                    " AND m.waiting = 0",
                )
                .await?;
            ready.retain(|op| !handled.contains(&op.id));
            for mut op in ready {
                if op.release(now).is_ok() {
                    changed.push(op);
                }
            }
        }

        for op in finished
            .iter()
            .filter(|op| op.status == OperationStatus::Completed)
        {
            let mut data = op.snapshot();
            data["result"] = op.result.as_ref().map(|r| json!(r)).unwrap_or(Value::Null);
            batch_drafts.push(batch.member_completed_event(&key_of(op), data));
        }

        let ids: Vec<OperationId> = finished.iter().map(|op| op.id).collect();
        for chunk in sized_chunks(&ids, KEYS_PER_QUERY) {
            let sql = format!(
                "UPDATE operations SET batch_settled = 1 WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.db());
            }
            query.execute(&mut **tx).await?;
        }
        // Written before the batch's end is judged, which reads the members back.
        let mut announce = self.write_changes(tx, &changed, op_events, now).await?;

        // A batch ends once every member is final and settled: members this pass made
        // final (skipped, cancelled) are settled by the next pass, which ends it. So a
        // retry, which needs the batch ended, never races with a pass still acting on
        // the members it replaces.
        let newly_final = changed.iter().any(|op| op.status.is_terminal())
            || finished.len() as i64 == SETTLE_PER_PASS;
        // Counting every member is only worth it once none can change any more.
        let live = sqlx::query(
            "SELECT 1 FROM operations WHERE batch_id = $1
             AND status IN ('Pending', 'Initiated', 'Running') LIMIT 1",
        )
        .bind(batch.id.db())
        .fetch_optional(&mut **tx)
        .await?;
        if live.is_none() && !newly_final && !batch.status.is_terminal() {
            let counts = self
                .member_counts(&mut **tx, &[batch.id])
                .await?
                .remove(&batch.id)
                .unwrap_or_default();
            let statuses = counts
                .iter()
                .flat_map(|(s, n)| std::iter::repeat_n(*s, *n as usize));
            if let Some(status) = batch::final_status(statuses.clone(), batch.cancel_requested) {
                batch_drafts.push(batch.finish(status, batch::counts(statuses), now));
            }
        }
        if !batch_drafts.is_empty() {
            let events = stage_batch(batch, batch_drafts, now);
            let news = self.write_events(tx, events, now).await?;
            announce.absorb(news);
            self.write_batch_row(tx, batch, false).await?;
        }
        Ok((finished.len(), announce))
    }

    /// Lowers the `waiting` count of every member that depends on one of `completed`;
    /// returns the members whose count changed.
    async fn count_down(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        completed: &[String],
    ) -> Result<Vec<String>> {
        let mut decrements: HashMap<String, i64> = HashMap::new();
        for chunk in sized_chunks(completed, KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT downstream_key FROM batch_edges WHERE batch_id = $1 AND upstream_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for key in chunk {
                query = query.bind(key.clone());
            }
            for row in query.fetch_all(&mut **tx).await? {
                *decrements
                    .entry(row.try_get("downstream_key")?)
                    .or_default() += 1;
            }
        }
        // One statement per distinct decrement (nearly always just 1), many keys each.
        let mut by_amount: HashMap<i64, Vec<String>> = HashMap::new();
        for (key, n) in &decrements {
            by_amount.entry(*n).or_default().push(key.clone());
        }
        for (amount, keys) in by_amount {
            for chunk in sized_chunks(&keys, KEYS_PER_QUERY) {
                let sql = format!(
                    "UPDATE batch_members SET waiting = waiting - $2 WHERE batch_id = $1 AND member_key IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(batch.db()).bind(amount);
                for key in chunk {
                    query = query.bind(key.clone());
                }
                query.execute(&mut **tx).await?;
            }
        }
        Ok(decrements.into_keys().collect())
    }
}

fn upstream_failed(key: &str, id: OperationId) -> OperationError {
    OperationError {
        code: "UPSTREAM_FAILED".into(),
        message: format!("skipped: batch member `{key}` ({id}) did not complete"),
        details: Some(json!({"failedOperationKey": key, "failedOperationId": id})),
    }
}

fn halted_by(key: &str, id: OperationId) -> OperationError {
    OperationError {
        code: "BATCH_HALTED".into(),
        message: format!(
            "skipped: batch member `{key}` ({id}) failed and the batch does not continue independent operations"
        ),
        details: Some(json!({"failedOperationKey": key, "failedOperationId": id})),
    }
}

/// Seals batch events (subject: the batch) and routes each to its batch callback.
fn stage_batch(batch: &mut Batch, drafts: Vec<EventDraft>, now: DateTime<Utc>) -> Vec<StagedEvent> {
    let subject = batch.id.to_string();
    Event::seal(
        drafts,
        batch.tenant_id,
        batch.project_id,
        &subject,
        &mut batch.event_seq,
        now,
    )
    .into_iter()
    .map(|e| {
        let callback = batch.callback_for(e.event_type).cloned();
        (e, callback, None)
    })
    .collect()
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
    })
}
