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

use super::events::StagedEvent;
use super::idempotency::{take_idempotency_key, OwnedIdempotencyRecord};
use super::operations::{decode_operation, insert_operations, push_insert_operations, stage};
use super::signals::Announce;
use super::writes::Writes;
use super::{Backend, CreateOutcome, Operations, Result, StoreError};
use crate::domain::event::EventDraft;
use crate::domain::ids::{OperationId, ProjectId, TenantId};
use crate::domain::operation::Operation;
use crate::trace::Request;

/// Requests per transaction: bounded so one batch's statements stay well within the
/// backends' parameter limits and a batch never holds row locks for long.
const MAX_BATCH: usize = 256;

/// A transition to apply to one operation under its row lock. It may be applied more
/// than once: when a grouped write fails, its requests are written again in smaller
/// groups (see [`Operations::write_batch`]), each time to the row as it is then.
pub(super) trait Transition: Send {
    /// Applies the change to `op`; the events it causes, or `None` when it is refused
    /// (the refusal is kept for [`Transition::answer`]).
    fn apply(&mut self, op: &mut Operation) -> Option<Vec<EventDraft>>;

    /// Answers the caller once: with the operation as committed (or, after a refusal,
    /// with the refusal), `Ok(None)` when the project has no such operation, or the
    /// store's failure.
    fn answer(self: Box<Self>, outcome: std::result::Result<Option<&Operation>, &StoreError>);
}

pub(super) enum Job {
    Create {
        op: Box<Operation>,
        drafts: Vec<EventDraft>,
        idempotency: Option<OwnedIdempotencyRecord>,
        /// The request's, taken when it was queued: the writer runs in another task.
        request: Option<Request>,
        reply: oneshot::Sender<Result<(CreateOutcome, Box<Operation>)>>,
    },
    Mutate {
        tenant: TenantId,
        project: ProjectId,
        id: OperationId,
        now: DateTime<Utc>,
        request: Option<Request>,
        transition: Box<dyn Transition>,
    },
}

impl Job {
    fn fail(self, error: &StoreError) {
        match self {
            Job::Create { reply, .. } => {
                let _ = reply.send(Err(error.shared()));
            }
            Job::Mutate { transition, .. } => transition.answer(Err(error)),
        }
    }
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

impl Operations {
    /// Queues a write and makes sure some task will write it.
    pub(super) fn submit(&self, job: Job) {
        self.writer
            .queue
            .lock()
            .expect("group-commit queue")
            .push(job);
        self.start_writer();
    }

    fn start_writer(&self) {
        if let Ok(permit) = self.writer.writers.clone().try_acquire_owned() {
            let operations = self.clone();
            tokio::spawn(async move {
                // A task spawned by a task runs next on its thread, ahead of the ones that
                // were ready already: writing at once would take this job alone, while
                // the executors or requests queued behind it submit theirs a moment
                // later. Yielding lets them queue first, into the same transaction.
                tokio::task::yield_now().await;
                operations.drain(permit).await
            });
        }
    }

    /// Writes batches until the queue is empty. The queue is looked at again after the
    /// permit is returned: a job queued while this writer was finishing, whose own
    /// submitter found every permit taken, is never left behind.
    async fn drain(self, mut permit: OwnedSemaphorePermit) {
        loop {
            let batch = self.writer.take_batch();
            if batch.is_empty() {
                drop(permit);
                if self.writer.is_idle() {
                    return;
                }
                match self.writer.writers.clone().try_acquire_owned() {
                    Ok(again) => permit = again,
                    // Another writer holds a permit and will see the queue.
                    Err(_) => return,
                }
                continue;
            }
            self.write_batch(batch).await;
        }
    }

    /// Writes a group of requests in one transaction. If it fails for a reason that is
    /// not the database being unreachable, one request may be at fault (text the
    /// database refuses, a project deleted meanwhile…): the group is split in two and
    /// each half written on its own, down to single requests, so every request gets its
    /// own answer and a bad one never fails the others. One bad request among n costs
    /// about 2·log2(n) extra transactions, not n.
    async fn write_batch(&self, batch: Vec<Job>) {
        let mut pending = vec![batch];
        while let Some(mut group) = pending.pop() {
            match self.try_write(&mut group).await {
                Ok(mut written) => {
                    self.signals
                        .after_commit(std::mem::take(&mut written.announce));
                    written.answer(group);
                }
                Err(e) if group.len() > 1 && !e.is_unavailable() => {
                    tracing::warn!(error = %e, requests = group.len(), request_ids = ?request_ids(&group), "a grouped write failed; writing its requests in smaller groups");
                    let second = group.split_off(group.len() / 2);
                    // Popped in queue order: the first half is written first.
                    pending.push(second);
                    pending.push(group);
                }
                Err(e) => {
                    tracing::warn!(error = %e, requests = group.len(), request_ids = ?request_ids(&group), "a write failed; its requests get the error");
                    for job in group {
                        job.fail(&e);
                    }
                }
            }
        }
    }

    /// One transaction for `group`. The jobs are left as they were, so that the group
    /// can be written again if this fails; what to answer is returned once committed.
    async fn try_write(&self, group: &mut [Job]) -> Result<Written> {
        // Taken out first: the jobs themselves (which hold callers' closures) are not
        // kept across the awaits below.
        type Create = (
            Operation,
            Vec<EventDraft>,
            Option<OwnedIdempotencyRecord>,
            Option<Request>,
        );
        let creates: Vec<Create> = group
            .iter()
            .filter_map(|job| match job {
                Job::Create {
                    op,
                    drafts,
                    idempotency,
                    request,
                    ..
                } => Some((
                    op.as_ref().clone(),
                    drafts.clone(),
                    idempotency.clone(),
                    request.clone(),
                )),
                Job::Mutate { .. } => None,
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut events: Vec<StagedEvent> = Vec::new();
        let mut announce = Announce::default();

        // Creates first, so that a transition queued right behind its creation finds it.
        let mut created = Vec::new();
        let mut outcomes = Vec::new();
        for (mut staged, drafts, idempotency, request) in creates {
            let outcome = match idempotency {
                Some(record) => {
                    let key = &record.borrow();
                    match take_idempotency_key(&mut tx, staged.project_id, key, staged.created_at)
                        .await?
                    {
                        true => CreateOutcome::Created,
                        false => CreateOutcome::IdempotencyKeyTaken,
                    }
                }
                None => CreateOutcome::Created,
            };
            if outcome == CreateOutcome::Created {
                let now = staged.created_at;
                events.extend(stage(&mut staged, drafts, now, request.as_ref()));
                self.signals
                    .note_claimable(&mut announce, &staged.operation_type);
                created.push(staged.clone());
            }
            outcomes.push((outcome, staged));
        }
        // New rows go out with the group's other writes, in one statement on PostgreSQL,
        // unless a transition of the group must first find them under its lock.
        let mut writes = Writes::new(self.backend);
        if group.iter().any(|job| matches!(job, Job::Mutate { .. })) {
            insert_operations(&mut tx, self.backend, &created).await?;
        } else {
            push_insert_operations(&mut writes, &created);
        }

        let mut ids: Vec<OperationId> = group
            .iter()
            .filter_map(|job| match job {
                Job::Mutate { id, .. } => Some(*id),
                Job::Create { .. } => None,
            })
            .collect();
        ids.sort_by_key(|id| id.to_string());
        ids.dedup();
        let mut locked: HashMap<OperationId, Operation> = self
            .lock_operations(&mut tx, &ids)
            .await?
            .into_iter()
            .map(|op| (op.id, op))
            .collect();
        let mut changed: HashSet<OperationId> = HashSet::new();
        // Per job, in order: what its transition found (`None`: no such operation).
        let mut found: Vec<Option<Operation>> = Vec::new();
        for job in group.iter_mut() {
            let Job::Mutate {
                tenant,
                project,
                id,
                now,
                request,
                transition,
            } = job
            else {
                continue;
            };
            let Some(op) = locked
                .get_mut(id)
                .filter(|op| op.belongs_to(*tenant, *project))
            else {
                found.push(None);
                continue;
            };
            // On a copy: a refused transition must leave nothing behind for the next
            // request on the same operation in this group.
            let mut candidate = op.clone();
            if let Some(drafts) = transition.apply(&mut candidate) {
                events.extend(stage(&mut candidate, drafts, *now, request.as_ref()));
                *op = candidate;
                changed.insert(*id);
            }
            found.push(Some(op.clone()));
        }
        let changed_ops: Vec<Operation> = ids
            .iter()
            .filter(|id| changed.contains(id))
            .map(|id| locked[id].clone())
            .collect();
        let now = crate::clock::now();
        announce.absorb(
            self.write_changes_with(&mut tx, writes, &changed_ops, &events, now)
                .await?,
        );
        tx.commit().await?;
        Ok(Written {
            announce,
            created: outcomes,
            found,
        })
    }

    async fn lock_operations(
        &self,
        tx: &mut Transaction<'static, Any>,
        ids: &[OperationId],
    ) -> Result<Vec<Operation>> {
        let mut ops = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH) {
            let ids: Vec<String> = chunk.iter().map(|id| id.db()).collect();
            let (condition, binds) = super::one_of(self.backend, "id", 1, &ids);
            // In id order, so that concurrent batches lock their rows in the same order
            // and cannot deadlock on one another.
            let sql = format!(
                "SELECT {} FROM operations WHERE {condition} ORDER BY id{}",
                super::operations::COLUMNS,
                self.backend.for_update()
            );
            let mut query = sqlx::query(&sql);
            for value in binds {
                query = query.bind(value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                ops.push(decode_operation(&row)?);
            }
        }
        Ok(ops)
    }
}

/// The ids of the requests in a group, for the lines logged about it: the writer runs
/// in its own task, outside the requests' spans.
fn request_ids(group: &[Job]) -> Vec<&str> {
    group
        .iter()
        .filter_map(|job| match job {
            Job::Create { request, .. } | Job::Mutate { request, .. } => {
                request.as_ref().map(|r| &*r.id)
            }
        })
        .collect()
}

/// What a committed group answers: each create's outcome and row, and each
/// transition's operation as it stood after the group (in job order).
struct Written {
    announce: Announce,
    created: Vec<(CreateOutcome, Operation)>,
    found: Vec<Option<Operation>>,
}

impl Written {
    fn answer(self, group: Vec<Job>) {
        let mut created = self.created.into_iter();
        let mut found = self.found.into_iter();
        for job in group {
            match job {
                Job::Create { reply, .. } => {
                    let (outcome, op) = created.next().expect("one outcome per create");
                    let _ = reply.send(Ok((outcome, Box::new(op))));
                }
                Job::Mutate { transition, .. } => {
                    let op = found.next().expect("one result per transition");
                    transition.answer(Ok(op.as_ref()));
                }
            }
        }
    }
}
