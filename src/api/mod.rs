//! HTTP: handlers parse requests into domain values, call the store or engine, and shape
//! the answer. No SQL here.

pub mod auth;
pub mod body;
pub mod error;
pub mod format;
pub mod health;
pub mod operations;
pub mod request_id;
pub mod workers;

use actix_web::web::{self, delete, get, post};
use actix_web::HttpResponse;

use crate::config::Config;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", get().to(health::healthz))
        .route("/readyz", get().to(health::readyz))
        .service(
            web::scope("/api/{tenantId}/{projectId}/async")
                .route("/unauthorized-ping", get().to(health::unauthorized_ping))
                .route("/ping", get().to(health::ping))
                .route("/operation", post().to(operations::start))
                .route("/operations", get().to(operations::list))
                .route("/operation/{operationId}", get().to(operations::status))
                .route("/operation/{operationId}", delete().to(operations::cancel))
                .route(
                    "/operation/{operationId}/results",
                    get().to(operations::results),
                )
                .route(
                    "/operation/{operationId}/progress",
                    post().to(workers::progress),
                )
                .route(
                    "/operation/{operationId}/complete",
                    post().to(workers::complete),
                )
                .route("/operation/{operationId}/fail", post().to(workers::fail))
                .route("/workers/lease", post().to(workers::lease)),
        )
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound("route"))
}
