//! The OpenAPI 3.1 document of the API, generated: the paths from the handlers'
//! `#[utoipa::path]`s, the bodies from the types of `api::wire` (requests) and
//! `api::wire::answers` (answers). Only what every operation shares is added here: the
//! bearer security and the error answers, all in the one shape `api::error` gives them.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::wire::answers::errors::ErrorBody;
use super::wire::answers::tasks::VitamErrorBody;
#[allow(unused_imports)]
use super::{
    batches, blocks, breakout, docs, event_stream, events, health, integrations, metrics,
    notebooks, oauth, operation_events, operations, portal, push_workers, syncs, tasks, webhooks,
    workers,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Relais",
        description = "Long-running operations, their workers, and the signed webhooks that report on them. \
Every path under `/api/{tenantId}/{projectId}/async` and `/api/breakout` takes `Authorization: Bearer <token>`; \
every error answers the same JSON shape (`ErrorBody`). \
The `/v1` facade (seed 002) takes the token as `X-Vitam-Key` instead, and answers its errors as `VitamErrorBody`. \
What Relais sends out is described too: a push worker's task (`PushTask`, signed like a webhook), \
and the events webhooks receive (`EventEnvelope`, as `GET …/events` lists them).",
    ),
    paths(
        health::healthz,
        health::readyz,
        health::unauthorized_ping,
        health::ping,
        oauth::token,
        metrics::scrape,
        operations::start,
        operations::retry,
        operations::status,
        operations::list,
        operations::cancel,
        operations::results,
        operation_events::list,
        batches::submit,
        batches::status,
        batches::list,
        batches::cancel,
        batches::retry,
        workers::lease,
        workers::progress,
        workers::complete,
        workers::fail,
        push_workers::create,
        push_workers::list,
        push_workers::get,
        push_workers::delete,
        events::feed,
        portal::create,
        portal::whoami,
        event_stream::stream,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::enable,
        webhooks::disable,
        webhooks::rotate_secret,
        webhooks::secret,
        webhooks::test,
        webhooks::deliveries,
        webhooks::messages,
        webhooks::recover,
        webhooks::retry_delivery,
        webhooks::callback_secret,
        webhooks::rotate_callback_secret,
        integrations::put_slack,
        integrations::get_slack,
        integrations::delete_slack,
        integrations::put_alerts,
        integrations::get_alerts,
        integrations::delete_alerts,
        syncs::put_credential,
        syncs::list_credentials,
        syncs::delete_credential,
        syncs::list,
        syncs::get,
        syncs::reset_cursor,
        breakout::register::register,
        breakout::list_dictionaries,
        breakout::get_dictionary,
        breakout::delete_dictionary,
        breakout::tables,
        breakout::delete_tables,
        breakout::jobs::start,
        breakout::jobs::status,
        breakout::jobs::jobs,
        tasks::list,
        tasks::submit,
        tasks::cancel,
        tasks::get,
        tasks::cancel_one,
        tasks::status,
        blocks::unauthorized_ping,
        blocks::ping,
        blocks::get,
        blocks::update,
        blocks::delete,
        blocks::create,
        notebooks::create,
        notebooks::list_at_notebook,
        notebooks::list,
        notebooks::get,
        notebooks::update,
        notebooks::delete,
        notebooks::run,
        notebooks::runs,
        docs::openapi_json,
        docs::page,
        docs::renderer
    ),
    components(schemas(ErrorBody, VitamErrorBody, crate::engine::push::TaskBody)),
    modifiers(&Shared),
    tags(
        (name = "operations", description = "Start, follow, cancel and retry operations"),
        (name = "batches", description = "DAGs of operations"),
        (name = "workers", description = "The worker protocol (pull workers lease; push workers are sent tasks)"),
        (name = "events", description = "The event log"),
        (name = "webhooks", description = "Signed webhooks and callbacks"),
        (name = "notifications", description = "Slack and email: the project's Slack integration and who is alerted when an endpoint is disabled"),
        (name = "syncs", description = "Cursor syncs (seed 004): `CursorSync` operations page through a source and push each changed record as a `sync.record.changed` event; the credentials they send"),
        (name = "notebooks", description = "Notebooks of blocks (seed 003), run by hand or on a cron schedule, each run a batch"),
        (name = "breakout", description = "The CSPro breakout facade (seed 000), scoped by the token's project"),
        (name = "tasks", description = "The worker tasks facade of seed 002 (`/v1`): `X-Vitam-Key` is an API token bound to a project, whose tasks these are; errors answer the seed's error shape (`VitamErrorBody`)"),
        (name = "oauth", description = "OAuth2 client credentials: access tokens for registered clients (`relais client create`)"),
        (name = "health", description = "Liveness, readiness, ping"),
        (name = "docs", description = "This document"),
    )
)]
struct ApiDoc;

/// What each error status means, for every operation that can answer it; the `/v1`
/// facade's add the seed's 412.
const ERRORS: &[(&str, &str)] = &[
    (
        "412",
        "A predicate of the request does not hold: `description` says which",
    ),
    ("400", "The request is refused: `field` names what is wrong"),
    ("401", "No valid bearer token"),
    ("403", "The token lacks the scope this needs"),
    ("404", "Not found, or not this token's tenant or project"),
    (
        "405",
        "The path does not take this method: `Allow` lists those it takes",
    ),
    ("409", "The resource is not in a state that allows this"),
    ("413", "The body is larger than the limit"),
    ("500", "Relais failed; the `requestId` finds it in the logs"),
    ("503", "The database is unreachable; retry shortly"),
];

struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`relais token create`), or an OAuth2 access token (`POST /oauth/token`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "vitamKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Vitam-Key",
                "An API token bound to a project (`relais token create --project`), for the `/v1` facade",
            ))),
        );
        for (status, description) in ERRORS {
            for (shape, schema) in [(Shape::Api, "ErrorBody"), (Shape::Vitam, "VitamErrorBody")] {
                components.responses.insert(
                    error_response_name(shape, status),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name(schema)))
                                    .build(),
                            )
                            .build(),
                    ),
                );
            }
        }
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let shape = match super::in_tasks_scope(path) {
                true => Shape::Vitam,
                false => Shape::Api,
            };
            for operation in operations(item) {
                for status in errors_of(operation, shape) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(Ref::new(format!(
                                "#/components/responses/{}",
                                error_response_name(shape, status)
                            )))
                        });
                }
            }
        }
    }
}

/// Which shape an operation's errors take: the API's own, or the `/v1` facade's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Api,
    Vitam,
}

fn error_response_name(shape: Shape, status: &str) -> String {
    match shape {
        Shape::Api => format!("Error{status}"),
        Shape::Vitam => format!("VitamError{status}"),
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The errors an operation can answer: every one may fail (500), and every one behind a
/// token may be refused, not found, or lack its database. Requests with a body or a
/// query may be refused; changes may conflict; bodies may be too large.
fn errors_of(operation: &Operation, shape: Shape) -> Vec<&'static str> {
    let open = operation
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
    if open {
        return vec!["400", "404", "500", "503"];
    }
    let mut errors = vec!["400", "401", "403", "404", "409", "413", "500", "503"];
    if shape == Shape::Vitam {
        errors.push("412");
    }
    errors
}

/// The document, as `GET /openapi.json` serves it.
pub fn document() -> Document {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A route the document does not describe is an undocumented part of the API: every
    /// (path, method) of the route table must be in the document, and nothing else.
    #[test]
    fn the_document_describes_every_route_and_only_those() {
        let doc = document();
        let mut described = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ] {
                if operation.is_some() {
                    described.insert((path.clone(), method.to_owned()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = crate::api::route_table()
            .into_iter()
            .map(|(path, method)| (path, method.as_str().to_owned()))
            .collect();
        let undocumented: Vec<_> = served.difference(&described).collect();
        assert!(
            undocumented.is_empty(),
            "routes the document lacks: {undocumented:?}"
        );
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(
            unserved.is_empty(),
            "documented routes nobody serves: {unserved:?}"
        );
    }

    /// The seeds' examples (`answers::examples`) show what Relais answers: each field they
    /// name is one of the answer's, unless the answer also takes fields of the worker's
    /// own, and every answer given one shows it.
    #[test]
    fn the_seeds_examples_name_only_fields_of_their_answers() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut shown = BTreeSet::new();
        for (name, schema) in schemas {
            let Some(serde_json::Value::Object(example)) = schema.get("example") else {
                continue;
            };
            let parts: Vec<&serde_json::Value> = match schema.get("allOf") {
                Some(serde_json::Value::Array(parts)) => parts.iter().collect(),
                _ => vec![schema],
            };
            let open = parts.iter().any(|part| {
                part.get("additionalProperties").is_some() || part.get("properties").is_none()
            });
            if !open {
                let properties: BTreeSet<&String> = parts
                    .iter()
                    .flat_map(|part| part["properties"].as_object().unwrap().keys())
                    .collect();
                for key in example.keys() {
                    assert!(
                        properties.contains(key),
                        "{name}'s example shows `{key}`, which it never answers"
                    );
                }
            }
            shown.insert(name.as_str());
        }
        for name in [
            "OperationAccepted",
            "OperationStatusView",
            "OperationList",
            "OperationCancelled",
            "OperationResults",
            "RetryAccepted",
            "WebhookView",
            "BatchAccepted",
            "BreakoutStarted",
            "ActiveJob",
            "CompletedJob",
            "FailedJob",
            "TablesView",
            "TablesDeleted",
            "JobList",
            "TaskView",
            "TaskList",
            "InstanceView",
        ] {
            assert!(shown.contains(name), "{name} has no example: {shown:?}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut doc = document();
        let mut seen = BTreeSet::new();
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                let id = operation.operation_id.clone().expect("an operationId");
                assert!(seen.insert(id.clone()), "{id} names two operations");
            }
        }
    }

    #[test]
    fn every_operation_says_how_it_fails_in_the_error_shape() {
        let doc = document();
        assert!(doc
            .components
            .as_ref()
            .unwrap()
            .schemas
            .contains_key("ErrorBody"));
        for (path, item) in doc.paths.paths.clone().iter_mut() {
            for operation in operations(item) {
                for status in ["400", "404", "500"] {
                    assert!(
                        operation.responses.responses.contains_key(status),
                        "{path} lacks {status}"
                    );
                }
            }
        }
    }
}
