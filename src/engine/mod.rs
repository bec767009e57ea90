//! Background work: taking back expired leases, moving batches on, the delivery
//! dispatcher, and waking
//! waiters when work or deliveries appear (in this process directly, across PostgreSQL
//! replicas by LISTEN/NOTIFY).
//! All state is in the database, so a restarted process simply carries on.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::clock;
use crate::config::Config;
use crate::delivery::dispatcher::{self, DispatcherSettings};
use crate::executors::Registry;
use crate::lease::Leases;
use crate::store::{
    Backend, Batches, Operations, Signals, Store, AUTH_CHANNEL, DELIVERY_CHANNEL, WORK_CHANNEL,
};

pub mod push;
pub mod runner;

const EXPIRY_BATCH: u32 = 500;

pub struct Engine {
    tasks: Vec<JoinHandle<()>>,
}

impl Engine {
    pub fn start(
        store: &Store,
        config: &Config,
        registry: Registry,
        leases: Leases,
        delivery: DispatcherSettings,
    ) -> Self {
        let signals = store.signals();
        signals.work().serve_builtin_types(&registry.types());
        let mut tasks = vec![
            tokio::spawn(reap_expired_leases(
                store.operations().clone(),
                config.heartbeat_timeout,
                config.delivery.retry_time_scale,
                config.max_lost_leases,
            )),
            tokio::spawn(enforce_timeouts(store.operations().clone())),
            tokio::spawn(age_queue(store.operations().clone(), config.priority_aging)),
            tokio::spawn(schedule_batches(store.batches().clone(), signals.clone())),
        ];
        tasks.extend(dispatcher::spawn(
            store.deliveries().clone(),
            store.webhooks().clone(),
            signals.clone(),
            delivery,
        ));
        let settings = push::PushSettings {
            lease_ttl: config.heartbeat_timeout,
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.bind)),
            allow_private_targets: config.delivery.allow_private_targets,
        };
        tasks.push(tokio::spawn(push::run(
            store.push_workers().clone(),
            signals.clone(),
            leases.clone(),
            registry.types(),
            settings,
        )));
        tasks.push(tokio::spawn(runner::run(
            store.operations().clone(),
            store.breakout().clone(),
            signals.clone(),
            leases,
            registry,
            config.executor_concurrency,
        )));
        match store.backend() {
            Backend::Postgres => {
                let relay = signals.clone();
                tasks.push(tokio::spawn(async move { relay.relay_to_replicas().await }));
                tasks.push(tokio::spawn(relay_notifications(
                    signals.clone(),
                    store.url().to_owned(),
                )));
            }
            Backend::Sqlite => tasks.push(tokio::spawn(watch_foreign_commits(signals.clone()))),
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

async fn reap_expired_leases(
    operations: Operations,
    heartbeat_timeout: Duration,
    retry_time_scale: f64,
    max_lost_leases: u32,
) {
    // A quarter of the timeout keeps the worst-case detection delay at 1.25× the timeout.
    let period = (heartbeat_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match operations
            .expire_leases(
                clock::now(),
                EXPIRY_BATCH,
                || crate::lease::backoff(retry_time_scale),
                max_lost_leases,
            )
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
async fn schedule_batches(batches: Batches, signals: Signals) {
    loop {
        let woken = signals.batches_to_schedule().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match batches.schedule(clock::now()).await {
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
async fn age_queue(operations: Operations, interval: Duration) {
    let mut ticker = tokio::time::interval((interval / 4).max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = operations.age_queue(clock::now(), interval).await {
            tracing::warn!(error = %e, "aging pass failed; will retry");
        }
    }
}

/// Ends runs that outlived their `timeout`; checked every second, so an operation ends
/// within about a second of its `timeoutAt`.
async fn enforce_timeouts(operations: Operations) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match operations.time_out(clock::now(), EXPIRY_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "operations timed out"),
            Err(e) => tracing::warn!(error = %e, "timeout pass failed; will retry"),
        }
    }
}

/// Wakes this process's waiters when another replica commits work or deliveries.
async fn relay_notifications(signals: Signals, url: String) {
    loop {
        let result: Result<(), sqlx::Error> = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener
                .listen_all([WORK_CHANNEL, DELIVERY_CHANNEL, AUTH_CHANNEL])
                .await?;
            loop {
                let notification = listener.recv().await?;
                if notification.payload() == signals.replica_id() {
                    // Our own news, already announced here when it was committed.
                    continue;
                }
                match notification.channel() {
                    WORK_CHANNEL => signals.work().wake_all(),
                    AUTH_CHANNEL => signals.auth_changed().notify_waiters(),
                    _ => signals.deliveries_available().notify_waiters(),
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "notification listener lost; reconnecting");
        }
        // Whatever was announced while disconnected is found by the waiters' re-checks;
        // a deletion announced then is assumed.
        signals.work().wake_all();
        signals.deliveries_available().notify_waiters();
        signals.auth_changed().notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// With SQLite, other processes (the command line deleting a tenant, say) share the
/// database file but cannot notify: a change in the count of their commits is the news.
async fn watch_foreign_commits(signals: Signals) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        ticker.tick().await;
        match signals.foreign_commits().await {
            Ok(count) => {
                if seen.is_some_and(|seen| seen != count) {
                    signals.auth_changed().notify_waiters();
                }
                seen = Some(count);
            }
            Err(e) => tracing::warn!(error = %e, "could not read SQLite's commit count"),
        }
    }
}
