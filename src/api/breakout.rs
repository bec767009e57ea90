//! `/api/breakout/*`: the CSWeb breakout facade of seed 000, in the seed's own shapes
//! (snake_case fields, its error codes). The paths carry no tenant: the bearer token's
//! tenant and project (a token bound to one project) scope them. A breakout job is an
//! ordinary `CsproBreakout` operation; its `job_id` is the operation id.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{between, human_duration, time};
use super::idempotency::Idempotency;
use super::AppState;
use crate::clock;
use crate::cspro::csdb::CsdbFile;
use crate::cspro::dictionary::Dictionary;
use crate::cspro::layout::{Layout, TableKind};
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::OperationId;
use crate::domain::operation::{Operation, OperationStatus};
use crate::domain::requests::{ListRequest, OperationFilter, OperationSpec, StartOperationBody};
use crate::domain::FieldError;
use crate::executors::breakout::{self as executor, MAX_THREADS, OPERATION_TYPE};
use crate::store::breakout::{BreakoutDictionary, DataKind};
use crate::store::{CreateOutcome, StoreError};

const START_SCOPE: &str = "breakout.start";
const DEFAULT_JOBS_LIMIT: u32 = 50;
const MAX_JOBS_LIMIT: u32 = 100;

fn facade(
    status: StatusCode,
    title: &'static str,
    code: &'static str,
    message: impl Into<String>,
    extra: Value,
) -> ApiError {
    ApiError::Facade {
        status,
        title,
        code,
        message: message.into(),
        extra: match extra {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

/// Store failures as the seed names them: an unreachable database is
/// `DB_CONNECTION_ERROR`.
fn store_error(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "breakout: database unavailable");
        return facade(
            StatusCode::SERVICE_UNAVAILABLE,
            "Database connection failed",
            "DB_CONNECTION_ERROR",
            "Cannot connect to the analytics database; retry shortly",
            Value::Null,
        );
    }
    e.into()
}

fn dictionary_not_found(name: &str) -> ApiError {
    facade(
        StatusCode::NOT_FOUND,
        "Dictionary not found",
        "DICTIONARY_NOT_FOUND",
        format!("No dictionary named '{name}' is registered; check the dictionary name"),
        json!({"dictionary": name}),
    )
}

/// The project the token is bound to, once it may act there with `scope`.
async fn target(
    state: &AppState,
    principal: &Principal,
    scope: Scope,
) -> Result<ProjectRef, ApiError> {
    let Some(project) = principal.project_id else {
        return Err(facade(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "INSUFFICIENT_PERMISSIONS",
            "the breakout API needs a token bound to one project",
            Value::Null,
        ));
    };
    let path = ProjectPath {
        tenant_id: principal.tenant_id.to_string(),
        project_id: project.to_string(),
    };
    state.authorize(principal, &path, Some(scope)).await
}

fn parse_dictionary(text: &str, field: &str) -> Result<(Dictionary, Layout), ApiError> {
    let dictionary = Dictionary::parse(text).map_err(|e| {
        facade(
            StatusCode::BAD_REQUEST,
            "Invalid dictionary",
            "INVALID_DICTIONARY",
            format!("the dictionary cannot be read: {e}"),
            json!({"field": field}),
        )
    })?;
    let layout = Layout::new(&dictionary).map_err(|e| {
        facade(
            StatusCode::BAD_REQUEST,
            "Invalid dictionary",
            "INVALID_DICTIONARY",
            format!("the dictionary cannot be broken out: {e}"),
            json!({"field": field}),
        )
    })?;
    Ok((dictionary, layout))
}

fn dictionary_view(d: &BreakoutDictionary) -> Value {
    let tables: Vec<String> = Dictionary::parse(&d.dictionary)
        .ok()
        .and_then(|dict| Layout::new(&dict).ok())
        .map(|l| l.table_names().map(str::to_owned).collect())
        .unwrap_or_default();
    json!({
        "name": d.name,
        "label": d.label,
        "data_kind": d.data_kind.as_str(),
        "data_path": (!d.uploaded).then_some(&d.data_path),
        "uploaded": d.uploaded,
        "tables": tables,
        "created_at": time(d.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterBody {
    dictionary_path: Option<String>,
    data_path: String,
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Largest uploaded file (dictionary or data).
pub const MAX_UPLOAD: usize = 512 * 1024 * 1024;

/// `POST /api/breakout/dictionaries`: as `multipart/form-data` with the parts
/// `dictionary` (the `.dcf`) and `data` (`.dat` or `.csdb`), or as JSON
/// `{"dictionaryPath", "dataPath"}` naming files on the server (admin scope: they are read
/// with the server's rights). For a `.csdb` the dictionary may be left out: the file
/// carries its own.
pub async fn register(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        return upload(state, principal, req, payload).await;
    }
    let target = target(&state, &principal, Scope::Admin).await?;
    let limit = state.config.body_limit;
    let bytes = match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Err(ApiError::PayloadTooLarge { limit }),
        Err(e) => {
            return Err(ApiError::MalformedJson(format!(
                "the body could not be read: {e}"
            )))
        }
    };
    let mut request: RegisterBody = Body(bytes).json()?;
    if let Some(dir) = &state.config.breakout_data_dir {
        request.data_path = confined(&request.data_path, dir, "dataPath")?;
        if let Some(path) = &request.dictionary_path {
            request.dictionary_path = Some(confined(path, dir, "dictionaryPath")?);
        }
    }
    let head = read_head(&request.data_path)
        .await
        .map_err(|e| FieldError::new("dataPath", format!("cannot read the file: {e}")))?;
    let data_kind = if head.starts_with(SQLITE_MAGIC) {
        DataKind::Csdb
    } else {
        DataKind::Dat
    };
    let dictionary_text = match (&request.dictionary_path, data_kind) {
        (Some(path), _) => {
            let bytes = tokio::fs::read(path).await.map_err(|e| {
                FieldError::new("dictionaryPath", format!("cannot read the file: {e}"))
            })?;
            crate::cspro::data::decode_text(&bytes).into_owned()
        }
        (None, DataKind::Csdb) => {
            let file = CsdbFile::open(&request.data_path)
                .await
                .map_err(|e| FieldError::new("dataPath", e.to_string()))?;
            let text = file.dictionary_text().to_owned();
            let _ = file.close().await;
            text
        }
        (None, DataKind::Dat) => {
            return Err(FieldError::new(
                "dictionaryPath",
                "required for a text data file (only a .csdb carries its dictionary)",
            )
            .into())
        }
    };
    let (dictionary, _) = parse_dictionary(&dictionary_text, "dictionaryPath")?;
    if data_kind == DataKind::Csdb {
        // Opening it now turns a corrupt file into a 400 rather than a failed job later.
        let file = CsdbFile::open(&request.data_path)
            .await
            .map_err(|e| FieldError::new("dataPath", e.to_string()))?;
        let _ = file.close().await;
    }
    let data_path = std::fs::canonicalize(&request.data_path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(request.data_path);
    let record = BreakoutDictionary {
        tenant: target.tenant,
        project: target.project,
        name: dictionary.name.clone(),
        label: dictionary.label.clone(),
        dictionary: dictionary_text,
        data_kind,
        data_path,
        uploaded: false,
        created_at: clock::now(),
    };
    state
        .store
        .put_breakout_dictionary(&record, None)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(dictionary_view(&record)))
}

/// The multipart form of registration: both files are sent, and kept in the database.
async fn upload(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use futures_util::StreamExt;
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let (mut dictionary, mut data) = (None, None);
    let malformed = |e: actix_multipart::MultipartError| {
        FieldError::new("body", format!("not a readable multipart form: {e}"))
    };
    while let Some(part) = form.next().await {
        let mut part = part.map_err(malformed)?;
        let name = part.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk = chunk.map_err(malformed)?;
            if bytes.len() + chunk.len() > MAX_UPLOAD {
                return Err(ApiError::PayloadTooLarge { limit: MAX_UPLOAD });
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "dictionary" => dictionary = Some(bytes),
            "data" => data = Some(bytes),
            other => {
                return Err(FieldError::new(
                    other,
                    "unknown part: send `dictionary` (the .dcf) and `data` (.dat or .csdb)",
                )
                .into())
            }
        }
    }
    let data =
        data.ok_or_else(|| FieldError::new("data", "required: the data file (.dat or .csdb)"))?;
    let data_kind = if data.starts_with(SQLITE_MAGIC) {
        DataKind::Csdb
    } else {
        DataKind::Dat
    };
    let embedded = match data_kind {
        // Opened now, so a corrupt file is a 400 rather than a failed job later.
        DataKind::Csdb => {
            let copy = crate::executors::breakout::TempFile::write(&data)
                .await
                .map_err(|_| ApiError::Internal)?;
            let file = CsdbFile::open(&copy.path)
                .await
                .map_err(|e| FieldError::new("data", e.to_string()))?;
            let text = file.dictionary_text().to_owned();
            let _ = file.close().await;
            Some(text)
        }
        DataKind::Dat => None,
    };
    let dictionary_text = match (dictionary, embedded) {
        (Some(bytes), _) => crate::cspro::data::decode_text(&bytes).into_owned(),
        (None, Some(text)) => text,
        (None, None) => {
            return Err(FieldError::new(
                "dictionary",
                "required for a text data file (only a .csdb carries its dictionary)",
            )
            .into())
        }
    };
    let (dictionary, _) = parse_dictionary(&dictionary_text, "dictionary")?;
    let record = BreakoutDictionary {
        tenant: target.tenant,
        project: target.project,
        name: dictionary.name.clone(),
        label: dictionary.label.clone(),
        dictionary: dictionary_text,
        data_kind,
        data_path: String::new(),
        uploaded: true,
        created_at: clock::now(),
    };
    state
        .store
        .put_breakout_dictionary(&record, Some(&data))
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(dictionary_view(&record)))
}

/// `path`, resolved (`..`, symbolic links), if that lies within `dir` (itself resolved).
fn confined(path: &str, dir: &std::path::Path, field: &str) -> Result<String, FieldError> {
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| FieldError::new(field, format!("cannot read the file: {e}")))?;
    if !resolved.starts_with(dir) {
        return Err(FieldError::new(
            field,
            format!(
                "must lie within the breakout data directory {}",
                dir.display()
            ),
        ));
    }
    Ok(resolved.to_string_lossy().into_owned())
}

async fn read_head(path: &str) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut head = vec![0; SQLITE_MAGIC.len()];
    let n = file.read(&mut head).await?;
    head.truncate(n);
    Ok(head)
}

pub async fn list_dictionaries(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let all = state
        .store
        .breakout_dictionaries(target.project)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = all.iter().map(dictionary_view).collect();
    Ok(HttpResponse::Ok().json(json!({"total": data.len(), "data": data})))
}

pub async fn get_dictionary(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let found = state
        .store
        .breakout_dictionary(target.project, &name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| dictionary_not_found(&name))?;
    Ok(HttpResponse::Ok().json(dictionary_view(&found)))
}

pub async fn delete_dictionary(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    if !state
        .store
        .delete_breakout_dictionary(target.project, &name)
        .await
        .map_err(store_error)?
    {
        return Err(dictionary_not_found(&name));
    }
    Ok(HttpResponse::Ok().json(json!({
        "message": "Dictionary deleted successfully",
        "dictionary": name.as_str(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    dictionaries: Vec<String>,
    /// Kept loose so that any value out of 1–10 is `INVALID_THREADS`, as the seed says.
    threads: Option<Value>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    strict: bool,
    /// Write into existing tables, only the chunks of cases that changed since the last
    /// run (without it, existing tables are a 409 unless `overwrite`).
    #[serde(default)]
    incremental: bool,
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
        None | Some(Value::Null) => 1,
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
            .breakout_dictionary(target.project, name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| dictionary_not_found(name))?;
        let (_, layout) = parse_dictionary(&registered.dictionary, "dictionaries")?;
        let foreign = state
            .store
            .foreign_breakout_tables(target.project, name, &layout)
            .await
            .map_err(store_error)?;
        if !foreign.is_empty() {
            return Err(facade(
                StatusCode::CONFLICT,
                "Tables already exist",
                "TABLES_ALREADY_EXIST",
                format!(
                    "Tables for dictionary '{name}' already exist and were not created by its breakout in this project; they cannot be replaced."
                ),
                json!({"existing_tables": foreign}),
            ));
        }
        let names: Vec<String> = layout.table_names().map(str::to_owned).collect();
        let existing = state
            .store
            .existing_tables(&names)
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
            .list_operations(
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
        .create_operation(&mut op, Vec::new(), record)
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

/// `HH:MM:SS`, as the seed shows durations.
pub fn clock_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `12.5 MB`: binary multiples, one decimal.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
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
        .get_operation(target.tenant, target.project, id)
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
        OperationStatus::Failed | OperationStatus::Timeout | OperationStatus::Cancelled => {
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
        .list_operations(target.tenant, target.project, &request)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = page
        .operations
        .iter()
        .map(|op| {
            json!({
                "job_id": op.id,
                "status": job_status(op.status),
                "dictionaries": op.parameters["dictionaries"],
                "cases_processed": op.progress.processed_records.unwrap_or(0),
                "execution_time": execution_time(op),
                "started_at": op.started_at.map(time),
                "completed_at": op.finished_at.map(time),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "total": page.counts.total(),
        "limit": limit,
        "data": data,
    })))
}

/// The dictionary's breakout tables that exist, with its layout.
async fn output_tables(
    state: &AppState,
    target: ProjectRef,
    dictionary: &str,
) -> Result<(Layout, Vec<String>, chrono::DateTime<chrono::Utc>), ApiError> {
    let no_tables = || {
        facade(
            StatusCode::NOT_FOUND,
            "No tables found",
            "TABLES_NOT_FOUND",
            format!("No breakout tables found for dictionary '{dictionary}'"),
            json!({"suggestion": "Run breakout first using POST /api/breakout/start"}),
        )
    };
    let registered = state
        .store
        .breakout_dictionary(target.project, dictionary)
        .await
        .map_err(store_error)?
        .ok_or_else(|| dictionary_not_found(dictionary))?;
    let (_, layout) = parse_dictionary(&registered.dictionary, "dictionary")?;
    let output = state
        .store
        .breakout_output(target.project, dictionary)
        .await
        .map_err(store_error)?
        .ok_or_else(no_tables)?;
    let existing = state
        .store
        .existing_tables(&output.tables)
        .await
        .map_err(store_error)?;
    if existing.is_empty() {
        return Err(no_tables());
    }
    Ok((layout, existing, output.created_at))
}

pub async fn tables(
    state: web::Data<AppState>,
    principal: Principal,
    dictionary: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let (layout, names, created_at) = output_tables(&state, target, &dictionary).await?;
    let stats = state
        .store
        .breakout_table_stats(&names)
        .await
        .map_err(store_error)?;
    let total: i64 = stats.iter().map(|s| s.size_bytes).sum();
    let tables: Vec<Value> = stats
        .iter()
        .map(|s| {
            let kind = match layout
                .tables
                .iter()
                .find(|t| t.name == s.name)
                .map(|t| t.kind)
            {
                Some(TableKind::Cases) => "main",
                _ => "record",
            };
            json!({
                "name": s.name,
                "type": kind,
                "row_count": s.row_count,
                "size": human_size(s.size_bytes),
                "size_bytes": s.size_bytes,
            })
        })
        .collect();
    let database = state
        .store
        .analytics_database_name()
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "dictionary": dictionary.as_str(),
        "label": layout.prefix,
        "database": database,
        "tables": tables,
        "total_size": human_size(total),
        "total_size_bytes": total,
        "created_at": time(created_at),
    })))
}

pub async fn delete_tables(
    state: web::Data<AppState>,
    principal: Principal,
    dictionary: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    let (_, names, _) = output_tables(&state, target, &dictionary).await?;
    let stats = state
        .store
        .breakout_table_stats(&names)
        .await
        .map_err(store_error)?;
    let freed: i64 = stats.iter().map(|s| s.size_bytes).sum();
    state
        .store
        .drop_breakout_tables(target.project, &dictionary, &names)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "Tables deleted successfully",
        "dictionary": dictionary.as_str(),
        "deleted_tables": names,
        "freed_space": human_size(freed),
        "freed_bytes": freed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_like_the_seed() {
        assert_eq!(
            clock_duration(Duration::from_secs(45 * 60 + 12)),
            "00:45:12"
        );
        assert_eq!(
            clock_duration(Duration::from_secs(100 * 3600 + 1)),
            "100:00:01"
        );
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(13_107_200), "12.5 MB");
    }
}
