//! The `relais` command line.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs, ServeArgs, DEFAULT_DATABASE_URL};
use crate::domain::auth::{checked_token_name, NewToken, Scope};
use crate::domain::ids::{ClientId, ProjectId, TenantId};
use crate::domain::oauth::{Client, NewClientSecret};
use crate::outbound::signing::{self, SigningKey};
use crate::store::{Removed, Store};
use crate::telemetry::traces::{self, Traces};

#[derive(Debug, Parser)]
#[command(
    name = "relais",
    version,
    about = "Long-running operations and the signed webhooks that report on them"
)]
pub struct Cli {
    /// Database URL: `sqlite://FILE` (embedded, the default) or `postgres://…`.
    #[arg(long, global = true, env = "RELAIS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Log format: `pretty` or `json`.
    #[arg(
        long,
        global = true,
        env = "RELAIS_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub secret_keys: SecretKeyArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Apply database migrations, seal stored secrets under the current secret key, and exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage OAuth2 clients (client credentials for `POST /oauth/token`).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Check a webhook delivery's signature, as a receiver would.
    Verify(VerifyArgs),
    /// Receive webhooks locally: verify and print each one (optionally forward it, or
    /// register this listener as a project's webhook).
    Listen(crate::listen::ListenArgs),
    /// Measure the service on this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Pull workers' progress reports delivered as signed webhooks by a `relais serve`
    /// process: events/s, deliveries/s, latency, and what each event costs the service
    /// and the database.
    E2e(crate::bench::E2eBenchArgs),
    /// Outbox throughput (deliveries/s) and event-to-delivery latency to a local receiver.
    Deliveries(crate::bench::DeliveryBenchArgs),
    /// Operations created, leased by pull workers and completed per second, over HTTP.
    Operations(crate::bench::OperationBenchArgs),
    /// A batch DAG of fan-out layers and joins run by an instant executor: overhead per member.
    Batch(crate::bench::BatchBenchArgs),
    /// CSPro breakout of a generated Popstan-shaped data set, with 1 and 4 threads.
    Breakout(crate::bench::BreakoutBenchArgs),
    /// Resident memory of a `relais serve` process: idle, draining deliveries, receiving
    /// a large upload.
    Memory(crate::bench::MemoryBenchArgs),
    /// Mails per second to a local SMTP server and Slack messages per second to a local
    /// stand-in for Slack, draining a backlog.
    Notifications(crate::bench::NotificationBenchArgs),
    /// Notebooks on every-second cron schedules on one replica: the delay from each tick
    /// to its run, and the CPU per tick.
    Notebooks(crate::bench::NotebookBenchArgs),
    /// Cursor sync: records per second from a local cursor-paginated source to
    /// delivered, signed webhooks, at each page size.
    Sync(crate::bench::SyncBenchArgs),
    /// The operations list of a project holding many operations, over HTTP: latency of
    /// the first page, filtered pages and a page deep in the list.
    List(crate::bench::ListBenchArgs),
    /// Clients following the events stream (Server-Sent Events) while events are written
    /// at a steady rate: commit-to-arrival latency, and that every client gets every event.
    Stream(crate::bench::StreamBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The endpoint's secret (`whsec_…`, or the text given at registration).
    #[arg(long, env = "RELAIS_WEBHOOK_SECRET")]
    pub secret: String,
    /// The `webhook-id` header.
    #[arg(long)]
    pub id: String,
    /// The `webhook-timestamp` header (Unix seconds).
    #[arg(long)]
    pub timestamp: i64,
    /// The `webhook-signature` header (one or more `v1,…`, space-separated).
    #[arg(long)]
    pub signature: String,
    /// File holding the raw request body; standard input when absent.
    #[arg(long)]
    pub body_file: Option<std::path::PathBuf>,
    /// Seconds the timestamp may differ from now.
    #[arg(long, default_value_t = 300)]
    pub tolerance: i64,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first project; prints both ids.
    Create {
        #[arg(long)]
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long, conflicts_with = "env")]
        json: bool,
        /// Print `export RELAIS_TENANT=… RELAIS_PROJECT=…` lines, for `eval` in a shell
        /// (the other commands read these variables).
        #[arg(long)]
        env: bool,
    },
    /// Delete a tenant and everything Relais keeps for it: its projects, tokens,
    /// operations, batches, events, pending and past deliveries, webhooks, push workers,
    /// breakout dictionaries and the tables its breakout jobs wrote. Running servers stop
    /// accepting its tokens at once. This cannot be undone.
    Delete {
        #[arg(long)]
        tenant: TenantId,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create another project of a tenant; prints its id.
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and everything in it (see `tenant delete`).
    Delete {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        project: ProjectId,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token; it is printed once and only its SHA-256 is stored.
    Create {
        #[arg(long, env = "RELAIS_TENANT")]
        tenant: TenantId,
        /// Bind the token to one project (default: every project of the tenant).
        #[arg(long, env = "RELAIS_PROJECT")]
        project: Option<ProjectId>,
        /// Comma-separated: operations:read, operations:write, webhooks:manage, workers, admin.
        #[arg(long, default_value = "operations:read,operations:write")]
        scopes: String,
        /// Who or what uses the token, shown where it acted (a cancellation's
        /// `cancelledBy`); without one, the token's id is shown.
        #[arg(long)]
        name: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long, conflicts_with = "env")]
        json: bool,
        /// Print an `export RELAIS_TOKEN=…` line, for `eval` in a shell.
        #[arg(long)]
        env: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; its secret is printed once and only its SHA-256 is stored.
    Create {
        #[arg(long, env = "RELAIS_TENANT")]
        tenant: TenantId,
        /// Bind the client to one project (default: every project of the tenant).
        #[arg(long, env = "RELAIS_PROJECT")]
        project: Option<ProjectId>,
        /// Comma-separated: the most its access tokens may carry.
        #[arg(long, default_value = "operations:read,operations:write")]
        scopes: String,
        /// Who or what the client is, shown where its tokens acted.
        #[arg(long)]
        name: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The registered clients (never their secrets).
    List {
        #[arg(long, env = "RELAIS_TENANT")]
        tenant: Option<TenantId>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client: its access tokens stop working (within a few seconds on every
    /// replica) and it gets no new ones.
    Revoke {
        client: ClientId,
        #[arg(long)]
        json: bool,
    },
}

/// What a new token or client is given, checked: its scopes, its name, and a tenant (and
/// project) that exist.
async fn checked_grant(
    store: &Store,
    tenant: TenantId,
    project: Option<ProjectId>,
    scopes: &str,
    name: Option<String>,
) -> anyhow::Result<(Vec<Scope>, Option<String>)> {
    let scopes = Scope::parse_list(scopes).map_err(anyhow::Error::msg)?;
    let name = name
        .map(|n| checked_token_name(&n, "--name"))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !store.tenants().tenant_exists(tenant).await? {
        bail!("no tenant {tenant}");
    }
    if let Some(project) = project {
        if !store.tenants().project_exists(tenant, project).await? {
            bail!("tenant {tenant} has no project {project}");
        }
    }
    Ok((scopes, name))
}

async fn client_command(database_url: &str, command: ClientCommand) -> anyhow::Result<()> {
    let store = open_store(database_url).await?;
    match command {
        ClientCommand::Create {
            tenant,
            project,
            scopes,
            name,
            json,
        } => {
            let (scopes, name) = checked_grant(&store, tenant, project, &scopes, name).await?;
            let secret = NewClientSecret::from_random(rand::random());
            let client = Client {
                id: ClientId::new(),
                tenant_id: tenant,
                project_id: project,
                name,
                scopes,
                secret_hash: secret.hash,
                created_at: clock::now(),
                revoked_at: None,
            };
            store.clients().insert(&client).await?;
            let scope_names: Vec<_> = client.scopes.iter().map(|s| s.as_str()).collect();
            if json {
                println!(
                    "{}",
                    json!({"clientId": client.id, "clientSecret": secret.secret, "tenantId": tenant,
                           "projectId": project, "scopes": scope_names, "name": client.name})
                );
            } else {
                println!("client_id:     {}", client.id);
                println!("client_secret: {}", secret.secret);
                eprintln!("Store the secret now: it cannot be shown again.");
            }
        }
        ClientCommand::List { tenant, json } => {
            let clients = store.clients().list(tenant).await?;
            let views: Vec<_> = clients
                .iter()
                .map(|c| {
                    json!({"clientId": c.id, "tenantId": c.tenant_id, "projectId": c.project_id,
                           "name": c.name, "scopes": c.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                           "createdAt": c.created_at, "revokedAt": c.revoked_at})
                })
                .collect();
            if json {
                println!("{}", json!({ "clients": views }));
            } else {
                for c in &clients {
                    println!(
                        "{}  tenant {}  project {}  {}  {}{}",
                        c.id,
                        c.tenant_id,
                        c.project_id.map_or("*".to_owned(), |p| p.to_string()),
                        Scope::join(&c.scopes),
                        c.name.as_deref().unwrap_or("-"),
                        if c.revoked_at.is_some() {
                            "  (revoked)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        ClientCommand::Revoke { client, json } => {
            if !store.clients().revoke(client, clock::now()).await? {
                bail!("no client {client}, or it was revoked already");
            }
            if json {
                println!("{}", json!({"clientId": client, "revoked": true}));
            } else {
                println!("revoked {client}");
            }
        }
    }
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::new(cli.database_url, cli.secret_keys, args)?;
            let (grace, delay) = (config.shutdown_grace, config.shutdown_delay);
            let relais = Relais::start(config).await?;
            // On standard output, apart from the logs: where it listens (port 0 picks one),
            // for people and for scripts that start it.
            println!("relais listening on http://{}", relais.addr());
            shutdown_signal().await;
            let signalled = tokio::time::Instant::now();
            tracing::info!(
                grace_seconds = grace.as_secs_f64(),
                delay_seconds = delay.as_secs_f64(),
                "shutting down"
            );
            relais.begin_shutdown();
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown_signal() => {}
                }
            }
            relais.stop(grace.saturating_sub(signalled.elapsed())).await;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Verify(args) => verify(args),
        Command::Listen(args) => crate::listen::run(args).await,
        Command::Bench {
            command: BenchCommand::E2e(args),
        } => crate::bench::e2e(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Deliveries(args),
        } => crate::bench::deliveries(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Operations(args),
        } => crate::bench::operations(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Batch(args),
        } => crate::bench::batch(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Breakout(args),
        } => crate::bench::breakout(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Memory(args),
        } => crate::bench::memory(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Notifications(args),
        } => crate::bench::notifications(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Notebooks(args),
        } => crate::bench::notebooks(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Sync(args),
        } => crate::bench::sync(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::List(args),
        } => crate::bench::list(cli.database_url, cli.secret_keys, args).await,
        Command::Bench {
            command: BenchCommand::Stream(args),
        } => crate::bench::stream(cli.database_url, cli.secret_keys, args).await,
        Command::Migrate => {
            crate::app::migrate_and_reseal(connect(&cli.database_url).await?, &cli.secret_keys)
                .await?;
            eprintln!("migrations applied; stored secrets sealed under the current secret key");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name, json, env },
        } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&cli.database_url).await?;
            let (tenant, project) = store.tenants().create_tenant(name, clock::now()).await?;
            let vitam_id = store
                .tenants()
                .vitam_id(tenant)
                .await?
                .context("the tenant just created has no number")?;
            if json {
                println!(
                    "{}",
                    json!({"tenantId": tenant, "projectId": project, "name": name, "vitamTenantId": vitam_id})
                );
            } else if env {
                println!("export RELAIS_TENANT={tenant}\nexport RELAIS_PROJECT={project}");
            } else {
                println!("tenant  {tenant}\nproject {project}\nnumber  {vitam_id} (X-Tenant-Id of the /v1 facade)");
            }
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Delete { tenant, json },
        } => {
            let store = open_store(&cli.database_url).await?;
            let Some(removed) = store.tenants().delete_tenant(tenant).await? else {
                bail!("no tenant {tenant}");
            };
            print_removed(json!({"tenantId": tenant}), &removed, json);
            Ok(())
        }
        Command::Project {
            command: ProjectCommand::Create { tenant, name, json },
        } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&cli.database_url).await?;
            let Some(project) = store
                .tenants()
                .create_project(tenant, name, clock::now())
                .await?
            else {
                bail!("no tenant {tenant}");
            };
            if json {
                println!(
                    "{}",
                    json!({"tenantId": tenant, "projectId": project, "name": name})
                );
            } else {
                println!("project {project}");
            }
            Ok(())
        }
        Command::Project {
            command:
                ProjectCommand::Delete {
                    tenant,
                    project,
                    json,
                },
        } => {
            let store = open_store(&cli.database_url).await?;
            let Some(removed) = store.tenants().delete_project(tenant, project).await? else {
                bail!("tenant {tenant} has no project {project}");
            };
            print_removed(
                json!({"tenantId": tenant, "projectId": project}),
                &removed,
                json,
            );
            Ok(())
        }
        Command::Client { command } => client_command(&cli.database_url, command).await,
        Command::Token {
            command:
                TokenCommand::Create {
                    tenant,
                    project,
                    scopes,
                    name,
                    json,
                    env,
                },
        } => {
            let store = open_store(&cli.database_url).await?;
            let (scopes, name) = checked_grant(&store, tenant, project, &scopes, name).await?;
            let token = NewToken::from_random(rand::random());
            store
                .tenants()
                .insert_named_token(
                    tenant,
                    project,
                    &scopes,
                    &token.hash,
                    name.as_deref(),
                    clock::now(),
                )
                .await?;
            let scope_names: Vec<_> = scopes.iter().map(|s| s.as_str()).collect();
            if json {
                println!(
                    "{}",
                    json!({"token": token.secret, "tenantId": tenant, "projectId": project, "scopes": scope_names, "name": name})
                );
            } else if env {
                println!("export RELAIS_TOKEN={}", token.secret);
            } else {
                println!("{}", token.secret);
                eprintln!("Store this token now: it cannot be shown again.");
            }
            Ok(())
        }
    }
}

fn print_removed(what: serde_json::Value, removed: &Removed, json: bool) {
    if json {
        let mut answer = what;
        answer["deleted"] = json!(removed);
        println!("{answer}");
    } else {
        println!(
            "deleted {} project(s), {} operation(s), {} event(s), {} delivery(ies), {} webhook(s), {} token(s), {} breakout table(s)",
            removed.projects,
            removed.operations,
            removed.events,
            removed.deliveries,
            removed.webhooks,
            removed.tokens,
            removed.breakout_tables.len()
        );
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use std::io::Read;
    let body = match &args.body_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from standard input")?;
            body
        }
    };
    let key = SigningKey::from_secret(&args.secret);
    let now = clock::now().timestamp();
    match signing::verify(
        &key,
        &args.id,
        args.timestamp,
        &body,
        &args.signature,
        now,
        args.tolerance,
    ) {
        Ok(()) => {
            println!(
                "valid: the signature matches and the timestamp is within {} s",
                args.tolerance
            );
            Ok(())
        }
        Err(e) => {
            let expected = key.sign(&args.id, args.timestamp, &body);
            bail!(
                "invalid: {e}\nexpected a signature of {expected} for this body ({} bytes)",
                body.len()
            )
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Store> {
    Store::connect(url)
        .await
        .with_context(|| format!("connecting to {}", crate::app::redact(url)))
}

/// The store for managing tenants, projects and tokens, which never touches secrets: it
/// needs no secret key, and creates no key file.
async fn open_store(url: &str) -> anyhow::Result<Store> {
    let store = connect(url).await?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr and, when `traced` and the `OTEL_*` variables ask for it, exports the
/// spans as traces through the returned tracer, which the caller shuts down last. Must be
/// called while the process has a single thread (see `telemetry::traces::from_env`).
pub fn init_logging(format: LogFormat, default_level: &str, traced: bool) -> Option<Traces> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only where someone reads them: not in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Pretty => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let setup = match traced {
        true => traces::from_env(),
        false => traces::Setup {
            traces: None,
            warnings: Vec::new(),
        },
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(
            setup
                .traces
                .as_ref()
                .map(|t| t.layer().with_filter(traces::filter())),
        )
        .try_init();
    for warning in &setup.warnings {
        tracing::warn!("{warning}");
    }
    setup.traces
}

/// An error and its causes, one per line, each said once: many errors repeat their
/// cause's message in their own, which a plain chain would print two or three times.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut lines = vec![format!("error: {error}")];
    let mut said = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !said.contains(&text) {
            lines.push(format!("  caused by: {text}"));
            said.push_str(&text);
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_message_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let error = anyhow::Error::new(io)
            .context("error communicating with database: Connection refused")
            .context("connecting to the database at postgres://db");
        assert_eq!(
            describe_error(&error),
            "error: connecting to the database at postgres://db\n  caused by: error communicating with database: Connection refused"
        );
    }
}
