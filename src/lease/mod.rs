//! The leased transitions of an operation, one path for every kind of worker: pull
//! workers (through the HTTP handlers), push workers (holding the request open, or
//! reporting later with their callback token) and built-in executors. Each transition is
//! "load under the row lock, apply one domain change, write it with its events" through
//! the store's group commit; this module adds what every caller shares: the lease's time
//! to live, the retry backoff, the long-poll wait for work ([`Leases::wait_for_work`]),
//! a lease held by this process while the work goes on ([`HeldLease`]), and the
//! [`WorkOrder`] that hands a pulled or pushed attempt to its worker.

mod held;
mod wait;
mod work_order;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock;
use crate::domain::event::EventDraft;
use crate::domain::ids::{LeaseToken, OperationId, ProjectId, TenantId};
use crate::domain::operation::{
    Backoff, Operation, OperationError, OperationResult, OperationStatus, ProgressReport,
    TransitionError,
};
use crate::store::{Operations, PushWorkers, Signals, StoreError};

pub use held::{HeldLease, KeepAlive, Stopped};
pub use work_order::WorkOrder;

/// The wait before an operation's next attempt, with fresh jitter (`scale` multiplies
/// the policy's delays: 1 in production).
pub fn backoff(scale: f64) -> Backoff {
    Backoff {
        jitter: rand::random::<f64>(),
        scale,
    }
}

/// The operation a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationRef {
    pub tenant: TenantId,
    pub project: ProjectId,
    pub id: OperationId,
}

impl OperationRef {
    pub fn of(op: &Operation) -> Self {
        OperationRef {
            tenant: op.tenant_id,
            project: op.project_id,
            id: op.id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("operation not found")]
    NotFound,
    /// The token does not hold the lease (it expired and went to another worker, or the
    /// operation ended): nothing was written.
    #[error(transparent)]
    Refused(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The answer to a progress report, which is also the heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub status: OperationStatus,
    /// The operation was cancelled or timed out: the worker must stop.
    pub stop_requested: bool,
    /// When the renewed lease runs out; none once the worker must stop.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// An attempt that failed: retried under the operation's policy when `retryable`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: OperationError,
    pub retryable: bool,
}

/// Where a reported failure left the operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub status: OperationStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    /// When the next attempt may start, if there is one.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The leased transitions, with the settings every worker's lease shares.
#[derive(Clone)]
pub struct Leases {
    operations: Operations,
    /// Their types are never handed to pull workers.
    push_workers: PushWorkers,
    /// Pull workers wait for work on it.
    signals: Signals,
    /// Types that built-in executors run: never handed to pull workers.
    builtin_types: Arc<[String]>,
    lease_ttl: Duration,
    retry_time_scale: f64,
}

impl Leases {
    pub fn new(
        operations: Operations,
        push_workers: PushWorkers,
        signals: Signals,
        builtin_types: Vec<String>,
        lease_ttl: Duration,
        retry_time_scale: f64,
    ) -> Self {
        Leases {
            operations,
            push_workers,
            signals,
            builtin_types: builtin_types.into(),
            lease_ttl,
            retry_time_scale,
        }
    }

    /// How long a lease lasts without a heartbeat.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Records a worker's progress and renews its lease; the answer says whether to stop.
    pub async fn progress(
        &self,
        operation: OperationRef,
        token: LeaseToken,
        report: ProgressReport,
    ) -> Result<Heartbeat, LeaseError> {
        let now = clock::now();
        let ttl = self.lease_ttl;
        let op = self
            .mutate(operation, now, move |op| {
                op.report_progress(now, token.as_str(), report.clone(), ttl)
            })
            .await?;
        let stop_requested = op.stop_requested();
        Ok(Heartbeat {
            status: op.status,
            stop_requested,
            lease_expires_at: if stop_requested {
                None
            } else {
                op.lease.as_ref().map(|l| l.expires_at)
            },
        })
    }

    /// Ends the attempt with its result. Completing again with the same lease (the worker
    /// never saw the answer) changes nothing and gets the same answer.
    pub async fn complete(
        &self,
        operation: OperationRef,
        token: LeaseToken,
        result: OperationResult,
    ) -> Result<OperationStatus, LeaseError> {
        let now = clock::now();
        let op = self
            .mutate(operation, now, move |op| {
                op.complete(now, token.as_str(), result.clone())
            })
            .await?;
        Ok(op.status)
    }

    /// Ends the attempt as failed: a retryable failure with attempts left backs off
    /// before the next attempt, any other fails the operation for good. The same failure
    /// reported again is answered as the first was, even if the operation moved on since.
    pub async fn fail(
        &self,
        operation: OperationRef,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Failed, LeaseError> {
        let now = clock::now();
        let backoff = backoff(self.retry_time_scale);
        let reported = token.clone();
        let op = self
            .mutate(operation, now, move |op| {
                op.fail(
                    now,
                    reported.as_str(),
                    failure.error.clone(),
                    failure.retryable,
                    backoff,
                )
            })
            .await?;
        let max_attempts = op.max_attempts();
        Ok(match op.ended_by(token.as_str()) {
            Some(ended) => Failed {
                status: ended.status,
                attempt: ended.attempt,
                max_attempts,
                next_attempt_at: ended.next_attempt_at,
            },
            None => Failed {
                status: op.status,
                attempt: op.attempt,
                max_attempts,
                next_attempt_at: op.next_attempt_at(),
            },
        })
    }

    /// Gives the attempt back unfinished, to be offered again at once (see
    /// `Operation::hand_back`).
    pub async fn hand_back(
        &self,
        operation: OperationRef,
        token: LeaseToken,
    ) -> Result<(), LeaseError> {
        let now = clock::now();
        self.mutate(operation, now, move |op| {
            op.hand_back(now, token.as_str()).map(|()| Vec::new())
        })
        .await
        .map(drop)
    }

    /// `change` may be applied more than once (see [`Operations::mutate`]).
    async fn mutate<F>(
        &self,
        operation: OperationRef,
        now: DateTime<Utc>,
        mut change: F,
    ) -> Result<Operation, LeaseError>
    where
        F: FnMut(&mut Operation) -> Result<Vec<EventDraft>, TransitionError> + Send + 'static,
    {
        let ((), op) = self
            .operations
            .mutate(
                operation.tenant,
                operation.project,
                operation.id,
                now,
                move |op| Ok::<_, LeaseError>(((), change(op)?)),
            )
            .await?
            .ok_or(LeaseError::NotFound)?;
        Ok(op)
    }
}
