//! The breakout jobs of the facade: start one, follow it, list them. A job is an ordinary
//! `CsproBreakout` operation; its `job_id` is the operation id.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::{clock_duration, dictionary_not_found, facade, parse_dictionary, store_error, target};
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::format::{between, human_duration, time};
use crate::api::idempotency::Idempotency;
use crate::api::operations::to_json;
use crate::api::wire::answers::breakout::{
    ActiveJob, ActiveProgress, ActiveStatus, BreakoutStarted, CancelledJob, CancelledProgress,
    CancelledStatus, CompletedJob, CompletedStatus, FailedJob, FailedStatus, JobError, JobList,
    JobListItem, JobResult, JobView,
};
use crate::api::wire::breakout::{BreakoutParameters, JobsQuery, StartBody};
use crate::api::wire::operations::StartOperationBody;
use crate::api::wire::{self, answers, params};
use crate::api::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::OperationId;
use crate::domain::operation::{
    ListRequest, Operation, OperationFilter, OperationSpec, OperationStatus,
};
use crate::domain::FieldError;
use crate::executors::breakout::{self as executor, MAX_THREADS, OPERATION_TYPE};
use crate::store::CreateOutcome;

const START_SCOPE: &str = "breakout.start";
const DEFAULT_JOBS_LIMIT: u32 = 50;
const MAX_JOBS_LIMIT: u32 = 100;

fn invalid_threads() -> ApiError {
    facade(
        StatusCode::BAD_REQUEST,
        "Invalid threads",
        "INVALID_THREADS",
        format!("threads must be an integer between 1 and {MAX_THREADS}"),
        [("field", "threads".into())],
    )
}

#[utoipa::path(
    post,
    operation_id = "breakout_jobs_start",
    path = "/api/breakout/start",
    tag = "breakout",
    summary = "Start a breakout",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::breakout::StartBody,
    responses((status = 202, description = "Started in the background", body = answers::breakout::BreakoutStarted))
)]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    let request: StartBody = body.json()?;
    let threads = match &request.threads {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=10) => n as u32,
            _ => return Err(invalid_threads()),
        },
    };
    if request.dictionaries.is_empty() {
        return Err(FieldError::new("dictionaries", "name at least one dictionary").into());
    }
    for name in &request.dictionaries {
        let registered = state
            .store
            .breakout()
            .dictionary(target.project, name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| dictionary_not_found(name))?;
        let (_, layout) = parse_dictionary(&registered.dictionary, "dictionaries")?;
        let foreign = state
            .store
            .breakout()
            .foreign_tables(target.project, name, &layout)
            .await
            .map_err(store_error)?;
        if !foreign.is_empty() {
            return Err(facade(
                StatusCode::CONFLICT,
                "Tables already exist",
                "TABLES_ALREADY_EXIST",
                format!(
                    "Tables for dictionary '{name}' already exist: {}.",
                    foreign.describe(name)
                ),
                [("existing_tables", foreign.named.into())],
            ));
        }
        let names: Vec<String> = layout.table_names().map(str::to_owned).collect();
        let existing = state
            .store
            .breakout()
            .existing_tables(target.project, &names)
            .await
            .map_err(store_error)?;
        if !existing.is_empty() && !request.overwrite && !request.incremental {
            return Err(facade(
                StatusCode::CONFLICT,
                "Tables already exist",
                "TABLES_ALREADY_EXIST",
                format!(
                    "Tables for dictionary '{name}' already exist. Use overwrite=true to replace."
                ),
                [("existing_tables", existing.into())],
            ));
        }
    }
    // Two jobs writing the same tables would undo each other's chunks.
    for status in [OperationStatus::Initiated, OperationStatus::Running] {
        let active = state
            .store
            .operations()
            .list(
                target.tenant,
                target.project,
                &ListRequest {
                    filter: OperationFilter {
                        status: Some(status),
                        operation_type: Some(OPERATION_TYPE.to_owned()),
                        priority: None,
                        date_from: None,
                        date_to: None,
                    },
                    include_details: false,
                    page: 1,
                    page_size: MAX_JOBS_LIMIT,
                },
            )
            .await
            .map_err(store_error)?;
        for op in &active.operations {
            let busy: Vec<&str> = op.parameters["dictionaries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|d| request.dictionaries.iter().any(|r| r == d))
                .collect();
            if let Some(dictionary) = busy.first() {
                return Err(facade(
                    StatusCode::CONFLICT,
                    "Breakout already running",
                    "JOB_ALREADY_RUNNING",
                    format!("Job '{}' is already breaking out dictionary '{dictionary}'; wait for it or cancel it", op.id),
                    [("job_id", op.id.to_string().into())],
                ));
            }
        }
    }
    let parameters = serde_json::to_value(BreakoutParameters {
        dictionaries: &request.dictionaries,
        threads,
        overwrite: request.overwrite,
        strict: request.strict,
        chunk_size: request.chunk_size,
    })
    .map_err(|_| ApiError::Internal)?;
    executor::params(&parameters)?;
    let idempotency = match Idempotency::check(&state, target, START_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let spec: OperationSpec = StartOperationBody {
        operation_type: OPERATION_TYPE.to_owned(),
        operation_name: format!("breakout {}", request.dictionaries.join(", ")),
        operation_description: None,
        priority: None,
        parameters: Some(parameters),
        callbacks: None,
        notifications: None,
        timeout: None,
        retry_policy: None,
    }
    .try_into()?;
    let now = clock::now();
    let mut op = Operation::new(OperationId::new(), target.tenant, target.project, spec, now);
    let estimate = state
        .store
        .operations()
        .typical_duration(target.project, OPERATION_TYPE)
        .await
        .map_err(store_error)?;
    let response = to_json(&BreakoutStarted {
        status: "started",
        job_id: op.id,
        dictionaries: request.dictionaries,
        threads,
        estimated_time: estimate.map(human_duration),
        message: "Breakout started in background",
    })?;
    let record = idempotency.record(StatusCode::ACCEPTED, &response);
    if state
        .store
        .operations()
        .create(&mut op, Vec::new(), record)
        .await
        .map_err(store_error)?
        == CreateOutcome::IdempotencyKeyTaken
    {
        return idempotency.replay_winner(&state, target).await;
    }
    tracing::info!(operation_id = %op.id, "breakout accepted");
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(response))
}

fn job_status(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Running => "running",
        OperationStatus::Completed => "completed",
        OperationStatus::Failed | OperationStatus::Timeout => "failed",
        OperationStatus::Cancelled => "cancelled",
        _ => "pending",
    }
}

/// Checked to be 1–10 when the job started.
fn threads_of(op: &Operation) -> u64 {
    op.parameters
        .get("threads")
        .and_then(Value::as_u64)
        .unwrap_or(1)
}

fn execution_time(op: &Operation) -> Option<String> {
    Some(clock_duration(between(op.started_at?, op.finished_at?)))
}

async fn load_job(
    state: &AppState,
    principal: &Principal,
    job_id: &str,
) -> Result<Operation, ApiError> {
    let target = target(state, principal, Scope::OperationsRead).await?;
    let not_found = || {
        facade(
            StatusCode::NOT_FOUND,
            "Job not found",
            "JOB_NOT_FOUND",
            format!("No breakout job '{job_id}'"),
            [],
        )
    };
    let id: OperationId = job_id.parse().map_err(|_| not_found())?;
    state
        .store
        .operations()
        .get(target.tenant, target.project, id)
        .await
        .map_err(store_error)?
        .filter(|op| op.operation_type == OPERATION_TYPE)
        .ok_or_else(not_found)
}

#[utoipa::path(
    get,
    operation_id = "breakout_jobs_status",
    path = "/api/breakout/status/{job_id}",
    tag = "breakout",
    summary = "A breakout job",
    params(params::JobIdParam),
    responses((status = 200, description = "The job, in the shape of its state", body = answers::breakout::JobView))
)]
pub async fn status(
    state: web::Data<AppState>,
    principal: Principal,
    job_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let op = load_job(&state, &principal, &job_id).await?;
    let now = clock::now();
    let body = match op.status {
        OperationStatus::Completed => {
            let summary = op
                .result
                .as_ref()
                .map(|r| r.summary.clone())
                .unwrap_or_default();
            JobView::Completed(CompletedJob {
                job_id: op.id,
                status: CompletedStatus::Completed,
                result: JobResult {
                    dictionaries_processed: summary["dictionaries_processed"].clone(),
                    total_cases: summary["total_cases"].clone(),
                    tables_created: summary["tables_created"].clone(),
                    execution_time: execution_time(&op),
                    issues: summary["issues"].clone(),
                },
                completed_at: op.finished_at.map(time),
            })
        }
        // Cancelled is no failure: the seed lists it as its own status.
        OperationStatus::Cancelled => {
            let cancellation = op.cancellation.as_ref();
            JobView::Cancelled(CancelledJob {
                job_id: op.id,
                status: CancelledStatus::Cancelled,
                reason: cancellation.and_then(|c| c.reason.clone()),
                cancelled_by: cancellation.map(|c| c.cancelled_by.clone()),
                progress: CancelledProgress {
                    processed: op.progress.processed_records.unwrap_or(0),
                    total: op.progress.total_records,
                    percentage: op.progress.percentage.unwrap_or(0.0).floor() as u64,
                },
                started_at: op.started_at.map(time),
                cancelled_at: op.finished_at.map(time),
            })
        }
        OperationStatus::Failed | OperationStatus::Timeout => {
            let error = op.error.clone();
            JobView::Failed(FailedJob {
                job_id: op.id,
                status: FailedStatus::Failed,
                error: JobError {
                    code: error
                        .as_ref()
                        .map(|e| e.code.clone())
                        .unwrap_or_else(|| op.status.as_str().to_uppercase()),
                    message: error.as_ref().map(|e| e.message.clone()),
                    details: error.and_then(|e| e.details),
                },
                failed_at: op.finished_at.map(time),
            })
        }
        _ => {
            let processed = op.progress.processed_records;
            let total = op.progress.total_records;
            let elapsed = op.started_at.map(|s| between(s, now));
            let remaining = match (processed, total, elapsed) {
                (Some(p), Some(t), Some(e)) if p > 0 && e.as_secs_f64() > 0.0 => {
                    let rate = p as f64 / e.as_secs_f64();
                    Some(Duration::from_secs_f64(t.saturating_sub(p) as f64 / rate))
                }
                _ => None,
            };
            JobView::Active(ActiveJob {
                job_id: op.id,
                status: if op.status == OperationStatus::Running {
                    ActiveStatus::Running
                } else {
                    ActiveStatus::Pending
                },
                progress: ActiveProgress {
                    dictionary: op.progress.current_phase.clone().or_else(|| {
                        op.parameters["dictionaries"]
                            .get(0)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    }),
                    processed: processed.unwrap_or(0),
                    total,
                    percentage: op.progress.percentage.unwrap_or(0.0).floor() as u64,
                    elapsed_time: elapsed.map(clock_duration),
                    estimated_remaining: remaining.map(clock_duration),
                },
                threads: threads_of(&op),
                started_at: op.started_at.map(time),
            })
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(
    get,
    operation_id = "breakout_jobs_jobs",
    path = "/api/breakout/jobs",
    tag = "breakout",
    summary = "List breakout jobs",
    params(wire::breakout::JobsQuery),
    responses((status = 200, description = "The project's breakout jobs, newest first", body = answers::breakout::JobList))
)]
pub async fn jobs(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let status = match query.status.as_deref() {
        None => None,
        Some("pending") => Some(OperationStatus::Initiated),
        Some("running") => Some(OperationStatus::Running),
        Some("completed") => Some(OperationStatus::Completed),
        Some("failed") => Some(OperationStatus::Failed),
        Some("cancelled") => Some(OperationStatus::Cancelled),
        Some(_) => {
            return Err(FieldError::new(
                "status",
                "must be one of pending, running, completed, failed, cancelled",
            )
            .into())
        }
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_JOBS_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_JOBS_LIMIT).contains(l))
            .ok_or_else(|| {
                FieldError::new("limit", format!("must be between 1 and {MAX_JOBS_LIMIT}"))
            })?,
    };
    let request = ListRequest {
        filter: OperationFilter {
            status,
            operation_type: Some(OPERATION_TYPE.to_owned()),
            priority: None,
            date_from: None,
            date_to: None,
        },
        include_details: false,
        page: 1,
        page_size: limit,
    };
    let page = state
        .store
        .operations()
        .list(target.tenant, target.project, &request)
        .await
        .map_err(store_error)?;
    let data = page
        .operations
        .iter()
        .map(|op| {
            let status = job_status(op.status);
            // When it ended, under the name its status gives that moment.
            let ended = |name: &str| (status == name).then(|| op.finished_at.map(time));
            JobListItem {
                job_id: op.id,
                status,
                dictionaries: op.parameters["dictionaries"].clone(),
                cases_processed: op.progress.processed_records.unwrap_or(0),
                execution_time: execution_time(op),
                started_at: op.started_at.map(time),
                completed_at: ended("completed").flatten(),
                failed_at: ended("failed"),
                cancelled_at: ended("cancelled"),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(JobList {
        total: page.counts.total(),
        limit,
        data,
    }))
}
