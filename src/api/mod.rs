//! HTTP: handlers parse requests into domain values, call the store or engine, and shape
//! the answer. No SQL here.

pub mod auth;
pub mod batches;
pub mod body;
pub mod breakout;
pub mod cache;
pub mod error;
pub mod events;
pub mod format;
pub mod health;
pub mod idempotency;
pub mod operations;
pub mod push_workers;
pub mod request_id;
pub mod text;
pub mod webhooks;
pub mod wire;
pub mod workers;

use actix_web::web::{self, delete, get, post, put};
use actix_web::HttpResponse;

use crate::config::Config;
use crate::executors::Registry;
use crate::lease::Leases;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub executors: Registry,
    pub leases: Leases,
    pub caches: cache::Caches,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", get().to(health::healthz))
        .route("/readyz", get().to(health::readyz))
        .service(breakout_routes())
        .service(
            web::scope("/api/{tenantId}/{projectId}/async")
                .route("/unauthorized-ping", get().to(health::unauthorized_ping))
                .route("/ping", get().to(health::ping))
                .route("/operation", post().to(operations::start))
                .service(
                    web::resource("/batch")
                        .app_data(web::PayloadConfig::new(batches::BATCH_BODY_LIMIT))
                        .app_data(body::BodyLimit(batches::BATCH_BODY_LIMIT))
                        .route(post().to(batches::submit)),
                )
                .route("/batches", get().to(batches::list))
                .route("/batch/{batchId}", get().to(batches::status))
                .route("/batch/{batchId}", delete().to(batches::cancel))
                .route("/batch/{batchId}/retry", post().to(batches::retry))
                .route("/operations", get().to(operations::list))
                .route("/operation/{operationId}", get().to(operations::status))
                .route("/operation/{operationId}", delete().to(operations::cancel))
                .route(
                    "/operation/{operationId}/results",
                    get().to(operations::results),
                )
                .route(
                    "/operation/{operationId}/retry",
                    post().to(operations::retry),
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
                .route("/workers/lease", post().to(workers::lease))
                .route("/workers", post().to(push_workers::create))
                .route("/workers", get().to(push_workers::list))
                .route("/workers/{workerId}", get().to(push_workers::get))
                .route("/workers/{workerId}", delete().to(push_workers::delete))
                .route("/events", get().to(events::feed))
                .route("/webhooks", post().to(webhooks::create))
                .route("/webhooks", get().to(webhooks::list))
                .route("/webhooks/{webhookId}", get().to(webhooks::get))
                .route("/webhooks/{webhookId}", put().to(webhooks::update))
                .route("/webhooks/{webhookId}", delete().to(webhooks::delete))
                .route("/webhooks/{webhookId}/enable", post().to(webhooks::enable))
                .route(
                    "/webhooks/{webhookId}/disable",
                    post().to(webhooks::disable),
                )
                .route(
                    "/webhooks/{webhookId}/rotate-secret",
                    post().to(webhooks::rotate_secret),
                )
                .route("/webhooks/{webhookId}/secret", get().to(webhooks::secret))
                .route("/webhooks/{webhookId}/test", post().to(webhooks::test))
                .route(
                    "/webhooks/{webhookId}/deliveries",
                    get().to(webhooks::deliveries),
                )
                .route(
                    "/webhooks/{webhookId}/messages",
                    get().to(webhooks::messages),
                )
                .route(
                    "/webhooks/{webhookId}/recover",
                    post().to(webhooks::recover),
                )
                .route(
                    "/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
                    post().to(webhooks::retry_delivery),
                )
                .route("/callbacks/secret", get().to(webhooks::callback_secret))
                .route(
                    "/callbacks/secret/rotate",
                    post().to(webhooks::rotate_callback_secret),
                ),
        )
        .default_service(web::to(not_found));
}

fn breakout_routes() -> actix_web::Scope {
    web::scope("/api/breakout")
        .route("/dictionaries", post().to(breakout::register))
        .route("/dictionaries", get().to(breakout::list_dictionaries))
        .route("/dictionaries/{name}", get().to(breakout::get_dictionary))
        .route(
            "/dictionaries/{name}",
            delete().to(breakout::delete_dictionary),
        )
        .route("/start", post().to(breakout::start))
        .route("/status/{job_id}", get().to(breakout::status))
        .route("/tables/{dictionary}", get().to(breakout::tables))
        .route("/tables/{dictionary}", delete().to(breakout::delete_tables))
        .route("/jobs", get().to(breakout::jobs))
}

async fn not_found() -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound("route"))
}
