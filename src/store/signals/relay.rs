//! The news exchanged with other processes on the same database. On PostgreSQL, commits
//! are announced with a coalesced `pg_notify` and other replicas' announcements arrive
//! through LISTEN; on SQLite, other processes cannot notify, so the count of their
//! commits is watched instead.
//!
//! A notification nobody listens to still costs PostgreSQL a statement, so news is sent
//! only while another replica is known to run: replicas say hello when they start
//! listening, answer hellos, and say they are still here every half minute while they
//! know of others (see [`presence`]). Removed tokens and projects are always announced:
//! the command line, which does not listen, removes them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;

use super::{
    Signals, AUTH_CHANNEL, DELIVERY_CHANNEL, EVENT_CHANNEL, PRESENCE_CHANNEL, WORK_CHANNEL,
};
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
        let mut next_heartbeat = tokio::time::Instant::now() + presence::HEARTBEAT;
        loop {
            tokio::select! {
                () = inner.remote.pending.notified() => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                () = tokio::time::sleep_until(next_heartbeat) => {
                    next_heartbeat += presence::HEARTBEAT;
                    if self.others_known() {
                        inner.remote.presence.store(true, Ordering::Release);
                    }
                }
            }
            let others = self.others_known();
            for (flag, channel) in [
                (&inner.remote.work, WORK_CHANNEL),
                (&inner.remote.deliveries, DELIVERY_CHANNEL),
                (&inner.remote.events, EVENT_CHANNEL),
            ] {
                if flag.swap(false, Ordering::AcqRel) && others {
                    self.notify(channel, &inner.replica_id).await;
                }
            }
            if inner.remote.presence.swap(false, Ordering::AcqRel) {
                self.notify(PRESENCE_CHANNEL, &presence::here(&inner.replica_id))
                    .await;
            }
        }
    }

    async fn notify(&self, channel: &str, payload: &str) {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.0.pool)
            .await
        {
            tracing::warn!(error = %e, "could not notify other replicas; they will find the work on their next check");
        }
    }

    /// Whether another replica was heard from recently enough to be running.
    fn others_known(&self) -> bool {
        presence::others_known(
            self.0.remote.others_heard_at.load(Ordering::Acquire),
            crate::clock::now().timestamp_millis(),
        )
    }

    /// Wakes this process's waiters when another replica commits work, deliveries or
    /// events, or deletes tenants, projects or tokens.
    async fn relay_from_replicas(&self) {
        let inner = &self.0;
        loop {
            let result: std::result::Result<(), sqlx::Error> = async {
                let mut listener = sqlx::postgres::PgListener::connect(&inner.url).await?;
                listener
                    .listen_all([
                        WORK_CHANNEL,
                        DELIVERY_CHANNEL,
                        AUTH_CHANNEL,
                        EVENT_CHANNEL,
                        PRESENCE_CHANNEL,
                    ])
                    .await?;
                // Listening now: whoever runs answers, and sends news from then on.
                self.notify(PRESENCE_CHANNEL, &presence::hello(&inner.replica_id))
                    .await;
                loop {
                    let notification = listener.recv().await?;
                    let heard = presence::heard(notification.payload(), &inner.replica_id);
                    if heard == presence::Heard::Ourselves {
                        // Our own news, already announced here when it was committed.
                        continue;
                    }
                    inner
                        .remote
                        .others_heard_at
                        .store(crate::clock::now().timestamp_millis(), Ordering::Release);
                    match (notification.channel(), heard) {
                        (PRESENCE_CHANNEL, presence::Heard::Hello) => {
                            inner.remote.presence.store(true, Ordering::Release);
                            inner.remote.pending.notify_one();
                        }
                        (PRESENCE_CHANNEL, _) => {}
                        (WORK_CHANNEL, _) => inner.work.wake_all(),
                        (AUTH_CHANNEL, _) => inner.auth_changed.notify_waiters(),
                        (EVENT_CHANNEL, _) => inner.events_written.notify_waiters(),
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

/// Which replicas run, as far as notifications tell.
mod presence {
    use std::time::Duration;

    /// How often a replica that knows of others says it is still here.
    pub(super) const HEARTBEAT: Duration = Duration::from_secs(30);
    /// A replica not heard from for this long (two and a half heartbeats) has stopped.
    const FORGOTTEN_AFTER_MS: i64 = 75_000;

    pub(super) fn hello(replica: &str) -> String {
        format!("hello:{replica}")
    }

    pub(super) fn here(replica: &str) -> String {
        format!("here:{replica}")
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Heard {
        /// Our own notification, echoed.
        Ourselves,
        /// Another replica started listening: it wants an answer.
        Hello,
        /// Anything else another replica sent.
        Other,
    }

    /// Presence payloads name their sender after a prefix; news payloads are the
    /// sender's id itself.
    pub(super) fn heard(payload: &str, ours: &str) -> Heard {
        let (kind, sender) = match payload.split_once(':') {
            Some((kind, sender)) => (Some(kind), sender),
            None => (None, payload),
        };
        match kind {
            _ if sender == ours => Heard::Ourselves,
            Some("hello") => Heard::Hello,
            _ => Heard::Other,
        }
    }

    /// `heard_at`: when another replica was last heard from (0: never).
    pub(super) fn others_known(heard_at: i64, now: i64) -> bool {
        heard_at > 0 && now - heard_at < FORGOTTEN_AFTER_MS
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_replica_tells_its_own_echo_from_others_news_and_hellos() {
            assert_eq!(heard("abc", "abc"), Heard::Ourselves);
            assert_eq!(heard(&hello("abc"), "abc"), Heard::Ourselves);
            assert_eq!(heard(&here("abc"), "abc"), Heard::Ourselves);
            assert_eq!(heard(&hello("def"), "abc"), Heard::Hello);
            assert_eq!(heard(&here("def"), "abc"), Heard::Other);
            assert_eq!(heard("def", "abc"), Heard::Other);
        }

        #[test]
        fn others_are_known_until_they_miss_two_heartbeats() {
            assert!(!others_known(0, 1_000_000));
            assert!(others_known(1_000_000, 1_000_000));
            let heartbeat = HEARTBEAT.as_millis() as i64;
            assert!(others_known(1_000_000, 1_000_000 + 2 * heartbeat));
            assert!(!others_known(1_000_000, 1_000_000 + 3 * heartbeat));
        }
    }
}
