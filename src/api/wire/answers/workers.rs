//! What the worker protocol (`…/workers/lease`, `…/operation/{id}/progress|complete|fail`)
//! and the push workers' registrations (`…/async/workers`) answer.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ids::PushWorkerId;
use crate::domain::operation::OperationStatus;
use crate::lease::WorkOrder;

/// The answer to a lease request: an empty list when the wait passed with no work.
#[derive(Debug, Serialize, ToSchema)]
pub struct Leased<'a> {
    pub leases: Vec<WorkOrder<'a>>,
}

/// `200` to a progress report, which is the heartbeat.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressAccepted {
    pub status: OperationStatus,
    /// The operation was cancelled or timed out: the worker must stop.
    pub cancel_requested: bool,
    /// When the renewed lease runs out; `null` once the worker must stop.
    pub lease_expires_at: Option<String>,
}

/// `200` to `complete`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completed {
    pub status: OperationStatus,
}

/// `200` to `fail`: where the failure left the operation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecorded {
    pub status: OperationStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    /// When the next attempt may start, if there is one.
    pub next_attempt_at: Option<String>,
}

/// A registered push worker; its registration adds `secret`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushWorkerView {
    #[schema(value_type = String)]
    pub worker_id: PushWorkerId,
    pub name: String,
    pub url: String,
    pub operation_types: Vec<String>,
    pub max_concurrency: u32,
    /// Tasks it holds now.
    pub in_flight: i64,
    pub created_at: String,
    /// What signs its tasks: shown once, in the answer that registers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushWorkerList {
    pub workers: Vec<PushWorkerView>,
}
