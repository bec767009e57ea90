//! Wake-ups for whoever waits for operations to claim. Built-in executors wait for their
//! own types and pull and push workers for the rest, so a commit wakes only those that can
//! take its work; another replica's news does not say which, so it wakes both.
//!
//! Pull workers asking for the same work share a [`ClaimGate`]: after a wake-up they
//! claim one at a time, and a claim is skipped when a claim started since the last
//! announcement already came back short. Without it, every announcement would send all
//! waiting workers to the database at once, and all but one would find nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::domain::ids::{ProjectId, TenantId};
use crate::shared::SharedByKey;

#[derive(Default)]
pub struct WorkSignal {
    builtin_types: RwLock<HashSet<String>>,
    builtin: Notify,
    workers: Notify,
    /// Counts announcements to workers; a claim records the count it started at.
    epoch: AtomicU64,
    gates: SharedByKey<GateKey, ClaimGate>,
}

/// Which work a pull worker asks for: its project and the types it takes and skips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GateKey {
    tenant: TenantId,
    project: ProjectId,
    types: Vec<String>,
    excluded_types: Vec<String>,
}

impl GateKey {
    pub fn new(
        tenant: TenantId,
        project: ProjectId,
        types: &[String],
        excluded_types: &[String],
    ) -> Self {
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list.dedup();
            list
        };
        GateKey {
            tenant,
            project,
            types: sorted(types),
            excluded_types: sorted(excluded_types),
        }
    }
}

/// Held while claiming; remembers the epoch at which the last claim came back short.
#[derive(Default)]
pub struct ClaimGate(tokio::sync::Mutex<Option<u64>>);

pub struct ClaimTurn<'a> {
    signal: &'a WorkSignal,
    drained_at: tokio::sync::MutexGuard<'a, Option<u64>>,
}

impl ClaimGate {
    pub async fn turn<'a>(&'a self, signal: &'a WorkSignal) -> ClaimTurn<'a> {
        ClaimTurn {
            signal,
            drained_at: self.0.lock().await,
        }
    }
}

impl ClaimTurn<'_> {
    /// Whether a claim would find work announced at or before `epoch` that an earlier
    /// claim did not take.
    pub fn worth_claiming(&self, epoch: u64) -> bool {
        self.drained_at.is_none_or(|drained| drained < epoch)
    }

    /// Runs a claim for up to `max` operations and records whether it drained the queue.
    pub async fn claim<T, E>(
        &mut self,
        max: u32,
        claim: impl std::future::Future<Output = Result<Vec<T>, E>>,
    ) -> Result<Vec<T>, E> {
        // Read before the claim looks: whatever was announced by then, the claim saw.
        let started_at = self.signal.epoch();
        let claimed = claim.await?;
        *self.drained_at = (claimed.len() < max as usize).then_some(started_at);
        Ok(claimed)
    }
}

impl WorkSignal {
    /// The types built-in executors run in this process.
    pub fn serve_builtin_types(&self, types: &[String]) {
        *self.builtin_types.write().expect("built-in types") = types.iter().cloned().collect();
    }

    pub fn is_builtin(&self, operation_type: &str) -> bool {
        self.builtin_types
            .read()
            .expect("built-in types")
            .contains(operation_type)
    }

    /// Built-in executors wait on this.
    pub fn builtin_work(&self) -> &Notify {
        &self.builtin
    }

    /// Pull and push workers wait on this.
    pub fn worker_work(&self) -> &Notify {
        &self.workers
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn wake_builtin(&self) {
        self.builtin.notify_waiters();
    }

    pub fn wake_workers(&self) {
        // Counted before the wake-up, so that a woken waiter sees the new epoch.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.workers.notify_waiters();
    }

    /// News that does not say whose work it is.
    pub fn wake_all(&self) {
        self.wake_builtin();
        self.wake_workers();
    }

    /// The gate shared by pull workers that ask for `key`'s work.
    pub fn gate(&self, key: &GateKey) -> Arc<ClaimGate> {
        self.gates.get(key, ClaimGate::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> GateKey {
        GateKey::new(
            TenantId::new(),
            ProjectId::new(),
            &["b".into(), "a".into()],
            &[],
        )
    }

    #[tokio::test]
    async fn a_short_claim_makes_later_claims_pointless_until_the_next_announcement() {
        let signal = WorkSignal::default();
        let gate = signal.gate(&key());
        let mut turn = gate.turn(&signal).await;
        assert!(turn.worth_claiming(signal.epoch()));
        let claimed: Result<Vec<u8>, ()> = turn.claim(5, async { Ok(vec![1, 2]) }).await;
        assert_eq!(claimed, Ok(vec![1, 2]));
        assert!(!turn.worth_claiming(signal.epoch()));
        drop(turn);
        signal.wake_workers();
        assert!(gate.turn(&signal).await.worth_claiming(signal.epoch()));
    }

    #[tokio::test]
    async fn a_full_claim_leaves_more_to_claim() {
        let signal = WorkSignal::default();
        let gate = signal.gate(&key());
        let mut turn = gate.turn(&signal).await;
        let _: Result<Vec<u8>, ()> = turn.claim(2, async { Ok(vec![1, 2]) }).await;
        assert!(turn.worth_claiming(signal.epoch()));
    }

    #[tokio::test]
    async fn an_announcement_during_a_claim_is_not_covered_by_it() {
        let signal = WorkSignal::default();
        let gate = signal.gate(&key());
        let mut turn = gate.turn(&signal).await;
        let _: Result<Vec<u8>, ()> = turn
            .claim(5, async {
                signal.wake_workers();
                Ok(vec![])
            })
            .await;
        assert!(turn.worth_claiming(signal.epoch()));
    }

    #[test]
    fn workers_asking_for_the_same_types_in_any_order_share_a_gate() {
        let signal = WorkSignal::default();
        let (tenant, project) = (TenantId::new(), ProjectId::new());
        let one = signal.gate(&GateKey::new(
            tenant,
            project,
            &["a".into(), "b".into()],
            &[],
        ));
        let other = signal.gate(&GateKey::new(
            tenant,
            project,
            &["b".into(), "a".into()],
            &[],
        ));
        assert!(Arc::ptr_eq(&one, &other));
        let third = signal.gate(&GateKey::new(tenant, project, &["a".into()], &[]));
        assert!(!Arc::ptr_eq(&one, &third));
    }

    #[test]
    fn built_in_types_are_known_once_served() {
        let signal = WorkSignal::default();
        assert!(!signal.is_builtin("Sleep"));
        signal.serve_builtin_types(&["Sleep".into()]);
        assert!(signal.is_builtin("Sleep"));
    }
}
