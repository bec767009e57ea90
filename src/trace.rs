//! The request a piece of work is done for, carried along with it: the API sets it for
//! each request; the store stamps it on the events the request causes, so the lines the
//! dispatcher logs for their deliveries name it too, and their spans join its trace. One
//! search for a request id then finds the request, its writes and its deliveries; with
//! traces exported, one trace shows them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C Trace Context header.
pub const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// An API request, as the work it causes remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its `X-Request-Id`.
    pub id: Arc<str>,
    /// The W3C `traceparent` of its span; `None` when traces are not exported.
    pub traceparent: Option<Arc<str>>,
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Runs `work` as part of `request`.
pub async fn for_request<F: Future>(request: Request, work: F) -> F::Output {
    REQUEST.scope(request, work).await
}

/// The request being served, if any.
pub fn current() -> Option<Request> {
    REQUEST.try_with(Clone::clone).ok()
}

/// Makes `span` continue the trace of an incoming `traceparent` (with its `tracestate`),
/// through the propagator installed with the tracer: without one, nothing is continued.
/// Must come before the span is first entered, which starts it.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if parent.span().span_context().is_valid() {
        // Fails only without a tracing-opentelemetry layer, when there is no trace to join.
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the span a stored `traceparent` names (the request that wrote
/// an event), whatever propagator is installed: the column always holds W3C's format.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The W3C `traceparent` that names `span`, for a stored event or an outbound request;
/// `None` when traces are not exported (the span has no OpenTelemetry context).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn without_a_tracer_a_span_has_no_traceparent() {
        let span = tracing::info_span!("request");
        follow(&span, Some(PARENT));
        assert_eq!(traceparent_of(&span), None);
    }

    #[test]
    fn a_span_that_follows_a_traceparent_is_its_child() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("deliver");
            follow(&span, Some(PARENT));
            let own = traceparent_of(&span).expect("a traced span has one");
            let parts: Vec<&str> = own.split('-').collect();
            assert_eq!(parts.len(), 4, "{own}");
            assert_eq!(
                parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
                "the same trace"
            );
            assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");
            assert_eq!(parts[3], "01", "sampled, as its parent");

            let unrelated = tracing::info_span!("request");
            follow(&unrelated, Some("not a traceparent"));
            let fresh = traceparent_of(&unrelated).expect("a root span");
            assert!(
                !fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{fresh}"
            );
        });
    }
}
