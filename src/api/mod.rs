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

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpResponse, Resource, Responder};

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

/// One path with the handler of each of its methods, registered as one resource: a
/// request with a method the path does not take is answered 405 with `Allow`, never
/// passed on to be a 404 (or to a later path that happens to match, such as
/// `/workers/{workerId}` for `GET /workers/lease`).
struct Endpoint {
    resource: Resource,
    allow: Vec<Method>,
}

fn at(path: &str) -> Endpoint {
    Endpoint {
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

impl Endpoint {
    fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.allow.push(method);
        self
    }

    fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PUT, handler)
    }

    fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    fn app_data<U: 'static>(mut self, data: U) -> Self {
        self.resource = self.resource.app_data(data);
        self
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
        let allow = allow.join(", ");
        self.resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<HttpResponse, _>(error::ApiError::MethodNotAllowed(allow)) }
            }))
            .register(config)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/healthz").get(health::healthz))
        .service(at("/readyz").get(health::readyz))
        .service(breakout_routes())
        .service(
            web::scope("/api/{tenantId}/{projectId}/async")
                .service(at("/unauthorized-ping").get(health::unauthorized_ping))
                .service(at("/ping").get(health::ping))
                .service(at("/operation").post(operations::start))
                .service(
                    at("/batch")
                        .app_data(web::PayloadConfig::new(batches::BATCH_BODY_LIMIT))
                        .app_data(body::BodyLimit(batches::BATCH_BODY_LIMIT))
                        .post(batches::submit),
                )
                .service(at("/batches").get(batches::list))
                .service(
                    at("/batch/{batchId}")
                        .get(batches::status)
                        .delete(batches::cancel),
                )
                .service(at("/batch/{batchId}/retry").post(batches::retry))
                .service(at("/operations").get(operations::list))
                .service(
                    at("/operation/{operationId}")
                        .get(operations::status)
                        .delete(operations::cancel),
                )
                .service(at("/operation/{operationId}/results").get(operations::results))
                .service(at("/operation/{operationId}/retry").post(operations::retry))
                .service(at("/operation/{operationId}/progress").post(workers::progress))
                .service(at("/operation/{operationId}/complete").post(workers::complete))
                .service(at("/operation/{operationId}/fail").post(workers::fail))
                .service(at("/workers/lease").post(workers::lease))
                .service(
                    at("/workers")
                        .post(push_workers::create)
                        .get(push_workers::list),
                )
                .service(
                    at("/workers/{workerId}")
                        .get(push_workers::get)
                        .delete(push_workers::delete),
                )
                .service(at("/events").get(events::feed))
                .service(at("/webhooks").post(webhooks::create).get(webhooks::list))
                .service(
                    at("/webhooks/{webhookId}")
                        .get(webhooks::get)
                        .put(webhooks::update)
                        .delete(webhooks::delete),
                )
                .service(at("/webhooks/{webhookId}/enable").post(webhooks::enable))
                .service(at("/webhooks/{webhookId}/disable").post(webhooks::disable))
                .service(at("/webhooks/{webhookId}/rotate-secret").post(webhooks::rotate_secret))
                .service(at("/webhooks/{webhookId}/secret").get(webhooks::secret))
                .service(at("/webhooks/{webhookId}/test").post(webhooks::test))
                .service(at("/webhooks/{webhookId}/deliveries").get(webhooks::deliveries))
                .service(at("/webhooks/{webhookId}/messages").get(webhooks::messages))
                .service(at("/webhooks/{webhookId}/recover").post(webhooks::recover))
                .service(
                    at("/webhooks/{webhookId}/deliveries/{deliveryId}/retry")
                        .post(webhooks::retry_delivery),
                )
                .service(at("/callbacks/secret").get(webhooks::callback_secret))
                .service(at("/callbacks/secret/rotate").post(webhooks::rotate_callback_secret)),
        )
        .default_service(web::to(not_found));
}

fn breakout_routes() -> actix_web::Scope {
    web::scope("/api/breakout")
        .service(
            at("/dictionaries")
                .post(breakout::register)
                .get(breakout::list_dictionaries),
        )
        .service(
            at("/dictionaries/{name}")
                .get(breakout::get_dictionary)
                .delete(breakout::delete_dictionary),
        )
        .service(at("/start").post(breakout::start))
        .service(at("/status/{job_id}").get(breakout::status))
        .service(
            at("/tables/{dictionary}")
                .get(breakout::tables)
                .delete(breakout::delete_tables),
        )
        .service(at("/jobs").get(breakout::jobs))
}

async fn not_found() -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound("route"))
}
