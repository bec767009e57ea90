//! What `…/notebook`, `…/block` and a notebook's runs answer (seed 003).

use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ErrorBody;
use crate::domain::batch::{BatchCallbacks, BatchStatus, FailurePolicy};
use crate::domain::ids::{BatchId, BlockId, NotebookId, NotebookRunId, OperationId};
use crate::domain::operation::Notifications;

/// A block, with every field of the seed's `GET …/block/{blockId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "blockId": "550e8400-e29b-41d4-a716-446655440000",
    "notebookId": "660e8400-e29b-41d4-a716-446655440000",
    "blockType": "Filter",
    "blockTitle": "Date Range Filter",
    "blockDescription": "Filters data for the last 30 days",
    "blockOrder": 0,
    "configuration": "{\"filterType\": \"dateRange\", \"startDate\": \"2024-01-01\"}",
    "isDisabled": false,
    "dateCreated": "2024-01-15T10:30:00Z",
    "dateModified": "2024-01-15T14:45:00Z",
    "createdBy": "user@example.com",
    "modifiedBy": "user@example.com",
    "lastExecutionDate": "2024-01-15T14:45:00Z",
    "lastExecutionStatus": "Success",
    "executionCount": 12,
    "dependencies": []
}))]
pub struct BlockView {
    #[schema(value_type = String)]
    pub block_id: BlockId,
    #[schema(value_type = String)]
    pub notebook_id: NotebookId,
    pub block_type: String,
    pub block_title: String,
    /// `null` when none was given.
    pub block_description: Option<String>,
    pub block_order: i32,
    /// The operation's parameters: a JSON object, written as a string.
    pub configuration: String,
    pub is_disabled: bool,
    pub date_created: String,
    pub date_modified: String,
    /// The name of the token that created it (its id, `tok-…`, for a token without a name).
    pub created_by: String,
    pub modified_by: String,
    /// When the block last ended in a run; `null` before its first.
    pub last_execution_date: Option<String>,
    /// `Success`, `Failed`, `Cancelled` or `Skipped`; `null` before its first run.
    pub last_execution_status: Option<String>,
    /// Runs in which the block ended (completed, failed, was cancelled or skipped).
    pub execution_count: u64,
    /// Blocks of the same notebook this one runs after.
    #[schema(value_type = Vec<String>)]
    pub dependencies: Vec<BlockId>,
}

/// `404` for a block: the seed's shape, exactly.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockNotFound {
    #[serde(rename = "Error")]
    #[schema(example = "Block not found")]
    pub error: &'static str,
    #[serde(rename = "BlockId")]
    pub block_id: String,
}

/// A block path's `404`: the seed's shape for a block that does not exist, the usual
/// error for a project the token cannot see.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BlockMissing {
    Block(BlockNotFound),
    Project(ErrorBody),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookView {
    #[schema(value_type = String)]
    pub notebook_id: NotebookId,
    pub notebook_name: String,
    pub notebook_description: Option<String>,
    /// The cron expression, `null` without a schedule.
    pub schedule: Option<String>,
    pub timezone: String,
    pub schedule_paused: bool,
    /// The next tick: `null` without a schedule or while it is paused.
    pub next_run_at: Option<String>,
    /// When the last run (by hand or on schedule) started.
    pub last_run_at: Option<String>,
    #[schema(value_type = Object)]
    pub notifications: Notifications,
    #[schema(value_type = Object)]
    pub callbacks: BatchCallbacks,
    #[schema(value_type = Object)]
    pub failure_policy: FailurePolicy,
    pub date_created: String,
    pub date_modified: String,
    pub created_by: String,
    pub modified_by: String,
    /// Its blocks in block order (in `GET …/notebook/{notebookId}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockView>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookList {
    pub notebooks: Vec<NotebookView>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

/// A run of a notebook: the batch it submitted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunItem {
    #[schema(value_type = String)]
    pub run_id: NotebookRunId,
    #[schema(value_type = String)]
    pub notebook_id: NotebookId,
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    /// `manual` or `schedule`.
    pub trigger: &'static str,
    /// The tick a scheduled run ran for; `null` for a manual run.
    pub scheduled_for: Option<String>,
    /// The batch's status.
    pub status: BatchStatus,
    pub date_created: String,
    pub end_time: Option<String>,
    /// The batch's status path.
    pub tracking_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunItem>,
    pub page: u32,
    pub page_size: u32,
    pub has_next_page: bool,
}

/// `202` to `POST …/notebook/{notebookId}/run`: the run and its batch's members.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStartedView {
    #[serde(flatten)]
    pub run: RunItem,
    pub total_operations: usize,
    pub operations: Vec<RunMember>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunMember {
    /// The block this member runs (the batch member's `operationKey`).
    pub block_id: String,
    #[schema(value_type = String)]
    pub operation_id: OperationId,
    /// The blocks it waits for.
    pub dependencies: Vec<String>,
}
