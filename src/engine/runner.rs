//! Runs built-in operation types: claims their operations from every project under a
//! lease, heartbeats while the executor works, and records the result. A crash loses
//! nothing: the lease expires and the attempt is retried like any worker's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::clock;
use crate::domain::ids::LeaseToken;
use crate::domain::operation::{Operation, PhaseStatus};
use crate::executors::{Registry, Reporter, Task, Tools};
use crate::lease::Leases;
use crate::store::{Claim, Operations, Signals};

const CLAIM_BATCH: u32 = 50;
const SLOT_GATHERING: Duration = Duration::from_millis(2);

/// Claims and runs until `shutdown` turns true; then every attempt still running is
/// handed back (offered again at once, to whichever process claims next), and this
/// returns once they all have.
pub async fn run(
    operations: Operations,
    tools: Tools,
    signals: Signals,
    leases: Leases,
    registry: Registry,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let types = registry.types();
    if types.is_empty() {
        return;
    }
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let finishing = Arc::new(Semaphore::new(concurrency));
    let worker_id = format!("relais-builtin-{}", std::process::id());
    while !*shutdown.borrow() {
        let woken = signals.work().builtin_work().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if slots.available_permits() == 0 {
            tokio::select! {
                permit = slots.acquire() => drop(permit),
                _ = shutdown.changed() => continue,
            }
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
        let claimed = match operations
            .claim(&claim, clock::now(), leases.lease_ttl())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming built-in operations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // A claim that came back short took all there was: the next waits for news (a
        // commit, another replica's notification, or the engine's clock finding some).
        let took_all = claimed.len() < claim.max as usize;
        for (op, token) in claimed {
            let slot = Slot {
                working: slots
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed within capacity"),
                finishing: finishing.clone(),
            };
            tokio::spawn(execute(
                tools.clone(),
                leases.clone(),
                registry.clone(),
                op,
                token,
                slot,
                shutdown.clone(),
            ));
        }
        if took_all {
            tokio::select! {
                _ = &mut woken => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    // Every slot free again, then every outcome written: each attempt has ended or been
    // handed back. (An attempt takes its finishing permit before it frees its slot.)
    let _ = slots.acquire_many(concurrency as u32).await;
    let _ = finishing.acquire_many(concurrency as u32).await;
}

/// An executor's place, held while it works. Its outcome is then written under a
/// finishing permit, the place already free for the next operation; the outcomes being
/// written are bounded apart, so a slow database still holds executors back.
struct Slot {
    working: OwnedSemaphorePermit,
    finishing: Arc<Semaphore>,
}

async fn execute(
    tools: Tools,
    leases: Leases,
    registry: Registry,
    op: Operation,
    token: LeaseToken,
    slot: Slot,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(executor) = registry.get(&op.operation_type).cloned() else {
        return;
    };
    let lease = leases.hold(&op, token);
    let keep_alive = lease.keep_alive();
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
        retry_policy: op.retry_policy,
        retry_time_scale: tools.retry_time_scale,
        reporter: Reporter::new(lease.clone()),
        breakout: tools.breakout_sink(op.project_id),
        sync: tools.sync_sink(op.tenant_id, op.project_id),
        http: tools.http.clone(),
    };
    let outcome = tokio::select! {
        result = executor.run(task) => Some(result),
        _ = lease.stopped() => None,
        // The guard `wait_for` returns is not `Send`: drop it inside.
        _ = async { drop(shutdown.wait_for(|down| *down).await) } => {
            drop(keep_alive);
            lease.hand_back().await;
            return;
        }
    };
    drop(keep_alive);
    // `None`: cancelled or timed out, which the operation already says.
    if let Some(result) = outcome {
        // The executor is done: the next operation starts while this outcome commits,
        // which is most of a quick executor's cycle.
        let finishing = slot
            .finishing
            .acquire_owned()
            .await
            .expect("the finishing permits are never closed");
        drop(slot.working);
        lease.finish(result).await;
        drop(finishing);
    }
}
