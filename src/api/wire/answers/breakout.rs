//! What the breakout facade (`/api/breakout/*`, seed 000) answers, in the seed's own
//! snake_case shapes.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::ids::OperationId;

/// A registered dictionary.
#[derive(Debug, Serialize, ToSchema)]
pub struct DictionaryView {
    pub name: String,
    pub label: String,
    /// `dat` or `csdb`.
    pub data_kind: &'static str,
    /// The server file it reads; `null` for uploaded data.
    pub data_path: Option<String>,
    pub uploaded: bool,
    /// The tables a breakout of it creates.
    pub tables: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DictionaryList {
    pub total: usize,
    pub data: Vec<DictionaryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DictionaryDeleted {
    #[schema(example = "Dictionary deleted successfully")]
    pub message: &'static str,
    pub dictionary: String,
}

/// `GET /api/breakout/tables/{dictionary}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::tables)]
pub struct TablesView {
    pub dictionary: String,
    /// The dictionary's label while it is registered.
    pub label: Option<String>,
    pub database: String,
    /// The project's own schema, with a schema per project.
    pub schema: Option<String>,
    pub tables: Vec<TableView>,
    pub total_size: String,
    pub total_size_bytes: i64,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableView {
    pub name: String,
    /// `main` (the cases table), `level`, `record`, or the bookkeeping `jobs`, `meta`
    /// and `notes`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub row_count: i64,
    /// `12.5 MB`.
    pub size: String,
    pub size_bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::tables_deleted)]
pub struct TablesDeleted {
    #[schema(example = "Tables deleted successfully")]
    pub message: &'static str,
    pub dictionary: String,
    pub deleted_tables: Vec<String>,
    pub freed_space: String,
    pub freed_bytes: i64,
}

/// `202` to `POST /api/breakout/start`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::breakout_started)]
pub struct BreakoutStarted {
    #[schema(example = "started")]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub job_id: OperationId,
    pub dictionaries: Vec<String>,
    pub threads: u32,
    pub estimated_time: Option<String>,
    #[schema(example = "Breakout started in background")]
    pub message: &'static str,
}

/// `GET /api/breakout/status/{job_id}`: one shape per state, told apart by `status`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobView {
    Completed(CompletedJob),
    Cancelled(CancelledJob),
    Failed(FailedJob),
    Active(ActiveJob),
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompletedStatus {
    Completed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelledStatus {
    Cancelled,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailedStatus {
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActiveStatus {
    Pending,
    Running,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::job_completed)]
pub struct CompletedJob {
    #[schema(value_type = String)]
    pub job_id: OperationId,
    pub status: CompletedStatus,
    pub result: JobResult,
    pub completed_at: Option<String>,
}

/// The breakout's own summary, as its executor reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResult {
    pub dictionaries_processed: Value,
    pub total_cases: Value,
    pub tables_created: Value,
    /// `HH:MM:SS`.
    pub execution_time: Option<String>,
    pub issues: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledJob {
    #[schema(value_type = String)]
    pub job_id: OperationId,
    pub status: CancelledStatus,
    pub reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub progress: CancelledProgress,
    pub started_at: Option<String>,
    pub cancelled_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledProgress {
    pub processed: u64,
    pub total: Option<u64>,
    pub percentage: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::job_failed)]
pub struct FailedJob {
    #[schema(value_type = String)]
    pub job_id: OperationId,
    pub status: FailedStatus,
    pub error: JobError,
    pub failed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: Option<String>,
    pub details: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::job_running)]
pub struct ActiveJob {
    #[schema(value_type = String)]
    pub job_id: OperationId,
    pub status: ActiveStatus,
    pub progress: ActiveProgress,
    pub threads: u64,
    pub started_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveProgress {
    /// The dictionary being broken out.
    pub dictionary: Option<String>,
    pub processed: u64,
    pub total: Option<u64>,
    /// A whole number, as the seed shows it (`"percentage": 25`).
    pub percentage: u64,
    pub elapsed_time: Option<String>,
    pub estimated_remaining: Option<String>,
}

/// `GET /api/breakout/jobs`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = super::examples::jobs)]
pub struct JobList {
    pub total: i64,
    pub limit: u32,
    pub data: Vec<JobListItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobListItem {
    #[schema(value_type = String)]
    pub job_id: OperationId,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    pub dictionaries: Value,
    pub cases_processed: u64,
    pub execution_time: Option<String>,
    pub started_at: Option<String>,
    /// `null` unless the job completed.
    pub completed_at: Option<String>,
    /// For a job that failed or was cancelled only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Option<String>>,
}
