//! What a benchmark's database did: a fresh database for each run, and what PostgreSQL
//! says of it in its own statistics (`pg_stat_statements` when the server preloads it,
//! `pg_stat_database`, and its processes' CPU time from `/proc`).

use std::time::Duration;

use anyhow::Context;
use sqlx::{AnyPool, Row};

use super::served::postgres_cpu;

/// A fresh database for one run, on the server `--database-url` names.
pub(super) enum Fresh {
    Postgres {
        admin: AnyPool,
        name: String,
        url: String,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
}

impl Fresh {
    pub async fn create(database_url: &str) -> anyhow::Result<Fresh> {
        if database_url.starts_with("sqlite:") {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            return Ok(Fresh::Sqlite { _dir: dir, url });
        }
        sqlx::any::install_default_drivers();
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await
            .context("connecting to --database-url")?;
        let name = format!("relais_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        let mut url = url::Url::parse(database_url).context("--database-url")?;
        url.set_path(&name);
        Ok(Fresh::Postgres {
            admin,
            name,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Fresh::Postgres { url, .. } | Fresh::Sqlite { url, .. } => url,
        }
    }

    pub async fn drop_database(self) {
        if let Fresh::Postgres { admin, name, .. } = self {
            let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
            if let Err(e) = dropped {
                eprintln!("could not drop the bench database {name}: {e}");
            }
        }
    }
}

/// What PostgreSQL says it did for the bench's database, read over a session of its own.
pub(super) struct DatabaseStats {
    session: AnyPool,
    name: String,
    /// The pid of the session, to find the server's processes; `None` when the server is
    /// not on this machine.
    session_pid: Option<u32>,
    statements: bool,
}

#[derive(Clone, Copy, Default)]
pub(super) struct DatabaseSnapshot {
    pub statements: Option<i64>,
    pub transactions: i64,
    pub cpu: Option<Duration>,
}

impl DatabaseStats {
    pub async fn connect(url: &str, name: &str) -> anyhow::Result<DatabaseStats> {
        let session = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect(url)
            .await?;
        let statements = match sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&session)
            .await
        {
            Ok(_) => sqlx::query("SELECT calls FROM pg_stat_statements LIMIT 1")
                .fetch_optional(&session)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !statements {
            eprintln!(
                "note: statements are not counted: the server does not preload pg_stat_statements \
                 (shared_preload_libraries = 'pg_stat_statements')"
            );
        }
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&session)
            .await?;
        let session_pid = postgres_cpu(pid as u32).is_ok().then_some(pid as u32);
        if session_pid.is_none() {
            eprintln!(
                "note: the database's CPU is not measured: its server is not on this machine"
            );
        }
        Ok(DatabaseStats {
            session,
            name: name.to_owned(),
            session_pid,
            statements,
        })
    }

    pub async fn snapshot(&self) -> anyhow::Result<DatabaseSnapshot> {
        let statements = if self.statements {
            let calls: Option<i64> = sqlx::query_scalar(
                "SELECT sum(calls)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = $1",
            )
            .bind(&self.name)
            .fetch_one(&self.session)
            .await?;
            Some(calls.unwrap_or(0))
        } else {
            None
        };
        let row = sqlx::query(
            "SELECT (xact_commit + xact_rollback)::bigint AS transactions FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&self.session)
        .await?;
        Ok(DatabaseSnapshot {
            statements,
            transactions: row.try_get("transactions")?,
            cpu: self.session_pid.and_then(|pid| postgres_cpu(pid).ok()),
        })
    }

    /// The statements run most since the statistics were last reset, most first (for the
    /// text report): calls and text.
    pub async fn top_statements(&self, limit: i64) -> anyhow::Result<Vec<(i64, String)>> {
        if !self.statements {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT calls::bigint AS calls, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1 ORDER BY calls DESC LIMIT $2",
        )
        .bind(&self.name)
        .bind(limit)
        .fetch_all(&self.session)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("calls")?, r.try_get("query")?)))
            .collect()
    }

    /// Counts statements afresh from now, so that the report lists the load's own.
    pub async fn reset_statements(&self) -> anyhow::Result<()> {
        if self.statements {
            sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&self.session)
                .await?;
        }
        Ok(())
    }
}
