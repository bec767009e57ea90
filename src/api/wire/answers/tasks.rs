//! What the `/v1` facade (seed 002) answers, in the seed's own shapes: a task, a list of
//! them, this instance's status, and the facade's errors.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::examples;
use crate::domain::ids::OperationId;
use crate::domain::operation::PhaseStatus;
use crate::domain::task::{InstanceStatus, TaskState, TaskStatus};

/// A task: an operation read as seed 002 shows it, with its actions (its phases) as the
/// worker reported them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = examples::task)]
pub struct TaskView {
    /// The task's id (`id_async`): the operation's id.
    #[schema(value_type = String)]
    pub id: OperationId,
    /// The step's name: the operation type.
    #[serde(rename = "type")]
    pub task_type: String,
    pub state: TaskState,
    pub task_status: TaskStatus,
    /// When it was submitted.
    pub start_date: String,
    /// When it ended; `null` until it has.
    pub end_date: Option<String>,
    /// When it is ended as timed out if it has not finished.
    pub expiration_date: String,
    /// The task itself (`GET /v1/tasks/{id_async}`), whose actions carry their results.
    pub result_link: String,
    /// Why it failed, timed out or was skipped; `null` otherwise.
    pub error: Option<TaskErrorView>,
    pub actions: Vec<ActionView>,
}

/// The seed's `error`: the last failure, and in `errors` those of the attempts before it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskErrorView {
    pub http_code: u16,
    /// The task's type.
    pub code: String,
    /// The error's code, as the worker (or Relais: `TIMEOUT`, `LEASE_EXPIRED`, …) gave it.
    pub state: String,
    pub message: String,
    pub description: String,
    pub errors: Vec<TaskFailureView>,
}

/// One earlier failure: an attempt that failed before the last one.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskFailureView {
    pub http_code: u16,
    pub code: String,
    pub state: String,
    pub message: String,
    pub description: String,
}

/// An action of the task, as submitted (`arguments`, `post_assign`), with what its worker
/// reported: its status, times and results.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub arguments: Option<Value>,
    /// What the worker reported for the action; the submitted `results` until it has.
    #[schema(value_type = Option<Object>)]
    pub results: Option<Value>,
    pub status: PhaseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>, nullable = false)]
    pub post_assign: Option<Value>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

/// `GET /v1/tasks`: one page of the ids of the tasks the query selects.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = examples::task_list)]
pub struct TaskList {
    pub hits: Hits,
    /// The request, as it was understood (what was given).
    #[schema(value_type = Object)]
    pub context: Value,
    /// The tasks' ids, in the order they were submitted.
    #[schema(value_type = Vec<String>)]
    pub results: Vec<OperationId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Hits {
    /// Every task the query selects.
    pub total: u64,
    /// The tasks on this page.
    pub size: usize,
    /// How many selected tasks come before this page.
    pub offset: u64,
    pub limit: u32,
    /// Relais answers every list in full, never cut short by a time limit: always `false`.
    pub time_out: bool,
    /// The task the next page starts at (send it back as `next`); `null` on the last page.
    #[schema(value_type = Option<String>)]
    pub next: Option<OperationId>,
}

/// `GET /v1/status`: this instance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = examples::instance)]
pub struct InstanceView {
    /// This process's id, new at each start.
    pub id: String,
    pub service: &'static str,
    pub start_date: String,
    pub status: InstanceStatus,
}

/// `GET /v1/status` when the instance takes no work: it says why; or, when the key could
/// not be checked (that needs the database), the error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatusUnavailable {
    Instance(InstanceView),
    Error(VitamErrorBody),
}

/// Every error of the facade, in the shape of the seed's task `error`: the HTTP status,
/// a stable `code` (`VALIDATION_ERROR`, `PRECONDITION_FAILED`, `NOT_FOUND`, …), the
/// status's name as `state`, a short `message`, the `description` of what went wrong and
/// how to fix it, and `field` for a refused field.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "http_code": 412,
    "code": "PRECONDITION_FAILED",
    "state": "Precondition_Failed",
    "message": "A predicate of the request does not hold",
    "description": "query: `color` is not a predicate Relais knows: use name, since, until, state, task_status",
    "errors": [],
    "field": "query"
}))]
pub struct VitamErrorBody {
    pub http_code: u16,
    pub code: &'static str,
    pub state: String,
    pub message: &'static str,
    pub description: String,
    /// The failures under this one: none for a refused request.
    pub errors: Vec<TaskFailureView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
