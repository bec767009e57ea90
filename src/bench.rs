//! `relais bench deliveries`: measures the outbox dispatcher against a local receiver
//! (`e2e`, `operations`, `batch`, `breakout`, `memory`, `notifications`, `notebooks`, `sync`,
//! `list` and `stream` measure the rest).
//!
//! 1. Throughput: queue a backlog of deliveries with no dispatcher running, start the
//!    service, and time how fast the backlog drains to the receiver.
//! 2. Latency: with the service running, produce events at a fixed rate and measure the
//!    time from each event's commit to its arrival at the receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};

use crate::api::wire::operations::StartOperationBody;
use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs};
use crate::domain::event::EventType;
use crate::domain::ids::{OperationId, ProjectId, TenantId, WebhookId};
use crate::domain::operation::{Callbacks, Notifications, Operation, OperationSpec, Priority};
use crate::domain::retry::RetryPolicy;
use crate::domain::webhook::{SecretVersion, Webhook, WebhookFilters, WebhookStatus};
use crate::store::{Claim, Store};

mod database;
mod e2e;
mod listing;
mod memory;
mod notebooks;
mod notifications;
mod served;
mod stream;
mod sync;

pub use e2e::{e2e, E2eBenchArgs};
pub use listing::{list, ListBenchArgs};
pub use memory::{memory, MemoryBenchArgs};
pub use notebooks::{notebooks, NotebookBenchArgs};
pub use notifications::{notifications, NotificationBenchArgs};
pub use stream::{stream, StreamBenchArgs};
pub use sync::{sync, SyncBenchArgs};

#[derive(Debug, clap::Args)]
pub struct DeliveryBenchArgs {
    /// Deliveries in the backlog drained for the throughput figure.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Events per second produced for the latency figure.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Seconds of steady production for the latency figure.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Deliveries in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    latencies_ms: Mutex<Vec<f64>>,
}

async fn receive(body: web::Bytes, arrivals: web::Data<Arc<Arrivals>>) -> HttpResponse {
    let now = chrono::Utc::now();
    if let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(ts) = envelope["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            let ms = (now - ts.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0;
            arrivals.latencies_ms.lock().expect("lock").push(ms);
        }
    }
    arrivals.count.fetch_add(1, Ordering::Release);
    HttpResponse::NoContent().finish()
}

/// A local receiver that counts what arrives (and its latency) at `http://…/{path}`.
fn start_receiver(
    path: &str,
) -> anyhow::Result<(Arc<Arrivals>, String, actix_web::dev::ServerHandle)> {
    let arrivals = Arc::new(Arrivals::default());
    let data = web::Data::new(arrivals.clone());
    let receiver = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")?;
    let url = format!("http://{}/{path}", receiver.addrs()[0]);
    let receiver = receiver.run();
    let handle = receiver.handle();
    tokio::spawn(receiver);
    Ok((arrivals, url, handle))
}

/// A webhook of the bench's project for `operation.started`, to the local receiver.
async fn register_webhook(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    url: String,
) -> anyhow::Result<()> {
    register_webhook_for(store, tenant, project, url, EventType::OperationStarted).await
}

async fn register_webhook_for(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    url: String,
    event: EventType,
) -> anyhow::Result<()> {
    let now = clock::now();
    let webhook = Webhook {
        id: WebhookId::new(),
        tenant_id: tenant,
        project_id: project,
        url,
        name: "bench".into(),
        events: vec![event],
        filters: WebhookFilters::default(),
        retry_policy: RetryPolicy::WEBHOOK_DEFAULT,
        headers: Default::default(),
        rate_limit: None,
        labels: Default::default(),
        secrets: vec![SecretVersion {
            secret: crate::outbound::signing::generate_secret(),
            expires_at: None,
        }],
        status: WebhookStatus::Active,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store.webhooks().insert(&webhook, None).await?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn wait_for(arrivals: &Arrivals, count: usize, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    while arrivals.count.load(Ordering::Acquire) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} deliveries arrived within {limit:?}",
                arrivals.count.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Instant::now())
}

/// The bench's own operations, leased as a pull worker would.
struct BenchClaim {
    max: u32,
}

impl BenchClaim {
    fn claim(&self, tenant: TenantId, project: ProjectId) -> Claim<'static> {
        static TYPES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Claim {
            scope: Some((tenant, project)),
            types: TYPES.get_or_init(|| vec!["Bench".to_owned()]),
            excluded_types: &[],
            max: self.max,
            worker_id: Some("bench".into()),
        }
    }
}

fn spec() -> OperationSpec {
    OperationSpec {
        operation_type: "Bench".into(),
        operation_name: "bench".into(),
        description: None,
        priority: Priority::Normal,
        parameters: serde_json::json!({}),
        callbacks: Callbacks::default(),
        notifications: Notifications::default(),
        timeout: Duration::from_secs(3600),
        retry_policy: RetryPolicy::OPERATION_DEFAULT,
    }
}

/// Creates `count` operations and leases them, which writes one `operation.started` event
/// (and one delivery to the bench webhook) each, in batches of 100 per transaction.
async fn produce(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    count: usize,
) -> anyhow::Result<()> {
    let creating = Instant::now();
    for _ in 0..count {
        let mut op = Operation::new(OperationId::new(), tenant, project, spec(), clock::now());
        store.operations().create(&mut op, Vec::new(), None).await?;
    }
    let created_in = creating.elapsed();
    let request = BenchClaim { max: 100 };
    let mut leased = 0;
    let claiming = Instant::now();
    while leased < count {
        let got = store
            .operations()
            .claim(
                &request.claim(tenant, project),
                clock::now(),
                Duration::from_secs(3600),
            )
            .await?;
        if got.is_empty() {
            bail!("ran out of operations to lease");
        }
        leased += got.len();
    }
    println!(
        "  {count} operations created one transaction each in {:.1} s; leased 100 per transaction in {:.1} s",
        created_in.as_secs_f64(),
        claiming.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn deliveries(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: DeliveryBenchArgs,
) -> anyhow::Result<()> {
    let (arrivals, receiver_url, receiver_handle) = start_receiver("hook")?;

    let store = Store::connect(&database_url).await.context("connecting")?;
    let store = crate::app::migrate_and_reseal(store, &secret_keys).await?;
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    register_webhook(&store, tenant, project, receiver_url).await?;

    println!(
        "backend: {:?}; cores: {}",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "queueing a backlog of {} deliveries (no dispatcher running yet)…",
        args.events
    );
    let started = Instant::now();
    produce(&store, tenant, project, args.events).await?;
    println!("  queued in {:.1} s", started.elapsed().as_secs_f64());

    let mut config = Config::for_database(database_url.clone());
    config.secret_keys = secret_keys;
    config.http_workers = Some(1);
    config.delivery.allow_private_targets = true;
    config.delivery.max_in_flight = args.concurrency;
    config.delivery.per_endpoint = args.concurrency;
    let drain_started = Instant::now();
    let relais = Relais::start(config).await?;
    let drained = wait_for(&arrivals, args.events, Duration::from_secs(600)).await?;
    let seconds = (drained - drain_started).as_secs_f64();
    println!(
        "throughput: {} signed deliveries in {seconds:.2} s = {:.0} deliveries/s",
        args.events,
        args.events as f64 / seconds
    );

    arrivals.latencies_ms.lock().expect("lock").clear();
    let total = (args.rate * args.seconds) as usize;
    println!(
        "latency: producing {} events/s for {} s…",
        args.rate, args.seconds
    );
    // Operations are created ahead of time; each tick leases (and so emits) a slice.
    for _ in 0..total {
        let mut op = Operation::new(OperationId::new(), tenant, project, spec(), clock::now());
        relais
            .store()
            .operations()
            .create(&mut op, Vec::new(), None)
            .await?;
    }
    let tick = Duration::from_millis(10);
    let per_tick = ((args.rate as f64) * tick.as_secs_f64()).round().max(1.0) as u32;
    let request = BenchClaim { max: per_tick };
    let before = arrivals.count.load(Ordering::Acquire);
    let mut ticker = tokio::time::interval(tick);
    let mut produced = 0;
    let production = Instant::now();
    let mut producing = Duration::ZERO;
    let mut transactions = 0u32;
    while produced < total {
        ticker.tick().await;
        let started = Instant::now();
        produced += relais
            .store()
            .operations()
            .claim(
                &request.claim(tenant, project),
                clock::now(),
                Duration::from_secs(3600),
            )
            .await?
            .len();
        producing += started.elapsed();
        transactions += 1;
    }
    let achieved = produced as f64 / production.elapsed().as_secs_f64();
    println!(
        "  producer: {transactions} transactions of {per_tick} events, {:.1} ms each on average",
        producing.as_secs_f64() * 1000.0 / transactions.max(1) as f64
    );
    wait_for(&arrivals, before + produced, Duration::from_secs(120)).await?;
    let mut latencies = arrivals.latencies_ms.lock().expect("lock").clone();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  produced {produced} events at {achieved:.0}/s; event-to-delivery latency ms: p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    relais.stop(std::time::Duration::from_secs(30)).await;
    receiver_handle.stop(true).await;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct OperationBenchArgs {
    /// Operations to create and complete.
    #[arg(long, default_value_t = 10_000)]
    pub operations: usize,
    /// Concurrent HTTP clients creating operations.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Concurrent pull workers, each leasing up to 50 operations at a time and completing
    /// them side by side.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
}

/// Operations created → leased → completed per second, all over the HTTP API.
pub async fn operations(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: OperationBenchArgs,
) -> anyhow::Result<()> {
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    config.http_workers = None;
    let relais = Relais::start(config).await?;
    let store = relais.store();
    let (tenant, project, token) = bench_project(
        store,
        &[
            crate::domain::auth::Scope::OperationsWrite,
            crate::domain::auth::Scope::Workers,
        ],
    )
    .await?;
    let base = format!("http://{}/api/{tenant}/{project}/async", relais.addr());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    println!(
        "backend: {:?}; cores: {}; {} operations, {} creating clients, {} pull workers",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.operations,
        args.clients,
        args.workers
    );

    let created = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, base, secret, created, total) = (
            client.clone(),
            base.clone(),
            token.secret.clone(),
            created.clone(),
            args.operations,
        );
        tasks.push(tokio::spawn(async move {
            while created.fetch_add(1, Ordering::AcqRel) < total {
                let body = serde_json::json!({"operationType": "Bench", "operationName": "bench"});
                let r = client
                    .post(format!("{base}/operation"))
                    .bearer_auth(&secret)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    r.status() == reqwest::StatusCode::ACCEPTED,
                    "create answered {}",
                    r.status()
                );
            }
            Ok(())
        }));
    }
    let all_created = {
        let created = created.clone();
        let total = args.operations;
        tokio::spawn(async move {
            while created.load(Ordering::Acquire) < total {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        })
    };
    let last_completed = Arc::new(std::sync::OnceLock::new());
    for w in 0..args.workers {
        let (client, base, secret, completed, last_completed, total) = (
            client.clone(),
            base.clone(),
            token.secret.clone(),
            completed.clone(),
            last_completed.clone(),
            args.operations,
        );
        tasks.push(tokio::spawn(async move {
            while completed.load(Ordering::Acquire) < total {
                let body = serde_json::json!({"operationTypes": ["Bench"], "max": 50, "waitSeconds": 1, "workerId": format!("bench-{w}")});
                let r: serde_json::Value = client
                    .post(format!("{base}/workers/lease"))
                    .bearer_auth(&secret)
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                // Like a worker pool: the leased operations run, and complete, side by side.
                let mut running = tokio::task::JoinSet::new();
                for lease in r["leases"].as_array().cloned().unwrap_or_default() {
                    let (client, base, secret, completed, last_completed) = (
                        client.clone(),
                        base.clone(),
                        secret.clone(),
                        completed.clone(),
                        last_completed.clone(),
                    );
                    running.spawn(async move {
                        let id = lease["operationId"].as_str().unwrap_or_default();
                        let done = serde_json::json!({"leaseToken": lease["leaseToken"], "summary": {"ok": true}});
                        let r = client
                            .post(format!("{base}/operation/{id}/complete"))
                            .bearer_auth(&secret)
                            .json(&done)
                            .send()
                            .await?;
                        anyhow::ensure!(r.status() == reqwest::StatusCode::OK, "complete answered {}", r.status());
                        if completed.fetch_add(1, Ordering::AcqRel) + 1 == total {
                            let _ = last_completed.set(Instant::now());
                        }
                        Ok(())
                    });
                }
                while let Some(done) = running.join_next().await {
                    done??;
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    // Not when the tasks end: idle workers may still be in a long poll.
    let seconds =
        (*last_completed.get().expect("every operation completed") - started).as_secs_f64();
    let creating = (all_created.await? - started).as_secs_f64();
    println!(
        "created {} operations in {creating:.2} s ({:.0}/s); all completed after {seconds:.2} s: {:.0} operations/s end to end",
        args.operations,
        args.operations as f64 / creating,
        args.operations as f64 / seconds
    );
    relais.stop(std::time::Duration::from_secs(30)).await;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct BatchBenchArgs {
    /// Members of the batch.
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// Members in each fan-out layer; a single join member follows each layer.
    #[arg(long, default_value_t = 1_000)]
    pub width: usize,
    /// Built-in operations run at once (the server's `RELAIS_EXECUTOR_CONCURRENCY`).
    #[arg(long, default_value_t = 16)]
    pub executors: usize,
}

/// A tenant and project of the bench's own, and a token for them with `scopes`.
pub(crate) async fn bench_project(
    store: &Store,
    scopes: &[crate::domain::auth::Scope],
) -> anyhow::Result<(TenantId, ProjectId, crate::domain::auth::NewToken)> {
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    let token = crate::domain::auth::NewToken::from_random(rand::random());
    store
        .tenants()
        .insert_token(tenant, Some(project), scopes, &token.hash, clock::now())
        .await?;
    Ok((tenant, project, token))
}

/// A DAG of fan-out layers, each followed by a join, run by the instant `Echo` executor:
/// the time from submission to the batch's end, per member, is the engine's overhead.
pub async fn batch(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: BatchBenchArgs,
) -> anyhow::Result<()> {
    let (arrivals, receiver_url, receiver_handle) = start_receiver("batch-complete")?;

    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    config.delivery.allow_private_targets = true;
    config.executor_concurrency = args.executors;
    let relais = Relais::start(config).await?;
    let store = relais.store();
    let (tenant, project, token) =
        bench_project(store, &[crate::domain::auth::Scope::OperationsWrite]).await?;

    // source → width members → join → width members → join → …
    let width = args.width.max(1);
    let mut members = Vec::with_capacity(args.members);
    let mut join = "source".to_owned();
    members.push(
        serde_json::json!({"operationKey": join, "operationName": join, "operationType": "Echo"}),
    );
    while members.len() < args.members {
        let layer = members.len();
        let mut keys = Vec::new();
        while keys.len() < width && members.len() + 1 < args.members {
            let key = format!("m{}", members.len());
            members.push(serde_json::json!({"operationKey": key, "operationName": key, "operationType": "Echo", "dependencies": [join]}));
            keys.push(key);
        }
        let next = format!("join{layer}");
        let deps = if keys.is_empty() {
            vec![join.clone()]
        } else {
            keys
        };
        members.push(serde_json::json!({"operationKey": next, "operationName": next, "operationType": "Echo", "dependencies": deps}));
        join = next;
    }
    let edges: usize = members
        .iter()
        .map(|m| m["dependencies"].as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "backend: {:?}; cores: {}; {} members, {edges} dependencies, layers of {width}; {} executors",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        members.len(),
        args.executors,
    );
    let body = serde_json::json!({
        "batchName": "bench",
        "operations": members,
        "batchCallbacks": {"onBatchComplete": receiver_url},
    });
    let url = format!(
        "http://{}/api/{tenant}/{project}/async/batch",
        relais.addr()
    );
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(&token.secret)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        r.status() == reqwest::StatusCode::ACCEPTED,
        "submit answered {}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    let submitted = started.elapsed();
    let done = wait_for(&arrivals, 1, Duration::from_secs(900)).await?;
    let seconds = (done - started).as_secs_f64();
    println!(
        "submitted (validated, stored, answered) in {:.2} s; batch completed after {seconds:.2} s: {:.3} ms of engine time per member",
        submitted.as_secs_f64(),
        seconds * 1000.0 / members.len() as f64
    );
    relais.stop(std::time::Duration::from_secs(30)).await;
    receiver_handle.stop(true).await;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct BreakoutBenchArgs {
    /// Cases in the generated Popstan-shaped data set.
    #[arg(long, default_value_t = 50_000)]
    pub cases: usize,
    /// Thread counts to time, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub threads: Vec<u32>,
    /// Cases per chunk (one transaction each).
    #[arg(long, default_value_t = crate::executors::breakout::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
    /// Where the tables go, if not into the main database: a PostgreSQL, SQLite or
    /// MySQL/MariaDB URL (`mysql://…`).
    #[arg(long, env = "RELAIS_ANALYTICS_DATABASE_URL")]
    pub analytics_database_url: Option<String>,
}

const POPSTAN_DCF: &str = include_str!("../fixtures/cspro/jhandley_PopstanCensus_CEN2000.dcf");
const POPSTAN_DAT: &str = include_str!("../fixtures/cspro/jhandley_PopstanCensus.dat");

/// A data set shaped like the Popstan census: its 294 cases used in turn as templates,
/// each copy with its own ids (village, enumeration area and building numbered from the
/// case's position) and a random age on every person line, so `cases` distinct cases
/// with Popstan's mix of records (about 4.3 persons, 0.8 housing and 1 interview each).
pub fn popstan_like(cases: usize, seed: u64) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut templates: Vec<Vec<&str>> = Vec::new();
    for line in POPSTAN_DAT.trim_start_matches('\u{feff}').lines() {
        if line.len() < 19 {
            continue;
        }
        match templates.last_mut() {
            Some(case) if case[0][1..19] == line[1..19] => case.push(line),
            _ => templates.push(vec![line]),
        }
    }
    let mut out = String::with_capacity(cases * 400);
    for n in 0..cases {
        let ids = format!(
            "{:03}{:03}{}{:03}",
            n / 1_000_000 % 1000,
            n / 1000 % 1000,
            '1',
            n % 1000
        );
        for line in &templates[n % templates.len()] {
            out.push_str(&line[..5]);
            out.push_str(&ids);
            let rest = &line[15..];
            if line.starts_with('1') && line.len() >= 25 {
                out.push_str(&rest[..8]);
                out.push_str(&format!("{:02}", rng.gen_range(0..100)));
                out.push_str(&rest[10..]);
            } else {
                out.push_str(rest);
            }
            out.push('\n');
        }
    }
    out
}

/// Times `CsproBreakout` on a generated data set, once per thread count, through the
/// real runner (the operation is created in the store, as the API would).
pub async fn breakout(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: BreakoutBenchArgs,
) -> anyhow::Result<()> {
    use crate::store::breakout::{BreakoutData, BreakoutDictionary, DataKind};
    let data = std::env::temp_dir().join(format!("relais-bench-{}.dat", uuid::Uuid::new_v4()));
    let generating = Instant::now();
    std::fs::write(&data, popstan_like(args.cases, 7))?;
    let generated = generating.elapsed().as_secs_f64();
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    config.analytics_database_url = args.analytics_database_url.clone();
    let relais = Relais::start(config).await?;
    let store = relais.store().clone();
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    store
        .breakout()
        .put_dictionary(&BreakoutDictionary {
            tenant,
            project,
            name: "CEN2000".into(),
            label: "Popstan-shaped".into(),
            dictionary: POPSTAN_DCF.into(),
            data_kind: DataKind::Dat,
            data: BreakoutData::ServerFile(
                std::fs::canonicalize(&data)?.to_string_lossy().into_owned(),
            ),
            created_at: clock::now(),
        })
        .await?;
    println!(
        "backend: {:?}, tables in {:?}; cores: {}; {} cases generated in {generated:.2} s ({} MB), chunks of {} cases",
        store.backend(),
        store.breakout().dialect(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.cases,
        std::fs::metadata(&data)?.len() / 1_000_000,
        args.chunk_size
    );
    let outcome = async {
        for threads in &args.threads {
            let parameters = serde_json::json!({"dictionaries": ["CEN2000"], "threads": threads,
                "overwrite": true, "chunk_size": args.chunk_size});
            let spec: OperationSpec = serde_json::from_value::<StartOperationBody>(
                serde_json::json!({"operationType": crate::executors::breakout::OPERATION_TYPE,
                    "operationName": "bench breakout", "parameters": parameters}),
            )?
            .try_into()?;
            let mut op = Operation::new(OperationId::new(), tenant, project, spec, clock::now());
            let started = Instant::now();
            store.operations().create(&mut op, Vec::new(), None).await?;
            let done = loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let current = store
                    .operations()
                    .get(tenant, project, op.id)
                    .await?
                    .context("the operation vanished")?;
                if current.status.is_terminal() {
                    break current;
                }
            };
            let wall = started.elapsed().as_secs_f64();
            let Some(result) = done.result.filter(|_| {
                done.status == crate::domain::operation::OperationStatus::Completed
            }) else {
                bail!("the breakout did not complete: {:?}", done.error);
            };
            let run = match (done.started_at, done.finished_at) {
                (Some(s), Some(f)) => (f - s).num_milliseconds() as f64 / 1000.0,
                _ => wall,
            };
            let stats = store
                .breakout()
                .table_stats(
                    project,
                    &result.summary["tables_created"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect::<Vec<_>>(),
                )
                .await?;
            let rows: i64 = stats.iter().map(|s| s.row_count).sum();
            anyhow::ensure!(
                result.summary["total_cases"] == args.cases,
                "expected {} cases, got {}",
                args.cases,
                result.summary["total_cases"]
            );
            println!(
                "threads {threads}: {} cases, {rows} rows in {run:.2} s (run), {wall:.2} s (request to completion): {:.0} cases/s, {:.0} rows/s",
                args.cases,
                args.cases as f64 / run,
                rows as f64 / run
            );
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&data);
    relais.stop(std::time::Duration::from_secs(30)).await;
    outcome
}

#[cfg(test)]
mod breakout_tests {
    use super::*;
    use crate::cspro::data::{DatReader, ReadOptions};
    use crate::cspro::dictionary::Dictionary;

    #[test]
    fn the_generator_makes_distinct_clean_popstan_cases() {
        let text = popstan_like(2_000, 1);
        let dictionary = Dictionary::parse(POPSTAN_DCF).unwrap();
        let cases: Vec<_> = DatReader::new(&dictionary, &text, ReadOptions { strict: true })
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cases.len(), 2_000);
        let keys: std::collections::HashSet<_> = cases.iter().map(|c| c.key.clone()).collect();
        assert_eq!(keys.len(), 2_000, "every case has its own key");
        let records: usize = cases.iter().map(|c| c.records.len()).sum();
        assert!((4 * 2_000..7 * 2_000).contains(&records), "{records}");
    }
}
