//! Background work: taking back expired leases, moving batches on, the delivery
//! dispatcher, and waking
//! waiters when work or deliveries appear (in this process directly, across PostgreSQL
//! replicas by LISTEN/NOTIFY).
//! All state is in the database, so a restarted process simply carries on.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock;
use crate::config::Config;
use crate::delivery::dispatcher::{self, DispatcherSettings};
use crate::domain::ids::{LeaseToken, ProjectId, TenantId};
use crate::domain::operation::{Backoff, Operation};
use crate::domain::requests::LeaseRequest;
use crate::executors::Registry;
use crate::store::{Backend, Claim, GateKey, Store, StoreError, DELIVERY_CHANNEL, WORK_CHANNEL};

pub mod push;
pub mod runner;

/// How often a waiting worker re-checks without a wake-up: catches operations whose retry
/// delay ran out, which no commit announces.
const IDLE_RECHECK: Duration = Duration::from_secs(2);
const EXPIRY_BATCH: u32 = 500;

pub struct Engine {
    tasks: Vec<JoinHandle<()>>,
}

impl Engine {
    pub fn start(
        store: Store,
        config: &Config,
        registry: Registry,
        delivery: DispatcherSettings,
    ) -> Self {
        store.work().serve_builtin_types(&registry.types());
        let mut tasks = vec![
            tokio::spawn(reap_expired_leases(
                store.clone(),
                config.heartbeat_timeout,
                config.delivery.retry_time_scale,
            )),
            tokio::spawn(enforce_timeouts(store.clone())),
            tokio::spawn(age_queue(store.clone(), config.priority_aging)),
            tokio::spawn(schedule_batches(store.clone())),
        ];
        tasks.extend(dispatcher::spawn(store.clone(), delivery));
        let settings = push::PushSettings {
            lease_ttl: config.heartbeat_timeout,
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.bind)),
            allow_private_targets: config.delivery.allow_private_targets,
            retry_time_scale: config.delivery.retry_time_scale,
        };
        tasks.push(tokio::spawn(push::run(
            store.clone(),
            registry.types(),
            settings,
        )));
        tasks.push(tokio::spawn(runner::run(
            store.clone(),
            registry,
            config.executor_concurrency,
            config.heartbeat_timeout,
            config.delivery.retry_time_scale,
        )));
        if store.backend() == Backend::Postgres {
            let relay = store.clone();
            tasks.push(tokio::spawn(async move { relay.relay_to_replicas().await }));
            tasks.push(tokio::spawn(relay_notifications(store)));
        }
        Engine { tasks }
    }

    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn reap_expired_leases(store: Store, heartbeat_timeout: Duration, retry_time_scale: f64) {
    // A quarter of the timeout keeps the worst-case detection delay at 1.25× the timeout.
    let period = (heartbeat_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store
            .expire_leases(clock::now(), EXPIRY_BATCH, || {
                Backoff::random(retry_time_scale)
            })
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "took back expired leases"),
            Err(e) => tracing::warn!(error = %e, "lease expiry pass failed; will retry"),
        }
    }
}

/// Moves batches on as their members finish: woken by each commit that finishes a member
/// here, and every second for what another replica finished (or a crash left behind).
async fn schedule_batches(store: Store) {
    let news = store.batches_to_schedule().clone();
    loop {
        let woken = news.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match store.schedule_batches(clock::now()).await {
            Ok(0) => {
                tokio::select! {
                    _ = &mut woken => {
                        // Members finishing together are settled by one pass.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "batch scheduling pass failed; will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Aging: every operation that waited another `interval` ranks one priority higher, so
/// Low work still runs under a steady stream of High work.
async fn age_queue(store: Store, interval: Duration) {
    let mut ticker = tokio::time::interval((interval / 4).max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = store.age_queue(clock::now(), interval).await {
            tracing::warn!(error = %e, "aging pass failed; will retry");
        }
    }
}

/// Ends runs that outlived their `timeout`; checked every second, so an operation ends
/// within about a second of its `timeoutAt`.
async fn enforce_timeouts(store: Store) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.time_out_operations(clock::now(), EXPIRY_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "operations timed out"),
            Err(e) => tracing::warn!(error = %e, "timeout pass failed; will retry"),
        }
    }
}

/// Wakes this process's waiters when another replica commits work or deliveries.
async fn relay_notifications(store: Store) {
    loop {
        let result: Result<(), sqlx::Error> = async {
            let mut listener = sqlx::postgres::PgListener::connect(store.url()).await?;
            listener
                .listen_all([WORK_CHANNEL, DELIVERY_CHANNEL])
                .await?;
            loop {
                let notification = listener.recv().await?;
                if notification.payload() == store.replica_id() {
                    // Our own news, already announced here when it was committed.
                    continue;
                }
                if notification.channel() == WORK_CHANNEL {
                    store.work().wake_all();
                } else {
                    store.deliveries_available().notify_waiters();
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "notification listener lost; reconnecting");
        }
        // Whatever was announced while disconnected is found by the waiters' re-checks.
        store.work().wake_all();
        store.deliveries_available().notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Claims work for a pull worker, waiting up to `request.wait` for some to appear.
/// Operation types run by built-in executors are never handed to pull workers.
pub async fn lease_with_wait(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    request: &LeaseRequest,
    builtin_types: &[String],
    lease_ttl: Duration,
) -> Result<Vec<(Operation, LeaseToken)>, StoreError> {
    let deadline = Instant::now() + request.wait;
    let signal = store.work();
    let claim = Claim {
        scope: Some((tenant, project)),
        types: &request.operation_types,
        excluded_types: builtin_types,
        max: request.max,
        worker_id: request.worker_id.clone(),
    };
    let gate = signal.gate(&GateKey::new(
        tenant,
        project,
        &request.operation_types,
        builtin_types,
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
                let claiming = store.claim_operations(&claim, at, lease_ttl);
                Some((turn.claim(request.max, claiming).await?, at))
            }
        };
        let now = Instant::now();
        match looked {
            Some((claimed, _)) if !claimed.is_empty() || now >= deadline => return Ok(claimed),
            Some((_, looked_at)) => {
                let next = store.next_available_at(tenant, project, looked_at).await?;
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
