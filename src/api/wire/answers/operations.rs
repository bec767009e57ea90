//! What `…/async/operation(s)` answer: the start and retry receipts, the status, the list,
//! the cancellation and the results.
//!
//! Fields the seed shows as `null` when unknown are `Option`s serialized as `null`, never
//! left out, so clients can rely on every field being there; the few that only some
//! requests ask for (`includeDetails`, `format`) are left out when not asked for.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::ids::{ExecutionId, OperationId};
use crate::domain::operation::{
    AttemptRecord, Callbacks, OperationError, OperationStatus, Priority, RetryMode,
};

/// `202` to `POST …/async/operation`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::operation_accepted)]
pub struct OperationAccepted {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_type: String,
    pub operation_name: String,
    pub status: OperationStatus,
    /// "23 minutes 15 seconds", once runs of this type have completed.
    pub estimated_duration: Option<String>,
    pub estimated_duration_seconds: Option<f64>,
    pub estimated_completion: Option<String>,
    pub tracking_url: String,
    /// The project's webhooks that will hear of this operation, plus its callbacks.
    pub webhooks_registered: usize,
    pub priority: Priority,
    pub date_created: String,
    pub timeout_at: String,
}

/// `202` to `POST …/operation/{operationId}/retry`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::retry_accepted)]
pub struct RetryAccepted {
    #[schema(value_type = String)]
    pub original_operation_id: OperationId,
    #[schema(value_type = String)]
    pub new_operation_id: OperationId,
    pub retry_mode: RetryMode,
    pub retry_number: u32,
    pub retry_reason: Option<String>,
    pub resume_from_phase: Option<String>,
    pub status: OperationStatus,
    pub estimated_duration: Option<String>,
    pub estimated_completion: Option<String>,
    pub preserved_results: PreservedResults,
    pub retry_attempt_date: String,
    pub timeout_at: String,
    pub tracking_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreservedResults {
    pub phases_preserved: usize,
    pub records_processed: Option<u64>,
    pub progress_saved: Option<f64>,
}

/// `GET …/operation/{operationId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::operation_status)]
pub struct OperationStatusView {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_type: String,
    pub operation_name: String,
    pub operation_description: Option<String>,
    pub status: OperationStatus,
    pub priority: Priority,
    /// Whatever the client gave: free-form.
    pub parameters: Value,
    pub progress: ProgressView,
    pub execution: ExecutionView,
    pub phases: Vec<PhaseView>,
    /// Every attempt so far: when it started and ended, and how.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<AttemptRecord>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<OperationError>,
    pub cancellation: Option<CancellationView>,
    pub callbacks: CallbacksView,
    /// What happened to the Slack messages and mails its `notifications` asked for.
    pub notifications: NotificationsView,
    /// The callback URLs the operation was started with.
    #[schema(value_type = Object)]
    pub callback_urls: Callbacks,
    #[schema(value_type = Option<String>)]
    pub retry_of: Option<OperationId>,
    pub retry_number: u32,
    pub resume_from_phase: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub end_time: Option<String>,
    pub timeout_at: String,
    pub tracking_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    pub percentage: Option<f64>,
    pub current_phase: Option<String>,
    pub phases_completed: usize,
    pub total_phases: Option<u32>,
    pub start_time: Option<String>,
    pub elapsed_time: Option<String>,
    pub elapsed_seconds: Option<f64>,
    pub estimated_remaining: Option<String>,
    pub estimated_remaining_seconds: Option<f64>,
    pub estimated_completion: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    #[schema(value_type = Option<String>)]
    pub execution_id: Option<ExecutionId>,
    pub worker_node: Option<String>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub next_attempt_at: Option<String>,
    pub retrying: bool,
    pub lease_expires_at: Option<String>,
    pub processed_records: Option<u64>,
    pub total_records: Option<u64>,
    /// "1200 records/minute".
    pub processing_rate: Option<String>,
}

/// A phase as the seed shows one: its fields, its own counters and details beside them
/// (`"modelsTraining": 3`, `"validationResults": {…}`), and how long it took once it ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseView {
    /// `phaseName`, `status`, `startTime`, `endTime`, `progress`, `currentActivity`,
    /// `results`, `checkpoint` and the phase's counters and details, as the worker
    /// reported them.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancellationView {
    pub cancellation_time: String,
    pub reason: Option<String>,
    pub cancelled_by: String,
    pub progress_at_cancellation: Option<f64>,
    pub phase_at_cancellation: Option<String>,
    pub preserve_partial_results: bool,
}

/// What happened to the operation's callbacks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbacksView {
    pub progress_callbacks_sent: i64,
    pub last_progress_callback: Option<String>,
    pub callbacks_successful: i64,
    pub callbacks_failed: i64,
    pub callbacks_pending: i64,
}

/// Slack messages and mails about the operation: sent, given up on, still on their way.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsView {
    pub sent: i64,
    pub failed: i64,
    pub pending: i64,
}

/// One operation of `GET …/async/operations`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationListItem {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_type: String,
    pub operation_name: String,
    pub status: OperationStatus,
    pub progress: Option<f64>,
    pub priority: Priority,
    pub date_created: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub duration: Option<String>,
    pub current_phase: Option<String>,
    pub estimated_completion: Option<String>,
    pub records_processed: Option<u64>,
    /// With `includeDetails=true` only, as are the next three.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseView>>,
    /// `null` when the operation has no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Option<OperationError>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::operation_list)]
pub struct OperationList {
    pub operations: Vec<OperationListItem>,
    pub summary: OperationCounts,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

/// How many of the project's operations (matching the filters) are in each state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationCounts {
    pub total_operations: i64,
    pub pending: i64,
    pub initiated: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timeout: i64,
    pub skipped: i64,
}

/// `200` to `DELETE …/operation/{operationId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::operation_cancelled)]
pub struct OperationCancelled {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub status: OperationStatus,
    pub cancellation_time: String,
    pub reason: Option<String>,
    pub progress_at_cancellation: Option<f64>,
    pub phase_at_cancellation: Option<String>,
    pub worker_notified: String,
    pub partial_results: PartialResults,
    pub cancelled_by: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartialResults {
    pub available: bool,
    pub completed_phases: usize,
    pub download_urls: Vec<String>,
}

/// `GET …/operation/{operationId}/results`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::operation_results)]
pub struct OperationResults {
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_type: String,
    pub operation_name: String,
    pub status: OperationStatus,
    pub success: bool,
    pub partial: bool,
    pub completion_time: Option<String>,
    pub total_duration: Option<String>,
    pub summary: Value,
    /// With `format=detailed` or `download`, or a `phase`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_results: Option<Vec<Value>>,
    /// Unless `includeArtifacts=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Value>>,
    /// The worker's own values (`performance`, `recommendations`, …), whose names never
    /// take one of the others' (`OperationResult::check_extra`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}
