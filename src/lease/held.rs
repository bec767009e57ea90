//! A lease this process holds while the work goes on here: a built-in executor's run, or
//! a push worker's request held open. Reports renew it; a report that learns the
//! operation was cancelled or timed out, or that the lease is gone, tells every holder to
//! stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Failure, LeaseError, Leases, OperationRef};
use crate::domain::ids::LeaseToken;
use crate::domain::operation::{Operation, OperationResult, ProgressReport};

/// How often a lease held while work goes on elsewhere is renewed and cancellation
/// looked for.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// The operation was cancelled or timed out, or its lease was lost: stop working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

#[derive(Clone)]
pub struct HeldLease {
    leases: Leases,
    operation: OperationRef,
    token: LeaseToken,
    stop: watch::Sender<bool>,
}

impl Leases {
    /// The lease `token` on `op`, held by this process.
    pub fn hold(&self, op: &Operation, token: LeaseToken) -> HeldLease {
        HeldLease {
            leases: self.clone(),
            operation: OperationRef::of(op),
            token,
            stop: watch::channel(false).0,
        }
    }
}

impl HeldLease {
    /// Records progress and renews the lease. `Err(Stopped)` means: stop now.
    pub async fn report(&self, report: ProgressReport) -> Result<(), Stopped> {
        match self
            .leases
            .progress(self.operation, self.token.clone(), report)
            .await
        {
            Ok(heartbeat) if !heartbeat.stop_requested => Ok(()),
            // A database hiccup is not a reason to abandon the work; the next report or
            // the lease expiry settles it.
            Err(LeaseError::Store(e)) => {
                tracing::warn!(error = %e, operation_id = %self.operation.id, "could not record progress");
                Ok(())
            }
            Ok(_) | Err(LeaseError::NotFound | LeaseError::Refused(_)) => {
                self.stop.send_replace(true);
                Err(Stopped)
            }
        }
    }

    /// Resolves once the attempt has been told to stop.
    pub async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Renews the lease while the work goes on, until told to stop or dropped.
    pub fn keep_alive(&self) -> KeepAlive {
        let lease = self.clone();
        let every = HEARTBEAT_EVERY.min(self.leases.lease_ttl() / 3);
        KeepAlive(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if lease.report(ProgressReport::default()).await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Completes or fails the attempt under the lease. An attempt whose lease is gone
    /// records nothing: the operation already says what became of it.
    pub async fn finish<F: Into<Failure>>(&self, outcome: Result<OperationResult, F>) {
        let token = self.token.clone();
        let recorded = match outcome {
            Ok(result) => self
                .leases
                .complete(self.operation, token, result)
                .await
                .map(drop),
            Err(failure) => self
                .leases
                .fail(self.operation, token, failure.into())
                .await
                .map(drop),
        };
        match recorded {
            Ok(()) | Err(LeaseError::NotFound) => {}
            Err(e) => {
                tracing::warn!(operation_id = %self.operation.id, error = %e, "could not record an attempt's result")
            }
        }
    }

    /// Gives the attempt back unfinished, as a process shutting down does: the operation
    /// is offered again at once rather than after the heartbeat timeout.
    pub async fn hand_back(&self) {
        match self
            .leases
            .hand_back(self.operation, self.token.clone())
            .await
        {
            Ok(()) | Err(LeaseError::NotFound) => {}
            Err(e) => {
                tracing::warn!(operation_id = %self.operation.id, error = %e, "could not hand an attempt back; its lease will expire")
            }
        }
    }
}

/// Renews a held lease until dropped.
pub struct KeepAlive(JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}
