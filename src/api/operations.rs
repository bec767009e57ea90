//! `…/async/operation(s)`: start, status, list, cancel, results.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{between, human_duration, opt_time, time};
use super::idempotency::Idempotency;
use super::wire::operations::{CancelBody, ListQuery, RetryBody, StartOperationBody};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::OperationId;
use crate::domain::operation::{
    CancelRequest, ListRequest, Operation, OperationSpec, OperationStatus, PhaseStatus,
};
use crate::domain::FieldError;
use crate::outbound::guard::check_url;
use crate::store::{CallbackStats, CreateOutcome};

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
async fn load(
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
    if let Some(executor) = state.executors.get(&spec.operation_type) {
        executor.validate(&spec.parameters)?;
    }
    let idempotency = match Idempotency::check(&state, target, START_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };

    let now = clock::now();
    let mut op = Operation::new(OperationId::new(), target.tenant, target.project, spec, now);
    super::request_id::record("operation_id", op.id);
    let estimate = typical_duration(&state, target, &op.operation_type).await?;
    let listening = listening_webhooks(&state, target, &op).await?;
    let response = json!({
        "operationId": op.id,
        "operationType": op.operation_type,
        "operationName": op.operation_name,
        "status": op.status,
        "estimatedDuration": estimate.map(human_duration),
        "estimatedDurationSeconds": estimate.map(|d| d.as_secs_f64()),
        "estimatedCompletion": estimate.map(|d| time(now + d)),
        "trackingUrl": tracking_url(target, op.id),
        "webhooksRegistered": listening + op.callbacks.count(),
        "priority": op.priority,
        "dateCreated": time(op.created_at),
        "timeoutAt": time(op.timeout_at),
    })
    .to_string();
    accept(&state, target, &mut op, response, &idempotency).await
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
    let response = json!({
        "originalOperationId": original.id,
        "newOperationId": op.id,
        "retryMode": mode,
        "retryNumber": op.retry_number,
        "retryReason": reason,
        "resumeFromPhase": op.resume_from_phase,
        "status": op.status,
        "estimatedDuration": estimate.map(human_duration),
        "estimatedCompletion": estimate.map(|d| time(now + d)),
        "preservedResults": {
            "phasesPreserved": kept.phases_preserved,
            "recordsProcessed": kept.records_processed,
            "progressSaved": kept.progress_saved,
        },
        "retryAttemptDate": time(now),
        "timeoutAt": time(op.timeout_at),
        "trackingUrl": tracking_url(target, op.id),
    })
    .to_string();
    accept(&state, target, &mut op, response, &idempotency).await
}

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
    Ok(HttpResponse::Ok().json(status_view(&op, &callbacks, target, clock::now())))
}

/// The seed's `callbacks` of a status: what happened to the operation's callbacks.
fn callbacks_view(stats: &CallbackStats) -> Value {
    json!({
        "progressCallbacksSent": stats.progress_sent,
        "lastProgressCallback": opt_time(stats.last_progress_at),
        "callbacksSuccessful": stats.successful,
        "callbacksFailed": stats.failed,
        "callbacksPending": stats.pending,
    })
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

fn execution_view(op: &Operation, now: DateTime<Utc>) -> Value {
    json!({
        "executionId": op.execution_id,
        "workerNode": op.lease.as_ref().and_then(|l| l.worker_id.clone()),
        "attempt": op.attempt,
        "maxAttempts": op.max_attempts(),
        "nextAttemptAt": opt_time(op.next_attempt_at()),
        "retrying": op.next_attempt_at().is_some(),
        "leaseExpiresAt": opt_time(op.lease.as_ref().filter(|_| op.status == OperationStatus::Running).map(|l| l.expires_at)),
        "processedRecords": op.progress.processed_records,
        "totalRecords": op.progress.total_records,
        "processingRate": processing_rate(op, now),
    })
}

/// Each phase as the seed shows one: its own counters beside its fields
/// (`"modelsTraining": 3`), and how long it took once it ended.
fn phases_view(op: &Operation) -> Value {
    op.phases
        .iter()
        .map(|phase| {
            let mut v = serde_json::to_value(phase).unwrap_or(Value::Null);
            if let Some(fields) = v.as_object_mut() {
                if let Some(Value::Object(counters)) = fields.remove("counters") {
                    fields.extend(counters);
                }
            }
            if let (Some(start), Some(end)) = (phase.start_time, phase.end_time) {
                v["duration"] = json!(human_duration(between(start, end)));
            }
            v
        })
        .collect()
}

pub fn status_view(
    op: &Operation,
    callbacks: &CallbackStats,
    target: ProjectRef,
    now: DateTime<Utc>,
) -> Value {
    let elapsed = op
        .started_at
        .map(|s| between(s, op.finished_at.unwrap_or(now)));
    let remaining = estimated_remaining(op, now);
    json!({
        "operationId": op.id,
        "operationType": op.operation_type,
        "operationName": op.operation_name,
        "operationDescription": op.description,
        "status": op.status,
        "priority": op.priority,
        "parameters": op.parameters,
        "progress": {
            "percentage": op.progress.percentage,
            "currentPhase": op.progress.current_phase,
            "phasesCompleted": op.phases_completed(),
            "totalPhases": op.progress.total_phases,
            "startTime": opt_time(op.started_at),
            "elapsedTime": elapsed.map(human_duration),
            "elapsedSeconds": elapsed.map(|d| d.as_secs_f64()),
            "estimatedRemaining": remaining.map(human_duration),
            "estimatedRemainingSeconds": remaining.map(|d| d.as_secs_f64()),
            "estimatedCompletion": remaining.map(|d| time(now + d)),
        },
        "execution": execution_view(op, now),
        "phases": phases_view(op),
        "attempts": op.attempts,
        "error": op.error,
        "cancellation": op.cancellation.as_ref().map(cancellation_view),
        "callbacks": callbacks_view(callbacks),
        "callbackUrls": op.callbacks,
        "retryOf": op.retry_of,
        "retryNumber": op.retry_number,
        "resumeFromPhase": op.resume_from_phase,
        "dateCreated": time(op.created_at),
        "dateUpdated": time(op.updated_at),
        "endTime": opt_time(op.finished_at),
        "timeoutAt": time(op.timeout_at),
        "trackingUrl": tracking_url(target, op.id),
    })
}

fn cancellation_view(c: &crate::domain::operation::Cancellation) -> Value {
    json!({
        "cancellationTime": time(c.cancelled_at),
        "reason": c.reason,
        "cancelledBy": c.cancelled_by,
        "progressAtCancellation": c.progress_at_cancellation,
        "phaseAtCancellation": c.phase_at_cancellation,
        "preservePartialResults": c.preserve_partial_results,
    })
}

fn list_item(op: &Operation, include_details: bool, now: DateTime<Utc>) -> Value {
    let mut item = json!({
        "operationId": op.id,
        "operationType": op.operation_type,
        "operationName": op.operation_name,
        "status": op.status,
        "progress": op.progress.percentage,
        "priority": op.priority,
        "dateCreated": time(op.created_at),
        "startTime": opt_time(op.started_at),
        "endTime": opt_time(op.finished_at),
        "duration": op.started_at.zip(op.finished_at).map(|(s, e)| human_duration(between(s, e))),
        "currentPhase": op.progress.current_phase,
        "estimatedCompletion": estimated_remaining(op, now).map(|d| time(now + d)),
        "recordsProcessed": op.progress.processed_records,
    });
    if include_details {
        item["parameters"] = op.parameters.clone();
        item["execution"] = execution_view(op, now);
        item["phases"] = phases_view(op);
        item["error"] = json!(op.error);
    }
    item
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
    let request: ListRequest = parse_query::<ListQuery>(&query)?.try_into()?;
    let page = state
        .store
        .operations()
        .list(target.tenant, target.project, &request)
        .await?;
    let now = clock::now();
    let count = |s| page.counts.get(s);
    Ok(HttpResponse::Ok().json(json!({
        "operations": page.operations.iter().map(|op| list_item(op, request.include_details, now)).collect::<Vec<_>>(),
        "summary": {
            "totalOperations": page.counts.total(),
            "pending": count(OperationStatus::Pending),
            "initiated": count(OperationStatus::Initiated),
            "running": count(OperationStatus::Running),
            "completed": count(OperationStatus::Completed),
            "failed": count(OperationStatus::Failed),
            "cancelled": count(OperationStatus::Cancelled),
            "timeout": count(OperationStatus::Timeout),
            "skipped": count(OperationStatus::Skipped),
        },
        "page": request.page,
        "pageSize": request.page_size,
        "hasNextPage": page.has_next_page,
    })))
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
    Ok(HttpResponse::Ok().json(json!({
        "operationId": op.id,
        "status": op.status,
        "cancellationTime": time(c.cancelled_at),
        "reason": c.reason,
        "progressAtCancellation": c.progress_at_cancellation,
        "phaseAtCancellation": c.phase_at_cancellation,
        "workerNotified": if c.was_running { "on its next heartbeat" } else { "no worker held the operation" },
        "partialResults": {
            "available": c.preserve_partial_results && completed_phases > 0,
            "completedPhases": completed_phases,
            "downloadUrls": if c.preserve_partial_results {
                vec![format!("{}/results?format=download", tracking_url(target, op.id))]
            } else {
                Vec::new()
            },
        },
        "cancelledBy": c.cancelled_by,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultsQuery {
    format: Option<String>,
    include_artifacts: Option<String>,
    phase: Option<String>,
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
    let mut body = json!({
        "operationId": op.id,
        "operationType": op.operation_type,
        "operationName": op.operation_name,
        "status": op.status,
        "success": op.status == OperationStatus::Completed,
        "partial": op.status != OperationStatus::Completed,
        "completionTime": opt_time(op.finished_at),
        "totalDuration": op.started_at.zip(op.finished_at).map(|(s, e)| human_duration(between(s, e))),
        "summary": result.summary,
    });
    if format != ResultsFormat::Summary || q.phase.is_some() {
        body["phaseResults"] = json!(phase_results);
    }
    if include_artifacts {
        body["artifacts"] = json!(result.artifacts);
    }
    // The worker's own values (`performance`, `recommendations`, …), whose names never
    // take one of the document's (`OperationResult::check_extra`).
    if let Some(fields) = body.as_object_mut() {
        fields.extend(result.extra);
    }
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
