//! `relais bench stream`: many clients following `GET …/async/events/stream` (Server-Sent
//! Events) at once while events are written at a steady rate. Each event is one lease of
//! an operation made beforehand (one `operation.started`, one transaction), written
//! through the store so that the moment its transaction committed is known: the time the
//! write returned. Reported: the time from there to the event's arrival at each client,
//! p50/p95/p99 over every client and event, and whether every client received every
//! event, once and in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;

use super::{bench_project, percentile};
use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs};
use crate::domain::ids::OperationId;
use crate::domain::operation::Operation;
use crate::store::Claim;

#[derive(Debug, clap::Args)]
pub struct StreamBenchArgs {
    /// Clients following the stream at once.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Events written, one transaction each.
    #[arg(long, default_value_t = 2_000)]
    pub events: usize,
    /// Events written per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
}

const OPERATION_TYPE: &str = "BenchStream";

/// What one client received: each event's subject (the operation), in order, and when.
type Received = Vec<(String, Instant)>;

/// Reads one client's stream until it has `expected` events; counts it `connected` at
/// its first frame.
async fn follow(
    mut response: reqwest::Response,
    expected: usize,
    connected: Arc<AtomicUsize>,
) -> anyhow::Result<Received> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        subject: String,
    }
    let mut received = Vec::with_capacity(expected);
    let mut buffer: Vec<u8> = Vec::new();
    let mut counted = false;
    while received.len() < expected {
        let Some(chunk) = response.chunk().await? else {
            bail!("the stream ended after {} events", received.len());
        };
        let arrived = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let frame = std::str::from_utf8(&frame).context("a frame is not UTF-8")?;
            if !counted {
                // The first frame (`retry:`) is sent once the stream follows the log.
                counted = true;
                connected.fetch_add(1, Ordering::AcqRel);
            }
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let envelope: Envelope = serde_json::from_str(data)?;
                received.push((envelope.subject, arrived));
            }
        }
    }
    Ok(received)
}

pub async fn stream(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: StreamBenchArgs,
) -> anyhow::Result<()> {
    ensure!(args.rate > 0, "--rate must be above 0");
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    let relais = Relais::start(config).await?;
    let store = relais.store().clone();
    let (tenant, project, token) =
        bench_project(&store, &[crate::domain::auth::Scope::OperationsRead]).await?;
    println!(
        "backend: {:?}; cores: {}; {} clients, {} events at {}/s, one per transaction",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.clients,
        args.events,
        args.rate
    );

    // Operations to lease, one event each; creating them writes no event.
    let operations = store.operations();
    let mut creates = futures_util::stream::iter(0..args.events)
        .map(|_| async move {
            let mut spec = super::spec();
            spec.operation_type = OPERATION_TYPE.into();
            let mut op = Operation::new(OperationId::new(), tenant, project, spec, clock::now());
            operations.create(&mut op, Vec::new(), None).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(256);
    while let Some(created) = creates.next().await {
        created?;
    }

    let url = format!(
        "http://{}/api/{tenant}/{project}/async/events/stream",
        relais.addr()
    );
    let client = reqwest::Client::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let response = client.get(&url).bearer_auth(&token.secret).send().await?;
        ensure!(
            response.status() == reqwest::StatusCode::OK,
            "the stream answered {}",
            response.status()
        );
        clients.push(tokio::spawn(follow(
            response,
            args.events,
            connected.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::Acquire) < args.clients {
        ensure!(
            Instant::now() < deadline,
            "only {} of {} clients connected",
            connected.load(Ordering::Acquire),
            args.clients
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("  {} clients connected", args.clients);

    let types = [OPERATION_TYPE.to_owned()];
    let claim = Claim {
        scope: Some((tenant, project)),
        types: &types,
        excluded_types: &[],
        max: 1,
        worker_id: Some("bench".into()),
    };
    let mut written: HashMap<String, Instant> = HashMap::with_capacity(args.events);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut writing = Duration::ZERO;
    let production = Instant::now();
    while written.len() < args.events {
        ticker.tick().await;
        let started = Instant::now();
        let leased = operations
            .claim(&claim, clock::now(), Duration::from_secs(3600))
            .await?;
        let committed = Instant::now();
        writing += committed - started;
        let Some((op, _)) = leased.into_iter().next() else {
            bail!("ran out of operations to lease");
        };
        written.insert(op.id.to_string(), committed);
    }
    let produced_in = production.elapsed().as_secs_f64();
    println!(
        "  {} events written in {produced_in:.1} s ({:.0}/s), {:.1} ms per write on average",
        args.events,
        args.events as f64 / produced_in,
        writing.as_secs_f64() * 1000.0 / args.events as f64
    );

    // Every client is given a minute after the last write to receive the rest.
    let mut outcomes = Vec::with_capacity(clients.len());
    for client in clients {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))
                .and_then(|joined| joined.map_err(anyhow::Error::from))
                .and_then(|received| received),
        );
    }
    let mut latencies = Vec::with_capacity(args.clients * args.events);
    let mut complete = 0;
    let mut counts = Vec::with_capacity(outcomes.len());
    let mut problems = Vec::new();
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let received = match outcome {
            Ok(received) => received,
            Err(e) => {
                problems.push(format!("client {n}: {e:#}"));
                counts.push(0);
                continue;
            }
        };
        counts.push(received.len());
        let mut seen = std::collections::HashSet::with_capacity(received.len());
        let mut in_order = true;
        let mut last = None;
        for (subject, arrived) in &received {
            seen.insert(subject.as_str());
            match written.get(subject) {
                Some(at) => {
                    // Events are written one after another, so each is written after the last.
                    in_order &= last.is_none_or(|l| l <= *at);
                    last = Some(*at);
                    latencies.push(if *arrived >= *at {
                        (*arrived - *at).as_secs_f64() * 1000.0
                    } else {
                        -((*at - *arrived).as_secs_f64() * 1000.0)
                    });
                }
                None => problems.push(format!("client {n}: an event nobody wrote: {subject}")),
            }
        }
        if seen.len() == args.events && received.len() == args.events && in_order {
            complete += 1;
        } else {
            problems.push(format!(
                "client {n}: {} events, {} distinct, {}",
                received.len(),
                seen.len(),
                if in_order { "in order" } else { "out of order" }
            ));
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  {complete} of {} clients received all {} events, once each and in order (per client: min {}, max {})",
        args.clients,
        args.events,
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    println!(
        "  commit → arrival at the client, {} arrivals: ms p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    for problem in problems.iter().take(10) {
        println!("  {problem}");
    }
    relais.stop(Duration::from_secs(30)).await;
    ensure!(
        complete == args.clients,
        "{} clients did not receive every event",
        args.clients - complete
    );
    Ok(())
}
