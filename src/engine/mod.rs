//! Background work: the clock that finds what became due, taking back expired leases,
//! ending overdue runs, aging the queue,
//! moving batches on, notebooks' cron ticks, the delivery dispatcher, running built-in executors, pushing tasks
//! to push workers, and the signals' relay that carries news between replicas. The loops
//! read no configuration: `app` hands them plain settings.
//! All state is in the database, so a restarted process simply carries on.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use due::Wakes;

use crate::clock;
use crate::delivery::dispatcher::{self, DispatcherSettings};
use crate::executors::{Registry, Tools};
use crate::lease::Leases;
use crate::outbound::OutboundClient;
use crate::store::{Batches, Idempotency, Notebooks, Operations, Signals, Store};

mod due;
pub mod push;
pub mod runner;

const EXPIRY_BATCH: u32 = 500;

/// What the loops are told, as plain values.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// A lease not renewed for this long is taken back.
    pub heartbeat_timeout: Duration,
    /// Multiplies operations' retry delays; below 1 in tests so retries take milliseconds.
    pub retry_time_scale: f64,
    /// Attempts in a row that lose their lease before the operation fails as `POISONED`.
    pub max_lost_leases: u32,
    /// Waiting this long raises an operation one priority.
    pub priority_aging: Duration,
    /// Built-in operations this process runs at once.
    pub executor_concurrency: usize,
    /// How long a sync waits for one answer of its source.
    pub source_timeout: Duration,
    /// How long an `Idempotency-Key`'s answer is kept.
    pub idempotency_retention: Duration,
    pub push: push::PushSettings,
    pub delivery: DispatcherSettings,
}

pub struct Engine {
    tasks: Vec<JoinHandle<()>>,
    /// Tells the built-in executors' runner to hand its attempts back, and the dispatcher
    /// to claim no more.
    shutdown: tokio::sync::watch::Sender<bool>,
    runner: Option<JoinHandle<()>>,
    /// Ends once the dispatcher's sends in flight are done and recorded.
    dispatcher: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn start(
        store: &Store,
        settings: EngineSettings,
        registry: Registry,
        leases: Leases,
    ) -> Self {
        let signals = store.signals();
        signals.work().serve_builtin_types(&registry.types());
        let sources = OutboundClient::new(
            settings.source_timeout,
            settings.delivery.allow_private_targets,
        );
        let wakes = Arc::new(Wakes::default());
        let clock = due::Watch {
            due: store.due().clone(),
            signals: signals.clone(),
            wakes: wakes.clone(),
            builtin_types: registry.types(),
            // Lease expiry is detected within a quarter of the heartbeat timeout, and the
            // queue ages in steps of a quarter of the aging interval.
            period: (settings.heartbeat_timeout.min(settings.priority_aging) / 4)
                .clamp(Duration::from_millis(100), due::MAX_PERIOD),
            priority_aging: settings.priority_aging,
        };
        let mut tasks = vec![
            tokio::spawn(clock.run()),
            tokio::spawn(reap_expired_leases(
                store.operations().clone(),
                wakes.clone(),
                settings.retry_time_scale,
                settings.max_lost_leases,
            )),
            tokio::spawn(enforce_timeouts(store.operations().clone(), wakes.clone())),
            tokio::spawn(age_queue(
                store.operations().clone(),
                wakes.clone(),
                settings.priority_aging,
            )),
            tokio::spawn(schedule_batches(store.batches().clone(), signals.clone())),
            tokio::spawn(forget_idempotency_keys(
                store.idempotency().clone(),
                settings.idempotency_retention,
            )),
            tokio::spawn(run_notebook_schedules(
                store.notebooks().clone(),
                wakes.clone(),
            )),
        ];
        let (shutdown, shutting_down) = tokio::sync::watch::channel(false);
        let dispatcher = dispatcher::spawn(
            store.deliveries().clone(),
            store.webhooks().clone(),
            signals.clone(),
            settings.delivery,
            shutting_down.clone(),
        );
        tasks.extend(dispatcher.others);
        tasks.push(tokio::spawn(push::run(
            store.push_workers().clone(),
            signals.clone(),
            wakes,
            leases.clone(),
            registry.types(),
            settings.push,
        )));
        let tools = Tools {
            breakout: store.breakout().clone(),
            syncs: store.syncs().clone(),
            http: sources,
            retry_time_scale: settings.retry_time_scale,
        };
        let runner = tokio::spawn(runner::run(
            store.operations().clone(),
            tools,
            signals.clone(),
            leases,
            registry,
            settings.executor_concurrency,
            shutting_down,
        ));
        let relay = signals.clone();
        tasks.push(tokio::spawn(async move { relay.relay().await }));
        Engine {
            tasks,
            shutdown,
            runner: Some(runner),
            dispatcher: Some(dispatcher.draining),
        }
    }

    /// Winds the work down: the built-in executors stop and hand their attempts back, so
    /// that another process (or this one's successor) takes them at once; the dispatcher
    /// claims no more, lets its sends in flight finish and records them, and puts back
    /// in the queue those it had not started. Waits at most `limit`; what is left then is
    /// left to its lease.
    pub async fn wind_down(&mut self, limit: Duration) {
        let _ = self.shutdown.send(true);
        let runner = self.runner.take();
        let dispatcher = self.dispatcher.take();
        let both = async {
            let handed_back = async {
                if let Some(runner) = runner {
                    let _ = runner.await;
                    tracing::info!("built-in executors stopped");
                }
            };
            let drained = async {
                if let Some(dispatcher) = dispatcher {
                    let _ = dispatcher.await;
                    tracing::info!("deliveries in flight settled");
                }
            };
            tokio::join!(handed_back, drained);
        };
        if tokio::time::timeout(limit, both).await.is_err() {
            tracing::warn!(
                "the built-in executors' attempts or the deliveries in flight were not all settled in time; their leases will expire"
            );
        }
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
        for task in self
            .tasks
            .iter()
            .chain(&self.runner)
            .chain(&self.dispatcher)
        {
            task.abort();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn reap_expired_leases(
    operations: Operations,
    wakes: Arc<Wakes>,
    retry_time_scale: f64,
    max_lost_leases: u32,
) {
    loop {
        wakes.expired_leases.notified().await;
        let pass = || {
            operations.expire_leases(
                clock::now(),
                EXPIRY_BATCH,
                || crate::lease::backoff(retry_time_scale),
                max_lost_leases,
            )
        };
        sweep(pass, "lease expiry", |n| {
            metrics::counter!("relais_leases_expired_total").increment(n as u64);
            tracing::info!(count = n, "took back expired leases");
        })
        .await;
    }
}

/// Runs a sweep's passes until one comes back short of a full batch; `swept` hears of
/// each pass that changed something. A failed pass ends it: the clock wakes the sweep
/// again next period.
async fn sweep<Pass>(mut pass: impl FnMut() -> Pass, what: &str, swept: impl Fn(usize))
where
    Pass: std::future::Future<Output = crate::store::Result<usize>>,
{
    loop {
        match pass().await {
            Ok(n) => {
                if n > 0 {
                    swept(n);
                }
                if n < EXPIRY_BATCH as usize {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} pass failed; will retry");
                return;
            }
        }
    }
}

/// Moves batches on as their members finish: woken by each commit that finishes a member
/// here, and by the engine's clock for what another replica finished (or a crash left
/// behind).
async fn schedule_batches(batches: Batches, signals: Signals) {
    loop {
        let woken = signals.batches_to_schedule().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match batches.schedule(clock::now()).await {
            Ok(0) => {
                woken.await;
                // Members finishing together are settled by one pass.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "batch scheduling pass failed; will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs notebooks' cron ticks. Each pass claims the notebooks whose tick has come in the
/// database, so every tick runs once however many replicas run this loop. Woken by the
/// engine's clock while some notebook is on a schedule (each period, which also keeps
/// the cluster's clock in the database fresh); a tick due sooner than the next period is
/// waited for here, so that it runs on time.
async fn run_notebook_schedules(notebooks: Notebooks, wakes: Arc<Wakes>) {
    loop {
        wakes.notebooks.notified().await;
        loop {
            let now = clock::now();
            let next_due = match notebooks.schedule(now).await {
                Ok(pass) => {
                    if pass.runs > 0 {
                        tracing::debug!(runs = pass.runs, "notebook ticks run");
                    }
                    pass.next_due
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notebook schedule pass failed; will retry");
                    break;
                }
            };
            match next_due.map(|next| (next - clock::now()).to_std().unwrap_or_default()) {
                Some(wait) if wait < due::MAX_PERIOD => tokio::time::sleep(wait).await,
                _ => break,
            }
        }
    }
}

/// Aging: every operation that waited another `interval` ranks one priority higher, so
/// Low work still runs under a steady stream of High work. The engine's clock looks for
/// such operations every quarter of the interval.
async fn age_queue(operations: Operations, wakes: Arc<Wakes>, interval: Duration) {
    loop {
        wakes.aging.notified().await;
        if let Err(e) = operations.age_queue(clock::now(), interval).await {
            tracing::warn!(error = %e, "aging pass failed; will retry");
        }
    }
}

/// Keeps the table of idempotency keys bounded: answers older than the retention go,
/// once an hour (and at start).
async fn forget_idempotency_keys(idempotency: Idempotency, retention: Duration) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = clock::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::hours(24));
        match idempotency.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "forgot expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "forgetting idempotency keys failed; will retry"),
        }
    }
}

/// Ends runs that outlived their `timeout`, when the engine's clock finds some: an
/// operation ends within a period (a second at most) of its `timeoutAt`.
async fn enforce_timeouts(operations: Operations, wakes: Arc<Wakes>) {
    loop {
        wakes.timeouts.notified().await;
        let pass = || operations.time_out(clock::now(), EXPIRY_BATCH);
        sweep(pass, "timeout", |n| {
            tracing::info!(count = n, "operations timed out");
        })
        .await;
    }
}
