use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::events::{current_request, StagedEvent};
use super::group_commit::{GroupCommit, Job, Transition};
use super::idempotency::IdempotencyRecord;
use super::signals::{Announce, Signals};
use super::writes::{Cell, RowWrite, Rows, Writes};
use super::{from_json, from_ms, placeholders, to_json, to_ms, Backend, Result, StoreError};
use crate::clock;
use crate::domain::event::{Event, EventDraft, EventType};
use crate::domain::ids::{ExecutionId, LeaseToken, OperationId, ProjectId, TenantId};
use crate::domain::operation::ListRequest;
use crate::domain::operation::{
    AttemptStart, Backoff, BatchMembership, Lease, Operation, OperationStatus, Priority,
};
use crate::domain::worker::PushWorker;
use crate::trace::Request;

pub(super) const COLUMNS: &str =
    "id, tenant_id, project_id, operation_type, operation_name, description, \
    priority, status, parameters, callbacks, notifications, timeout_seconds, retry_policy, \
    created_at, updated_at, started_at, finished_at, timeout_at, available_at, progress, phases, \
    attempt, attempts, execution_id, lease_token, lease_worker, lease_expires_at, ended_lease, \
    lost_leases, cancellation, result, error, event_seq, retry_of, retry_number, resume_from_phase, \
    queue_rank, batch_id, batch_key";
const COLUMN_COUNT: usize = 39;

#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// Another request with the same idempotency key won the race; nothing was written.
    IdempotencyKeyTaken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts(pub Vec<(OperationStatus, i64)>);

impl StatusCounts {
    pub fn get(&self, status: OperationStatus) -> i64 {
        self.0
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> i64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

pub struct OperationPage {
    pub operations: Vec<Operation>,
    pub counts: StatusCounts,
    pub has_next_page: bool,
}

/// Which operations a worker may be handed.
#[derive(Debug, Clone, Default)]
pub struct Claim<'a> {
    /// One project's operations, or (`None`) every project's: built-in executors serve all.
    pub scope: Option<(TenantId, ProjectId)>,
    /// Empty: any type.
    pub types: &'a [String],
    /// Types that other executors own.
    pub excluded_types: &'a [String],
    pub max: u32,
    pub worker_id: Option<String>,
}

/// Operations: their rows, the claims that lease them, the sweeps of the loops, and the
/// one path every change takes to the database (the operation, its events and the
/// deliveries they cause, in one transaction), with the group commit that shares
/// transactions between concurrent requests.
#[derive(Clone)]
pub struct Operations {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    pub(super) signals: Signals,
    pub(super) writer: Arc<GroupCommit>,
}

impl Operations {
    pub(super) fn new(pool: AnyPool, backend: Backend, signals: Signals) -> Self {
        Operations {
            writer: Arc::new(GroupCommit::new(backend)),
            pool,
            backend,
            signals,
        }
    }
}

/// A caller's change waiting in the group commit, and where its answer goes.
struct Mutation<T, E, F> {
    change: F,
    /// What the last application of `change` gave, answered after the commit.
    outcome: Option<std::result::Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<std::result::Result<Option<(T, Operation)>, E>>,
}

impl<T, E, F> Transition for Mutation<T, E, F>
where
    F: FnMut(&mut Operation) -> std::result::Result<(T, Vec<EventDraft>), E> + Send,
    E: From<StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, op: &mut Operation) -> Option<Vec<EventDraft>> {
        match (self.change)(op) {
            Ok((value, drafts)) => {
                self.outcome = Some(Ok(value));
                Some(drafts)
            }
            Err(e) => {
                self.outcome = Some(Err(e));
                None
            }
        }
    }

    fn answer(self: Box<Self>, outcome: std::result::Result<Option<&Operation>, &StoreError>) {
        let answer = match (outcome, self.outcome) {
            // A refused change wrote nothing: the refusal is the answer, whatever
            // became of the rest of its group.
            (_, Some(Err(refusal))) => Err(refusal),
            (Ok(None), _) => Ok(None),
            (Ok(Some(op)), Some(Ok(value))) => Ok(Some((value, op.clone()))),
            (Ok(Some(_)), None) => Err(StoreError::WriterGone.into()),
            (Err(e), _) => Err(e.shared().into()),
        };
        let _ = self.reply.send(answer);
    }
}

#[derive(Clone)]
pub(super) enum Param {
    Text(String),
    Int(i64),
}

impl Operations {
    /// Stores a new operation with its events (and its idempotency key, if any), written
    /// in a transaction shared with concurrent writes.
    pub async fn create(
        &self,
        op: &mut Operation,
        drafts: Vec<EventDraft>,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<CreateOutcome> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Create {
            op: Box::new(op.clone()),
            drafts,
            idempotency: idempotency.map(|r| r.to_owned()),
            request: current_request(),
            reply,
        });
        let (outcome, written) = answer.await.map_err(|_| StoreError::WriterGone)??;
        *op = *written;
        Ok(outcome)
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: OperationId,
    ) -> Result<Option<Operation>> {
        let sql = format!("SELECT {COLUMNS} FROM operations WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.db())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .as_ref()
            .map(decode_operation)
            .transpose()?
            .filter(|op| op.belongs_to(tenant, project)))
    }

    /// Applies `change` to one operation under its row lock and writes the new state with
    /// the events it produced, in a transaction shared with concurrent writes.
    /// `Ok(None)`: no such operation in this project. An error from `change` writes nothing.
    /// `change` may run more than once (a shared write that failed is written again in
    /// smaller groups), each time on the operation as it then is; only the last counts.
    pub async fn mutate<T, E, F>(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: OperationId,
        now: DateTime<Utc>,
        change: F,
    ) -> Result<Option<(T, Operation)>, E>
    where
        F: FnMut(&mut Operation) -> Result<(T, Vec<EventDraft>), E> + Send + 'static,
        E: From<StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Mutate {
            tenant,
            project,
            id,
            now,
            request: current_request(),
            transition: Box::new(Mutation {
                change,
                outcome: None,
                reply,
            }),
        });
        answer.await.map_err(|_| E::from(StoreError::WriterGone))?
    }

    /// Hands up to `claim.max` claimable operations to one worker, most urgent first,
    /// each under a fresh lease. Concurrent claimers never get the same row.
    pub async fn claim(
        &self,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        lease_ttl: Duration,
    ) -> Result<Vec<(Operation, LeaseToken)>> {
        let mut tx = self.backend.begin_reusing_plans(&self.pool).await?;
        let (claimed, announce) = self.claim_in(&mut tx, claim, now, lease_ttl).await?;
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(claimed)
    }

    /// The claim's `SELECT`. Its order, by rank then age, is an index's order for one
    /// type: with several (the built-in executors'), PostgreSQL would read and sort every
    /// claimable operation of them all, so each type is picked on its own (an ordered
    /// index scan that stops at `max`) and the picks merged.
    fn claim_query(&self, claim: &Claim<'_>, now: DateTime<Utc>) -> (String, Vec<Param>) {
        const ORDER: &str = "ORDER BY queue_rank DESC, queue_order, id";
        let lock = self.backend.skip_locked();
        let mut params = Vec::new();
        // A type listed twice would be picked twice, and its rows claimed twice.
        let mut types = claim.types.to_vec();
        types.sort();
        types.dedup();
        if types.len() <= 1 {
            let claimable = claimable_with(&mut params, claim, now);
            params.push(Param::Int(claim.max as i64));
            let sql = format!(
                "SELECT {COLUMNS} FROM operations WHERE {claimable} {ORDER} LIMIT ${}{lock}",
                params.len()
            );
            return (sql, params);
        }
        let picks: Vec<String> = types
            .iter()
            .map(|one| {
                let single = Claim {
                    scope: claim.scope,
                    types: std::slice::from_ref(one),
                    excluded_types: claim.excluded_types,
                    max: claim.max,
                    worker_id: None,
                };
                claimable_with(&mut params, &single, now)
            })
            .collect();
        params.push(Param::Int(claim.max as i64));
        let max = params.len();
        let ctes: Vec<String> = picks
            .iter()
            .enumerate()
            .map(|(i, claimable)| {
                format!(
                    "pick{i} AS (SELECT {COLUMNS}, queue_order FROM operations WHERE {claimable} {ORDER} LIMIT ${max}{lock})"
                )
            })
            .collect();
        let union: Vec<String> = (0..picks.len())
            .map(|i| format!("SELECT * FROM pick{i}"))
            .collect();
        // A row picked beyond `max` stays locked only until the claim commits.
        let sql = format!(
            "WITH {} SELECT {COLUMNS} FROM ({}) AS picked {ORDER} LIMIT ${max}",
            ctes.join(", "),
            union.join(" UNION ALL ")
        );
        (sql, params)
    }

    /// The claim itself, inside the caller's transaction; wake waiters after commit.
    pub(super) async fn claim_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        claim: &Claim<'_>,
        now: DateTime<Utc>,
        lease_ttl: Duration,
    ) -> Result<(Vec<(Operation, LeaseToken)>, Announce)> {
        if claim.max == 0 {
            return Ok((Vec::new(), Announce::default()));
        }
        let (sql, params) = self.claim_query(claim, now);
        let worker_id = claim.worker_id.clone();
        let request_worker = move || worker_id.clone();

        let rows = bind_params(sqlx::query(&sql), params)
            .fetch_all(&mut **tx)
            .await?;
        let mut ops = Vec::with_capacity(rows.len());
        let mut tokens = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        let request = current_request();
        for row in &rows {
            let mut op = decode_operation(row)?;
            let Ok((token, drafts)) = op.start_attempt(
                now,
                AttemptStart {
                    execution_id: ExecutionId::new(),
                    lease_token: LeaseToken::generate(),
                    worker_id: request_worker(),
                },
                lease_ttl,
            ) else {
                continue;
            };
            events.extend(stage(&mut op, drafts, now, request.as_ref()));
            ops.push(op);
            tokens.push(token);
        }
        let mut announce = self.write_changes(tx, &ops, events, now).await?;
        announce.leases_granted = ops.len() as u32;
        super::batches::hand_batch_inputs(tx, self.backend, &mut ops).await?;
        Ok((ops.into_iter().zip(tokens).collect(), announce))
    }

    /// When the next of the project's operations waiting out a retry delay becomes
    /// claimable, if one is.
    pub async fn next_available_at(
        &self,
        tenant: TenantId,
        project: ProjectId,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MIN(available_at) AS due FROM operations WHERE project_id = $1 AND tenant_id = $2
               AND lease_token IS NULL AND status IN ('Initiated', 'Running') AND available_at > $3",
        )
        .bind(project.db())
        .bind(tenant.db())
        .bind(to_ms(now))
        .fetch_one(&self.pool)
        .await?;
        row.try_get::<Option<i64>, _>("due")?
            .map(from_ms)
            .transpose()
    }

    /// Raises by one the queue rank of claimable operations that have waited another
    /// `interval` since they became available, up to Critical. Returns how many.
    pub async fn age_queue(&self, now: DateTime<Utc>, interval: Duration) -> Result<u64> {
        let done = sqlx::query(&format!(
            "UPDATE operations SET queue_rank = queue_rank + 1 WHERE {}",
            agable("$1", "$2", "$3")
        ))
        .bind(Priority::Critical.rank())
        .bind(to_ms(now))
        .bind(interval.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Ends running operations whose timeout passed. Returns how many.
    pub async fn time_out(&self, now: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.sweep(Deadline::Timeout, now, limit, |op| op.time_out(now))
            .await
    }

    /// Takes back leases whose holders stopped heartbeating. Returns how many.
    /// `max_lost_leases`: see [`Operation::expire_lease`].
    pub async fn expire_leases(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        mut backoff: impl FnMut() -> Backoff,
        max_lost_leases: u32,
    ) -> Result<usize> {
        self.sweep(Deadline::Lease, now, limit, |op| {
            op.expire_lease(now, backoff(), max_lost_leases)
        })
        .await
    }

    /// Applies `change` to running operations whose `deadline` column has passed, oldest
    /// first, under row locks, and writes the results in one transaction.
    async fn sweep(
        &self,
        deadline: Deadline,
        now: DateTime<Utc>,
        limit: u32,
        mut change: impl FnMut(&mut Operation) -> Vec<EventDraft>,
    ) -> Result<usize> {
        // The engine sweeps only when its look at what is due found something.
        let sql = format!(
            "SELECT {COLUMNS} FROM operations WHERE {} ORDER BY {} LIMIT $2{}",
            deadline.passed("$1"),
            deadline.column(),
            self.backend.skip_locked()
        );
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(to_ms(now))
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            // Another replica took them, or they ended meanwhile.
            return Ok(0);
        }
        let mut ops = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        for row in &rows {
            let mut op = decode_operation(row)?;
            let drafts = change(&mut op);
            // The loops' own changes: no request caused them.
            events.extend(stage(&mut op, drafts, now, None));
            ops.push(op);
        }
        let announce = self.write_changes(&mut tx, &ops, events, now).await?;
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(ops.len())
    }

    /// Writes changed operations, their events and the deliveries those cause, each as
    /// one multi-row statement; tells other replicas what became available. The caller
    /// wakes this process's waiters after commit.
    pub(super) async fn write_changes(
        &self,
        tx: &mut Transaction<'static, Any>,
        ops: &[Operation],
        events: Vec<StagedEvent>,
        now: DateTime<Utc>,
    ) -> Result<Announce> {
        self.write_changes_with(tx, Writes::new(self.backend), ops, &events, now)
            .await
    }

    /// [`Operations::write_changes`] after `writes`, in one statement on PostgreSQL.
    pub(super) async fn write_changes_with<'q>(
        &self,
        tx: &mut Transaction<'static, Any>,
        mut writes: Writes<'q>,
        ops: &'q [Operation],
        events: &'q [StagedEvent],
        now: DateTime<Utc>,
    ) -> Result<Announce> {
        push_update_operations(&mut writes, ops);
        let mut announce = self.write_events_with(tx, writes, events, now).await?;
        announce.batches = ops
            .iter()
            .any(|op| op.batch.is_some() && op.status.is_terminal());
        for op in ops {
            if op.lease.is_none()
                && matches!(
                    op.status,
                    OperationStatus::Initiated | OperationStatus::Running
                )
            {
                self.signals
                    .note_claimable(&mut announce, &op.operation_type);
            }
        }
        Ok(announce)
    }

    pub(super) async fn write_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: Vec<StagedEvent>,
        now: DateTime<Utc>,
    ) -> Result<Announce> {
        self.write_events_with(tx, Writes::new(self.backend), &events, now)
            .await
    }

    async fn write_events_with<'q>(
        &self,
        tx: &mut Transaction<'static, Any>,
        writes: Writes<'q>,
        events: &'q [StagedEvent],
        now: DateTime<Utc>,
    ) -> Result<Announce> {
        let handoff = self.signals.handoff();
        super::deliveries::write_events(tx, writes, self.backend, events, now, handoff.as_deref())
            .await
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        project: ProjectId,
        request: &ListRequest,
    ) -> Result<OperationPage> {
        let mut params = vec![Param::Text(project.db()), Param::Text(tenant.db())];
        // The tenant is checked once, on the project's row (a project's operations are all
        // its tenant's), not on each operation: then the listing indexes alone answer the
        // counts and the page's ids, without reading every row of a large project.
        let mut conditions = vec![
            "project_id = $1".to_owned(),
            "EXISTS (SELECT 1 FROM projects WHERE id = $1 AND tenant_id = $2)".to_owned(),
        ];
        let filter = &request.filter;
        let mut add = |condition: &str, param: Param| {
            params.push(param);
            conditions.push(condition.replace('?', &format!("${}", params.len())));
        };
        if let Some(status) = filter.status {
            add("status = ?", Param::Text(status.as_str().into()));
        }
        if let Some(t) = &filter.operation_type {
            add("operation_type = ?", Param::Text(t.clone()));
        }
        if let Some(p) = filter.priority {
            add("priority = ?", Param::Int(p.rank()));
        }
        if let Some(from) = filter.date_from {
            add("created_at >= ?", Param::Int(to_ms(from)));
        }
        if let Some(to) = filter.date_to {
            add("created_at <= ?", Param::Int(to_ms(to)));
        }
        let where_clause = conditions.join(" AND ");

        let count_sql = format!(
            "SELECT status, COUNT(*) AS n FROM operations WHERE {where_clause} GROUP BY status"
        );
        let count_rows = bind_params(sqlx::query(&count_sql), clone_params(&params))
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::new();
        for row in &count_rows {
            let status: String = row.try_get("status")?;
            let status = OperationStatus::parse(&status)
                .ok_or_else(|| StoreError::corrupt(format!("status {status}")))?;
            counts.push((status, row.try_get::<i64, _>("n")?));
        }

        // The page's ids first, from an index alone, and only then their rows: an offset
        // deep in the list skips index entries, not whole rows.
        let offset = (request.page as i64 - 1) * request.page_size as i64;
        let page_sql = format!(
            "SELECT {COLUMNS} FROM operations WHERE id IN (
                 SELECT id FROM operations WHERE {where_clause}
                 ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}
             ) ORDER BY created_at DESC, id DESC",
            params.len() + 1,
            params.len() + 2
        );
        params.push(Param::Int(request.page_size as i64 + 1));
        params.push(Param::Int(offset));
        let rows = bind_params(sqlx::query(&page_sql), params)
            .fetch_all(&self.pool)
            .await?;
        let has_next_page = rows.len() > request.page_size as usize;
        let operations = rows
            .iter()
            .take(request.page_size as usize)
            .map(decode_operation)
            .collect::<Result<Vec<_>>>()?;
        Ok(OperationPage {
            operations,
            counts: StatusCounts(counts),
            has_next_page,
        })
    }

    /// On PostgreSQL, brings the table's statistics and visibility map up to date now,
    /// as autovacuum does some time after a large load (a benchmark's seeding, an
    /// import), so that what follows runs on the plans a steady state gets. SQLite keeps
    /// no statistics unless asked to, and its plans here do not depend on them.
    pub async fn vacuum_analyze(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::raw_sql("VACUUM (ANALYZE) operations")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Mean run time of the project's recent completed operations of this type.
    pub async fn typical_duration(
        &self,
        project: ProjectId,
        operation_type: &str,
    ) -> Result<Option<Duration>> {
        let row = sqlx::query(
            "SELECT CAST(AVG(elapsed) AS DOUBLE PRECISION) AS mean_ms FROM (
                 SELECT finished_at - started_at AS elapsed FROM operations
                 WHERE project_id = $1 AND operation_type = $2 AND status = 'Completed'
                   AND started_at IS NOT NULL AND finished_at IS NOT NULL
                 ORDER BY finished_at DESC LIMIT 50
             ) recent",
        )
        .bind(project.db())
        .bind(operation_type)
        .fetch_one(&self.pool)
        .await?;
        let mean: Option<f64> = row.try_get("mean_ms")?;
        Ok(mean
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_millis(ms as u64)))
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

pub(super) fn bind_params(mut query: AnyQuery<'_>, params: Vec<Param>) -> AnyQuery<'_> {
    for param in params {
        query = match param {
            Param::Text(s) => query.bind(s),
            Param::Int(i) => query.bind(i),
        };
    }
    query
}

fn clone_params(params: &[Param]) -> Vec<Param> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(s) => Param::Text(s.clone()),
            Param::Int(i) => Param::Int(*i),
        })
        .collect()
}

/// An operation's values, in [`COLUMNS`]' order.
fn operation_cells(op: &Operation) -> [Cell; COLUMN_COUNT] {
    let lease = op.lease.as_ref();
    [
        op.id.db().into(),
        op.tenant_id.db().into(),
        op.project_id.db().into(),
        op.operation_type.clone().into(),
        op.operation_name.clone().into(),
        op.description.clone().into(),
        op.priority.rank().into(),
        op.status.as_str().into(),
        to_json(&op.parameters).into(),
        to_json(&op.callbacks).into(),
        to_json(&op.notifications).into(),
        (op.timeout.as_secs() as i64).into(),
        to_json(&op.retry_policy).into(),
        to_ms(op.created_at).into(),
        to_ms(op.updated_at).into(),
        op.started_at.map(to_ms).into(),
        op.finished_at.map(to_ms).into(),
        to_ms(op.timeout_at).into(),
        to_ms(op.available_at).into(),
        to_json(&op.progress).into(),
        to_json(&op.phases).into(),
        (op.attempt as i64).into(),
        to_json(&op.attempts).into(),
        op.execution_id.map(|e| e.db()).into(),
        lease.map(|l| l.token.as_str().to_owned()).into(),
        lease.and_then(|l| l.worker_id.clone()).into(),
        lease.map(|l| to_ms(l.expires_at)).into(),
        op.ended_lease.as_ref().map(to_json).into(),
        (op.lost_leases as i64).into(),
        op.cancellation.as_ref().map(to_json).into(),
        op.result.as_ref().map(to_json).into(),
        op.error.as_ref().map(to_json).into(),
        op.event_seq.into(),
        op.retry_of.map(|r| r.db()).into(),
        (op.retry_number as i64).into(),
        op.resume_from_phase.clone().into(),
        op.queue_rank.into(),
        op.batch.as_ref().map(|b| b.batch_id.db()).into(),
        op.batch.as_ref().map(|b| b.key.clone()).into(),
    ]
}

/// [`COLUMNS`], one by one; with `queue_order` last for an insert.
fn column_names(with_queue_order: bool) -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = COLUMNS.split(", ").collect();
        names.push("queue_order");
        names
    });
    if with_queue_order {
        names
    } else {
        &names[..COLUMN_COUNT]
    }
}

pub(super) fn decode_operation(row: &AnyRow) -> Result<Operation> {
    let text = |column: &str| -> Result<String> { Ok(row.try_get::<String, _>(column)?) };
    let opt_text =
        |column: &str| -> Result<Option<String>> { Ok(row.try_get::<Option<String>, _>(column)?) };
    let int = |column: &str| -> Result<i64> { Ok(row.try_get::<i64, _>(column)?) };
    let opt_int =
        |column: &str| -> Result<Option<i64>> { Ok(row.try_get::<Option<i64>, _>(column)?) };
    let time = |column: &str| from_ms(int(column)?);
    let opt_time = |column: &str| opt_int(column)?.map(from_ms).transpose();
    let json_col = |column: &str| -> Result<String> { text(column) };
    let id = |column: &str| -> Result<String> { text(column) };

    let status = text("status")?;
    let lease = match (opt_text("lease_token")?, opt_int("lease_expires_at")?) {
        (Some(token), Some(expires)) => Some(Lease {
            token: LeaseToken::from_string(token),
            worker_id: opt_text("lease_worker")?,
            expires_at: from_ms(expires)?,
        }),
        _ => None,
    };
    let opt_json = |column: &str| -> Result<Option<String>> { opt_text(column) };
    Ok(Operation {
        id: id("id")?.parse().map_err(StoreError::corrupt)?,
        tenant_id: id("tenant_id")?.parse().map_err(StoreError::corrupt)?,
        project_id: id("project_id")?.parse().map_err(StoreError::corrupt)?,
        operation_type: text("operation_type")?,
        operation_name: text("operation_name")?,
        description: opt_text("description")?,
        priority: Priority::from_rank(int("priority")?)
            .ok_or_else(|| StoreError::corrupt("priority"))?,
        status: OperationStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("status {status}")))?,
        parameters: from_json(&json_col("parameters")?, "parameters")?,
        callbacks: from_json(&json_col("callbacks")?, "callbacks")?,
        notifications: from_json(&json_col("notifications")?, "notifications")?,
        timeout: Duration::from_secs(int("timeout_seconds")?.max(0) as u64),
        retry_policy: from_json(&json_col("retry_policy")?, "retry_policy")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        timeout_at: time("timeout_at")?,
        available_at: time("available_at")?,
        progress: from_json(&json_col("progress")?, "progress")?,
        phases: from_json(&json_col("phases")?, "phases")?,
        attempt: int("attempt")?.max(0) as u32,
        attempts: from_json(&json_col("attempts")?, "attempts")?,
        execution_id: opt_text("execution_id")?
            .map(|e| e.parse::<ExecutionId>().map_err(StoreError::corrupt))
            .transpose()?,
        lease,
        ended_lease: opt_json("ended_lease")?
            .map(|e| from_json(&e, "ended_lease"))
            .transpose()?,
        lost_leases: int("lost_leases")?.max(0) as u32,
        cancellation: opt_json("cancellation")?
            .map(|c| from_json(&c, "cancellation"))
            .transpose()?,
        result: opt_json("result")?
            .map(|c| from_json(&c, "result"))
            .transpose()?,
        error: opt_json("error")?
            .map(|c| from_json(&c, "error"))
            .transpose()?,
        event_seq: int("event_seq")?,
        retry_of: opt_text("retry_of")?
            .map(|r| r.parse::<OperationId>().map_err(StoreError::corrupt))
            .transpose()?,
        retry_number: int("retry_number")?.max(0) as u32,
        resume_from_phase: opt_text("resume_from_phase")?,
        queue_rank: int("queue_rank")?,
        batch: match (opt_text("batch_id")?, opt_text("batch_key")?) {
            (Some(batch_id), Some(key)) => Some(BatchMembership {
                batch_id: batch_id.parse().map_err(StoreError::corrupt)?,
                key,
                inputs: None,
            }),
            _ => None,
        },
    })
}

/// The operation's own callback URL for an event, if it asked for one.
fn callback_url(op: &Operation, event: &Event) -> Option<String> {
    if event.event_type == EventType::OperationCancelled
        && op
            .cancellation
            .as_ref()
            .is_some_and(|c| !c.notify_callbacks)
    {
        return None;
    }
    op.callbacks.url_for(event.event_type).map(str::to_owned)
}

/// Numbers the drafts in the operation's sequence and pairs each with its callback, its
/// stop notice and the request that caused it.
pub(super) fn stage(
    op: &mut Operation,
    drafts: Vec<EventDraft>,
    now: DateTime<Utc>,
    request: Option<&Request>,
) -> Vec<StagedEvent> {
    let subject = op.id.to_string();
    let events = Event::seal(
        drafts,
        op.tenant_id,
        op.project_id,
        &subject,
        &mut op.event_seq,
        now,
        std::iter::repeat_with(crate::domain::ids::EventId::new),
    );
    events
        .into_iter()
        .map(|e| {
            let callback = callback_url(op, &e);
            let stop_notice = matches!(
                e.event_type,
                EventType::OperationCancelled | EventType::OperationTimeout
            )
            .then(|| {
                op.lease
                    .as_ref()
                    .and_then(|l| l.worker_id.as_deref())
                    .and_then(PushWorker::holder_of)
            })
            .flatten();
            StagedEvent {
                notify: op.notify_of(e.event_type, now),
                event: e,
                callback,
                stop_notice,
                request: request.cloned(),
                payload: Default::default(),
            }
        })
        .collect()
}

/// Inserts new operations, many rows per statement. `queue_order` is written once, here,
/// in the order given; updates leave it alone.
pub(super) async fn insert_operations(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ops: &[Operation],
) -> Result<()> {
    let mut writes = Writes::one_at_a_time(backend);
    push_insert_operations(&mut writes, ops);
    writes.execute(tx).await
}

pub(super) fn push_insert_operations(writes: &mut Writes<'_>, ops: &[Operation]) {
    let mut rows = Rows::new(column_names(true));
    for op in ops {
        let cells = operation_cells(op);
        rows.add(cells.into_iter().chain([clock::queue_order().into()]));
    }
    writes.push_rows(
        RowWrite::Insert {
            table: "operations",
            computed: &[],
            suffix: "",
        },
        rows,
    );
}

/// The condition a claim's rows meet (operations with no lease, waiting, available now,
/// in the claim's project and types), its values appended to `params` (so that other
/// conditions can share the statement).
pub(super) fn claimable_with(
    params: &mut Vec<Param>,
    claim: &Claim<'_>,
    now: DateTime<Utc>,
) -> String {
    params.push(Param::Int(to_ms(now)));
    let mut condition = format!(
        "lease_token IS NULL AND status IN ('Initiated', 'Running') AND available_at <= ${}",
        params.len()
    );
    let list = |params: &mut Vec<Param>, values: &[String]| {
        let first = params.len() + 1;
        params.extend(values.iter().cloned().map(Param::Text));
        placeholders(first, values.len())
    };
    if let Some((tenant, project)) = claim.scope {
        let ids = list(params, &[project.db(), tenant.db()]);
        let (p, t) = ids.split_once(", ").expect("two placeholders");
        condition.push_str(&format!(" AND project_id = {p} AND tenant_id = {t}"));
    }
    if !claim.types.is_empty() {
        condition.push_str(&format!(
            " AND operation_type IN ({})",
            list(params, claim.types)
        ));
    }
    if !claim.excluded_types.is_empty() {
        condition.push_str(&format!(
            " AND operation_type NOT IN ({})",
            list(params, claim.excluded_types)
        ));
    }
    condition
}

/// A deadline the sweeps enforce on running operations.
#[derive(Debug, Clone, Copy)]
pub(super) enum Deadline {
    /// `timeoutAt`: the run outlived its timeout.
    Timeout,
    /// The holder stopped heartbeating.
    Lease,
}

impl Deadline {
    fn column(self) -> &'static str {
        match self {
            Deadline::Timeout => "timeout_at",
            Deadline::Lease => "lease_expires_at",
        }
    }

    /// The running operations past this deadline at `now` (the placeholder given).
    pub(super) fn passed(self, now: &str) -> String {
        let column = self.column();
        match self {
            Deadline::Timeout => format!("status = 'Running' AND {column} <= {now}"),
            // The predicate on lease_token lets PostgreSQL use the partial index on leases.
            Deadline::Lease => {
                format!("status = 'Running' AND {column} <= {now} AND lease_token IS NOT NULL")
            }
        }
    }
}

/// Operations due to rank one priority higher: waiting, below the top, and waiting longer
/// than `interval` for each rank they already rose. Placeholders: the top rank, now and
/// the interval in milliseconds.
pub(super) fn agable(top_rank: &str, now: &str, interval_ms: &str) -> String {
    format!(
        "lease_token IS NULL AND status IN ('Initiated', 'Running') AND queue_rank < {top_rank}
         AND available_at <= {now} - (queue_rank - priority + 1) * {interval_ms}"
    )
}

/// Writes every column of each operation, many rows per statement.
pub(super) fn push_update_operations(writes: &mut Writes<'_>, ops: &[Operation]) {
    let mut rows = Rows::new(column_names(false));
    for op in ops {
        rows.add(operation_cells(op));
    }
    writes.push_rows(
        RowWrite::Update {
            table: "operations",
            set: update_assignments(),
            condition: "operations.id = v.id",
        },
        rows,
    );
}

/// `tenant_id = v.tenant_id, …`: every column but the key, from the written row.
fn update_assignments() -> &'static str {
    static ASSIGNMENTS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ASSIGNMENTS.get_or_init(|| {
        column_names(false)[1..]
            .iter()
            .map(|column| format!("{column} = v.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
