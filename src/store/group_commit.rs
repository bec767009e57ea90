//! Group commit for operation writes. Creating an operation and applying a transition
//! to one are the API's hottest writes; one transaction each would cost a commit (a WAL
//! flush on PostgreSQL) and half a dozen round trips per request. Instead, requests that
//! arrive together are written together: whoever finds no write in progress drains the
//! queue in batches, each batch one transaction with multi-row statements, and answers
//! every request once its batch is committed. A lone request is written at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::idempotency::{take_idempotency_key, OwnedIdempotencyRecord};
use super::operations::{decode_operation, insert_operations, stage, Announce, StagedEvent};
use super::{Backend, CreateOutcome, Result, Store, StoreError};
use crate::domain::event::EventDraft;
use crate::domain::ids::{OperationId, ProjectId, TenantId};
use crate::domain::operation::Operation;

/// Requests per transaction: bounded so one batch's statements stay well within the
/// backends' parameter limits and a batch never holds row locks for long.
const MAX_BATCH: usize = 256;

/// A transition to apply to one operation under its row lock (`Ok(None)`: no such
/// operation in the project; `Err`: the batch failed before reaching it). It answers
/// its caller itself, except that a change to write answers once the commit is settled.
pub(super) type Apply =
    Box<dyn FnOnce(std::result::Result<Option<&mut Operation>, &StoreError>) -> Applied + Send>;

pub(super) enum Applied {
    /// Nothing to write (no such operation, or the transition was refused).
    Nothing,
    /// Write the operation with these events, then report the commit's outcome.
    Write(Vec<EventDraft>, Settle),
}

pub(super) type Settle = Box<dyn FnOnce(std::result::Result<&Operation, &StoreError>) + Send>;

pub(super) enum Job {
    Create {
        op: Box<Operation>,
        drafts: Vec<EventDraft>,
        idempotency: Option<OwnedIdempotencyRecord>,
        reply: oneshot::Sender<Result<(CreateOutcome, Box<Operation>)>>,
    },
    Mutate {
        tenant: TenantId,
        project: ProjectId,
        id: OperationId,
        now: DateTime<Utc>,
        apply: Apply,
    },
}

pub(super) struct GroupCommit {
    queue: Mutex<Vec<Job>>,
    /// Batches in flight at once: overlapping one batch's commit with the next batch's
    /// statements keeps the database busy; SQLite has one writer, so one.
    writers: Arc<Semaphore>,
}

impl GroupCommit {
    pub(super) fn new(backend: Backend) -> Self {
        let writers = match backend {
            Backend::Postgres => 4,
            Backend::Sqlite => 1,
        };
        Self {
            queue: Mutex::new(Vec::new()),
            writers: Arc::new(Semaphore::new(writers)),
        }
    }

    fn take_batch(&self) -> Vec<Job> {
        let mut queue = self.queue.lock().expect("group-commit queue");
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }

    fn is_idle(&self) -> bool {
        self.queue.lock().expect("group-commit queue").is_empty()
    }
}

impl Store {
    /// Queues a write and makes sure some task will write it.
    pub(super) fn submit(&self, job: Job) {
        self.group_commit
            .queue
            .lock()
            .expect("group-commit queue")
            .push(job);
        self.start_writer();
    }

    fn start_writer(&self) {
        if let Ok(permit) = self.group_commit.writers.clone().try_acquire_owned() {
            let store = self.clone();
            tokio::spawn(async move { store.drain(permit).await });
        }
    }

    /// Writes batches until the queue is empty. The queue is looked at again after the
    /// permit is returned: a job queued while this writer was finishing, whose own
    /// submitter found every permit taken, is never left behind.
    async fn drain(self, mut permit: OwnedSemaphorePermit) {
        loop {
            let batch = self.group_commit.take_batch();
            if batch.is_empty() {
                drop(permit);
                if self.group_commit.is_idle() {
                    return;
                }
                match self.group_commit.writers.clone().try_acquire_owned() {
                    Ok(again) => permit = again,
                    // Another writer holds a permit and will see the queue.
                    Err(_) => return,
                }
                continue;
            }
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(&self, batch: Vec<Job>) {
        let mut creates = Vec::new();
        let mut mutations = Vec::new();
        for job in batch {
            match job {
                Job::Create {
                    op,
                    drafts,
                    idempotency,
                    reply,
                } => creates.push((op, drafts, idempotency, reply)),
                Job::Mutate {
                    tenant,
                    project,
                    id,
                    now,
                    apply,
                } => mutations.push((tenant, project, id, now, apply)),
            }
        }
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return fail_all(creates, mutations, &e.into()),
        };
        let mut events: Vec<StagedEvent> = Vec::new();
        let mut announce = Announce::default();

        // Creates first, so that a transition queued right behind its creation finds it.
        let mut created = Vec::with_capacity(creates.len());
        let mut outcomes = Vec::with_capacity(creates.len());
        for (op, drafts, idempotency, _) in &mut creates {
            let outcome = match idempotency {
                Some(record) => {
                    match take_idempotency_key(
                        &mut tx,
                        op.project_id,
                        &record.borrow(),
                        op.created_at,
                    )
                    .await
                    {
                        Ok(true) => CreateOutcome::Created,
                        Ok(false) => CreateOutcome::IdempotencyKeyTaken,
                        Err(e) => return fail_all(creates, mutations, &e),
                    }
                }
                None => CreateOutcome::Created,
            };
            if outcome == CreateOutcome::Created {
                let now = op.created_at;
                events.extend(stage(op, std::mem::take(drafts), now));
                created.push(op.as_ref().clone());
                self.note_claimable(&mut announce, op);
            }
            outcomes.push(outcome);
        }
        if let Err(e) = insert_operations(&mut tx, &created).await {
            return fail_all(creates, mutations, &e);
        }

        let mut ids: Vec<OperationId> = mutations.iter().map(|m| m.2).collect();
        ids.sort_by_key(|id| id.to_string());
        ids.dedup();
        let mut locked: HashMap<OperationId, Operation> =
            match self.lock_operations(&mut tx, &ids).await {
                Ok(ops) => ops.into_iter().map(|op| (op.id, op)).collect(),
                Err(e) => return fail_all(creates, mutations, &e),
            };
        let mut changed: HashSet<OperationId> = HashSet::new();
        let mut settles: Vec<(Operation, Settle)> = Vec::new();
        for (tenant, project, id, now, apply) in mutations {
            let Some(op) = locked
                .get_mut(&id)
                .filter(|op| op.belongs_to(tenant, project))
            else {
                let _ = apply(Ok(None));
                continue;
            };
            // On a copy: a refused transition must leave nothing behind for the next
            // request on the same operation in this batch.
            let mut candidate = op.clone();
            if let Applied::Write(drafts, settle) = apply(Ok(Some(&mut candidate))) {
                events.extend(stage(&mut candidate, drafts, now));
                *op = candidate;
                changed.insert(id);
                settles.push((op.clone(), settle));
            }
        }
        let changed_ops: Vec<Operation> = ids
            .iter()
            .filter(|id| changed.contains(id))
            .map(|id| locked[id].clone())
            .collect();
        let now = crate::clock::now();
        let written = async {
            let mut announce = announce;
            let wrote = self
                .write_changes(&mut tx, &changed_ops, events, now)
                .await?;
            announce.absorb(wrote);
            tx.commit().await?;
            Ok::<_, StoreError>(announce)
        }
        .await;
        match written {
            Ok(announce) => {
                self.after_commit(announce);
                for ((op, _, _, reply), outcome) in creates.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok((outcome, op)));
                }
                for (op, settle) in settles {
                    settle(Ok(&op));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a grouped write failed; its requests get the error");
                for (_, _, _, reply) in creates {
                    let _ = reply.send(Err(e.shared()));
                }
                for (_, settle) in settles {
                    settle(Err(&e));
                }
            }
        }
    }

    async fn lock_operations(
        &self,
        tx: &mut Transaction<'static, Any>,
        ids: &[OperationId],
    ) -> Result<Vec<Operation>> {
        let mut ops = Vec::with_capacity(ids.len());
        for chunk in super::sized_chunks(ids, MAX_BATCH) {
            // In id order, so that concurrent batches lock their rows in the same order
            // and cannot deadlock on one another.
            let sql = format!(
                "SELECT {} FROM operations WHERE id IN ({}) ORDER BY id{}",
                super::operations::COLUMNS,
                super::placeholders(1, chunk.len()),
                self.backend.for_update()
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.db());
            }
            for row in query.fetch_all(&mut **tx).await? {
                ops.push(decode_operation(&row)?);
            }
        }
        Ok(ops)
    }
}

type CreateJob = (
    Box<Operation>,
    Vec<EventDraft>,
    Option<OwnedIdempotencyRecord>,
    oneshot::Sender<Result<(CreateOutcome, Box<Operation>)>>,
);
type MutateJob = (TenantId, ProjectId, OperationId, DateTime<Utc>, Apply);

/// The batch could not be written: every request in it gets the error, none is applied.
fn fail_all(creates: Vec<CreateJob>, mutations: Vec<MutateJob>, error: &StoreError) {
    tracing::warn!(error = %error, "a grouped write failed; its requests get the error");
    for (_, _, _, reply) in creates {
        let _ = reply.send(Err(error.shared()));
    }
    for (.., apply) in mutations {
        let _ = apply(Err(error));
    }
}
