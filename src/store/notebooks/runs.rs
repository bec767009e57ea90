//! A notebook's runs: each one batch, written with the run's record in one transaction
//! under the notebook's lock, by hand or for a cron tick. The scheduler's pass claims due
//! notebooks with `FOR UPDATE SKIP LOCKED` (so replicas share them), runs the ticks
//! `domain::notebook::Schedule::due` picks and advances `next_run_at` in the same
//! transaction; the unique index on `(notebook_id, scheduled_for)` makes a second run of
//! one tick impossible whatever happens.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{
    blocks_of, decode_notebook, opt_time, parsed, run_status, Notebooks, NOTEBOOK_COLUMNS,
};
use crate::clock;
use crate::domain::batch::{Batch, BatchStatus};
use crate::domain::ids::{BatchId, NotebookId, NotebookRunId, OperationId, ProjectId, TenantId};
use crate::domain::notebook::schedule::DOWN_AFTER_MS;
use crate::domain::notebook::{run_spec, Block, Notebook, NotebookRun, Trigger};
use crate::domain::operation::{BatchMembership, Operation};
use crate::store::signals::Announce;
use crate::store::{from_ms, to_ms, Result, StoreError};

/// Notebooks whose ticks one transaction of a pass claims.
const NOTEBOOKS_PER_TRANSACTION: i64 = 64;

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
    /// Runs the notebook now: one batch of its enabled blocks.
    pub async fn run(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
        now: DateTime<Utc>,
    ) -> Result<RunStarted, StartRunError> {
        let mut tx = self.pool.begin().await?;
        let Some(notebook) = self.lock(&mut tx, tenant, project, id).await? else {
            return Err(StartRunError::NotFound);
        };
        let blocks = blocks_of(&mut tx, id).await?;
        let (started, announce) = self
            .start(&mut tx, &notebook, &blocks, Trigger::Manual, None, now)
            .await?
            .ok_or(StartRunError::Empty)?;
        sqlx::query("UPDATE notebooks SET last_run_at = $2 WHERE id = $1")
            .bind(id.db())
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(started)
    }

    /// Writes a run of `notebook` and its batch; `None` when no block is enabled.
    async fn start(
        &self,
        tx: &mut Transaction<'static, Any>,
        notebook: &Notebook,
        blocks: &[Block],
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<(RunStarted, Announce)>> {
        let Some(spec) = run_spec(notebook, blocks) else {
            return Ok(None);
        };
        let batch_id = BatchId::new();
        let mut batch = Batch::new(
            batch_id,
            notebook.tenant_id,
            notebook.project_id,
            &spec,
            now,
        );
        let members: Vec<(Operation, Vec<String>)> = spec
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
        let shown = members
            .iter()
            .zip(&spec.members)
            .map(|((op, deps), m)| (m.key.clone(), op.id, deps.clone()))
            .collect();
        let announce = self.batches.create_in(tx, &mut batch, members).await?;
        let run = NotebookRun {
            id: NotebookRunId::new(),
            notebook_id: notebook.id,
            batch_id,
            trigger,
            scheduled_for,
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO notebook_runs (id, notebook_id, batch_id, run_trigger, scheduled_for, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run.id.db())
        .bind(notebook.id.db())
        .bind(batch_id.db())
        .bind(trigger.as_str())
        .bind(scheduled_for.map(to_ms))
        .bind(to_ms(now))
        .execute(&mut **tx)
        .await?;
        Ok(Some((
            RunStarted {
                run,
                batch,
                members: shown,
            },
            announce,
        )))
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO scheduler_clock (id, seen_at, up_since) VALUES (1, $1, $1)
             ON CONFLICT (id) DO UPDATE SET
               up_since = CASE WHEN $1 - scheduler_clock.seen_at > $2 THEN $1
                               ELSE scheduler_clock.up_since END,
               seen_at = CASE WHEN $1 > scheduler_clock.seen_at THEN $1
                              ELSE scheduler_clock.seen_at END",
        )
        .bind(now)
        .bind(DOWN_AFTER_MS)
        .execute(&mut *tx)
        .await?;
        let up_since: i64 = sqlx::query("SELECT up_since FROM scheduler_clock WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("up_since")?;
        tx.commit().await?;
        from_ms(up_since)
    }

    /// One scheduler pass: claims the notebooks whose next tick has come (those another
    /// replica holds are skipped, not waited for), runs their due ticks and moves each
    /// one's next tick on.
    pub async fn schedule(&self, now: DateTime<Utc>) -> Result<SchedulePass> {
        let up_since = self.cluster_up_since(now).await?;
        let mut pass = SchedulePass::default();
        loop {
            let (claimed, announce) = self.schedule_some(now, up_since, &mut pass).await?;
            self.signals.after_commit(announce);
            if claimed < NOTEBOOKS_PER_TRANSACTION as usize {
                break;
            }
        }
        let next: Option<i64> = sqlx::query(
            "SELECT MIN(next_run_at) AS next FROM notebooks
             WHERE next_run_at IS NOT NULL AND schedule_paused = 0",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("next")?;
        pass.next_due = next.map(from_ms).transpose()?;
        Ok(pass)
    }

    async fn schedule_some(
        &self,
        now: DateTime<Utc>,
        up_since: DateTime<Utc>,
        pass: &mut SchedulePass,
    ) -> Result<(usize, Announce)> {
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
        let mut announce = Announce::default();
        for row in &rows {
            let notebook = decode_notebook(row)?;
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
            let mut last_run = notebook.last_run_at;
            if !due.run.is_empty() {
                let blocks = blocks_of(&mut tx, notebook.id).await?;
                // Stamped when written, not when the pass began: a pass of many
                // notebooks writes its runs over several transactions.
                let created = clock::now().max(now);
                for tick in &due.run {
                    if let Some((_, more)) = self
                        .start(
                            &mut tx,
                            &notebook,
                            &blocks,
                            Trigger::Schedule,
                            Some(*tick),
                            created,
                        )
                        .await?
                    {
                        announce.absorb(more);
                        pass.runs += 1;
                        last_run = Some(created);
                    }
                }
            }
            sqlx::query("UPDATE notebooks SET next_run_at = $2, last_run_at = $3 WHERE id = $1")
                .bind(notebook.id.db())
                .bind(due.next.map(to_ms))
                .bind(last_run.map(to_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((rows.len(), announce))
    }
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
