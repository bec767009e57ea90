use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};

use super::auth::ProjectPath;
use super::error::ApiError;
use super::wire::answers;
use super::wire::answers::health::{Alive, Ready};
use super::AppState;
use crate::domain::auth::Principal;
use crate::domain::ids::InstanceId;

/// This process: which one it is, since when it runs, and whether it is shutting down
/// (from the first SIGTERM on, so that load balancers see it before it stops listening).
pub struct Instance {
    pub id: InstanceId,
    pub started_at: DateTime<Utc>,
    shutting_down: tokio::sync::watch::Sender<bool>,
}

impl Instance {
    pub fn new(started_at: DateTime<Utc>) -> Self {
        Instance {
            id: InstanceId::new(),
            started_at,
            shutting_down: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.send_replace(true);
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    /// Resolves once the process begins shutting down: long-lived answers (event streams)
    /// end then, so their clients reconnect to another replica while this one still
    /// serves.
    pub async fn stopping(&self) {
        let mut shutting_down = self.shutting_down.subscribe();
        let _ = shutting_down.wait_for(|down| *down).await;
    }
}

#[utoipa::path(
    get,
    operation_id = "health_healthz",
    path = "/healthz",
    tag = "health",
    summary = "Liveness",
    responses((status = 200, description = "The process answers", body = answers::health::Alive)),
    security(())
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

/// Ready when the database answers, until the process begins to shut down.
#[utoipa::path(
    get,
    operation_id = "health_readyz",
    path = "/readyz",
    tag = "health",
    summary = "Readiness",
    responses((status = 200, description = "The database answers too", body = answers::health::Ready)),
    security(())
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.instance.shutting_down() {
        return Err(ApiError::Unavailable(
            "this instance is shutting down".into(),
        ));
    }
    match state.store.ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(Ready {
            status: "ready",
            database: "ok",
        })),
        Err(e) => Err(ApiError::Unavailable(format!("database: {e}"))),
    }
}

#[utoipa::path(
    get,
    operation_id = "health_unauthorized_ping",
    path = "/api/{tenantId}/{projectId}/async/unauthorized-ping",
    tag = "health",
    summary = "Ping without a token",
    params(ProjectPath),
    responses((status = 200, description = "`Ping Successful`", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn unauthorized_ping(path: web::Path<ProjectPath>) -> Result<HttpResponse, ApiError> {
    path.parse()?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ping Successful"))
}

#[utoipa::path(
    get,
    operation_id = "health_ping",
    path = "/api/{tenantId}/{projectId}/async/ping",
    tag = "health",
    summary = "Ping with a token",
    params(ProjectPath),
    responses((status = 200, description = "`Ping Successful (tenant id: …)`", body = String, content_type = "text/plain"))
)]
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
