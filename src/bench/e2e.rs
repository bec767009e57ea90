//! `relais bench e2e`: one API call makes one event, delivered signed to every endpoint
//! subscribed to it, measured end to end on a real `relais serve` process.
//!
//! The workload: pull workers hold one leased operation each and report progress on it
//! (`POST …/operation/{id}/progress`); each report writes an `operation.progress` event,
//! which `--endpoints` webhooks take, all pointing at a receiver in this process. A report
//! carries its send time (as `processedRecords`, in microseconds since the bench began),
//! so the receiver reads each delivery's latency from the payload it is sent.
//!
//! Each run gets a database of its own (a new PostgreSQL database on the server of
//! `--database-url`, dropped afterwards; or a new SQLite file). What the database did
//! comes from its own statistics: statements from `pg_stat_statements` (when the server
//! preloads it; the figure is omitted otherwise), transactions from `pg_stat_database`,
//! CPU time from `/proc` for the service and the PostgreSQL server, so this runs on Linux
//! with PostgreSQL on the same machine.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, ensure, Context};
use serde::Serialize;

use super::database::{DatabaseStats, Fresh};
use super::served::{status_kib, Served};
use super::{bench_project, percentile};
use crate::config::SecretKeyArgs;
use crate::domain::auth::Scope;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct E2eBenchArgs {
    /// Webhooks subscribed to the events (each event is delivered to every one).
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// Pull workers reporting progress, each on its own leased operation. Without
    /// `--rate`, each sends its next report as soon as the last is answered.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Events per second in all, paced evenly across the clients.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Seconds of load before the measured ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Seconds the started service is watched doing nothing, before the load.
    #[arg(long, default_value_t = 5)]
    pub idle_seconds: u32,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Also write every measured delivery to this file, one `sent_ms,latency_ms` line
    /// each (sent counted from the start of the measured seconds), in the order of
    /// sending: where a tail lies in time, bursts or spread.
    #[arg(long)]
    pub latencies: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    backend: &'static str,
    endpoints: usize,
    clients: usize,
    rate: Option<u32>,
    seconds: u32,
    /// Reports answered 200 during the measured seconds.
    accepted: u64,
    /// Deliveries of those events that arrived, each endpoint's once.
    delivered: u64,
    /// Deliveries of any event of the run that never arrived, or arrived more than once.
    lost: u64,
    duplicated: u64,
    events_per_second: f64,
    /// Deliveries that arrived during the measured seconds, per second.
    deliveries_per_second: f64,
    /// From a report's sending to its delivery's arrival, for the measured events.
    latency_ms: Percentiles,
    /// Over the load and the drain that follows, per event accepted.
    statements_per_event: Option<f64>,
    transactions_per_event: Option<f64>,
    cpu_ms_per_event: CpuPerEvent,
    #[serde(rename = "rssMiB")]
    rss_mib: Rss,
    idle: Idle,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct CpuPerEvent {
    service: f64,
    database: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Rss {
    idle: f64,
    peak: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Idle {
    /// Percent of one core.
    service_cpu_percent: f64,
    database_cpu_percent: Option<f64>,
    statements_per_second: Option<f64>,
}

/// What the receiver saw.
struct Arrivals {
    origin: Instant,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// (endpoint, event id) of every delivery that arrived.
    unique: HashSet<(u16, String)>,
    duplicated: u64,
    /// (sent, arrived) in microseconds since the origin, one per first arrival.
    timings: Vec<(u64, u64)>,
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    arrivals: web::Data<Arc<Arrivals>>,
) -> HttpResponse {
    let arrived = arrivals.origin.elapsed().as_micros() as u64;
    let endpoint: Option<u16> = request
        .path()
        .strip_prefix("/e")
        .and_then(|n| n.parse().ok());
    let event = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok());
    let sent = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|envelope| envelope["data"]["progress"]["processedRecords"].as_u64());
    let (Some(endpoint), Some(event), Some(sent)) = (endpoint, event, sent) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut seen = arrivals.seen.lock().expect("not poisoned");
    if seen.unique.insert((endpoint, event.to_owned())) {
        seen.timings.push((sent, arrived));
    } else {
        seen.duplicated += 1;
    }
    HttpResponse::NoContent().finish()
}

/// One pull worker's leased operation.
struct Leased {
    operation: String,
    token: String,
}

pub async fn e2e(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: E2eBenchArgs,
) -> anyhow::Result<()> {
    // Each client holds a leased operation and a connection of its own.
    ensure!(
        (1..=10_000).contains(&args.clients),
        "--clients must be between 1 and 10000"
    );
    ensure!(
        args.rate.is_none_or(|r| r >= 1),
        "--rate must be at least 1 event per second"
    );
    ensure!(
        (1..=1000).contains(&args.endpoints),
        "--endpoints must be between 1 and 1000"
    );
    ensure!(args.seconds >= 1, "--seconds must be at least 1");
    let fresh = Fresh::create(&database_url).await?;
    let outcome = run(&fresh, &secret_keys, &args).await;
    fresh.drop_database().await;
    let report = outcome?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

async fn run(
    fresh: &Fresh,
    secret_keys: &SecretKeyArgs,
    args: &E2eBenchArgs,
) -> anyhow::Result<Report> {
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let stats = match fresh {
        Fresh::Postgres { url, name, .. } => Some(DatabaseStats::connect(url, name).await?),
        Fresh::Sqlite { .. } => None,
    };
    // The child seals webhook secrets with a key of its own: nothing else opens them.
    let key = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    );
    let child_keys = SecretKeyArgs {
        secret_key: Some(key),
        ..secret_keys.clone()
    };
    let served = Served::start(
        fresh.url(),
        &child_keys,
        &[
            ("RELAIS_ALLOW_PRIVATE_TARGETS", "true"),
            ("RELAIS_SHUTDOWN_DELAY", "0"),
        ],
    )
    .await?;
    let store = Store::connect(fresh.url()).await.context("connecting")?;
    let (tenant, project, token) = bench_project(
        &store,
        &[
            Scope::OperationsWrite,
            Scope::Workers,
            Scope::WebhooksManage,
        ],
    )
    .await?;
    store.close().await;
    let base = format!("{}/api/{tenant}/{project}/async", served.base);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients + 8)
        .tcp_nodelay(true)
        .build()?;

    let arrivals = Arc::new(Arrivals {
        origin: Instant::now(),
        seen: Mutex::new(Seen::default()),
    });
    let receiver = {
        let data = web::Data::new(arrivals.clone());
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .backlog(4096)
        .max_connections(100_000)
        .disable_signals()
        .bind("127.0.0.1:0")?
    };
    let receiver_url = format!("http://{}", receiver.addrs()[0]);
    let receiver = receiver.run();
    let receiver_handle = receiver.handle();
    tokio::spawn(receiver);

    for i in 0..args.endpoints {
        let r = client
            .post(format!("{base}/webhooks"))
            .bearer_auth(&token.secret)
            .json(&serde_json::json!({
                "webhookUrl": format!("{receiver_url}/e{i}"),
                "webhookName": format!("bench {i}"),
                "events": ["operation.progress"],
            }))
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "creating a webhook answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }

    say(format!(
        "backend: {}; cores: {}; {} endpoint(s), {} client(s), {}",
        if stats.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.endpoints,
        args.clients,
        args.rate
            .map_or("closed loop".to_owned(), |r| format!("{r} events/s")),
    ));

    // Idle: nothing to do but the service's own loops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu = served.cpu()?;
    let idle_threads = served.thread_cpu()?;
    let idle_db = match &stats {
        Some(s) => Some(s.snapshot().await?),
        None => None,
    };
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds.into())).await;
    let idle_seconds = idle_started.elapsed().as_secs_f64();
    let idle_threads_after = served.thread_cpu()?;
    let idle_service = if idle_threads.keys().eq(idle_threads_after.keys()) {
        let ns: u64 = idle_threads_after
            .iter()
            .map(|(tid, after)| after.saturating_sub(idle_threads[tid]))
            .sum();
        ns as f64 / 1e9 / idle_seconds * 100.0
    } else {
        // A thread came or went: the ticks, which count every thread's time.
        (served.cpu()? - idle_cpu).as_secs_f64() / idle_seconds * 100.0
    };
    let idle_db_after = match &stats {
        Some(s) => Some(s.snapshot().await?),
        None => None,
    };
    // The idle statements include the one snapshot query made during it.
    let idle = Idle {
        service_cpu_percent: idle_service,
        database_cpu_percent: idle_db
            .zip(idle_db_after)
            .and_then(|(a, b)| Some((b.cpu? - a.cpu?).as_secs_f64() / idle_seconds * 100.0)),
        statements_per_second: idle_db.zip(idle_db_after).and_then(|(a, b)| {
            Some((b.statements? - a.statements? - 2).max(0) as f64 / idle_seconds)
        }),
    };
    let rss_idle = served.rss()?;
    say(format!(
        "idle for {idle_seconds:.0} s: service {:.3}% of a core, database {}, {} statements/s, RSS {:.1} MiB",
        idle.service_cpu_percent,
        idle.database_cpu_percent
            .map_or("?".to_owned(), |p| format!("{p:.3}% of a core")),
        idle.statements_per_second
            .map_or("?".to_owned(), |s| format!("{s:.2}")),
        rss_idle as f64 / 1048576.0,
    ));
    // Leased after the idle watch, so that a long one outlives no lease.
    let leased = lease_operations(&client, &base, &token.secret, args.clients).await?;

    // The load.
    if let Some(s) = &stats {
        s.reset_statements().await?;
    }
    let before_db = match &stats {
        Some(s) => Some(s.snapshot().await?),
        None => None,
    };
    let before_cpu = served.cpu()?;
    let (sampling, peak_rss) = served.sample();
    let origin = arrivals.origin;
    let load_start = origin.elapsed();
    let window_start = load_start + Duration::from_secs(args.warmup.into());
    let window_end = window_start + Duration::from_secs(args.seconds.into());
    let accepted_all = Arc::new(AtomicU64::new(0));
    let accepted_window = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    let spacing = args
        .rate
        .map(|r| Duration::from_secs_f64(args.clients as f64 / f64::from(r)));
    for (n, lease) in leased.into_iter().enumerate() {
        let (client, base, secret) = (client.clone(), base.clone(), token.secret.clone());
        let (accepted_all, accepted_window) = (accepted_all.clone(), accepted_window.clone());
        // Paced clients start spread over one spacing, so the total rate is even.
        let first = spacing.map_or(Duration::ZERO, |s| {
            s.mul_f64(n as f64 / args.clients as f64)
        });
        clients.spawn(async move {
            let url = format!("{base}/operation/{}/progress", lease.operation);
            let mut due = origin + load_start + first;
            loop {
                if spacing.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = origin.elapsed();
                if sent >= window_end {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = format!(
                    r#"{{"leaseToken":"{}","processedRecords":{}}}"#,
                    lease.token,
                    sent.as_micros()
                );
                let r = client
                    .post(&url)
                    .bearer_auth(&secret)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                if status != reqwest::StatusCode::OK {
                    bail!(
                        "a progress report answered {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                r.bytes().await?;
                accepted_all.fetch_add(1, Ordering::Relaxed);
                if sent >= window_start {
                    accepted_window.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(s) = spacing {
                    due += s;
                }
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let sent_all = accepted_all.load(Ordering::Acquire);
    let expected = sent_all * args.endpoints as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrived = arrivals.seen.lock().expect("not poisoned").unique.len() as u64;
        if arrived >= expected || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_at = origin.elapsed();
    sampling.store(true, Ordering::Release);
    let peak = peak_rss
        .await?
        .max(status_kib(served.pid(), "VmHWM")? * 1024);
    let service_cpu = served.cpu()? - before_cpu;
    let during_db = match &stats {
        Some(s) => Some(s.snapshot().await?),
        None => None,
    };
    // Its sessions end, so their transactions are in the statistics.
    served.stop().await?;
    let after_db = match &stats {
        Some(s) => Some(s.snapshot().await?),
        None => None,
    };
    let top = match &stats {
        Some(s) => s.top_statements(15).await?,
        None => Vec::new(),
    };
    receiver_handle.stop(true).await;

    let seen = std::mem::take(&mut *arrivals.seen.lock().expect("not poisoned"));
    let window = window_start.as_micros() as u64..window_end.as_micros() as u64;
    // (sent, arrived) of the events sent during the measured seconds.
    let measured: Vec<(u64, u64)> = seen
        .timings
        .iter()
        .filter(|(sent, _)| window.contains(sent))
        .copied()
        .collect();
    if let Some(path) = &args.latencies {
        write_latencies(path, measured.clone(), window.start)?;
    }
    let mut latencies: Vec<f64> = measured
        .iter()
        .map(|(sent, arrived)| arrived.saturating_sub(*sent) as f64 / 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let delivered = latencies.len() as u64;
    let arrived_in_window = seen
        .timings
        .iter()
        .filter(|(_, arrived)| window.contains(arrived))
        .count();
    let accepted = accepted_window.load(Ordering::Acquire);
    let seconds = f64::from(args.seconds);
    let per_event = |v: f64| v / sent_all.max(1) as f64;
    let report = Report {
        backend: if stats.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        endpoints: args.endpoints,
        clients: args.clients,
        rate: args.rate,
        seconds: args.seconds,
        accepted,
        delivered,
        lost: expected.saturating_sub(seen.unique.len() as u64),
        duplicated: seen.duplicated,
        events_per_second: accepted as f64 / seconds,
        deliveries_per_second: arrived_in_window as f64 / seconds,
        latency_ms: Percentiles {
            p50: percentile(&latencies, 50.0),
            p95: percentile(&latencies, 95.0),
            p99: percentile(&latencies, 99.0),
            max: latencies.last().copied().unwrap_or(f64::NAN),
        },
        statements_per_event: before_db
            .zip(after_db)
            .and_then(|(a, b)| Some(per_event((b.statements? - a.statements?) as f64))),
        transactions_per_event: before_db
            .zip(after_db)
            .map(|(a, b)| per_event((b.transactions - a.transactions) as f64)),
        cpu_ms_per_event: CpuPerEvent {
            service: per_event(service_cpu.as_secs_f64() * 1000.0),
            database: before_db
                .zip(during_db)
                .and_then(|(a, b)| Some(per_event((b.cpu? - a.cpu?).as_secs_f64() * 1000.0))),
        },
        rss_mib: Rss {
            idle: rss_idle as f64 / 1048576.0,
            peak: peak as f64 / 1048576.0,
        },
        idle,
    };
    say(format!(
        "load: {} reports in {:.1} s ({} measured: {:.0} events/s), {} deliveries ({:.0}/s measured); drained {:.1} s after the last report",
        sent_all,
        (window_end - load_start).as_secs_f64(),
        report.accepted,
        report.events_per_second,
        seen.unique.len(),
        report.deliveries_per_second,
        drained_at.saturating_sub(window_end).as_secs_f64(),
    ));
    say(format!(
        "lost {}, duplicated {}; latency ms: p50 {:.2}, p95 {:.2}, p99 {:.2}, max {:.2}",
        report.lost,
        report.duplicated,
        report.latency_ms.p50,
        report.latency_ms.p95,
        report.latency_ms.p99,
        report.latency_ms.max
    ));
    say(format!(
        "per event: {} statements, {} transactions, CPU {:.3} ms service + {} database; RSS peak {:.1} MiB",
        report
            .statements_per_event
            .map_or("?".to_owned(), |s| format!("{s:.2}")),
        report
            .transactions_per_event
            .map_or("?".to_owned(), |s| format!("{s:.2}")),
        report.cpu_ms_per_event.service,
        report
            .cpu_ms_per_event
            .database
            .map_or("?".to_owned(), |d| format!("{d:.3} ms")),
        report.rss_mib.peak,
    ));
    if !top.is_empty() {
        say("statements per event, most first:".to_owned());
        for (calls, query) in top {
            let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
            say(format!(
                "  {:6.3}  {}",
                per_event(calls as f64),
                query.chars().take(150).collect::<String>()
            ));
        }
    }
    Ok(report)
}

/// Creates one operation per client and leases them all, as pull workers would.
async fn lease_operations(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    count: usize,
) -> anyhow::Result<Vec<Leased>> {
    for _ in 0..count {
        let r = client
            .post(format!("{base}/operation"))
            .bearer_auth(secret)
            .json(&serde_json::json!({"operationType": "Bench", "operationName": "bench e2e"}))
            .send()
            .await?;
        ensure!(
            r.status() == reqwest::StatusCode::ACCEPTED,
            "creating an operation answered {}",
            r.status()
        );
    }
    let mut leased = Vec::with_capacity(count);
    while leased.len() < count {
        let r: serde_json::Value = client
            .post(format!("{base}/workers/lease"))
            .bearer_auth(secret)
            .json(&serde_json::json!({"operationTypes": ["Bench"], "max": (count - leased.len()).min(100), "workerId": "bench-e2e"}))
            .send()
            .await?
            .json()
            .await?;
        let leases = r["leases"].as_array().cloned().unwrap_or_default();
        ensure!(!leases.is_empty(), "leasing answered no operations: {r}");
        for lease in leases {
            leased.push(Leased {
                operation: lease["operationId"]
                    .as_str()
                    .context("a lease without operationId")?
                    .to_owned(),
                token: lease["leaseToken"]
                    .as_str()
                    .context("a lease without leaseToken")?
                    .to_owned(),
            });
        }
    }
    Ok(leased)
}

fn write_latencies(
    path: &std::path::Path,
    mut measured: Vec<(u64, u64)>,
    start: u64,
) -> anyhow::Result<()> {
    use std::io::Write;
    measured.sort_unstable();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "sent_ms,latency_ms")?;
    for (sent, arrived) in measured {
        writeln!(
            out,
            "{:.3},{:.3}",
            (sent - start) as f64 / 1000.0,
            arrived.saturating_sub(sent) as f64 / 1000.0
        )?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}
