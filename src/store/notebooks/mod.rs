//! Notebooks, their blocks and their runs. A change is made under the notebook row's
//! lock (`FOR UPDATE`): the rules that decide it (`domain::notebook`) see the notebook
//! and its blocks as they are, so two requests cannot add a cycle between them, and an
//! update cannot write back a tick the scheduler has just claimed. Runs are batches,
//! written through [`Batches`] in the transaction that records the run ([`runs`]).

mod runs;

pub(super) use runs::ON_A_SCHEDULE;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::idempotency::{take_idempotency_key, IdempotencyKey, IdempotencyRecord};
use super::signals::Signals;
use super::{from_json, from_ms, to_json, to_ms, Backend, Batches, Result, StoreError};
use crate::domain::batch::BatchStatus;
use crate::domain::ids::{BlockId, NotebookId, ProjectId, TenantId};
use crate::domain::notebook::{Block, BlockStats, Notebook, Schedule};
use crate::domain::operation::OperationStatus;

pub use runs::{RunPage, RunStarted, RunView, SchedulePass, StartRunError};

const NOTEBOOK_COLUMNS: &str = "id, tenant_id, project_id, name, description, schedule, \
    timezone, schedule_paused, notifications, callbacks, failure_policy, next_run_at, \
    last_run_at, created_at, updated_at, created_by, modified_by";
const BLOCK_COLUMNS: &str = "id, notebook_id, block_type, title, description, block_order, \
    configuration, dependencies, disabled, created_at, updated_at, created_by, modified_by";

/// A change the domain refused, or the store failing.
#[derive(Debug)]
pub enum ChangeError<E> {
    Refused(E),
    Store(StoreError),
}

impl<E> From<StoreError> for ChangeError<E> {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl<E> From<sqlx::Error> for ChangeError<E> {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What a create that takes an `Idempotency-Key` did.
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    /// Another request with the same key got there first; nothing was written.
    KeyTaken,
}

pub struct NotebookPage {
    pub notebooks: Vec<Notebook>,
    pub has_next_page: bool,
}

/// Notebooks, blocks, runs, and the scheduler's passes.
#[derive(Clone)]
pub struct Notebooks {
    pool: AnyPool,
    backend: Backend,
    batches: Batches,
    signals: Signals,
}

impl Notebooks {
    pub(super) fn new(pool: AnyPool, backend: Backend, batches: Batches, signals: Signals) -> Self {
        Notebooks {
            pool,
            backend,
            batches,
            signals,
        }
    }

    /// Stores a new notebook, and the key and answer of its request if it had one.
    pub async fn create(
        &self,
        notebook: &Notebook,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<Written<()>> {
        let mut tx = self.pool.begin().await?;
        if let Some(record) = idempotency {
            let at = notebook.created_at;
            if !take_idempotency_key(&mut tx, notebook.project_id, &record, at).await? {
                return Ok(Written::KeyTaken);
            }
        }
        write_notebook(&mut tx, notebook, true).await?;
        tx.commit().await?;
        Ok(Written::Done(()))
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
    ) -> Result<Option<Notebook>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTEBOOK_COLUMNS} FROM notebooks WHERE id = $1 AND project_id = $2 AND tenant_id = $3"
        ))
        .bind(id.db())
        .bind(project.db())
        .bind(tenant.db())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_notebook).transpose()
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        project: ProjectId,
        page: u32,
        page_size: u32,
    ) -> Result<NotebookPage> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTEBOOK_COLUMNS} FROM notebooks WHERE project_id = $1 AND tenant_id = $2
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(project.db())
        .bind(tenant.db())
        .bind(page_size as i64 + 1)
        .bind((page.max(1) as i64 - 1) * page_size as i64)
        .fetch_all(&self.pool)
        .await?;
        let has_next_page = rows.len() > page_size as usize;
        let notebooks = rows
            .iter()
            .take(page_size as usize)
            .map(decode_notebook)
            .collect::<Result<_>>()?;
        Ok(NotebookPage {
            notebooks,
            has_next_page,
        })
    }

    /// Applies `change` to the notebook under its lock and writes it; `None` if there is
    /// no such notebook in the project.
    pub async fn update<E>(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
        change: impl FnOnce(&mut Notebook) -> Result<(), E>,
    ) -> Result<Option<Notebook>, ChangeError<E>> {
        let mut tx = self.pool.begin().await?;
        let Some(mut notebook) = self.lock(&mut tx, tenant, project, id).await? else {
            return Ok(None);
        };
        change(&mut notebook).map_err(ChangeError::Refused)?;
        write_notebook(&mut tx, &notebook, false).await?;
        tx.commit().await?;
        Ok(Some(notebook))
    }

    /// Removes the notebook, its blocks and its runs' records; the runs' batches go on.
    pub async fn delete(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM notebooks WHERE id = $1 AND project_id = $2 AND tenant_id = $3",
        )
        .bind(id.db())
        .bind(project.db())
        .bind(tenant.db())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn lock(
        &self,
        tx: &mut Transaction<'static, Any>,
        tenant: TenantId,
        project: ProjectId,
        id: NotebookId,
    ) -> Result<Option<Notebook>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTEBOOK_COLUMNS} FROM notebooks WHERE id = $1 AND project_id = $2 AND tenant_id = $3{}",
            self.backend.for_update()
        ))
        .bind(id.db())
        .bind(project.db())
        .bind(tenant.db())
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(decode_notebook).transpose()
    }

    /// The notebook's blocks, in block order.
    pub async fn blocks(&self, notebook: NotebookId) -> Result<Vec<(Block, BlockStats)>> {
        let blocks = blocks_of(&mut *self.pool.acquire().await?, notebook).await?;
        let mut out = Vec::with_capacity(blocks.len());
        for block in blocks {
            let stats = self.stats(notebook, block.id).await?;
            out.push((block, stats));
        }
        Ok(out)
    }

    /// Adds the block that `make` draws from the notebook's other blocks, under the
    /// notebook's lock. `None` if there is no such notebook in the project. With an
    /// `Idempotency-Key`, `answer` draws up the answer stored with it.
    pub async fn add_block<E>(
        &self,
        tenant: TenantId,
        project: ProjectId,
        notebook: NotebookId,
        make: impl FnOnce(&[Block]) -> Result<Block, E>,
        idempotency: Option<IdempotencyKey>,
        answer: impl FnOnce(&Block) -> String,
    ) -> Result<Option<Written<Block>>, ChangeError<E>> {
        let mut tx = self.pool.begin().await?;
        if self
            .lock(&mut tx, tenant, project, notebook)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let others = blocks_of(&mut tx, notebook).await?;
        let block = make(&others).map_err(ChangeError::Refused)?;
        if let Some(key) = &idempotency {
            let response = answer(&block);
            let record = key.record(&response);
            if !take_idempotency_key(&mut tx, project, &record, block.created_at).await? {
                return Ok(Some(Written::KeyTaken));
            }
        }
        write_block(&mut tx, &block, true).await?;
        tx.commit().await?;
        Ok(Some(Written::Done(block)))
    }

    /// A block of a notebook of the project, with its statistics.
    pub async fn get_block(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BlockId,
    ) -> Result<Option<(Block, BlockStats)>> {
        let Some(block) = self.find_block(tenant, project, id).await? else {
            return Ok(None);
        };
        let stats = self.stats(block.notebook_id, block.id).await?;
        Ok(Some((block, stats)))
    }

    async fn find_block(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BlockId,
    ) -> Result<Option<Block>> {
        let columns = prefixed(BLOCK_COLUMNS, "b");
        let row = sqlx::query(&format!(
            "SELECT {columns} FROM notebook_blocks b JOIN notebooks n ON n.id = b.notebook_id
             WHERE b.id = $1 AND n.project_id = $2 AND n.tenant_id = $3"
        ))
        .bind(id.db())
        .bind(project.db())
        .bind(tenant.db())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_block).transpose()
    }

    /// Applies `change` to the block (given the notebook's other blocks) under the
    /// notebook's lock. `None` if there is no such block in the project.
    pub async fn update_block<E>(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BlockId,
        change: impl FnOnce(&mut Block, &[Block]) -> Result<(), E>,
    ) -> Result<Option<(Block, BlockStats)>, ChangeError<E>> {
        let Some(found) = self.find_block(tenant, project, id).await? else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await?;
        if self
            .lock(&mut tx, tenant, project, found.notebook_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let mut blocks = blocks_of(&mut tx, found.notebook_id).await?;
        let Some(at) = blocks.iter().position(|b| b.id == id) else {
            return Ok(None);
        };
        let mut block = blocks.remove(at);
        change(&mut block, &blocks).map_err(ChangeError::Refused)?;
        write_block(&mut tx, &block, false).await?;
        tx.commit().await?;
        let stats = self.stats(block.notebook_id, block.id).await?;
        Ok(Some((block, stats)))
    }

    /// Removes the block; the blocks that depended on it no longer do. Its history (its
    /// members in past runs) no longer counts for any block.
    pub async fn delete_block(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: BlockId,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(found) = self.find_block(tenant, project, id).await? else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        if self
            .lock(&mut tx, tenant, project, found.notebook_id)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM notebook_blocks WHERE id = $1")
            .bind(id.db())
            .execute(&mut *tx)
            .await?;
        for mut other in blocks_of(&mut tx, found.notebook_id).await? {
            if other.dependencies.contains(&id) {
                other.dependencies.retain(|d| *d != id);
                other.updated_at = now;
                other.modified_by = by.to_owned();
                write_block(&mut tx, &other, false).await?;
            }
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// What the block's members in its notebook's runs amount to.
    async fn stats(&self, notebook: NotebookId, block: BlockId) -> Result<BlockStats> {
        let rows = sqlx::query(
            "SELECT o.status, o.finished_at FROM notebook_runs r
             JOIN batch_members m ON m.batch_id = r.batch_id AND m.member_key = $2
             JOIN operations o ON o.id = m.operation_id
             WHERE r.notebook_id = $1",
        )
        .bind(notebook.db())
        .bind(crate::domain::notebook::member_key(block))
        .fetch_all(&self.pool)
        .await?;
        let members = rows
            .iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let status = OperationStatus::parse(&status)
                    .ok_or_else(|| StoreError::corrupt(format!("status {status}")))?;
                let ended = row
                    .try_get::<Option<i64>, _>("finished_at")?
                    .map(from_ms)
                    .transpose()?;
                Ok((status, ended))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BlockStats::from_members(members))
    }
}

fn prefixed(columns: &str, table: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn blocks_of(conn: &mut sqlx::AnyConnection, notebook: NotebookId) -> Result<Vec<Block>> {
    let rows = sqlx::query(&format!(
        "SELECT {BLOCK_COLUMNS} FROM notebook_blocks WHERE notebook_id = $1
         ORDER BY block_order, created_at, id"
    ))
    .bind(notebook.db())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(decode_block).collect()
}

async fn write_notebook(
    tx: &mut Transaction<'static, Any>,
    n: &Notebook,
    insert: bool,
) -> Result<()> {
    let sql = super::write_row_sql("notebooks", NOTEBOOK_COLUMNS, insert);
    sqlx::query(&sql)
        .bind(n.id.db())
        .bind(n.tenant_id.db())
        .bind(n.project_id.db())
        .bind(n.name.clone())
        .bind(n.description.clone())
        .bind(n.schedule.as_ref().map(|s| s.expression().to_owned()))
        .bind(n.timezone.clone())
        .bind(n.schedule_paused as i64)
        .bind(to_json(&n.notifications))
        .bind(to_json(&n.callbacks))
        .bind(to_json(&n.failure_policy))
        .bind(n.next_run_at.map(to_ms))
        .bind(n.last_run_at.map(to_ms))
        .bind(to_ms(n.created_at))
        .bind(to_ms(n.updated_at))
        .bind(n.created_by.clone())
        .bind(n.modified_by.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn write_block(tx: &mut Transaction<'static, Any>, b: &Block, insert: bool) -> Result<()> {
    let sql = super::write_row_sql("notebook_blocks", BLOCK_COLUMNS, insert);
    let dependencies: Vec<String> = b.dependencies.iter().map(BlockId::db).collect();
    sqlx::query(&sql)
        .bind(b.id.db())
        .bind(b.notebook_id.db())
        .bind(b.block_type.clone())
        .bind(b.title.clone())
        .bind(b.description.clone())
        .bind(b.order as i64)
        .bind(b.configuration.clone())
        .bind(to_json(&dependencies))
        .bind(b.disabled as i64)
        .bind(to_ms(b.created_at))
        .bind(to_ms(b.updated_at))
        .bind(b.created_by.clone())
        .bind(b.modified_by.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn parsed<T: std::str::FromStr>(text: String, what: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

fn opt_time(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_ms)
        .transpose()
}

fn decode_notebook(row: &AnyRow) -> Result<Notebook> {
    let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
    let int = |c: &str| -> Result<i64> { Ok(row.try_get::<i64, _>(c)?) };
    let timezone = text("timezone")?;
    let schedule = row
        .try_get::<Option<String>, _>("schedule")?
        .map(|expression| {
            Schedule::parse(&expression, &timezone)
                .map_err(|e| StoreError::corrupt(format!("schedule: {e}")))
        })
        .transpose()?;
    Ok(Notebook {
        id: parsed(text("id")?, "notebook id")?,
        tenant_id: parsed(text("tenant_id")?, "tenant id")?,
        project_id: parsed(text("project_id")?, "project id")?,
        name: text("name")?,
        description: row.try_get("description")?,
        schedule,
        timezone,
        schedule_paused: int("schedule_paused")? != 0,
        notifications: from_json(&text("notifications")?, "notifications")?,
        callbacks: from_json(&text("callbacks")?, "callbacks")?,
        failure_policy: from_json(&text("failure_policy")?, "failure_policy")?,
        next_run_at: opt_time(row, "next_run_at")?,
        last_run_at: opt_time(row, "last_run_at")?,
        created_at: from_ms(int("created_at")?)?,
        updated_at: from_ms(int("updated_at")?)?,
        created_by: text("created_by")?,
        modified_by: text("modified_by")?,
    })
}

fn decode_block(row: &AnyRow) -> Result<Block> {
    let text = |c: &str| -> Result<String> { Ok(row.try_get::<String, _>(c)?) };
    let int = |c: &str| -> Result<i64> { Ok(row.try_get::<i64, _>(c)?) };
    let dependencies: Vec<String> = from_json(&text("dependencies")?, "dependencies")?;
    Ok(Block {
        id: parsed(text("id")?, "block id")?,
        notebook_id: parsed(text("notebook_id")?, "notebook id")?,
        block_type: text("block_type")?,
        title: text("title")?,
        description: row.try_get("description")?,
        order: int("block_order")? as i32,
        configuration: text("configuration")?,
        dependencies: dependencies
            .into_iter()
            .map(|d| parsed(d, "dependency"))
            .collect::<Result<_>>()?,
        disabled: int("disabled")? != 0,
        created_at: from_ms(int("created_at")?)?,
        updated_at: from_ms(int("updated_at")?)?,
        created_by: text("created_by")?,
        modified_by: text("modified_by")?,
    })
}

/// A batch's status as a run shows it: the stored one once final, else whether a member
/// has started.
fn run_status(stored: &str, started: bool) -> Result<BatchStatus> {
    let status = BatchStatus::parse(stored)
        .ok_or_else(|| StoreError::corrupt(format!("batch status {stored}")))?;
    Ok(match status {
        s if s.is_terminal() => s,
        _ if started => BatchStatus::Running,
        _ => BatchStatus::Initiated,
    })
}
