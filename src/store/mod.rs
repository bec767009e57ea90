//! All SQL lives here. One database serves PostgreSQL and SQLite through sqlx's `Any`
//! driver: the schema keeps to types both share (TEXT, BIGINT, JSON as text, times as
//! epoch milliseconds), so every query is written once and the two backends cannot drift.
//! The few real differences (row locking, the feed horizon, cross-replica wake-ups) follow
//! [`Backend`].
//!
//! [`Store`] connects and hands out one part per concern: [`Operations`] (with the group
//! commit that writes them), [`Batches`], [`Notebooks`] (whose runs are batches), [`Events`], [`Deliveries`] (the outbox),
//! [`Webhooks`], [`PushWorkers`], [`Tenants`], [`Idempotency`], [`Breakout`] (on the
//! analytics database), [`DueWork`] (the engine's one look at what the clock made due),
//! and [`Signals`], the wake-ups that follow commits. Each part is
//! cheap to clone, so a loop or a handle takes only the parts it uses.

mod batches;
pub mod breakout;
mod clients;
mod deliveries;
mod due;
mod events;
mod group_commit;
mod idempotency;
mod integrations;
mod notebooks;
mod operations;
mod sealed;
mod signals;
mod syncs;
mod tasks;
mod tenants;
mod webhooks;
mod workers;
mod writes;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

pub use batches::{BatchCancelError, BatchMember, BatchPage, BatchRetryError, Batches};
pub use breakout::Breakout;
pub use clients::Clients;
pub use deliveries::{
    AttemptEntry, ClaimBudget, ClaimedDelivery, Deliveries, DeliveryAttempt, DeliveryView,
    EventDelivery, Handed, Held,
};
pub use due::{DueNow, DueQuery, DueWork};
pub use events::{
    Events, FeedCursor, FeedEvent, FeedPage, StoredEvent, SubjectEvent, COUNTED_TYPES,
};
pub use idempotency::{Idempotency, IdempotencyKey, IdempotencyRecord, StoredResponse};
pub use integrations::{IntegrationStatus, Integrations, SlackIntegration, StoredAlertContacts};
pub use notebooks::{
    ChangeError, NotebookPage, Notebooks, RunPage, RunStarted, RunView, SchedulePass,
    StartRunError, Written,
};
pub use operations::{Claim, CreateOutcome, OperationPage, Operations, StatusCounts};
pub use sealed::Resealed;
pub use signals::{GateKey, Signals, WorkSignal};
pub use syncs::{CursorReset, StoredCredential, SyncSink, SyncState, SyncView, Syncs, Taken};
pub use tasks::TaskRows;
pub use tenants::{Removed, Tenants};
pub use webhooks::{
    CallbackStats, DeliveryStats, NotificationStats, Webhooks, WEBHOOK_REGISTRATION_SCOPE,
};
pub use workers::{PushTask, PushWorkers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }

    /// Row locks for claiming work. SQLite has a single writer, so it needs none.
    fn skip_locked(self) -> &'static str {
        match self {
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
            Self::Sqlite => "",
        }
    }

    /// Locks only the rows of `table` in a join.
    fn for_update_of(self, table: &str) -> String {
        match self {
            Self::Postgres => format!(" FOR UPDATE OF {table}"),
            Self::Sqlite => String::new(),
        }
    }

    /// The dialect of breakout tables written into this database.
    fn dialect(self) -> breakout::Dialect {
        match self {
            Self::Postgres => breakout::Dialect::Postgres,
            Self::Sqlite => breakout::Dialect::Sqlite,
        }
    }

    fn for_update(self) -> &'static str {
        match self {
            Self::Postgres => " FOR UPDATE",
            Self::Sqlite => "",
        }
    }

    /// Begins a transaction whose statements are planned once per pooled connection and
    /// the plan reused. For the engine's hot reads by key lists (the claim, the batch
    /// scheduler's edges and members) PostgreSQL otherwise keeps planning afresh, because
    /// a plan made for the values looks cheaper than the reusable one: planning those
    /// joins took several times their execution (0.4 ms against 0.03–0.1 ms). Sent with
    /// the `BEGIN`, so it costs no round trip.
    async fn begin_reusing_plans(
        self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self {
            Self::Postgres => {
                pool.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
                    .await?
            }
            Self::Sqlite => pool.begin().await?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use postgres://… or sqlite:… (or, for the analytics database only, mysql://…)")]
    UnsupportedUrl(String),
    #[error("the database writer stopped before answering")]
    WriterGone,
    /// A stored secret sealed under a key this process was not given, or damaged.
    #[error("the secret stored in {place} cannot be opened: {error}")]
    Secret {
        place: String,
        error: crate::secrets::OpenError,
    },
    #[error("this store was opened without the secret key, so it cannot read or write secrets")]
    NoSecretKey,
    /// The failure of a write shared by several requests, as each of them sees it.
    #[error("{message}")]
    Shared {
        message: String,
        unavailable: bool,
        owner_gone: bool,
    },
}

impl StoreError {
    fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// The transaction was rolled back to break a deadlock (PostgreSQL's `40P01`, MySQL's
    /// `40001`): it may simply run again.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e))
            if e.code().is_some_and(|c| matches!(c.as_ref(), "40001" | "40P01" | "1213")))
    }

    /// The pool could not hand out a connection in time, the server is unreachable, or it
    /// is shutting down or starting up: trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            // A protocol error means the stream broke off mid-message (or mid-handshake).
            Self::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_),
            ) => true,
            Self::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                // Connection exceptions, and the server going down or not yet up
                // (admin_shutdown, crash_shutdown, cannot_connect_now).
                code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
            }),
            Self::Shared { unavailable, .. } => *unavailable,
            _ => false,
        }
    }

    /// A row referred to a tenant or project (or another parent) that no longer exists:
    /// it was deleted while the request was under way.
    pub fn is_owner_gone(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => {
                e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation
                    // SQLite's extended code for a failed foreign key (the `Any` driver
                    // does not always classify it).
                    || e.code().is_some_and(|code| code == "787")
                    || e.message().contains("FOREIGN KEY constraint failed")
            }
            Self::Shared { owner_gone, .. } => *owner_gone,
            _ => false,
        }
    }

    pub(super) fn shared(&self) -> Self {
        Self::Shared {
            message: self.to_string(),
            unavailable: self.is_unavailable(),
            owner_gone: self.is_owner_gone(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long a pooled PostgreSQL connection may sit unused before it is pinged on acquire.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// A pool for `url`, with the settings its backend needs; the URL as connected.
/// `check_every_use`: when set, every pooled PostgreSQL connection is pinged before use
/// (see [`Store::check_connections_before_use`]).
async fn open_pool(
    url: &str,
    check_every_use: Arc<AtomicBool>,
) -> Result<(AnyPool, Backend, String)> {
    sqlx::any::install_default_drivers();
    let backend = Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(url.into()))?;
    let url = match backend {
        // Create the file on first start, as an embedded database should.
        Backend::Sqlite if !url.contains("mode=") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        }
        _ => url.to_owned(),
    };
    let options = AnyConnectOptions::from_str(&url)?;
    // The pool retries a failed connect until its acquire timeout runs out, then reports
    // only that it timed out: one direct connection first fails at once with the cause
    // (connection refused, authentication failed, no such database).
    AnyConnection::connect_with(&options).await?.close().await?;
    let pool = match backend {
        Backend::Postgres => AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every acquire would add a round trip to each transaction; a
            // connection used moments ago is alive, so only one that sat idle is checked.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let check = check_every_use.load(Ordering::Relaxed);
                Box::pin(async move {
                    if check {
                        // A connection that fails is replaced, not handed to its user.
                        return Ok(conn.ping().await.is_ok());
                    }
                    if meta.idle_for > IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?,
        // One writer at a time is SQLite's nature; one connection makes that explicit
        // and avoids lock-upgrade failures between our own connections.
        Backend::Sqlite => AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?,
    };
    Ok((pool, backend, url))
}

/// A pool for a MySQL or MariaDB analytics database (breakout tables only: Relais keeps
/// none of its own state there).
async fn open_mysql_pool(url: &str) -> Result<(AnyPool, breakout::Dialect, String)> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url)?;
    AnyConnection::connect_with(&options).await?.close().await?;
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        // Under REPEATABLE READ, InnoDB locks the gaps a delete of absent rows searched,
        // and chunks written side by side then deadlock on each other's inserts.
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok((pool, breakout::Dialect::Mysql, url.to_owned()))
}

/// The database, connected and migrated, and its parts. Cheap to clone: clones share
/// the pools, the group commit and the signals.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: Arc<str>,
    signals: Signals,
    operations: Operations,
    batches: Batches,
    notebooks: Notebooks,
    events: Events,
    deliveries: Deliveries,
    webhooks: Webhooks,
    integrations: Integrations,
    push_workers: PushWorkers,
    tenants: Tenants,
    idempotency: Idempotency,
    breakout: Breakout,
    syncs: Syncs,
    clients: Clients,
    due: DueWork,
    /// Seals the secrets written and opens those read, once given the keys.
    sealer: sealed::Sealer,
    /// See [`Store::check_connections_before_use`].
    check_every_use: Arc<AtomicBool>,
}

impl Store {
    pub async fn connect(url: &str) -> Result<Self> {
        let check_every_use = Arc::new(AtomicBool::new(false));
        let (pool, backend, url) = open_pool(url, check_every_use.clone()).await?;
        let url: Arc<str> = url.into();
        let sealer = sealed::Sealer::default();
        let signals = Signals::new(pool.clone(), backend, url.clone());
        let operations = Operations::new(pool.clone(), backend, signals.clone());
        let breakout = Breakout::new(
            pool.clone(),
            backend,
            url.clone(),
            breakout::Analytics::new(pool.clone(), backend.dialect(), &url),
        );
        let batches = Batches::new(pool.clone(), backend, operations.clone(), signals.clone());
        Ok(Store {
            notebooks: Notebooks::new(pool.clone(), backend, batches.clone(), signals.clone()),
            batches,
            events: Events::new(pool.clone(), backend),
            deliveries: Deliveries::new(pool.clone(), backend, signals.clone(), sealer.clone()),
            webhooks: Webhooks::new(pool.clone(), sealer.clone()),
            integrations: Integrations::new(pool.clone(), sealer.clone()),
            push_workers: PushWorkers::new(
                pool.clone(),
                backend,
                operations.clone(),
                signals.clone(),
                sealer.clone(),
            ),
            tenants: Tenants::new(pool.clone(), signals.clone(), breakout.clone()),
            idempotency: Idempotency::new(pool.clone(), sealer.clone()),
            syncs: Syncs::new(pool.clone(), backend, signals.clone(), sealer.clone()),
            clients: Clients::new(pool.clone(), sealer.clone()),
            due: DueWork::new(pool.clone(), backend),
            breakout,
            operations,
            signals,
            pool,
            backend,
            url,
            sealer,
            check_every_use,
        })
    }

    /// From now on each pooled connection is checked with a round trip before it is used.
    /// While the HTTP server stops, its workers' runtimes end one by one, and a connection
    /// one of them opened fails with its runtime: checked, it is replaced instead of
    /// failing the request (or the release) that drew it.
    pub fn check_connections_before_use(&self) {
        self.check_every_use.store(true, Ordering::Relaxed);
    }

    /// From now on, secrets are sealed with these keys when written and opened when read.
    pub fn with_secret_keys(self, keys: Arc<crate::secrets::SecretKeys>) -> Self {
        self.sealer.give(keys);
        self
    }

    /// From now on, breakout tables (and the record of what was written into them) go
    /// into this database instead of the main one.
    pub async fn with_analytics_database(self, url: &str) -> Result<Self> {
        let (pool, dialect, url) = match breakout::Dialect::from_url(url) {
            Some(breakout::Dialect::Mysql) => open_mysql_pool(url).await?,
            _ => {
                let (pool, backend, url) = open_pool(url, Default::default()).await?;
                (pool, backend.dialect(), url)
            }
        };
        let analytics = breakout::Analytics::new(pool, dialect, &url);
        analytics.create_bookkeeping().await?;
        Ok(self.with_analytics(analytics))
    }

    /// From now on, each project's breakout tables go into a schema of its own
    /// (`breakout_<project>`), so that projects never share a table name. PostgreSQL only:
    /// refused for a SQLite analytics database. Given after the analytics database.
    pub fn with_breakout_schema_per_project(self) -> std::result::Result<Self, String> {
        let analytics = self.breakout.analytics().with_schema_per_project()?;
        Ok(self.with_analytics(analytics))
    }

    /// Breakout tables go to `analytics`: the breakout part, and the tenants part that
    /// drops a deleted project's tables, are made anew around it.
    fn with_analytics(mut self, analytics: Arc<breakout::Analytics>) -> Self {
        self.breakout = Breakout::new(self.pool.clone(), self.backend, self.url.clone(), analytics);
        self.tenants = Tenants::new(
            self.pool.clone(),
            self.signals.clone(),
            self.breakout.clone(),
        );
        self
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool once the writes started after a commit (releases of deliveries a
    /// stopping dispatcher no longer took) are done.
    pub async fn close(&self) {
        self.signals.releases_done().await;
        self.pool.close().await;
    }

    /// This process's wake-ups, and the news it exchanges with other replicas.
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    pub fn operations(&self) -> &Operations {
        &self.operations
    }

    pub fn batches(&self) -> &Batches {
        &self.batches
    }

    pub fn notebooks(&self) -> &Notebooks {
        &self.notebooks
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    pub fn integrations(&self) -> &Integrations {
        &self.integrations
    }

    pub fn push_workers(&self) -> &PushWorkers {
        &self.push_workers
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    pub fn breakout(&self) -> &Breakout {
        &self.breakout
    }

    pub fn syncs(&self) -> &Syncs {
        &self.syncs
    }

    /// The main pool's connections: (open, idle).
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub fn due(&self) -> &DueWork {
        &self.due
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::corrupt(format!("time {ms}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values always serialize")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("{column}: {e}")))
}

/// `($1, $2, $3), ($4, $5, $6)` for a multi-row insert.
/// Splits `items` into runs whose lengths are powers of two, none longer than `max`
/// (13 items: 8, 4, 1). A multi-row statement's text depends on its row count; with few
/// distinct counts, each connection prepares a handful of statements and reuses them
/// instead of parsing and planning a new text for every batch size.
fn sized_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let largest = 1 << max.max(1).ilog2();
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let take = largest.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        Some(chunk)
    })
}

/// Splits keys into the groups of one [`one_of`] statement each. On PostgreSQL a group
/// of any length up to `max` is one statement (an `IN` list of up to a few keys, whose
/// texts are few, or one array parameter beyond); elsewhere the groups are
/// [`sized_chunks`]. A scheduler pass settling 11 members was three statements as 8, 2
/// and 1 keys.
fn key_chunks<T>(backend: Backend, items: &[T], max: usize) -> Vec<&[T]> {
    match backend {
        Backend::Postgres => items.chunks(max.max(1)).collect(),
        Backend::Sqlite => sized_chunks(items, max).collect(),
    }
}

/// `column` is one of `values`: an `IN` list, or on PostgreSQL beyond a few values
/// `column = ANY($first::text[])`, one parameter whatever their number, so that the
/// statement's text and plan are reused (see [`writes`] for why not with a few).
/// Returns the condition and the parameters to bind, in order.
fn one_of(
    backend: Backend,
    column: &str,
    first: usize,
    values: &[String],
) -> (String, Vec<String>) {
    match backend {
        Backend::Postgres if values.len() > writes::FEW_ROWS => {
            let mut literal = String::with_capacity(values.iter().map(|v| v.len() + 3).sum());
            literal.push('{');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    literal.push(',');
                }
                literal.push('"');
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        literal.push('\\');
                    }
                    literal.push(c);
                }
                literal.push('"');
            }
            literal.push('}');
            (format!("{column} = ANY(${first}::text[])"), vec![literal])
        }
        Backend::Postgres | Backend::Sqlite => (
            format!("{column} IN ({})", placeholders(first, values.len())),
            values.to_vec(),
        ),
    }
}

/// `$first, $first+1, …`: `n` numbered parameters, for an `IN (…)` list or a row.
fn placeholders(first: usize, n: usize) -> String {
    let mut text = String::with_capacity(n * 6);
    push_placeholders(&mut text, first, n);
    text
}

/// Appends `$first, $first+1, …` to `text`. Multi-row statements are written on every
/// batch, thousands of parameters each: one buffer, not a string per parameter.
fn push_placeholders(text: &mut String, first: usize, n: usize) {
    use std::fmt::Write;
    for i in first..first + n {
        if i > first {
            text.push_str(", ");
        }
        let _ = write!(text, "${i}");
    }
}

/// The statement that writes one row whole, its values bound in the order of `columns`
/// (a list joined by `, `, the row's key first): an `INSERT`, or an `UPDATE` of every
/// other column where the key is `$1`.
fn write_row_sql(table: &str, columns: &str, insert: bool) -> String {
    let names: Vec<&str> = columns.split(", ").collect();
    if insert {
        return format!(
            "INSERT INTO {table} ({columns}) VALUES ({})",
            placeholders(1, names.len())
        );
    }
    let assignments: Vec<String> = names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    format!(
        "UPDATE {table} SET {} WHERE {} = $1",
        assignments.join(", "),
        names[0]
    )
}

fn values_placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut text = String::with_capacity(rows * (columns * 7 + 4));
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        push_placeholders(&mut text, first + r * columns, columns);
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_written_whole_by_its_key() {
        assert_eq!(
            write_row_sql("t", "id, a, b", true),
            "INSERT INTO t (id, a, b) VALUES ($1, $2, $3)"
        );
        assert_eq!(
            write_row_sql("t", "id, a, b", false),
            "UPDATE t SET a = $2, b = $3 WHERE id = $1"
        );
    }

    #[test]
    fn one_of_is_a_list_or_on_postgres_beyond_a_few_one_array_parameter() {
        let mut values = vec!["a".to_owned(), "q\"b\\c".to_owned()];
        for backend in [Backend::Postgres, Backend::Sqlite] {
            assert_eq!(
                one_of(backend, "id", 3, &values),
                ("id IN ($3, $4)".to_owned(), values.clone())
            );
        }
        values.extend((0..writes::FEW_ROWS).map(|i| i.to_string()));
        let (condition, binds) = one_of(Backend::Postgres, "id", 3, &values);
        assert_eq!(condition, "id = ANY($3::text[])");
        assert_eq!(binds.len(), 1);
        assert!(
            binds[0].starts_with(r#"{"a","q\"b\\c","0","1""#),
            "{binds:?}"
        );
        assert_eq!(one_of(Backend::Sqlite, "id", 3, &values).1, values);
    }

    #[test]
    fn keys_are_one_statement_each_up_to_the_limit_on_postgres() {
        let keys: Vec<u32> = (0..11).collect();
        let lengths = |backend| -> Vec<usize> {
            key_chunks(backend, &keys, 8)
                .iter()
                .map(|chunk| chunk.len())
                .collect()
        };
        assert_eq!(lengths(Backend::Postgres), vec![8, 3]);
        assert_eq!(lengths(Backend::Sqlite), vec![8, 2, 1]);
        assert_eq!(key_chunks(Backend::Postgres, &keys, 512), vec![&keys[..]]);
        assert!(key_chunks(Backend::Postgres, &[] as &[u32], 8).is_empty());
    }

    #[test]
    fn placeholders_number_rows_consecutively() {
        assert_eq!(values_placeholders(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(values_placeholders(1, 1, 1), "($1)");
        assert_eq!(values_placeholders(0, 3, 1), "");
        assert_eq!(placeholders(9, 3), "$9, $10, $11");
        assert_eq!(placeholders(4, 0), "");
    }

    #[test]
    fn chunks_are_powers_of_two_within_the_limit() {
        let items: Vec<u32> = (0..13).collect();
        let lengths: Vec<usize> = sized_chunks(&items, 100).map(<[u32]>::len).collect();
        assert_eq!(lengths, [8, 4, 1]);
        let items: Vec<u32> = (0..300).collect();
        let chunks: Vec<&[u32]> = sized_chunks(&items, 100).collect();
        assert!(chunks
            .iter()
            .all(|c| c.len().is_power_of_two() && c.len() <= 64));
        assert_eq!(chunks.concat(), items, "every item once, in order");
        assert_eq!(sized_chunks(&[] as &[u32], 8).count(), 0);
    }

    #[test]
    fn backends_are_recognised_by_url() {
        assert_eq!(
            Backend::from_url("sqlite://relais.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://x"), None);
    }
}
