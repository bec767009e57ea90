//! `…/async/credentials/{name}`, the secrets a project's syncs send to their sources, and
//! `…/async/syncs`, where each cursor sync (seed 004) stands.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::{ProjectPath, ProjectRef};
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::operations::parse_query;
use super::wire::answers::syncs::{
    CredentialList, CredentialView, SyncList, SyncRunView, SyncView,
};
use super::wire::query::parse_page;
use super::wire::syncs::{CredentialBody, SyncsQuery};
use super::wire::{self, answers, params};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::sync::credential::Credential;
use crate::domain::sync::SyncName;
use crate::store::{self, CursorReset, StoredCredential};

#[derive(Debug, Deserialize)]
pub struct NamePath {
    #[serde(flatten)]
    pub project: ProjectPath,
    pub name: String,
}

/// Credentials are secrets: a task's callback token never manages them.
async fn authorize(
    state: &AppState,
    principal: &Principal,
    path: &ProjectPath,
    scope: Scope,
) -> Result<ProjectRef, ApiError> {
    if principal.operation.is_some() {
        return Err(ApiError::Forbidden("admin"));
    }
    state.authorize(principal, path, Some(scope)).await
}

fn credential_view(c: StoredCredential) -> CredentialView {
    CredentialView {
        name: c.name,
        kind: c.kind,
        header: c.header,
        origins: c.origins,
        created_at: time(c.created_at),
        updated_at: time(c.updated_at),
    }
}

fn sync_view(s: store::SyncView) -> SyncView {
    SyncView {
        sync_name: s.name,
        cursor: s.cursor,
        records_total: s.records_total,
        pages_total: s.pages_total,
        last_run: s.last_run.map(|(operation, status)| SyncRunView {
            operation_id: operation.to_string(),
            status,
            started_at: opt_time(s.run_started_at),
            ended_at: opt_time(s.run_ended_at),
            records: s.run_records,
            pages: s.run_pages,
        }),
        last_error: s.last_error,
        running_operation_id: s.running.map(|id| id.to_string()),
        created_at: time(s.created_at),
        updated_at: time(s.updated_at),
    }
}

#[utoipa::path(
    put,
    operation_id = "credentials_put",
    path = "/api/{tenantId}/{projectId}/async/credentials/{name}",
    tag = "syncs",
    summary = "Store a credential for a sync's source",
    description = "A bearer token or a header and its value, sealed at rest and never shown again. A `CursorSync` names it in `parameters.credential`; with `origins`, it is only ever sent to those. Needs the `admin` scope.",
    params(ProjectPath, params::CredentialNameParam),
    request_body = wire::syncs::CredentialBody,
    responses(
        (status = 201, description = "Created", body = answers::syncs::CredentialView),
        (status = 200, description = "Replaced", body = answers::syncs::CredentialView)
    )
)]
pub async fn put_credential(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NamePath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path.project, Scope::Admin).await?;
    let name = SyncName::parse(&path.name, "name")?;
    let credential = Credential::try_from(body.json::<CredentialBody>()?)?;
    let (stored, created) = state
        .store
        .syncs()
        .put_credential(
            target.tenant,
            target.project,
            &name,
            &credential,
            clock::now(),
        )
        .await?;
    let view = credential_view(stored);
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

#[utoipa::path(
    get,
    operation_id = "credentials_list",
    path = "/api/{tenantId}/{projectId}/async/credentials",
    tag = "syncs",
    summary = "The project's credentials: names and forms, never secrets",
    params(ProjectPath),
    responses((status = 200, description = "Every credential, by name", body = answers::syncs::CredentialList))
)]
pub async fn list_credentials(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path, Scope::OperationsRead).await?;
    let credentials = state.store.syncs().credentials(target.project).await?;
    Ok(HttpResponse::Ok().json(CredentialList {
        credentials: credentials.into_iter().map(credential_view).collect(),
    }))
}

#[utoipa::path(
    delete,
    operation_id = "credentials_delete",
    path = "/api/{tenantId}/{projectId}/async/credentials/{name}",
    tag = "syncs",
    summary = "Remove a credential",
    description = "Syncs that name it then fail with `CREDENTIAL_NOT_FOUND`. Needs the `admin` scope.",
    params(ProjectPath, params::CredentialNameParam),
    responses((status = 204, description = "Removed"))
)]
pub async fn delete_credential(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NamePath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path.project, Scope::Admin).await?;
    let name = SyncName::parse(&path.name, "name")?;
    if !state
        .store
        .syncs()
        .delete_credential(target.project, &name)
        .await?
    {
        return Err(ApiError::NotFound("credential"));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    operation_id = "syncs_list",
    path = "/api/{tenantId}/{projectId}/async/syncs",
    tag = "syncs",
    summary = "The project's cursor syncs",
    description = "Every `syncName` a `CursorSync` operation has run under, by name.",
    params(ProjectPath, wire::syncs::SyncsQuery),
    responses((status = 200, description = "A page of syncs", body = answers::syncs::SyncList))
)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path, Scope::OperationsRead).await?;
    let q: SyncsQuery = parse_query(&query)?;
    let (page, size) = parse_page(q.page.as_deref(), q.page_size.as_deref())?;
    let offset = (page - 1).saturating_mul(size);
    let mut syncs = state
        .store
        .syncs()
        .list(target.project, offset, size + 1)
        .await?;
    let has_next_page = syncs.len() > size as usize;
    syncs.truncate(size as usize);
    Ok(HttpResponse::Ok().json(SyncList {
        syncs: syncs.into_iter().map(sync_view).collect(),
        page,
        page_size: size,
        has_next_page,
    }))
}

#[utoipa::path(
    get,
    operation_id = "syncs_get",
    path = "/api/{tenantId}/{projectId}/async/syncs/{name}",
    tag = "syncs",
    summary = "Where one sync stands",
    params(ProjectPath, params::SyncNameParam),
    responses((status = 200, description = "Its cursor, figures and last run", body = answers::syncs::SyncView))
)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NamePath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path.project, Scope::OperationsRead).await?;
    let name = SyncName::parse(&path.name, "name")?;
    let sync = state
        .store
        .syncs()
        .get(target.project, &name)
        .await?
        .ok_or(ApiError::NotFound("sync"))?;
    Ok(HttpResponse::Ok().json(sync_view(sync)))
}

#[utoipa::path(
    delete,
    operation_id = "syncs_reset_cursor",
    path = "/api/{tenantId}/{projectId}/async/syncs/{name}/cursor",
    tag = "syncs",
    summary = "Forget a sync's cursor",
    description = "The next run starts again from its `updatedSince` (or from the start). Refused with 409 `SYNC_RUNNING` while a run pages.",
    params(ProjectPath, params::SyncNameParam),
    responses((status = 200, description = "The sync, its cursor gone", body = answers::syncs::SyncView))
)]
pub async fn reset_cursor(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NamePath>,
) -> Result<HttpResponse, ApiError> {
    let target = authorize(&state, &principal, &path.project, Scope::OperationsWrite).await?;
    let name = SyncName::parse(&path.name, "name")?;
    match state
        .store
        .syncs()
        .reset_cursor(target.project, &name, clock::now())
        .await?
    {
        CursorReset::Reset(view) => Ok(HttpResponse::Ok().json(sync_view(*view))),
        CursorReset::NotFound => Err(ApiError::NotFound("sync")),
        CursorReset::Running(operation) => Err(ApiError::conflict(
            "SYNC_RUNNING",
            format!("operation {operation} is running this sync; cancel it or wait for it to end"),
        )),
    }
}
