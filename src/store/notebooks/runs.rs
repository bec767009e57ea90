//! A notebook's runs: each one batch, written with the run's record in one transaction
//! under the notebook's lock, by hand or for a cron tick. The scheduler's pass claims due
//! notebooks with `FOR UPDATE SKIP LOCKED` (so replicas share them), runs the ticks
//! `domain::notebook::Schedule::due` picks and advances `next_run_at` in the same
//! transaction; the unique index on `(notebook_id, scheduled_for)` makes a second run of
//! one tick impossible whatever happens.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{
    blocks_of, decode_block, decode_notebook, opt_time, parsed, run_status, Notebooks, Written,
    BLOCK_COLUMNS, NOTEBOOK_COLUMNS,
};
use crate::clock;
use crate::domain::batch::{Batch, BatchStatus};
use crate::domain::ids::{BatchId, NotebookId, NotebookRunId, OperationId, ProjectId, TenantId};
use crate::domain::notebook::schedule::DOWN_AFTER_MS;
use crate::domain::notebook::{run_spec, Block, Notebook, NotebookRun, Trigger};
use crate::domain::operation::{BatchMembership, Operation};
use crate::store::idempotency::{take_idempotency_key, IdempotencyKey};
use crate::store::signals::Announce;
use crate::store::{from_ms, to_ms, Result, StoreError};

/// Notebooks whose ticks one transaction of a pass claims.
const NOTEBOOKS_PER_TRANSACTION: i64 = 64;
/// Notebooks whose cron ticks run.
pub(in crate::store) const ON_A_SCHEDULE: &str = "next_run_at IS NOT NULL AND schedule_paused = 0";
/// Transactions of a pass at once, on PostgreSQL.
const PARALLEL_TRANSACTIONS: usize = 4;

/// A run just started: its record, its batch and the member that stands for each block.
#[derive(Debug, Clone)]
pub struct RunStarted {
    pub run: NotebookRun,
    pub batch: Batch,
    /// `(member key, operation, dependencies)` per enabled block, in run order.
    pub members: Vec<(String, OperationId, Vec<String>)>,
}

/// A past run, with its batch's status.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: NotebookRun,
    pub status: BatchStatus,
    pub finished_at: Option<DateTime<Utc>>,
}

pub struct RunPage {
    pub runs: Vec<RunView>,
    pub has_next_page: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartRunError {
    #[error("notebook not found")]
    NotFound,
    #[error("the notebook has no enabled block to run")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for StartRunError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What one scheduler pass did.
#[derive(Debug, Clone, Default)]
pub struct SchedulePass {
    /// Runs created.
    pub runs: usize,
    /// Missed ticks skipped (a period old or more when the cluster came back).
    pub skipped: u64,
    /// The earliest tick still to come among the notebooks it saw, for the loop's sleep.
    pub next_due: Option<DateTime<Utc>>,
}

impl Notebooks {
    /// Runs the notebook now: one batch of its enabled blocks. With an
    /// `Idempotency-Key`, `answer` draws up the answer stored with it.
    pub async fn run(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
        now: DateTime<Utc>,
        idempotency: Option<IdempotencyKey>,
        answer: impl FnOnce(&RunStarted) -> String,
    ) -> Result<Written<RunStarted>, StartRunError> {
        let mut tx = self.pool.begin().await?;
        let Some(notebook) = self.lock(&mut tx, tenant, project, id).await? else {
            return Err(StartRunError::NotFound);
        };
        let blocks = blocks_of(&mut tx, id).await?;
        let planned =
            plan(&notebook, &blocks, Trigger::Manual, None, now).ok_or(StartRunError::Empty)?;
        let started = planned.started();
        if let Some(key) = &idempotency {
            let response = answer(&started);
            if !take_idempotency_key(&mut tx, project, &key.record(&response), now).await? {
                return Ok(Written::KeyTaken);
            }
        }
        let announce = self.write_runs(&mut tx, vec![&planned]).await?;
        sqlx::query("UPDATE notebooks SET last_run_at = $2 WHERE id = $1")
            .bind(id.db())
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(Written::Done(started))
    }

    /// Writes the runs and their batches.
    async fn write_runs(
        &self,
        tx: &mut Transaction<'static, Any>,
        runs: Vec<&Planned>,
    ) -> Result<Announce> {
        let mut batches: Vec<Batch> = runs.iter().map(|p| p.batch.clone()).collect();
        let with_members = batches
            .iter_mut()
            .zip(&runs)
            .map(|(batch, p)| (batch, p.members.clone()))
            .collect();
        let announce = self.batches.create_many_in(tx, with_members).await?;
        for chunk in runs.chunks(64) {
            let sql = format!(
                "INSERT INTO notebook_runs (id, notebook_id, batch_id, run_trigger, scheduled_for, created_at) VALUES {}",
                crate::store::values_placeholders(chunk.len(), 6, 1)
            );
            let mut query = sqlx::query(&sql);
            for p in chunk {
                let run = &p.run;
                query = query
                    .bind(run.id.db())
                    .bind(run.notebook_id.db())
                    .bind(run.batch_id.db())
                    .bind(run.trigger.as_str())
                    .bind(run.scheduled_for.map(to_ms))
                    .bind(to_ms(run.created_at));
            }
            query.execute(&mut **tx).await?;
        }
        Ok(announce)
    }

    /// The notebook's runs, newest first; `None` if there is no such notebook.
    pub async fn runs(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
        page: u32,
        page_size: u32,
    ) -> Result<Option<RunPage>> {
        if self.get(tenant, project, id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT r.id, r.notebook_id, r.batch_id, r.run_trigger, r.scheduled_for, r.created_at,
                    b.status, b.finished_at,
                    CAST(CASE WHEN b.retry_number > 0 OR EXISTS (SELECT 1 FROM operations o
                        WHERE o.batch_id = b.id AND o.status NOT IN ('Pending', 'Initiated'))
                        THEN 1 ELSE 0 END AS BIGINT) AS started
             FROM notebook_runs r JOIN batches b ON b.id = r.batch_id
             WHERE r.notebook_id = $1
             ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3",
        )
        .bind(id.db())
        .bind(page_size as i64 + 1)
        .bind((page.max(1) as i64 - 1) * page_size as i64)
        .fetch_all(&self.pool)
        .await?;
        let has_next_page = rows.len() > page_size as usize;
        let runs = rows
            .iter()
            .take(page_size as usize)
            .map(decode_run)
            .collect::<Result<_>>()?;
        Ok(Some(RunPage {
            runs,
            has_next_page,
        }))
    }

    /// Since when some replica's scheduler has looked at the clock without a gap of
    /// [`DOWN_AFTER_MS`], this pass included.
    async fn cluster_up_since(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let now = to_ms(now);
        let up_since: i64 = sqlx::query(
            "INSERT INTO scheduler_clock (id, seen_at, up_since) VALUES (1, $1, $1)
             ON CONFLICT (id) DO UPDATE SET
               up_since = CASE WHEN $1 - scheduler_clock.seen_at > $2 THEN $1
                               ELSE scheduler_clock.up_since END,
               seen_at = CASE WHEN $1 > scheduler_clock.seen_at THEN $1
                              ELSE scheduler_clock.seen_at END
             RETURNING up_since",
        )
        .bind(now)
        .bind(DOWN_AFTER_MS)
        .fetch_one(&self.pool)
        .await?
        .try_get("up_since")?;
        from_ms(up_since)
    }

    /// When the next tick of a notebook on a schedule comes, if one does.
    async fn next_tick(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = sqlx::query(&format!(
            "SELECT MIN(next_run_at) AS next FROM notebooks WHERE {ON_A_SCHEDULE}"
        ))
        .fetch_one(&self.pool)
        .await?
        .try_get("next")?;
        next.map(from_ms).transpose()
    }

    /// One scheduler pass: claims the notebooks whose next tick has come (those another
    /// replica holds are skipped, not waited for), runs their due ticks and moves each
    /// one's next tick on.
    pub async fn schedule(&self, now: DateTime<Utc>) -> Result<SchedulePass> {
        // No notebook on a schedule: no tick to run, and no clock to keep (the first
        // pass after one is scheduled finds the clock stale and starts it anew, which
        // costs nothing: a new schedule has missed no tick).
        let next_due = self.next_tick().await?;
        let Some(next) = next_due else {
            return Ok(SchedulePass::default());
        };
        let up_since = self.cluster_up_since(now).await?;
        // Nothing due (the common case between ticks): no claim to make.
        if next > now {
            return Ok(SchedulePass {
                next_due,
                ..SchedulePass::default()
            });
        }
        // On PostgreSQL, a few transactions at once (each claims its own notebooks, `SKIP
        // LOCKED`): a pass of many notebooks is bound by round trips, not by the CPU.
        let workers = match self.backend {
            crate::store::Backend::Postgres => PARALLEL_TRANSACTIONS,
            crate::store::Backend::Sqlite => 1,
        };
        let worker = || async {
            let mut done = SchedulePass::default();
            loop {
                let (claimed, some) = self.schedule_some(now, up_since).await?;
                done.runs += some.runs;
                done.skipped += some.skipped;
                if claimed < NOTEBOOKS_PER_TRANSACTION as usize {
                    return Ok::<_, StoreError>(done);
                }
            }
        };
        let mut pass = SchedulePass::default();
        for done in futures_util::future::join_all((0..workers).map(|_| worker())).await {
            let done = done?;
            pass.runs += done.runs;
            pass.skipped += done.skipped;
        }
        pass.next_due = self.next_tick().await?;
        Ok(pass)
    }

    async fn schedule_some(
        &self,
        now: DateTime<Utc>,
        up_since: DateTime<Utc>,
    ) -> Result<(usize, SchedulePass)> {
        let mut pass = SchedulePass::default();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {NOTEBOOK_COLUMNS} FROM notebooks
             WHERE next_run_at <= $1 AND schedule_paused = 0
             ORDER BY next_run_at LIMIT $2{}",
            self.backend.skip_locked()
        ))
        .bind(to_ms(now))
        .bind(NOTEBOOKS_PER_TRANSACTION)
        .fetch_all(&mut *tx)
        .await?;
        let claimed: Vec<Notebook> = rows.iter().map(decode_notebook).collect::<Result<_>>()?;
        if claimed.is_empty() {
            return Ok((0, pass));
        }
        let ids: Vec<NotebookId> = claimed.iter().map(|n| n.id).collect();
        let mut blocks = blocks_of_many(&mut tx, &ids).await?;
        // Stamped when written, not when the pass began: a pass of many notebooks writes
        // its runs over several transactions.
        let created = clock::now().max(now);
        let mut planned = Vec::new();
        let mut moved = Vec::with_capacity(claimed.len());
        for notebook in &claimed {
            let (Some(schedule), Some(next)) = (&notebook.schedule, notebook.next_run_at) else {
                continue;
            };
            let due = schedule.due(next, now, up_since);
            pass.skipped += due.skipped;
            if due.skipped > 0 {
                tracing::info!(
                    notebook_id = %notebook.id,
                    skipped = due.skipped,
                    "missed ticks skipped: every replica was down when they came due"
                );
            }
            let own = blocks.remove(&notebook.id).unwrap_or_default();
            let mut last_run = notebook.last_run_at;
            for tick in &due.run {
                if let Some(run) = plan(notebook, &own, Trigger::Schedule, Some(*tick), created) {
                    planned.push(run);
                    last_run = Some(created);
                }
            }
            moved.push((notebook.id, due.next, last_run));
        }
        pass.runs = planned.len();
        let announce = self.write_runs(&mut tx, planned.iter().collect()).await?;
        for (id, next, last_run) in moved {
            sqlx::query("UPDATE notebooks SET next_run_at = $2, last_run_at = $3 WHERE id = $1")
                .bind(id.db())
                .bind(next.map(to_ms))
                .bind(last_run.map(to_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok((claimed.len(), pass))
    }
}

/// The blocks of each of these notebooks.
async fn blocks_of_many(
    tx: &mut Transaction<'static, Any>,
    notebooks: &[NotebookId],
) -> Result<HashMap<NotebookId, Vec<Block>>> {
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM notebook_blocks WHERE notebook_id IN ({})
         ORDER BY block_order, created_at, id",
        crate::store::placeholders(1, notebooks.len())
    );
    let mut query = sqlx::query(&sql);
    for id in notebooks {
        query = query.bind(id.db());
    }
    let mut out: HashMap<NotebookId, Vec<Block>> = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let block = decode_block(&row)?;
        out.entry(block.notebook_id).or_default().push(block);
    }
    Ok(out)
}

impl Notebooks {
    /// `(tick, run written)` of every scheduled run of a tick in `[from, to)`, of every
    /// notebook: how late ticks ran (`relais bench notebooks`).
    pub async fn scheduled_runs_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT scheduled_for, created_at FROM notebook_runs
             WHERE scheduled_for >= $1 AND scheduled_for < $2",
        )
        .bind(to_ms(from))
        .bind(to_ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    from_ms(row.try_get::<i64, _>("scheduled_for")?)?,
                    from_ms(row.try_get::<i64, _>("created_at")?)?,
                ))
            })
            .collect()
    }
}

/// A run drawn up, not yet written: its record, its batch and the batch's members.
struct Planned {
    run: NotebookRun,
    batch: Batch,
    members: Vec<(Operation, Vec<String>)>,
}

impl Planned {
    fn started(&self) -> RunStarted {
        RunStarted {
            run: self.run.clone(),
            batch: self.batch.clone(),
            members: self
                .members
                .iter()
                .map(|(op, deps)| {
                    let key = op.batch.as_ref().map(|b| b.key.clone()).unwrap_or_default();
                    (key, op.id, deps.clone())
                })
                .collect(),
        }
    }
}

/// A run of `notebook` with these blocks; `None` when no block is enabled.
fn plan(
    notebook: &Notebook,
    blocks: &[Block],
    trigger: Trigger,
    scheduled_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Planned> {
    let spec = run_spec(notebook, blocks)?;
    let batch_id = BatchId::new();
    let batch = Batch::new(
        batch_id,
        notebook.tenant_id,
        notebook.project_id,
        &spec,
        now,
    );
    let members = spec
        .members
        .iter()
        .map(|m| {
            let op = Operation::member(
                OperationId::new(),
                notebook.tenant_id,
                notebook.project_id,
                m.spec.clone(),
                BatchMembership {
                    batch_id,
                    key: m.key.clone(),
                    inputs: None,
                },
                !m.dependencies.is_empty(),
                now,
            );
            (op, m.dependencies.clone())
        })
        .collect();
    Some(Planned {
        run: NotebookRun {
            id: NotebookRunId::new(),
            notebook_id: notebook.id,
            batch_id,
            trigger,
            scheduled_for,
            created_at: now,
        },
        batch,
        members,
    })
}

fn decode_run(row: &AnyRow) -> Result<RunView> {
    let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
    let trigger = text("run_trigger")?;
    Ok(RunView {
        run: NotebookRun {
            id: parsed(text("id")?, "run id")?,
            notebook_id: parsed(text("notebook_id")?, "notebook id")?,
            batch_id: parsed(text("batch_id")?, "batch id")?,
            trigger: Trigger::parse(&trigger)
                .ok_or_else(|| StoreError::corrupt(format!("run trigger {trigger}")))?,
            scheduled_for: opt_time(row, "scheduled_for")?,
            created_at: from_ms(row.try_get::<i64, _>("created_at")?)?,
        },
        status: run_status(&text("status")?, row.try_get::<i64, _>("started")? != 0)?,
        finished_at: opt_time(row, "finished_at")?,
    })
}
