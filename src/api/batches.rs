//! `…/async/batch` and `…/async/batches`: DAGs of operations (seed 001, "Soumettre des
//! Opérations en Lot").

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{human_duration, opt_time, time};
use super::idempotency::Idempotency;
use super::integrations::check_notifications_sendable;
use super::operations::{check_parameters, check_targets, parse_query, to_json, typical_duration};
use super::wire::answers::batches::{
    AcceptedMember, BatchAccepted, BatchList, BatchListItem, BatchMemberView, BatchRetried,
    BatchView, RetriedMember,
};
use super::wire::batches::{BatchListQuery, SubmitBatchBody};
use super::wire::query::parse_uint;
use super::wire::{self, answers, params};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::batch::{self, Batch, BatchSpec, BatchStatus};
use crate::domain::ids::{BatchId, OperationId};
use crate::domain::operation::{BatchMembership, Operation, OperationStatus};
use crate::domain::FieldError;
use crate::store::{BatchCancelError, BatchMember, BatchRetryError, CreateOutcome};

/// A batch body may list up to 10,000 members, well past the usual body limit.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct BatchPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "batchId")]
    pub batch_id: String,
}

impl BatchPath {
    fn batch_id(&self) -> Result<BatchId, ApiError> {
        let id: BatchId = self
            .batch_id
            .parse()
            .map_err(|e| FieldError::new("batchId", format!("{e}")))?;
        super::request_id::record("batch_id", id);
        Ok(id)
    }
}

fn tracking_url(target: ProjectRef, id: BatchId) -> String {
    format!("/api/{}/{}/async/batch/{id}", target.tenant, target.project)
}

const SUBMIT_SCOPE: &str = "batch.submit";

#[utoipa::path(
    post,
    operation_id = "batches_submit",
    path = "/api/{tenantId}/{projectId}/async/batch",
    tag = "batches",
    summary = "Submit a batch",
    params(ProjectPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::batches::SubmitBatchBody,
    responses((status = 202, description = "Accepted: the batch is queued", body = answers::batches::BatchAccepted))
)]
pub async fn submit(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsWrite))
        .await?;
    let spec: BatchSpec = body.json::<SubmitBatchBody>()?.try_into()?;
    let callbacks = &spec.callbacks;
    check_targets(
        &state,
        "batchCallbacks",
        [
            ("onBatchStart", &callbacks.on_batch_start),
            ("onOperationComplete", &callbacks.on_operation_complete),
            ("onBatchComplete", &callbacks.on_batch_complete),
        ],
    )
    .await?;
    // Members often share their callbacks: each URL is checked (and resolved) once.
    let mut checked: HashSet<&str> = HashSet::new();
    for (i, member) in spec.members.iter().enumerate() {
        check_parameters(
            &state,
            &member.spec.operation_type,
            &member.spec.parameters,
            &format!("operations[{i}]."),
        )
        .await?;
        let c = &member.spec.callbacks;
        for (name, url) in [
            ("onProgress", &c.on_progress),
            ("onCompletion", &c.on_completion),
            ("onError", &c.on_error),
        ] {
            if url.as_deref().is_some_and(|u| checked.insert(u)) {
                check_targets(&state, &format!("operations[{i}].callbacks"), [(name, url)]).await?;
            }
        }
    }

    let wanted = &spec.notifications;
    check_notifications_sendable(
        &state,
        target,
        !wanted.email.is_empty(),
        wanted.slack.is_some(),
        "notifications",
    )
    .await?;
    // Members' own notifications: the first that asks for what cannot be sent is named.
    let members = &spec.members;
    if let Some(i) = members
        .iter()
        .position(|m| !m.spec.notifications.email.is_empty())
    {
        let field = format!("operations[{i}].notifications");
        check_notifications_sendable(&state, target, true, false, &field).await?;
    }
    if let Some(i) = members
        .iter()
        .position(|m| m.spec.notifications.slack.is_some())
    {
        let field = format!("operations[{i}].notifications");
        check_notifications_sendable(&state, target, false, true, &field).await?;
    }

    let idempotency = match Idempotency::check(&state, target, SUBMIT_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };

    let now = clock::now();
    let id = BatchId::new();
    super::request_id::record("batch_id", id);
    let mut batch = Batch::new(id, target.tenant, target.project, &spec, now);
    let mut estimates: HashMap<String, Option<Duration>> = HashMap::new();
    for member in &spec.members {
        if !estimates.contains_key(&member.spec.operation_type) {
            let estimate = typical_duration(&state, target, &member.spec.operation_type).await?;
            estimates.insert(member.spec.operation_type.clone(), estimate);
        }
    }
    let members: Vec<(Operation, Vec<String>)> = spec
        .members
        .iter()
        .map(|m| {
            let op = Operation::member(
                OperationId::new(),
                target.tenant,
                target.project,
                m.spec.clone(),
                BatchMembership {
                    batch_id: id,
                    key: m.key.clone(),
                    inputs: None,
                },
                !m.dependencies.is_empty(),
                now,
            );
            (op, m.dependencies.clone())
        })
        .collect();

    // Earliest start and finish of each member along the critical path, when every
    // member on the way has a measured typical duration.
    let mut finish: HashMap<&str, Option<Duration>> = HashMap::new();
    let order = batch::topological_order(
        &spec
            .members
            .iter()
            .map(|m| (m.key.as_str(), m.dependencies.as_slice()))
            .collect::<Vec<_>>(),
    );
    let mut start: HashMap<&str, Option<Duration>> = HashMap::new();
    for i in order {
        let m = &spec.members[i];
        let begins = m.dependencies.iter().try_fold(Duration::ZERO, |latest, d| {
            finish[d.as_str()].map(|f| latest.max(f))
        });
        start.insert(m.key.as_str(), begins);
        let own = estimates[&m.spec.operation_type];
        finish.insert(m.key.as_str(), begins.zip(own).map(|(b, o)| b + o));
    }
    let whole = finish
        .values()
        .try_fold(Duration::ZERO, |longest, f| f.map(|f| longest.max(f)));

    let operations: Vec<AcceptedMember> = members
        .iter()
        .zip(&spec.members)
        .map(|((op, deps), m)| AcceptedMember {
            operation_key: m.key.clone(),
            operation_id: op.id,
            status: op.status,
            dependencies: deps.clone(),
            estimated_duration: estimates[&m.spec.operation_type].map(human_duration),
            estimated_start_time: start[m.key.as_str()]
                .filter(|_| !deps.is_empty())
                .map(|begins| time(now + begins)),
        })
        .collect();
    let response = to_json(&BatchAccepted {
        batch_id: id,
        batch_name: batch.name.clone(),
        status: BatchStatus::Initiated,
        operations,
        total_operations: members.len(),
        failure_policy: batch.failure_policy,
        batch_start_time: time(now),
        tracking_url: tracking_url(target, id),
        estimated_batch_duration: whole.map(human_duration),
        estimated_batch_completion: whole.map(|whole| time(now + whole)),
    })?;
    let total = members.len();
    let record = idempotency.record(StatusCode::ACCEPTED, &response);
    if state
        .store
        .batches()
        .create(&mut batch, members, record)
        .await?
        == CreateOutcome::IdempotencyKeyTaken
    {
        return idempotency.replay_winner(&state, target).await;
    }
    tracing::info!(batch_id = %id, members = total, "batch accepted");
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", tracking_url(target, id)))
        .content_type("application/json")
        .body(response))
}

#[utoipa::path(
    get,
    operation_id = "batches_status",
    path = "/api/{tenantId}/{projectId}/async/batch/{batchId}",
    tag = "batches",
    summary = "A batch's status",
    params(ProjectPath, params::BatchIdParam),
    responses((status = 200, description = "The batch and its members", body = answers::batches::BatchView))
)]
pub async fn status(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BatchPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsRead))
        .await?;
    let (batch, members) = state
        .store
        .batches()
        .get(target.tenant, target.project, path.batch_id()?)
        .await?
        .ok_or(ApiError::NotFound("batch"))?;
    Ok(HttpResponse::Ok().json(batch_view(target, &batch, &members)))
}

fn batch_view(target: ProjectRef, batch: &Batch, members: &[BatchMember]) -> BatchView {
    let statuses: Vec<OperationStatus> = members.iter().map(|m| m.operation.status).collect();
    let done = statuses.iter().filter(|s| s.is_terminal()).count();
    let operations = members
        .iter()
        .map(|m| {
            let op = &m.operation;
            BatchMemberView {
                operation_key: m.key.clone(),
                operation_id: op.id,
                operation_name: op.operation_name.clone(),
                operation_type: op.operation_type.clone(),
                status: op.status,
                dependencies: m.dependencies.clone(),
                progress: op.progress.percentage,
                attempt: op.attempt,
                start_time: opt_time(op.started_at),
                end_time: opt_time(op.finished_at),
                error: op.error.clone(),
                retry_of: op.retry_of,
            }
        })
        .collect();
    BatchView {
        batch_id: batch.id,
        batch_name: batch.name.clone(),
        batch_description: batch.description.clone(),
        status: batch.status_given(statuses.iter().copied()),
        total_operations: members.len(),
        counts: batch::counts(statuses.iter().copied()),
        progress: if members.is_empty() {
            0.0
        } else {
            100.0 * done as f64 / members.len() as f64
        },
        operations,
        failure_policy: batch.failure_policy,
        batch_callbacks: batch.callbacks.clone(),
        retry_number: batch.retry_number,
        cancel_requested: batch.cancel_requested,
        batch_start_time: time(batch.created_at),
        end_time: opt_time(batch.finished_at),
        tracking_url: tracking_url(target, batch.id),
    }
}

#[utoipa::path(
    get,
    operation_id = "batches_list",
    path = "/api/{tenantId}/{projectId}/async/batches",
    tag = "batches",
    summary = "List batches",
    params(ProjectPath, wire::batches::BatchListQuery),
    responses((status = 200, description = "A page of batches, newest first", body = answers::batches::BatchList))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsRead))
        .await?;
    let q: BatchListQuery = parse_query(&query)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(BatchStatus::parse(s).ok_or_else(|| {
            let known: Vec<_> = BatchStatus::ALL.iter().map(|s| s.as_str()).collect();
            FieldError::new("status", format!("must be one of {}", known.join(", ")))
        })?),
    };
    let page = parse_uint(q.page.as_deref(), "page", 1, 1, u32::MAX)?;
    let page_size = parse_uint(q.page_size.as_deref(), "pageSize", 20, 1, 100)?;
    let found = state
        .store
        .batches()
        .list(target.tenant, target.project, status, page, page_size)
        .await?;
    let batches: Vec<BatchListItem> = found
        .batches
        .iter()
        .map(|(b, counts)| {
            let statuses = counts
                .iter()
                .flat_map(|(s, n)| std::iter::repeat_n(*s, *n as usize));
            let done: i64 = counts
                .iter()
                .filter(|(s, _)| s.is_terminal())
                .map(|(_, n)| n)
                .sum();
            BatchListItem {
                batch_id: b.id,
                batch_name: b.name.clone(),
                status: b.status_given(statuses.clone()),
                total_operations: b.total,
                counts: batch::counts(statuses),
                progress: if b.total == 0 {
                    0.0
                } else {
                    100.0 * done as f64 / b.total as f64
                },
                batch_start_time: time(b.created_at),
                end_time: opt_time(b.finished_at),
                tracking_url: tracking_url(target, b.id),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchList {
        batches,
        page,
        page_size,
        has_next_page: found.has_next_page,
    }))
}

#[utoipa::path(
    delete,
    operation_id = "batches_cancel",
    path = "/api/{tenantId}/{projectId}/async/batch/{batchId}",
    tag = "batches",
    summary = "Cancel a batch",
    params(ProjectPath, params::BatchIdParam),
    responses((status = 200, description = "Cancelling: members not yet finished are stopped", body = answers::batches::BatchView))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BatchPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.batch_id()?;
    let batch = state
        .store
        .batches()
        .cancel(
            target.tenant,
            target.project,
            id,
            principal.token_id.to_string(),
            clock::now(),
        )
        .await
        .map_err(|e| match e {
            BatchCancelError::AlreadyFinished(_) => {
                ApiError::conflict("INVALID_BATCH_STATE", e.to_string())
            }
            BatchCancelError::Store(e) => e.into(),
        })?
        .ok_or(ApiError::NotFound("batch"))?;
    let (_, members) = state
        .store
        .batches()
        .get(target.tenant, target.project, id)
        .await?
        .ok_or(ApiError::NotFound("batch"))?;
    Ok(HttpResponse::Ok().json(batch_view(target, &batch, &members)))
}

#[utoipa::path(
    post,
    operation_id = "batches_retry",
    path = "/api/{tenantId}/{projectId}/async/batch/{batchId}/retry",
    tag = "batches",
    summary = "Retry a finished batch's failures",
    params(ProjectPath, params::BatchIdParam),
    responses((status = 202, description = "Accepted: the failed members run again", body = answers::batches::BatchRetried))
)]
pub async fn retry(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BatchPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.batch_id()?;
    let (batch, replaced) = state
        .store
        .batches()
        .retry(target.tenant, target.project, id, clock::now())
        .await
        .map_err(|e| match e {
            BatchRetryError::NotFinished(_) => {
                ApiError::conflict("INVALID_BATCH_STATE", e.to_string())
            }
            BatchRetryError::Store(e) => e.into(),
        })?
        .ok_or(ApiError::NotFound("batch"))?;
    Ok(HttpResponse::Accepted().json(BatchRetried {
        batch_id: batch.id,
        status: BatchStatus::Running,
        retry_number: batch.retry_number,
        retried_operations: replaced
            .iter()
            .map(|(key, old, new)| RetriedMember {
                operation_key: key.clone(),
                original_operation_id: *old,
                new_operation_id: *new,
            })
            .collect(),
        tracking_url: tracking_url(target, batch.id),
    }))
}
