//! Runs built-in operation types: claims their operations from every project under a
//! lease, heartbeats while the executor works, and records the result. A crash loses
//! nothing: the lease expires and the attempt is retried like any worker's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock;
use crate::domain::ids::LeaseToken;
use crate::domain::operation::{Backoff, OperationResult};
use crate::domain::operation::{Operation, PhaseStatus, ProgressReport};
use crate::executors::{ExecutionError, Registry, Reporter, Task};
use crate::store::{Claim, Store};

const CLAIM_BATCH: u32 = 50;
const SLOT_GATHERING: Duration = Duration::from_millis(2);
/// How often a running executor's lease is renewed and cancellation looked for.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

pub async fn run(
    store: Store,
    registry: Registry,
    concurrency: usize,
    lease_ttl: Duration,
    retry_time_scale: f64,
) {
    let types = registry.types();
    if types.is_empty() {
        return;
    }
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let worker_id = format!("relais-builtin-{}", std::process::id());
    loop {
        let woken = store.work().builtin_work().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if slots.available_permits() == 0 {
            drop(slots.acquire().await);
            // Executors that finish together free their slots together: one claim for
            // all of them rather than a claim (a transaction) per freed slot.
            tokio::time::sleep(SLOT_GATHERING).await;
            continue;
        }
        let claim = Claim {
            scope: None,
            types: &types,
            excluded_types: &[],
            max: (slots.available_permits() as u32).min(CLAIM_BATCH),
            worker_id: Some(worker_id.clone()),
        };
        let claimed = match store
            .claim_operations(&claim, clock::now(), lease_ttl)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming built-in operations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let claimed_any = !claimed.is_empty();
        for (op, token) in claimed {
            let slot = slots
                .clone()
                .try_acquire_owned()
                .expect("claimed within capacity");
            tokio::spawn(execute(
                store.clone(),
                registry.clone(),
                op,
                token,
                lease_ttl,
                retry_time_scale,
                slot,
            ));
        }
        if !claimed_any {
            // Retry delays that run out are announced by nothing: look again each second.
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn execute(
    store: Store,
    registry: Registry,
    op: Operation,
    token: LeaseToken,
    lease_ttl: Duration,
    retry_time_scale: f64,
    _slot: OwnedSemaphorePermit,
) {
    let Some(executor) = registry.get(&op.operation_type).cloned() else {
        return;
    };
    let reporter = Reporter::new(
        store.clone(),
        op.tenant_id,
        op.project_id,
        op.id,
        token.as_str().to_owned(),
        lease_ttl,
    );
    let heartbeat = keep_alive(&reporter, lease_ttl);
    let checkpoints: HashMap<_, _> = op
        .phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Completed)
        .map(|p| {
            (
                p.phase_name.clone(),
                p.checkpoint.clone().unwrap_or_default(),
            )
        })
        .collect();
    let task = Task {
        operation_id: op.id,
        parameters: op.parameters.clone(),
        attempt: op.attempt,
        checkpoints,
        dependency_results: op
            .batch
            .as_ref()
            .and_then(|b| b.inputs.clone())
            .unwrap_or_default(),
        reporter: reporter.clone(),
    };
    let outcome = tokio::select! {
        result = executor.run(task) => Some(result),
        _ = reporter.stopped() => None,
    };
    heartbeat.abort();
    // `None`: cancelled or timed out, which the operation already says.
    if let Some(result) = outcome {
        record(&store, &op, &token, result, retry_time_scale).await;
    }
}

/// Keeps a lease alive while work goes on elsewhere; stops when told to stop.
pub(super) fn keep_alive(reporter: &Reporter, lease_ttl: Duration) -> tokio::task::JoinHandle<()> {
    let reporter = reporter.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEARTBEAT_EVERY.min(lease_ttl / 3));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if reporter.report(ProgressReport::default()).await.is_err() {
                return;
            }
        }
    })
}

/// Completes or fails the attempt under its lease.
pub(super) async fn record(
    store: &Store,
    op: &Operation,
    token: &LeaseToken,
    result: Result<OperationResult, ExecutionError>,
    retry_time_scale: f64,
) {
    let now = clock::now();
    let token = token.clone();
    let recorded = match result {
        Ok(result) => {
            store
                .mutate_operation(op.tenant_id, op.project_id, op.id, now, move |o| {
                    o.complete(now, token.as_str(), result.clone())
                        .map(|e| ((), e))
                        .map_err(Recording::from)
                })
                .await
        }
        Err(failure) => {
            let backoff = Backoff::random(retry_time_scale);
            store
                .mutate_operation(op.tenant_id, op.project_id, op.id, now, move |o| {
                    o.fail(
                        now,
                        token.as_str(),
                        failure.error.clone(),
                        failure.retryable,
                        backoff,
                    )
                    .map(|e| ((), e))
                    .map_err(Recording::from)
                })
                .await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(operation_id = %op.id, error = %e, "could not record an attempt's result");
    }
}

#[derive(Debug, thiserror::Error)]
enum Recording {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Transition(#[from] crate::domain::operation::TransitionError),
}
