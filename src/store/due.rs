//! One look at what has become due without anyone announcing it: retry delays and
//! timeouts that ran out, leases nobody renewed, work another replica left, notebook
//! ticks. Commits announce their own news; this look covers the rest for every loop of
//! the engine in one statement, so that an idle server asks its database one question
//! a second rather than one per loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::Mutex;

use super::batches::members_to_settle;
use super::deliveries::Lane;
use super::notebooks::ON_A_SCHEDULE;
use super::operations::{agable, bind_params, claimable_with, Deadline, Param};
use super::{to_ms, Backend, Claim, Result};
use crate::domain::operation::Priority;

#[derive(Clone)]
pub struct DueWork {
    pool: AnyPool,
    backend: Backend,
    /// On PostgreSQL, a connection of its own, outside the pool: the pool tests a
    /// connection with a round trip each time it comes back (and before lending one idle
    /// for a second), which would make each look three. SQLite has no round trips, and
    /// keeps to the pool's one connection.
    connection: Arc<Mutex<Option<AnyConnection>>>,
}

/// What to look for.
#[derive(Debug, Clone, Copy)]
pub struct DueQuery<'a> {
    pub now: DateTime<Utc>,
    /// The types this process's built-in executors run.
    pub builtin_types: &'a [String],
    /// Whether operations have waited long enough to rank higher, for this aging
    /// interval; `None` leaves it out of this look.
    pub aging: Option<Duration>,
}

/// What the look found: which loops have something to do.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DueNow {
    /// Operations the built-in executors can claim.
    pub builtin_work: bool,
    /// Operations of other types in a project that has push workers.
    pub push_work: bool,
    pub timeouts: bool,
    pub expired_leases: bool,
    /// Batch members that finished and whose batch has not moved on yet.
    pub batches: bool,
    /// Some notebook is on a schedule (its loop keeps the time of its ticks).
    pub notebooks: bool,
    pub aging: bool,
    /// Deliveries due and leased to no live dispatcher.
    pub deliveries: bool,
}

impl DueNow {
    pub const EVERYTHING: DueNow = DueNow {
        builtin_work: true,
        push_work: true,
        timeouts: true,
        expired_leases: true,
        batches: true,
        notebooks: true,
        aging: true,
        deliveries: true,
    };
}

impl DueWork {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        DueWork {
            pool,
            backend,
            connection: Arc::default(),
        }
    }

    pub async fn look(&self, query: DueQuery<'_>) -> Result<DueNow> {
        let mut params = vec![Param::Int(to_ms(query.now))];
        let found = |table: &str, condition: &str| {
            format!("(SELECT 1 FROM {table} WHERE {condition} LIMIT 1)")
        };
        let nothing = "CAST(NULL AS BIGINT)".to_owned();
        let builtin_work = if query.builtin_types.is_empty() {
            nothing.clone()
        } else {
            let claim = claim_of(query.builtin_types, &[]);
            found(
                "operations",
                &claimable_with(&mut params, &claim, query.now),
            )
        };
        let push_work = {
            let claim = claim_of(&[], query.builtin_types);
            let claimable = claimable_with(&mut params, &claim, query.now);
            found(
                "operations",
                &format!("{claimable} AND project_id IN (SELECT project_id FROM push_workers)"),
            )
        };
        let aging = match query.aging {
            None => nothing,
            Some(interval) => {
                params.push(Param::Int(Priority::Critical.rank()));
                params.push(Param::Int(interval.as_millis() as i64));
                let (top, interval) = (params.len() - 1, params.len());
                found(
                    "operations",
                    &agable(&format!("${top}"), "$1", &format!("${interval}")),
                )
            }
        };
        let [fresh, retry] = Lane::BOTH.map(|lane| found("deliveries", &lane.due("$1")));
        let sql = format!(
            "SELECT {builtin_work} AS builtin_work, {push_work} AS push_work,
                    {timeouts} AS timeouts, {leases} AS expired_leases,
                    {batches} AS batches, {notebooks} AS notebooks, {aging} AS aging,
                    COALESCE({fresh}, {retry}) AS deliveries",
            timeouts = found("operations", &Deadline::Timeout.passed("$1")),
            leases = found("operations", &Deadline::Lease.passed("$1")),
            batches = found("operations", &members_to_settle()),
            notebooks = found("notebooks", ON_A_SCHEDULE),
        );
        if self.backend == Backend::Sqlite {
            let row = bind_params(sqlx::query(&sql), params)
                .fetch_one(&self.pool)
                .await?;
            return found_in(&row);
        }
        let mut held = self.connection.lock().await;
        let connection = match held.as_mut() {
            Some(connection) => connection,
            None => held.insert(self.pool.acquire().await?.detach()),
        };
        let row = match bind_params(sqlx::query(&sql), params)
            .fetch_one(&mut *connection)
            .await
        {
            Ok(row) => row,
            Err(e) => {
                // Perhaps the connection broke: the next look takes a new one.
                *held = None;
                return Err(e.into());
            }
        };
        found_in(&row)
    }
}

fn found_in(row: &AnyRow) -> Result<DueNow> {
    let yes =
        |column: &str| -> Result<bool> { Ok(row.try_get::<Option<i64>, _>(column)?.is_some()) };
    Ok(DueNow {
        builtin_work: yes("builtin_work")?,
        push_work: yes("push_work")?,
        timeouts: yes("timeouts")?,
        expired_leases: yes("expired_leases")?,
        batches: yes("batches")?,
        notebooks: yes("notebooks")?,
        aging: yes("aging")?,
        deliveries: yes("deliveries")?,
    })
}

fn claim_of<'a>(types: &'a [String], excluded_types: &'a [String]) -> Claim<'a> {
    Claim {
        scope: None,
        types,
        excluded_types,
        max: 1,
        worker_id: None,
    }
}
