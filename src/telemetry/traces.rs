//! OpenTelemetry traces, exported over OTLP (HTTP, protobuf) when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_` form) is set. The SDK reads the
//! standard variables itself (headers, timeout, sampler, batching, resource); what it
//! cannot honour here is said once, as a warning, with what is done instead.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The service's name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES`
/// gives one.
const SERVICE_NAME: &str = "relais";

/// What the SDK names a service nobody named.
const UNNAMED: &str = "unknown_service";

/// The process's tracer, for the logging layer that turns spans into traces.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// What the traces take, whatever `RUST_LOG` lets through to the logs: Relais's spans
/// and its lines at `info` (as the spans' events), others' warnings. The exporter's own
/// lines never, as a line about an export must not feed the next one.
pub fn filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("relais", LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
}

/// What the environment asks for: the tracer, if traces are to be exported, and what
/// could not be done as asked (to log once logging is set up, which needs the tracer).
pub struct Setup {
    pub traces: Option<Traces>,
    pub warnings: Vec<String>,
}

impl Traces {
    /// The `tracing` layer that exports the process's spans.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("relais"))
    }

    /// Sends the spans not yet exported and stops the exporter: after the server stops,
    /// outside any async runtime, as the exporter's HTTP client blocks.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: the last traces may not have been exported: {e}");
        }
    }
}

/// The tracer the standard `OTEL_*` variables describe, if they ask for one. Must run
/// while the process has a single thread: it may remove a compression variable the
/// exporter would refuse to start with (see [`compression`]).
pub fn from_env() -> Setup {
    let mut warnings = Vec::new();
    let traces = build(&mut warnings);
    Setup { traces, warnings }
}

fn build(warnings: &mut Vec<String>) -> Option<Traces> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return None;
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return None,
        Some(other) => warnings.push(format!(
            "OTEL_TRACES_EXPORTER={other} is not supported; traces are exported over OTLP"
        )),
    }
    if let Some((name, protocol)) = first_of(&[
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]) {
        if protocol != "http/protobuf" {
            warnings.push(format!(
                "{name}={protocol} is not supported; traces are sent as http/protobuf, \
                 which the endpoint must accept (usually on port 4318)"
            ));
        }
    }
    if let Some((name, propagators)) = first_of(&["OTEL_PROPAGATORS"]) {
        if propagators != "tracecontext" {
            warnings.push(format!(
                "{name}={propagators} is not supported; trace context is read and sent as \
                 W3C traceparent and tracestate only"
            ));
        }
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(gzip) = compression(warnings) {
        exporter = exporter.with_compression(gzip);
    }
    let exporter = match exporter.build() {
        Ok(exporter) => exporter,
        Err(e) => {
            warnings.push(format!("traces are not exported: {e}"));
            return None;
        }
    };
    let mut provider = SdkTracerProvider::builder().with_batch_exporter(exporter);
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| name.as_str() != UNNAMED);
    if !named {
        provider =
            provider.with_resource(Resource::builder().with_service_name(SERVICE_NAME).build());
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Some(Traces {
        provider: provider.build(),
    })
}

/// The compression the variables ask for: gzip, or none. The exporter reads these
/// variables itself and refuses to start on a value it does not know (`none` included),
/// and only an explicit choice overrides them; so gzip is chosen here, and any other
/// value is removed from the environment before the exporter reads it.
fn compression(warnings: &mut Vec<String>) -> Option<Compression> {
    let names = [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ];
    let (name, value) = first_of(&names)?;
    if value == "gzip" {
        return Some(Compression::Gzip);
    }
    if value != "none" {
        warnings.push(format!(
            "{name}={value} is not supported (gzip or none); traces are sent uncompressed"
        ));
    }
    for name in names {
        // Sound while the process has one thread, which `from_env` requires.
        std::env::remove_var(name);
    }
    None
}

/// A variable's value, trimmed; `None` when unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The first of these variables that is set, with its name.
fn first_of(names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|name| var(name).map(|value| (*name, value)))
}
