//! `X-Request-Id`: echoed when the client sends a sane one, minted otherwise, set on every
//! response and quoted in every error body.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served (empty outside of one).
pub fn current() -> String {
    crate::trace::request_id().unwrap_or_default()
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
    // Every line logged while serving the request carries these; the handlers fill in
    // the tenant, project, operation or batch once they know them.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
        tenant_id = tracing::field::Empty,
        project_id = tracing::field::Empty,
        operation_id = tracing::field::Empty,
        batch_id = tracing::field::Empty,
    );
    let mut response = crate::trace::for_request(id.clone(), next.call(req))
        .instrument(span.clone())
        .await?;
    let status = response.status();
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

/// Names, on the request's span, what the request turned out to be about.
pub fn record(field: &'static str, value: impl std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}
