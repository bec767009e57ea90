//! `…/block`: a notebook's blocks as seed 003 shows them (its fields, its `404` shape,
//! its plain-text `400` on a failed update), created through `…/notebook/{id}/blocks`;
//! and the seed's pings.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use super::auth::ProjectPath;
use super::body::Body;
use super::error::ApiError;
use super::format::{opt_time, time};
use super::idempotency::Idempotency;
use super::notebooks::{NotebookIdParam, NotebookPath};
use super::wire::answers::notebooks::{BlockNotFound, BlockView};
use super::wire::notebooks::{CreateBlockBody, UpdateBlockBody};
use super::wire::{self, answers};
use super::AppState;
use crate::clock;
use crate::domain::auth::{Principal, Scope};
use crate::domain::ids::BlockId;
use crate::domain::notebook::{Block, BlockChange, BlockStats};
use crate::domain::FieldError;
use crate::store::{ChangeError, Written};

/// The seed's answer to a refused update, as it prints it.
pub const UPDATE_FAILED: &str = "Failed to update block.";

#[derive(Debug, Deserialize)]
pub struct BlockPath {
    #[serde(flatten)]
    pub project: ProjectPath,
    #[serde(rename = "blockId")]
    pub block_id: String,
}

impl BlockPath {
    fn block_id(&self) -> Result<BlockId, ApiError> {
        let id: BlockId = self
            .block_id
            .parse()
            .map_err(|e| FieldError::new("blockId", format!("{e}")))?;
        super::request_id::record("block_id", id);
        Ok(id)
    }
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BlockIdParam {
    /// The block's id (a GUID).
    #[param(rename = "blockId")]
    pub block_id: String,
}

pub fn block_view(block: &Block, stats: &BlockStats) -> BlockView {
    BlockView {
        block_id: block.id,
        notebook_id: block.notebook_id,
        block_type: block.block_type.clone(),
        block_title: block.title.clone(),
        block_description: block.description.clone(),
        block_order: block.order,
        configuration: block.configuration.clone(),
        is_disabled: block.disabled,
        date_created: time(block.created_at),
        date_modified: time(block.updated_at),
        created_by: block.created_by.clone(),
        modified_by: block.modified_by.clone(),
        last_execution_date: opt_time(stats.last.map(|(at, _)| at)),
        last_execution_status: stats.last.map(|(_, s)| s.as_str().to_owned()),
        execution_count: stats.execution_count,
        dependencies: block.dependencies.clone(),
    }
}

fn not_found(id: BlockId) -> HttpResponse {
    HttpResponse::NotFound().json(BlockNotFound {
        error: "Block not found",
        block_id: id.to_string(),
    })
}

#[utoipa::path(
    get,
    operation_id = "blocks_unauthorized_ping",
    path = "/api/{tenantId}/{projectId}/block/unauthorized-ping",
    tag = "notebooks",
    summary = "Ping the block API without a token",
    params(ProjectPath),
    responses((status = 200, description = "`Ping Successful`", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn unauthorized_ping(path: web::Path<ProjectPath>) -> Result<HttpResponse, ApiError> {
    super::health::unauthorized_ping(path).await
}

#[utoipa::path(
    get,
    operation_id = "blocks_ping",
    path = "/api/{tenantId}/{projectId}/block/ping",
    tag = "notebooks",
    summary = "Ping the block API with a token",
    params(ProjectPath),
    responses((status = 200, description = "`Ping Successful (tenant id: …)`", body = String, content_type = "text/plain"))
)]
pub async fn ping(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    super::health::ping(state, principal, path).await
}

#[utoipa::path(
    post,
    operation_id = "blocks_create",
    path = "/api/{tenantId}/{projectId}/notebook/{notebookId}/blocks",
    tag = "notebooks",
    summary = "Add a block to a notebook",
    params(ProjectPath, NotebookIdParam, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same body gets the first answer again")),
    request_body = wire::notebooks::CreateBlockBody,
    responses((status = 201, description = "Created", body = answers::notebooks::BlockView))
)]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<NotebookPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let notebook = path.notebook_id()?;
    let change: BlockChange = body.json::<CreateBlockBody>()?.try_into()?;
    check_runnable(&state, &change)?;
    let idempotency = match Idempotency::check(&state, target, CREATE_SCOPE, &req, &body).await? {
        Ok(fresh) => fresh,
        Err(replay) => return Ok(replay),
    };
    let by = principal.acting_as();
    let answer = |block: &Block| {
        serde_json::to_string(&block_view(block, &BlockStats::default())).unwrap_or_default()
    };
    let written = state
        .store
        .notebooks()
        .add_block(
            target.tenant,
            target.project,
            notebook,
            |others| Block::create(BlockId::new(), notebook, change, others, &by, clock::now()),
            idempotency.key(StatusCode::CREATED),
            answer,
        )
        .await
        .map_err(refused)?
        .ok_or(ApiError::NotFound("notebook"))?;
    let block = match written {
        Written::Done(block) => block,
        Written::KeyTaken => return idempotency.replay_winner(&state, target).await,
    };
    super::request_id::record("block_id", block.id);
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(answer(&block)))
}

const CREATE_SCOPE: &str = "block.create";

/// A built-in executor checks the parameters it will be given now, as at an operation's
/// start; any other type waits for a push or pull worker, as operations do.
fn check_runnable(state: &AppState, change: &BlockChange) -> Result<(), ApiError> {
    let block_type = change.block_type.as_deref();
    let (Some(block_type), Some(configuration)) = (block_type, &change.configuration) else {
        if let Some(executor) = block_type.and_then(|t| state.executors.get(t)) {
            executor
                .validate(&serde_json::json!({}))
                .map_err(in_configuration)?;
        }
        return Ok(());
    };
    if let Some(executor) = state.executors.get(block_type) {
        let parameters = serde_json::from_str(configuration).unwrap_or_default();
        executor.validate(&parameters).map_err(in_configuration)?;
    }
    Ok(())
}

/// An executor names the parameters' fields as an operation's (`parameters.phases[0]`):
/// a block gives them as its `configuration`.
fn in_configuration(e: FieldError) -> FieldError {
    let field = match e.field.strip_prefix("parameters") {
        Some(rest) => format!("configuration{rest}"),
        None => format!("configuration.{}", e.field),
    };
    FieldError::new(field, e.message)
}

fn refused(e: ChangeError<FieldError>) -> ApiError {
    match e {
        ChangeError::Refused(e) => e.into(),
        ChangeError::Store(e) => e.into(),
    }
}

#[utoipa::path(
    get,
    operation_id = "blocks_get",
    path = "/api/{tenantId}/{projectId}/block/{blockId}",
    tag = "notebooks",
    summary = "A block, with its execution statistics",
    params(ProjectPath, BlockIdParam),
    responses(
        (status = 200, description = "The block", body = answers::notebooks::BlockView),
        (status = 404, description = "No such block (`{\"Error\": \"Block not found\", \"BlockId\": …}`), or not this token's project", body = answers::notebooks::BlockMissing)
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BlockPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsRead))
        .await?;
    let id = path.block_id()?;
    Ok(
        match state
            .store
            .notebooks()
            .get_block(target.tenant, target.project, id)
            .await?
        {
            Some((block, stats)) => HttpResponse::Ok().json(block_view(&block, &stats)),
            None => not_found(id),
        },
    )
}

#[utoipa::path(
    put,
    operation_id = "blocks_update",
    path = "/api/{tenantId}/{projectId}/block/{blockId}",
    tag = "notebooks",
    summary = "Change a block (fields left out or null stay)",
    description = "A refused update answers `400` with the seed's body, `Failed to update block.`; the header `X-Relais-Error` names the field and the reason.",
    params(ProjectPath, BlockIdParam),
    request_body = wire::notebooks::UpdateBlockBody,
    responses(
        (status = 200, description = "The block as changed", body = answers::notebooks::BlockView),
        (status = 400, description = "`Failed to update block.`; `X-Relais-Error` says why", body = String, content_type = "text/plain"),
        (status = 404, description = "No such block (`{\"Error\": \"Block not found\", \"BlockId\": …}`), or not this token's project", body = answers::notebooks::BlockMissing)
    )
)]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BlockPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    match try_update(state, principal, path, body).await {
        Err(e) if e.status_code() == StatusCode::BAD_REQUEST => {
            let reason: String = e.to_string().chars().filter(|c| !c.is_control()).collect();
            Ok(HttpResponse::BadRequest()
                .content_type("text/plain; charset=utf-8")
                .insert_header(("X-Relais-Error", header_safe(&reason)))
                .body(UPDATE_FAILED))
        }
        other => other,
    }
}

/// A header value carries visible ASCII only.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(500)
        .collect()
}

async fn try_update(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BlockPath>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.block_id()?;
    let change: BlockChange = body.json_or_default::<UpdateBlockBody>()?.try_into()?;
    let by = principal.acting_as();
    let registry = state.executors.clone();
    let updated = state
        .store
        .notebooks()
        .update_block(target.tenant, target.project, id, |block, others| {
            let configuration = change.configuration.clone();
            block.apply(change, others, &by, clock::now())?;
            if let (Some(executor), Some(_)) = (registry.get(&block.block_type), configuration) {
                executor
                    .validate(&block.parameters())
                    .map_err(in_configuration)?;
            }
            Ok(())
        })
        .await
        .map_err(refused)?;
    Ok(match updated {
        Some((block, stats)) => HttpResponse::Ok().json(block_view(&block, &stats)),
        None => not_found(id),
    })
}

#[utoipa::path(
    delete,
    operation_id = "blocks_delete",
    path = "/api/{tenantId}/{projectId}/block/{blockId}",
    tag = "notebooks",
    summary = "Delete a block and its execution history",
    params(ProjectPath, BlockIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such block (`{\"Error\": \"Block not found\", \"BlockId\": …}`), or not this token's project", body = answers::notebooks::BlockMissing)
    )
)]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<BlockPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .authorize(&principal, &path.project, Some(Scope::OperationsWrite))
        .await?;
    let id = path.block_id()?;
    let deleted = state
        .store
        .notebooks()
        .delete_block(
            target.tenant,
            target.project,
            id,
            &principal.acting_as(),
            clock::now(),
        )
        .await?;
    Ok(match deleted {
        true => HttpResponse::NoContent().finish(),
        false => not_found(id),
    })
}
