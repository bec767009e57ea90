//! The worker protocol: lease, progress (the heartbeat), complete, fail.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::auth::ProjectPath;
use super::body::Body;
use super::error::ApiError;
use super::format::opt_time;
use super::operations::OperationPath;
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::operation::{Backoff, OperationStatus};
use crate::domain::requests::{CompleteBody, FailBody, LeaseBody, LeaseRequest, ProgressBody};
use crate::engine;

pub async fn lease(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::Workers))
        .await?;
    let request: LeaseRequest = body.json_or_default::<LeaseBody>()?.try_into()?;
    let heartbeat = state.config.heartbeat_timeout;
    if principal.operation.is_some() {
        // A push worker's callback token reports on its task; it does not lease.
        return Err(ApiError::Forbidden("workers"));
    }
    let mut excluded = state.executors.types();
    excluded.extend(state.store.push_worker_types(target.project).await?);
    let leased = engine::lease_with_wait(
        &state.store,
        target.tenant,
        target.project,
        &request,
        &excluded,
        heartbeat,
    )
    .await?;
    let leases: Vec<Value> = leased
        .iter()
        .map(|(op, token)| op.work_order(token, heartbeat))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "leases": leases })))
}

pub async fn progress(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::Workers))
        .await?;
    let id = path.operation_id()?;
    if !principal.may_act_on(id) {
        return Err(ApiError::NotFound("operation"));
    }
    let (token, report) = body.json::<ProgressBody>()?.into_report()?;
    let ttl = state.config.heartbeat_timeout;
    let now = clock::now();
    let (_, op) = state
        .store
        .mutate_operation(target.tenant, target.project, id, now, move |op| {
            op.report_progress(now, &token, report.clone(), ttl)
                .map(|events| ((), events))
                .map_err(ApiError::from)
        })
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    let cancel_requested = matches!(
        op.status,
        OperationStatus::Cancelled | OperationStatus::Timeout
    );
    Ok(HttpResponse::Ok().json(json!({
        "status": op.status,
        "cancelRequested": cancel_requested,
        "leaseExpiresAt": if cancel_requested { None } else { opt_time(op.lease.as_ref().map(|l| l.expires_at)) },
    })))
}

pub async fn complete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::Workers))
        .await?;
    let id = path.operation_id()?;
    if !principal.may_act_on(id) {
        return Err(ApiError::NotFound("operation"));
    }
    let (token, result) = body.json::<CompleteBody>()?.into_result();
    let now = clock::now();
    let (_, op) = state
        .store
        .mutate_operation(target.tenant, target.project, id, now, move |op| {
            op.complete(now, &token, result.clone())
                .map(|events| ((), events))
                .map_err(ApiError::from)
        })
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    Ok(HttpResponse::Ok().json(json!({ "status": op.status })))
}

pub async fn fail(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::Workers))
        .await?;
    let id = path.operation_id()?;
    if !principal.may_act_on(id) {
        return Err(ApiError::NotFound("operation"));
    }
    let FailBody {
        lease_token,
        error,
        retryable,
    } = body.json()?;
    let now = clock::now();
    let backoff = Backoff::random(state.config.delivery.retry_time_scale);
    let (_, op) = state
        .store
        .mutate_operation(target.tenant, target.project, id, now, move |op| {
            op.fail(now, &lease_token, error.clone(), retryable, backoff)
                .map(|events| ((), events))
                .map_err(ApiError::from)
        })
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    Ok(HttpResponse::Ok().json(json!({
        "status": op.status,
        "attempt": op.attempt,
        "maxAttempts": op.max_attempts(),
        "nextAttemptAt": opt_time(op.next_attempt_at()),
    })))
}
