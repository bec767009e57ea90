//! `X-Request-Id`: echoed when the client sends a sane one, minted otherwise, set on every
//! response and quoted in every error body. The request's span, named by its route, is
//! the root of its trace, or continues the caller's (`traceparent`).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: &str = crate::trace::TRACEPARENT;

/// The id of the request being served (empty outside of one).
pub fn current() -> String {
    crate::trace::current()
        .map(|request| request.id.to_string())
        .unwrap_or_default()
}

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
        tenant_id = tracing::field::Empty,
        project_id = tracing::field::Empty,
        operation_id = tracing::field::Empty,
        batch_id = tracing::field::Empty,
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    crate::trace::continue_trace(&span, header(TRACEPARENT), header("tracestate"));
    let request = crate::trace::Request {
        id: id.as_str().into(),
        traceparent: crate::trace::traceparent_of(&span).map(Into::into),
    };
    let served = crate::trace::for_request(request, next.call(req))
        .instrument(span.clone())
        .await;
    let status = match &served {
        Ok(response) => {
            name_after_route(&span, response.request());
            response.status()
        }
        Err(e) => e.as_response_error().status_code(),
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    let mut response = served?;
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

/// Names the request's span by its route's template (ids never go into names), once
/// routing has found it: asked before routing, the template costs matching the path
/// against the route table a second time (after, it is read from the matched resource's
/// place in the table). The exported span has started by then (its trace id is handed to the handlers), so its
/// name is changed in place.
fn name_after_route(span: &tracing::Span, request: &actix_web::HttpRequest) {
    let Some(route) = request.match_pattern() else {
        return;
    };
    span.context()
        .span()
        .update_name(format!("{} {route}", request.method()));
    span.record("http.route", route.as_str());
}

/// Names, on the request's span, what the request turned out to be about.
pub fn record(field: &'static str, value: impl std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}
