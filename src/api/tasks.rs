//! `/v1/tasks` and `/v1/status`: the worker tasks facade of seed 002, in the seed's own
//! shapes (snake_case fields, its headers, its statuses), with its own paths, error shape
//! and key (`caller`). A task is an operation whose type is the step's name and whose
//! phases are its actions (`domain::task`), so any worker of that type runs it, and every
//! operation of the project reads as a task. Its `id_async` is the operation's id.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::error::ApiError;
use super::format::{opt_time, time};
use super::idempotency::Idempotency;
use super::operations::to_json;
use super::wire::answers::tasks::{
    ActionView, Hits, InstanceView, StatusUnavailable, TaskErrorView, TaskFailureView, TaskList,
    TaskView,
};
use super::wire::tasks::{
    CheckedList, ListTasksBody, SubmitTaskBody, TaskMessageBody, TaskQueryString,
};
use super::wire::{self, answers};
use super::AppState;
use crate::clock;
use crate::domain::auth::Scope;
use crate::domain::ids::OperationId;
use crate::domain::operation::{CancelRequest, Operation, Phase};
use crate::domain::task::{self, failures, task_state, InstanceStatus, TaskFailure};
use crate::domain::FieldError;
use crate::store::CreateOutcome;

pub mod caller;
pub mod error;

use caller::{VitamBody, VitamCaller};
use error::VitamError;

const SUBMIT_SCOPE: &str = "task.submit";
/// The service `/v1/status` names.
const SERVICE: &str = "relais";

/// The path parameter of `/v1/tasks/{id_async}`, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdAsyncParam {
    /// The task's id (`op-…`), as its submission answered it.
    pub id_async: String,
}

/// The headers a `/v1` request may carry beside `X-Vitam-Key`, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct VitamHeaders {
    /// The number of the key's tenant (`vitamTenantId` of `relais tenant create --json`);
    /// another number is a 404.
    #[param(
        rename = "X-Tenant-Id",
        minimum = 0,
        maximum = 9_007_199_254_740_991_i64
    )]
    pub tenant_id: Option<i64>,
    /// The client's session, echoed on the answer.
    #[param(
        rename = "X-Application-Id",
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]+$"
    )]
    pub application_id: Option<String>,
}

fn task_id(text: &str, field: &str) -> Result<OperationId, FieldError> {
    let id: OperationId = text
        .parse()
        .map_err(|e| FieldError::new(field, format!("{e}")))?;
    super::request_id::record("operation_id", id);
    Ok(id)
}

/// The action of the submitted step that a phase stands for, if the operation was
/// submitted as a step.
fn submitted_action<'a>(op: &'a Operation, phase: &Phase) -> Option<&'a Value> {
    op.parameters
        .get("actions")?
        .as_array()?
        .iter()
        .find(|a| a.get("action").and_then(Value::as_str).map(str::trim) == Some(&phase.phase_name))
}

fn failure_view(failure: &TaskFailure, code: &str) -> TaskFailureView {
    TaskFailureView {
        http_code: failure.http_code,
        code: code.to_owned(),
        state: failure.state.clone(),
        message: failure.message.clone(),
        description: failure.description.clone(),
    }
}

fn task_view(op: &Operation) -> TaskView {
    let (state, task_status) = task_state(op.status);
    TaskView {
        id: op.id,
        task_type: op.operation_type.clone(),
        state,
        task_status,
        start_date: time(op.created_at),
        end_date: opt_time(op.finished_at),
        expiration_date: time(op.timeout_at),
        result_link: format!("/v1/tasks/{}", op.id),
        error: failures(op).map(|f| {
            let last = failure_view(&f.last, &op.operation_type);
            TaskErrorView {
                http_code: last.http_code,
                code: last.code,
                state: last.state,
                message: last.message,
                description: last.description,
                errors: f
                    .earlier
                    .iter()
                    .map(|e| failure_view(e, &op.operation_type))
                    .collect(),
            }
        }),
        actions: op
            .phases
            .iter()
            .map(|phase| {
                let submitted = submitted_action(op, phase);
                let given = |name: &str| submitted.and_then(|a| a.get(name)).cloned();
                ActionView {
                    action: phase.phase_name.clone(),
                    arguments: given("arguments"),
                    results: phase.results.clone().or_else(|| given("results")),
                    status: phase.status,
                    post_assign: given("post_assign"),
                    start_time: opt_time(phase.start_time),
                    end_time: opt_time(phase.end_time),
                }
            })
            .collect(),
    }
}

#[utoipa::path(
    get,
    operation_id = "tasks_list",
    path = "/v1/tasks",
    tag = "tasks",
    summary = "List tasks",
    description = "The ids of the tasks the `query` selects (by default, those under way), in the order they were submitted, a page at a time. The body is optional; `query` may be given in the query string instead (URL-encoded).",
    params(VitamHeaders, wire::tasks::TaskQueryString),
    request_body(content = Option<wire::tasks::ListTasksBody>, description = "Optional: without it, the first page of the tasks under way"),
    responses(
        (status = 200, description = "A page of task ids", body = answers::tasks::TaskList),
        (status = 412, description = "A predicate of `query` cannot be applied: `description` says which", body = answers::tasks::VitamErrorBody)
    ),
    security(("vitamKey" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: VitamCaller,
    req: HttpRequest,
    body: VitamBody,
) -> Result<HttpResponse, VitamError> {
    let target = caller.project(&state, Scope::OperationsRead).await?;
    let mut request: ListTasksBody = body.json_or_default()?;
    let in_url = web::Query::<TaskQueryString>::from_query(req.query_string())
        .map_err(|e| FieldError::new("query", e.to_string()))?
        .into_inner()
        .query;
    match (&request.query, in_url) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "query",
                "is given both in the body and in the query string; give it once",
            )
            .into())
        }
        (None, Some(in_url)) => request.query = Some(in_url),
        _ => {}
    }
    let (filter, paging) = match request.check() {
        CheckedList::Checked(filter, paging) => (filter, paging),
        CheckedList::Refused(e) => return Err(e.into()),
        CheckedList::Unapplicable(e) => {
            return Err(VitamError::Precondition(FieldError::new("query", e.0)))
        }
    };
    let rows = state
        .store
        .operations()
        .task_rows(target.tenant, target.project, &filter, &paging)
        .await?
        .ok_or_else(|| FieldError::new("next", "names no task of this project"))?;
    let page = task::page(rows.total, rows.before, rows.rows, paging.limit);
    // The request as given: the seed's `context` echoes its `query`.
    let mut context: Value = match body.is_empty() {
        true => Value::Object(Default::default()),
        false => body.json()?,
    };
    if let (Some(query), Some(fields)) = (&request.query, context.as_object_mut()) {
        fields
            .entry("query")
            .or_insert_with(|| Value::String(query.clone()));
    }
    Ok(HttpResponse::Ok().json(TaskList {
        hits: Hits {
            total: page.total,
            size: page.results.len(),
            offset: page.offset,
            limit: page.limit,
            time_out: false,
            next: page.next,
        },
        context,
        results: page.results,
    }))
}

#[utoipa::path(
    post,
    operation_id = "tasks_submit",
    path = "/v1/tasks",
    tag = "tasks",
    summary = "Submit a step",
    description = "The step becomes an operation of type `Step`, one phase per action, all `Pending`: the workers of that type lease it and report on each action by its name.",
    params(VitamHeaders, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::tasks::SubmitTaskBody,
    responses((status = 201, description = "Submitted: the task, pending", body = answers::tasks::TaskView)),
    security(("vitamKey" = []))
)]
pub async fn submit(
    state: web::Data<AppState>,
    caller: VitamCaller,
    req: HttpRequest,
    body: VitamBody,
) -> Result<HttpResponse, VitamError> {
    let target = caller.project(&state, Scope::OperationsWrite).await?;
    let submitted: Value = body.json()?;
    let step = body.json::<SubmitTaskBody>()?.into_step(submitted)?;
    if let Some(executor) = state.executors.get(&step.name) {
        executor.validate(&step.submitted)?;
    }
    let idempotency = match Idempotency::check(&state, target, SUBMIT_SCOPE, &req, &body.0).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let mut op = step.into_operation(
        OperationId::new(),
        target.tenant,
        target.project,
        clock::now(),
    );
    super::request_id::record("operation_id", op.id);
    let response = to_json(&task_view(&op))?;
    let record = idempotency.record(StatusCode::CREATED, &response);
    if state
        .store
        .operations()
        .create(&mut op, Vec::new(), record)
        .await?
        == CreateOutcome::IdempotencyKeyTaken
    {
        return Ok(idempotency.replay_winner(&state, target).await?);
    }
    tracing::info!(operation_id = %op.id, step = %op.operation_type, "task submitted");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/tasks/{}", op.id)))
        .content_type("application/json")
        .body(response))
}

#[utoipa::path(
    get,
    operation_id = "tasks_get",
    path = "/v1/tasks/{id_async}",
    tag = "tasks",
    summary = "A task",
    params(IdAsyncParam, VitamHeaders),
    responses((status = 200, description = "The task", body = answers::tasks::TaskView)),
    security(("vitamKey" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: VitamCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, VitamError> {
    let target = caller.project(&state, Scope::OperationsRead).await?;
    let id = task_id(&path, "id_async")?;
    let op = state
        .store
        .operations()
        .get(target.tenant, target.project, id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    Ok(HttpResponse::Ok().json(task_view(&op)))
}

#[utoipa::path(
    put,
    operation_id = "tasks_cancel",
    path = "/v1/tasks",
    tag = "tasks",
    summary = "Cancel the task `X-RequestId` names",
    params(VitamHeaders),
    request_body = wire::tasks::TaskMessageBody,
    responses((status = 200, description = "Cancelled: the task", body = answers::tasks::TaskView)),
    security(("vitamKey" = []))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: VitamCaller,
    body: VitamBody,
) -> Result<HttpResponse, VitamError> {
    let target = caller.project(&state, Scope::OperationsWrite).await?;
    let message: TaskMessageBody = body.json()?;
    let named = message.request_id.clone().ok_or_else(|| {
        FieldError::new(
            "X-RequestId",
            "names the task to cancel (its id_async): it is required here",
        )
    })?;
    let id = task_id(&named, "X-RequestId")?;
    let request = message.into_cancel()?;
    cancel_task(&state, &caller, target, id, request).await
}

#[utoipa::path(
    put,
    operation_id = "tasks_cancel_one",
    path = "/v1/tasks/{id_async}",
    tag = "tasks",
    summary = "Cancel a task",
    params(IdAsyncParam, VitamHeaders),
    request_body(content = Option<wire::tasks::TaskMessageBody>, description = "Optional: its `message` is kept as the reason; its `X-RequestId`, when given, must be the path's task"),
    responses(
        (status = 200, description = "Cancelled: the task", body = answers::tasks::TaskView),
        (status = 412, description = "`X-RequestId` names another task than the path", body = answers::tasks::VitamErrorBody)
    ),
    security(("vitamKey" = []))
)]
pub async fn cancel_one(
    state: web::Data<AppState>,
    caller: VitamCaller,
    path: web::Path<String>,
    body: VitamBody,
) -> Result<HttpResponse, VitamError> {
    let target = caller.project(&state, Scope::OperationsWrite).await?;
    let id = task_id(&path, "id_async")?;
    let message: TaskMessageBody = body.json_or_default()?;
    if let Some(named) = &message.request_id {
        if named.parse::<OperationId>().ok() != Some(id) {
            return Err(VitamError::Precondition(FieldError::new(
                "X-RequestId",
                "names another task than the path: leave it out, or name the same task",
            )));
        }
    }
    let request = message.into_cancel()?;
    cancel_task(&state, &caller, target, id, request).await
}

async fn cancel_task(
    state: &AppState,
    caller: &VitamCaller,
    target: super::auth::ProjectRef,
    id: OperationId,
    request: CancelRequest,
) -> Result<HttpResponse, VitamError> {
    let cancelled_by = caller.principal.acting_as();
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
        .ok_or(ApiError::NotFound("task"))?;
    Ok(HttpResponse::Ok().json(task_view(&op)))
}

#[utoipa::path(
    get,
    operation_id = "tasks_status",
    path = "/v1/status",
    tag = "tasks",
    summary = "This instance's status",
    description = "`Active` (200) while it takes work; `ShutdownInProgress` (503) from the first SIGTERM until it stops listening; `Unreachable` (503) while its database does not answer.",
    params(VitamHeaders),
    responses(
        (status = 200, description = "Active", body = answers::tasks::InstanceView),
        (status = 503, description = "Shutting down, or without its database (when the key cannot be checked without it, the error)", body = answers::tasks::StatusUnavailable)
    ),
    security(("vitamKey" = []))
)]
pub async fn status(
    state: web::Data<AppState>,
    // The key is checked; the status is no project's, so any valid key may read it.
    _caller: VitamCaller,
) -> Result<HttpResponse, VitamError> {
    let database_answers = state.store.ping().await.is_ok();
    let status = InstanceStatus::of(state.instance.shutting_down(), database_answers);
    let view = InstanceView {
        id: state.instance.id.to_string(),
        service: SERVICE,
        start_date: time(state.instance.started_at),
        status,
    };
    Ok(match status.serves() {
        true => HttpResponse::Ok().json(view),
        false => HttpResponse::ServiceUnavailable().json(StatusUnavailable::Instance(view)),
    })
}
