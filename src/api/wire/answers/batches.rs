//! What `…/async/batch` and `…/async/batches` answer.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::batch::{BatchCallbacks, BatchStatus, FailurePolicy};
use crate::domain::ids::{BatchId, OperationId};
use crate::domain::operation::{OperationError, OperationStatus};

/// `202` to `POST …/async/batch`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = super::examples::batch_accepted)]
pub struct BatchAccepted {
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    pub batch_name: String,
    pub status: BatchStatus,
    pub operations: Vec<AcceptedMember>,
    pub total_operations: usize,
    #[schema(value_type = Object)]
    pub failure_policy: FailurePolicy,
    pub batch_start_time: String,
    pub tracking_url: String,
    /// Along the critical path, once every member's type has a measured typical duration;
    /// left out otherwise, as is the completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_batch_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_batch_completion: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedMember {
    pub operation_key: String,
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub status: OperationStatus,
    pub dependencies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_duration: Option<String>,
    /// For a member with dependencies whose start can be estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_start_time: Option<String>,
}

/// `GET …/batch/{batchId}`, and the answer to its `DELETE`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    pub batch_name: String,
    pub batch_description: Option<String>,
    pub status: BatchStatus,
    pub total_operations: usize,
    /// Members by status.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    pub progress: f64,
    pub operations: Vec<BatchMemberView>,
    #[schema(value_type = Object)]
    pub failure_policy: FailurePolicy,
    #[schema(value_type = Object)]
    pub batch_callbacks: BatchCallbacks,
    pub retry_number: u32,
    pub cancel_requested: bool,
    pub batch_start_time: String,
    pub end_time: Option<String>,
    pub tracking_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchMemberView {
    pub operation_key: String,
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    pub operation_name: String,
    pub operation_type: String,
    pub status: OperationStatus,
    pub dependencies: Vec<String>,
    pub progress: Option<f64>,
    pub attempt: u32,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<OperationError>,
    #[schema(value_type = Option<String>)]
    pub retry_of: Option<OperationId>,
}

/// `GET …/async/batches`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchList {
    pub batches: Vec<BatchListItem>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchListItem {
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    pub batch_name: String,
    pub status: BatchStatus,
    pub total_operations: u32,
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    pub progress: f64,
    pub batch_start_time: String,
    pub end_time: Option<String>,
    pub tracking_url: String,
}

/// `202` to `POST …/batch/{batchId}/retry`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchRetried {
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    pub status: BatchStatus,
    pub retry_number: u32,
    pub retried_operations: Vec<RetriedMember>,
    pub tracking_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetriedMember {
    pub operation_key: String,
    #[schema(value_type = String)]
    pub original_operation_id: OperationId,
    #[schema(value_type = String)]
    pub new_operation_id: OperationId,
}
