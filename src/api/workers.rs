//! The worker protocol: lease, progress (the heartbeat), complete, fail.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::auth::ProjectPath;
use super::body::Body;
use super::error::ApiError;
use super::format::opt_time;
use super::operations::OperationPath;
use super::wire::workers::{CompleteBody, FailBody, LeaseBody, ProgressBody};
use super::AppState;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::LeaseToken;
use crate::domain::operation::LeaseRequest;
use crate::lease::{Failure, OperationRef, WorkOrder};

/// The answer to a lease request: an empty list when the wait passed with no work.
#[derive(Debug, Serialize)]
struct Leased<'a> {
    leases: Vec<WorkOrder<'a>>,
}

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
    Ok(HttpResponse::Ok().json(json!({
        "status": heartbeat.status,
        "cancelRequested": heartbeat.stop_requested,
        "leaseExpiresAt": opt_time(heartbeat.lease_expires_at),
    })))
}

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
    Ok(HttpResponse::Ok().json(json!({ "status": status })))
}

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
    Ok(HttpResponse::Ok().json(json!({
        "status": failed.status,
        "attempt": failed.attempt,
        "maxAttempts": failed.max_attempts,
        "nextAttemptAt": opt_time(failed.next_attempt_at),
    })))
}
