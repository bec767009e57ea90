//! Server configuration, from flags or `RELAIS_*` environment variables.

use std::time::Duration;

/// Default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://relais.db";

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RELAIS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Seconds a worker may go without reporting before its lease is taken back.
    #[arg(long, env = "RELAIS_HEARTBEAT_TIMEOUT", default_value_t = 30.0)]
    pub heartbeat_timeout: f64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RELAIS_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "RELAIS_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    pub heartbeat_timeout: Duration,
    pub body_limit: usize,
    pub http_workers: Option<usize>,
}

impl Config {
    pub fn new(database_url: String, args: ServeArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.heartbeat_timeout.is_finite() && (0.1..=3600.0).contains(&args.heartbeat_timeout),
            "--heartbeat-timeout must be between 0.1 and 3600 seconds"
        );
        anyhow::ensure!(
            args.body_limit >= 1024,
            "--body-limit must be at least 1024 bytes"
        );
        Ok(Config {
            database_url,
            bind: args.bind,
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout),
            body_limit: args.body_limit,
            http_workers: args.http_workers,
        })
    }

    /// Defaults for embedding (tests, tools): any free local port.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            bind: "127.0.0.1:0".into(),
            heartbeat_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            http_workers: Some(2),
        }
    }
}
