//! `GET /metrics` (Prometheus text format) and the middleware that counts every request
//! by method, route template and status. Gauges that need the database (the outbox
//! backlog) are read at a scrape at most every few seconds; the pool's are read at each.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::clock;

/// How stale the database-read gauges may be: a busy scraper costs a query this often.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

static BACKLOG_READ: Mutex<Option<Instant>> = Mutex::new(None);

fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Counts the request under its route's template (`/api/{tenantId}/…`), never its path:
/// ids and a tenant's text stay out of the labels.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!("relais_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("relais_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics",
    description = "The Prometheus text format: HTTP requests by route template and status, operations started and ended, leases granted and expired, deliveries by channel and outcome with their latency, the outbox backlog and the database pool.",
    security(()),
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String))
)]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let due = {
        let mut last = BACKLOG_READ.lock().expect("not poisoned");
        let due = last.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if due {
        let now = clock::now();
        match state.store.deliveries().backlog(now).await {
            Ok(backlog) => {
                metrics::gauge!("relais_outbox_due").set(backlog.due as f64);
                metrics::gauge!("relais_outbox_in_flight").set(backlog.in_flight as f64);
                let age = backlog
                    .oldest_due
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("relais_outbox_oldest_due_age_seconds").set(age);
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox backlog for /metrics failed"),
        }
    }
    let (size, idle) = state.store.pool_connections();
    metrics::gauge!("relais_db_pool_connections", "state" => "in_use")
        .set((size as usize).saturating_sub(idle) as f64);
    metrics::gauge!("relais_db_pool_connections", "state" => "idle").set(idle as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render())
}
