//! `relais bench list`: the operations list of one project holding many operations, as a
//! web console reads it. The project is seeded with `--operations` operations (a spread
//! of types, priorities and final states, created over the last month, the live ones
//! within the last hours), written through the group commit so that concurrent creates
//! share multi-row transactions. Then `GET …/async/operations` is timed over HTTP, one
//! request at a time, for a few typical pages: p50/p95/p99 per case.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::{bench_project, percentile};
use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs};
use crate::domain::ids::{LeaseToken, OperationId, ProjectId, TenantId};
use crate::domain::operation::{
    Lease, Operation, OperationError, OperationResult, OperationSpec, OperationStatus, Priority,
};
use crate::domain::retry::RetryPolicy;
use crate::store::{Backend, Store};

#[derive(Debug, clap::Args)]
pub struct ListBenchArgs {
    /// Operations in the project.
    #[arg(long, default_value_t = 100_000)]
    pub operations: usize,
    /// Requests timed per case, after a few that are not.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Days over which the operations were created.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// Operation types with their weights: a few common ones and a tail, as tenants have.
const TYPES: [(&str, u32); 8] = [
    ("Import", 30),
    ("Export", 20),
    ("Report", 15),
    ("Reindex", 10),
    ("Thumbnail", 9),
    ("Backup", 8),
    ("Notify", 6),
    ("Archive", 2),
];
/// The type the type-filtered case asks for (8% of the operations).
const FILTERED_TYPE: &str = "Backup";
/// The status the status-filtered case asks for, spread over the whole month.
const FILTERED_STATUS: OperationStatus = OperationStatus::Failed;
/// Operations created this recently may still be waiting or running.
const LIVE_WINDOW: chrono::Duration = chrono::Duration::hours(2);
/// Creates in flight at once: the group commit writes up to 256 in one transaction.
const SEEDING_CONCURRENCY: usize = 1024;

fn pick<T: Copy>(rng: &mut impl Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total);
    for (value, weight) in weighted {
        if n < *weight {
            return *value;
        }
        n -= weight;
    }
    weighted[weighted.len() - 1].0
}

/// One operation as it would stand after its life so far: created `age` ago, then
/// waiting, running under a lease, or ended some seconds to minutes later.
fn seeded(
    rng: &mut impl Rng,
    tenant: TenantId,
    project: ProjectId,
    now: chrono::DateTime<chrono::Utc>,
    age: chrono::Duration,
) -> Operation {
    use OperationStatus::*;
    let operation_type = pick(rng, &TYPES);
    let priority = pick(
        rng,
        &[
            (Priority::Low, 15),
            (Priority::Normal, 60),
            (Priority::High, 20),
            (Priority::Critical, 5),
        ],
    );
    let created = now - age;
    let spec = OperationSpec {
        operation_type: operation_type.into(),
        operation_name: format!("{} {}", operation_type.to_lowercase(), rng.gen::<u32>()),
        description: None,
        priority,
        parameters: serde_json::json!({"source": format!("s3://bucket/{}", rng.gen::<u32>()), "limit": rng.gen_range(1..10_000)}),
        callbacks: Default::default(),
        notifications: Default::default(),
        timeout: Duration::from_secs(6 * 3600),
        retry_policy: RetryPolicy::OPERATION_DEFAULT,
    };
    let mut op = Operation::new(OperationId::new(), tenant, project, spec, created);
    let status = if age < LIVE_WINDOW {
        pick(
            rng,
            &[(Initiated, 30), (Running, 50), (Completed, 15), (Failed, 5)],
        )
    } else {
        pick(
            rng,
            &[(Completed, 80), (Failed, 10), (Cancelled, 6), (Timeout, 4)],
        )
    };
    op.status = status;
    // Nothing the loops would act on while the bench runs: no deadline passes, no lease
    // expires, and a waiting operation has already been aged to the top.
    op.timeout_at = now + chrono::Duration::days(1);
    if status == Initiated {
        op.queue_rank = Priority::Critical.rank();
        return op;
    }
    let started = created + chrono::Duration::milliseconds(rng.gen_range(50..30_000));
    op.started_at = Some(started);
    op.attempt = 1;
    op.event_seq = 1;
    op.updated_at = started;
    if status == Running {
        op.progress.percentage = Some(f64::from(rng.gen_range(0..100u8)));
        op.progress.current_phase = Some("processing".into());
        op.lease = Some(Lease {
            token: LeaseToken::generate(),
            worker_id: Some("bench-worker".into()),
            expires_at: now + chrono::Duration::days(1),
        });
        return op;
    }
    let finished = started + chrono::Duration::milliseconds(rng.gen_range(1_000..600_000));
    op.finished_at = Some(finished);
    op.updated_at = finished;
    op.event_seq = 2;
    match status {
        Completed => {
            op.progress.percentage = Some(100.0);
            op.progress.processed_records = Some(rng.gen_range(1..100_000));
            op.result = Some(OperationResult {
                summary: serde_json::json!({"ok": true}),
                phase_results: Vec::new(),
                artifacts: Vec::new(),
                extra: Default::default(),
            });
        }
        Failed | Timeout => {
            op.error = Some(OperationError {
                code: "UPSTREAM_ERROR".into(),
                message: "the source answered 503".into(),
                details: None,
            });
        }
        _ => {}
    }
    op
}

/// Writes `count` operations created over `days` before `now`, many creates in flight at
/// once so that the group commit shares transactions between them.
async fn seed(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    count: usize,
    days: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let span_ms = i64::from(days.max(1)) * 86_400_000;
    let ops: Vec<Operation> = (0..count)
        .map(|_| {
            let age = chrono::Duration::milliseconds(rng.gen_range(0..span_ms));
            seeded(&mut rng, tenant, project, now, age)
        })
        .collect();
    let operations = store.operations();
    let mut writes = futures_util::stream::iter(ops)
        .map(|mut op| async move {
            operations.create(&mut op, Vec::new(), None).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(SEEDING_CONCURRENCY);
    while let Some(written) = writes.next().await {
        written?;
    }
    Ok(())
}

struct Case {
    name: String,
    query: String,
    /// A field every listed operation has this value in; the summary then counts only
    /// what the filter selects.
    filter: Option<(&'static str, &'static str)>,
}

/// `GET …/async/operations` as the bench's client.
struct Lister {
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl Lister {
    async fn get(&self, query: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .get(format!("{}{query}", self.url))
            .bearer_auth(&self.secret)
            .send()
            .await?;
        ensure!(r.status() == reqwest::StatusCode::OK, "{}", r.status());
        Ok(r.json().await?)
    }

    /// Checks each case's answer, then times `requests` of them, one after another.
    async fn time(&self, cases: &[Case], requests: usize, expected: i64) -> anyhow::Result<()> {
        for case in cases {
            let first = self.get(&case.query).await?;
            let total = first["summary"]["totalOperations"].as_i64();
            let listed = first["operations"].as_array().context("no operations")?;
            ensure!(!listed.is_empty(), "{}: an empty page", case.name);
            match case.filter {
                None => ensure!(
                    total == Some(expected),
                    "{}: the summary counts {total:?} operations, not {expected}",
                    case.name
                ),
                Some((field, value)) => ensure!(
                    listed.iter().all(|op| op[field] == value),
                    "{}: an operation listed whose {field} is not {value}",
                    case.name
                ),
            }
            for _ in 0..5 {
                self.get(&case.query).await?;
            }
            let mut ms = Vec::with_capacity(requests);
            for _ in 0..requests {
                let started = Instant::now();
                self.get(&case.query).await?;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  {:<44} {:>3} listed, {:>6} in the summary; ms p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}",
                case.name,
                listed.len(),
                total.unwrap_or(0),
                percentile(&ms, 50.0),
                percentile(&ms, 95.0),
                percentile(&ms, 99.0),
                ms.last().copied().unwrap_or(f64::NAN),
            );
        }
        Ok(())
    }
}

pub async fn list(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: ListBenchArgs,
) -> anyhow::Result<()> {
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    let relais = Relais::start(config).await?;
    let store = relais.store();
    let (tenant, project, token) =
        bench_project(store, &[crate::domain::auth::Scope::OperationsRead]).await?;
    println!(
        "backend: {:?}; cores: {}; seeding {} operations created over {} days…",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.operations,
        args.days
    );
    let seeding = Instant::now();
    seed(
        store,
        tenant,
        project,
        args.operations,
        args.days,
        clock::now(),
    )
    .await?;
    println!("  seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    let deep_page = args.operations / 200 + 1;
    let cases = [
        Case {
            name: "first page, no filter".into(),
            query: String::new(),
            filter: None,
        },
        Case {
            name: format!("first page, status={}", FILTERED_STATUS.as_str()),
            query: format!("?status={}", FILTERED_STATUS.as_str()),
            filter: Some(("status", FILTERED_STATUS.as_str())),
        },
        Case {
            name: format!("first page, operationType={FILTERED_TYPE}"),
            query: format!("?operationType={FILTERED_TYPE}"),
            filter: Some(("operationType", FILTERED_TYPE)),
        },
        Case {
            name: format!("page {deep_page}, pageSize=100 (mid-list)"),
            query: format!("?page={deep_page}&pageSize=100"),
            filter: None,
        },
    ];
    let lister = Lister {
        client: reqwest::Client::new(),
        url: format!(
            "http://{}/api/{tenant}/{project}/async/operations",
            relais.addr()
        ),
        secret: token.secret.clone(),
    };
    let expected = args.operations as i64;
    if store.backend() == Backend::Postgres {
        println!("as loaded (no statistics, no visibility map yet):");
        lister.time(&cases, args.requests, expected).await?;
        let vacuuming = Instant::now();
        store.operations().vacuum_analyze().await?;
        println!(
            "after VACUUM (ANALYZE) operations, as autovacuum does after such a load ({:.1} s):",
            vacuuming.elapsed().as_secs_f64()
        );
    }
    lister.time(&cases, args.requests, expected).await?;
    relais.stop(Duration::from_secs(30)).await;
    Ok(())
}
