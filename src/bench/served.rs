//! A real `relais serve` process for the benchmarks that measure the service alone
//! (`memory`, `e2e`), and what Linux says of processes: resident memory and CPU time,
//! read from `/proc`, so these benchmarks run on Linux.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::SecretKeyArgs;

/// A `relais serve` child process, started from this very binary on a free local port,
/// killed when dropped.
pub(super) struct Served {
    child: std::process::Child,
    pub base: String,
}

impl Served {
    /// `secret_keys`: this process's own settings, so the child opens what it sealed.
    pub async fn start(
        database_url: &str,
        secret_keys: &SecretKeyArgs,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Served> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = std::process::Command::new(std::env::current_exe()?);
        if let Some(key) = &secret_keys.secret_key {
            command.env("RELAIS_SECRET_KEY", key);
        }
        let child = command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("RELAIS_DATABASE_URL", database_url)
            .env("RELAIS_SECRET_KEY_FILE", &secret_keys.secret_key_file)
            .env(
                "RELAIS_PREVIOUS_SECRET_KEYS",
                secret_keys.previous_secret_keys.join(","),
            )
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting relais serve")?;
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{}/readyz", served.base)).send().await {
                if r.status().is_success() {
                    return Ok(served);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("relais serve did not become ready")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmRSS").map(|kib| kib * 1024)
    }

    /// CPU time used so far, user and system, all threads.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        Ok(ProcStat::read(self.pid())?.cpu)
    }

    /// Each live thread's time on a CPU, in nanoseconds (`/proc/<pid>/task/*/schedstat`).
    /// `/proc/<pid>/stat` counts in clock ticks (10 ms): over an idle minute that is a
    /// sixth of the 0.1% a quiet service may use. This is exact, but forgets the time of
    /// threads that exit: compare two readings only when they list the same threads.
    pub fn thread_cpu(&self) -> anyhow::Result<BTreeMap<u32, u64>> {
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read: it is then not listed.
            let Ok(line) =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/schedstat", self.pid()))
            else {
                continue;
            };
            let ns = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .context("unreadable /proc/<pid>/task/<tid>/schedstat")?;
            threads.insert(tid, ns);
        }
        Ok(threads)
    }

    /// Samples RSS every few milliseconds until the returned flag is set; the peak seen.
    pub fn sample(&self) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
        let (done, pid) = (Arc::new(AtomicBool::new(false)), self.pid());
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                while !done.load(Ordering::Acquire) {
                    if let Ok(kib) = status_kib(pid, "VmRSS") {
                        peak.fetch_max(kib * 1024, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                peak.load(Ordering::Relaxed)
            })
        };
        (done, sampler)
    }

    /// Stops the service as an operator would (SIGTERM) and waits for it to exit, so that
    /// its database sessions end and the database's statistics include them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid; it has not been waited for, so the pid
        // is still ours.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..1200 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("relais serve did not stop within a minute of SIGTERM")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` line of `/proc/<pid>/status`.
pub(super) fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/<pid>/status (this benchmark needs Linux)")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// What `/proc/<pid>/stat` says of a process's CPU time.
struct ProcStat {
    parent: u32,
    /// User and system time of all its threads.
    cpu: Duration,
    /// The same, of its children that exited and were waited for.
    children_cpu: Duration,
}

impl ProcStat {
    fn read(pid: u32) -> anyhow::Result<ProcStat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .context("reading /proc/<pid>/stat (this benchmark needs Linux)")?;
        // The command name is in parentheses and may hold spaces: fields follow the last.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unreadable /proc/<pid>/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> anyhow::Result<u64> {
            // Fields are numbered from 1 in proc(5); `rest` starts at field 3.
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .context("unreadable /proc/<pid>/stat")
        };
        // SAFETY: sysconf only reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let time = |a: u64, b: u64| Duration::from_secs_f64((a + b) as f64 / ticks);
        Ok(ProcStat {
            parent: field(4)? as u32,
            cpu: time(field(14)?, field(15)?),
            children_cpu: time(field(16)?, field(17)?),
        })
    }
}

/// CPU time used so far by a PostgreSQL server, given the process id of one of its
/// sessions: its postmaster's own time, the time of every process it runs now, and of
/// those that already exited (which the postmaster waited for).
pub(super) fn postgres_cpu(session_pid: u32) -> anyhow::Result<Duration> {
    let postmaster = ProcStat::read(session_pid)?.parent;
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read: it is in the
        // postmaster's children's time by then, read below.
        if let Ok(stat) = ProcStat::read(pid) {
            if stat.parent == postmaster {
                total += stat.cpu;
            }
        }
    }
    // Read last, so that a process exiting during the scan is counted (once, or at worst
    // twice), never missed.
    let own = ProcStat::read(postmaster)?;
    Ok(total + own.cpu + own.children_cpu)
}
