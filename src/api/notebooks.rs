//! `…/notebook`: a project's saved pipelines of blocks (seed 003), run by hand
//! (`…/notebook/{notebookId}/run`) or on their cron schedule, each run a batch.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{ProjectPath, ProjectRef};
use super::blocks::block_view;
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::idempotency::Idempotency;
use super::integrations::check_notifications_sendable;
use super::operations::{check_targets, parse_query, to_json};
use super::wire::answers::notebooks::{
    NotebookList, NotebookView, RunItem, RunList, RunMember, RunStartedView,
};
use super::wire::notebooks::{CreateNotebookBody, PageQuery, UpdateNotebookBody};
use super::wire::query::parse_uint;
use super::wire::{self, answers};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::batch::BatchStatus;
use crate::domain::ids::{BatchId, NotebookId};
use crate::domain::notebook::{Notebook, NotebookChange};
use crate::domain::FieldError;
use crate::store::{ChangeError, RunStarted, RunView, StartRunError, Written};

#[derive(Debug, Deserialize)]
pub struct NotebookPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "notebookId")]
    pub notebook_id: String,
}

impl NotebookPath {
    pub fn notebook_id(&self) -> Result<NotebookId, ApiError> {
        let id: NotebookId = self
            .notebook_id
            .parse()
            .map_err(|e| FieldError::new("notebookId", format!("{e}")))?;
        super::request_id::record("notebook_id", id);
        Ok(id)
    }
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NotebookIdParam {
    /// The notebook's id (a GUID).
    #[param(rename = "notebookId")]
    pub notebook_id: String,
}

fn batch_url(target: ProjectRef, id: BatchId) -> String {
    format!("/api/{}/{}/async/batch/{id}", target.tenant, target.project)
}

pub fn notebook_view(notebook: &Notebook) -> NotebookView {
    NotebookView {
        notebook_id: notebook.id,
        notebook_name: notebook.name.clone(),
        notebook_description: notebook.description.clone(),
        schedule: notebook
            .schedule
            .as_ref()
            .map(|s| s.expression().to_owned()),
        timezone: notebook.timezone.clone(),
        schedule_paused: notebook.schedule_paused,
        next_run_at: opt_time(notebook.next_run_at),
        last_run_at: opt_time(notebook.last_run_at),
        notifications: notebook.notifications.clone(),
        callbacks: notebook.callbacks.clone(),
        failure_policy: notebook.failure_policy,
        date_created: time(notebook.created_at),
        date_modified: time(notebook.updated_at),
        created_by: notebook.created_by.clone(),
        modified_by: notebook.modified_by.clone(),
        blocks: None,
    }
}

/// What the settings ask of the outside world can be done: the callbacks' hosts may be
/// reached, and the notifications sent.
async fn check_sendable(
    state: &AppState,
    target: ProjectRef,
    change: &NotebookChange,
) -> Result<(), ApiError> {
    if let Some(callbacks) = &change.callbacks {
        check_targets(
            state,
            "callbacks",
            [
                ("onBatchStart", &callbacks.on_batch_start),
                ("onOperationComplete", &callbacks.on_operation_complete),
                ("onBatchComplete", &callbacks.on_batch_complete),
            ],
        )
        .await?;
    }
    if let Some(wanted) = &change.notifications {
        check_notifications_sendable(
            state,
            target,
            !wanted.email.is_empty(),
            wanted.slack.is_some(),
            "notifications",
        )
        .await?;
    }
    Ok(())
}

#[utoipa::path(
    post,
    operation_id = "notebooks_create",
    path = "/api/{tenantId}/{projectId}/notebook",
    tag = "notebooks",
    summary = "Create a notebook",
    params(ProjectPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::notebooks::CreateNotebookBody,
    responses((status = 201, description = "Created", body = answers::notebooks::NotebookView))
)]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsWrite))
        .await?;
    let change: NotebookChange = body.json::<CreateNotebookBody>()?.try_into()?;
    check_sendable(&state, target, &change).await?;
    let notebook = Notebook::create(
        NotebookId::new(),
        target.tenant,
        target.project,
        change,
        &principal.acting_as(),
        clock::now(),
    )?;
    super::request_id::record("notebook_id", notebook.id);
    let idempotency = match Idempotency::check(&state, target, CREATE_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let mut view = notebook_view(&notebook);
    view.blocks = Some(Vec::new());
    let response = to_json(&view)?;
    let record = idempotency.record(StatusCode::CREATED, &response);
    if let Written::KeyTaken = state.store.notebooks().create(&notebook, record).await? {
        return idempotency.replay_winner(&state, target).await;
    }
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!(
                "/api/{}/{}/notebook/{}",
                target.tenant, target.project, notebook.id
            ),
        ))
        .content_type("application/json")
        .body(response))
}

const CREATE_SCOPE: &str = "notebook.create";
const RUN_SCOPE: &str = "notebook.run";

#[utoipa::path(
    get,
    operation_id = "notebooks_get",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}",
    tag = "notebooks",
    summary = "A notebook, with its blocks",
    params(ProjectPath, NotebookIdParam),
    responses((status = 200, description = "The notebook", body = answers::notebooks::NotebookView))
)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsRead))
        .await?;
    let notebooks = state.store.notebooks();
    let notebook = notebooks
        .get(target.tenant, target.project, path.notebook_id()?)
        .await?
        .ok_or(ApiError::NotFound("notebook"))?;
    let blocks = notebooks.blocks(notebook.id).await?;
    let mut view = notebook_view(&notebook);
    view.blocks = Some(blocks.iter().map(|(b, s)| block_view(b, s)).collect());
    Ok(HttpResponse::Ok().json(view))
}

fn page_of(query: &[(String, String)]) -> Result<(u32, u32), ApiError> {
    let q: PageQuery = parse_query(query)?;
    let page = parse_uint(q.page.as_deref(), "page", 1, 1, u32::MAX)?;
    let page_size = parse_uint(q.page_size.as_deref(), "pageSize", 20, 1, 100)?;
    Ok((page, page_size))
}

#[utoipa::path(
    get,
    operation_id = "notebooks_list",
    path = "/api/{tenantId}/{projectId}/notebooks",
    tag = "notebooks",
    summary = "List notebooks",
    params(ProjectPath, wire::notebooks::PageQuery),
    responses((status = 200, description = "A page of notebooks, newest first", body = answers::notebooks::NotebookList))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path, Some(Scope::OperationsRead))
        .await?;
    let (page, page_size) = page_of(&query)?;
    let found = state
        .store
        .notebooks()
        .list(target.tenant, target.project, page, page_size)
        .await?;
    Ok(HttpResponse::Ok().json(NotebookList {
        notebooks: found.notebooks.iter().map(notebook_view).collect(),
        page,
        page_size,
        has_next_page: found.has_next_page,
    }))
}

#[utoipa::path(
    get,
    operation_id = "notebooks_list_at_notebook",
    path = "/api/{tenantId}/{projectId}/notebook",
    tag = "notebooks",
    summary = "List notebooks (the same as `GET …/notebooks`)",
    params(ProjectPath, wire::notebooks::PageQuery),
    responses((status = 200, description = "A page of notebooks, newest first", body = answers::notebooks::NotebookList))
)]
pub async fn list_at_notebook(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    list(state, principal, path, query).await
}

#[utoipa::path(
    put,
    operation_id = "notebooks_update",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}",
    tag = "notebooks",
    summary = "Change a notebook (fields left out stay)",
    params(ProjectPath, NotebookIdParam),
    request_body = wire::notebooks::UpdateNotebookBody,
    responses((status = 200, description = "The notebook as changed", body = answers::notebooks::NotebookView))
)]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.notebook_id()?;
    let change: NotebookChange = body.json::<UpdateNotebookBody>()?.try_into()?;
    check_sendable(&state, target, &change).await?;
    let by = principal.acting_as();
    let notebook = state
        .store
        .notebooks()
        .update(target.tenant, target.project, id, |n| {
            n.apply(change, &by, clock::now())
        })
        .await
        .map_err(|e| match e {
            ChangeError::Refused(e) => ApiError::from(e),
            ChangeError::Store(e) => e.into(),
        })?
        .ok_or(ApiError::NotFound("notebook"))?;
    Ok(HttpResponse::Ok().json(notebook_view(&notebook)))
}

#[utoipa::path(
    delete,
    operation_id = "notebooks_delete",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}",
    tag = "notebooks",
    summary = "Delete a notebook and its blocks (runs already started finish)",
    params(ProjectPath, NotebookIdParam),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let deleted = state
        .store
        .notebooks()
        .delete(target.tenant, target.project, path.notebook_id()?)
        .await?;
    if !deleted {
        return Err(ApiError::NotFound("notebook"));
    }
    Ok(HttpResponse::NoContent().finish())
}

fn run_item(target: ProjectRef, view: &RunView) -> RunItem {
    let run = &view.run;
    RunItem {
        run_id: run.id,
        notebook_id: run.notebook_id,
        batch_id: run.batch_id,
        trigger: run.trigger.as_str(),
        scheduled_for: opt_time(run.scheduled_for),
        status: view.status,
        date_created: time(run.created_at),
        end_time: opt_time(view.finished_at),
        tracking_url: batch_url(target, run.batch_id),
    }
}

#[utoipa::path(
    post,
    operation_id = "notebooks_run",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}/run",
    tag = "notebooks",
    summary = "Run a notebook now",
    description = "Submits one batch of the notebook's enabled blocks: with dependencies as given, or else one after the other in `blockOrder`.",
    params(ProjectPath, NotebookIdParam, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried run safe: the same key gets the first run's answer again, and runs nothing")),
    responses((status = 202, description = "Accepted: the run's batch is queued", body = answers::notebooks::RunStartedView))
)]
pub async fn run(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.notebook_id()?;
    // The run takes no body: a retried run is the same path with the same key.
    let nothing = Body(web::Bytes::from_static(b"{}"));
    let idempotency = match Idempotency::check(&state, target, RUN_SCOPE, &req, &nothing).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let written = state
        .store
        .notebooks()
        .run(
            target.tenant,
            target.project,
            id,
            clock::now(),
            idempotency.key(StatusCode::ACCEPTED),
            |started| serde_json::to_string(&run_started_view(target, started)).unwrap_or_default(),
        )
        .await
        .map_err(|e| match e {
            StartRunError::NotFound => ApiError::NotFound("notebook"),
            StartRunError::Empty => ApiError::conflict("NOTEBOOK_EMPTY", e.to_string()),
            StartRunError::Store(e) => e.into(),
        })?;
    let started = match written {
        Written::Done(started) => started,
        Written::KeyTaken => return idempotency.replay_winner(&state, target).await,
    };
    super::request_id::record("batch_id", started.batch.id);
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", batch_url(target, started.batch.id)))
        .content_type("application/json")
        .body(to_json(&run_started_view(target, &started))?))
}

fn run_started_view(target: ProjectRef, started: &RunStarted) -> RunStartedView {
    let view = RunView {
        run: started.run.clone(),
        status: BatchStatus::Initiated,
        finished_at: None,
    };
    let operations: Vec<RunMember> = started
        .members
        .iter()
        .map(|(key, id, deps)| RunMember {
            block_id: key.clone(),
            operation_id: *id,
            dependencies: deps.clone(),
        })
        .collect();
    RunStartedView {
        run: run_item(target, &view),
        total_operations: operations.len(),
        operations,
    }
}

#[utoipa::path(
    get,
    operation_id = "notebooks_runs",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}/runs",
    tag = "notebooks",
    summary = "A notebook's past runs, newest first",
    params(ProjectPath, NotebookIdParam, wire::notebooks::PageQuery),
    responses((status = 200, description = "A page of runs", body = answers::notebooks::RunList))
)]
pub async fn runs(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsRead))
        .await?;
    let id = path.notebook_id()?;
    let (page, page_size) = page_of(&query)?;
    let found = state
        .store
        .notebooks()
        .runs(target.tenant, target.project, id, page, page_size)
        .await?
        .ok_or(ApiError::NotFound("notebook"))?;
    Ok(HttpResponse::Ok().json(RunList {
        runs: found.runs.iter().map(|r| run_item(target, r)).collect(),
        page,
        page_size,
        has_next_page: found.has_next_page,
    }))
}
