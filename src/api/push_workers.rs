//! `…/async/workers`: register the HTTP workers Relais pushes tasks to.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::time;
use super::wire::answers::workers::{PushWorkerList, PushWorkerView};
use super::wire::push_workers::PushWorkerBody;
use super::wire::{self, answers, params};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::PushWorkerId;
use crate::domain::worker::{PushWorker, PushWorkerSpec};
use crate::domain::FieldError;
use crate::outbound::guard::check_url;
use crate::outbound::signing::generate_secret;

#[derive(Debug, Deserialize)]
pub struct WorkerPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "workerId")]
    pub worker_id: String,
}

/// Managing workers takes a real `workers` token, not a task's callback token.
async fn authorize(
    state: &AppState,
    principal: &Principal,
    path: &ProjectPath,
) -> Result<ProjectRef, ApiError> {
    if principal.operation.is_some() {
        return Err(ApiError::Forbidden("workers"));
    }
    state.authorize(principal, path, Some(Scope::Workers)).await
}

async fn view(state: &AppState, worker: &PushWorker) -> Result<PushWorkerView, ApiError> {
    Ok(PushWorkerView {
        worker_id: worker.id,
        name: worker.name.clone(),
        url: worker.url.clone(),
        operation_types: worker.operation_types.clone(),
        max_concurrency: worker.max_concurrency,
        in_flight: state.store.push_workers().in_flight(worker.id).await?,
        created_at: time(worker.created_at),
        secret: None,
    })
}

#[utoipa::path(
    post,
    operation_id = "push_workers_create",
    path = "/api/{tenantId}/{projectId}/async/workers",
    tag = "workers",
    summary = "Register a push worker",
    params(ProjectPath),
    request_body = wire::push_workers::PushWorkerBody,
    responses((status = 201, description = "Registered; the answer shows its secret once", body = answers::workers::PushWorkerView))
)]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path).await?;
    let spec: PushWorkerSpec = body.json::<PushWorkerBody>()?.try_into()?;
    check_url(&spec.url, state.config.delivery.allow_private_targets)
        .await
        .map_err(|e| FieldError::new("url", e.to_string()))?;
    for t in &spec.operation_types {
        if state.executors.get(t).is_some() {
            return Err(FieldError::new(
                "operationTypes",
                format!("`{t}` is run by a built-in executor"),
            )
            .into());
        }
    }
    let secret = spec.secret.unwrap_or_else(generate_secret);
    let worker = PushWorker {
        id: PushWorkerId::new(),
        tenant_id: target.tenant,
        project_id: target.project,
        name: spec.name,
        url: spec.url.to_string(),
        operation_types: spec.operation_types,
        max_concurrency: spec.max_concurrency,
        secret: Ok(secret.clone()),
        created_at: clock::now(),
    };
    state.store.push_workers().insert(&worker).await?;
    // New routes for queued operations: let the push loop look now.
    state.store.signals().work().wake_workers();
    Ok(HttpResponse::Created().json(PushWorkerView {
        secret: Some(secret),
        ..view(&state, &worker).await?
    }))
}

#[utoipa::path(
    get,
    operation_id = "push_workers_list",
    path = "/api/{tenantId}/{projectId}/async/workers",
    tag = "workers",
    summary = "List push workers",
    params(ProjectPath),
    responses((status = 200, description = "The project's push workers", body = answers::workers::PushWorkerList))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path).await?;
    let mut views = Vec::new();
    for worker in state
        .store
        .push_workers()
        .list(Some((target.tenant, target.project)))
        .await?
    {
        views.push(view(&state, &worker).await?);
    }
    Ok(HttpResponse::Ok().json(PushWorkerList { workers: views }))
}

async fn load(
    state: &AppState,
    principal: &Principal,
    path: &WorkerPath,
) -> Result<(ProjectRef, PushWorker), ApiError> {
    let target = authorize(state, principal, &path.project).await?;
    let id: PushWorkerId = path
        .worker_id
        .parse()
        .map_err(|e| FieldError::new("workerId", format!("{e}")))?;
    let worker = state
        .store
        .push_workers()
        .get(target.tenant, target.project, id)
        .await?
        .ok_or(ApiError::NotFound("worker"))?;
    Ok((target, worker))
}

#[utoipa::path(
    get,
    operation_id = "push_workers_get",
    path = "/api/{tenantId}/{projectId}/async/workers/{workerId}",
    tag = "workers",
    summary = "A push worker",
    params(ProjectPath, params::WorkerIdParam),
    responses((status = 200, description = "The push worker", body = answers::workers::PushWorkerView))
)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WorkerPath>,
) -> Result<HttpResponse, ApiError> {
    let (_, worker) = load(&state, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(view(&state, &worker).await?))
}

#[utoipa::path(
    delete,
    operation_id = "push_workers_delete",
    path = "/api/{tenantId}/{projectId}/async/workers/{workerId}",
    tag = "workers",
    summary = "Remove a push worker",
    params(ProjectPath, params::WorkerIdParam),
    responses((status = 204, description = "Removed"))
)]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<WorkerPath>,
) -> Result<HttpResponse, ApiError> {
    let (target, worker) = load(&state, &principal, &path).await?;
    state
        .store
        .push_workers()
        .delete(target.tenant, target.project, worker.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
