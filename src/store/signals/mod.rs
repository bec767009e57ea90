//! Who is woken when something becomes available, apart from what is stored: this
//! process's waiters (claimers, the batch scheduler, the dispatcher, the caches of
//! principals) are woken after the commits that concern them, and other processes on the
//! same database are told through PostgreSQL's NOTIFY (or, on SQLite, notice the commits
//! themselves).

mod relay;
mod work;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use sqlx::{AnyPool, Connection};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use super::deliveries::handoff::{HandedOff, HandoffSink};
use super::Backend;
use crate::domain::delivery::DeliveryStatus;

pub use work::{GateKey, WorkSignal};

/// Channel on which PostgreSQL replicas tell each other that work became available.
const WORK_CHANNEL: &str = "relais_work";
/// Channel on which replicas announce newly queued deliveries.
const DELIVERY_CHANNEL: &str = "relais_deliveries";
/// Channel on which a deletion of tenants, projects or tokens is announced, so that no
/// replica keeps accepting them from its caches.
const AUTH_CHANNEL: &str = "relais_auth";
/// Channel on which replicas announce that they committed events (for event streams).
const EVENT_CHANNEL: &str = "relais_events";
/// Channel on which replicas tell each other that they exist (see `relay::presence`).
const PRESENCE_CHANNEL: &str = "relais_replicas";

/// The wake-ups of one process. Cheap to clone: clones share them.
#[derive(Clone)]
pub struct Signals(Arc<Inner>);

struct Inner {
    work: WorkSignal,
    batches_to_schedule: Notify,
    deliveries_available: Notify,
    auth_changed: Notify,
    events_written: Notify,
    remote: RemoteNews,
    /// Names this process in its notifications, so that it can ignore its own echoes.
    replica_id: String,
    /// Where notifications are sent (PostgreSQL) or foreign commits counted (SQLite).
    pool: AnyPool,
    backend: Backend,
    /// Where the PostgreSQL listener connects, on a connection of its own.
    url: Arc<str>,
    /// This process's dispatcher, while it takes deliveries handed to it.
    handoff: RwLock<Option<Arc<HandoffSink>>>,
    /// Releases of deliveries handed to a dispatcher that had stopped taking them: the
    /// store waits for them before it closes, or they would keep their leases.
    releases: TaskTracker,
    /// The runtime the store was opened on, which lives until the store closes. A
    /// release may be started on an HTTP worker's runtime, which stops before that.
    runtime: Option<Handle>,
}

/// What this process committed that other replicas have not been told yet.
#[derive(Default)]
struct RemoteNews {
    work: AtomicBool,
    deliveries: AtomicBool,
    events: AtomicBool,
    /// A replica said hello: answer that this one is here.
    presence: AtomicBool,
    pending: Notify,
    /// When another replica was last heard from, in milliseconds since the epoch.
    others_heard_at: AtomicI64,
}

/// What a committed change made available, to wake the right waiters.
#[derive(Debug, Default)]
pub(super) struct Announce {
    /// Operations became claimable by built-in executors.
    pub(super) builtin_work: bool,
    /// Operations became claimable by pull or push workers.
    pub(super) worker_work: bool,
    pub(super) deliveries: bool,
    /// A batch member reached a final state: the batch scheduler has something to do.
    pub(super) batches: bool,
    /// The events written, counted in the metrics after commit.
    pub(super) events: super::events::EventTally,
    /// Leases the transaction granted (pull, push and built-in claims alike).
    pub(super) leases_granted: u32,
    /// Deliveries leased to this process's dispatcher, given to it after the commit.
    pub(super) handed_off: HandedOff,
}

impl Announce {
    /// What either of two writes in one transaction made available.
    pub(super) fn absorb(&mut self, other: Announce) {
        self.builtin_work |= other.builtin_work;
        self.worker_work |= other.worker_work;
        self.deliveries |= other.deliveries;
        self.batches |= other.batches;
        self.events.add(other.events);
        self.leases_granted += other.leases_granted;
        self.handed_off.absorb(other.handed_off);
    }
}

impl Signals {
    pub(super) fn new(pool: AnyPool, backend: Backend, url: Arc<str>) -> Self {
        Signals(Arc::new(Inner {
            work: WorkSignal::default(),
            batches_to_schedule: Notify::new(),
            deliveries_available: Notify::new(),
            auth_changed: Notify::new(),
            events_written: Notify::new(),
            remote: RemoteNews::default(),
            replica_id: uuid::Uuid::new_v4().simple().to_string(),
            pool,
            backend,
            url,
            handoff: RwLock::new(None),
            releases: TaskTracker::new(),
            runtime: Handle::try_current().ok(),
        }))
    }

    /// Waits for the releases of deliveries started so far (see [`Signals::after_commit`]).
    pub(super) async fn releases_done(&self) {
        self.0.releases.close();
        self.0.releases.wait().await;
    }

    /// Where writes hand the deliveries they queue to this process's dispatcher; `None`
    /// when none takes them.
    pub(super) fn handoff(&self) -> Option<Arc<HandoffSink>> {
        self.0.handoff.read().expect("handoff").clone()
    }

    pub(super) fn set_handoff(&self, sink: Option<HandoffSink>) {
        *self.0.handoff.write().expect("handoff") = sink.map(Arc::new);
    }

    /// Wakes claimers whenever operations may have become claimable: this process after
    /// its commits, and the PostgreSQL listener for commits of other replicas.
    pub fn work(&self) -> &WorkSignal {
        &self.0.work
    }

    /// Signalled when a batch member reaches a final state.
    pub fn batches_to_schedule(&self) -> &Notify {
        &self.0.batches_to_schedule
    }

    /// Woken when tenants, projects or tokens were deleted, here or by another process.
    pub fn auth_changed(&self) -> &Notify {
        &self.0.auth_changed
    }

    /// Woken when deliveries were queued, here or (through PostgreSQL) by another replica.
    pub fn deliveries_available(&self) -> &Notify {
        &self.0.deliveries_available
    }

    /// Woken when events were committed, here or (through PostgreSQL) by another replica.
    pub fn events_written(&self) -> &Notify {
        &self.0.events_written
    }

    /// Records that an operation of this type is claimable, for whoever runs its type.
    pub(super) fn note_claimable(&self, announce: &mut Announce, operation_type: &str) {
        if self.0.work.is_builtin(operation_type) {
            announce.builtin_work = true;
        } else {
            announce.worker_work = true;
        }
    }

    /// Wakes this process's waiters once a transaction is committed, and flags the news
    /// for other replicas (see [`Signals::relay`]).
    pub(super) fn after_commit(&self, announce: Announce) {
        let unsent = match self.handoff() {
            Some(sink) => sink.deliver(announce.handed_off).err(),
            None => Some(announce.handed_off).filter(|h| !h.is_empty()),
        };
        if let Some(unsent) = unsent {
            self.release(unsent);
        }
        announce.events.record();
        let events = !announce.events.is_empty();
        if announce.leases_granted > 0 {
            metrics::counter!("relais_leases_granted_total")
                .increment(u64::from(announce.leases_granted));
        }
        let inner = &self.0;
        if announce.batches {
            inner.batches_to_schedule.notify_one();
        }
        if announce.builtin_work {
            inner.work.wake_builtin();
        }
        if announce.worker_work {
            inner.work.wake_workers();
        }
        if announce.builtin_work || announce.worker_work {
            inner.remote.work.store(true, Ordering::Release);
        }
        if announce.deliveries {
            inner.deliveries_available.notify_waiters();
            inner.remote.deliveries.store(true, Ordering::Release);
        }
        if events {
            inner.events_written.notify_waiters();
            // Other replicas' streams hear of events that queued deliveries from the
            // deliveries' own notification: one fewer NOTIFY on the busiest path.
            if !announce.deliveries {
                inner.remote.events.store(true, Ordering::Release);
            }
        }
        if announce.builtin_work || announce.worker_work || announce.deliveries || events {
            inner.remote.pending.notify_one();
        }
    }

    /// Deliveries handed to a dispatcher that stopped before it took them: their leases
    /// are dropped so that a claim (this replica's or another's) takes them now rather
    /// than when the leases expire.
    fn release(&self, unsent: HandedOff) {
        let signals = self.clone();
        let release = async move {
            for token in unsent.lease_tokens() {
                if let Err(e) = signals.release_lease(&token).await {
                    tracing::warn!(error = %e, "could not release deliveries handed to a stopped dispatcher; their leases will expire");
                }
            }
            signals.after_commit(Announce {
                deliveries: true,
                ..Default::default()
            });
        };
        let inner = &self.0;
        match &inner.runtime {
            Some(runtime) => drop(inner.releases.spawn_on(release, runtime)),
            None => drop(inner.releases.spawn(release)),
        }
    }

    /// Gives back the deliveries leased under `token`. While the process stops, a pooled
    /// connection may belong to an HTTP worker's runtime that has already stopped, and
    /// fails; then once more on a connection of its own.
    async fn release_lease(&self, token: &str) -> std::result::Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE deliveries SET lease_token = NULL, lease_expires_at = NULL \
             WHERE lease_token = $1 AND status = '{pending}'",
            pending = DeliveryStatus::Pending.as_str()
        );
        let query = || sqlx::query(&sql).bind(token);
        if query().execute(&self.0.pool).await.is_ok() {
            return Ok(());
        }
        let mut own = sqlx::AnyConnection::connect(&self.0.url).await?;
        query().execute(&mut own).await?;
        own.close().await
    }

    /// Tells every replica, this one included, that tokens or projects were removed, so
    /// that none keeps accepting them from its caches.
    pub(super) async fn announce_auth_change(&self) {
        let inner = &self.0;
        inner.auth_changed.notify_waiters();
        if inner.backend == Backend::Postgres {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(AUTH_CHANNEL)
                .bind(inner.replica_id.clone())
                .execute(&inner.pool)
                .await
            {
                tracing::warn!(error = %e, "could not tell other replicas that tokens were removed; their caches expire within seconds");
            }
        }
    }
}
