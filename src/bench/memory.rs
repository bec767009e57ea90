//! `relais bench memory`: the resident memory (RSS) of a real `relais serve` process,
//! started from this very binary, in three situations:
//! 1. idle, a few seconds after start;
//! 2. while it drains a backlog of deliveries (the delivery benchmark's first figure);
//! 3. while it receives an upload of a CSPro data file: the peak above its idle figure,
//!    which must stay under 1.5 times the file's size.
//!
//! The load (the receiver of the deliveries, the uploading client) runs in this process,
//! so it does not count. RSS is read from `/proc/<pid>/status`, so this runs on Linux.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};

use super::served::Served;
use super::{produce, register_webhook, start_receiver, wait_for, POPSTAN_DAT, POPSTAN_DCF};
use crate::clock;
use crate::config::SecretKeyArgs;
use crate::domain::auth::{NewToken, Scope};
use crate::store::Store;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct MemoryBenchArgs {
    /// Deliveries in the backlog drained while memory is sampled.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Size of the uploaded data file, in MiB.
    #[arg(long, default_value_t = 400)]
    pub upload_mib: u64,
    /// Seconds a freshly started service is left alone before it is measured idle.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

async fn settle(served: &Served, seconds: u64) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    served.rss()
}

pub async fn memory(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: MemoryBenchArgs,
) -> anyhow::Result<()> {
    ensure!(args.upload_mib >= 1, "--upload-mib must be at least 1");
    let store = Store::connect(&database_url).await.context("connecting")?;
    let store = crate::app::migrate_and_reseal(store, &secret_keys).await?;
    println!(
        "backend: {:?}; cores: {}; RSS of a `relais serve` child process",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Idle.
    let served = Served::start(&database_url, &secret_keys, &[]).await?;
    let idle = settle(&served, args.settle).await?;
    println!("idle: {:.1} MiB", mib(idle));
    drop(served);

    // 2. Draining a backlog of deliveries.
    let (arrivals, receiver_url, receiver) = start_receiver("hook")?;
    let (tenant, project) = store
        .tenants()
        .create_tenant("bench-memory", clock::now())
        .await?;
    register_webhook(&store, tenant, project, receiver_url).await?;
    let token = NewToken::from_random(rand::random());
    store
        .tenants()
        .insert_token(
            tenant,
            Some(project),
            &[Scope::OperationsWrite],
            &token.hash,
            clock::now(),
        )
        .await?;
    println!("queueing {} deliveries…", args.events);
    produce(&store, tenant, project, args.events).await?;
    store.close().await;
    let served = Served::start(
        &database_url,
        &secret_keys,
        &[("RELAIS_ALLOW_PRIVATE_TARGETS", "true")],
    )
    .await?;
    let (done, sampler) = served.sample();
    let started = Instant::now();
    let drained = wait_for(&arrivals, args.events, Duration::from_secs(600)).await;
    done.store(true, Ordering::Release);
    let peak = sampler.await?;
    drained?;
    println!(
        "delivery drain: {} deliveries in {:.1} s, peak {:.1} MiB ({:+.1} MiB over idle)",
        args.events,
        started.elapsed().as_secs_f64(),
        mib(peak),
        mib(peak) - mib(idle)
    );
    drop(served);
    receiver.stop(true).await;

    // 3. An upload.
    let size = args.upload_mib * MIB;
    let mut data = Vec::with_capacity(size as usize);
    let popstan = POPSTAN_DAT.trim_start_matches('\u{feff}').as_bytes();
    while (data.len() as u64) < size {
        let room = size as usize - data.len();
        data.extend_from_slice(&popstan[..room.min(popstan.len())]);
    }
    let boundary = "relais-bench-memory";
    let mut body = Vec::with_capacity(data.len() + POPSTAN_DCF.len() + 512);
    for (name, bytes) in [("dictionary", POPSTAN_DCF.as_bytes()), ("data", &data[..])] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    drop(data);

    let served = Served::start(&database_url, &secret_keys, &[]).await?;
    let before = settle(&served, args.settle).await?;
    let (done, sampler) = served.sample();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()?;
    let started = Instant::now();
    let answer = client
        .post(format!("{}/api/breakout/dictionaries", served.base))
        .bearer_auth(&token.secret)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await;
    let took = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let peak = sampler.await?;
    let answer = answer?;
    ensure!(
        answer.status() == reqwest::StatusCode::CREATED,
        "the upload answered {}: {}",
        answer.status(),
        answer.text().await.unwrap_or_default()
    );
    let above = peak.saturating_sub(before);
    println!(
        "upload of {} MiB: {took:.1} s; idle {:.1} MiB, peak {:.1} MiB: {:.1} MiB above idle = {:.2}× the upload",
        args.upload_mib,
        mib(before),
        mib(peak),
        mib(above),
        above as f64 / size as f64
    );
    // The upload is 400 MiB of the database: it goes with its dictionary.
    client
        .delete(format!("{}/api/breakout/dictionaries/CEN2000", served.base))
        .bearer_auth(&token.secret)
        .send()
        .await?;
    Ok(())
}
