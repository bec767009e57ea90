//! `relais bench notebooks`: one replica running the cron ticks of many notebooks on
//! every-second schedules. Each notebook has one block, of a type no built-in executor
//! runs (its operations wait for pull workers), so what is measured is the scheduling:
//! claiming the due notebooks and writing one run (a batch) per notebook per tick.
//!
//! Reported: the scheduling delay, from a tick to its run being written, p50/p99/max
//! over the window; the ticks that did not run (none should: the replica is up); and the
//! CPU this process used per tick (user + system time over the window, divided by its
//! ticks: on SQLite that includes the database, on PostgreSQL the server's own is not).

use std::time::Duration;

use anyhow::ensure;

use crate::app::Relais;
use crate::clock;
use crate::config::{Config, SecretKeyArgs};
use crate::domain::ids::{BlockId, NotebookId};
use crate::domain::notebook::{Block, BlockChange, Notebook, NotebookChange};

#[derive(Debug, clap::Args)]
pub struct NotebookBenchArgs {
    /// Notebooks, each on an every-second schedule.
    #[arg(long, default_value_t = 1_000)]
    pub notebooks: usize,
    /// Seconds measured, after a warm-up of a few seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// The cron expression of every notebook.
    #[arg(long, default_value = "* * * * * *")]
    pub schedule: String,
}

/// User plus system CPU time this process has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let of = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn notebooks(
    database_url: String,
    secret_keys: SecretKeyArgs,
    args: NotebookBenchArgs,
) -> anyhow::Result<()> {
    let mut config = Config::for_database(database_url);
    config.secret_keys = secret_keys;
    let relais = Relais::start(config).await?;
    let store = relais.store();
    let (tenant, project) = store.tenants().create_tenant("bench", clock::now()).await?;
    println!(
        "backend: {:?}; cores: {}; {} notebooks on `{}`, one block each, one replica",
        store.backend(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.notebooks,
        args.schedule
    );
    let notebooks = store.notebooks();
    let created = std::time::Instant::now();
    for i in 0..args.notebooks {
        let change = NotebookChange {
            name: Some(format!("bench {i}")),
            schedule: Some(Some(args.schedule.clone())),
            ..Default::default()
        };
        let notebook = Notebook::create(
            NotebookId::new(),
            tenant,
            project,
            change,
            "bench",
            clock::now(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        notebooks.create(&notebook, None).await?;
        let block = BlockChange {
            block_type: Some("BenchPullWork".into()),
            title: Some("tick".into()),
            ..Default::default()
        };
        notebooks
            .add_block(
                tenant,
                project,
                notebook.id,
                |others| {
                    Block::create(
                        BlockId::new(),
                        notebook.id,
                        block,
                        others,
                        "bench",
                        clock::now(),
                    )
                },
                None,
                |_| String::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("adding a block: {e:?}"))?;
    }
    println!(
        "created in {:.1} s; warming up",
        created.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The window: whole seconds, so that it holds exactly `seconds` ticks.
    let now = clock::now();
    let from =
        now + chrono::Duration::milliseconds(1000 - i64::from(now.timestamp_subsec_millis()));
    let to = from + chrono::Duration::seconds(args.seconds as i64);
    tokio::time::sleep((from - clock::now()).to_std().unwrap_or_default()).await;
    let cpu_before = cpu_time();
    tokio::time::sleep((to - clock::now()).to_std().unwrap_or_default()).await;
    let cpu = cpu_time() - cpu_before;
    // Ticks of the window still being written are waited for, up to a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let expected = args.notebooks * args.seconds as usize;
    let runs = loop {
        let runs = notebooks.scheduled_runs_between(from, to).await?;
        if runs.len() >= expected || std::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(!runs.is_empty(), "no run was written in the window");
    let mut delays: Vec<i64> = runs
        .iter()
        .map(|(tick, written)| (*written - *tick).num_milliseconds())
        .collect();
    delays.sort_unstable();
    let ticks = runs
        .iter()
        .map(|(tick, _)| *tick)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    println!(
        "{} runs for {} ticks in {} s ({} expected, {} missing); scheduling delay (tick to run written): p50 {} ms, p99 {} ms, max {} ms",
        runs.len(),
        ticks,
        args.seconds,
        expected,
        expected.saturating_sub(runs.len()),
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or(0),
    );
    println!(
        "CPU of this process: {:.0} ms per tick ({:.0}% of one core), {:.2} ms per run",
        cpu.as_secs_f64() * 1000.0 / ticks as f64,
        100.0 * cpu.as_secs_f64() / args.seconds as f64,
        cpu.as_secs_f64() * 1000.0 / runs.len() as f64
    );
    relais.stop(std::time::Duration::from_secs(30)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ranks_of_the_sorted_delays() {
        let delays: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&delays, 50.0), 50);
        assert_eq!(percentile(&delays, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
