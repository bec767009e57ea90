//! The benchmarks' figures are only worth what they count: `relais bench e2e`, run
//! briefly, must see every event it sent arrive once, and report what it measured.

use crate::both_backends;
use crate::common::{postgres_admin_url, relais_json, Backend};

both_backends!(the_end_to_end_bench_delivers_every_event_once_and_says_what_it_cost);

async fn the_end_to_end_bench_delivers_every_event_once_and_says_what_it_cost(backend: Backend) {
    // The bench makes a database of its own on this server (or a new SQLite file).
    let server = match backend {
        Backend::Postgres => postgres_admin_url(),
        Backend::Sqlite => "sqlite://unused.db".to_owned(),
    };
    let report = tokio::task::spawn_blocking(move || {
        relais_json(
            &server,
            &[
                "bench",
                "e2e",
                "--json",
                "--endpoints",
                "2",
                "--clients",
                "4",
                "--rate",
                "100",
                "--seconds",
                "2",
                "--warmup",
                "1",
                "--idle-seconds",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    let accepted = report["accepted"].as_u64().unwrap();
    // 100 events/s paced over 2 measured seconds: fewer when the machine is busy with
    // other tests (a debug build, the tests in parallel), and up to the warm-up second's
    // 100 more when clients that fell behind catch up on their schedule.
    assert!((20..=300).contains(&accepted), "{report}");
    assert_eq!(
        report["delivered"].as_u64().unwrap(),
        accepted * 2,
        "{report}"
    );
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    let latency = &report["latencyMs"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(
        report["cpuMsPerEvent"]["service"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["rssMiB"]["peak"].as_f64().unwrap()
            >= report["rssMiB"]["idle"].as_f64().unwrap() * 0.5,
        "{report}"
    );
    match backend {
        Backend::Postgres => {
            // Every event is at least its own write transaction.
            assert!(
                report["transactionsPerEvent"].as_f64().unwrap() >= 1.0,
                "{report}"
            );
        }
        Backend::Sqlite => {
            assert!(report["transactionsPerEvent"].is_null(), "{report}");
            assert!(report["statementsPerEvent"].is_null(), "{report}");
        }
    }
}
