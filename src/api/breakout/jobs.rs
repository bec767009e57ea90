//! The breakout jobs of the facade: start one, follow it, list them. A job is an ordinary
//! `CsproBreakout` operation; its `job_id` is the operation id.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{clock_duration, dictionary_not_found, facade, parse_dictionary, store_error, target};
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::format::{between, human_duration, time};
use crate::api::idempotency::Idempotency;
use crate::api::wire::operations::StartOperationBody;
use crate::api::wire::present;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    dictionaries: Vec<String>,
    /// Kept loose so that any value out of 1–10 (`null` too) is `INVALID_THREADS`, as the
    /// seed says.
    #[serde(default, deserialize_with = "present")]
    threads: Option<Value>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    strict: bool,
    /// Write into existing tables, only the chunks of cases that changed since the last
    /// run (without it, existing tables are a 409 unless `overwrite`).
    #[serde(default)]
    incremental: bool,
    #[serde(default, deserialize_with = "present")]
    chunk_size: Option<usize>,
}

fn invalid_threads() -> ApiError {
    facade(
        StatusCode::BAD_REQUEST,
        "Invalid threads",
        "INVALID_THREADS",
        format!("threads must be an integer between 1 and {MAX_THREADS}"),
        json!({"field": "threads"}),
    )
}

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
                json!({"existing_tables": foreign.named}),
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
                json!({"existing_tables": existing}),
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
                    json!({"job_id": op.id}),
                ));
            }
        }
    }
    let parameters = json!({
        "dictionaries": request.dictionaries,
        "threads": threads,
        "overwrite": request.overwrite,
        "strict": request.strict,
        "chunk_size": request.chunk_size,
    });
    executor::params(&parameters)?;
    let idempotency = match Idempotency::check(&state, target, START_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let spec: OperationSpec = serde_json::from_value::<StartOperationBody>(json!({
        "operationType": OPERATION_TYPE,
        "operationName": format!("breakout {}", request.dictionaries.join(", ")),
        "parameters": parameters,
    }))
    .map_err(|_| ApiError::Internal)?
    .try_into()?;
    let now = clock::now();
    let mut op = Operation::new(OperationId::new(), target.tenant, target.project, spec, now);
    let estimate = state
        .store
        .operations()
        .typical_duration(target.project, OPERATION_TYPE)
        .await
        .map_err(store_error)?;
    let response = json!({
        "status": "started",
        "job_id": op.id,
        "dictionaries": request.dictionaries,
        "threads": threads,
        "estimated_time": estimate.map(human_duration),
        "message": "Breakout started in background",
    })
    .to_string();
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

fn threads_of(op: &Operation) -> Value {
    op.parameters.get("threads").cloned().unwrap_or(json!(1))
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
            Value::Null,
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
            json!({
                "job_id": op.id,
                "status": "completed",
                "result": {
                    "dictionaries_processed": summary["dictionaries_processed"],
                    "total_cases": summary["total_cases"],
                    "tables_created": summary["tables_created"],
                    "execution_time": execution_time(&op),
                    "issues": summary["issues"],
                },
                "completed_at": op.finished_at.map(time),
            })
        }
        // Cancelled is no failure: the seed lists it as its own status.
        OperationStatus::Cancelled => {
            let cancellation = op.cancellation.as_ref();
            json!({
                "job_id": op.id,
                "status": "cancelled",
                "reason": cancellation.and_then(|c| c.reason.clone()),
                "cancelled_by": cancellation.map(|c| c.cancelled_by.clone()),
                "progress": {
                    "processed": op.progress.processed_records.unwrap_or(0),
                    "total": op.progress.total_records,
                    "percentage": op.progress.percentage.unwrap_or(0.0).floor() as u64,
                },
                "started_at": op.started_at.map(time),
                "cancelled_at": op.finished_at.map(time),
            })
        }
        OperationStatus::Failed | OperationStatus::Timeout => {
            let error = op.error.clone();
            json!({
                "job_id": op.id,
                "status": job_status(op.status),
                "error": {
                    "code": error.as_ref().map(|e| e.code.clone()).unwrap_or_else(|| op.status.as_str().to_uppercase()),
                    "message": error.as_ref().map(|e| e.message.clone()),
                    "details": error.and_then(|e| e.details),
                },
                "failed_at": op.finished_at.map(time),
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
            json!({
                "job_id": op.id,
                "status": job_status(op.status),
                "progress": {
                    "dictionary": op.progress.current_phase.clone().or_else(|| {
                        op.parameters["dictionaries"].get(0).and_then(Value::as_str).map(str::to_owned)
                    }),
                    "processed": processed.unwrap_or(0),
                    "total": total,
                    // A whole number, as the seed shows it (`"percentage": 25`).
                    "percentage": op.progress.percentage.unwrap_or(0.0).floor() as u64,
                    "elapsed_time": elapsed.map(clock_duration),
                    "estimated_remaining": remaining.map(clock_duration),
                },
                "threads": threads_of(&op),
                "started_at": op.started_at.map(time),
            })
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    status: Option<String>,
    limit: Option<String>,
}

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
    let data: Vec<Value> = page
        .operations
        .iter()
        .map(|op| {
            let mut job = json!({
                "job_id": op.id,
                "status": job_status(op.status),
                "dictionaries": op.parameters["dictionaries"],
                "cases_processed": op.progress.processed_records.unwrap_or(0),
                "execution_time": execution_time(op),
                "started_at": op.started_at.map(time),
                "completed_at": null,
            });
            // When it ended, under the name its status gives that moment.
            let ended = match job_status(op.status) {
                "completed" => Some("completed_at"),
                "failed" => Some("failed_at"),
                "cancelled" => Some("cancelled_at"),
                _ => None,
            };
            if let Some(key) = ended {
                job[key] = json!(op.finished_at.map(time));
            }
            job
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "total": page.counts.total(),
        "limit": limit,
        "data": data,
    })))
}
