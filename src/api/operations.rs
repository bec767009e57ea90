//! `…/async/operation(s)`: start, status, list, cancel, results.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{between, human_duration, opt_time, time};
use super::idempotency::Idempotency;
use super::integrations::check_notifications_sendable;
use super::wire::answers::operations::{
    CallbacksView, CancellationView, ExecutionView, NotificationsView, OperationAccepted,
    OperationCancelled, OperationCounts, OperationList, OperationListItem, OperationResults,
    OperationStatusView, PartialResults, PhaseView, PreservedResults, ProgressView, RetryAccepted,
};
use super::wire::operations::{CancelBody, ListQuery, ResultsQuery, RetryBody, StartOperationBody};
use super::wire::{self, answers, params};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::OperationId;
use crate::domain::operation::{
    CancelRequest, ListRequest, Operation, OperationSpec, OperationStatus, PhaseStatus,
};
use crate::domain::FieldError;
use crate::outbound::guard::check_url;
use crate::store::{CallbackStats, CreateOutcome, NotificationStats};

const START_SCOPE: &str = "operation.start";

#[derive(Debug, Deserialize)]
pub struct OperationPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "operationId")]
    pub operation_id: String,
}

impl OperationPath {
    pub fn operation_id(&self) -> Result<OperationId, ApiError> {
        let id: OperationId = self
            .operation_id
            .parse()
            .map_err(|e| FieldError::new("operationId", format!("{e}")))?;
        super::request_id::record("operation_id", id);
        Ok(id)
    }
}

/// Authorizes the caller for `scope` and loads the operation the path names.
pub(super) async fn load(
    state: &AppState,
    principal: &Principal,
    path: &OperationPath,
    scope: Scope,
) -> Result<(ProjectRef, Operation), ApiError> {
    let target = state
        .authorize(principal, &path.project, Some(scope))
        .await?;
    let op = state
        .store
        .operations()
        .get(target.tenant, target.project, path.operation_id()?)
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    Ok((target, op))
}

pub fn tracking_url(target: ProjectRef, id: OperationId) -> String {
    format!(
        "/api/{}/{}/async/operation/{id}",
        target.tenant, target.project
    )
}

#[utoipa::path(
    post,
    operation_id = "operations_start",
    path = "/api/{tenantId}/{projectId}/async/operation",
    tag = "operations",
    summary = "Start an operation",
    params(ProjectPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::operations::StartOperationBody,
    responses((status = 202, description = "Accepted: the operation is queued", body = answers::operations::OperationAccepted))
)]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsWrite))
        .await?;
    let spec: OperationSpec = body.json::<StartOperationBody>()?.try_into()?;
    check_callbacks(&state, &spec).await?;
    check_notifications_sendable(
        &state,
        target,
        !spec.notifications.email.is_empty(),
        spec.notifications.slack.is_some(),
        "notifications",
    )
    .await?;
    check_parameters(&state, &spec.operation_type, &spec.parameters, "").await?;
    let idempotency = match Idempotency::check(&state, target, START_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };

    let now = clock::now();
    let mut op = Operation::new(OperationId::new(), target.tenant, target.project, spec, now);
    super::request_id::record("operation_id", op.id);
    let estimate = typical_duration(&state, target, &op.operation_type).await?;
    let listening = listening_webhooks(&state, target, &op).await?;
    let response = to_json(&OperationAccepted {
        operation_id: op.id,
        operation_type: op.operation_type.clone(),
        operation_name: op.operation_name.clone(),
        status: op.status,
        estimated_duration: estimate.map(human_duration),
        estimated_duration_seconds: estimate.map(|d| d.as_secs_f64()),
        estimated_completion: estimate.map(|d| time(now + d)),
        tracking_url: tracking_url(target, op.id),
        webhooks_registered: listening + op.callbacks.count(),
        priority: op.priority,
        date_created: time(op.created_at),
        timeout_at: time(op.timeout_at),
    })?;
    accept(&state, target, &mut op, response, &idempotency).await
}

/// The stored form of an answer that an idempotent replay gives again, byte for byte.
pub(super) fn to_json<T: serde::Serialize>(answer: &T) -> Result<String, ApiError> {
    serde_json::to_string(answer).map_err(|_| ApiError::Internal)
}

/// Stores a new operation with its idempotency record and answers 202 with `response`;
/// if a concurrent request with the same key won, answers what that one answered.
async fn accept(
    state: &AppState,
    target: ProjectRef,
    op: &mut Operation,
    response: String,
    idempotency: &Idempotency,
) -> Result<HttpResponse, ApiError> {
    let record = idempotency.record(StatusCode::ACCEPTED, &response);
    if state
        .store
        .operations()
        .create(op, Vec::new(), record)
        .await?
        == CreateOutcome::IdempotencyKeyTaken
    {
        return idempotency.replay_winner(state, target).await;
    }
    tracing::info!(operation_id = %op.id, operation_type = %op.operation_type, retry_of = ?op.retry_of, "operation accepted");
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", tracking_url(target, op.id)))
        .content_type("application/json")
        .body(response))
}

/// The typical run time of the type; a known one is remembered for a few seconds.
pub(super) async fn typical_duration(
    state: &AppState,
    target: ProjectRef,
    operation_type: &str,
) -> Result<Option<std::time::Duration>, ApiError> {
    let key = (target.project, operation_type.to_owned());
    if let Some(known) = state.caches.estimates.get(&key) {
        return Ok(Some(known));
    }
    let estimate = state
        .store
        .operations()
        .typical_duration(target.project, operation_type)
        .await?;
    // "No history yet" is not remembered: the first completed run gives an estimate at once.
    if let Some(known) = estimate {
        state.caches.estimates.insert(key, known);
    }
    Ok(estimate)
}

/// How many of the project's webhooks will be sent this operation's events (its
/// callbacks aside). The webhooks are remembered for a few seconds, as the principal is.
async fn listening_webhooks(
    state: &AppState,
    target: ProjectRef,
    op: &Operation,
) -> Result<usize, ApiError> {
    let webhooks = match state.caches.webhooks.get(&target.project) {
        Some(known) => known,
        None => {
            let loaded = std::sync::Arc::new(state.store.webhooks().routing(target.project).await?);
            state.caches.webhooks.insert(target.project, loaded.clone());
            loaded
        }
    };
    Ok(webhooks
        .iter()
        .filter(|w| w.hears_operation(&op.operation_type, op.priority))
        .count())
}

async fn check_callbacks(state: &AppState, spec: &OperationSpec) -> Result<(), ApiError> {
    let c = &spec.callbacks;
    check_targets(
        state,
        "callbacks",
        [
            ("onProgress", &c.on_progress),
            ("onCompletion", &c.on_completion),
            ("onError", &c.on_error),
        ],
    )
    .await
}

/// A built-in executor's parameters, checked as it will read them, and the URLs it will
/// call checked like callbacks; fields are named under `prefix` (a batch member's).
pub(super) async fn check_parameters(
    state: &AppState,
    operation_type: &str,
    parameters: &Value,
    prefix: &str,
) -> Result<(), ApiError> {
    let Some(executor) = state.executors.get(operation_type) else {
        return Ok(());
    };
    executor
        .validate(parameters)
        .map_err(|e| FieldError::new(format!("{prefix}{}", e.field), e.message))?;
    for (field, url) in executor.targets(parameters) {
        check_url(&url, state.config.delivery.allow_private_targets)
            .await
            .map_err(|e| FieldError::new(format!("{prefix}{field}"), e.to_string()))?;
    }
    Ok(())
}

/// Callback URLs (already checked to be http(s)) must also resolve to addresses we may
/// deliver to; the error names `{prefix}.{name}`.
pub(super) async fn check_targets<const N: usize>(
    state: &AppState,
    prefix: &str,
    urls: [(&str, &Option<String>); N],
) -> Result<(), ApiError> {
    for (name, url) in urls {
        if let Some(url) = url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
            check_url(&url, state.config.delivery.allow_private_targets)
                .await
                .map_err(|e| FieldError::new(format!("{prefix}.{name}"), e.to_string()))?;
        }
    }
    Ok(())
}

const RETRY_SCOPE: &str = "operation.retry";

#[utoipa::path(
    post,
    operation_id = "operations_retry",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/retry",
    tag = "operations",
    summary = "Retry a finished operation",
    params(ProjectPath, params::OperationIdParam, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body(content = Option<wire::operations::RetryBody>, description = "Optional: an empty body resumes under the original's policy"),
    responses((status = 202, description = "Accepted: a new operation runs it again", body = answers::operations::RetryAccepted))
)]
pub async fn retry(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (target, original) = load(&state, &principal, &path, Scope::OperationsWrite).await?;
    let spec = body
        .json_or_default::<RetryBody>()?
        .into_spec(original.retry_policy)?;
    let idempotency = match Idempotency::check(&state, target, RETRY_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let now = clock::now();
    let mode = spec.mode;
    let reason = spec.reason.clone();
    let (mut op, kept) = original.retry(OperationId::new(), spec, now)?;
    let estimate = typical_duration(&state, target, &op.operation_type).await?;
    let response = to_json(&RetryAccepted {
        original_operation_id: original.id,
        new_operation_id: op.id,
        retry_mode: mode,
        retry_number: op.retry_number,
        retry_reason: reason,
        resume_from_phase: op.resume_from_phase.clone(),
        status: op.status,
        estimated_duration: estimate.map(human_duration),
        estimated_completion: estimate.map(|d| time(now + d)),
        preserved_results: PreservedResults {
            phases_preserved: kept.phases_preserved,
            records_processed: kept.records_processed,
            progress_saved: kept.progress_saved,
        },
        retry_attempt_date: time(now),
        timeout_at: time(op.timeout_at),
        tracking_url: tracking_url(target, op.id),
    })?;
    accept(&state, target, &mut op, response, &idempotency).await
}

#[utoipa::path(
    get,
    operation_id = "operations_status",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}",
    tag = "operations",
    summary = "An operation's status",
    params(ProjectPath, params::OperationIdParam),
    responses((status = 200, description = "The operation", body = answers::operations::OperationStatusView))
)]
pub async fn status(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
) -> Result<HttpResponse, ApiError> {
    let (target, op) = load(&state, &principal, &path, Scope::OperationsRead).await?;
    let callbacks = state
        .store
        .webhooks()
        .callback_stats(target.project, op.id)
        .await?;
    let notifications = state
        .store
        .webhooks()
        .notification_stats(target.project, &op.id.to_string())
        .await?;
    Ok(HttpResponse::Ok().json(status_view(
        &op,
        &callbacks,
        &notifications,
        target,
        clock::now(),
    )))
}

/// The seed's `callbacks` of a status: what happened to the operation's callbacks.
fn callbacks_view(stats: &CallbackStats) -> CallbacksView {
    CallbacksView {
        progress_callbacks_sent: stats.progress_sent,
        last_progress_callback: opt_time(stats.last_progress_at),
        callbacks_successful: stats.successful,
        callbacks_failed: stats.failed,
        callbacks_pending: stats.pending,
    }
}

/// Remaining time extrapolated from the measured rate so far; `None` until measurable.
fn estimated_remaining(op: &Operation, now: DateTime<Utc>) -> Option<Duration> {
    if op.status != OperationStatus::Running {
        return None;
    }
    let elapsed = between(op.started_at?, now).as_secs_f64();
    let done = match (op.progress.processed_records, op.progress.total_records) {
        (Some(done), Some(total)) if total > 0 && done > 0 => done as f64 / total as f64,
        _ => op.progress.percentage? / 100.0,
    };
    (done > 0.0 && done < 1.0 && elapsed > 0.0)
        .then(|| Duration::from_secs_f64(elapsed * (1.0 - done) / done))
}

fn processing_rate(op: &Operation, now: DateTime<Utc>) -> Option<String> {
    let processed = op.progress.processed_records?;
    let minutes = between(op.started_at?, op.finished_at.unwrap_or(now)).as_secs_f64() / 60.0;
    (minutes > 0.0).then(|| format!("{:.0} records/minute", processed as f64 / minutes))
}

fn execution_view(op: &Operation, now: DateTime<Utc>) -> ExecutionView {
    ExecutionView {
        execution_id: op.execution_id,
        worker_node: op.lease.as_ref().and_then(|l| l.worker_id.clone()),
        attempt: op.attempt,
        max_attempts: op.max_attempts(),
        next_attempt_at: opt_time(op.next_attempt_at()),
        retrying: op.next_attempt_at().is_some(),
        lease_expires_at: opt_time(
            op.lease
                .as_ref()
                .filter(|_| op.status == OperationStatus::Running)
                .map(|l| l.expires_at),
        ),
        processed_records: op.progress.processed_records,
        total_records: op.progress.total_records,
        processing_rate: processing_rate(op, now),
    }
}

/// Each phase as the seed shows one: its own counters and details beside its fields
/// (`"modelsTraining": 3`, `"validationResults": {…}`), and how long it took once it ended.
fn phases_view(op: &Operation) -> Vec<PhaseView> {
    op.phases
        .iter()
        .map(|phase| {
            // The phase is stored as the worker reported it; only its counters and details
            // move up, whose names are never a field's nor each other's.
            let mut fields = match serde_json::to_value(phase) {
                Ok(Value::Object(fields)) => fields,
                _ => Default::default(),
            };
            for nested in ["counters", "details"] {
                if let Some(Value::Object(values)) = fields.remove(nested) {
                    fields.extend(values);
                }
            }
            PhaseView {
                fields,
                duration: phase
                    .start_time
                    .zip(phase.end_time)
                    .map(|(start, end)| human_duration(between(start, end))),
            }
        })
        .collect()
}

pub fn status_view(
    op: &Operation,
    callbacks: &CallbackStats,
    notifications: &NotificationStats,
    target: ProjectRef,
    now: DateTime<Utc>,
) -> OperationStatusView {
    let elapsed = op
        .started_at
        .map(|s| between(s, op.finished_at.unwrap_or(now)));
    let remaining = estimated_remaining(op, now);
    OperationStatusView {
        operation_id: op.id,
        operation_type: op.operation_type.clone(),
        operation_name: op.operation_name.clone(),
        operation_description: op.description.clone(),
        status: op.status,
        priority: op.priority,
        parameters: op.parameters.clone(),
        progress: ProgressView {
            percentage: op.progress.percentage,
            current_phase: op.progress.current_phase.clone(),
            phases_completed: op.phases_completed(),
            total_phases: op.progress.total_phases,
            start_time: opt_time(op.started_at),
            elapsed_time: elapsed.map(human_duration),
            elapsed_seconds: elapsed.map(|d| d.as_secs_f64()),
            estimated_remaining: remaining.map(human_duration),
            estimated_remaining_seconds: remaining.map(|d| d.as_secs_f64()),
            estimated_completion: remaining.map(|d| time(now + d)),
        },
        execution: execution_view(op, now),
        phases: phases_view(op),
        attempts: op.attempts.clone(),
        error: op.error.clone(),
        cancellation: op.cancellation.as_ref().map(cancellation_view),
        callbacks: callbacks_view(callbacks),
        notifications: NotificationsView {
            sent: notifications.sent,
            failed: notifications.failed,
            pending: notifications.pending,
        },
        callback_urls: op.callbacks.clone(),
        retry_of: op.retry_of,
        retry_number: op.retry_number,
        resume_from_phase: op.resume_from_phase.clone(),
        date_created: time(op.created_at),
        date_updated: time(op.updated_at),
        end_time: opt_time(op.finished_at),
        timeout_at: time(op.timeout_at),
        tracking_url: tracking_url(target, op.id),
    }
}

fn cancellation_view(c: &crate::domain::operation::Cancellation) -> CancellationView {
    CancellationView {
        cancellation_time: time(c.cancelled_at),
        reason: c.reason.clone(),
        cancelled_by: c.cancelled_by.clone(),
        progress_at_cancellation: c.progress_at_cancellation,
        phase_at_cancellation: c.phase_at_cancellation.clone(),
        preserve_partial_results: c.preserve_partial_results,
    }
}

fn list_item(op: &Operation, include_details: bool, now: DateTime<Utc>) -> OperationListItem {
    OperationListItem {
        operation_id: op.id,
        operation_type: op.operation_type.clone(),
        operation_name: op.operation_name.clone(),
        status: op.status,
        progress: op.progress.percentage,
        priority: op.priority,
        date_created: time(op.created_at),
        start_time: opt_time(op.started_at),
        end_time: opt_time(op.finished_at),
        duration: op
            .started_at
            .zip(op.finished_at)
            .map(|(s, e)| human_duration(between(s, e))),
        current_phase: op.progress.current_phase.clone(),
        estimated_completion: estimated_remaining(op, now).map(|d| time(now + d)),
        records_processed: op.progress.processed_records,
        parameters: include_details.then(|| op.parameters.clone()),
        execution: include_details.then(|| execution_view(op, now)),
        phases: include_details.then(|| phases_view(op)),
        error: include_details.then(|| op.error.clone()),
    }
}

#[utoipa::path(
    get,
    operation_id = "operations_list",
    path = "/api/{tenantId}/{projectId}/async/operations",
    tag = "operations",
    summary = "List operations",
    params(ProjectPath, wire::operations::ListQuery),
    responses((status = 200, description = "A page of operations, newest first", body = answers::operations::OperationList))
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
    let request: ListRequest = parse_query::<ListQuery>(&query)?.try_into()?;
    let page = state
        .store
        .operations()
        .list(target.tenant, target.project, &request)
        .await?;
    let now = clock::now();
    let count = |s| page.counts.get(s);
    Ok(HttpResponse::Ok().json(OperationList {
        operations: page
            .operations
            .iter()
            .map(|op| list_item(op, request.include_details, now))
            .collect(),
        summary: OperationCounts {
            total_operations: page.counts.total(),
            pending: count(OperationStatus::Pending),
            initiated: count(OperationStatus::Initiated),
            running: count(OperationStatus::Running),
            completed: count(OperationStatus::Completed),
            failed: count(OperationStatus::Failed),
            cancelled: count(OperationStatus::Cancelled),
            timeout: count(OperationStatus::Timeout),
            skipped: count(OperationStatus::Skipped),
        },
        page: request.page,
        page_size: request.page_size,
        has_next_page: page.has_next_page,
    }))
}

/// Query strings are parsed from pairs so that a repeated or unknown parameter is an
/// error that names it, not a silent choice.
pub fn parse_query<T: serde::de::DeserializeOwned>(
    pairs: &[(String, String)],
) -> Result<T, ApiError> {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), Value::String(v.clone())).is_some() {
            return Err(FieldError::new(k.clone(), "is given more than once").into());
        }
    }
    super::body::parse(Value::Object(map).to_string().as_bytes())
}

#[utoipa::path(
    delete,
    operation_id = "operations_cancel",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}",
    tag = "operations",
    summary = "Cancel an operation",
    params(ProjectPath, params::OperationIdParam),
    request_body(content = Option<wire::operations::CancelBody>, description = "Optional: an empty body takes every default"),
    responses((status = 200, description = "Cancelled", body = answers::operations::OperationCancelled))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.operation_id()?;
    let request: CancelRequest = body.json_or_default::<CancelBody>()?.into();
    let cancelled_by = principal.acting_as();
    let now = clock::now();
    let (_, op) = state
        .store
        .operations()
        .mutate(target.tenant, target.project, id, now, move |op| {
            op.cancel(now, request.clone(), cancelled_by.clone())
                .map(|events| ((), events))
                .map_err(ApiError::from)
        })
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    let c = op.cancellation.as_ref().ok_or(ApiError::Internal)?;
    let completed_phases = op
        .phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Completed)
        .count();
    Ok(HttpResponse::Ok().json(OperationCancelled {
        operation_id: op.id,
        status: op.status,
        cancellation_time: time(c.cancelled_at),
        reason: c.reason.clone(),
        progress_at_cancellation: c.progress_at_cancellation,
        phase_at_cancellation: c.phase_at_cancellation.clone(),
        worker_notified: if c.was_running {
            "on its next heartbeat"
        } else {
            "no worker held the operation"
        }
        .to_owned(),
        partial_results: PartialResults {
            available: c.preserve_partial_results && completed_phases > 0,
            completed_phases,
            download_urls: if c.preserve_partial_results {
                vec![format!(
                    "{}/results?format=download",
                    tracking_url(target, op.id)
                )]
            } else {
                Vec::new()
            },
        },
        cancelled_by: c.cancelled_by.clone(),
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultsFormat {
    /// `summary`, the worker's own values and the artifacts.
    Summary,
    /// And every phase's results.
    Detailed,
    /// What `detailed` holds, as a JSON file to save.
    Download,
}

impl ResultsFormat {
    fn parse(value: Option<&str>) -> Result<Self, FieldError> {
        match value {
            None | Some("summary") => Ok(Self::Summary),
            Some("detailed") => Ok(Self::Detailed),
            Some("download") => Ok(Self::Download),
            Some(_) => Err(FieldError::new(
                "format",
                "must be summary, detailed or download",
            )),
        }
    }
}

#[utoipa::path(
    get,
    operation_id = "operations_results",
    path = "/api/{tenantId}/{projectId}/async/operation/{operationId}/results",
    tag = "operations",
    summary = "An operation's results",
    params(ProjectPath, params::OperationIdParam, wire::operations::ResultsQuery),
    responses((status = 200, description = "The results (with `format=download`, as a file to save)", body = answers::operations::OperationResults))
)]
pub async fn results(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<OperationPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (_, op) = load(&state, &principal, &path, Scope::OperationsRead).await?;
    let q: ResultsQuery = parse_query(&query)?;
    let format = ResultsFormat::parse(q.format.as_deref())?;
    let include_artifacts = match q.include_artifacts.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(FieldError::new("includeArtifacts", "must be true or false").into()),
    };
    let Some(result) = op.readable_results() else {
        return Err(ApiError::conflict(
            "OPERATION_NOT_COMPLETED",
            format!(
                "the operation is {}; results exist once it has completed",
                op.status.as_str()
            ),
        ));
    };
    let mut phase_results = result.phase_results;
    if let Some(name) = &q.phase {
        phase_results.retain(|p| p.get("phaseName").and_then(Value::as_str) == Some(name));
        if phase_results.is_empty() {
            return Err(ApiError::NotFound("phase"));
        }
    }
    let body = OperationResults {
        operation_id: op.id,
        operation_type: op.operation_type.clone(),
        operation_name: op.operation_name.clone(),
        status: op.status,
        success: op.status == OperationStatus::Completed,
        partial: op.status != OperationStatus::Completed,
        completion_time: opt_time(op.finished_at),
        total_duration: op
            .started_at
            .zip(op.finished_at)
            .map(|(s, e)| human_duration(between(s, e))),
        summary: result.summary,
        phase_results: (format != ResultsFormat::Summary || q.phase.is_some())
            .then_some(phase_results),
        artifacts: include_artifacts.then_some(result.artifacts),
        extra: result.extra,
    };
    if format == ResultsFormat::Download {
        let mut file = serde_json::to_string_pretty(&body).map_err(|_| ApiError::Internal)?;
        file.push('\n');
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{}-results.json\"", op.id),
            ))
            .body(file));
    }
    Ok(HttpResponse::Ok().json(body))
}
