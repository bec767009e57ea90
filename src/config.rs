//! Server configuration, from flags or `RELAIS_*` environment variables.

use std::time::Duration;

/// Default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://relais.db";
/// Default key file for secrets at rest, beside the default database.
pub const DEFAULT_SECRET_KEY_FILE: &str = "relais.key";

/// Where the key that seals secrets at rest (signing secrets of webhooks, push workers and
/// callbacks) comes from. Every command that opens the database for the service takes it.
#[derive(Clone, clap::Args)]
pub struct SecretKeyArgs {
    /// The key that seals stored secrets: 32 bytes in base64 (`openssl rand -base64 32`).
    /// Without it, the key file is used.
    #[arg(long, global = true, env = "RELAIS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// The file holding the key when RELAIS_SECRET_KEY is not set; created (readable by its
    /// owner only) with a new key when it does not exist. Losing it loses the secrets.
    #[arg(long, global = true, env = "RELAIS_SECRET_KEY_FILE", default_value = DEFAULT_SECRET_KEY_FILE)]
    pub secret_key_file: std::path::PathBuf,
    /// Comma-separated keys used before the current one: they still open what they sealed
    /// while the service seals it again under the current key (see README, key rotation).
    #[arg(
        long,
        global = true,
        env = "RELAIS_PREVIOUS_SECRET_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_secret_keys: Vec<String>,
}

impl Default for SecretKeyArgs {
    fn default() -> Self {
        SecretKeyArgs {
            secret_key: None,
            secret_key_file: DEFAULT_SECRET_KEY_FILE.into(),
            previous_secret_keys: Vec::new(),
        }
    }
}

/// Keys stay out of logs and panic messages: only whether they are set, and the file.
impl std::fmt::Debug for SecretKeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeyArgs")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "…"))
            .field("secret_key_file", &self.secret_key_file)
            .field("previous_secret_keys", &self.previous_secret_keys.len())
            .finish()
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RELAIS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Seconds a worker may go without reporting before its lease is taken back.
    #[arg(long, env = "RELAIS_HEARTBEAT_TIMEOUT", default_value_t = 30.0)]
    pub heartbeat_timeout: f64,
    /// Attempts in a row that lose their lease (their worker died or hung before reporting
    /// how they ended) after which an operation fails for good as POISONED: it may be
    /// killing the processes that run it (0: never).
    #[arg(long, env = "RELAIS_MAX_LOST_LEASES", default_value_t = 3)]
    pub max_lost_leases: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RELAIS_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "RELAIS_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Seconds a receiver has to answer a delivery.
    #[arg(long, env = "RELAIS_DELIVERY_TIMEOUT", default_value_t = 15.0)]
    pub delivery_timeout: f64,
    /// Multiplies every retry delay (1 = as configured; tests use small values).
    #[arg(long, env = "RELAIS_RETRY_TIME_SCALE", default_value_t = 1.0)]
    pub retry_time_scale: f64,
    /// Allow webhooks, callbacks and workers on private, loopback and link-local addresses
    /// (for local development; true/false, 1/0, yes/no, on/off).
    #[arg(
        long,
        env = "RELAIS_ALLOW_PRIVATE_TARGETS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_private_targets: bool,
    /// Seconds an endpoint may fail every delivery before it is disabled (default 5 days).
    #[arg(long, env = "RELAIS_ENDPOINT_DISABLE_AFTER", default_value_t = 432_000)]
    pub endpoint_disable_after: u64,
    /// Seconds an old secret keeps signing after a rotation (default 24 h).
    #[arg(long, env = "RELAIS_SECRET_OVERLAP", default_value_t = 86_400)]
    pub secret_overlap: u64,
    /// Days settled deliveries, attempts and events are kept.
    #[arg(long, env = "RELAIS_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u64,
    /// Hours the answer to a request with an `Idempotency-Key` is kept (a retry after that
    /// is a new request), as Stripe does.
    #[arg(long, env = "RELAIS_IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24)]
    pub idempotency_retention_hours: u64,
    /// Seconds an event stream (`…/events/stream`) stays open before the server ends it;
    /// its client reconnects with `Last-Event-ID`, to whichever replica the load balancer
    /// picks, so long-lived streams do not pile up on the oldest replicas.
    #[arg(long, env = "RELAIS_EVENT_STREAM_LIFETIME", default_value_t = 600.0)]
    pub event_stream_lifetime: f64,
    /// Seconds an operation waits in the queue before it ranks one priority higher.
    #[arg(long, env = "RELAIS_PRIORITY_AGING", default_value_t = 60.0)]
    pub priority_aging: f64,
    /// The URL push workers reach this service at (default: http:// and the bound address).
    #[arg(long, env = "RELAIS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Built-in operations run at once by this process.
    #[arg(long, env = "RELAIS_EXECUTOR_CONCURRENCY", default_value_t = 16)]
    pub executor_concurrency: usize,
    /// Seconds a sync's source has to answer one page.
    #[arg(long, env = "RELAIS_SOURCE_TIMEOUT", default_value_t = 60.0)]
    pub source_timeout: f64,
    /// Where CSPro breakouts write their tables (default: the main database).
    #[arg(long, env = "RELAIS_ANALYTICS_DATABASE_URL")]
    pub analytics_database_url: Option<String>,
    /// On PostgreSQL, give each project's breakout tables a schema of its own
    /// (`breakout_<project id>`), so that projects never share a table name.
    #[arg(
        long,
        env = "RELAIS_BREAKOUT_SCHEMA_PER_PROJECT",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub breakout_schema_per_project: bool,
    /// Server-side CSPro files registered by path must lie in this directory (default:
    /// any file the server can read, for admin tokens).
    #[arg(long, env = "RELAIS_BREAKOUT_DATA_DIR")]
    pub breakout_data_dir: Option<std::path::PathBuf>,
    /// Largest CSPro dictionary accepted, in bytes: an uploaded `dictionary` part, a
    /// `dictionaryPath` file, or the dictionary inside a `.csdb`.
    #[arg(long, env = "RELAIS_BREAKOUT_DICTIONARY_LIMIT", default_value_t = 4 * 1024 * 1024)]
    pub breakout_dictionary_limit: u64,
    /// Largest uploaded CSPro data file (the `data` part), in bytes.
    #[arg(long, env = "RELAIS_BREAKOUT_UPLOAD_LIMIT", default_value_t = 512 * 1024 * 1024)]
    pub breakout_upload_limit: u64,
    /// Deliveries in flight at once, over all endpoints.
    #[arg(long, env = "RELAIS_DELIVERY_CONCURRENCY", default_value_t = 256)]
    pub delivery_concurrency: usize,
    /// Deliveries in flight at once to one endpoint, at most. An endpoint starts at a
    /// quarter of it and earns more by answering quickly while deliveries wait for it.
    #[arg(long, env = "RELAIS_ENDPOINT_CONCURRENCY", default_value_t = 128)]
    pub endpoint_concurrency: usize,
    /// Seconds from the first SIGTERM (or Ctrl-C) to the process's exit, at most: requests
    /// in flight finish, built-in executors hand their attempts back, deliveries in flight
    /// finish and the rest go back to the queue; what is still running then is left to its
    /// lease.
    #[arg(long, env = "RELAIS_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Seconds, within the grace, between the first signal and closing the listener:
    /// meanwhile `/readyz` answers 503 and `/v1/status` `ShutdownInProgress`, so load
    /// balancers stop sending work first. A second signal skips the wait.
    #[arg(long, env = "RELAIS_SHUTDOWN_DELAY", default_value_t = 2.0)]
    pub shutdown_delay: f64,
    /// The SMTP server notification mails go through: `smtp://host:port`,
    /// `smtp://host:port?tls=required` (STARTTLS), `smtps://host:port` (TLS), with
    /// `user:password@` if it asks for them. Without it, mail notifications are refused.
    #[arg(long, env = "RELAIS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of notification mails: `Relais <relais@example.com>` or an address.
    #[arg(long, env = "RELAIS_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// The key OAuth2 access tokens are signed with (HMAC-SHA256), at least 32 bytes.
    /// Without it, one is generated on first start and stored (sealed) in the database,
    /// so every replica signs with the same key.
    #[arg(long, env = "RELAIS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Seconds an OAuth2 access token is valid.
    #[arg(long, env = "RELAIS_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    pub access_token_ttl: u64,
    /// Requests per second one token (or one OAuth2 client) may make to this process;
    /// beyond it, 429 with `Retry-After`. Unset: no limit.
    #[arg(long, env = "RELAIS_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests a token may make at once above its rate (default: twice the rate).
    #[arg(long, env = "RELAIS_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
}

/// Requests per second per token, and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// How OAuth2 access tokens are signed and how long they last.
#[derive(Clone)]
pub struct AccessTokenConfig {
    /// `None`: the key stored in the database (generated on first start).
    pub secret: Option<String>,
    pub ttl: Duration,
}

impl std::fmt::Debug for AccessTokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenConfig")
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Where notification mails go out.
#[derive(Clone)]
pub struct SmtpConfig {
    pub url: String,
    pub from: String,
}

/// The URL may hold a password: only its host shows.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        f.debug_struct("SmtpConfig")
            .field("host", &host)
            .field("from", &self.from)
            .finish()
    }
}

/// How events are delivered and where Relais may send requests.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a receiver has to answer.
    pub request_timeout: Duration,
    /// Multiplies retry-policy delays; below 1 in tests so retries take milliseconds.
    pub retry_time_scale: f64,
    /// Webhooks, callbacks and workers may be on private, loopback and link-local addresses.
    pub allow_private_targets: bool,
    /// How long an endpoint may fail every delivery before it is disabled.
    pub disable_after: Duration,
    /// Deliveries in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Deliveries in flight at once to one endpoint, at most; it starts at a quarter.
    pub per_endpoint: usize,
    /// How long settled deliveries, attempts and events are kept.
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    pub heartbeat_timeout: Duration,
    pub max_lost_leases: u32,
    pub body_limit: usize,
    pub http_workers: Option<usize>,
    pub delivery: DeliveryConfig,
    pub secret_overlap: Duration,
    pub priority_aging: Duration,
    pub executor_concurrency: usize,
    pub source_timeout: Duration,
    pub idempotency_retention: Duration,
    pub event_stream_lifetime: Duration,
    pub public_url: Option<String>,
    pub analytics_database_url: Option<String>,
    pub breakout_schema_per_project: bool,
    /// Canonical: a path is confined by comparing canonical prefixes.
    pub breakout_data_dir: Option<std::path::PathBuf>,
    pub breakout_dictionary_limit: u64,
    pub breakout_upload_limit: u64,
    pub secret_keys: SecretKeyArgs,
    /// `None`: mail notifications are refused.
    pub smtp: Option<SmtpConfig>,
    /// The longest a stop takes, from the first signal to the exit.
    pub shutdown_grace: Duration,
    /// How long, within the grace, the process says it is shutting down before it stops
    /// listening.
    pub shutdown_delay: Duration,
    pub access_tokens: AccessTokenConfig,
    /// `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

impl Config {
    pub fn new(
        database_url: String,
        secret_keys: SecretKeyArgs,
        args: ServeArgs,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.heartbeat_timeout.is_finite() && (0.1..=3600.0).contains(&args.heartbeat_timeout),
            "--heartbeat-timeout must be between 0.1 and 3600 seconds"
        );
        anyhow::ensure!(
            args.body_limit >= 1024,
            "--body-limit must be at least 1024 bytes"
        );
        anyhow::ensure!(
            args.delivery_timeout.is_finite() && (0.1..=300.0).contains(&args.delivery_timeout),
            "--delivery-timeout must be between 0.1 and 300 seconds"
        );
        anyhow::ensure!(
            args.jwt_secret.as_ref().is_none_or(|s| s.len() >= 32),
            "--jwt-secret must be at least 32 bytes"
        );
        let rate_limit = match args.rate_limit {
            None => {
                anyhow::ensure!(
                    args.rate_limit_burst.is_none(),
                    "--rate-limit-burst needs --rate-limit"
                );
                None
            }
            Some(rate) => {
                let per_second = std::num::NonZeroU32::new(rate)
                    .ok_or_else(|| anyhow::anyhow!("--rate-limit must be at least 1"))?;
                let burst = std::num::NonZeroU32::new(
                    args.rate_limit_burst.unwrap_or(rate.saturating_mul(2)),
                )
                .ok_or_else(|| anyhow::anyhow!("--rate-limit-burst must be at least 1"))?;
                Some(RateLimit { per_second, burst })
            }
        };
        anyhow::ensure!(
            (1..=86_400).contains(&args.access_token_ttl),
            "--access-token-ttl must be between 1 and 86400 seconds"
        );
        anyhow::ensure!(
            args.source_timeout.is_finite() && (0.1..=3600.0).contains(&args.source_timeout),
            "--source-timeout must be between 0.1 and 3600 seconds"
        );
        anyhow::ensure!(
            args.retry_time_scale.is_finite() && args.retry_time_scale >= 0.0,
            "--retry-time-scale must be zero or more"
        );
        anyhow::ensure!(
            args.priority_aging.is_finite() && args.priority_aging >= 0.1,
            "--priority-aging must be at least 0.1 seconds"
        );
        anyhow::ensure!(
            args.shutdown_grace.is_finite() && (0.0..=300.0).contains(&args.shutdown_grace),
            "--shutdown-grace must be between 0 and 300 seconds"
        );
        anyhow::ensure!(
            args.shutdown_delay.is_finite() && (0.0..=300.0).contains(&args.shutdown_delay),
            "--shutdown-delay must be between 0 and 300 seconds"
        );
        // Each slot is a permit of a semaphore, and as many places again wait in memory.
        const MOST_IN_FLIGHT: usize = 100_000;
        anyhow::ensure!(
            (1..=MOST_IN_FLIGHT).contains(&args.delivery_concurrency),
            "RELAIS_DELIVERY_CONCURRENCY (--delivery-concurrency) must be between 1 and {MOST_IN_FLIGHT}"
        );
        anyhow::ensure!(
            (1..=MOST_IN_FLIGHT).contains(&args.endpoint_concurrency),
            "RELAIS_ENDPOINT_CONCURRENCY (--endpoint-concurrency) must be between 1 and {MOST_IN_FLIGHT}"
        );
        let breakout_data_dir = args
            .breakout_data_dir
            .map(|dir| {
                std::fs::canonicalize(&dir)
                    .ok()
                    .filter(|dir| dir.is_dir())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--breakout-data-dir {} is not a readable directory",
                            dir.display()
                        )
                    })
            })
            .transpose()?;
        anyhow::ensure!(
            args.breakout_dictionary_limit >= 1024 && args.breakout_upload_limit >= 1024,
            "the breakout limits must be at least 1024 bytes"
        );
        anyhow::ensure!(
            (1..=24 * 3650).contains(&args.idempotency_retention_hours),
            "--idempotency-retention-hours must be between 1 and 87600 (ten years)"
        );
        anyhow::ensure!(
            args.event_stream_lifetime.is_finite()
                && (0.1..=86_400.0).contains(&args.event_stream_lifetime),
            "--event-stream-lifetime must be between 0.1 and 86400 seconds"
        );
        let smtp = match (args.smtp_url, args.smtp_from) {
            (None, None) => None,
            (Some(url), Some(from)) => Some(SmtpConfig { url, from }),
            (Some(_), None) => anyhow::bail!(
                "RELAIS_SMTP_URL needs RELAIS_SMTP_FROM, the sender of notification mails"
            ),
            (None, Some(_)) => {
                anyhow::bail!("RELAIS_SMTP_FROM is set but RELAIS_SMTP_URL, the server, is not")
            }
        };
        Ok(Config {
            database_url,
            bind: args.bind,
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout),
            max_lost_leases: args.max_lost_leases,
            body_limit: args.body_limit,
            http_workers: args.http_workers,
            delivery: DeliveryConfig {
                request_timeout: Duration::from_secs_f64(args.delivery_timeout),
                retry_time_scale: args.retry_time_scale,
                allow_private_targets: args.allow_private_targets,
                disable_after: Duration::from_secs(args.endpoint_disable_after),
                max_in_flight: args.delivery_concurrency,
                per_endpoint: args.endpoint_concurrency,
                retention: Duration::from_secs(args.retention_days * 86_400),
            },
            secret_overlap: Duration::from_secs(args.secret_overlap),
            priority_aging: Duration::from_secs_f64(args.priority_aging),
            executor_concurrency: args.executor_concurrency,
            source_timeout: Duration::from_secs_f64(args.source_timeout),
            idempotency_retention: Duration::from_secs(args.idempotency_retention_hours * 3600),
            event_stream_lifetime: Duration::from_secs_f64(args.event_stream_lifetime),
            public_url: args.public_url,
            analytics_database_url: args.analytics_database_url,
            breakout_schema_per_project: args.breakout_schema_per_project,
            breakout_data_dir,
            breakout_dictionary_limit: args.breakout_dictionary_limit,
            breakout_upload_limit: args.breakout_upload_limit,
            secret_keys,
            smtp,
            shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
            // The delay is part of the grace, never beyond it.
            shutdown_delay: Duration::from_secs_f64(args.shutdown_delay.min(args.shutdown_grace)),
            access_tokens: AccessTokenConfig {
                secret: args.jwt_secret,
                ttl: Duration::from_secs(args.access_token_ttl),
            },
            rate_limit,
        })
    }

    /// Defaults for embedding (tests, tools): any free local port.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            bind: "127.0.0.1:0".into(),
            heartbeat_timeout: Duration::from_secs(30),
            max_lost_leases: 3,
            body_limit: 1024 * 1024,
            http_workers: Some(2),
            delivery: DeliveryConfig {
                request_timeout: Duration::from_secs(15),
                retry_time_scale: 1.0,
                allow_private_targets: false,
                disable_after: Duration::from_secs(432_000),
                max_in_flight: 256,
                per_endpoint: 128,
                retention: Duration::from_secs(30 * 86_400),
            },
            secret_overlap: Duration::from_secs(86_400),
            priority_aging: Duration::from_secs(60),
            executor_concurrency: 16,
            source_timeout: Duration::from_secs(60),
            idempotency_retention: Duration::from_secs(24 * 3600),
            event_stream_lifetime: Duration::from_secs(600),
            public_url: None,
            analytics_database_url: None,
            breakout_schema_per_project: false,
            breakout_data_dir: None,
            breakout_dictionary_limit: 4 * 1024 * 1024,
            breakout_upload_limit: 512 * 1024 * 1024,
            secret_keys: SecretKeyArgs::default(),
            smtp: None,
            shutdown_grace: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            access_tokens: AccessTokenConfig {
                secret: None,
                ttl: Duration::from_secs(3600),
            },
            rate_limit: None,
        }
    }
}
