//! HTTP: handlers parse requests into domain values, call the store or engine, and shape
//! the answer. No SQL here.

pub mod auth;
pub mod batches;
pub mod blocks;
pub mod body;
pub mod breakout;
pub mod cache;
pub mod console;
pub mod docs;
pub mod error;
pub mod event_stream;
pub mod events;
pub mod format;
pub mod health;
pub mod idempotency;
pub mod integrations;
pub mod metrics;
pub mod notebooks;
pub mod oauth;
pub mod openapi;
pub mod operation_events;
pub mod operations;
pub mod portal;
pub mod push_workers;
pub mod rate_limit;
pub mod request_id;
pub mod syncs;
pub mod tasks;
pub mod text;
pub mod webhooks;
pub mod wire;
pub mod workers;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

use crate::config::Config;
use crate::domain::FieldError;
use crate::executors::Registry;
use crate::lease::Leases;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub executors: Registry,
    pub leases: Leases,
    pub caches: cache::Caches,
    pub instance: std::sync::Arc<health::Instance>,
    /// Signs and reads OAuth2 access tokens.
    pub token_key: crate::domain::oauth::TokenKey,
    /// `None`: no rate limit.
    pub token_limits: Option<std::sync::Arc<rate_limit::TokenLimits>>,
    /// The readers of the event log that this process's event streams share.
    pub event_tails: event_stream::Tails,
}

/// One path with the handler of each of its methods, mounted as one resource: a request
/// with a method the path does not take is answered 405 with `Allow`, never passed on to
/// be a 404 (or to a later path that happens to match, such as `/workers/{workerId}` for
/// `GET /workers/lease`). The resource is built when it is mounted, since its path then
/// may be only the tail under a nested scope (see `mount`).
struct Endpoint {
    path: &'static str,
    allow: Vec<Method>,
    setup: Vec<Box<dyn FnOnce(Resource) -> Resource>>,
}

fn at(path: &'static str) -> Endpoint {
    Endpoint {
        path,
        allow: Vec::new(),
        setup: Vec::new(),
    }
}

impl Endpoint {
    fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allow.push(method.clone());
        self.setup
            .push(Box::new(move |r| r.route(web::method(method).to(handler))));
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
        self.setup.push(Box::new(move |r| r.app_data(data)));
        self
    }

    /// The resource at the endpoint's path less its first `mounted_at` bytes: all of it,
    /// or its tail under a nested scope of that prefix.
    fn into_resource(self, mounted_at: usize) -> Resource {
        let path = &self.path[mounted_at..];
        let allow: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
        let allow = allow.join(", ");
        let resource = self
            .setup
            .into_iter()
            .fold(web::resource(path), |resource, setup| setup(resource));
        resource.default_service(web::to(move |req: HttpRequest| {
            let refused = error::ApiError::MethodNotAllowed(allow.clone());
            async move {
                // The worker tasks facade answers every error in its own shape.
                if in_tasks_scope(req.path()) {
                    return Err::<HttpResponse, actix_web::Error>(
                        tasks::error::VitamError::from(refused).into(),
                    );
                }
                Err(refused.into())
            }
        }))
    }
}

/// Where a path's first parameter segment ends: `/operation/{operationId}/progress` splits
/// into `/operation/{operationId}` and `/progress`. `None` for a path without parameters.
fn split_after_first_parameter(path: &str) -> Option<(&str, &str)> {
    let opening = path.find('{')?;
    let end = path[opening..]
        .find('/')
        .map_or(path.len(), |slash| opening + slash);
    Some(path.split_at(end))
}

/// What a scope is given: a resource, or a nested scope holding the endpoints that share
/// a parameter prefix.
enum Mounted {
    Resource(Resource),
    Scope(actix_web::Scope),
}

impl HttpServiceFactory for Mounted {
    fn register(self, config: &mut AppService) {
        match self {
            Mounted::Resource(resource) => resource.register(config),
            Mounted::Scope(scope) => scope.register(config),
        }
    }
}

/// A scope's endpoints, in their order, with those that share a first parameter segment
/// (`/operation/{operationId}`, `…/results`, `…/progress`, …) under one nested scope at
/// the place of the first of them. actix tries a scope's patterns one after the other,
/// and each pattern with a parameter is a regular expression: a project's pull worker
/// reporting progress went through nine of them, twice per request (the request-id
/// middleware asks for the route's template before routing), an eighth of the
/// service's CPU. Nested, it goes through three, the tails being literal. The order is
/// kept where it matters: no endpoint after a group's first member has a path the group's
/// prefix would take (a unit test checks the table). `not_found` answers a path under a
/// group's prefix that none of its endpoints takes, as the enclosing scope would.
fn mount(endpoints: Vec<Endpoint>, not_found: fn() -> actix_web::Route) -> Vec<Mounted> {
    let mut groups: Vec<(Option<&'static str>, Vec<Endpoint>)> = Vec::new();
    for endpoint in endpoints {
        let prefix = split_after_first_parameter(endpoint.path).map(|(prefix, _)| prefix);
        match groups
            .iter_mut()
            .find(|(group, _)| prefix.is_some() && *group == prefix)
        {
            Some((_, members)) => members.push(endpoint),
            None => groups.push((prefix, vec![endpoint])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(prefix, members)| match prefix {
            Some(prefix) if members.len() > 1 => {
                let scope = members.into_iter().fold(web::scope(prefix), |scope, e| {
                    scope.service(e.into_resource(prefix.len()))
                });
                vec![Mounted::Scope(scope.default_service(not_found()))]
            }
            _ => members
                .into_iter()
                .map(|e| Mounted::Resource(e.into_resource(0)))
                .collect(),
        })
        .collect()
}

/// Where the paths of a project's API, of the breakout facade and of the worker tasks
/// facade hang.
const PROJECT_SCOPE: &str = "/api/{tenantId}/{projectId}/async";
const BREAKOUT_SCOPE: &str = "/api/breakout";
const TASKS_SCOPE: &str = "/v1";

/// Whether a path is the worker tasks facade's, which answers in its own shape.
pub fn in_tasks_scope(path: &str) -> bool {
    path.strip_prefix(TASKS_SCOPE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
/// Seed 003's notebooks and blocks hang under the project without `/async`. Registered
/// after the other scopes, so that it never takes their paths (`/api/breakout/…`).
const NOTEBOOK_SCOPE: &str = "/api/{tenantId}/{projectId}";

/// The route table, each path under its scope: what `routes` serves and what the
/// OpenAPI document must describe.
fn endpoints() -> Vec<(&'static str, Endpoint)> {
    let root = |e: Endpoint| ("", e);
    let project = |e: Endpoint| (PROJECT_SCOPE, e);
    let breakout = |e: Endpoint| (BREAKOUT_SCOPE, e);
    let tasks = |e: Endpoint| (TASKS_SCOPE, e);
    let notebook = |e: Endpoint| (NOTEBOOK_SCOPE, e);
    vec![
        root(at("/healthz").get(health::healthz)),
        root(at("/readyz").get(health::readyz)),
        root(at("/openapi.json").get(docs::openapi_json)),
        root(at("/docs").get(docs::page)),
        root(at("/docs/redoc.standalone.js").get(docs::renderer)),
        root(at("/oauth/token").post(oauth::token)),
        root(at("/metrics").get(metrics::scrape)),
        root(at("/api/whoami").get(portal::whoami)),
        breakout(
            at("/dictionaries")
                .post(breakout::register)
                .get(breakout::list_dictionaries),
        ),
        breakout(
            at("/dictionaries/{name}")
                .get(breakout::get_dictionary)
                .delete(breakout::delete_dictionary),
        ),
        breakout(at("/start").post(breakout::start)),
        breakout(at("/status/{job_id}").get(breakout::status)),
        breakout(
            at("/tables/{dictionary}")
                .get(breakout::tables)
                .delete(breakout::delete_tables),
        ),
        breakout(at("/jobs").get(breakout::jobs)),
        tasks(
            at("/tasks")
                .get(tasks::list)
                .post(tasks::submit)
                .put(tasks::cancel),
        ),
        tasks(
            at("/tasks/{id_async}")
                .get(tasks::get)
                .put(tasks::cancel_one),
        ),
        tasks(at("/status").get(tasks::status)),
        project(at("/unauthorized-ping").get(health::unauthorized_ping)),
        project(at("/ping").get(health::ping)),
        project(at("/operation").post(operations::start)),
        project(
            at("/batch")
                .app_data(web::PayloadConfig::new(batches::BATCH_BODY_LIMIT))
                .app_data(body::BodyLimit(batches::BATCH_BODY_LIMIT))
                .post(batches::submit),
        ),
        project(at("/batches").get(batches::list)),
        project(
            at("/batch/{batchId}")
                .get(batches::status)
                .delete(batches::cancel),
        ),
        project(at("/batch/{batchId}/retry").post(batches::retry)),
        project(at("/operations").get(operations::list)),
        project(
            at("/operation/{operationId}")
                .get(operations::status)
                .delete(operations::cancel),
        ),
        project(at("/operation/{operationId}/results").get(operations::results)),
        project(at("/operation/{operationId}/events").get(operation_events::list)),
        project(at("/operation/{operationId}/retry").post(operations::retry)),
        project(at("/operation/{operationId}/progress").post(workers::progress)),
        project(at("/operation/{operationId}/complete").post(workers::complete)),
        project(at("/operation/{operationId}/fail").post(workers::fail)),
        project(at("/workers/lease").post(workers::lease)),
        project(
            at("/workers")
                .post(push_workers::create)
                .get(push_workers::list),
        ),
        project(
            at("/workers/{workerId}")
                .get(push_workers::get)
                .delete(push_workers::delete),
        ),
        project(at("/events").get(events::feed)),
        project(at("/events/stream").get(event_stream::stream)),
        project(at("/webhooks").post(webhooks::create).get(webhooks::list)),
        project(at("/portal-links").post(portal::create)),
        project(
            at("/webhooks/{webhookId}")
                .get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        ),
        project(at("/webhooks/{webhookId}/enable").post(webhooks::enable)),
        project(at("/webhooks/{webhookId}/disable").post(webhooks::disable)),
        project(at("/webhooks/{webhookId}/rotate-secret").post(webhooks::rotate_secret)),
        project(at("/webhooks/{webhookId}/secret").get(webhooks::secret)),
        project(at("/webhooks/{webhookId}/test").post(webhooks::test)),
        project(at("/webhooks/{webhookId}/deliveries").get(webhooks::deliveries)),
        project(at("/webhooks/{webhookId}/messages").get(webhooks::messages)),
        project(at("/webhooks/{webhookId}/recover").post(webhooks::recover)),
        project(
            at("/webhooks/{webhookId}/deliveries/{deliveryId}/retry")
                .post(webhooks::retry_delivery),
        ),
        project(at("/callbacks/secret").get(webhooks::callback_secret)),
        project(
            at("/integrations/slack")
                .put(integrations::put_slack)
                .get(integrations::get_slack)
                .delete(integrations::delete_slack),
        ),
        project(
            at("/integrations/alerts")
                .put(integrations::put_alerts)
                .get(integrations::get_alerts)
                .delete(integrations::delete_alerts),
        ),
        project(at("/callbacks/secret/rotate").post(webhooks::rotate_callback_secret)),
        project(at("/credentials").get(syncs::list_credentials)),
        project(
            at("/credentials/{name}")
                .put(syncs::put_credential)
                .delete(syncs::delete_credential),
        ),
        project(at("/syncs").get(syncs::list)),
        project(at("/syncs/{name}").get(syncs::get)),
        project(at("/syncs/{name}/cursor").delete(syncs::reset_cursor)),
        // The pings before `/block/{blockId}`, which would take their paths.
        notebook(at("/block/unauthorized-ping").get(blocks::unauthorized_ping)),
        notebook(at("/block/ping").get(blocks::ping)),
        notebook(
            at("/block/{blockId}")
                .get(blocks::get)
                .put(blocks::update)
                .delete(blocks::delete),
        ),
        notebook(
            at("/notebook")
                .post(notebooks::create)
                .get(notebooks::list_at_notebook),
        ),
        notebook(at("/notebooks").get(notebooks::list)),
        notebook(
            at("/notebook/{notebookId}")
                .get(notebooks::get)
                .put(notebooks::update)
                .delete(notebooks::delete),
        ),
        notebook(at("/notebook/{notebookId}/blocks").post(blocks::create)),
        notebook(at("/notebook/{notebookId}/run").post(notebooks::run)),
        notebook(at("/notebook/{notebookId}/runs").get(notebooks::runs)),
    ]
}

/// Every (path, method) the server answers, paths as the OpenAPI document writes them.
pub fn route_table() -> Vec<(String, Method)> {
    endpoints()
        .into_iter()
        .flat_map(|(scope, e)| {
            let path = format!("{scope}{}", e.path);
            e.allow.into_iter().map(move |m| (path.clone(), m))
        })
        .collect()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A query string or path actix cannot read is refused in the one error shape too.
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        error::ApiError::from(FieldError::new("query", e.to_string())).into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|e, _| {
            error::ApiError::from(FieldError::new("path", e.to_string())).into()
        }),
    );
    let (mut project, mut breakout, mut tasks, mut notebook) = (vec![], vec![], vec![], vec![]);
    for (scope, endpoint) in endpoints() {
        match scope {
            PROJECT_SCOPE => project.push(endpoint),
            BREAKOUT_SCOPE => breakout.push(endpoint),
            TASKS_SCOPE => tasks.push(endpoint),
            NOTEBOOK_SCOPE => notebook.push(endpoint),
            _ => {
                cfg.service(endpoint.into_resource(0));
            }
        }
    }
    let scope = |path: &str, endpoints: Vec<Endpoint>, not_found: fn() -> actix_web::Route| {
        mount(endpoints, not_found)
            .into_iter()
            .fold(web::scope(path), |scope, mounted| scope.service(mounted))
    };
    // The console's pages under a literal prefix, so that an API path is not tried
    // against their catch-all pattern.
    cfg.service(web::scope("/console").configure(console::routes));
    cfg.service(scope(BREAKOUT_SCOPE, breakout, || web::to(not_found)))
        .service(scope(PROJECT_SCOPE, project, || web::to(not_found)))
        .service(
            scope(TASKS_SCOPE, tasks, || web::to(tasks_not_found))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    tasks::error::VitamError::from(FieldError::new("path", e.to_string())).into()
                }))
                .default_service(web::to(tasks_not_found))
                .wrap(actix_web::middleware::from_fn(tasks::caller::middleware)),
        )
        .service(scope(NOTEBOOK_SCOPE, notebook, || web::to(not_found)))
        .default_service(web::to(not_found));
}

async fn tasks_not_found() -> Result<HttpResponse, tasks::error::VitamError> {
    Err(tasks::error::VitamError::from(error::ApiError::NotFound(
        "route",
    )))
}

async fn not_found() -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound("route"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::dev::ResourceDef;

    #[test]
    fn a_path_splits_after_its_first_parameter() {
        assert_eq!(
            split_after_first_parameter("/operation/{operationId}/progress"),
            Some(("/operation/{operationId}", "/progress"))
        );
        assert_eq!(
            split_after_first_parameter("/batch/{batchId}"),
            Some(("/batch/{batchId}", ""))
        );
        assert_eq!(
            split_after_first_parameter("/webhooks/{webhookId}/deliveries/{deliveryId}/retry"),
            Some(("/webhooks/{webhookId}", "/deliveries/{deliveryId}/retry"))
        );
        assert_eq!(split_after_first_parameter("/workers/lease"), None);
    }

    /// Nesting moves a group's later members up to its first one: that must not let the
    /// group's prefix take a path that an endpoint registered in between, or after, serves.
    #[test]
    fn no_group_takes_a_path_of_an_endpoint_outside_it() {
        let table = endpoints();
        let mut checked_groups = 0;
        for (i, (scope, first)) in table.iter().enumerate() {
            let Some((prefix, _)) = split_after_first_parameter(first.path) else {
                continue;
            };
            let group = ResourceDef::prefix(prefix);
            for (other_scope, other) in &table[i + 1..] {
                let same_group = split_after_first_parameter(other.path)
                    .is_some_and(|(other_prefix, _)| other_prefix == prefix);
                if other_scope == scope && !same_group {
                    assert!(
                        !group.is_match(other.path),
                        "{scope}{prefix} would take {scope}{}",
                        other.path
                    );
                }
            }
            checked_groups += 1;
        }
        assert!(
            checked_groups > 10,
            "the table has parameter paths to check"
        );
        // The check itself can fail: a group prefix does take a path below it.
        assert!(ResourceDef::prefix("/workers/{workerId}").is_match("/workers/lease/x"));
    }
}
