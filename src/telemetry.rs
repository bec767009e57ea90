//! Prometheus metrics: one recorder for the process, installed by the first service that
//! starts, and its text rendering for `GET /metrics`. The loops count through the
//! `metrics` macros; no label ever carries a tenant's free text. OpenTelemetry traces,
//! made from the `tracing` spans, are `traces`'.

pub mod traces;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds, from a millisecond to a minute.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The process's recorder (installed once; later calls get the same one).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder was installed first; /metrics will show nothing"
            );
        }
        handle
    })
}

/// Everything recorded so far, in the Prometheus text format.
pub fn render() -> String {
    install().render()
}
