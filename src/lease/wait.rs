//! The pull workers' long poll: claim what is there, else wait for a commit to announce
//! work (or for the next retry delay to run out) until the request's wait is over.

use std::time::Duration;

use tokio::time::Instant;

use super::{LeaseError, Leases};
use crate::clock;
use crate::domain::ids::{LeaseToken, ProjectId, TenantId};
use crate::domain::operation::{LeaseRequest, Operation};
use crate::store::{Claim, GateKey};

/// How often a waiting worker re-checks without a wake-up: catches operations whose retry
/// delay ran out, which no commit announces.
const IDLE_RECHECK: Duration = Duration::from_secs(2);

impl Leases {
    /// Claims work for a pull worker, waiting up to `request.wait` for some to appear.
    /// Operation types run by built-in executors or by the project's push workers are
    /// never handed to pull workers.
    pub async fn wait_for_work(
        &self,
        tenant: TenantId,
        project: ProjectId,
        request: &LeaseRequest,
    ) -> Result<Vec<(Operation, LeaseToken)>, LeaseError> {
        let mut excluded = self.builtin_types.to_vec();
        excluded.extend(self.push_workers.served_types(project).await?);
        let deadline = Instant::now() + request.wait;
        let signal = self.signals.work();
        let claim = Claim {
            scope: Some((tenant, project)),
            types: &request.operation_types,
            excluded_types: &excluded,
            max: request.max,
            worker_id: request.worker_id.clone(),
        };
        let gate = signal.gate(&GateKey::new(
            tenant,
            project,
            &request.operation_types,
            &excluded,
        ));
        // When the next operation waiting out a retry delay becomes claimable, as of the
        // last claim that found nothing.
        let mut due: Option<Instant> = None;
        // Only an announcement may be answered without a look: a new request looks, and so
        // does a timed re-check, since retry delays run out unannounced.
        let mut announced = false;
        loop {
            // Register interest before looking, so a commit between the look and the wait
            // still wakes us.
            let woken = signal.worker_work().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let epoch = signal.epoch();
            let looked = {
                let mut turn = gate.turn(signal).await;
                if announced && !turn.worth_claiming(epoch) {
                    None
                } else {
                    // One reading for the claim and the look ahead, so nothing falls between.
                    let at = clock::now();
                    let claiming = self.operations.claim(&claim, at, self.lease_ttl);
                    Some((turn.claim(request.max, claiming).await?, at))
                }
            };
            let now = Instant::now();
            match looked {
                Some((claimed, _)) if !claimed.is_empty() || now >= deadline => return Ok(claimed),
                Some((_, looked_at)) => {
                    let next = self
                        .operations
                        .next_available_at(tenant, project, looked_at)
                        .await?;
                    // Already due (it became claimable just after the claim looked): now.
                    let (wall, mono) = (clock::now(), Instant::now());
                    due = next.map(|t| mono + (t - wall).to_std().unwrap_or_default());
                }
                None if now >= deadline => return Ok(Vec::new()),
                None => {}
            }
            let recheck = deadline
                .min(now + IDLE_RECHECK)
                .min(due.unwrap_or(deadline));
            tokio::select! {
                _ = &mut woken => announced = true,
                _ = tokio::time::sleep_until(recheck) => announced = false,
            }
        }
    }
}
