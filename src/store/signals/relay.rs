//! The news exchanged with other processes on the same database. On PostgreSQL, commits
//! are announced with a coalesced `pg_notify` and other replicas' announcements arrive
//! through LISTEN; on SQLite, other processes cannot notify, so the count of their
//! commits is watched instead.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;

use super::{Signals, AUTH_CHANNEL, DELIVERY_CHANNEL, EVENT_CHANNEL, WORK_CHANNEL};
use crate::store::{Backend, Result};

impl Signals {
    /// Relays news between this process and the others for as long as it runs.
    pub async fn relay(&self) {
        match self.0.backend {
            Backend::Postgres => {
                tokio::join!(self.relay_to_replicas(), self.relay_from_replicas());
            }
            Backend::Sqlite => self.watch_foreign_commits().await,
        }
    }

    /// Tells other replicas, through `pg_notify`, what commits made available: at most one
    /// notification per channel every few milliseconds, sent after the commits. A NOTIFY
    /// inside the writing transaction would serialize every such commit on PostgreSQL's
    /// notification queue lock.
    async fn relay_to_replicas(&self) {
        let inner = &self.0;
        loop {
            inner.remote.pending.notified().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            for (flag, channel) in [
                (&inner.remote.work, WORK_CHANNEL),
                (&inner.remote.deliveries, DELIVERY_CHANNEL),
                (&inner.remote.events, EVENT_CHANNEL),
            ] {
                if flag.swap(false, Ordering::AcqRel) {
                    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(channel)
                        .bind(inner.replica_id.clone())
                        .execute(&inner.pool)
                        .await
                    {
                        tracing::warn!(error = %e, "could not notify other replicas; they will find the work on their next check");
                    }
                }
            }
        }
    }

    /// Wakes this process's waiters when another replica commits work, deliveries or
    /// events, or deletes tenants, projects or tokens.
    async fn relay_from_replicas(&self) {
        let inner = &self.0;
        loop {
            let result: std::result::Result<(), sqlx::Error> = async {
                let mut listener = sqlx::postgres::PgListener::connect(&inner.url).await?;
                listener
                    .listen_all([WORK_CHANNEL, DELIVERY_CHANNEL, AUTH_CHANNEL, EVENT_CHANNEL])
                    .await?;
                loop {
                    let notification = listener.recv().await?;
                    if notification.payload() == inner.replica_id {
                        // Our own news, already announced here when it was committed.
                        continue;
                    }
                    match notification.channel() {
                        WORK_CHANNEL => inner.work.wake_all(),
                        AUTH_CHANNEL => inner.auth_changed.notify_waiters(),
                        EVENT_CHANNEL => inner.events_written.notify_waiters(),
                        _ => {
                            inner.deliveries_available.notify_waiters();
                            inner.events_written.notify_waiters();
                        }
                    }
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "notification listener lost; reconnecting");
            }
            // Whatever was announced while disconnected is found by the waiters' re-checks;
            // a deletion announced then is assumed.
            inner.work.wake_all();
            inner.deliveries_available.notify_waiters();
            inner.auth_changed.notify_waiters();
            inner.events_written.notify_waiters();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// With SQLite, other processes (the command line deleting a tenant, say) share the
    /// database file but cannot notify: a change in the count of their commits is the news.
    async fn watch_foreign_commits(&self) {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = None;
        loop {
            ticker.tick().await;
            match self.foreign_commits().await {
                Ok(count) => {
                    if seen.is_some_and(|seen| seen != count) {
                        self.0.auth_changed.notify_waiters();
                    }
                    seen = Some(count);
                }
                Err(e) => tracing::warn!(error = %e, "could not read SQLite's commit count"),
            }
        }
    }

    /// SQLite's count of commits made by other connections (another process, such as
    /// the command line) to the database file, as this connection last saw it.
    async fn foreign_commits(&self) -> Result<i64> {
        Ok(sqlx::query("PRAGMA data_version")
            .fetch_one(&self.0.pool)
            .await?
            .try_get(0)?)
    }
}
