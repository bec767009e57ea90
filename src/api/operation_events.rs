//! `GET …/operation/{operationId}/events`: what an operation emitted and where each event
//! went, attempt by attempt, for people following one operation (the console's page).

use std::collections::HashMap;

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::format::{opt_time, time};
use super::operations::{load, parse_query, OperationPath};
use super::wire::answers::events::{
    AttemptTrace, DeliveryTrace, EventEnvelope, SubjectEventPage, TracedEvent,
};
use super::wire::notebooks::PageQuery;
use super::wire::query::parse_page;
use super::wire::{self, params};
use super::AppState;
use crate::domain::auth::{Principal, Scope};
use crate::store::EventDelivery;

#[utoipa::path(
    get,
    operation_id = "operations_events",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/events",
    tag = "operations",
    summary = "An operation's events and their deliveries",
    description = "The operation's own events in the order it emitted them, a page at a time, each with its deliveries (webhooks, callback, push worker, Slack, mail) and every attempt: status code, latency, the start of the answer.",
    params(super::auth::ProjectPath, params::OperationIdParam, wire::notebooks::PageQuery),
    responses((status = 200, description = "A page of events", body = SubjectEventPage))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (target, op) = load(&state, &principal, &path, Scope::OperationsRead).await?;
    let q: PageQuery = parse_query(&query)?;
    let (page, size) = parse_page(q.page.as_deref(), q.page_size.as_deref())?;
    let offset = u64::from(page - 1) * u64::from(size);
    let mut events = state
        .store
        .events()
        .of_subject_page(target.project, &op.id.to_string(), size, offset)
        .await?;
    let has_next_page = events.len() > size as usize;
    events.truncate(size as usize);
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let mut deliveries: HashMap<String, Vec<DeliveryTrace>> = HashMap::new();
    for delivery in state
        .store
        .deliveries()
        .of_events(target.project, &ids)
        .await?
    {
        deliveries
            .entry(delivery.delivery.event_id.clone())
            .or_default()
            .push(trace(delivery));
    }
    let events = events
        .into_iter()
        .map(|e| {
            let event = serde_json::from_value::<EventEnvelope>(e.payload).map_err(|err| {
                tracing::error!(error = %err, "a stored event is not an envelope");
                ApiError::Internal
            })?;
            Ok(TracedEvent {
                deliveries: deliveries.remove(&e.id).unwrap_or_default(),
                event,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(SubjectEventPage {
        events,
        page,
        page_size: size,
        has_next_page,
    }))
}

fn trace(d: EventDelivery) -> DeliveryTrace {
    let delivery = d.delivery;
    DeliveryTrace {
        delivery_id: delivery.id,
        channel: d.channel.as_str(),
        endpoint_id: d.endpoint_id,
        status: delivery.status.as_str(),
        next_attempt_at: opt_time(delivery.next_attempt_at),
        created_at: time(delivery.created_at),
        delivered_at: opt_time(delivery.delivered_at),
        attempts: d
            .attempts
            .into_iter()
            .map(|a| AttemptTrace {
                attempted_at: time(a.attempted_at),
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                response_body: a.response_body,
                error: a.error,
                success: a.success,
            })
            .collect(),
    }
}
