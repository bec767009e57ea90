//! The worker protocol: lease, progress (the heartbeat), complete, fail.

use actix_web::{web, HttpResponse};

use super::auth::ProjectPath;
use super::body::Body;
use super::error::ApiError;
use super::format::opt_time;
use super::operations::OperationPath;
use super::wire::answers::workers::{Completed, FailureRecorded, Leased, ProgressAccepted};
use super::wire::workers::{CompleteBody, FailBody, LeaseBody, ProgressBody};
use super::wire::{self, answers, params};
use super::AppState;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::LeaseToken;
use crate::domain::operation::LeaseRequest;
use crate::lease::{Failure, OperationRef, WorkOrder};

#[utoipa::path(
    post,
    operation_id = "workers_lease",
    path = "/api/{tenantId}/{projectId}/async/workers/lease",
    tag = "workers",
    summary = "Lease work (long poll)",
    params(ProjectPath),
    request_body(content = Option<wire::workers::LeaseBody>, description = "Optional: an empty body takes every default"),
    responses((status = 200, description = "Work leased (an empty list when the wait passed with none)", body = answers::workers::Leased))
)]
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
    if principal.operation.is_some() {
        // A push worker's callback token reports on its task; it does not lease.
        return Err(ApiError::Forbidden("workers"));
    }
    let leased = state
        .leases
        .wait_for_work(target.tenant, target.project, &request)
        .await?;
    let heartbeat = state.leases.lease_ttl();
    let leases = leased
        .iter()
        .map(|(op, token)| WorkOrder::new(op, token, heartbeat))
        .collect();
    Ok(HttpResponse::Ok().json(Leased { leases }))
}

/// The operation the path names, once the principal may report on it.
async fn reported(
    state: &AppState,
    principal: &Principal,
    path: &OperationPath,
) -> Result<OperationRef, ApiError> {
    let target = state
        .authorize(principal, &path.project, Some(Scope::Workers))
        .await?;
    let id = path.operation_id()?;
    if !principal.may_act_on(id) {
        return Err(ApiError::NotFound("operation"));
    }
    Ok(OperationRef {
        tenant: target.tenant,
        project: target.project,
        id,
    })
}

#[utoipa::path(
    post,
    operation_id = "workers_progress",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/progress",
    tag = "workers",
    summary = "Report progress (the heartbeat)",
    params(ProjectPath, params::OperationIdParam),
    request_body = wire::workers::ProgressBody,
    responses((status = 200, description = "Recorded; the lease is renewed", body = answers::workers::ProgressAccepted))
)]
pub async fn progress(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let operation = reported(&state, &principal, &path).await?;
    let (token, report) = body.json::<ProgressBody>()?.into_report()?;
    let heartbeat = state
        .leases
        .progress(operation, LeaseToken::from_string(token), report)
        .await?;
    Ok(HttpResponse::Ok().json(ProgressAccepted {
        status: heartbeat.status,
        cancel_requested: heartbeat.stop_requested,
        lease_expires_at: opt_time(heartbeat.lease_expires_at),
    }))
}

#[utoipa::path(
    post,
    operation_id = "workers_complete",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/complete",
    tag = "workers",
    summary = "Complete an attempt",
    params(ProjectPath, params::OperationIdParam),
    request_body = wire::workers::CompleteBody,
    responses((status = 200, description = "Completed", body = answers::workers::Completed))
)]
pub async fn complete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let operation = reported(&state, &principal, &path).await?;
    let (token, result) = body.json::<CompleteBody>()?.into_result()?;
    let status = state
        .leases
        .complete(operation, LeaseToken::from_string(token), result)
        .await?;
    Ok(HttpResponse::Ok().json(Completed { status }))
}

#[utoipa::path(
    post,
    operation_id = "workers_fail",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/fail",
    tag = "workers",
    summary = "Fail an attempt",
    params(ProjectPath, params::OperationIdParam),
    request_body = wire::workers::FailBody,
    responses((status = 200, description = "Recorded: retried later or failed for good", body = answers::workers::FailureRecorded))
)]
pub async fn fail(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let operation = reported(&state, &principal, &path).await?;
    let FailBody {
        lease_token,
        error,
        retryable,
    } = body.json()?;
    let failed = state
        .leases
        .fail(
            operation,
            LeaseToken::from_string(lease_token),
            Failure {
                error: error.into(),
                retryable,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(FailureRecorded {
        status: failed.status,
        attempt: failed.attempt,
        max_attempts: failed.max_attempts,
        next_attempt_at: opt_time(failed.next_attempt_at),
    }))
}
