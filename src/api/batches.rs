//! `…/async/batch` and `…/async/batches`: DAGs of operations (seed 001, "Soumettre des
//! Opérations en Lot").

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{human_duration, opt_time, time};
use super::idempotency::Idempotency;
use super::operations::{check_targets, parse_query, typical_duration};
use super::wire::batches::SubmitBatchBody;
use super::wire::query::parse_uint;
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
        if let Some(executor) = state.executors.get(&member.spec.operation_type) {
            executor
                .validate(&member.spec.parameters)
                .map_err(|e| FieldError::new(format!("operations[{i}].{}", e.field), e.message))?;
        }
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

    let operations: Vec<Value> = members
        .iter()
        .zip(&spec.members)
        .map(|((op, deps), m)| {
            let mut item = json!({
                "operationKey": m.key,
                "operationId": op.id,
                "status": op.status,
                "dependencies": deps,
            });
            if let Some(estimate) = estimates[&m.spec.operation_type] {
                item["estimatedDuration"] = json!(human_duration(estimate));
            }
            if let (false, Some(begins)) = (deps.is_empty(), start[m.key.as_str()]) {
                item["estimatedStartTime"] = json!(time(now + begins));
            }
            item
        })
        .collect();
    let mut response = json!({
        "batchId": id,
        "batchName": batch.name,
        "status": BatchStatus::Initiated,
        "operations": operations,
        "totalOperations": members.len(),
        "failurePolicy": batch.failure_policy,
        "batchStartTime": time(now),
        "trackingUrl": tracking_url(target, id),
    });
    if let Some(whole) = whole {
        response["estimatedBatchDuration"] = json!(human_duration(whole));
        response["estimatedBatchCompletion"] = json!(time(now + whole));
    }
    let response = response.to_string();
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

fn batch_view(target: ProjectRef, batch: &Batch, members: &[BatchMember]) -> Value {
    let statuses: Vec<OperationStatus> = members.iter().map(|m| m.operation.status).collect();
    let done = statuses.iter().filter(|s| s.is_terminal()).count();
    let operations: Vec<Value> = members
        .iter()
        .map(|m| {
            let op = &m.operation;
            json!({
                "operationKey": m.key,
                "operationId": op.id,
                "operationName": op.operation_name,
                "operationType": op.operation_type,
                "status": op.status,
                "dependencies": m.dependencies,
                "progress": op.progress.percentage,
                "attempt": op.attempt,
                "startTime": opt_time(op.started_at),
                "endTime": opt_time(op.finished_at),
                "error": op.error,
                "retryOf": op.retry_of,
            })
        })
        .collect();
    json!({
        "batchId": batch.id,
        "batchName": batch.name,
        "batchDescription": batch.description,
        "status": batch.status_given(statuses.iter().copied()),
        "totalOperations": members.len(),
        "counts": batch::counts(statuses.iter().copied()),
        "progress": if members.is_empty() { 0.0 } else { 100.0 * done as f64 / members.len() as f64 },
        "operations": operations,
        "failurePolicy": batch.failure_policy,
        "batchCallbacks": batch.callbacks,
        "retryNumber": batch.retry_number,
        "cancelRequested": batch.cancel_requested,
        "batchStartTime": time(batch.created_at),
        "endTime": opt_time(batch.finished_at),
        "trackingUrl": tracking_url(target, batch.id),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchListQuery {
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

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
    let batches: Vec<Value> = found
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
            json!({
                "batchId": b.id,
                "batchName": b.name,
                "status": b.status_given(statuses.clone()),
                "totalOperations": b.total,
                "counts": batch::counts(statuses),
                "progress": if b.total == 0 { 0.0 } else { 100.0 * done as f64 / b.total as f64 },
                "batchStartTime": time(b.created_at),
                "endTime": opt_time(b.finished_at),
                "trackingUrl": tracking_url(target, b.id),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "batches": batches,
        "page": page,
        "pageSize": page_size,
        "hasNextPage": found.has_next_page,
    })))
}

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
    Ok(HttpResponse::Accepted().json(json!({
        "batchId": batch.id,
        "status": BatchStatus::Running,
        "retryNumber": batch.retry_number,
        "retriedOperations": replaced.iter().map(|(key, old, new)| json!({
            "operationKey": key,
            "originalOperationId": old,
            "newOperationId": new,
        })).collect::<Vec<_>>(),
        "trackingUrl": tracking_url(target, batch.id),
    })))
}
