use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::ProjectPath;
use super::error::ApiError;
use super::AppState;
use crate::domain::auth::Principal;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the database answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({"status": "ready", "database": "ok"}))),
        Err(e) => Err(ApiError::Unavailable(format!("database: {e}"))),
    }
}

pub async fn unauthorized_ping(path: web::Path<ProjectPath>) -> Result<HttpResponse, ApiError> {
    path.parse()?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ping Successful"))
}

pub async fn ping(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<ProjectPath>,
) -> Result<HttpResponse, ApiError> {
    let target = state.authorize(&principal, &path, None).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("Ping Successful (tenant id: {})", target.tenant)))
}
